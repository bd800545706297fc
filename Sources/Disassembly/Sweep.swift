import CCapstone

extension Disassembler {
    /// Decodes all of `bytes` (located at `address`) one instruction at a time, stepping one byte
    /// past anything Capstone cannot decode. Linear in `bytes.count`: no copy of the rest of the
    /// code per undecodable byte, one reused instruction buffer.
    public func sweep(_ bytes: [UInt8], at address: UInt64 = 0, _ body: (Instruction) -> Void) {
        guard let insn = cs_malloc(handle) else { return }
        defer { cs_free(insn, 1) }
        bytes.withUnsafeBufferPointer { buffer in
            var code: UnsafePointer<UInt8>? = buffer.baseAddress
            guard code != nil else { return }
            var remaining = buffer.count
            var at = address
            while remaining > 0 {
                if cs_disasm_iter(handle, &code, &remaining, &at, insn) {
                    body(Instruction(insn.pointee))
                } else {
                    code = code.map { $0 + 1 }
                    remaining -= 1
                    at &+= 1
                }
            }
        }
    }
}

extension Instruction {
    init(_ insn: cs_insn) {
        var insn = insn
        let size = min(Int(insn.size), MemoryLayout.size(ofValue: insn.bytes))
        bytes = withUnsafeBytes(of: &insn.bytes) { Array($0.prefix(size)) }
        mnemonic = withUnsafeBytes(of: &insn.mnemonic) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        operands = withUnsafeBytes(of: &insn.op_str) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        address = insn.address
    }
}
