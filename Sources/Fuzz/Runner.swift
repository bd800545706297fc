import Foundation
import Run

/// Where a campaign's JSONL lines go; one call per line. A sink that cannot take more says why,
/// and the campaign stops after the runs under way.
public protocol RecordSink: AnyObject, Sendable {
    func write(_ line: [UInt8]) -> SinkStatus
}

public enum SinkStatus: Equatable, Sendable {
    case written
    /// The reader of a pipe went away (EPIPE): nobody wants more lines.
    case readerGone
    /// The write failed for good (ENOSPC, EIO…): the message names the file and errno's text.
    case failed(String)
}

/// Why a campaign ended before its last run (nil: it ran them all).
public enum StopReason: Equatable, Sendable {
    case interrupted
    case readerGone
    case sinkFailed(String)
}

/// One run's place on a picture of the campaign: where it was loaded and what happened.
public struct CampaignMark: Sendable, Equatable {
    public var address: UInt64
    public var verdict: Verdict
}

/// A finished (or stopped) campaign, summarized in memory that does not grow with the runs.
public struct CampaignResult: Sendable {
    public var summary: CampaignSummary
    public var stopReason: StopReason?
    /// Per file, runs 0 ..< `markLimit` (nil where a run did not happen): a bounded sample.
    public var marks: [[CampaignMark?]] = []
    /// Per file, bit `index` set when run `index` had the expected verdict: what bisection needs
    /// (the highest expected address below a failure), at one bit a run.
    var expectedRuns: [[UInt64]]

    /// The record findBoundary needs for `failure`: the expected run with the highest load address
    /// below the failure's example, recomputed from the seed (addresses are drawn, not stored).
    public func boundaryRecords(for failure: CampaignSummary.Failure, in campaign: Campaign) -> [FuzzRecord] {
        guard let file = campaign.files.firstIndex(where: { $0.name == failure.file }), file < expectedRuns.count else { return [] }
        var best: FuzzRecord?
        for (word, bits) in expectedRuns[file].enumerated() where bits != 0 {
            for bit in 0 ..< 64 where bits & (1 << UInt64(bit)) != 0 {
                let index = word * 64 + bit
                let seed = campaign.runSeed(file: file, index: index)
                guard let address = campaign.drawAddress(for: campaign.files[file], seed: seed) else { continue }
                let limit = failure.example.loadAddress
                guard address < limit, best.map({ address > $0.loadAddress }) ?? true else { continue }
                best = FuzzRecord(file: failure.file, index: index, seed: seed, loadAddress: address,
                                  addressClass: AddressClass.name(of: address), verdict: campaign.expected,
                                  expected: campaign.expected, message: "", instructions: 0)
            }
        }
        return best.map { [$0] } ?? []
    }
}

/// Runs a campaign on `jobs` threads, one engine per thread and no shared mutable state
/// but the work counter, the summary and the JSONL sink, each behind the one lock.
public final class CampaignRunner: @unchecked Sendable {
    public let campaign: Campaign
    private let lock = NSLock()
    private var next = 0
    private let sink: RecordSink?
    /// Extra fields written into every JSONL line (the campaign's identity).
    private let lineFields: [String: String]
    /// Set from a signal handler (async-signal-safe: a plain store) or another thread: workers
    /// finish their current run and stop.
    public nonisolated(unsafe) static var stopRequested = false

    public private(set) var completed = 0
    public private(set) var failures = 0
    private var stopReason: StopReason?
    private var builder = CampaignSummary.Builder()
    private var expectedRuns: [[UInt64]]
    /// Keep the load address and verdict of runs 0 ..< markLimit of every file (for pictures).
    public var markLimit = 0 {
        didSet { marks = campaign.files.map { _ in Array(repeating: nil, count: max(0, min(markLimit, campaign.runs))) } }
    }
    private var marks: [[CampaignMark?]] = []
    /// Only for `run()`: every record, in work order.
    private var records: [FuzzRecord?] = []
    private var keepRecords = false

    public init(campaign: Campaign, sink: RecordSink?, lineFields: [String: String] = [:]) {
        self.campaign = campaign
        self.sink = sink
        self.lineFields = lineFields
        self.expectedRuns = campaign.files.map { _ in [UInt64](repeating: 0, count: (campaign.runs + 63) / 64) }
    }

