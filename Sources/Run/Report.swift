import Machine

/// What happened to the purgatory.
public enum Verdict: String, Codable, CaseIterable, Sendable {
    /// Reached the next kernel's entry with exactly the registers the kernel set in entry64_regs.
    case verified
    /// Reached the next kernel's entry with other registers.
    case badHandoff = "bad-handoff"
    /// The purgatory stopped for good (spin or hlt) before the kernel entry: its answer to a digest mismatch.
    case rejectedDigest = "rejected-digest"
    /// The kernel's loader refused the object; `message` is what the kernel prints.
    case loadError = "load-error"
    /// A CPU exception or an access to memory nothing is mapped at: a triple fault on hardware.
    case fault
    /// A CPU exception taken by the loading kernel's exception handlers (6.16's debug IDT): they
    /// print the registers on the early serial console and halt.
    case kexecException = "kexec-exception"
    /// The instruction budget ran out.
    case timeout
    /// Not the purgatory's verdict: the harness could not run this placement (an input refused at
    /// run time, an emulator failure). `run` exits 2 instead; `fuzz` records it so a campaign goes on.
    case harnessError = "harness-error"
}

/// One run, as printed by `--json` (snake_case keys) and summarized in the human report.
public struct RunReport: Codable, Sendable {
    public struct SegmentInfo: Codable, Sendable, Equatable {
        public var name: String
        public var start: UInt64
        public var length: UInt64
    }
    public struct FaultInfo: Codable, Sendable, Equatable {
        public var vector: UInt32?
        public var name: String
        public var rip: UInt64
        public var symbol: String?
        public var instruction: String?
        public var access: String?
        public var address: UInt64?
        /// The error code the CPU pushes, when the machine raised the exception itself and the vector has one.
        public var errorCode: UInt64?
        enum CodingKeys: String, CodingKey { case vector, name, rip, symbol, instruction, access, address, errorCode = "error_code" }
    }
    public struct TamperInfo: Codable, Sendable, Equatable {
        public var segment: String
        public var offset: UInt64
        public var address: UInt64
    }

    /// What bzImage64_load left in the boot params segment (read back from its bytes).
    public struct BootParamsInfo: Codable, Sendable, Equatable {
        /// The setup header's boot protocol version, when a real bzImage supplied the header.
        public var protocolVersion: String?
        public var typeOfLoader: UInt8
        public var commandLineAddress: UInt64
        public var commandLine: String
        public var initrdAddress: UInt64?
        public var initrdSize: UInt64?
        public var e820Entries: Int
        /// The setup_data chain from its head: "rng-seed", "ima", …
        public var setupData: [String] = []

        enum CodingKeys: String, CodingKey {
            case protocolVersion = "protocol_version", typeOfLoader = "type_of_loader"
            case commandLineAddress = "command_line_address", commandLine = "command_line"
            case initrdAddress = "initrd_address", initrdSize = "initrd_size", e820Entries = "e820_entries"
            case setupData = "setup_data"
        }
    }

    /// Where the time of one run went, in seconds.
    public struct Timings: Codable, Sendable, Equatable {
        /// ELF parse excluded: layout, relocation, segments, entry64_regs, digest.
        public var load: Double = 0
        /// Engine creation, mapping, copying, page tables, registers.
        public var setup: Double = 0
        public var emulation: Double = 0
        /// uc_close (or the engine's return to the pool).
        public var teardown: Double = 0
        /// After the emulation: decoding the executed blocks, judging, the accounting, the report.
        public var results: Double = 0
        public var total: Double { load + setup + emulation + teardown + results }
        public init() {}
    }

