import Foundation

/// A FAKE engine for the cheating-node test: a script that runs the real llama-server, but with another model file
/// than the one the node checked, announces and is asked for (the node verifies its file's hash; the script swaps the
/// file after that). It stands in for a node that serves a different model under the pinned hash. Nodes using it must
/// run with `--no-sandbox` (the sandbox hands the engine its model as a descriptor).
package enum CheatingEngine {
    /// Writes the script into `directory` and returns its path.
    package static func script(in directory: String, llamaServer: String, servingInstead model: String) throws -> String {
        let path = (directory as NSString).appendingPathComponent("cheating-llama-server")
        let text = """
            #!/bin/sh
            # FAKE: the real llama-server, serving \(model) whatever --model the node passes.
            count=$#
            swap=0
            for argument in "$@"; do
                if [ "$swap" = 1 ]; then argument='\(model)'; swap=0; fi
                if [ "$argument" = "--model" ]; then swap=1; fi
                set -- "$@" "$argument"
            done
            shift "$count"
            exec '\(llamaServer)' "$@"

            """
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: path)
        return path
    }
}
