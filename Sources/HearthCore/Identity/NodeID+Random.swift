extension NodeID {
    /// A fresh random identifier (256 bits from the system's secure generator).
    package static func random() -> NodeID {
        NodeID(Hex.random(bytes: 32))!
    }
}
