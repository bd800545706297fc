import Disassembly
import ELF
import Loader
import Machine

/// Where a run's exact instruction count went: per function of the purgatory and per phase.
/// Both always add up to the run's `instructions`, whatever the verdict.
///
/// Functions come from the block table: each translated block's count times its executions,
/// charged to the function holding its first byte (`CodeMap`). A block whose bytes cross into
/// another function is split per instruction with Capstone (`splitBlocks` counts them); a fault
/// inside the last block takes back the instructions that did not run.
///
/// Phases come from the order of execution (the machine records each change of function, not
/// each block), by these rules, in this order:
///  - hand-off: from the first block of `entry64` (kernel, kexec-tools and our purgatories all
///    name it so) to the kernel entry;
///  - hashing: from the first to the last block, before the hand-off, of a hashing function —
///    a name containing "sha", "compress" or "transform" and none of "verify", "cmp",
///    "compare", "check" — with everything run in between (memcpy, the caller's loop);
///  - digest compare: after the last hashing block, before the hand-off (the compare and
///    anything the purgatory does after it: `functions` of the phase says what);
///  - entry and setup: before the first hashing block.
/// Name rules cannot see inlined code: when no hashing function ran, the report says so and
/// those instructions stay where the rules put them. A phase counts a block that crosses into
/// another function whole, in the phase of its first instruction.
public struct Accounting: Codable, Sendable, Equatable {
    public struct FunctionCount: Codable, Sendable, Equatable {
        public var name: String
        /// Relocated address of the function; nil for code outside the purgatory.
        public var address: UInt64?
        public var instructions: UInt64
        /// Blocks entered whose first instruction is in this function.
        public var blocksEntered: UInt64
        enum CodingKeys: String, CodingKey { case name, address, instructions, blocksEntered = "blocks_entered" }
    }
    public struct NameCount: Codable, Sendable, Equatable {
        public var name: String
        public var instructions: UInt64
    }
    public enum PhaseName: String, Codable, Sendable, CaseIterable {
        case setup = "entry-and-setup", hashing, compare = "digest-compare", handoff = "hand-off"
    }
    public struct Phase: Codable, Sendable, Equatable {
        public var name: PhaseName
        public var instructions: UInt64
        /// Which rule assigned these instructions, in words.
        public var rule: String
        /// The phase's instructions by function (by block start), largest first.
        public var functions: [NameCount]
    }

    /// Every function that ran (and the outside bucket if anything ran there), largest first.
    public var functions: [FunctionCount]
    /// The four phases, in execution order.
    public var phases: [Phase]
    /// Functions the hashing rule matched that ran.
    public var hashingFunctions: [String]
    /// Hashing-phase instructions per hashed byte.
    public var hashingInstructionsPerByte: Double?
    /// Translated blocks whose bytes cross a function boundary (split per instruction).
    public var splitBlocks: Int
    /// Changes of function the machine recorded (the length of the ordered record phases come from).
    public var functionTransitions: Int
    /// When cross-checking: whether the per-instruction hook's count per function equals this one.
    public var crossCheckAgrees: Bool?
    /// What the rules could not do (no hashing function, no entry64) and any disagreement found.
    public var notes: [String]

    enum CodingKeys: String, CodingKey {
        case functions, phases, notes
        case hashingFunctions = "hashing_functions", hashingInstructionsPerByte = "hashing_instructions_per_byte"
        case splitBlocks = "split_blocks", functionTransitions = "function_transitions"
        case crossCheckAgrees = "cross_check_agrees"
    }

    public static let outsideName = "(outside the purgatory)"
    public static let handoffFunction = "entry64"

    /// The hashing rule on one function name.
    public static func isHashing(_ name: String) -> Bool {
        let n = Array(name.lowercased().utf8)
        let hashing: [StaticString] = ["sha", "compress", "transform"], not: [StaticString] = ["verify", "cmp", "compare", "check"]
        return hashing.contains { contains(n, $0) } && !not.contains { contains(n, $0) }
    }

    /// Byte search: String.contains(String) goes through _StringProcessing's generic searcher,
    /// which was 2 % of a fuzz placement (perf).
    private static func contains(_ haystack: [UInt8], _ needle: StaticString) -> Bool {
        let count = needle.utf8CodeUnitCount
        guard haystack.count >= count else { return false }
        return needle.withUTF8Buffer { pattern in
            (0 ... haystack.count - count).contains { start in
                (0 ..< count).allSatisfy { haystack[start + $0] == pattern[$0] }
            }
        }
    }

    public func instructions(of function: String) -> UInt64 { functions.first { $0.name == function }?.instructions ?? 0 }
    public func phase(_ name: PhaseName) -> Phase { phases.first { $0.name == name }! }
}

