import ELF
import Foundation
import Run

/// Placements per second of a fuzz campaign (small segments), with 1 job and with `jobs`.
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
        public var bytesHashed: UInt64
    }

    public func run() -> Result {
        func rate(_ jobs: Int) -> (Double, UInt64) {
            var campaign = Campaign(files: [file], runs: runs, seed: 0x5eed)
            campaign.jobs = jobs
            let started = Date()
            let records = CampaignRunner(campaign: campaign, jsonl: nil).run()
            let bytes = (try? campaign.scenario(file: 0, index: 0).run().bytesHashed) ?? 0
            return (Double(records.count) / Date().timeIntervalSince(started), bytes)
        }
        let (one, bytes) = rate(1)
        let (all, _) = rate(jobs)
        return Result(runs: runs, jobs: jobs, oneJob: one, allJobs: all, bytesHashed: bytes)
    }
}
