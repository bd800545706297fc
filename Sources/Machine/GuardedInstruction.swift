import CUnicorn

/// Instructions Unicorn 2.0.1 executes differently from the CPU in the kexec entry state, or
/// differently on every run, so that the machine executes them itself: it checks each one just
/// before it runs (per-instruction hook) and either lets it run, fixes its result up before the
/// next instruction runs, raises the exception the CPU would raise, or refuses the run.
///
/// Why each is here (Intel SDM vol. 2 and 3, AMD APM vol. 2 and 3):
///  - SSE/AVX state: Unicorn runs it whatever CR4 says; the CPU raises #UD for SSE with
///    CR4.OSFXSR clear and for VEX/XSAVE/XGETBV with CR4.OSXSAVE clear (relocate_kernel clears both).
///  - mov to CR0/CR3/CR4, wrmsr EFER: Unicorn applies whatever is written; the CPU raises #GP(0)
///    for reserved bits, for clearing CR0.PG or CR4.PAE or toggling CR4.LA57 in 64-bit mode, for
///    changing EFER.LME with paging on. Unicorn also ignores EFER.SCE and NXE (measured: EFER
///    reads back 0x500), so the machine keeps EFER itself: rdmsr EFER answers from it.
///  - syscall/sysret: #UD with EFER.SCE clear (which Unicorn cannot see); with SCE set, syscall
///    enters the old kernel's entry_SYSCALL_64 (LSTAR), a kernel-virtual address the identity map
///    does not map: #PF. sysret returns to CPL 3, whose next fetch from the supervisor-only
///    identity map is a #PF. sysenter/sysexit depend on the old kernel's SYSENTER MSRs: refused.
///  - rdtsc/rdtscp: Unicorn answers from the host's clock; the machine answers from the run's seed
///    (time stamp = base + 2 × instructions retired, TSC_AUX 0), so the same seed gives the same
///    run everywhere. cpuid needs nothing: Unicorn's CPU model (qemu64) answers it the same on
///    every host, and that model has no RDRAND or RDSEED, so those raise #UD on every run.
///  - In a flat run (paging off, see `AddressSpace`), anything whose result depends on paging —
///    reading or writing CR0/CR2/CR3/CR4, invlpg/invpcid, wrmsr EFER — cannot be answered
///    honestly: the run stops and the harness says so.
public enum GuardedInstruction: Equatable, Sendable {
    /// SSE state (CR4.OSFXSR) or, with `xsave`, VEX/EVEX and the XSAVE family (CR4.OSXSAVE).
    case vectorState(xsave: Bool)
    /// mov reg, crN
    case readControl(Int)
    /// mov crN, reg
    case writeControl(Int, from: Register)
    /// invlpg, invpcid
    case tlbInvalidation
    case readMSR
    case writeMSR
    case syscall
    case sysret
    /// sysenter, sysexit
    case sysenter
    /// rdtsc (`aux` false) or rdtscp (true)
    case timeStamp(aux: Bool)
}

/// The seed behind the machine's time stamp counter.
public struct Determinism: Equatable, Sendable {
    public var timeStampBase: UInt64
    public init(seed: UInt64) {
        var stream = SplitMix64.stream(seed, "machine")
        timeStampBase = stream.next() >> 8  // far from wrapping
    }
}

/// What the per-instruction hook does at a guarded instruction.
enum GuardAction {
    case proceed
    /// Proceed, then set the instruction's results before the next instruction runs.
    case proceedThenFix(Fixup)
    case raise(vector: UInt32, errorCode: UInt64?, note: String)
    case refuse(String)
}

enum Fixup {
    case timeStamp(aux: Bool)
    /// rdmsr EFER: edx:eax from the machine's own EFER.
    case readEFER
}

