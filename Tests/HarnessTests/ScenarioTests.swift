import ELF
import Foundation
import Loader
import Machine
import Run
import Testing

/// End-to-end runs of the real reference purgatory (Purgatories/reference, built by gcc).
@Suite struct ScenarioTests {
    /// Loaded by the last kernel generation whose exceptions triple-fault (`fault`).
    static func scenario(_ seed: UInt64, _ bytes: [UInt8] = Fixtures.referenceBytes) throws -> Scenario {
        var s = Scenario(file: try ELFFile(bytes: bytes, name: "purgatory.ro"), seed: seed)
        s.kernel = Fixtures.tripleFaultKernel
        return s
    }

    @Test(arguments: [1, 2, 3, 0xdead_beef, UInt64.max])
    func verifiesAtRandomAddressesAbove4GiB(seed: UInt64) throws {
        let report = try Self.scenario(seed).run()
        #expect(report.verdict == .verified, "\(report.message)")
        #expect(report.loadAddress >= 0x1_0000_0000)
        #expect(report.loadAddress + report.purgatorySize <= AddressSpace.walkLimit)
        #expect(report.loadAddress % report.bufAlign == 0)
        #expect(report.instructions > 0)
        #expect(report.bytesHashed == report.segments.reduce(0) { $0 + $1.length })
        #expect(report.segments.map(\.name) == ["boot-params", "kernel", "initrd"])
    }

