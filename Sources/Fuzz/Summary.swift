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
    }

    public var runs: Int
    public var unexpected: Int
    public var cells: [Cell]
    public var failures: [Failure]

    public init(_ records: [FuzzRecord]) {
        runs = records.count
        unexpected = records.filter { $0.verdict != $0.expected }.count
        var counts: [String: Cell] = [:]
        for r in records {
            let key = "\(r.file)\u{0}\(r.addressClass)\u{0}\(r.verdict.rawValue)"
            counts[key, default: Cell(file: r.file, addressClass: r.addressClass, verdict: r.verdict, count: 0)].count += 1
        }
        let order = AddressClass.reporting.map(\.name)
        cells = counts.values.sorted {
            ($0.file, order.firstIndex(of: $0.addressClass) ?? 9, $0.verdict.rawValue)
                < ($1.file, order.firstIndex(of: $1.addressClass) ?? 9, $1.verdict.rawValue)
        }
        var groups: [String: Failure] = [:]
        for r in records where r.verdict != r.expected {
            let pattern = CampaignSummary.pattern(r.message)
            let key = "\(r.file)\u{0}\(r.verdict.rawValue)\u{0}\(pattern)"
            if var existing = groups[key] {
                existing.count += 1
                if r.loadAddress < existing.example.loadAddress { existing.example = r }
                groups[key] = existing
            } else {
                groups[key] = Failure(file: r.file, verdict: r.verdict, pattern: pattern, count: 1, example: r)
            }
        }
        failures = groups.values.sorted { ($0.file, $0.example.loadAddress) < ($1.file, $1.example.loadAddress) }
    }

    /// The message with every hex and decimal number replaced by `#`.
    static func pattern(_ message: String) -> String {
        message.replacingOccurrences(of: "0x[0-9a-f]+", with: "#", options: .regularExpression)
            .replacingOccurrences(of: "\\b[0-9]+\\b", with: "#", options: .regularExpression)
    }
}
