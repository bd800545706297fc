/// The general registers in the order of the kernel's `struct entry64_regs`
/// (rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8–r15, rip).
public enum Register: Int, CaseIterable, Sendable, CustomStringConvertible {
    case rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8, r9, r10, r11, r12, r13, r14, r15, rip
    public var description: String { Self.names[rawValue] }
    static let names = ["rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
                        "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip"]
}

/// The 16 general registers and rip.
public struct GeneralRegisters: Equatable, Sendable {
    public var values: [UInt64]
    public init(values: [UInt64] = Array(repeating: 0, count: Register.allCases.count)) {
        precondition(values.count == Register.allCases.count)
        self.values = values
    }
    public subscript(_ register: Register) -> UInt64 {
        get { values[register.rawValue] }
        set { values[register.rawValue] = newValue }
    }
}

/// Control state at the moment relocate_kernel jumps to the purgatory
/// (arch/x86/kernel/relocate_kernel_64.S; kexec-purgatory-facts §6).
public struct ControlState: Equatable, Sendable {
    public var cr0: UInt64
    public var cr4: UInt64
    public var efer: UInt64
    public var rflags: UInt64

    /// A running kernel's CR0 (PG|AM|WP|NE|ET|MP|PE) minus AM, WP, TS and EM, plus PG|PE;
    /// CR4 = PAE only (so OSFXSR is clear); EFER as the kernel ran it (SCE|LME|LMA|NXE);
    /// RFLAGS with IF and DF clear. Unicorn 2.0.1 ignores SCE and NXE (measured), so
    /// `controlState()` reads EFER back as 0x500 (`asUnicornKeepsIt`).
    public static let kexecEntry = ControlState(cr0: 0x8000_0033, cr4: 0x20, efer: 0xd01, rflags: 0x2)

    /// What Unicorn 2.0.1 holds after being given `kexecEntry`: EFER without SCE and NXE.
    public static let asUnicornKeepsIt = ControlState(cr0: 0x8000_0033, cr4: 0x20, efer: 0x500, rflags: 0x2)

    public init(cr0: UInt64, cr4: UInt64, efer: UInt64, rflags: UInt64) {
        self.cr0 = cr0
        self.cr4 = cr4
        self.efer = efer
        self.rflags = rflags
    }
}

/// A GDTR or IDTR value: where the table is and its limit (the last valid byte's offset).
public struct DescriptorTable: Equatable, Sendable {
    public var base: UInt64
    public var limit: UInt16
    public init(base: UInt64, limit: UInt16) {
        self.base = base
        self.limit = limit
    }
    /// Limit 0 and base 0: what machine_kexec loads, so that any exception triple-faults.
    public static let invalid = DescriptorTable(base: 0, limit: 0)
}

/// Everything the CPU holds when the purgatory's first instruction runs.
public struct EntryState: Equatable, Sendable {
    public var control: ControlState
    public var cr3: UInt64
    public var rip: UInt64
    public var rsp: UInt64
    public var gdt: DescriptorTable
    public var idt: DescriptorTable

    public init(control: ControlState = .kexecEntry, cr3: UInt64, rip: UInt64, rsp: UInt64,
                gdt: DescriptorTable = .invalid, idt: DescriptorTable = .invalid) {
        self.control = control
        self.cr3 = cr3
        self.rip = rip
        self.rsp = rsp
        self.gdt = gdt
        self.idt = idt
    }
}