    public var file: String
    public var verdict: Verdict
    public var expected: Verdict
    public var message: String
    public var kernelLog: [String]
    public var seed: UInt64
    public var loader: String
    public var entryRule: String
    public var loadAddress: UInt64
    public var purgatorySize: UInt64
    public var bufAlign: UInt64
    /// nil when the loader refused the purgatory.
    public var entry: UInt64?
    public var entrySource: String
    public var segments: [SegmentInfo]
    /// The segments the digest covers, in order (kexec_calculate_store_digests' choice).
    public var hashedSegments: [String] = []
    public var bootParams: BootParamsInfo?
    public var instructions: UInt64
    public var crossCheckInstructions: UInt64?
    /// Blocks entered (block-hook calls that counted), when counting.
    public var blocksExecuted: UInt64?
    public var budget: UInt64
    public var bytesHashed: UInt64
    public var instructionsPerByte: Double?
    public var fault: FaultInfo?
    public var tamper: TamperInfo?
    public var diagnostics: [String]
    /// What the purgatory printed on the emulated serial port, if anything.
    public var console: String?
    /// The kernel whose loader and relocate_kernel the run follows.
    public var kernelProfile: KernelProfileInfo?
    /// How IMA rewrote its segment after the digest (--ima-rewrite), if it did.
    public var imaRewrite: String?
    /// The machine the purgatory ran on (nil when it never ran).
    public var machine: MachineInfo?
    /// The CPU state at the purgatory's first instruction (nil when it never ran).
    public var entryState: EntryStateInfo?
    public var timings = Timings()
    public var megabytesPerSecond: Double?
    /// Where the count went: functions and phases (nil when not counting or not asked).
    public var accounting: Accounting?
    /// The executed blocks in order, when `Scenario.recordBlocks` asked for them (not in JSON).
    public var trace: BlockTrace?
    /// The emulator this run used: Unicorn's version and the store fix's status.
    public var unicorn: UnicornInfo?
    /// What `--fast-hash` did (`"fast_hash": null` in JSON when it was not asked for).
    public var fastHash: FastHashInfo? {
        get { fastHashField.value }
        set { fastHashField.value = newValue }
    }
    var fastHashField = OrNull<FastHashInfo>()

    public var isExpected: Bool { verdict == expected }

    enum CodingKeys: String, CodingKey {
        case file, verdict, expected, message, seed, loader, entry, segments, instructions, budget, fault, tamper, diagnostics, timings, console
        case kernelLog = "kernel_log", entryRule = "entry_rule", loadAddress = "load_address"
        case purgatorySize = "purgatory_size", bufAlign = "buf_align", entrySource = "entry_source"
        case crossCheckInstructions = "cross_check_instructions", bytesHashed = "bytes_hashed"
        case blocksExecuted = "blocks_executed", bootParams = "boot_params"
        case instructionsPerByte = "instructions_per_byte"
        case megabytesPerSecond = "megabytes_per_second"
        case accounting, machine, unicorn
        case entryState = "entry_state", kernelProfile = "kernel_profile", imaRewrite = "ima_rewrite"
        case hashedSegments = "hashed_segments"
        case fastHashField = "fast_hash"
    }
}

/// `--fast-hash` in a report: how many SHA-256 blocks (steps of the guest's hashing loop) ran
/// emulated and how many on the host, whose instructions are derived (`instructions_per_block`
/// each, the count the emulated steps showed), not emulated.
public struct FastHashInfo: Codable, Sendable, Equatable {
    /// Steps of the recognised loop that ran emulated while watched (the steps that proved the
    /// pattern, every compared checkpoint, each loop's last steps).
    public var emulatedBlocks: UInt64
    /// Steps computed on the host (SHA256_Transform on the guest's bytes and state).
    public var hostBlocks: UInt64
    public var instructionsPerBlock: UInt64?
    /// Instructions of the run that were derived, not emulated: host_blocks × instructions_per_block.
    public var derivedInstructions: UInt64
    /// Loops in which steps ran on the host.
    public var loops: Int
    /// Single steps run from a projected state (counting nothing, undone) to find where loops end.
    public var probes: Int
    /// The block that starts each step, and where the state and the input pointer were found.
    public var anchor: UInt64?
    public var stateAddress: UInt64?
    public var inputRegister: String?
    /// One compared step in every `check_every` (the rest of a batch on the host).
    public var checkEvery: Int
    /// Why the run was repeated in full emulation (its counts are then all emulated); nil if it was not.
    public var fellBack: String?
    /// Why nothing, or not everything, was fast-forwarded.
    public var notes: [String]

