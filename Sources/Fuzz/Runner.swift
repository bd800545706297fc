import Foundation
import Run

/// Runs a campaign on `jobs` threads, one engine per thread and no shared mutable state
/// but the work counter, the result slots and the JSONL sink, each behind its lock.
public final class CampaignRunner: @unchecked Sendable {
    public let campaign: Campaign
    private let lock = NSLock()
    private var next = 0
    private var records: [FuzzRecord?]
    private let sink: FileHandle?
    private let work: [(file: Int, index: Int)]
    /// Set from a signal handler or another thread: workers finish their current run and stop.
    public nonisolated(unsafe) static var stopRequested = false

    public private(set) var completed = 0
    public private(set) var failures = 0

    public init(campaign: Campaign, jsonl: FileHandle?) {
        self.campaign = campaign
        self.sink = jsonl
        self.work = campaign.work
        self.records = Array(repeating: nil, count: work.count)
    }

    public var total: Int { work.count }

    /// Runs everything (or until stopped); `progress` is called from worker threads under the lock.
    public func run(progress: (@Sendable (_ completed: Int, _ failures: Int) -> Void)? = nil) -> [FuzzRecord] {
        let threads = max(1, min(campaign.jobs, work.count))
        // The calling thread is one of the workers: a thread left waiting on a DispatchGroup
        // was measured spinning a whole core on Linux, which halved a 2-core campaign.
        DispatchQueue.concurrentPerform(iterations: threads) { _ in worker(progress) }
        return records.compactMap { $0 }
    }

    private func worker(_ progress: (@Sendable (Int, Int) -> Void)?) {
        while !CampaignRunner.stopRequested {
            lock.lock()
            let slot = next
            next += 1
            lock.unlock()
            guard slot < work.count else { return }
            let record = campaign.execute(file: work[slot].file, index: work[slot].index)
            let line = sink != nil ? (try? JSONEncoder.sorted.encode(record)).map { $0 + [0x0a] } : nil
            lock.lock()
            records[slot] = record
            completed += 1
            if record.verdict != record.expected { failures += 1 }
            if let line { sink?.write(line) }  // one write(2) per run: a killed campaign keeps whole lines
            progress?(completed, failures)
            lock.unlock()
        }
    }
}

extension JSONEncoder {
    public static var sorted: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }
}
