import ELF
import Foundation
import Machine
import Run

/// Placements per second of a fuzz campaign (small segments), with 1 job and with `jobs`, and
/// where one placement's time goes.
public struct PlacementBenchmark: Sendable {
    public var file: ELFFile
    public var runs = 400
    public var jobs = ProcessInfo.processInfo.activeProcessorCount

    public init(file: ELFFile) { self.file = file }

    public struct Result: Sendable {
        public var runs: Int
        public var jobs: Int
        public var oneJob: Double
        public var allJobs: Double
        /// Placements per second of the process's CPU time with one job: per core, whatever
        /// else the machine is running.
        public var oneJobPerCPUSecond: Double
        public var bytesHashed: UInt64
    }

    public func run() -> Result {
        func rate(_ jobs: Int) -> (Double, Double, UInt64) {
            var campaign = Campaign(files: [file], runs: runs, seed: 0x5eed)
            campaign.jobs = jobs
            let cpu = Self.cpuSeconds()
            let started = Date()
            let records = CampaignRunner(campaign: campaign, jsonl: nil).run()
            let wall = Date().timeIntervalSince(started), used = Self.cpuSeconds() - cpu
            let bytes = (try? campaign.scenario(file: 0, index: 0).run().bytesHashed) ?? 0
            return (Double(records.count) / wall, Double(records.count) / max(used, 1e-9), bytes)
        }
        let (one, perCPU, bytes) = rate(1)
        let (all, _, _) = rate(jobs)
        return Result(runs: runs, jobs: jobs, oneJob: one, allJobs: all, oneJobPerCPUSecond: perCPU, bytesHashed: bytes)
    }

    /// Mean time per placement of the campaign's first `runs` placements, run one after another
    /// on this thread, by phase (the report's timings), with pooled engines and with a fresh
    /// engine every time, alternated.
    public struct Breakdown: Sendable {
        public var runs: Int
        public var load: Double, setup: Double, emulation: Double, teardown: Double, results: Double
        /// Outside `Scenario.run`'s phases: drawing the placement, the campaign's record.
        public var other: Double
        public var total: Double
        public var cpu: Double
        public var placementsPerSecond: Double { 1 / total }
    }

    public func breakdown() -> (reused: Breakdown, fresh: Breakdown) {
        let campaign = Campaign(files: [file], runs: runs, seed: 0x5eed)
        let reuse = LongModeMachine.engineReuse
        defer { LongModeMachine.engineReuse = reuse }
        // load, setup, emulation, teardown, results, other, total, cpu
        var sums = [true: [Double](repeating: 0, count: 8), false: [Double](repeating: 0, count: 8)]
        var counts = [true: 0, false: 0]
        for i in 0 ..< runs {
            // Alternate which side goes first, so neither always follows the other.
            for reused in i % 2 == 0 ? [true, false] : [false, true] {
                LongModeMachine.engineReuse = reused
                let cpu = Self.cpuSeconds()
                let started = Date()
                guard let report = try? campaign.scenario(file: 0, index: i).run() else { continue }
                let wall = Date().timeIntervalSince(started), used = Self.cpuSeconds() - cpu
                let t = report.timings
                for (k, v) in [t.load, t.setup, t.emulation, t.teardown, t.results, wall - t.total, wall, used].enumerated() {
                    sums[reused]![k] += v
                }
                counts[reused]! += 1
            }
        }
        func mean(_ reused: Bool) -> Breakdown {
            let n = Double(max(counts[reused]!, 1)), s = sums[reused]!.map { $0 / n }
            return Breakdown(runs: counts[reused]!, load: s[0], setup: s[1], emulation: s[2], teardown: s[3], results: s[4],
                             other: s[5], total: s[6], cpu: s[7])
        }
        return (mean(true), mean(false))
    }

    /// User + system CPU time of this process so far.
    static func cpuSeconds() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) * 1e-6
            + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) * 1e-6
    }
}
