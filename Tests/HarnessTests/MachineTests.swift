import Machine
import Testing

/// Probe (temporary): prints outcomes of uncertain cases.
@Suite struct MachineTests {
    static let code: UInt64 = 0x12_3456_7000
    static let harness: UInt64 = 0x2000_0000
    static let kernel: UInt64 = 0x100_0000
    static let sentinel: UInt64 = kernel + 0x200

    static func le(_ v: UInt64) -> [UInt8] { (0 ..< 8).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }

    static func machine(_ program: [UInt8], at code: UInt64 = code, harness: UInt64 = harness) throws -> LongModeMachine {
        let m = try LongModeMachine()
        try m.map("code", at: code, size: 0x1000)
        try m.write(program, at: code)
        try m.map("kernel", at: kernel, size: 0x1000)
        try m.map("harness", at: harness, size: 0x4000)
        let cr3 = try m.installIdentityPaging(at: harness + 0x1000)
        try m.setEntryState(cr3: cr3, rip: code, rsp: harness + 0x1000 - 8)
        return m
    }

    @Test(arguments: LongModeMachine.Counting.allCases) func probe(_ counting: LongModeMachine.Counting) throws {
        let c = Self.code
        let cases: [(String, [UInt8])] = [
            ("read", [0x48, 0xb8] + Self.le(c + 0x100000) + [0x48, 0x8b, 0x00]),
            ("write", [0x48, 0xb8] + Self.le(c + 0x100000) + [0x48, 0x89, 0x00]),
            ("fetchNoPTE", [0x48, 0xb8] + Self.le(0x30_0000_0000) + [0xff, 0xe0]),
            ("fetchUnmapped", [0x48, 0xb8] + Self.le(c + 0x100000) + [0xff, 0xe0]),
            ("ud2", [0xb9, 0x0a, 0, 0, 0, 0x0f, 0x0b]),
            ("hlt", [0xb9, 0x0a, 0, 0, 0, 0xf4]),
            ("int3", [0xb9, 0x0a, 0, 0, 0, 0xcc]),
            ("budget", [0x48, 0xff, 0xc0, 0xeb, 0xfb]),
            ("spin", [0xb9, 0x0a, 0, 0, 0, 0xeb, 0xfe]),
        ]
        for (name, program) in cases {
            let m = try Self.machine(program)
            let out = try m.run(until: Self.sentinel, budget: name == "budget" ? 1001 : 1_000_000, counting: counting)
            print("PROBE \(counting) \(name): \(out.reason) n=\(out.instructions) x=\(String(describing: out.crossCheckInstructions)) rax=\(out.registers[.rax]) rip=0x\(String(out.registers[.rip], radix: 16)) last=\(out.lastBlock) blocks=\(out.blocks.count)")
        }
    }
}
