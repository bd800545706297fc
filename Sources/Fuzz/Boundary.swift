import ELF
import Loader
import Run

extension Campaign {
    /// Finds where a failure starts: the highest run with the expected verdict below the failure's
    /// lowest failing address, then bisection over buf_align-aligned addresses between the two,
    /// replaying the failing run's seed at each probe.
    public func findBoundary(_ failure: inout CampaignSummary.Failure, in records: [FuzzRecord]) {
        guard let file = files.firstIndex(where: { $0.name == failure.file }) else { return }
        // The harness failing says nothing about addresses: no bisection, no reproducer address.
        if failure.verdict == .harnessError {
            failure.boundaryNote = "the harness could not run these placements; not a verdict on the purgatory"
            return
        }
        let failing = failure.example
        let align = AnyLoader(file: files[file], kind: loader, entryRule: entryRule).setupBuffer().bufAlign
        func sameFailure(at address: UInt64) -> Bool? {
            var s = scenario(file: file, index: failing.index)
            s.loadAddress = address
            guard let report = try? s.run() else { return nil }
            return report.verdict == failure.verdict && CampaignSummary.pattern(report.message) == failure.pattern
        }
        var low = records.filter { $0.file == failure.file && $0.verdict == $0.expected && $0.loadAddress < failing.loadAddress }
            .map(\.loadAddress).max()
        if low == nil {
            let lowest = (max(Campaign.lowestAddress, PurgatoryLoader.minimumAddress) + align - 1) / align * align
            if lowest < failing.loadAddress, sameFailure(at: lowest) == false { low = lowest }
        }
        guard var below = low else {
            failure.boundaryNote = "fails at every address tried, down to \(hex(failing.loadAddress))"
            return
        }
        let start = below
        var above = failing.loadAddress
        while above - below > align {
            let middle = below + (above - below) / 2 / align * align
            guard let fails = sameFailure(at: middle) else { break }
            if fails { above = middle } else { below = middle }
        }
        failure.boundary = above
        failure.boundaryNote = "\(failure.verdict.rawValue) for load addresses ≥ \(hex(above)) (bisected between \(hex(start)) and \(hex(failing.loadAddress)))"
    }
}
