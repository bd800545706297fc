import ELF
import Inspect
import Loader
import Testing

/// `inspect`'s predictions, checked against real loads.
@Suite struct InspectTests {
    static func inspect(_ b: ELFBuilder, at address: UInt64? = nil) throws -> Inspection {
        try Inspector(file: try ELFFile(bytes: b.build(), name: "crafted.ro")).inspect(at: address)
    }

    /// A .text of 0x100 bytes with one 32S reference to sha256_update (.text+0x40) + addend.
    static func r32s(addend: Int64) -> ELFBuilder {
        var b = ELFBuilder()
        b.add(.init(name: ".text", flags: 0x6, align: 16, data: [UInt8](repeating: 0x90, count: 0x100)))
        let function = b.symbol("sha256_update", type: 2, section: 1, value: 0x40, size: 0x80)
        b.rela(1, offset: 0x74, symbol: function, type: X86_64Relocation.r32s, addend: addend)
        return b
    }

    @Test func thirtyTwoSignedOverflowBoundaryIsExactAndConfirmedByTheLoader() throws {
        let b = Self.r32s(addend: 0x2ff0)  // value = L + 0x3030: fits while L ≤ 0x7fffcfcf
        let report = try Self.inspect(b)
        #expect(report.lowestFailingAddress == 0x7fffd000)
        #expect(report.loadsCleanly == [.init(low: 0x3000, high: 0x7fffc000)])
        let lint = try #require(report.lints.first { $0.kind == "overflow" })
        #expect(lint.message == "R_X86_64_32S at .text+0x74 (sha256_update+0x34) overflows for load addresses ≥ 0x7fffd000")
        #expect(lint.failsFrom == 0x7fffd000)

        let loader = PurgatoryLoader(file: try ELFFile(bytes: b.build(), name: "crafted.ro"))
        _ = try loader.load(at: 0x7fffc000)
        let refused = try Self.inspect(b, at: 0x7fffd000)
        #expect(refused.loadError == "kexec: Overflow in relocation type 11 value 0x80000030")
        #expect(throws: LoadFailure.self) { _ = try loader.load(at: 0x7fffd000) }
    }

    @Test func thirtyTwoUnsignedBoundary() throws {
        var b = ELFBuilder()
        b.add(.init(name: ".text", flags: 0x6, align: 16, data: [UInt8](repeating: 0, count: 0x20)))
        let s = b.symbol("t", section: 1)
        b.rela(1, offset: 8, symbol: s, type: X86_64Relocation.r32, addend: 0x10)
        let report = try Self.inspect(b)
        // L + 0x10 ≤ 0xffffffff ⇔ L ≤ 0xffffffef: the last page-aligned address that fits is 0xfffff000.
        #expect(report.lowestFailingAddress == 0x1_0000_0000)
        #expect(try Self.inspect(b, at: 0xffff_f000).loadError == nil)
        #expect(try Self.inspect(b, at: 0x1_0000_0000).loadError == "kexec: Overflow in relocation type 10 value 0x100000010")
    }

    @Test func pcRelativeOnlyObjectsLoadEverywhere() throws {
        let report = try Inspector(file: try Fixtures.reference()).inspect()
        #expect(report.lowestFailingAddress == nil)
        #expect(report.neverLoads == nil)
        #expect(report.loadsCleanly.first?.low == 0x3000)
        #expect(!report.lints.contains { $0.kind != "sections" })
        #expect(report.abiSymbols.allSatisfy { $0.present })
        #expect(report.entries.map(\.rule) == ["symbol", "e_entry", "e_entry-unguarded"])
        #expect(Set(report.entries.map(\.address)).count == 1)
    }

    @Test func unknownRelocationsNeverLoadAndAreLinted() throws {
        let b = LoaderTests.relocation(type: X86_64Relocation.rexGotpcrelx, addend: -4)
        let report = try Self.inspect(b)
        #expect(report.neverLoads?.contains("R_X86_64_REX_GOTPCRELX") == true)
        #expect(report.loadError == "kexec: Unknown rela relocation: 42")
        #expect(report.lints.contains { $0.kind == "got-plt" && $0.message.hasPrefix("1 × R_X86_64_REX_GOTPCRELX") })
    }

    @Test func vectorInstructionsAreLinted() throws {
        var b = ELFBuilder()
        // nop; movaps %xmm1,%xmm0; ret
        b.add(.init(name: ".text", flags: 0x6, align: 16, data: [0x90, 0x0f, 0x28, 0xc1, 0xc3]))
        b.symbol("f", type: 2, section: 1, value: 0, size: 5)
        let report = try Self.inspect(b)
        let lint = try #require(report.lints.first { $0.kind == "simd" })
        #expect(lint.message.contains("movaps xmm0, xmm1 at .text+0x1 (f+0x1)"))
    }

    @Test func missingABISymbolsAndSeveralTextSectionsAreLinted() throws {
        let report = try Self.inspect(LoaderTests.twoTextSections())
        #expect(report.lints.contains { $0.kind == "abi" && $0.message.contains("purgatory_sha_regions") })
        #expect(report.lints.contains { $0.kind == "sections" && $0.message.contains(".text, .ltext") })
        #expect(report.entries.first { $0.rule == "e_entry-unguarded" }?.address != report.entries.first { $0.rule == "e_entry" }?.address)
    }
}
