extension NodeID {
    /// A fresh random identifier (256 bits from the system's secure generator).
    public static func random() -> NodeID {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) }
        return NodeID(Hex.encode(bytes))!
    }
}
