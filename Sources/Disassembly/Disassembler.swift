import CCapstone

/// x86-64 disassembly through Capstone, with no Capstone type in the API.
public struct Instruction: Equatable, Sendable, CustomStringConvertible {
    public var address: UInt64
    public var bytes: [UInt8]
    public var mnemonic: String
    public var operands: String
    public var description: String { operands.isEmpty ? mnemonic : "\(mnemonic) \(operands)" }
    /// True for instructions of the SSE/AVX state: those naming xmm/ymm/zmm registers, plus the
    /// ones that name none (MXCSR loads and stores, vzeroupper/vzeroall, the XSAVE family and
    /// XGETBV/XSETBV). All raise #UD in the kexec entry state, where relocate_kernel leaves
    /// CR4.OSFXSR and CR4.OSXSAVE clear.
    public var usesVectorRegisters: Bool {
        if Self.vectorStateMnemonics.contains(mnemonic) { return true }
        let text = operands
        return text.contains("xmm") || text.contains("ymm") || text.contains("zmm")
    }

    static let vectorStateMnemonics: Set<String> = [
        "ldmxcsr", "stmxcsr", "vldmxcsr", "vstmxcsr", "vzeroupper", "vzeroall",
        "xsave", "xsave64", "xsaveopt", "xsaveopt64", "xsavec", "xsavec64", "xsaves", "xsaves64",
        "xrstor", "xrstor64", "xrstors", "xrstors64", "xgetbv", "xsetbv",
    ]
}

public final class Disassembler {
    var handle: csh = 0
    /// A second handle with details on (operands, ids): slower, used only to classify.
    var detailHandle: csh = 0
    let registers: RegisterTable

    public init?() {
        guard cs_open(CS_ARCH_X86, CS_MODE_64, &handle) == CS_ERR_OK else { return nil }
        guard cs_open(CS_ARCH_X86, CS_MODE_64, &detailHandle) == CS_ERR_OK,
              cs_option(detailHandle, CS_OPT_DETAIL, Int(CS_OPT_ON.rawValue)) == CS_ERR_OK else {
            cs_close(&handle)
            return nil
        }
        registers = RegisterTable.shared
    }

    deinit {
        cs_close(&handle)
        cs_close(&detailHandle)
    }

    /// How many instructions decode from `bytes` at `address` up to and including the one at
    /// `last` (no strings built).
    public func count(_ bytes: [UInt8], at address: UInt64, through last: UInt64) -> Int {
        var insns: UnsafeMutablePointer<cs_insn>?
        let count = bytes.withUnsafeBufferPointer { cs_disasm(handle, $0.baseAddress, $0.count, address, 0, &insns) }
        guard count > 0, let insns else { return 0 }
        defer { cs_free(insns, count) }
        return (0 ..< count).filter { insns[$0].address <= last }.count
    }

    /// Up to `limit` instructions decoded from `bytes` located at `address`; stops at the first undecodable byte.
    public func decode(_ bytes: [UInt8], at address: UInt64, limit: Int = 0) -> [Instruction] {
        var insns: UnsafeMutablePointer<cs_insn>?
        let count = bytes.withUnsafeBufferPointer { cs_disasm(handle, $0.baseAddress, $0.count, address, limit, &insns) }
        guard count > 0, let insns else { return [] }
        defer { cs_free(insns, count) }
        return (0 ..< count).map { i in
            var insn = insns[i]
            let raw = withUnsafeBytes(of: &insn.bytes) { Array($0.prefix(Int(insn.size))) }
            let mnemonic = withUnsafeBytes(of: &insn.mnemonic) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
            let operands = withUnsafeBytes(of: &insn.op_str) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
            return Instruction(address: insn.address, bytes: raw, mnemonic: mnemonic, operands: operands)
        }
    }
}
