import CCapstone

/// An instruction whose effect depends on CPU state the emulator does not model faithfully
/// (control registers, MSRs, SSE/AVX enablement, time, randomness). Found by Capstone's
/// instruction ids and register operands, never by matching text.
public enum SystemInstruction: Equatable, Sendable {
    /// Touches SSE state (`xsave` false) or VEX/EVEX/XSAVE state (`xsave` true).
    case vectorState(xsave: Bool)
    case readControl(Int)
    /// mov crN, `source` (a 64-bit general register name such as "rax").
    case writeControl(Int, source: String)
    case tlbInvalidation
    case readMSR
    case writeMSR
    case syscall
    case sysret
    case sysenter
    case timeStamp(aux: Bool)
}

extension Disassembler {
    /// The system instructions among the instructions decoded from `bytes` at `address`
    /// (stops at the first undecodable byte), with their addresses.
    public func systemInstructions(_ bytes: [UInt8], at address: UInt64) -> [(address: UInt64, instruction: SystemInstruction)] {
        var insns: UnsafeMutablePointer<cs_insn>?
        let count = bytes.withUnsafeBufferPointer { cs_disasm(detailHandle, $0.baseAddress, $0.count, address, 0, &insns) }
        guard count > 0, let insns else { return [] }
        defer { cs_free(insns, count) }
        var found: [(UInt64, SystemInstruction)] = []
        for i in 0 ..< count {
            if let kind = classify(insns[i]) { found.append((insns[i].address, kind)) }
        }
        return found
    }

    private func classify(_ insn: cs_insn) -> SystemInstruction? {
        switch x86_insn(rawValue: insn.id) {
        case X86_INS_RDTSC: return .timeStamp(aux: false)
        case X86_INS_RDTSCP: return .timeStamp(aux: true)
        case X86_INS_RDMSR: return .readMSR
        case X86_INS_WRMSR: return .writeMSR
        case X86_INS_SYSCALL: return .syscall
        case X86_INS_SYSRET: return .sysret
        case X86_INS_SYSENTER, X86_INS_SYSEXIT: return .sysenter
        case X86_INS_INVLPG, X86_INS_INVPCID: return .tlbInvalidation
        default: break
        }
        guard let detail = insn.detail else { return nil }
        let x86 = detail.pointee.x86
        let operands = withUnsafeBytes(of: x86.operands) { Array($0.bindMemory(to: cs_x86_op.self).prefix(Int(x86.op_count))) }
        let id = x86_insn(rawValue: insn.id)
        if id == X86_INS_MOV, operands.count == 2, operands[0].type == X86_OP_REG, operands[1].type == X86_OP_REG {
            if let n = registers.control(operands[0].reg), let source = registers.general(operands[1].reg) {
                return .writeControl(n, source: source.name)
            }
            if let n = registers.control(operands[1].reg) { return .readControl(n) }
        }
        if Self.xsaveStateInstructions.contains(id.rawValue) { return .vectorState(xsave: true) }
        if Self.sseStateInstructions.contains(id.rawValue) { return .vectorState(xsave: false) }
        let vector = operands.contains { op in
            switch op.type {
            case X86_OP_REG: registers.isVector(op.reg)
            case X86_OP_MEM: registers.isVector(op.mem.index)
            default: false
            }
        }
        guard vector else { return nil }
        // VEX (C4/C5) and EVEX (62) encodings need CR4.OSXSAVE; legacy SSE needs CR4.OSFXSR.
        let legacyPrefixes: Set<UInt8> = [0x66, 0x67, 0xf0, 0xf2, 0xf3, 0x2e, 0x36, 0x3e, 0x26, 0x64, 0x65]
        let opcode = withUnsafeBytes(of: insn.bytes) { Array($0.prefix(Int(insn.size))) }.first { !legacyPrefixes.contains($0) }
        return .vectorState(xsave: opcode == 0xc4 || opcode == 0xc5 || opcode == 0x62)
    }

