/// Sets of load addresses as sorted, disjoint, inclusive ranges of UInt64.
///
/// A 32-bit absolute relocation fits for a load address L when `L + k` (mod 2^64) lies in a
/// window of 2^32 values; solving for L gives one window shifted by -k, which may wrap past
/// 2^64 into two ranges. Intersecting those over every relocation gives where an object
/// loads cleanly.
public struct AddressSet: Equatable, Sendable {
    public var ranges: [ClosedRange<UInt64>]

    public static let all = AddressSet(ranges: [0 ... .max])
    public static let none = AddressSet(ranges: [])

    /// {L : (L + k) mod 2^64 ∈ [start, start + 2^32)} where `start` may wrap.
    static func shiftedWindow(start: UInt64, k: UInt64) -> AddressSet {
        let low = start &- k
        let high = low &+ 0xffff_ffff
        return low <= high ? AddressSet(ranges: [low ... high]) : AddressSet(ranges: [0 ... high, low ... .max])
    }

    public func intersection(_ other: AddressSet) -> AddressSet {
        var result: [ClosedRange<UInt64>] = []
        for a in ranges {
            for b in other.ranges where a.overlaps(b) {
                result.append(max(a.lowerBound, b.lowerBound) ... min(a.upperBound, b.upperBound))
            }
        }
        return AddressSet(ranges: result.sorted { $0.lowerBound < $1.lowerBound })
    }

    public func contains(_ value: UInt64) -> Bool { ranges.contains { $0.contains(value) } }

    /// The same set restricted to multiples of `alignment`, each range shrunk to aligned ends.
    public func aligned(to alignment: UInt64) -> AddressSet {
        AddressSet(ranges: ranges.compactMap { r in
            let (up, overflow) = r.lowerBound.addingReportingOverflow(alignment - 1)
            guard !overflow else { return nil }
            let low = up / alignment * alignment, high = r.upperBound / alignment * alignment
            return low <= high ? low ... high : nil
        })
    }

    /// The smallest multiple of `alignment` at or above `from` that is not in the set.
    public func firstExcluded(from: UInt64, alignment: UInt64) -> UInt64? {
        var candidate = from
        for r in ranges.sorted(by: { $0.lowerBound < $1.lowerBound }) where r.upperBound >= candidate {
            if r.lowerBound > candidate { return candidate }
            let (next, overflow) = (r.upperBound / alignment).addingReportingOverflow(1)
            guard !overflow else { return nil }
            let (value, overflow2) = next.multipliedReportingOverflow(by: alignment)
            if overflow2 { return nil }
            candidate = value
        }
        return candidate
    }
}
