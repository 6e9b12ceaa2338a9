// libFuzzer entry point for the GGUF header reader. Built by fuzz/run-gguf.sh together with
// Sources/HearthCore/Models/GGUF.swift, outside the package, with -sanitize=fuzzer,address.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzGGUFHeader(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeBufferPointer(start: data, count: size)
    switch Result(catching: { () throws(GGUFError) in try GGUFHeader(bytes: bytes) }) {
    case .success(let header):
        // A header that parses must describe itself consistently.
        precondition(header.dataOffset % header.alignment == 0, "data offset not aligned")
        precondition(header.version == 2 || header.version == 3, "accepted version \(header.version)")
    case .failure(.truncated(let needed)):
        // More bytes are asked for only when they would let the reader go further.
        precondition(needed > UInt64(size), "truncated but needs only \(needed) of \(size) bytes")
    case .failure:
        break
    }
    return 0
}