    /// SSE state with no vector register operand.
    static let sseStateInstructions: Set<UInt32> = [X86_INS_LDMXCSR, X86_INS_STMXCSR].map(\.rawValue).reduce(into: []) { $0.insert($1) }
    /// VEX and XSAVE state with no vector register operand.
    static let xsaveStateInstructions: Set<UInt32> = [
        X86_INS_VLDMXCSR, X86_INS_VSTMXCSR, X86_INS_VZEROUPPER, X86_INS_VZEROALL,
        X86_INS_XSAVE, X86_INS_XSAVE64, X86_INS_XSAVEOPT, X86_INS_XSAVEOPT64, X86_INS_XSAVEC, X86_INS_XSAVEC64,
        X86_INS_XSAVES, X86_INS_XSAVES64, X86_INS_XRSTOR, X86_INS_XRSTOR64, X86_INS_XRSTORS, X86_INS_XRSTORS64,
        X86_INS_XGETBV, X86_INS_XSETBV,
    ].map(\.rawValue).reduce(into: []) { $0.insert($1) }
}

/// Capstone's register ids, sorted into what the classifier needs. The ids and names are
/// Capstone's constants, the same for every handle, so the table is built once per process:
/// built per `Disassembler` it was 13 % of a fuzz placement's time (thousands of string
/// comparisons each time; perf, docs/performance.md).
struct RegisterTable: Sendable {
    static let shared: RegisterTable = {
        var handle: csh = 0
        guard cs_open(CS_ARCH_X86, CS_MODE_64, &handle) == CS_ERR_OK else { return RegisterTable() }
        defer { cs_close(&handle) }
        return RegisterTable(handle: handle)
    }()

    private init() {
        general = []
        controlIds = [:]
        numbered = []
    }

    struct General { var name: String; var bytes: Int }
    /// By register id: general registers with their 64-bit name and the operand's width.
    var general: [General?]
    private var controlIds: [UInt32: Int]
    /// By register id: the general register's number in encoding order (rax 0 … r15 15) and the
    /// width in bytes, for every name of it (al, ah, ax, eax, rax, r8b…); nil for other registers.
    var numbered: [(number: Int, bytes: Int)?]

    init(handle: csh) {
        let count = Int(X86_REG_ENDING.rawValue)
        general = Array(repeating: nil, count: count)
        numbered = Array(repeating: nil, count: count)
        controlIds = [:]
        let encoding = ["rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi"]
        let names: [(String, Int, Int)] = encoding.indices.flatMap { i -> [(String, Int, Int)] in
            let base = String(encoding[i].dropFirst())  // ax, cx, …, sp, bp, si, di
            var all = [(encoding[i], i, 8), ("e" + base, i, 4), (base, i, 2)]
            all += i < 4 ? [(String(base.prefix(1)) + "l", i, 1), (String(base.prefix(1)) + "h", i, 1)] : [(base + "l", i, 1)]
            return all
        } + (8 ... 15).flatMap { n in [("r\(n)", n, 8), ("r\(n)d", n, 4), ("r\(n)w", n, 2), ("r\(n)b", n, 1)] }
        let byName = Dictionary(names.map { ($0.0, ($0.1, $0.2)) }) { first, _ in first }
        let wide = ["rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi"]
        let dword = ["eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi"]
        let word = ["ax", "cx", "dx", "bx", "sp", "bp", "si", "di"]
        for id in 1 ..< count {
            guard let cName = cs_reg_name(handle, UInt32(id)) else { continue }
            let name = String(cString: cName)
            if let i = wide.firstIndex(of: name) { general[id] = General(name: wide[i], bytes: 8) }
            if let i = dword.firstIndex(of: name) { general[id] = General(name: wide[i], bytes: 4) }
            if let i = word.firstIndex(of: name) { general[id] = General(name: wide[i], bytes: 2) }
            for n in 8 ... 15 {
                if name == "r\(n)" { general[id] = General(name: name, bytes: 8) }
                if name == "r\(n)d" { general[id] = General(name: "r\(n)", bytes: 4) }
                if name == "r\(n)w" { general[id] = General(name: "r\(n)", bytes: 2) }
            }
            if name.hasPrefix("cr"), let n = Int(name.dropFirst(2)) { controlIds[UInt32(id)] = n }
            if let (number, bytes) = byName[name] { numbered[id] = (number, bytes) }
        }
    }