extension Accounting {
    /// Attributes `outcome` (run with `map.pieces` as the machine's ranges) whose exact, trimmed
    /// count is `instructions`. `code` reads the bytes at an address, for splitting blocks.
    init(map: CodeMap, outcome: RunOutcome, instructions total: UInt64, bytesHashed: UInt64,
         code: (UInt64, Int) -> [UInt8]?) {
        let outside = map.functions.count  // index of the outside bucket
        let names = map.functions.map(\.name) + [Self.outsideName]
        func function(_ address: UInt64) -> Int { map.function(at: address) ?? outside }
        var notes: [String] = []
        lazy var decoder = Disassembler()  // only for a block that crosses a function boundary

        /// The functions of a block's instructions, or nil when the block lies in one function.
        func split(_ address: UInt64, _ bytes: UInt32, _ instructions: UInt32) -> [Int]? {
            if let p = map.pieceIndex(address), address &+ UInt64(bytes) <= map.pieces[p].end { return nil }
            if map.pieceIndex(address) == nil, map.pieceIndex(address &+ UInt64(bytes) &- 1) == nil,
               !map.pieces.contains(where: { $0.start > address && $0.start < address &+ UInt64(bytes) }) { return nil }
            guard let raw = code(address, Int(bytes)), let decoded = decoder?.decode(raw, at: address),
                  decoded.count == Int(instructions) else {
                notes.append("the block at \(hex(address)) crosses a function boundary but could not be decoded into its \(instructions) instructions: counted whole in \(names[function(address)])")
                return nil
            }
            return decoded.map { function($0.address) }
        }

        var perFunction = [UInt64](repeating: 0, count: names.count)
        var byStart = [UInt64](repeating: 0, count: names.count)
        var entered = [UInt64](repeating: 0, count: names.count)
        var splitBlocks = 0
        for b in outcome.blocks {
            let first = function(b.address)
            byStart[first] &+= UInt64(b.instructions) &* b.executions
            entered[first] &+= b.executions
            if let owners = split(b.address, b.bytes, b.instructions) {
                splitBlocks += 1
                for f in owners { perFunction[f] &+= b.executions }
            } else {
                perFunction[first] &+= UInt64(b.instructions) &* b.executions
            }
        }
        // A fault inside the last block: its tail did not run.
        let notRun = outcome.instructions &- total
        if notRun > 0, notRun <= UInt64(outcome.lastBlock.instructions) {
            let last = outcome.lastBlock
            byStart[function(last.address)] &-= notRun
            if let owners = split(last.address, last.bytes, last.instructions) {
                for f in owners.suffix(Int(notRun)) { perFunction[f] &-= 1 }
            } else {
                perFunction[function(last.address)] &-= notRun
            }
        } else if notRun != 0 {
            notes.append("the exact count \(total) differs from the blocks' \(outcome.instructions) by more than the last block")
        }

        // Runs of one function, in order, from the machine's record of range changes.
        let entries = outcome.rangeEntries
        var runs: [(function: Int, instructions: UInt64)] = []
        for (i, e) in entries.enumerated() {
            let end = i + 1 < entries.count ? entries[i + 1].firstInstruction : total
            let f = e.range >= 0 && e.range < map.pieces.count ? map.pieces[e.range].function : outside
            runs.append((f, end &- e.firstInstruction))
        }
        var runTotals = [UInt64](repeating: 0, count: names.count)
        for r in runs { runTotals[r.function] &+= r.instructions }
        if runTotals != byStart {
            notes.append("internal: the ordered record and the block table disagree per function (\(runTotals) vs \(byStart)); phases may be wrong")
        }

        // Phases.
        // Name rules once per function, not per run (a run has hundreds of function changes).
        let isHashing = names.map(Self.isHashing), isHandoff = names.map { $0 == Self.handoffFunction }
        let handoff = runs.firstIndex { isHandoff[$0.function] } ?? runs.count
        let hashingRuns = runs.indices.filter { $0 < handoff && isHashing[runs[$0].function] }
        let hashingNames = Set(hashingRuns.map { names[runs[$0].function] }).sorted()
        let firstHash = hashingRuns.first ?? handoff, lastHash = hashingRuns.last.map { $0 + 1 } ?? handoff
        let hashingRule = "from the first to the last block of a hashing function (\(hashingNames.joined(separator: ", "))), everything between included"
        let bounds: [(PhaseName, Range<Int>, String)] = [
            (.setup, 0 ..< firstHash, hashingRuns.isEmpty ? "everything before entry64 (no hashing function ran)" : "before the first block of a hashing function"),
            (.hashing, firstHash ..< lastHash, hashingRuns.isEmpty ? "no function named like a hash routine ran" : hashingRule),
            (.compare, lastHash ..< handoff, hashingRuns.isEmpty ? "no hashing function ran, so no compare after it" : "after the last hashing block, before entry64"),
            (.handoff, handoff ..< runs.count, handoff < runs.count ? "from the first block of entry64 to the kernel entry" : "entry64 never ran"),
        ]
        if hashingRuns.isEmpty && total > 0 {
            notes.append("no function named like a hash routine ran (inlined, or named otherwise): hashing is not separated from entry and setup")
        }
        if handoff == runs.count && !map.functions.contains(where: { $0.name == Self.handoffFunction }) {
            notes.append("the purgatory has no entry64 function: no hand-off phase")
        }
        let phases = bounds.map { name, range, rule -> Phase in
            var counts = [UInt64](repeating: 0, count: names.count)
            for r in runs[range] { counts[r.function] &+= r.instructions }
            let rows = counts.indices.filter { counts[$0] > 0 }.map { NameCount(name: names[$0], instructions: counts[$0]) }
                .sorted { ($0.instructions, $1.name) > ($1.instructions, $0.name) }
            return Phase(name: name, instructions: counts.reduce(0, &+), rule: rule, functions: rows)
        }

        var crossCheckAgrees: Bool?
        if let perRange = outcome.crossCheckPerRange, perRange.count == map.pieces.count + 1 {
            var checked = [UInt64](repeating: 0, count: names.count)
            for (p, n) in perRange.enumerated() { checked[p < map.pieces.count ? map.pieces[p].function : outside] &+= n }
            crossCheckAgrees = checked == perFunction
            for f in names.indices where checked[f] != perFunction[f] {
                notes.append("cross-check MISMATCH in \(names[f]): per-instruction hook \(checked[f]), blocks \(perFunction[f])")
            }
        }
        let sum = perFunction.reduce(0, &+)
        if sum != total { notes.append("internal: functions add up to \(sum), not \(total)") }

        self.functions = names.indices.filter { perFunction[$0] > 0 || entered[$0] > 0 }.map {
            FunctionCount(name: names[$0], address: $0 == outside ? nil : map.functions[$0].address,
                          instructions: perFunction[$0], blocksEntered: entered[$0])
        }.sorted { ($0.instructions, $1.name) > ($1.instructions, $0.name) }
        self.phases = phases
        self.hashingFunctions = hashingNames
        let hashed = phases[1].instructions
        self.hashingInstructionsPerByte = bytesHashed > 0 && hashed > 0 ? Double(hashed) / Double(bytesHashed) : nil
        self.splitBlocks = splitBlocks
        self.functionTransitions = entries.count
        self.crossCheckAgrees = crossCheckAgrees
        self.notes = notes
    }
}

