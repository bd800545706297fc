import Machine

/// One scenario a side-by-side benchmark runs both ways (store fix on/off, --fast-hash or not).
public struct BenchmarkCase: Sendable {
    public var name: String
    public var scenario: Scenario
    public init(name: String, scenario: Scenario) {
        self.name = name
        self.scenario = scenario
    }
}

/// `--fast-hash` against full emulation on the same scenarios, in one process: the two runs of
/// each case alternate, and their reports must agree on everything but time.
public struct FastHashBenchmark: Sendable {
    public typealias Case = BenchmarkCase

    public var cases: [Case]
    /// Pairs per case; the fastest of each side is kept.
    public var repeats = 1

    public init(cases: [Case]) { self.cases = cases }

    public struct Row: Sendable {
        public var name: String
        public var file: String
        public var bytes: UInt64
        public var verdict: Verdict
        public var instructions: UInt64
        /// Emulation phase (`timings.emulation`) and whole run (`timings.total`), fastest of the repeats.
        public var fullEmulation: Double
        public var fastEmulation: Double
        public var fullTotal: Double
        public var fastTotal: Double
        /// Verdict, message, instruction and block counts, console and accounting equal in every run.
        public var identical: Bool
        public var fastHash: FastHashInfo?
        public var speedup: Double { fullEmulation / fastEmulation }
        public var totalSpeedup: Double { fullTotal / fastTotal }
    }

    public func run() throws(HarnessError) -> [Row] {
        var rows: [Row] = []
        for c in cases {
            var full = c.scenario, fast = c.scenario
            full.fastHash = false
            fast.fastHash = true
            var best = [false: (Double.infinity, Double.infinity), true: (Double.infinity, Double.infinity)]
            var first: RunReport?, fastReport: RunReport?
            var identical = true
            for pass in 0 ..< max(repeats, 1) {
                for useFast in pass % 2 == 0 ? [false, true] : [true, false] {
                    let report = try (useFast ? fast : full).run()
                    if useFast { fastReport = report }
                    if let first { identical = identical && Self.sameOutcome(first, report) } else { first = report }
                    best[useFast] = (min(best[useFast]!.0, report.timings.emulation), min(best[useFast]!.1, report.timings.total))
                }
            }
            let r = first!
            rows.append(Row(name: c.name, file: r.file, bytes: r.bytesHashed, verdict: r.verdict, instructions: r.instructions,
                            fullEmulation: best[false]!.0, fastEmulation: best[true]!.0, fullTotal: best[false]!.1,
                            fastTotal: best[true]!.1, identical: identical, fastHash: fastReport?.fastHash))
        }
        return rows
    }

    static func sameOutcome(_ a: RunReport, _ b: RunReport) -> Bool {
        StoreFixBenchmark.sameOutcome(a, b) && a.crossCheckInstructions == b.crossCheckInstructions
    }
}
