import ELF
import Loader
import Run

extension Campaign {
    /// Finds where a failure starts: the highest run with the expected verdict below the failure's
    /// lowest failing address, then bisection between the two over the buf_align-aligned load
    /// addresses inside the campaign's ranges (never outside them), replaying the failing run's
    /// seed at each probe.
    public func findBoundary(_ failure: inout CampaignSummary.Failure, in records: [FuzzRecord]) {
        guard let file = files.firstIndex(where: { $0.name == failure.file }) else { return }
        // The harness failing says nothing about addresses: no bisection, no reproducer address.
        if failure.verdict == .harnessError {
            failure.boundaryNote = "the harness could not run these placements; not a verdict on the purgatory"
            return
        }
        let failing = failure.example
        let layout = AnyLoader(file: files[file], kind: loader, entryRule: entryRule ?? kernel.entryRule).setupBuffer()
        // The union of the ranges: adjacent ones (the default's powers of two) join, so addresses
        // that straddle two of them, which no run draws, are still probed.
        var union: [AddressClass] = []
        for range in drawRanges.sorted(by: { $0.low < $1.low }) {
            if let last = union.last, range.low <= last.high {
                union[union.count - 1].high = max(last.high, range.high)
            } else {
                union.append(range)
            }
        }
        let space = SlotSpace(union.compactMap { slots(in: $0, layout) }, alignment: layout.bufAlign)
        guard let failingSlot = space.position(of: failing.loadAddress) else { return }
        func sameFailure(at address: UInt64) -> Bool? {
            var s = scenario(file: file, index: failing.index)
            s.loadAddress = address
            guard let report = try? s.run() else { return nil }
            let judged = judge(report)
            return judged.unexpected && judged.verdict == failure.verdict && CampaignSummary.pattern(judged.message) == failure.pattern
        }
        var low = records.filter { $0.file == failure.file && !$0.unexpected && $0.loadAddress < failing.loadAddress }
            .map(\.loadAddress).max().flatMap(space.position(of:))
        if low == nil, failingSlot > 0, sameFailure(at: space.address(at: 0)) == false { low = 0 }
        guard var below = low else {
            failure.boundaryNote = "fails at every address tried, down to \(hex(failing.loadAddress))"
            return
        }
        let start = space.address(at: below)
        var above = failingSlot
        while above - below > 1 {
            let middle = below + (above - below) / 2
            guard let fails = sameFailure(at: space.address(at: middle)) else { break }
            if fails { above = middle } else { below = middle }
        }
        let boundary = space.address(at: above)
        failure.boundary = boundary
        let gap = above - below > 1 ? " (bisection stopped: the harness could not run a probe)"
            : space.address(at: below) &+ layout.bufAlign != boundary ? " (the campaign's ranges hold no address between \(hex(space.address(at: below))) and it)" : ""
        failure.boundaryNote = "\(failure.verdict.rawValue) for load addresses ≥ \(hex(boundary)) (bisected between \(hex(start)) and \(hex(failing.loadAddress)))" + gap
    }
}

/// The aligned load addresses of a campaign's ranges as one sorted sequence of positions, so
/// that bisection never leaves them.
struct SlotSpace {
    /// Disjoint, sorted runs of aligned addresses [first, last], with the position of each first.
    private var runs: [(first: UInt64, last: UInt64, position: UInt64)] = []
    private let alignment: UInt64

    /// `intervals`: sorted-able, disjoint runs of aligned addresses.
    init(_ intervals: [(first: UInt64, last: UInt64)], alignment: UInt64) {
        self.alignment = max(alignment, 1)
        var position: UInt64 = 0
        for (first, last) in intervals.sorted(by: { $0.first < $1.first }) {
            runs.append((first, last, position))
            position &+= (last - first) / self.alignment &+ 1
        }
    }

    func position(of address: UInt64) -> UInt64? {
        guard let run = runs.last(where: { $0.first <= address }), address <= run.last,
              (address - run.first) % alignment == 0 else { return nil }
        return run.position + (address - run.first) / alignment
    }

    func address(at position: UInt64) -> UInt64 {
        guard let run = runs.last(where: { $0.position <= position }) else { return 0 }
        return run.first &+ (position - run.position) &* alignment
    }
}