enum ControlBits {
    static let efer: UInt64 = 0xC000_0080
    static let eferSCE: UInt64 = 1 << 0, eferLME: UInt64 = 1 << 8, eferLMA: UInt64 = 1 << 10, eferNXE: UInt64 = 1 << 11
    /// EFER bits a write may set: SCE, LME, LMA (ignored), NXE, SVME, LMSLE, FFXSR, TCE.
    static let eferWritable: UInt64 = 0xFD01
    static let cr0PE: UInt64 = 1 << 0, cr0NW: UInt64 = 1 << 29, cr0CD: UInt64 = 1 << 30, cr0PG: UInt64 = 1 << 31
    static let cr0WP: UInt64 = 1 << 16
    static let cr4PAE: UInt64 = 1 << 5, cr4OSFXSR: UInt64 = 1 << 9, cr4LA57: UInt64 = 1 << 12
    static let cr4PCIDE: UInt64 = 1 << 17, cr4OSXSAVE: UInt64 = 1 << 18, cr4CET: UInt64 = 1 << 23
    /// CR4 bits that are reserved on every x86-64 CPU: bit 15 and bits 26–63.
    static let cr4Reserved: UInt64 = (1 << 15) | ~((1 << 26) - 1)
}

extension TraceState {
    /// The CPU's rules for the guarded instruction at `address`, evaluated just before it runs.
    mutating func decide(_ instruction: GuardedInstruction, at address: UInt64) -> GuardAction {
        let flat = translation == .flat
        func flatRefusal(_ what: String) -> GuardAction {
            .refuse("\(what) at \(hex(address)) in a flat run: its result depends on the paging that Unicorn 2.0.1 cannot walk at these addresses")
        }
        switch instruction {
        case .vectorState(let xsave):
            let cr4 = read(UC_X86_REG_CR4)
            if xsave ? cr4 & ControlBits.cr4OSXSAVE == 0 : cr4 & ControlBits.cr4OSFXSR == 0 {
                return .raise(vector: 6, errorCode: nil, note: xsave
                    ? "VEX/XSAVE state with CR4.OSXSAVE clear, as relocate_kernel leaves it (Unicorn 2.0.1 would have run it)"
                    : "SSE state with CR4.OSFXSR clear, as relocate_kernel leaves it (Unicorn 2.0.1 would have run it)")
            }
            return .proceed
        case .readControl(let n):
            return flat && n != 8 ? flatRefusal("mov from cr\(n)") : .proceed
        case .writeControl(let n, let source):
            if flat && n != 8 { return flatRefusal("mov to cr\(n)") }
            return checkControlWrite(n, value: read(LongModeMachine.ucRegister[source.rawValue]))
        case .tlbInvalidation:
            return flat ? flatRefusal("TLB invalidation") : .proceed
        case .readMSR:
            return read(UC_X86_REG_RCX) & 0xffff_ffff == ControlBits.efer ? .proceedThenFix(.readEFER) : .proceed
        case .writeMSR:
            guard read(UC_X86_REG_RCX) & 0xffff_ffff == ControlBits.efer else { return .proceed }
            if flat { return flatRefusal("wrmsr EFER") }
            let value = (read(UC_X86_REG_RDX) & 0xffff_ffff) << 32 | read(UC_X86_REG_RAX) & 0xffff_ffff
            if value & ~ControlBits.eferWritable != 0 {
                return .raise(vector: 13, errorCode: 0, note: "wrmsr EFER \(hex(value)) sets reserved bits")
            }
            if (value ^ efer) & ControlBits.eferLME != 0, read(UC_X86_REG_CR0) & ControlBits.cr0PG != 0 || flat {
                return .raise(vector: 13, errorCode: 0, note: "wrmsr EFER \(hex(value)) changes EFER.LME with paging on")
            }
            efer = value & ~ControlBits.eferLMA | efer & ControlBits.eferLMA  // LMA is read-only
            return .proceed
        case .syscall:
            if efer & ControlBits.eferSCE == 0 {
                return .raise(vector: 6, errorCode: nil, note: "syscall with EFER.SCE clear")
            }
            return .raise(vector: 14, errorCode: 0x10, note: "syscall enters the old kernel's entry_SYSCALL_64 (LSTAR), a kernel-virtual address the identity map does not map")
        case .sysret:
            if efer & ControlBits.eferSCE == 0 {
                return .raise(vector: 6, errorCode: nil, note: "sysret with EFER.SCE clear")
            }
            let target = read(UC_X86_REG_RCX)
            if !isCanonical(target) {
                return .raise(vector: 13, errorCode: 0, note: "sysret to the non-canonical \(hex(target))")
            }
            return .raise(vector: 14, errorCode: 0x15, note: "sysret to \(hex(target)) at CPL 3, where the supervisor-only identity map faults the next fetch")
        case .sysenter:
            return .refuse("sysenter/sysexit at \(hex(address)): their effect depends on the old kernel's SYSENTER MSRs, which the machine does not model")
        case .timeStamp(let aux):
            return .proceedThenFix(.timeStamp(aux: aux))
        }
    }