    func control(_ register: x86_reg) -> Int? { controlIds[register.rawValue] }

    func general(_ register: x86_reg) -> General? {
        let id = Int(register.rawValue)
        return id < general.count ? general[id] : nil
    }

    func isVector(_ register: x86_reg) -> Bool {
        register.rawValue >= X86_REG_XMM0.rawValue && register.rawValue <= X86_REG_ZMM31.rawValue
    }
}

/// What one instruction reads and writes of the general registers and the arithmetic flags,
/// explicitly or implicitly (Capstone's cs_regs_access and its EFLAGS detail): the input of a
/// liveness analysis. The machine's fast-forward (`Machine.HashFastForward`) asks which
/// registers a loop step reads before it writes them.
public struct RegisterEffects: Equatable, Sendable {
    public var address: UInt64
    public var length: Int
    /// Bit i: general register number i in encoding order (rax, rcx, rdx, rbx, rsp, rbp, rsi,
    /// rdi, r8 … r15), read by the instruction (as an operand, an address, or implicitly).
    public var reads: UInt32
    /// Bit i: register i written whole (64 bits, or 32 bits, which zero-extend). A write of 8
    /// or 16 bits keeps the rest of the register, so it counts as a read and not as a write.
    public var writes: UInt32
    /// Bits of the flags tested (CF 0, PF 1, AF 2, ZF 3, SF 4, OF 5, DF 6).
    public var flagsRead: UInt8
    /// Bits of the flags set, cleared, modified or left undefined.
    public var flagsWritten: UInt8
    /// It reads or writes a register other than those (segment, vector, x87, control, debug,
    /// other flags); rip is not counted (rip-relative operands and branches).
    public var otherState: Bool

    public init(address: UInt64, length: Int, reads: UInt32, writes: UInt32, flagsRead: UInt8, flagsWritten: UInt8, otherState: Bool) {
        (self.address, self.length, self.reads, self.writes) = (address, length, reads, writes)
        (self.flagsRead, self.flagsWritten, self.otherState) = (flagsRead, flagsWritten, otherState)
    }

    /// The rflags bit of each flag bit above.
    public static let rflagsBits: [UInt64] = [1 << 0, 1 << 2, 1 << 4, 1 << 6, 1 << 7, 1 << 11, 1 << 10]
}

extension Disassembler {
    /// The register effects of every instruction decoded from `bytes` at `address`; nil if
    /// any byte does not decode (the caller must then assume the worst).
    public func registerEffects(_ bytes: [UInt8], at address: UInt64) -> [RegisterEffects]? {
        var insns: UnsafeMutablePointer<cs_insn>?
        let count = bytes.withUnsafeBufferPointer { cs_disasm(detailHandle, $0.baseAddress, $0.count, address, 0, &insns) }
        guard count > 0, let insns else { return bytes.isEmpty ? [] : nil }
        defer { cs_free(insns, count) }
        var effects: [RegisterEffects] = []
        var decoded = 0
        for i in 0 ..< count {
            var insn = insns[i]
            decoded += Int(insn.size)
            var read = [UInt16](repeating: 0, count: 64), written = [UInt16](repeating: 0, count: 64)
            var readCount: UInt8 = 0, writeCount: UInt8 = 0
            guard cs_regs_access(detailHandle, &insn, &read, &readCount, &written, &writeCount) == CS_ERR_OK else { return nil }
            var e = RegisterEffects(address: insn.address, length: Int(insn.size), reads: 0, writes: 0, flagsRead: 0, flagsWritten: 0, otherState: false)
            var flagsRegisterRead = false, flagsRegisterWritten = false
            for id in read.prefix(Int(readCount)) { classify(id, into: &e, written: false, flagsRegister: &flagsRegisterRead) }
            for id in written.prefix(Int(writeCount)) { classify(id, into: &e, written: true, flagsRegister: &flagsRegisterWritten) }
            // xor r, r and sub r, r give 0 whatever r held (the zeroing idiom): no read of r.
            if let detail = insn.detail, [X86_INS_XOR, X86_INS_SUB].contains(x86_insn(rawValue: insn.id)) {
                let x86 = detail.pointee.x86
                let operands = withUnsafeBytes(of: x86.operands) { Array($0.bindMemory(to: cs_x86_op.self).prefix(Int(x86.op_count))) }
                if operands.count == 2, operands.allSatisfy({ $0.type == X86_OP_REG }), operands[0].reg == operands[1].reg,
                   Int(operands[0].reg.rawValue) < registers.numbered.count, let (number, bytes) = registers.numbered[Int(operands[0].reg.rawValue)],
                   bytes >= 4 {
                    e.reads &= ~(UInt32(1) << UInt32(number))
                }
            }
            let flags = insn.detail?.pointee.x86.eflags ?? 0
            e.flagsRead = Self.flagBits(flags, tested: true)
            e.flagsWritten = Self.flagBits(flags, tested: false)
            // EFLAGS named as read with no flag said to be tested (pushf, for one): all of them.
            if flagsRegisterRead && e.flagsRead == 0 { e.flagsRead = 0x7f }
            effects.append(e)
        }
        return decoded == bytes.count ? effects : nil
    }

