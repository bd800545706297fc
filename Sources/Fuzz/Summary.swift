import Foundation
import Loader
import Run

/// Counts per file, address class and verdict, and the distinct failures.
public struct CampaignSummary: Codable, Sendable, Equatable {
    public struct Cell: Codable, Sendable, Equatable {
        public var file: String
        public var addressClass: String
        public var verdict: Verdict
        public var count: Int
        enum CodingKeys: String, CodingKey { case file, verdict, count, addressClass = "address_class" }
    }
    /// One kind of failure: same file, verdict and message once numbers are blanked.
    public struct Failure: Codable, Sendable, Equatable {
        public var file: String
        public var verdict: Verdict
        public var pattern: String
        public var count: Int
        /// The run with the lowest failing address: the one the reproducer replays.
        public var example: FuzzRecord
        /// "≥ 0x7ffff000": where the verdict changes, found by bisection (nil when not searched or not found).
        public var boundary: UInt64?
        public var boundaryNote: String?

        enum CodingKeys: String, CodingKey {
            case file, verdict, pattern, count, example, boundary
            case boundaryNote = "boundary_note"
        }
    }

    public var runs: Int
    public var unexpected: Int
    public var cells: [Cell]
    public var failures: [Failure]

    public init(_ records: [FuzzRecord]) {
        var builder = Builder()
        for r in records { builder.add(r) }
        self = builder.summary
    }

    /// The summary built one record at a time, in constant memory per distinct cell and failure
    /// pattern (never per run), and independent of the order records arrive in: the example of a
    /// failure is the run with the lowest (address, index), whoever finished first.
    public struct Builder: Sendable {
        public private(set) var runs = 0
        public private(set) var unexpected = 0
        private var counts: [String: Cell] = [:]
        private var groups: [String: Failure] = [:]
        /// Message patterns by message: blanking numbers with regular expressions costs more than
        /// the run for a load error, and campaigns repeat few distinct messages… until addresses
        /// appear in them; the cache is cleared when it grows, so memory stays flat.
        private var patterns: [String: String] = [:]

        public init() {}

        public mutating func add(_ r: FuzzRecord) {
            runs += 1
            let key = "\(r.file)\u{0}\(r.addressClass)\u{0}\(r.verdict.rawValue)"
            counts[key, default: Cell(file: r.file, addressClass: r.addressClass, verdict: r.verdict, count: 0)].count += 1
            guard r.unexpected else { return }
            unexpected += 1
            let pattern: String
            if let known = patterns[r.message] {
                pattern = known
            } else {
                pattern = CampaignSummary.pattern(r.message)
                if patterns.count >= 4096 { patterns.removeAll(keepingCapacity: true) }
                patterns[r.message] = pattern
            }
            let group = "\(r.file)\u{0}\(r.verdict.rawValue)\u{0}\(pattern)"
            if var existing = groups[group] {
                existing.count += 1
                if (r.loadAddress, r.index) < (existing.example.loadAddress, existing.example.index) { existing.example = r }
                groups[group] = existing
            } else {
                groups[group] = Failure(file: r.file, verdict: r.verdict, pattern: pattern, count: 1, example: r)
            }
        }

        public var summary: CampaignSummary {
            let order = AddressClass.reporting.map(\.name)
            let cells = counts.values.sorted {
                ($0.file, order.firstIndex(of: $0.addressClass) ?? 9, $0.verdict.rawValue)
                    < ($1.file, order.firstIndex(of: $1.addressClass) ?? 9, $1.verdict.rawValue)
            }
            let failures = groups.values.sorted {
                ($0.file, $0.example.loadAddress, $0.pattern) < ($1.file, $1.example.loadAddress, $1.pattern)
            }
            return CampaignSummary(runs: runs, unexpected: unexpected, cells: cells, failures: failures)
        }
    }

    public init(runs: Int, unexpected: Int, cells: [Cell], failures: [Failure]) {
        self.runs = runs
        self.unexpected = unexpected
        self.cells = cells
        self.failures = failures
    }

    /// The message with every hex and decimal number replaced by `#`.
    static func pattern(_ message: String) -> String {
        message.replacingOccurrences(of: "0x[0-9a-f]+", with: "#", options: .regularExpression)
            .replacingOccurrences(of: "\\b[0-9]+\\b", with: "#", options: .regularExpression)
    }
}