    /// The reference purgatory with `code` written over the start of `purgatory()`.
    static func patchedPurgatory(_ code: [UInt8]) throws -> [UInt8] {
        var bytes = Fixtures.referenceBytes
        let file = try Fixtures.reference()
        let text = try #require(file.section(named: ".text"))
        let symbols = try file.symbols(in: try #require(file.section(named: ".symtab")))
        let purgatory = try #require(symbols.first { $0.name == "purgatory" })
        let at = Int(text.offset + purgatory.value)
        bytes.replaceSubrange(at ..< at + code.count, with: code)
        return bytes
    }

    @Test func sameSeedSameAddressesAndCount() throws {
        let a = try Self.scenario(42).run(), b = try Self.scenario(42).run()
        #expect(a.loadAddress == b.loadAddress)
        #expect(a.segments == b.segments)
        #expect(a.instructions == b.instructions)
        let c = try Self.scenario(43).run()
        #expect(c.loadAddress != a.loadAddress)
    }

    @Test func crossCheckAgreesWithBlockCounting() throws {
        var s = try Self.scenario(5)
        s.counting = .crossCheck
        let report = try s.run()
        #expect(report.verdict == .verified)
        #expect(report.crossCheckInstructions == report.instructions)
    }

    @Test func tamperIsRejectedBySpinningNotByTheBudget() throws {
        var s = try Self.scenario(9)
        s.tamper = true
        s.counting = .crossCheck
        let tampered = try s.run()
        #expect(tampered.verdict == .rejectedDigest, "\(tampered.message)")
        #expect(tampered.isExpected)
        #expect(tampered.message.contains("(purgatory+0x"))
        #expect(tampered.crossCheckInstructions == tampered.instructions)
        // The spin is caught on its first pass: fewer instructions than a verified run, far under the budget.
        let clean = try Self.scenario(9).run()
        #expect(tampered.instructions < clean.instructions)
        #expect(tampered.instructions < tampered.budget / 2)
    }

    @Test func tamperingTheZeroTailIsCaughtToo() throws {
        // Find a seed whose flipped byte lies past a segment's data, in the zeros the digest covers.
        for seed in UInt64(0) ..< 64 {
            var s = try Self.scenario(seed)
            s.tamper = true
            s.segments.kernelMemsz = 64 * 1024  // kernel: 16 KiB of data, 48 KiB of zeros
            let report = try s.run()
            guard let t = report.tamper, t.segment == "kernel", t.offset >= 16 * 1024 else { continue }
            #expect(report.verdict == .rejectedDigest)
            return
        }
        Issue.record("no seed in 0..<64 tampered the kernel's zero tail")
    }

    @Test func budgetExhaustionIsATimeout() throws {
        var s = try Self.scenario(3)
        s.budget = 10_000
        let report = try s.run()
        #expect(report.verdict == .timeout)
        #expect(report.instructions <= 10_000 && report.instructions > 9_800)  // stops before the block that would exceed it
    }

    /// No RAM can exist at or above 2^phys-bits, nor above 2^46 on a 4-level kernel: refused, with
    /// the limit named. Just below, the purgatory runs (flat above 2^40).
    @Test func loadAddressesNoMachineCanHaveAreRefused() throws {
        func refusal(_ s: Scenario) -> String? {
            do { _ = try s.run(); return nil } catch { return error.description }
        }
        var s = try Self.scenario(1)
        s.loadAddress = (1 << 52) - 0x1000
        let top = try #require(refusal(s))
        #expect(top.contains("no RAM can exist there") && top.contains("52 bits") && top.contains("purgatory.ro"))
        s.loadAddress = (1 << 52) - 0x3000  // the reference purgatory just fits
        #expect(try s.run().verdict == .verified)
        s.machine.physicalBits = 46
        #expect(try #require(refusal(s)).contains("46 bits"))
        s.machine.physicalBits = 52
        s.machine.paging = .four
        s.loadAddress = 1 << 46
        #expect(try #require(refusal(s)).contains("4-level kernel uses no RAM at or above 2^46"))
        s.loadAddress = (1 << 46) - 0x3000
        #expect(try s.run().verdict == .verified)
    }

    @Test func lowMemoryPlacementAsDebian61Does() throws {
        var s = try Self.scenario(1)
        s.loadAddress = 0x9a000
        #expect(try s.run().verdict == .verified)
    }

    /// Overwrites the first instruction of `purgatory()` with ud2.
    @Test func anExceptionIsAFaultWithSymbolAndInstruction() throws {
        var s = try Self.scenario(4, try Self.patchedPurgatory([0x0f, 0x0b]))
        s.counting = .crossCheck
        let report = try s.run()
        #expect(report.verdict == .fault)
        #expect(report.fault?.vector == 6)
        #expect(report.fault?.symbol == "purgatory")
        #expect(report.fault?.instruction == "ud2")
        #expect(report.message.hasPrefix("#UD (vector 6) at 0x"))
        #expect(report.crossCheckInstructions == report.instructions)
    }

    /// entry64 loading rsi from the rdi slot: the purgatory reaches the kernel with the wrong rsi.
    @Test func wrongRegistersAtTheKernelEntryAreABadHandoff() throws {
        var bytes = Fixtures.referenceBytes
        let movRsi: [UInt8] = [0x48, 0x8b, 0x70, 0x30]  // mov 0x30(%rax),%rsi
        let index = try #require((0 ..< bytes.count - 4).first { Array(bytes[$0 ..< $0 + 4]) == movRsi })
        bytes[index + 3] = 0x38                          // mov 0x38(%rax),%rsi (rdi's slot, zero)
        let report = try Self.scenario(6, bytes).run()
        #expect(report.verdict == .badHandoff)
        #expect(report.message.contains("rsi 0x0 (expected 0x"))
    }

    @Test func wildJumpIsAFaultNamingTheTarget() throws {
        // mov $0x12345678, %eax ; jmp *%rax
        let report = try Self.scenario(8, try Self.patchedPurgatory([0xb8, 0x78, 0x56, 0x34, 0x12, 0xff, 0xe0])).run()
        #expect(report.verdict == .fault)
        #expect(report.message.contains("0x12345678"))
    }

    @Test func kernelRelocationOverflowIsALoadErrorWithTheKernelsMessage() throws {
        // A -mcmodel=kernel style reference: R_X86_64_32S to .text, fine below 2 GiB only.
        var b = ELFBuilder()
        b.add(.init(name: ".text", flags: 0x6, align: 16, data: [UInt8](repeating: 0x90, count: 32)))
        let text = b.symbol("", global: false, type: 3, section: 1)
        b.rela(1, offset: 4, symbol: text, type: X86_64Relocation.r32s, addend: 0x10)
        var s = Scenario(file: try ELFFile(bytes: b.build(), name: "kernel-model.ro"), seed: 1)
        s.loadAddress = 0x8000_0000
        let report = try s.run()
        #expect(report.verdict == .loadError)
        #expect(report.message == "kexec: Overflow in relocation type 11 value 0x80000010")
        #expect(report.kernelLog.last == "kexec-bzImage64: Loading purgatory failed")
    }

    @Test func missingABISymbolsAreLoadErrors() throws {
        var b = ELFBuilder()
        b.add(.init(name: ".text", flags: 0x6, align: 16, data: [UInt8](repeating: 0x90, count: 32)))
        var bare = Scenario(file: try ELFFile(bytes: b.build(), name: "bare.ro"), seed: 1)
        bare.kernel = Fixtures.tripleFaultKernel
        let report = try bare.run()
        #expect(report.verdict == .loadError)
        #expect(report.message.contains("entry64_regs"))
    }

    @Test func embeddedDefaultIsTheCommittedObject() throws {
        #expect(DefaultPurgatory.bytes == Fixtures.referenceBytes)
    }
}

extension ScenarioTests {
    /// Unicorn leaves rip at the block start on an unmapped access; the scenario re-runs
    /// with the per-instruction hook, so the report names the faulting instruction exactly.
    @Test(arguments: [LongModeMachine.Counting.exact, .crossCheck])
    func unmappedDataAccessNamesTheInstruction(counting: LongModeMachine.Counting) throws {
        // xor %eax, %eax ; mov (%rax), %rax   (5 bytes: clear of the relocation at purgatory+0x7)
        var s = try Self.scenario(8, try Self.patchedPurgatory([0x31, 0xc0, 0x48, 0x8b, 0x00]))
        s.counting = counting
        let report = try s.run()
        #expect(report.verdict == .fault)
        #expect(report.fault?.symbol == "purgatory+0x2")
        #expect(report.fault?.instruction == "mov rax, qword ptr [rax]")
        #expect(report.fault?.address == 0)
        let clean = try Self.scenario(8).run()
        #expect(report.instructions < clean.instructions)
        if counting == .crossCheck { #expect(report.crossCheckInstructions == report.instructions) }
    }

    /// Unicorn 2.0.1 runs SSE with CR4.OSFXSR clear; the harness makes the first executed one the
    /// #UD the CPU would raise, at the same count as a ud2 in its place.
    @Test(arguments: [LongModeMachine.Counting.exact, .crossCheck])
    func executedSSEIsTheUndefinedOpcodeHardwareRaises(counting: LongModeMachine.Counting) throws {
        var sse = try Self.scenario(8, try Self.patchedPurgatory([0x90, 0x90, 0x0f, 0x28, 0xc1, 0xeb, 0xfe]))  // nop; nop; movaps xmm0, xmm1; jmp .
        sse.counting = counting
        let report = try sse.run()
        #expect(report.verdict == .fault)
        #expect(report.fault?.vector == 6)
        #expect(report.fault?.symbol == "purgatory+0x2")
        #expect(report.fault?.instruction == "movaps xmm0, xmm1")
        #expect(report.message.contains("(SSE state with CR4.OSFXSR clear, as relocate_kernel leaves it (Unicorn 2.0.1 would have run it))"))
        if counting == .crossCheck { #expect(report.crossCheckInstructions == report.instructions) }
        let ud2 = try Self.scenario(8, try Self.patchedPurgatory([0x90, 0x90, 0x0f, 0x0b])).run()
        #expect(ud2.verdict == .fault)
        #expect(report.instructions == ud2.instructions)
    }

    /// Vector-state instructions that name no vector register fault the same way.
    @Test(arguments: [([UInt8]([0xc5, 0xf8, 0x77]), "vzeroupper"), ([0x0f, 0x01, 0xd0], "xgetbv"), ([0x0f, 0xae, 0x1c, 0x24], "stmxcsr dword ptr [rsp]")])
    func vectorStateInstructionsWithoutVectorOperandsFaultToo(code: [UInt8], text: String) throws {
        let report = try Self.scenario(8, try Self.patchedPurgatory([0x90, 0x90] + code + [0xeb, 0xfe])).run()
        #expect(report.verdict == .fault)
        #expect(report.fault?.instruction == text)
        #expect(report.fault?.symbol == "purgatory+0x2")
    }
}
