import Disassembly
import ELF
import Foundation
import Inspect
import Loader
import Run
import Testing

/// Objects built to break the reader, the loader and inspect: each must end in a verdict or a
/// typed error, quickly, never in a trap.
@Suite struct HostileInputTests {
    /// An object whose only SHF_ALLOC section is empty.
    static func emptyAllocObject() -> [UInt8] {
        var b = ELFBuilder()
        let text = b.add(.init(name: ".text", flags: 0x6, data: []))
        b.symbol("purgatory_start", type: 2, section: UInt16(text))
        return b.build()
    }

    static func patch(_ bytes: inout [UInt8], _ at: Int, _ value: some FixedWidthInteger) {
        bytes.replaceSubrange(at ..< at + MemoryLayout.size(ofValue: value), with: le(value))
    }

    static func sectionHeaderOffset(_ bytes: [UInt8], _ index: Int) throws -> Int {
        let file = try ELFFile(bytes: bytes, name: "x")
        return Int(file.header.shoff) + 64 * index
    }

    @Test(arguments: ["empty sections", "no section headers", "no allocatable section", "only bss"])
    func zeroSizeBufferIsTheKernelsENOMEM(shape: String) throws {
        var bytes: [UInt8]
        switch shape {
        case "empty sections":
            bytes = Self.emptyAllocObject()
        case "no section headers":
            bytes = Fixtures.referenceBytes
            Self.patch(&bytes, 40, UInt64(0))  // e_shoff = 0, e_shnum still set
        case "no allocatable section":
            var b = ELFBuilder()
            b.add(.init(name: ".comment", flags: 0, data: [1, 2, 3]))
            bytes = b.build()
        default:
            var b = ELFBuilder()
            b.add(.init(name: ".bss", type: 8, flags: 0x3, nobitsSize: 0x100))
            bytes = b.build()
        }
        let file = try ELFFile(bytes: bytes, name: "\(shape).ro")
        let loader = AnyLoader(file: file, kind: .kexecFile)
        #expect(throws: LoadFailure.self) { try loader.prepareBuffer() }
        let report = try Scenario(file: file, seed: 1).run()
        #expect(report.verdict == .loadError)
        #expect(report.message.contains("vzalloc(0)") && report.message.contains("-ENOMEM"))
        var fixed = Scenario(file: file, seed: 1)
        fixed.loadAddress = 0x1_0000_0000
        #expect(try fixed.run().verdict == .loadError)
        let inspection = try Inspector(file: file).inspect()
        #expect(inspection.neverLoads?.contains("vzalloc(0)") == true)
        for kind in [LoaderKind.kexecTools] {
            #expect(throws: LoadFailure.self) { try AnyLoader(file: file, kind: kind).prepareBuffer() }
        }
    }

    @Test func allocatableNullSectionWithHugeOffsetIsMalformed() throws {
        var bytes = Fixtures.referenceBytes
        let at = try Self.sectionHeaderOffset(bytes, 1)
        Self.patch(&bytes, at + 4, UInt32(0))                 // sh_type SHT_NULL
        Self.patch(&bytes, at + 24, UInt64(0xffff_ffff_0000))  // sh_offset
        #expect(throws: ELFError.self) { try ELFFile(bytes: bytes, name: "null.ro") }
    }

    @Test(arguments: [UInt64(1) << 62, UInt64(1) << 63, 0xffff_ffff_ffff_ffff, 0x8000_0000_0000_0001])
    func inspectSurvivesHugeAlignments(align: UInt64) throws {
        var b = ELFBuilder()
        let text = b.add(.init(name: ".text", flags: 0x6, align: align, data: [0xc3]))
        b.add(.init(name: ".data", flags: 0x3, align: align, data: [1, 2, 3, 4]))
        b.symbol("purgatory_start", type: 2, section: UInt16(text))
        let file = try ELFFile(bytes: b.build(), name: "align.ro")
        if let inspection = try? Inspector(file: file).inspect() {
            #expect(inspection.loadsCleanly.isEmpty || inspection.neverLoads == nil)
        }
        _ = try? Inspector(file: file).inspect(at: 0xffff_ffff_ffff_f000)
        var s = Scenario(file: file, seed: 2)
        s.budget = 10_000
        _ = try? s.run()
    }

    @Test(arguments: [UInt64(1) << 52, UInt64(1) << 63, 0xffff_ffff_ffff_f000, 0xffff_ffff_ffff_ffff])
    func inspectSurvivesHugeBss(size: UInt64) throws {
        var b = ELFBuilder()
        let text = b.add(.init(name: ".text", flags: 0x6, data: [0xc3]))
        b.add(.init(name: ".bss", type: 8, flags: 0x3, nobitsSize: size))
        b.symbol("purgatory_start", type: 2, section: UInt16(text))
        let file = try ELFFile(bytes: b.build(), name: "bss.ro")
        let inspection = try Inspector(file: file).inspect()
        #expect(inspection.neverLoads != nil)
        var s = Scenario(file: file, seed: 3)
        s.budget = 10_000
        _ = try? s.run()
        _ = try? Inspector(file: file, kind: .kexecTools).inspect()
    }

    /// 10^5 symbols and 300 relocation sections against them: parsed once (was once per section).
    @Test func symbolTableIsParsedOncePerFile() throws {
        var b = ELFBuilder()
        let text = b.add(.init(name: ".text", flags: 0x6, data: [UInt8](repeating: 0xc3, count: 0x400)))
        var first = 0
        for i in 0 ..< 100_000 {
            let index = b.symbol("s\(i)", global: false, type: 2, section: UInt16(text), value: UInt64(i % 0x400))
            if i == 0 { first = index }
        }
        b.symbol("purgatory_start", type: 2, section: UInt16(text))
        for t in 0 ..< 300 {
            let target = b.add(.init(name: ".text.\(t)", flags: 0x6, data: [UInt8](repeating: 0x90, count: 8)))
            b.rela(target, offset: 0, symbol: first, type: 2)
        }
        let file = try ELFFile(bytes: b.build(), name: "many.ro")
        let clock = ContinuousClock()
        let elapsed = try clock.measure {
            _ = try PurgatoryLoader(file: file).load(at: 0x10_0000)
        }
        #expect(elapsed < .seconds(20))
    }

    /// 4 MiB of bytes Capstone cannot decode: the sweep is linear (it took minutes when quadratic).
    @Test func inspectSweepIsLinear() throws {
        guard let decoder = Disassembler() else { return }
        let code = [UInt8](repeating: 0x06, count: 4 << 20)  // push es: invalid in 64-bit mode
        let clock = ContinuousClock()
        var count = 0
        let elapsed = clock.measure { decoder.sweep(code) { _ in count += 1 } }
        #expect(count == 0)
        #expect(elapsed < .seconds(10))
        var decoded: [Instruction] = []
        decoder.sweep([0x06, 0x90, 0x06, 0xc3], at: 0x100) { decoded.append($0) }
        #expect(decoded.map(\.address) == [0x101, 0x103])
        #expect(decoded.map(\.mnemonic) == ["nop", "ret"])
    }
}
