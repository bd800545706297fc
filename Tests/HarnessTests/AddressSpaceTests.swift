import Machine
import Testing

/// The machine's address space: 4- and 5-level identity maps walked below 2^40, flat runs above,
/// and what a flat run refuses. Hand-encoded programs, public Machine API only.
@Suite struct AddressSpaceTests {
    static let imm64 = MachineTests.imm64

    /// A machine with `program` at `code`, the kernel page at `kernel`, and a harness region (stack
    /// page + tables) at `harness`, in the given address space.
    static func machine(_ program: [UInt8], at code: UInt64, kernel: UInt64 = MachineTests.kernel, harness: UInt64 = MachineTests.harness,
                        space: AddressSpace) throws -> (LongModeMachine, Translation) {
        let m = try LongModeMachine(addressSpace: space)
        try m.map("code", at: code, size: 0x1000, contents: program)
        try m.map("kernel", at: kernel, size: 0x1000)
        let cr3 = try m.mapWithPageTables("harness", at: harness, size: 0x10000, tablesOffset: 0x1000)
        var control = ControlState.kexecEntry
        if space.levels == .five { control.cr4 |= 1 << 12 }
        let translation = try m.enter(EntryState(control: control, cr3: cr3, rip: code, rsp: harness + 0x1000 - 8))
        return (m, translation)
    }

    /// mov rax, cr3; mov rbx, cr4; mov rcx, sentinel; jmp rcx
    static func readControlRegisters(sentinel: UInt64) -> [UInt8] {
        [0x0f, 0x20, 0xd8, 0x0f, 0x20, 0xe3, 0x48, 0xb9] + imm64(sentinel) + [0xff, 0xe1]
    }

    /// Below 2^40 a 5-level map is walked: code in a GiB with no leaf faults, CR4.LA57 is set.
    @Test func fiveLevelMapIsWalkedBelowTheWalkLimit() throws {
        let code: UInt64 = 0xc0_0000_5000  // PML4 slot 1 of PML5 entry 0
        let (m, translation) = try Self.machine(Self.readControlRegisters(sentinel: MachineTests.sentinel), at: code,
                                                space: AddressSpace(physicalBits: 52, levels: .five))
        #expect(translation == .walked(.five))
        #expect(m.pageTableSize() == 0x4000)  // PML5, PML4, PDPT for slot 0, PDPT for slot 1
        let out = try m.run(until: MachineTests.sentinel, budget: 100, counting: .crossCheck,
                            guarded: [code: .readControl(3), code + 3: .readControl(4)])
        #expect(out.reason == .reachedSentinel)
        #expect(out.instructions == 4)
        #expect(out.registers[.rax] == MachineTests.harness + 0x1000)
        #expect(out.registers[.rbx] & (1 << 12) != 0)
        let jump = try Self.machine(MachineTests.jump(to: 0xd0_0000_0000), at: code, space: AddressSpace(physicalBits: 52, levels: .five))
        #expect(try jump.0.run(until: MachineTests.sentinel, budget: 100).reason == .exception(vector: 14, rip: 0xd0_0000_0000))
    }

    /// At or above 2^40 the machine runs flat: the 2019 address, near 2^47 and just below 2^52
    /// all run the same program with the same exact count.
    @Test(arguments: [0x17f_7aff_d000, 0x7ff0_0000_0000, 0xf_ffff_ffff_f000] as [UInt64])
    func flatRunsCountExactly(code: UInt64) throws {
        let (m, translation) = try Self.machine(MachineTests.countedLoop, at: code, space: AddressSpace(physicalBits: 52, levels: .five))
        #expect(translation == .flat)
        #expect(m.controlState().cr0 & (1 << 31) == 0)
        let out = try m.run(until: MachineTests.sentinel, budget: 1_000, counting: .crossCheck)
        #expect(out.reason == .reachedSentinel)
        #expect(out.instructions == 23 && out.crossCheckInstructions == 23)
        #expect(out.translation == .flat)
    }

    /// Sparse memory holds in a flat run: an access to nothing is a fault, a `jmp .` a spin.
    @Test func flatRunsFaultAndSpinLikeWalkedOnes() throws {
        let code: UInt64 = 0x17f_7aff_d000
        // mov rax, [code + 0x10_0000]
        let load = [0x48, 0xa1] + Self.imm64(code + 0x10_0000)
        let (m, _) = try Self.machine(load, at: code, space: AddressSpace())
        let reason = try m.run(until: MachineTests.sentinel, budget: 100_000).reason
        guard case .unmappedAccess(.read, code + 0x10_0000, 8, _) = reason else {
            Issue.record("expected an unmapped read, got \(reason)")
            return
        }
        let (spin, _) = try Self.machine([0xeb, 0xfe], at: code, space: AddressSpace())
        #expect(try spin.run(until: MachineTests.sentinel, budget: 1_000_000).reason == .spin(at: code))
    }

    /// In a flat run, what depends on paging is refused, naming the address: reading CR3 would
    /// answer 0 where the kernel's CR3 was.
    @Test func flatRunsRefuseWhatDependsOnPaging() throws {
        let code: UInt64 = 0x17f_7aff_d000
        let program = Self.readControlRegisters(sentinel: MachineTests.sentinel)
        let (m, _) = try Self.machine(program, at: code, space: AddressSpace())
        let out = try m.run(until: MachineTests.sentinel, budget: 100, counting: .crossCheck,
                            guarded: [code: .readControl(3), code + 3: .readControl(4)])
        guard case .unmodelled(code, let reason) = out.reason else {
            Issue.record("expected a refusal, got \(out.reason)")
            return
        }
        #expect(reason.contains("mov from cr3") && reason.contains("flat run"))
        // Walked, the same program reads the real CR3.
        let (walked, _) = try Self.machine(program, at: 0x12_3456_7000, space: AddressSpace())
        let ok = try walked.run(until: MachineTests.sentinel, budget: 100, counting: .crossCheck,
                                guarded: [0x12_3456_7000: .readControl(3), 0x12_3456_7003: .readControl(4)])
        #expect(ok.reason == .reachedSentinel)
        #expect(ok.registers[.rax] == MachineTests.harness + 0x1000)
    }

    @Test func addressSpaceRefusalsNameTheLimit() {
        let four = AddressSpace(physicalBits: 52, levels: .four)
        #expect(four.refusal(start: 0x7fff_ffff_f000, size: 0x1000) == nil)
        #expect(four.refusal(start: 0x8000_0000_0000, size: 0x1000)?.contains("4-level identity map cannot reach") == true)
        let narrow = AddressSpace(physicalBits: 40, levels: .four)
        #expect(narrow.refusal(start: 1 << 40, size: 0x1000)?.contains("40 bits") == true)
        #expect(AddressSpace().refusal(start: .max & ~0xfff, size: 0x2000)?.contains("wraps") == true)
    }
}
