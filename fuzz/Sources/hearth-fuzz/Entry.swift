// libFuzzer's entry points for every Hearth fuzz target; `fuzz/run.sh` builds this executable with
// `--sanitize=fuzzer --sanitize=address` (the package declares it only when HEARTH_FUZZ is set).
//   HEARTH_FUZZ_TARGET=cbor hearth-fuzz CORPUS...    fuzzes one target
//   HEARTH_FUZZ_SEEDS=DIR hearth-fuzz                 writes every target's seeds to DIR/<target>/ and exits

import Foundation
import HearthFuzzing

nonisolated(unsafe) var selected: FuzzTarget?

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>>>) -> CInt {
    let environment = ProcessInfo.processInfo.environment
    if let folder = environment["HEARTH_FUZZ_SEEDS"] {
        for target in FuzzTarget.all {
            let directory = URL(fileURLWithPath: folder).appendingPathComponent(target.name)
            try? FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            for (index, seed) in FuzzSeeds.seeds(for: target.name).enumerated() {
                try? Data(seed).write(to: directory.appendingPathComponent("seed-\(index)"))
            }
        }
        exit(0)
    }
    guard let name = environment["HEARTH_FUZZ_TARGET"], let target = FuzzTarget.named(name) else {
        let names = FuzzTarget.all.map(\.name).joined(separator: ", ")
        FileHandle.standardError.write(Data("set HEARTH_FUZZ_TARGET to one of: \(names)\n".utf8))
        exit(2)
    }
    selected = target
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func testOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    if let problem = selected?.check(bytes) { fatalError("\(selected?.name ?? "?"): \(problem)") }
    return 0
}
