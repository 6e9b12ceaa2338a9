/// Hearth's version, announced by nodes and shown by the CLI.
package enum HearthVersion {
    package static let current = "0.1.0"
}