    private func checkControlWrite(_ n: Int, value: UInt64) -> GuardAction {
        let longMode = efer & ControlBits.eferLMA != 0
        func gp(_ why: String) -> GuardAction { .raise(vector: 13, errorCode: 0, note: "mov to cr\(n) \(hex(value)): \(why)") }
        switch n {
        case 0:
            if value >> 32 != 0 { return gp("sets reserved bits 63:32") }
            if value & ControlBits.cr0PG != 0 && value & ControlBits.cr0PE == 0 { return gp("PG without PE") }
            if value & ControlBits.cr0NW != 0 && value & ControlBits.cr0CD == 0 { return gp("NW without CD") }
            if longMode && value & ControlBits.cr0PG == 0 { return gp("clears PG in 64-bit mode") }
            if value & ControlBits.cr0WP == 0 && read(UC_X86_REG_CR4) & ControlBits.cr4CET != 0 { return gp("clears WP with CR4.CET set") }
            return .proceed
        case 3:
            let reserved = ~((UInt64(1) << UInt64(physicalBits)) - 1) & ~(UInt64(1) << 63)
            return value & reserved != 0 ? gp("sets bits above the \(physicalBits)-bit physical width") : .proceed
        case 4:
            let old = read(UC_X86_REG_CR4)
            if value & ControlBits.cr4Reserved != 0 { return gp("sets reserved bits") }
            if longMode && value & ControlBits.cr4PAE == 0 { return gp("clears PAE in 64-bit mode") }
            if longMode && (value ^ old) & ControlBits.cr4LA57 != 0 { return gp("changes LA57 in 64-bit mode") }
            if value & ControlBits.cr4PCIDE != 0 && old & ControlBits.cr4PCIDE == 0 && read(UC_X86_REG_CR3) & 0xfff != 0 {
                return gp("sets PCIDE with CR3[11:0] not zero")
            }
            if value & ControlBits.cr4CET != 0 && read(UC_X86_REG_CR0) & ControlBits.cr0WP == 0 { return gp("sets CET with CR0.WP clear") }
            return .proceed
        default:
            return .proceed
        }
    }

    /// Sets the results of the instruction that just ran (rdtsc, rdmsr EFER).
    mutating func apply(_ fixup: Fixup) {
        switch fixup {
        case .timeStamp(let aux):
            // The instruction just retired is already in the count.
            let tsc = timeStampBase &+ 2 &* crossCheckInstructions
            write(UC_X86_REG_RAX, tsc & 0xffff_ffff)
            write(UC_X86_REG_RDX, tsc >> 32)
            if aux { write(UC_X86_REG_RCX, 0) }
        case .readEFER:
            write(UC_X86_REG_RAX, efer & 0xffff_ffff)
            write(UC_X86_REG_RDX, efer >> 32)
        }
    }

    func read(_ register: uc_x86_reg) -> UInt64 {
        var value: UInt64 = 0
        uc_reg_read(engine, Int32(register.rawValue), &value)
        return value
    }

    func write(_ register: uc_x86_reg, _ value: UInt64) {
        var value = value
        uc_reg_write(engine, Int32(register.rawValue), &value)
    }
}

/// Canonical for the paging depth in use: bits 63:47 (4-level) all equal; 5-level and flat use 63:56.
func isCanonical(_ address: UInt64, levels: AddressSpace.Levels = .four) -> Bool {
    let shift: UInt64 = levels == .four ? 47 : 56
    let top = address >> shift
    return top == 0 || top == (UInt64.max >> shift)
}

extension TraceState {
    func isCanonical(_ address: UInt64) -> Bool {
        switch translation {
        case .walked(let levels): Machine.isCanonical(address, levels: levels)
        case .flat: Machine.isCanonical(address, levels: .five)
        }
    }
}