    private func classify(_ id: UInt16, into e: inout RegisterEffects, written: Bool, flagsRegister: inout Bool) {
        let register = x86_reg(rawValue: UInt32(id))
        if register == X86_REG_RIP || register == X86_REG_EIP || register == X86_REG_IP { return }
        if register == X86_REG_EFLAGS { flagsRegister = true; return }
        // In 64-bit mode CS, DS, ES and SS have base 0 and only name a segment (`cs nopw`,
        // a stack access): reading them is no state; writing them is (FS and GS have bases).
        if !written, [X86_REG_CS, X86_REG_DS, X86_REG_ES, X86_REG_SS].contains(register) { return }
        guard Int(id) < registers.numbered.count, let (number, bytes) = registers.numbered[Int(id)] else {
            e.otherState = true
            return
        }
        let bit = UInt32(1) << UInt32(number)
        if !written {
            e.reads |= bit
        } else if bytes >= 4 {
            e.writes |= bit
        } else {
            e.reads |= bit  // a partial write keeps (so reads) the rest of the register
        }
    }

    /// CF, PF, AF, ZF, SF, OF, DF from Capstone's EFLAGS detail bits.
    static func flagBits(_ eflags: UInt64, tested: Bool) -> UInt8 {
        let test: [UInt64] = [X86_EFLAGS_TEST_CF, X86_EFLAGS_TEST_PF, X86_EFLAGS_TEST_AF, X86_EFLAGS_TEST_ZF,
                              X86_EFLAGS_TEST_SF, X86_EFLAGS_TEST_OF, X86_EFLAGS_TEST_DF]
        let change: [[UInt64]] = [
            [X86_EFLAGS_MODIFY_CF, X86_EFLAGS_RESET_CF, X86_EFLAGS_SET_CF, X86_EFLAGS_UNDEFINED_CF],
            [X86_EFLAGS_MODIFY_PF, X86_EFLAGS_RESET_PF, X86_EFLAGS_UNDEFINED_PF],
            [X86_EFLAGS_MODIFY_AF, X86_EFLAGS_RESET_AF, X86_EFLAGS_SET_AF, X86_EFLAGS_UNDEFINED_AF],
            [X86_EFLAGS_MODIFY_ZF, X86_EFLAGS_RESET_ZF, X86_EFLAGS_SET_ZF, X86_EFLAGS_UNDEFINED_ZF],
            [X86_EFLAGS_MODIFY_SF, X86_EFLAGS_RESET_SF, X86_EFLAGS_SET_SF, X86_EFLAGS_UNDEFINED_SF],
            [X86_EFLAGS_MODIFY_OF, X86_EFLAGS_RESET_OF, X86_EFLAGS_SET_OF, X86_EFLAGS_UNDEFINED_OF],
            [X86_EFLAGS_MODIFY_DF, X86_EFLAGS_RESET_DF, X86_EFLAGS_SET_DF],
        ]
        var bits: UInt8 = 0
        for i in 0 ..< 7 {
            let hit = tested ? eflags & test[i] != 0 : change[i].contains { eflags & $0 != 0 }
            if hit { bits |= 1 << UInt8(i) }
        }
        return bits
    }
}
