/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, and the same sequence on every
/// machine and Swift version, which Swift's own generators do not promise.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// An independent stream for one purpose ("load-address", "segments"…), so that
    /// changing how one thing is drawn never shifts the others.
    public static func stream(_ seed: UInt64, _ purpose: String) -> SplitMix64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325  // FNV-1a over the purpose
        for byte in purpose.utf8 { h = (h ^ UInt64(byte)) &* 0x100_0000_01b3 }
        var mixer = SplitMix64(seed: seed ^ h)
        return SplitMix64(seed: mixer.next())
    }

    /// A multiple of `alignment` in [low, high] (both inclusive, already aligned).
    public mutating func aligned(in low: UInt64, _ high: UInt64, alignment: UInt64) -> UInt64 {
        let slots = (high - low) / alignment
        return low + (slots == .max ? next() : next(upperBound: slots + 1)) * alignment
    }

    public mutating func bytes(_ count: Int) -> [UInt8] {
        var result = [UInt8](repeating: 0, count: count)
        var i = 0
        while i < count {
            var word = next()
            for _ in 0 ..< min(8, count - i) { result[i] = UInt8(truncatingIfNeeded: word); word >>= 8; i += 1 }
        }
        return result
    }
}
