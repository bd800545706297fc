import Dispatch
import Fuzz
import ELF
import Foundation
import Loader
import Machine
import Run
import Testing

/// Where the exact count goes: functions, phases, trace, in every verdict.
@Suite struct AccountingTests {
    /// A reference run with small segments (8 KiB of kernel, no initrd) to keep tests quick.
    static func scenario(_ seed: UInt64, _ bytes: [UInt8] = Fixtures.referenceBytes,
                         counting: LongModeMachine.Counting = .crossCheck) throws -> Scenario {
        var s = Scenario(file: try ELFFile(bytes: bytes, name: "purgatory.ro"), seed: seed)
        s.segments.kernelSize = 8192
        s.segments.kernelMemsz = 8192
        s.segments.initrdSize = 0
        s.counting = counting
        return s
    }

    /// Functions and phases each add up to the exact count, and (cross-checking) the
    /// per-instruction hook agrees per function; no internal disagreement is noted.
    static func expectConsistent(_ r: RunReport, _ context: String = "") throws {
        let a = try #require(r.accounting, "\(context)")
        #expect(a.functions.reduce(0) { $0 + $1.instructions } == r.instructions, "\(context)")
        #expect(a.phases.reduce(0) { $0 + $1.instructions } == r.instructions, "\(context)")
        #expect(a.phases.map(\.name) == Accounting.PhaseName.allCases, "\(context)")
        for p in a.phases { #expect(p.functions.reduce(0) { $0 + $1.instructions } == p.instructions, "\(context) \(p.name)") }
        if r.crossCheckInstructions != nil { #expect(a.crossCheckAgrees == true, "\(context): \(a.notes)") }
        #expect(!a.notes.contains { $0.hasPrefix("internal") || $0.contains("MISMATCH") }, "\(context): \(a.notes)")
    }

    @Test func aVerifiedRunSplitsIntoTheFourPhases() throws {
        let r = try Self.scenario(1).run()
        #expect(r.verdict == .verified)
        try Self.expectConsistent(r)
        let a = try #require(r.accounting)
        #expect(a.functions.first?.name == "compress")
        #expect(a.hashingFunctions == ["compress", "sha256_final", "sha256_init", "sha256_update"])
        // Our entry64 is 30 instructions to the kernel: the whole hand-off.
        #expect(a.phase(.handoff).functions.map(\.name) == ["entry64"])
        #expect(a.phase(.handoff).instructions == a.instructions(of: "entry64"))
        #expect(a.phase(.setup).functions.map(\.name).contains("purgatory_start"))
        #expect(a.phase(.compare).functions.first?.name == "memcmp")
        #expect(a.phase(.compare).instructions == a.instructions(of: "memcmp") + a.phase(.compare).functions.filter { $0.name == "purgatory" }.map(\.instructions).reduce(0, +))
        // Every compress call is inside the hashing window.
        #expect(a.phase(.hashing).functions.first { $0.name == "compress" }?.instructions == a.instructions(of: "compress"))
        #expect(a.splitBlocks == 0)
        #expect(a.notes.isEmpty)
        let perByte = try #require(a.hashingInstructionsPerByte)
        #expect(perByte > 60 && perByte < Double(r.instructions) / Double(r.bytesHashed) + 1e-9)
    }

    /// compress runs the same instructions for every 64-byte block: one more kernel page (64
    /// blocks) adds exactly 64 calls' worth, and nothing else changes outside hashing.
    @Test func compressCostsTheSameForEveryBlock() throws {
        var small = try Self.scenario(2, counting: .exact)
        var large = small
        small.segments.kernelMemsz = 8192
        large.segments.kernelMemsz = 8192 + 4096
        let a = try #require(try small.run().accounting), b = try #require(try large.run().accounting)
        let perBlock = (b.instructions(of: "compress") - a.instructions(of: "compress")) / 64
        #expect((b.instructions(of: "compress") - a.instructions(of: "compress")) % 64 == 0)
        #expect(a.instructions(of: "compress") % perBlock == 0)
        for phase in [Accounting.PhaseName.setup, .compare, .handoff] {
            #expect(a.phase(phase).instructions == b.phase(phase).instructions, "\(phase)")
        }
    }

    /// The reference purgatory with `code` at the start of `purgatory()`.
    static func patched(_ code: [UInt8]) throws -> [UInt8] { try ScenarioTests.patchedPurgatory(code) }

    enum Case: String, CaseIterable { case verified, tampered, exception, unmapped, timeout, badHandoff, wildJump }

    /// Every verdict: the attribution sums to `instructions`, the per-instruction hook agrees per
    /// function, and the trace (recorded for every case) sums to it as well.
    @Test(arguments: Case.allCases)
    func theAttributionAddsUpInEveryVerdict(_ c: Case) throws {
        var s: Scenario
        var expected: Verdict
        switch c {
        case .verified: s = try Self.scenario(3); expected = .verified
        case .tampered: s = try Self.scenario(3); s.tamper = true; expected = .rejectedDigest
        case .exception: s = try Self.scenario(3, try Self.patched([0x90, 0x90, 0x0f, 0x0b])); expected = .kexecException
        // xor eax, eax; mov rax, [rax]: faults in the middle of its block, which is trimmed.
        case .unmapped: s = try Self.scenario(3, try Self.patched([0x31, 0xc0, 0x48, 0x8b, 0x00])); expected = .kexecException
        case .timeout: s = try Self.scenario(3); s.budget = 123_457; expected = .timeout
        case .badHandoff:
            var bytes = Fixtures.referenceBytes
            let movRsi: [UInt8] = [0x48, 0x8b, 0x70, 0x30]
            let index = try #require((0 ..< bytes.count - 4).first { Array(bytes[$0 ..< $0 + 4]) == movRsi })
            bytes[index + 3] = 0x38
            s = try Self.scenario(3, bytes); expected = .badHandoff
        // mov eax, 0x12345678; jmp rax: a fetch outside everything.
        case .wildJump: s = try Self.scenario(3, try Self.patched([0xb8, 0x78, 0x56, 0x34, 0x12, 0xff, 0xe0])); expected = .kexecException
        }
        for counting in [LongModeMachine.Counting.exact, .crossCheck] {
            s.counting = counting
            s.recordBlocks = 1_000_000
            let r = try s.run()
            #expect(r.verdict == expected, "\(c): \(r.message)")
            try Self.expectConsistent(r, "\(c) \(counting)")
            let trace = try #require(r.trace)
            #expect(trace.isComplete)
            #expect(trace.blocks.reduce(0) { $0 + UInt64($1.instructions) } == r.instructions, "\(c) \(counting)")
            if c == .tampered || c == .verified {
                #expect(r.accounting?.phase(.hashing).instructions ?? 0 > r.instructions * 99 / 100)
            }
            if c == .exception || c == .unmapped {
                #expect(r.accounting?.notes == ["no function named like a hash routine ran (inlined, or named otherwise): hashing is not separated from entry and setup"])
                #expect(r.accounting?.phase(.setup).instructions == r.instructions)
            }
        }
    }

    /// The trace's blocks, charged to the function of their first byte, give the accounting's
    /// per-function counts (no block of the reference crosses a function).
    @Test func theTraceAgreesWithTheFunctionCounts() throws {
        var s = try Self.scenario(4, counting: .exact)
        s.recordBlocks = 1_000_000
        let r = try s.run()
        let trace = try #require(r.trace)
        var perFunction: [String: UInt64] = [:]
        for b in trace.blocks {
            let name = trace.map.function(at: b.address).map { trace.map.functions[$0].name } ?? Accounting.outsideName
            perFunction[name, default: 0] += UInt64(b.instructions)
        }
        let a = try #require(r.accounting)
        #expect(perFunction == Dictionary(uniqueKeysWithValues: a.functions.map { ($0.name, $0.instructions) }))
        #expect(UInt64(trace.blocks.count) == r.blocksExecuted)
        // The order is the execution order: it starts at the entry and ends in entry64.
        #expect(trace.blocks.first?.address == r.entry)
        #expect(trace.line(trace.blocks[0]).hasSuffix(" purgatory_start \(trace.blocks[0].instructions)"))
        #expect(trace.map.symbolize(trace.blocks.last!.address)?.hasPrefix("entry64+0x") == true)
    }

    @Test func aTraceCutAtItsLimitSaysSo() throws {
        var s = try Self.scenario(4, counting: .exact)
        s.recordBlocks = 50
        let r = try s.run()
        let trace = try #require(r.trace)
        #expect(trace.blocks.count == 50)
        #expect(!trace.isComplete)
        #expect(UInt64(trace.blocks.count) + trace.dropped == r.blocksExecuted)
        // Recording does not change the count.
        #expect(r.instructions == (try Self.scenario(4, counting: .exact).run()).instructions)
    }

    /// Same input, same numbers: by seed, by load address (the code is position-independent),
    /// and on two threads at once as on one.
    @Test func theAttributionIsDeterministic() throws {
        func counts(_ r: RunReport) -> [String: UInt64] {
            Dictionary(uniqueKeysWithValues: (r.accounting?.functions ?? []).map { ($0.name, $0.instructions) })
        }
        let a = try Self.scenario(7, counting: .exact).run(), b = try Self.scenario(7, counting: .exact).run()
        #expect(a.accounting == b.accounting)
        var moved = try Self.scenario(7, counting: .exact)
        moved.loadAddress = 0x9a000
        let c = try moved.run()
        #expect(c.loadAddress != a.loadAddress)
        #expect(counts(c) == counts(a))
        #expect(c.accounting?.phases.map(\.instructions) == a.accounting?.phases.map(\.instructions))

        let seeds: [UInt64] = [11, 12, 13, 14]
        let sequential = try seeds.map { try Self.scenario($0, counting: .exact).run().accounting }
        let results = Results(count: seeds.count)
        DispatchQueue.concurrentPerform(iterations: seeds.count) { i in
            results.set(i, try? Self.scenario(seeds[i], counting: .exact).run().accounting)
        }
        #expect(results.values == sequential)
        // Other seeds, other bytes and addresses, the same lengths: SHA-256's instruction count
        // depends on lengths only, so every function's count is the same.
        let perSeed = Set(sequential.map { $0?.functions.map { "\($0.name) \($0.instructions)" } ?? [] })
        #expect(perSeed.count == 1)
    }

    final class Results: @unchecked Sendable {
        private let lock = NSLock()
        private var storage: [Accounting?]
        init(count: Int) { storage = Array(repeating: nil, count: count) }
        func set(_ i: Int, _ value: Accounting?) { lock.lock(); storage[i] = value; lock.unlock() }
        var values: [Accounting?] { lock.lock(); defer { lock.unlock() }; return storage }
    }

    /// purgatory_start's symbol cut to its first instruction (lgdt, 7 bytes): the first block
    /// (lgdt; mov eax, 0x18; mov ds, eax) now crosses into bytes no symbol covers. It is split
    /// per instruction, and the per-instruction hook, which never sees blocks, agrees.
    @Test func aBlockCrossingAFunctionBoundaryIsSplitPerInstruction() throws {
        var bytes = Fixtures.referenceBytes
        let file = try Fixtures.reference()
        let symtab = try #require(file.section(named: ".symtab"))
        let start = try #require(try file.symbols(in: symtab).first { $0.name == "purgatory_start" })
        let entry = Int(symtab.offset) + start.index * 24
        #expect(Array(bytes[entry + 8 ..< entry + 16]) == le(start.value))
        bytes.replaceSubrange(entry + 16 ..< entry + 24, with: le(UInt64(7)))
        let r = try Self.scenario(5, bytes).run()
        #expect(r.verdict == .verified)
        try Self.expectConsistent(r)
        let a = try #require(r.accounting)
        #expect(a.splitBlocks >= 1)
        #expect(a.instructions(of: "(.text)") > 0)
        let normal = try #require(try Self.scenario(5).run().accounting)
        #expect(a.instructions(of: "purgatory_start") + a.instructions(of: "(.text)") == normal.instructions(of: "purgatory_start"))
    }

    /// A symbol-less purgatory still accounts for everything: its code is "(.text)", and
    /// neither hashing nor hand-off can be named, which the notes say.
    @Test func withoutSymbolsTheNotesSayWhatCouldNotBeNamed() throws {
        var bytes = Fixtures.referenceBytes
        let file = try Fixtures.reference()
        let symtab = try #require(file.section(named: ".symtab"))
        // Make every FUNC symbol a FILE symbol (type 4): no code symbol is left; ABI symbols are data.
        for symbol in try file.symbols(in: symtab) where symbol.type == 2 {
            let at = Int(symtab.offset) + symbol.index * 24 + 4
            bytes[at] = bytes[at] & 0xf0 | 4
        }
        let r = try Self.scenario(6, bytes).run()
        try Self.expectConsistent(r)
        let a = try #require(r.accounting)
        #expect(a.functions.map(\.name) == ["(.text)"])
        #expect(a.phase(.setup).instructions == r.instructions)
        #expect(a.notes.contains { $0.hasPrefix("no function named like a hash routine ran") })
        #expect(a.notes.contains("the purgatory has no entry64 function: no hand-off phase"))
    }
}

/// The code map cut from symbols: sized functions, labels, padding, duplicates.
@Suite struct CodeMapTests {
    @Test func everyExecutableByteHasExactlyOneOwner() throws {
        var b = ELFBuilder()
        b.add(.init(name: ".text", flags: 0x6, align: 16, data: [UInt8](repeating: 0x90, count: 0x60)))
        b.add(.init(name: ".text.b", flags: 0x6, align: 16, data: [UInt8](repeating: 0x90, count: 0x20)))
        b.add(.init(name: ".data", flags: 0x3, align: 16, data: [UInt8](repeating: 0, count: 0x10)))
        b.symbol("inner", global: false, type: 0, section: 1, value: 0x08)         // label inside f
        b.symbol("dup", global: false, type: 2, section: 2, value: 0x00, size: 0x10)
        b.symbol("data", global: false, type: 1, section: 3, value: 0, size: 8)     // OBJECT: not code
        b.symbol("f", type: 2, section: 1, value: 0x00, size: 0x20)
        b.symbol("g", type: 0, section: 1, value: 0x30)                             // unsized asm label
        b.symbol("dup", type: 2, section: 1, value: 0x50, size: 0x08)
        let file = try ELFFile(bytes: b.build(), name: "map.ro")
        let loaded = try PurgatoryLoader(file: file).load(at: 0x10_0000)
        let map = loaded.codeMap()
        let text = try #require(loaded.sections.first { $0.name == ".text" }).addr
        let textB = try #require(loaded.sections.first { $0.name == ".text.b" }).addr
        func owner(_ address: UInt64) -> String? { map.function(at: address).map { map.functions[$0].name } }
        #expect(owner(text) == "f")
        #expect(owner(text + 0x08) == "f")         // inside the sized function: not "inner"
        #expect(owner(text + 0x1f) == "f")
        #expect(owner(text + 0x20) == "(.text)")   // past f, before any label
        #expect(owner(text + 0x30) == "g")
        #expect(owner(text + 0x4f) == "g")
        #expect(Set([owner(text + 0x50), owner(textB)]) == ["dup", "dup#2"])
        #expect(owner(text + 0x58) == "(.text)")   // past the sized dup: padding
        #expect(owner(textB + 0x1f) == "(.text.b)")
        #expect(owner(textB + 0x20) == nil)
        #expect(map.symbolize(text + 0x31) == "g+0x1")
        // Disjoint, sorted, covering both sections exactly.
        for (x, y) in zip(map.pieces, map.pieces.dropFirst()) { #expect(x.end <= y.start) }
        #expect(map.pieces.reduce(0) { $0 + $1.end - $1.start } == 0x80)
    }

    @Test(arguments: ["sha256_update", "sha256_process", "compress", "sha256_transform_blocks", "lib_sha256_base_do_update", "sha256_starts"])
    func hashingNames(name: String) { #expect(Accounting.isHashing(name)) }

    @Test(arguments: ["verify_sha256_digest", "memcmp", "purgatory", "memcpy", "entry64", "purgatory_start", "setup_arch"])
    func notHashingNames(name: String) { #expect(!Accounting.isHashing(name)) }
}

extension MachineTests {
    /// `rep stosb` with rcx = n counts n + 1, by the block hook and by the per-instruction hook
    /// alike: QEMU runs the instruction once per iteration and once more to find rcx = 0.
    /// callgrind counts it the same way (Purgatories/reference/callgrind, docs/accounting.md).
    ///   BF imm32 mov edi, harness ; B9 imm32 mov ecx, n ; F3 AA rep stosb ; exit (2)
    @Test(arguments: [(LongModeMachine.Counting.exact, UInt32(100)), (.crossCheck, 100), (.exact, 1), (.crossCheck, 0)])
    func repStringInstructionsCountOncePerIterationAndOnceMore(_ counting: LongModeMachine.Counting, _ n: UInt32) throws {
        let program: [UInt8] = [0xbf] + le(UInt32(Self.harness)) + [0xb9] + le(n) + [0xf3, 0xaa] + Self.exitToSentinel
        let m = try Self.machine(program)
        let out = try m.run(until: Self.sentinel, budget: 1_000_000, counting: counting)
        #expect(out.reason == .reachedSentinel)
        #expect(out.instructions == 2 + UInt64(n) + 1 + 2)
        if counting == .crossCheck { #expect(out.crossCheckInstructions == out.instructions) }
    }

    /// Attribution ranges: the entries say where execution went, in order, and the
    /// per-instruction hook's per-range counts add up to the same thing.
    @Test func rangeEntriesFollowExecution() throws {
        // countedLoop: mov ecx,10 [0x00]; loop dec/jnz [0x05-0x09); exit [0x09-0x15). The first
        // block [mov, dec, jnz] starts in range 0 and runs on into range 1: the machine charges
        // blocks by their start, the per-instruction hook each instruction where it is.
        let m = try Self.machine(Self.countedLoop)
        let ranges = [Self.code ..< Self.code + 5, Self.code + 5 ..< Self.code + 9, Self.code + 9 ..< Self.code + 0x13]
        let out = try m.run(until: Self.sentinel, budget: 1_000_000, counting: .crossCheck, attributing: ranges)
        #expect(out.instructions == 23)
        #expect(out.rangeEntries.map(\.range) == [0, 1, 2])
        #expect(out.rangeEntries.map(\.firstInstruction) == [0, 3, 21])
        #expect(out.crossCheckPerRange == [1, 20, 1, 1])  // jmp rax at 0x13 is outside every range
    }

    @Test func overlappingRangesAreRefused() throws {
        let m = try Self.machine(Self.countedLoop)
        #expect(throws: MachineError.self) {
            _ = try m.run(until: Self.sentinel, budget: 100, attributing: [Self.code ..< Self.code + 8, Self.code + 4 ..< Self.code + 9])
        }
    }
}

/// Every build in the manifest that verifies below 2 GiB (gcc and clang, -ffunction-sections,
/// .ltext, PIE images, kexec-tools' ABI): the same phase rules find all four phases, with the
/// hand-off exactly entry64 and the per-instruction hook agreeing per function.
@Suite struct ManifestAccountingTests {
    @Test func thePhaseRulesHoldForEveryBuild() throws {
        let directory = Fixtures.repository.appendingPathComponent("Purgatories")
        let manifest = try JSONDecoder().decode(MatrixManifest.self,
                                                from: try Data(contentsOf: directory.appendingPathComponent("manifest.json")))
        var checked = 0
        for v in manifest.variants where v.expected["below 2 GiB"] == .verified {
            let bytes = try #require(FileManager.default.contents(atPath: directory.appendingPathComponent(v.file).path))
            var s = try AccountingTests.scenario(21, [UInt8](bytes))
            s.loader = try #require(LoaderKind(rawValue: v.loader))
            s.loadAddress = 0x4000_0000
            let r = try s.run()
            #expect(r.verdict == .verified, "\(v.name): \(r.message)")
            try AccountingTests.expectConsistent(r, v.name)
            let a = try #require(r.accounting)
            #expect(a.notes.isEmpty, "\(v.name): \(a.notes)")
            #expect(Set(["compress", "sha256_update", "sha256_final"]).isSubset(of: a.hashingFunctions), "\(v.name)")
            #expect(a.phase(.handoff).functions.map(\.name) == ["entry64"], "\(v.name)")
            #expect(a.phase(.compare).functions.first?.name == "memcmp", "\(v.name)")
            #expect(a.phases.allSatisfy { $0.instructions > 0 }, "\(v.name)")
            #expect(a.phase(.hashing).instructions > r.instructions * 99 / 100, "\(v.name)")
            checked += 1
        }
        #expect(checked >= 15)
    }
}
