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
    }

    struct General { var name: String; var bytes: Int }
    /// By register id: general registers with their 64-bit name and the operand's width.
    var general: [General?]
    private var controlIds: [UInt32: Int]

    init(handle: csh) {
        let count = Int(X86_REG_ENDING.rawValue)
        general = Array(repeating: nil, count: count)
        controlIds = [:]
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
