/// Several purgatories' accountings side by side, functions matched by name, with ratios
/// against the first: what `purgatory-harness compare` prints.
public struct Comparison: Codable, Sendable {
    public struct Column: Codable, Sendable, Equatable {
        public var file: String
        public var verdict: Verdict
        public var message: String
        public var loadAddress: UInt64
        /// nil when the loader refused the file: nothing ran.
        public var instructions: UInt64?
        public var bytesHashed: UInt64
        public var instructionsPerByte: Double?
        public var hashingInstructionsPerByte: Double?
        enum CodingKeys: String, CodingKey {
            case file, verdict, message, instructions
            case loadAddress = "load_address", bytesHashed = "bytes_hashed"
            case instructionsPerByte = "instructions_per_byte", hashingInstructionsPerByte = "hashing_instructions_per_byte"
        }
    }
    public enum Kind: String, Codable, Sendable { case function, phase, total }
    public struct Row: Codable, Sendable, Equatable {
        public var kind: Kind
        public var name: String
        /// One per file; nil where the file has no such function (or was not run).
        public var counts: [UInt64?]
        /// count / the first file's count; nil where either is missing or the first is 0.
        public var ratios: [Double?]
        /// count − the first file's count (a missing count is 0).
        public var differences: [Int64]
    }

    public var seed: UInt64
    public var loadAddress: UInt64
    public var segments: [RunReport.SegmentInfo]
    public var files: [Column]
    /// Functions (largest in the first file first, then the others' own), phases, total.
    public var rows: [Row]
    /// Every file's accounting, as `run --json` has it.
    public var accountings: [Accounting?]

    enum CodingKeys: String, CodingKey {
        case seed, segments, files, rows, accountings
        case loadAddress = "load_address"
    }

    public init(reports: [RunReport]) {
        seed = reports.first?.seed ?? 0
        loadAddress = reports.first?.loadAddress ?? 0
        segments = reports.first?.segments ?? []
        files = reports.map {
            Column(file: $0.file, verdict: $0.verdict, message: $0.message, loadAddress: $0.loadAddress,
                   instructions: $0.verdict == .loadError ? nil : $0.instructions, bytesHashed: $0.bytesHashed, instructionsPerByte: $0.instructionsPerByte,
                   hashingInstructionsPerByte: $0.accounting?.hashingInstructionsPerByte)
        }
        let accountings = reports.map(\.accounting)
        self.accountings = accountings
        func row(_ kind: Kind, _ name: String, _ counts: [UInt64?]) -> Row {
            let first = counts.first ?? nil
            return Row(kind: kind, name: name, counts: counts,
                       ratios: counts.map { c in c.flatMap { c in first.flatMap { $0 == 0 ? nil : Double(c) / Double($0) } } },
                       differences: counts.map { Int64(bitPattern: ($0 ?? 0) &- (first ?? 0)) })
        }
        var names: [String] = []
        var best: [String: UInt64] = [:]
        for (i, a) in accountings.enumerated() {
            for f in a?.functions ?? [] where best[f.name] == nil {
                names.append(f.name)
                // Rows sort by the first file's count, then by the largest count elsewhere.
                best[f.name] = i == 0 ? f.instructions : 0
            }
        }
        let largest = Dictionary(uniqueKeysWithValues: names.map { name in
            (name, accountings.compactMap { $0?.functions.first { $0.name == name }?.instructions }.max() ?? 0)
        })
        names.sort { (best[$0]!, largest[$0]!, $1) > (best[$1]!, largest[$1]!, $0) }
        rows = names.map { name in row(.function, name, accountings.map { $0?.functions.first { $0.name == name }?.instructions }) }
        for phase in Accounting.PhaseName.allCases {
            rows.append(row(.phase, phase.rawValue, accountings.map { $0?.phase(phase).instructions }))
        }
        rows.append(row(.total, "total", reports.map(\.instructions)))
    }
}
