/// The symbols a loader writes into the purgatory, and the field order of its register block.
/// Linux's purgatory (arch/x86/purgatory) and kexec-tools' (purgatory/) name them differently.
public struct PurgatoryABI: Sendable, Equatable {
    public var name: String
    public var regions: String
    public var digest: String
    public var registers: String
    public var stack: String
    /// Field names of the register block, in memory order (rip last).
    public var registerOrder: [String]
    /// Optional u8/u16/u32 knobs the loader may set (kexec-tools' console options).
    public var options: [String]

    /// KEXEC_SEGMENT_MAX regions of {u64 start, u64 len}.
    public static let regionCount = 16

    public static let kernel = PurgatoryABI(
        name: "kernel", regions: "purgatory_sha_regions", digest: "purgatory_sha256_digest",
        registers: "entry64_regs", stack: "stack_end",
        registerOrder: ["rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
                        "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip"],
        options: [])

    public static let kexecTools = PurgatoryABI(
        name: "kexec-tools", regions: "sha256_regions", digest: "sha256_digest",
        registers: "entry64_regs", stack: "stack_end",
        registerOrder: ["rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp",
                        "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip"],
        options: ["skip_checks", "console_serial", "serial_base", "serial_baud", "console_vga"])

    public static let profiles = [kernel, kexecTools]
    public static func profile(named name: String) -> PurgatoryABI? { profiles.first { $0.name == name } }

    /// The ABI a loader expects by default.
    public static func `default`(for kind: LoaderKind) -> PurgatoryABI { kind == .kexecTools ? .kexecTools : .kernel }

    /// Symbols every purgatory of this ABI must define.
    public var requiredSymbols: [String] { [regions, digest, registers, stack] }
}
