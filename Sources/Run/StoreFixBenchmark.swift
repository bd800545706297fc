import Machine

/// Guest throughput with the store fix (`StoreFix`) on and off, runs alternated in one process
/// so the ratio means something on a noisy machine. Each case is an ordinary run (exact
/// counting and accounting, every run's default); the switch is restored afterwards.
public struct StoreFixBenchmark: Sendable {
    public typealias Case = BenchmarkCase

    public var cases: [Case]
    /// On/off pairs per case; the fastest emulation of each side is kept.
    public var repeats = 2

    public init(cases: [Case]) { self.cases = cases }

    public struct Row: Sendable {
        public var name: String
        public var file: String
        public var bytes: UInt64
        public var instructions: UInt64
        public var onMBps: Double
        public var offMBps: Double
        /// Verdict, message, instruction and block counts and the accounting equal in every run, on and off.
        public var identical: Bool
        /// Wall time of all this case's runs.
        public var seconds: Double
        public var speedup: Double { onMBps / offMBps }
    }

    /// Throws when a run does not verify; a difference between on and off is reported in `identical`.
    public func run() throws(HarnessError) -> [Row] {
        let wasEnabled = StoreFix.isEnabled
        defer { StoreFix.setEnabled(wasEnabled) }
        var rows: [Row] = []
        for c in cases {
            var wall = Stopwatch()
            var best = [true: Double.infinity, false: Double.infinity]
            var first: RunReport?
            var identical = true
            for pass in 0 ..< max(repeats, 1) {
                // Alternate which side goes first, so neither always runs on a warm (or cold) cache.
                for enabled in pass % 2 == 0 ? [true, false] : [false, true] {
                    StoreFix.setEnabled(enabled)
                    let report = try c.scenario.run()
                    guard report.verdict == .verified else {
                        throw .badInput("bench: \(c.name): \(report.file) did not verify with the store fix \(enabled ? "on" : "off") (\(report.verdict.rawValue): \(report.message))")
                    }
                    if let first {
                        identical = identical && Self.sameOutcome(first, report)
                    } else {
                        first = report
                    }
                    best[enabled] = min(best[enabled]!, report.timings.emulation)
                }
            }
            let report = first!
            let megabytes = Double(report.bytesHashed) / 1e6
            rows.append(Row(name: c.name, file: report.file, bytes: report.bytesHashed, instructions: report.instructions,
                            onMBps: megabytes / best[true]!, offMBps: megabytes / best[false]!,
                            identical: identical, seconds: wall.split()))
        }
        return rows
    }

    static func sameOutcome(_ a: RunReport, _ b: RunReport) -> Bool {
        a.verdict == b.verdict && a.message == b.message && a.instructions == b.instructions
            && a.blocksExecuted == b.blocksExecuted && a.bytesHashed == b.bytesHashed && a.accounting == b.accounting
            && a.segments == b.segments && a.console == b.console
    }
}