    enum CodingKeys: String, CodingKey {
        case loops, probes, anchor, notes
        case emulatedBlocks = "emulated_blocks", hostBlocks = "host_blocks", instructionsPerBlock = "instructions_per_block"
        case derivedInstructions = "derived_instructions", stateAddress = "state_address", inputRegister = "input_register"
        case checkEvery = "check_every", fellBack = "fell_back"
    }

    /// Every key always (null where there is no value), so readers need not guess.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(emulatedBlocks, forKey: .emulatedBlocks)
        try c.encode(hostBlocks, forKey: .hostBlocks)
        try c.encode(instructionsPerBlock, forKey: .instructionsPerBlock)
        try c.encode(derivedInstructions, forKey: .derivedInstructions)
        try c.encode(loops, forKey: .loops)
        try c.encode(probes, forKey: .probes)
        try c.encode(anchor, forKey: .anchor)
        try c.encode(stateAddress, forKey: .stateAddress)
        try c.encode(inputRegister, forKey: .inputRegister)
        try c.encode(checkEvery, forKey: .checkEvery)
        try c.encode(fellBack, forKey: .fellBack)
        try c.encode(notes, forKey: .notes)
    }
}

/// A value encoded as JSON null when absent (a synthesized Codable would leave the key out).
public struct OrNull<Value: Codable & Sendable & Equatable>: Codable, Sendable, Equatable {
    public var value: Value?
    public init(_ value: Value? = nil) { self.value = value }
    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        value = c.decodeNil() ? nil : try c.decode(Value.self)
    }
    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        if let value { try c.encode(value) } else { try c.encodeNil() }
    }
}

/// `"unicorn": {"version": "2.0.1", "store_fix": "on"}` in `run --json` (see `StoreFix`).
public struct UnicornInfo: Codable, Sendable, Equatable {
    public var version: String
    public var storeFix: StoreFix.Status

    public init(version: String, storeFix: StoreFix.Status) {
        self.version = version
        self.storeFix = storeFix
    }

    /// This process's library and the store fix as it is now (its one-time check runs on first use).
    public static var current: UnicornInfo { UnicornInfo(version: LongModeMachine.unicornVersion, storeFix: StoreFix.status) }

    enum CodingKeys: String, CodingKey {
        case version, storeFix = "store_fix"
    }
}

/// The machine a run used: its physical width and how its identity map was executed.
public struct MachineInfo: Codable, Sendable, Equatable {
    public var physBits: Int
    /// "4-level" or "5-level" (walked), or "flat" (built, not walked).
    public var paging: String
    /// The depth of the identity map the kernel would have built (and the harness built).
    public var identityMap: String
    /// Why the run is flat, and what that means; nil for walked runs.
    public var pagingNote: String?

    enum CodingKeys: String, CodingKey {
        case paging
        case physBits = "phys_bits", identityMap = "identity_map", pagingNote = "paging_note"
    }
}

/// The CPU state relocate_kernel leaves, as the kernel sets it (in a flat run the harness shows
/// these values although CR0.PG, CR3 and CR4 are not loaded into the emulator).
public struct EntryStateInfo: Codable, Sendable, Equatable {
    public struct Table: Codable, Sendable, Equatable {
        public var base: UInt64
        public var limit: UInt16
    }
    public var rip: UInt64
    public var rsp: UInt64
    /// The qword at rsp.
    public var atRsp: UInt64
    public var cr0: UInt64
    public var cr3: UInt64
    public var cr4: UInt64
    public var efer: UInt64
    public var rflags: UInt64
    public var gdt: Table
    public var idt: Table

    enum CodingKeys: String, CodingKey {
        case rip, rsp, cr0, cr3, cr4, efer, rflags, gdt, idt
        case atRsp = "at_rsp"
    }
}

/// Which kernel generation a run follows.
public struct KernelProfileInfo: Codable, Sendable, Equatable {
    public var name: String
    public var version: String
    /// "default", "--kernel-profile", or the bzImage whose version string chose it.
    public var source: String

    public init(name: String, version: String, source: String) {
        self.name = name
        self.version = version
        self.source = source
    }
}