/// The executed blocks of one run in order, for `--trace`.
public struct BlockTrace: Sendable {
    public var blocks: [ExecutedBlock]
    /// Blocks that ran after the recording limit (not in `blocks`).
    public var dropped: UInt64
    public var map: CodeMap
    public var isComplete: Bool { dropped == 0 }

    /// One line per block: address, function+offset, instructions.
    public func line(_ block: ExecutedBlock) -> String {
        "\(hex(block.address)) \(map.symbolize(block.address) ?? Accounting.outsideName) \(block.instructions)"
    }
}

extension Scenario {
    /// Fills `report.accounting` and `report.trace` from the run that produced `report.instructions`.
    func account(_ run: Emulation, _ map: CodeMap, _ purgatory: LoadedPurgatory, _ report: inout RunReport) {
        guard counting != .off else { return }
        func code(_ address: UInt64, _ count: Int) -> [UInt8]? {
            let offset = address &- purgatory.loadAddress
            guard address >= purgatory.loadAddress, offset <= UInt64(purgatory.buffer.count),
                  UInt64(count) <= UInt64(purgatory.buffer.count) - offset else { return nil }
            return Array(purgatory.buffer[Int(offset) ..< Int(offset) + count])
        }
        if accounting {
            var outcome = run.outcome
            // The unmapped-access rerun cross-checks for its own reasons; report only what was asked.
            if counting != .crossCheck { outcome.crossCheckPerRange = nil }
            report.accounting = Accounting(map: map, outcome: outcome, instructions: run.instructions,
                                           bytesHashed: report.bytesHashed, code: code)
        }
        if var blocks = run.outcome.executedBlocks {
            // The trace's last line is the faulting block: only the instructions that ran.
            let notRun = run.outcome.instructions &- run.instructions
            if run.outcome.executedBlocksDropped == 0, notRun > 0, let last = blocks.last, UInt64(last.instructions) >= notRun {
                blocks[blocks.count - 1].instructions = last.instructions - UInt32(notRun)
            }
            report.trace = BlockTrace(blocks: blocks, dropped: run.outcome.executedBlocksDropped, map: map)
        }
    }
}