    /// Compatibility: a FileHandle sink (one write per line).
    public convenience init(campaign: Campaign, jsonl: FileHandle?) {
        self.init(campaign: campaign, sink: jsonl.map(FileHandleSink.init))
    }

    /// Runs this shard's items: files × runs, every `shard.count`-th from `shard.index`.
    public var total: Int {
        let all = campaign.files.count * campaign.runs
        let (index, count) = campaign.shard
        return all > index ? (all - index + count - 1) / count : 0
    }

    /// The (file, index) of this shard's `slot`-th item (as `campaign.work[slot]`, without the array).
    func item(_ slot: Int) -> (file: Int, index: Int) {
        let global = campaign.shard.index + slot * campaign.shard.count
        return (global / campaign.runs, global % campaign.runs)
    }

    /// Runs everything (or until stopped) and returns every record: memory grows with the runs,
    /// for tests and benchmarks. `fuzz` uses `summarize`.
    public func run(progress: (@Sendable (_ completed: Int, _ failures: Int) -> Void)? = nil) -> [FuzzRecord] {
        keepRecords = true
        records = Array(repeating: nil, count: total)
        _ = summarize(progress: progress)
        return records.compactMap { $0 }
    }

    /// Runs everything (or until stopped: Ctrl-C, the sink's reader gone or failed) and returns the
    /// summary so far, built as records arrive; memory stays flat however many runs there are.
    public func summarize(progress: (@Sendable (_ completed: Int, _ failures: Int) -> Void)? = nil) -> CampaignResult {
        let threads = max(1, min(campaign.jobs, total))
        // The calling thread is one of the workers: a thread left waiting on a DispatchGroup
        // was measured spinning a whole core on Linux, which halved a 2-core campaign.
        DispatchQueue.concurrentPerform(iterations: threads) { _ in worker(progress) }
        lock.lock()
        defer { lock.unlock() }
        if stopReason == nil && CampaignRunner.stopRequested { stopReason = .interrupted }
        return CampaignResult(summary: builder.summary, stopReason: stopReason, marks: marks, expectedRuns: expectedRuns)
    }

    private func worker(_ progress: (@Sendable (Int, Int) -> Void)?) {
        let encoder = JSONEncoder.sorted
        let total = self.total
        while !CampaignRunner.stopRequested {
            lock.lock()
            let slot = next
            next += 1
            let stopped = stopReason != nil
            lock.unlock()
            guard slot < total, !stopped else { return }
            let (file, index) = item(slot)
            let record = campaign.execute(file: file, index: index)
            let line = sink != nil ? (try? encoder.encode(JSONLLine(record: record, fields: lineFields))).map { $0 + [0x0a] } : nil
            lock.lock()
            builder.add(record)
            if keepRecords { records[slot] = record }
            if file < marks.count, index < marks[file].count {
                marks[file][index] = CampaignMark(address: record.loadAddress, verdict: record.verdict)
            }
            if !record.unexpected, file < expectedRuns.count, index / 64 < expectedRuns[file].count {
                expectedRuns[file][index / 64] |= 1 << UInt64(index % 64)
            }
            completed += 1
            if record.unexpected { failures += 1 }
            // One write(2) per run: a killed campaign keeps whole lines, and O_APPEND keeps two
            // campaigns appending to one file from tearing each other's.
            if let line, let sink, stopReason == nil {
                switch sink.write([UInt8](line)) {
                case .written: break
                case .readerGone: stopReason = .readerGone
                case .failed(let message): stopReason = .sinkFailed(message)
                }
            }
            progress?(completed, failures)
            lock.unlock()
        }
    }
}

/// A record as one JSONL line: its own keys plus the campaign's identity fields.
struct JSONLLine: Encodable {
    var record: FuzzRecord
    var fields: [String: String]

    struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    func encode(to encoder: Encoder) throws {
        try record.encode(to: encoder)
        var container = encoder.container(keyedBy: Key.self)
        for (key, value) in fields { try container.encode(value, forKey: Key(stringValue: key)) }
    }
}

/// The old sink: a FileHandle (tests). Errors are not reported.
final class FileHandleSink: RecordSink, @unchecked Sendable {
    let handle: FileHandle
    init(_ handle: FileHandle) { self.handle = handle }
    func write(_ line: [UInt8]) -> SinkStatus {
        do { try handle.write(contentsOf: line) } catch { return .failed("\(error)") }
        return .written
    }
}

extension JSONEncoder {
    public static var sorted: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }
}
