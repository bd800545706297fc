/// What a memory access was doing when it hit nothing.
public enum AccessKind: String, Sendable {
    case read, write, fetch
}

/// Why emulation stopped.
public enum StopReason: Equatable, Sendable {
    /// Execution reached the sentinel address (the next kernel's entry).
    case reachedSentinel
    /// A block that can never make progress (`jmp .`, optionally after pause/nop) at this address.
    case spin(at: UInt64)
    /// `hlt` with interrupts off: the CPU stops for good.
    case halted(at: UInt64)
    /// The instruction budget ran out.
    case budgetExhausted
    /// A CPU exception; with the GDT and IDT invalid this is a triple fault on hardware.
    case exception(vector: UInt32, rip: UInt64)
    /// An access to physical memory that nothing is mapped at.
    case unmappedAccess(kind: AccessKind, address: UInt64, size: Int, rip: UInt64)
    /// Unicorn reported an error the harness did not anticipate.
    case emulatorError(String)
    /// The instruction at `rip` cannot be executed honestly by this machine (see `GuardedInstruction`).
    case unmodelled(rip: UInt64, reason: String)
}

/// One translated block with how often it ran: the raw material for per-function counts.
public struct BlockCount: Equatable, Sendable {
    public var address: UInt64
    public var bytes: UInt32
    public var instructions: UInt32
    public var executions: UInt64
}

/// Execution entered attribution range `range` (an index into the ranges given to `run`,
/// -1 for code outside all of them) when `firstInstruction` instructions had been counted.
public struct RangeEntry: Equatable, Sendable {
    public var range: Int
    public var firstInstruction: UInt64
}

/// One executed block, in execution order.
public struct ExecutedBlock: Equatable, Sendable {
    public var address: UInt64
    public var instructions: UInt32
}

public struct RunOutcome: Sendable {
    public var reason: StopReason
    /// Exact count from the block hook: sum of per-block instruction counts of every block entered
    /// (the stopping block excluded when the harness stopped it before it ran).
    public var instructions: UInt64
    /// The per-instruction hook's count, when cross-checking.
    public var crossCheckInstructions: UInt64?
    /// The block that was running last, for trimming the count after a fault mid-block.
    public var lastBlock: (address: UInt64, bytes: UInt32, instructions: UInt32)
    public var registers: GeneralRegisters
    public var rflags: UInt64
    public var blocks: [BlockCount]
    /// Bytes the guest sent through the emulated UART.
    public var serialOutput: [UInt8]
    /// IN/OUT to ports other than the UART's (they read as all ones).
    public var otherPortAccesses: Int
    /// Each change of attribution range by block start, in order: consecutive entries differ, so
    /// this is as long as the number of transitions between ranges (not blocks).
    public var rangeEntries: [RangeEntry] = []
    /// The per-instruction hook's count per attribution range (outside all of them last), when cross-checking.
    public var crossCheckPerRange: [UInt64]?
    /// For an exception the machine raised itself (a guarded instruction): the error code pushed,
    /// if the vector has one, and why the CPU raises it.
    public var exceptionErrorCode: UInt64?
    public var exceptionNote: String?
    /// Addresses of the guarded instructions that ran, in order of first execution (at most 64).
    public var guardedExecuted: [UInt64] = []
    public var translation: Translation = .walked(.four)
    /// Exceptions the IDT's handlers took (see `ExceptionHandlers`), in order.
    public var handledExceptions: [HandledException] = []
    /// Every counted block in order, when recording was asked for, up to its limit.
    public var executedBlocks: [ExecutedBlock]?
    /// Blocks counted after the recording limit was reached (not in `executedBlocks`).
    public var executedBlocksDropped: UInt64 = 0
    /// What the SHA-256 fast-forward did, when one was asked for (`FastForwardOptions`).
    public var fastForward: FastForwardReport?
}
