import CUnicorn

/// Exception handlers reachable through the IDT at entry, when there are any. With none (the
/// IDT's limit 0), every exception triple-faults and the run stops at it. With handlers for the
/// first `vectors` vectors, the CPU pushes its frame and enters them: those in `returning` come
/// back with iretq and the guest goes on; the others end the run at the exception. A vector
/// beyond the IDT's limit raises #GP with the IDT-flavoured error code (vector × 8 + 2).
///
/// The handlers' own instructions are not emulated (they are the loading kernel's code, not the
/// purgatory's): the machine applies their effects — the CPU's frame on the stack (aligned to 16:
/// ss, rsp, rflags, cs, rip, then the stub's error code and vector), registers unchanged after
/// iretq — and records each exception so the caller can render what the handler prints.
public struct ExceptionHandlers: Equatable, Sendable {
    public var vectors: UInt32
    public var returning: Set<UInt32>
    public init(vectors: UInt32, returning: Set<UInt32>) {
        self.vectors = vectors
        self.returning = returning
    }
}

/// One exception a handler took, with the state its dump shows.
public struct HandledException: Equatable, Sendable {
    public var vector: UInt32
    public var errorCode: UInt64
    /// Where the exception happened (for a trap such as int3: the instruction after it).
    public var rip: UInt64
    /// The interrupted rsp, as the CPU pushed it.
    public var rsp: UInt64
    public var registers: GeneralRegisters
    public var cr2: UInt64
    /// How many bytes the guest had sent to the UART when it happened.
    public var consoleOffset: Int
    /// The handler came back (iretq) and the guest went on.
    public var returned: Bool
}

extension TraceState {
    /// The CPU's delivery through a trap gate at CPL 0 with IST 0: no stack switch, rsp aligned
    /// down to 16, five qwords pushed, then the stub's error code and vector. False when the frame
    /// cannot be written (the stack is not RAM): a double fault, then a triple fault, on hardware.
    mutating func deliverReturning(vector: UInt32, errorCode: UInt64, _ engine: OpaquePointer?) -> Bool {
        let rsp = read(UC_X86_REG_RSP), rip = read(UC_X86_REG_RIP)
        let frameTop = rsp & ~0xf
        let frame: [UInt64] = [UInt64(vector), errorCode, rip, read(UC_X86_REG_CS), read(UC_X86_REG_RFLAGS), rsp, read(UC_X86_REG_SS)]
        let bytes = frame.flatMap { value in (0 ..< 8).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) } }
        guard frameTop >= UInt64(bytes.count) else { return false }
        let err = bytes.withUnsafeBytes { uc_mem_write(engine, frameTop - UInt64(bytes.count), $0.baseAddress, $0.count) }
        guard err == UC_ERR_OK else { return false }
        record(vector: vector, errorCode: errorCode, rip: rip, returned: true)
        return true
    }

    mutating func record(vector: UInt32, errorCode: UInt64, rip: UInt64, returned: Bool) {
        var registers = GeneralRegisters()
        for register in Register.allCases { registers[register] = read(LongModeMachine.ucRegister[register.rawValue]) }
        registers[.rip] = rip
        let console = ports.map { Unmanaged<PortState>.fromOpaque($0).takeUnretainedValue().transmitted.count } ?? 0
        handled.append(HandledException(vector: vector, errorCode: errorCode, rip: rip, rsp: registers[.rsp], registers: registers,
                                        cr2: read(UC_X86_REG_CR2), consoleOffset: console, returned: returned))
    }
}
