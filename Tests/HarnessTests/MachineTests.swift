import Machine
import Testing

/// The machine on tiny hand-encoded x86-64 programs, through the public API only.
///
/// Layout of every test unless it says otherwise: code in one page at `code` (above 4 GiB),
/// a "kernel" page holding the sentinel, and a 0x4000 harness region whose first page is
/// the stack and whose next three pages hold the identity page tables.
@Suite struct MachineTests {
    static let code: UInt64 = 0x12_3456_7000      // GiB 72, PML4 slot 0
    static let harness: UInt64 = 0x2000_0000      // GiB 0
    static let kernel: UInt64 = 0x100_0000        // GiB 0
    static let sentinel: UInt64 = kernel + 0x200
    static let unmappedInCodeGiB: UInt64 = code + 0x10_0000  // inside GiB 72 (has a 1 GiB leaf), nothing mapped
    static let noPageTableEntry: UInt64 = 0x30_0000_0000     // GiB 192: no PDPT entry at all

    /// Little-endian bytes of a 64-bit immediate.
    static func imm64(_ value: UInt64) -> [UInt8] { (0 ..< 8).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) } }

    /// mov rax, sentinel; jmp rax   — 12 bytes, 2 instructions, one block.
    static let exitToSentinel: [UInt8] = [0x48, 0xb8] + imm64(sentinel) + [0xff, 0xe0]

    /// A machine in the kexec entry state with `program` at `at` (one page), the kernel page
    /// and the harness region mapped, paging on.
    static func machine(_ program: [UInt8], at code: UInt64 = code, harness: UInt64 = harness) throws -> LongModeMachine {
        let m = try LongModeMachine()
        try m.map("code", at: code, size: 0x1000)
        try m.write(program, at: code)
        try m.map("kernel", at: kernel, size: 0x1000)
        try m.map("harness", at: harness, size: 0x4000)
        #expect(m.pageTableSize() <= 0x3000)
        let cr3 = try m.installIdentityPaging(at: harness + 0x1000)
        try m.setEntryState(cr3: cr3, rip: code, rsp: harness + 0x1000 - 8)
        return m
    }

    /// Blocks as [address, bytes, instructions, executions] rows (BlockCount has no public init).
    static func rows(_ out: RunOutcome) -> [[UInt64]] {
        out.blocks.map { [$0.address, UInt64($0.bytes), UInt64($0.instructions), $0.executions] }
    }

    static func blockSum(_ out: RunOutcome) -> UInt64 {
        out.blocks.reduce(0) { $0 + UInt64($1.instructions) * $1.executions }
    }

    // MARK: 1. Exact counting

    /// 0x00  B9 0A 00 00 00   mov ecx, 10
    /// 0x05  FF C9            1: dec ecx
    /// 0x07  75 FC            jnz 1b
    /// 0x09  48 B8 imm64      mov rax, sentinel
    /// 0x13  FF E0            jmp rax
    static let countedLoop: [UInt8] = [0xb9, 0x0a, 0x00, 0x00, 0x00, 0xff, 0xc9, 0x75, 0xfc] + exitToSentinel

    /// 1 (mov) + 10 × 2 (dec, jnz) + 2 (mov, jmp) = 23.
    @Test(arguments: [LongModeMachine.Counting.exact, .crossCheck])
    func countsALoopExactly(_ counting: LongModeMachine.Counting) throws {
        let m = try Self.machine(Self.countedLoop)
        let out = try m.run(until: Self.sentinel, budget: 1_000_000, counting: counting)
        #expect(out.reason == .reachedSentinel)
        #expect(out.instructions == 23)
        #expect(out.crossCheckInstructions == (counting == .crossCheck ? 23 : nil))
        // Blocks: [mov, dec, jnz] once, [dec, jnz] 9 times, [mov rax, jmp rax] once.
        #expect(Self.rows(out) == [[Self.code, 9, 3, 1], [Self.code + 5, 4, 2, 9], [Self.code + 9, 12, 2, 1]])
        #expect(Self.blockSum(out) == out.instructions)
        #expect(out.lastBlock.address == Self.code + 9 && out.lastBlock.bytes == 12 && out.lastBlock.instructions == 2)
        let registers = m.registers()
        #expect(registers[.rcx] == 0)
        #expect(registers[.rip] == Self.sentinel)
        #expect(registers[.rax] == Self.sentinel)
        #expect(out.registers == registers)
    }

    @Test func exactAndCrossCheckAgree() throws {
        let exact = try Self.machine(Self.countedLoop).run(until: Self.sentinel, budget: 1_000_000, counting: .exact)
        let cross = try Self.machine(Self.countedLoop).run(until: Self.sentinel, budget: 1_000_000, counting: .crossCheck)
        #expect(exact.instructions == 23)
        #expect(cross.instructions == exact.instructions)
        #expect(cross.crossCheckInstructions == exact.instructions)
        #expect(exact.crossCheckInstructions == nil)
        #expect(Self.rows(cross) == Self.rows(exact))
        #expect(cross.registers == exact.registers)
        #expect(cross.reason == exact.reason)
    }

    /// `.off` adds no counting hooks: same stop, no counts.
    @Test func offCountsNothingButStillStopsAtTheSentinel() throws {
        let m = try Self.machine(Self.countedLoop)
        let out = try m.run(until: Self.sentinel, budget: 1_000_000, counting: .off)
        #expect(out.reason == .reachedSentinel)
        #expect(out.instructions == 0)
        #expect(out.crossCheckInstructions == nil)
        #expect(out.blocks.isEmpty)
        #expect(out.registers[.rcx] == 0)
        #expect(out.registers[.rip] == Self.sentinel)
    }

    // MARK: 2. Spin detection

    struct SpinCase: Sendable, CustomStringConvertible {
        var description: String
        var program: [UInt8]
        var spinOffset: UInt64
        var instructionsBefore: UInt64
    }

    static let spinCases: [SpinCase] = [
        // 0x00 EB FE               jmp .
        SpinCase(description: "jmp . at entry", program: [0xeb, 0xfe], spinOffset: 0, instructionsBefore: 0),
        // 0x00 B9 0A 00 00 00      mov ecx, 10
        // 0x05 EB FE               jmp .          (first runs inside block [mov, jmp], then alone)
        SpinCase(description: "mov; jmp .", program: [0xb9, 0x0a, 0, 0, 0, 0xeb, 0xfe],
                 spinOffset: 5, instructionsBefore: 2),
        // 0x00 B9 0A 00 00 00      mov ecx, 10
        // 0x05 F3 90               1: pause
        // 0x07 EB FC               jmp 1b
        SpinCase(description: "mov; pause; jmp back", program: [0xb9, 0x0a, 0, 0, 0, 0xf3, 0x90, 0xeb, 0xfc],
                 spinOffset: 5, instructionsBefore: 3),
        // 0x00 B9 0A 00 00 00      mov ecx, 10
        // 0x05 E9 FB FF FF FF      jmp . (rel32)
        SpinCase(description: "mov; jmp rel32 .", program: [0xb9, 0x0a, 0, 0, 0, 0xe9, 0xfb, 0xff, 0xff, 0xff],
                 spinOffset: 5, instructionsBefore: 2),
        // 0x00 B9 0A 00 00 00      mov ecx, 10
        // 0x05 90                  1: nop
        // 0x06 90                  nop
        // 0x07 EB FC               jmp 1b
        SpinCase(description: "mov; nop; nop; jmp back", program: [0xb9, 0x0a, 0, 0, 0, 0x90, 0x90, 0xeb, 0xfc],
                 spinOffset: 5, instructionsBefore: 4),
    ]

    @Test(arguments: spinCases)
    func detectsSpinsPromptly(_ spin: SpinCase) throws {
        let m = try Self.machine(spin.program)
        let clock = ContinuousClock()
        var out: RunOutcome?
        let elapsed = try clock.measure {
            out = try m.run(until: Self.sentinel, budget: 1_000_000_000_000, counting: .exact)
        }
        let run = try #require(out)
        #expect(run.reason == .spin(at: Self.code + spin.spinOffset))
        #expect(run.instructions == spin.instructionsBefore)
        #expect(Self.blockSum(run) == run.instructions)
        #expect(m.registers()[.rip] == Self.code + spin.spinOffset)
        #expect(elapsed < .seconds(1))
    }

    /// Loops that jump back to themselves but change state are not spins: they finish.
    @Test func countedSelfLoopsAreNotSpins() throws {
        // B9 E8 03 00 00  mov ecx, 1000 / FF C9  1: dec ecx / 75 FC  jnz 1b / exit
        let decJnz: [UInt8] = [0xb9, 0xe8, 0x03, 0x00, 0x00, 0xff, 0xc9, 0x75, 0xfc] + Self.exitToSentinel
        // B9 05 00 00 00  mov ecx, 5 / E2 FE  loop . / exit
        let loopSelf: [UInt8] = [0xb9, 0x05, 0x00, 0x00, 0x00, 0xe2, 0xfe] + Self.exitToSentinel
        // B9 64 00 00 00  mov ecx, 100 / F3 90  1: pause / FF C9  dec ecx / 75 FA  jnz 1b / exit
        let pauseDecJnz: [UInt8] = [0xb9, 0x64, 0x00, 0x00, 0x00, 0xf3, 0x90, 0xff, 0xc9, 0x75, 0xfa] + Self.exitToSentinel
        let cases: [(program: [UInt8], expected: UInt64)] = [
            (decJnz, 1 + 2 * 1000 + 2),   // mov, 1000 × (dec, jnz), mov, jmp
            (loopSelf, 1 + 5 + 2),        // mov, 5 × loop, mov, jmp
            (pauseDecJnz, 1 + 3 * 100 + 2),  // mov, 100 × (pause, dec, jnz), mov, jmp
        ]
        for (program, expected) in cases {
            let m = try Self.machine(program)
            let out = try m.run(until: Self.sentinel, budget: 1_000_000_000_000, counting: .crossCheck)
            #expect(out.reason == .reachedSentinel)
            #expect(out.instructions == expected)
            #expect(out.crossCheckInstructions == expected)
            #expect(out.registers[.rcx] == 0)
        }
    }

    // MARK: 3. Budget

    /// 0x00  48 FF C0   1: inc rax
    /// 0x03  EB FB      jmp 1b
    static let incLoop: [UInt8] = [0x48, 0xff, 0xc0, 0xeb, 0xfb]

    /// The budget is never exceeded: the run stops before the block that would cross it
    /// (a stop requested from the block hook keeps that block from running), so the count is
    /// at most the budget and at least the budget minus one block (2 instructions here).
    @Test(arguments: [(LongModeMachine.Counting.exact, UInt64(1001)), (.crossCheck, 1001), (.exact, 1000), (.crossCheck, 1000)])
    func budgetStopsAnEndlessLoop(_ counting: LongModeMachine.Counting, _ budget: UInt64) throws {
        let m = try Self.machine(Self.incLoop)
        let clock = ContinuousClock()
        var result: RunOutcome?
        let elapsed = try clock.measure { result = try m.run(until: Self.sentinel, budget: budget, counting: counting) }
        let out = try #require(result)
        #expect(out.reason == .budgetExhausted)
        #expect(out.instructions <= budget)
        #expect(out.instructions + 2 > budget)
        #expect(out.instructions == 1000)
        #expect(Self.blockSum(out) == out.instructions)
        #expect(Self.rows(out) == [[Self.code, 5, 2, 500]])
        #expect(elapsed < .seconds(1))
    }

    /// The count after a budget stop is what ran: every pass of the 2-instruction loop
    /// increments rax once, so exactly 2 × rax instructions executed.
    @Test(arguments: [LongModeMachine.Counting.exact, .crossCheck])
    func budgetCountIsWhatRan(_ counting: LongModeMachine.Counting) throws {
        let m = try Self.machine(Self.incLoop)
        let out = try m.run(until: Self.sentinel, budget: 1001, counting: counting)
        #expect(out.reason == .budgetExhausted)
        #expect(out.registers[.rax] == 500)
        #expect(out.instructions == 2 * out.registers[.rax])
        if counting == .crossCheck { #expect(out.crossCheckInstructions == out.instructions) }
        // The unrun block is the loop's start: rip is where the guest would resume (with the
        // per-instruction hook Unicorn's own rip is stale there; the outcome reports the block).
        #expect(out.registers[.rip] == Self.code)
    }

    @Test func aMachineRunsOnce() throws {
        let m = try Self.machine(Self.countedLoop)
        _ = try m.run(until: Self.sentinel, budget: 1_000_000)
        #expect(throws: MachineError.self) { _ = try m.run(until: Self.sentinel, budget: 1_000_000) }
    }

    // MARK: 4. Faults

    /// Measured: on an unmapped data access Unicorn 2.0.1 leaves rip at the start of the block
    /// unless a per-instruction hook keeps it current (the scenario re-runs such faults that way).
    static func faultRip(_ counting: LongModeMachine.Counting) -> UInt64 {
        counting == .crossCheck ? code + 10 : code
    }

    /// 0x00  48 B8 imm64   mov rax, target
    /// 0x0A  48 8B 00      mov rax, [rax]   (or 48 89 00  mov [rax], rax)
    /// 0x0D  F4            hlt              (ends the block: the faulting block is exactly 3 instructions)
    static func access(_ target: UInt64, write: Bool) -> [UInt8] {
        [0x48, 0xb8] + imm64(target) + [0x48, write ? 0x89 : 0x8b, 0x00, 0xf4]
    }

    /// Where an unmapped data access is reported. Measured: Unicorn 2.0.1 stores RIP before a
    /// load/store only when a per-instruction (or MEM_READ/WRITE) hook exists, so `.exact` and
    /// `.off` report the start of the faulting block; `.crossCheck` reports the instruction.
    /// (Run re-runs a fault with `.crossCheck` for the exact rip.)
    static func faultRIP(_ counting: LongModeMachine.Counting) -> UInt64 {
        counting == .crossCheck ? code + 10 : code
    }

    @Test(arguments: [LongModeMachine.Counting.exact, .crossCheck])
    func unmappedReadIsReportedWithItsAddress(_ counting: LongModeMachine.Counting) throws {
        let m = try Self.machine(Self.access(Self.unmappedInCodeGiB, write: false))
        let out = try m.run(until: Self.sentinel, budget: 1_000_000, counting: counting)
        #expect(out.reason == .unmappedAccess(kind: .read, address: Self.unmappedInCodeGiB, size: 8, rip: Self.faultRIP(counting)))
        #expect(out.registers[.rax] == Self.unmappedInCodeGiB)  // the load did not complete
        // The block hook counts the whole faulting block; lastBlock is there to trim it.
        #expect(out.instructions == 3)
        #expect(out.lastBlock.address == Self.code && out.lastBlock.bytes == 14 && out.lastBlock.instructions == 3)
        if counting == .crossCheck { #expect(out.crossCheckInstructions == 2) }  // mov imm, and the faulting mov
    }

    @Test(arguments: [LongModeMachine.Counting.exact, .crossCheck])
    func unmappedWriteIsReportedWithItsAddress(_ counting: LongModeMachine.Counting) throws {
        let m = try Self.machine(Self.access(Self.unmappedInCodeGiB, write: true))
        let out = try m.run(until: Self.sentinel, budget: 1_000_000, counting: counting)
        #expect(out.reason == .unmappedAccess(kind: .write, address: Self.unmappedInCodeGiB, size: 8, rip: Self.faultRIP(counting)))
        #expect(m.read(at: Self.unmappedInCodeGiB, count: 8) == nil)
        #expect(out.instructions == 3)
    }

    /// Measured: a data access where the page walk finds no entry is not a #PF in Unicorn 2.0.1
    /// but the same unmapped-memory error as a mapped-GiB miss.
    @Test(arguments: [LongModeMachine.Counting.exact, .crossCheck])
    func dataAccessWithNoPageTableEntryIsAnUnmappedAccess(_ counting: LongModeMachine.Counting) throws {
        let m = try Self.machine(Self.access(Self.noPageTableEntry, write: false))
        let out = try m.run(until: Self.sentinel, budget: 1_000_000, counting: counting)
        #expect(out.reason == .unmappedAccess(kind: .read, address: Self.noPageTableEntry, size: 8, rip: Self.faultRIP(counting)))
    }

    /// 0x00  48 B8 imm64   mov rax, target
    /// 0x0A  FF E0         jmp rax
    static func jump(to target: UInt64) -> [UInt8] { [0x48, 0xb8] + imm64(target) + [0xff, 0xe0] }

    /// Measured: a fetch where the page walk finds no entry is #PF (vector 14), reported at the target.
    @Test(arguments: [LongModeMachine.Counting.exact, .crossCheck])
    func fetchWithNoPageTableEntryIsAPageFault(_ counting: LongModeMachine.Counting) throws {
        let m = try Self.machine(Self.jump(to: Self.noPageTableEntry))
        let out = try m.run(until: Self.sentinel, budget: 1_000_000, counting: counting)
        #expect(out.reason == .exception(vector: 14, rip: Self.noPageTableEntry))
        #expect(out.instructions == 2)
        #expect(out.registers[.rip] == Self.noPageTableEntry)
    }

    /// Measured: a fetch from an unmapped page inside a GiB that has a leaf is an unmapped fetch of size 1.
    @Test(arguments: [LongModeMachine.Counting.exact, .crossCheck])
    func fetchFromUnmappedPageIsAnUnmappedFetch(_ counting: LongModeMachine.Counting) throws {
        let m = try Self.machine(Self.jump(to: Self.unmappedInCodeGiB))
        let out = try m.run(until: Self.sentinel, budget: 1_000_000, counting: counting)
        #expect(out.reason == .unmappedAccess(kind: .fetch, address: Self.unmappedInCodeGiB, size: 1, rip: Self.unmappedInCodeGiB))
        #expect(out.instructions == 2)
    }

    /// 0x00  B9 0A 00 00 00   mov ecx, 10
    /// 0x05  0F 0B            ud2
    @Test func ud2IsInvalidOpcodeAtItsAddress() throws {
        let m = try Self.machine([0xb9, 0x0a, 0, 0, 0, 0x0f, 0x0b])
        let out = try m.run(until: Self.sentinel, budget: 1_000_000)
        #expect(out.reason == .exception(vector: 6, rip: Self.code + 5))
        #expect(out.registers[.rcx] == 10)
        #expect(out.instructions == 2)  // the block [mov, ud2], ud2 included
    }

    /// 0x00  B9 0A 00 00 00   mov ecx, 10
    /// 0x05  F4               hlt
    @Test func hltHalts() throws {
        let m = try Self.machine([0xb9, 0x0a, 0, 0, 0, 0xf4])
        let out = try m.run(until: Self.sentinel, budget: 1_000_000)
        #expect(out.reason == .halted(at: Self.code + 5))
        #expect(out.registers[.rip] == Self.code + 6)
        #expect(out.instructions == 2)
    }

    /// 0x00  B9 0A 00 00 00   mov ecx, 10
    /// 0x05  CC               int3
    /// Measured: int3 is a trap, so the reported rip is the instruction after it.
    @Test func int3IsVector3() throws {
        let m = try Self.machine([0xb9, 0x0a, 0, 0, 0, 0xcc])
        let out = try m.run(until: Self.sentinel, budget: 1_000_000)
        #expect(out.reason == .exception(vector: 3, rip: Self.code + 6))
        #expect(out.instructions == 2)
    }

    // MARK: 5. Entry state

    @Test func entryStateIsKexecEntry() throws {
        let entry = ControlState.kexecEntry
        #expect(entry.cr0 == 0x8000_0033 && entry.cr4 == 0x20 && entry.efer == 0xd01 && entry.rflags == 0x2)
        let m = try Self.machine(Self.countedLoop)
        let control = m.controlState()
        #expect(control.cr0 == 0x8000_0033)
        #expect(control.cr4 == 0x20)
        #expect(control.rflags == 0x2)
        // Measured: Unicorn 2.0.1 drops SCE and NXE from any EFER write (API or guest wrmsr, every
        // CPU model: CPUID 0x80000001 EDX = 0xa8000000, no SYSCALL, no NX), so 0xd01 reads as 0x500;
        // the machine keeps EFER itself.
        #expect(m.unicornEFER() == 0x500)
        #expect(control.efer == 0xd01)
        #expect(control == entry)
        #expect(ControlState.asUnicornKeepsIt.efer == 0x500 && ControlState.asUnicornKeepsIt.cr0 == entry.cr0
                && ControlState.asUnicornKeepsIt.cr4 == entry.cr4 && ControlState.asUnicornKeepsIt.rflags == entry.rflags)
        let registers = m.registers()
        for register in Register.allCases {
            switch register {
            case .rsp: #expect(registers[register] == Self.harness + 0x1000 - 8)
            case .rip: #expect(registers[register] == Self.code)
            default: #expect(registers[register] == 0, "\(register)")
            }
        }

        let out = try m.run(until: Self.sentinel, budget: 1_000_000)
        #expect(out.reason == .reachedSentinel)
        #expect(Self.blockSum(out) == out.instructions)
        #expect(out.instructions == 23)
        // Nothing in the program touches control registers.
        let after = m.controlState()
        #expect(after.cr0 == 0x8000_0033 && after.cr4 == 0x20 && after.efer == control.efer)
        #expect(out.rflags == after.rflags)
    }

    // MARK: 6. map refusals

    @Test func mapRefusesBadRegions() throws {
        let m = try LongModeMachine()
        try m.map("a", at: 0x1000_0000, size: 0x2000)
        #expect(throws: MachineError.self) { try m.map("unaligned start", at: 0x2000_0800, size: 0x1000) }
        #expect(throws: MachineError.self) { try m.map("unaligned size", at: 0x2000_0000, size: 0x800) }
        #expect(throws: MachineError.self) { try m.map("empty", at: 0x2000_0000, size: 0) }
        #expect(throws: MachineError.self) { try m.map("overlaps tail", at: 0x1000_1000, size: 0x1000) }
        #expect(throws: MachineError.self) { try m.map("overlaps head", at: 0x0fff_f000, size: 0x2000) }
        #expect(throws: MachineError.self) { try m.map("contains", at: 0x0fff_f000, size: 0x4000) }
        // RAM only below 2^52 (the default 52-bit width), and 4-level identity maps stop at 2^47.
        #expect(throws: MachineError.self) { try m.map("crosses 2^47", at: (1 << 47) - 0x1000, size: 0x2000) }
        #expect(throws: MachineError.self) { try m.map("at 2^52", at: 1 << 52, size: 0x1000) }
        let five = try LongModeMachine(addressSpace: AddressSpace(physicalBits: 52, levels: .five))
        try five.map("below 2^52", at: (1 << 52) - 0x1000, size: 0x1000)
        #expect(throws: MachineError.self) { try five.map("crosses 2^52", at: (1 << 52) - 0x1000, size: 0x2000) }
        let narrow = try LongModeMachine(addressSpace: AddressSpace(physicalBits: 36, levels: .four))
        #expect(throws: MachineError.self) { try narrow.map("at 2^36", at: 1 << 36, size: 0x1000) }
        #expect(throws: MachineError.self) { try m.map("wraps", at: 0x1000, size: UInt64.max & ~0xfff) }
        #expect(m.regions.map(\.name) == ["a"])
        try m.map("adjacent", at: 0x1000_2000, size: 0x1000)
        #expect(m.regions.map(\.name) == ["a", "adjacent"])
    }

    /// The last page below 2^40 maps, and code there runs with paging on (PML4 slot 1, GiB 1023).
    @Test func lastPageBelowThePagingLimitRuns() throws {
        let top = AddressSpace.walkLimit - 0x1000
        let m = try Self.machine(Self.countedLoop, at: top)
        #expect(m.pageTableSize() == 0x3000)
        let out = try m.run(until: Self.sentinel, budget: 1_000_000)
        #expect(out.reason == .reachedSentinel)
        #expect(out.instructions == 23)
        #expect(out.registers[.rcx] == 0)
        #expect(out.blocks.first?.address == top)
    }

    // MARK: 7. Paging

    /// Code and data in the second 512 GiB (PML4 slot 1) run through the second PDPT.
    ///
    /// 0x00  48 B8 88 77 66 55 44 33 22 11   mov rax, 0x1122334455667788
    /// 0x0A  48 BB imm64                     mov rbx, code + 0x800
    /// 0x14  48 89 03                        mov [rbx], rax
    /// 0x17  48 B8 imm64 / FF E0             mov rax, sentinel; jmp rax
    @Test func secondPML4SlotRuns() throws {
        let high: UInt64 = 0x80_0000_0000 + 0x5000
        let value: UInt64 = 0x1122_3344_5566_7788
        let program = [0x48, 0xb8] + Self.imm64(value) + [0x48, 0xbb] + Self.imm64(high + 0x800) + [0x48, 0x89, 0x03] + Self.exitToSentinel
        let m = try Self.machine(program, at: high)
        #expect(m.pageTableSize() == 0x3000)  // PML4 + PDPT for slot 0 + PDPT for slot 1
        let out = try m.run(until: Self.sentinel, budget: 1_000_000, counting: .crossCheck)
        #expect(out.reason == .reachedSentinel)
        #expect(out.instructions == 5)
        #expect(out.crossCheckInstructions == 5)
        #expect(m.read(at: high + 0x800, count: 8) == Self.imm64(value))
        #expect(out.registers[.rbx] == high + 0x800)
    }

    /// Paging is really on in slot 1 too: a jump to a GiB of slot 1 that has no leaf is a #PF.
    @Test func secondPML4SlotWithoutLeafFaults() throws {
        let high: UInt64 = 0x80_0000_5000
        let target: UInt64 = 0x90_0000_0000  // slot 1, GiB 576: no entry
        let m = try Self.machine(Self.jump(to: target), at: high)
        let out = try m.run(until: Self.sentinel, budget: 1_000_000)
        #expect(out.reason == .exception(vector: 14, rip: target))
    }
}
