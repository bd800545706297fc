import ELF
import Loader
import Testing

/// Loader rules (kexec-purgatory-facts §1–4) on crafted objects with hand-computed answers.
@Suite struct LoaderTests {
    static let load: UInt64 = 0x1000_0000

    /// .text (0x10 bytes, align 16), .bss (0x30, align 64), .data (8, align 8), .comment (not ALLOC).
    static func layoutObject() -> ELFBuilder {
        var b = ELFBuilder()
        b.add(.init(name: ".text", flags: 0x6, align: 16, data: [UInt8](repeating: 0x90, count: 0x10)))
        b.add(.init(name: ".bss", type: 8, flags: 0x3, align: 64, nobitsSize: 0x30))
        b.add(.init(name: ".data", flags: 0x3, align: 8, data: [1, 2, 3, 4, 5, 6, 7, 8]))
        b.add(.init(name: ".comment", flags: 0, align: 1, data: Array("compiler".utf8)))
        return b
    }

    static func loader(_ b: ELFBuilder, rule: EntryRule = .symbol) throws -> PurgatoryLoader {
        PurgatoryLoader(file: try ELFFile(bytes: b.build(), name: "crafted.ro"), entryRule: rule)
    }

    static func refusal(_ b: ELFBuilder, at address: UInt64 = load) throws -> LoadError? {
        let loader = try loader(b)
        do throws(LoadFailure) { _ = try loader.load(at: address) } catch {
            if case .refused(let e) = error { return e }
            Issue.record("expected a refusal, got \(error)")
        }
        return nil
    }

    @Test func bufferLayoutFollowsTheKernelsArithmetic() throws {
        let layout = try Self.loader(Self.layoutObject()).setupBuffer()
        #expect(layout.bufsz == 0x40)       // 0x10 text, data at 0x10..0x18, then ALIGN(0x18, 64)
        #expect(layout.bssSize == 0x30)
        #expect(layout.memsz == 0x70)
        #expect(layout.bufAlign == 0x1000)  // raised to a page
        #expect(layout.segmentSize == 0x1000)
    }

    @Test func sectionsGetNewAddressesAndBytes() throws {
        let loaded = try Self.loader(Self.layoutObject()).load(at: Self.load)
        #expect(loaded.sections[1].addr == Self.load)          // .text
        #expect(loaded.sections[3].addr == Self.load + 0x10)   // .data after .text
        #expect(loaded.sections[3].offset == 0x10)
        #expect(loaded.sections[2].addr == Self.load + 0x40)   // .bss after the aligned buffer
        #expect(loaded.sections[4].addr == 0)                  // .comment untouched
        #expect(Array(loaded.buffer[0x10 ..< 0x18]) == [1, 2, 3, 4, 5, 6, 7, 8])
        #expect(loaded.buffer.count == 0x40)
    }

    @Test func alignmentZeroRestartsTheBufferAsInTheKernel() throws {
        var b = ELFBuilder()
        b.add(.init(name: ".text", flags: 0x6, align: 16, data: [UInt8](repeating: 0x90, count: 0x10)))
        b.add(.init(name: ".odd", flags: 0x2, align: 0, data: [7, 7, 7, 7, 7, 7, 7, 7]))
        // ALIGN(0x10, 0) == 0: bufsz becomes 8 and .odd lands at offset 0, on top of .text,
        // which no longer fits the buffer the kernel allocated.
        #expect(try Self.loader(b).setupBuffer().bufsz == 8)
        let refusal = try #require(try Self.refusal(b))
        #expect(refusal.message.hasPrefix("harness: the kernel does not check this"))
    }

    // MARK: Relocations, each at the edge of overflow

    /// A 16-byte .text, a global `target` at .text+0, and one relocation at .text+8.
    static func relocation(type: UInt32, addend: Int64, symbolSection: UInt16 = 1) -> ELFBuilder {
        var b = ELFBuilder()
        b.add(.init(name: ".text", flags: 0x6, align: 16, data: [UInt8](repeating: 0, count: 16)))
        let target = b.symbol("target", section: symbolSection)
        b.rela(1, offset: 8, symbol: target, type: type, addend: addend)
        return b
    }

    static func patched(_ b: ELFBuilder, width: Int) throws -> UInt64 {
        let loaded = try loader(b).load(at: load)
        return loaded.buffer[8 ..< 8 + width].reversed().reduce(0) { $0 << 8 | UInt64($1) }
    }

    @Test func r32sAcceptsAValueOf0x7fffffffAndRefuses0x80000000() throws {
        let fits = Self.relocation(type: X86_64Relocation.r32s, addend: Int64(0x7fff_ffff - Self.load))
        #expect(try Self.patched(fits, width: 4) == 0x7fff_ffff)
        let over = Self.relocation(type: X86_64Relocation.r32s, addend: Int64(0x8000_0000 - Self.load))
        #expect(try Self.refusal(over)?.log == ["kexec: Overflow in relocation type 11 value 0x80000000",
                                                 "kexec-bzImage64: Loading purgatory failed"])
    }

    @Test func r32AcceptsAValueOf0xffffffffAndRefuses0x100000000() throws {
        let fits = Self.relocation(type: X86_64Relocation.r32, addend: Int64(0xffff_ffff - Self.load))
        #expect(try Self.patched(fits, width: 4) == 0xffff_ffff)
        let over = Self.relocation(type: X86_64Relocation.r32, addend: Int64(0x1_0000_0000 - Self.load))
        #expect(try Self.refusal(over)?.message == "kexec: Overflow in relocation type 10 value 0x100000000")
    }

    @Test func r32sAcceptsNegativeValuesThatSignExtend() throws {
        let negative = Self.relocation(type: X86_64Relocation.r32s, addend: -Int64(Self.load) - 0x8000_0000)
        #expect(try Self.patched(negative, width: 4) == 0x8000_0000)  // value 0xffffffff80000000
    }

    @Test func r64WritesTheFullValue() throws {
        let b = Self.relocation(type: X86_64Relocation.r64, addend: 0x1234)
        #expect(try Self.patched(b, width: 8) == Self.load + 0x1234)
    }

    @Test func pc32WrapsSilentlyWithNoOverflowCheck() throws {
        // S + A - P with S + A = 0x1_2345_6789 far from P = load + 8: truncated, no error.
        let b = Self.relocation(type: X86_64Relocation.pc32, addend: Int64(0x1_2345_6789 - Self.load))
        #expect(try Self.patched(b, width: 4) == (0x1_2345_6789 - (Self.load + 8)) & 0xffff_ffff)
        let plt = Self.relocation(type: X86_64Relocation.plt32, addend: -4)
        #expect(try Self.patched(plt, width: 4) == UInt64(UInt32(truncatingIfNeeded: Int64(-12))))
    }

    @Test(arguments: [X86_64Relocation.rexGotpcrelx, X86_64Relocation.gotpcrel, X86_64Relocation.gotpcrelx, 99])
    func unknownTypesAreRefusedWithTheirNumber(type: UInt32) throws {
        #expect(try Self.refusal(Self.relocation(type: type, addend: 0))?.message == "kexec: Unknown rela relocation: \(type)")
    }

    @Test func symbolSectionRules() throws {
        #expect(try Self.refusal(Self.relocation(type: 1, addend: 0, symbolSection: 0))?.message == "kexec: Undefined symbol: target")
        #expect(try Self.refusal(Self.relocation(type: 1, addend: 0, symbolSection: 0xfff2))?.message
            == "kexec: symbol 'target' in common section")
        #expect(try Self.refusal(Self.relocation(type: 1, addend: 0, symbolSection: 99))?.message
            == "kexec: Invalid section 99 for symbol target")
        // SHN_ABS: base 0, so the value is st_value + addend.
        #expect(try Self.patched(Self.relocation(type: 1, addend: 0x42, symbolSection: 0xfff1), width: 8) == 0x42)
    }

    @Test func relSectionsAreRefusedAndNonAllocTargetsSkipped() throws {
        var rel = Self.relocation(type: 1, addend: 0)
        rel.relaOverrides[1] = (nil, nil, 9)  // SHT_REL
        #expect(try Self.refusal(rel)?.message == "kexec: REL relocation unsupported.")

        var b = Self.layoutObject()
        let s = b.symbol("x", section: 1)
        b.rela(4, offset: 0, symbol: s, type: 42)  // .rela.comment: target not ALLOC, skipped
        _ = try Self.loader(b).load(at: Self.load)

        var range = Self.relocation(type: 1, addend: 0)
        range.relaOverrides[1] = (77, nil, nil)
        #expect(try Self.refusal(range)?.message.contains("-ENOEXEC") == true)
    }

    @Test func relocationsOutsideTheirSectionAreMalformedInput() throws {
        var b = ELFBuilder()
        b.add(.init(name: ".text", flags: 0x6, align: 16, data: [UInt8](repeating: 0, count: 16)))
        let s = b.symbol("t", section: 1)
        b.rela(1, offset: 12, symbol: s, type: 1)  // 8 bytes at 12 of a 16-byte section
        #expect {
            _ = try Self.loader(b).load(at: Self.load)
        } throws: { error in
            guard case LoadFailure.malformed(let e) = error else { return false }
            return e.description.contains("writes outside 1 (.text)")
        }
    }

    // MARK: Symbols

    static func symbolObject() -> ELFBuilder {
        var b = layoutObject()
        b.symbol("local_thing", global: false, section: 3, value: 0, size: 8)
        b.symbol("in_data", section: 3, value: 0, size: 8)
        b.symbol("in_bss", section: 2, value: 0, size: 8)
        return b
    }

    @Test func getAndSetSymbolFollowTheKernelsChecks() throws {
        var loaded = try Self.loader(Self.symbolObject()).load(at: Self.load)
        #expect(try loaded.getSymbol("in_data", size: 8) == [1, 2, 3, 4, 5, 6, 7, 8])
        try loaded.setSymbol("in_data", [9, 9, 9, 9, 9, 9, 9, 9])
        #expect(Array(loaded.buffer[0x10 ..< 0x18]) == [9, 9, 9, 9, 9, 9, 9, 9])
        #expect(throws: LoadFailure.self) { try loaded.getSymbol("local_thing", size: 8) }  // locals are never found
        func message(_ body: () throws(LoadFailure) -> Void) -> String? {
            do { try body() } catch { if case .refused(let e) = error { return e.message } }
            return nil
        }
        let copy = loaded
        #expect(message { () throws(LoadFailure) in _ = try copy.getSymbol("in_data", size: 16) } == "kexec_file: symbol in_data size mismatch: expected 16 actual 8")
        var other = loaded
        #expect(message { () throws(LoadFailure) in try other.setSymbol("in_bss", [0, 0, 0, 0, 0, 0, 0, 0]) } == "kexec_file: symbol in_bss is in a bss section. Cannot set")
        #expect(loaded.symbolAddress("in_bss") == Self.load + 0x40)
    }

    // MARK: Entry point

    /// Two executable sections that both contain e_entry 0x4 (sh_addr is 0 in an ET_REL),
    /// and purgatory_start at .ltext+0x4.
    static func twoTextSections() -> ELFBuilder {
        var b = ELFBuilder()
        b.entry = 4
        b.add(.init(name: ".text", flags: 0x6, align: 16, data: [UInt8](repeating: 0x90, count: 0x20)))
        b.add(.init(name: ".ltext", flags: 0x6, align: 16, data: [UInt8](repeating: 0x90, count: 0x20)))
        b.symbol("purgatory_start", type: 2, section: 2, value: 4)
        return b
    }

    @Test func eEntryRulePicksTheFirstSectionAndWarns() throws {
        let loaded = try Self.loader(Self.twoTextSections(), rule: .eEntry).load(at: Self.load)
        #expect(loaded.entry == Self.load + 4)  // .text+4
        #expect(loaded.diagnostics.contains { $0.kind == .kernelWarning && $0.message.contains(".text and .ltext") })
    }

    /// 480e1d5c64bb walks the sections in index order and the first hit wins: .text contains
    /// e_entry before .ltext, which holds purgatory_start, is reached. No WARN.
    @Test func symbolRuleTakesTheFirstSectionInIndexOrder() throws {
        let loaded = try Self.loader(Self.twoTextSections(), rule: .symbol).load(at: Self.load)
        #expect(loaded.entry == Self.load + 4)  // .text+4
        #expect(loaded.entrySource == "e_entry 0x4 in .text")
        #expect(!loaded.diagnostics.contains { $0.kind == .kernelWarning })
    }

    /// purgatory_start in the first section wins over e_entry, which points elsewhere.
    @Test func symbolRulePicksPurgatoryStartWhenItsSectionComesFirst() throws {
        var b = Self.twoTextSections()
        b.entry = 0x10
        b.symbols = []
        b.symbol("purgatory_start", type: 2, section: 1, value: 8)
        let loaded = try Self.loader(b, rule: .symbol).load(at: Self.load)
        #expect(loaded.entry == Self.load + 8)
        #expect(loaded.entrySource == "purgatory_start in .text")
        let old = try Self.loader(b, rule: .eEntry).load(at: Self.load)
        #expect(old.entry == Self.load + 0x10)
    }

    /// Before 8652d44f466a each executable section containing e_entry rebases it again:
    /// .text gives load + 4, .ltext adds load + 0x20 on top.
    @Test func unguardedRuleRebasesInEverySection() throws {
        let loaded = try Self.loader(Self.twoTextSections(), rule: .unguarded).load(at: Self.load)
        #expect(loaded.entry == 2 * Self.load + 0x24)
        #expect(loaded.entrySource == "e_entry 0x4 rebased in each of .text and .ltext")
        #expect(!loaded.diagnostics.contains { $0.kind == .kernelWarning })
    }

    @Test func referencePurgatoryEntryIsPurgatoryStartUnderEveryRule() throws {
        let file = try Fixtures.reference()
        let address: UInt64 = 0x7_4321_0000
        for rule in EntryRule.allCases {
            let loaded = try PurgatoryLoader(file: file, entryRule: rule).load(at: address)
            #expect(loaded.entry == address + file.header.entry)
            #expect(loaded.symbolAddress("purgatory_start") == loaded.entry)
            #expect(loaded.addressMap().symbolize(loaded.entry) == "purgatory_start")
        }
    }

    @Test func placementChecks() throws {
        let loader = try Self.loader(Self.layoutObject())
        #expect(throws: LoadFailure.self) { _ = try loader.load(at: Self.load + 0x800) }  // not page aligned
        #expect(throws: LoadFailure.self) { _ = try loader.load(at: 0x1000) }              // below 0x3000
        _ = try loader.load(at: 0x3000)
    }
}

extension LoaderTests {
    /// A NOBITS section between two PROGBITS ones takes no room in the buffer: the second
    /// PROGBITS follows the first, and the bss goes after the whole buffer.
    @Test func nobitsBetweenProgbitsGoesAfterTheBuffer() throws {
        var b = ELFBuilder()
        b.add(.init(name: ".text", flags: 0x6, align: 16, data: [UInt8](repeating: 0x90, count: 0x10)))
        b.add(.init(name: ".bss", type: 8, flags: 0x3, align: 16, nobitsSize: 0x100))
        b.add(.init(name: ".data", flags: 0x3, align: 16, data: [5, 5, 5, 5]))
        let loaded = try Self.loader(b).load(at: Self.load)
        #expect(loaded.sections[3].addr == Self.load + 0x10)
        #expect(loaded.layout.bufsz == 0x20)             // ALIGN(0x14, bss_align 16)
        #expect(loaded.sections[2].addr == Self.load + 0x20)
        #expect(loaded.layout.memsz == 0x120)
    }

    @Test func relocationSectionWithSHLinkOutOfRangeIsRefused() throws {
        var b = Self.relocation(type: 1, addend: 0)
        b.relaOverrides[1] = (nil, 200, nil)
        let refusal = try #require(try Self.refusal(b))
        #expect(refusal.message.contains("-ENOEXEC") && refusal.message.contains("sh_link 200"))
    }

    /// A symbol without a name (a section symbol) is named by its section in messages;
    /// an undefined one therefore by section 0, which has no name.
    @Test func namelessSymbolsAreNamedByTheirSection() throws {
        var b = ELFBuilder()
        b.add(.init(name: ".text", flags: 0x6, align: 16, data: [UInt8](repeating: 0, count: 16)))
        let undefined = b.symbol("", global: false, section: 0)
        b.rela(1, offset: 8, symbol: undefined, type: 1)
        #expect(try Self.refusal(b)?.message == "kexec: Undefined symbol: ")
        // With a section, the section's name appears: an overflowing 32S against .text's section symbol.
        var c = ELFBuilder()
        c.add(.init(name: ".text", flags: 0x6, align: 16, data: [UInt8](repeating: 0, count: 16)))
        let section = c.symbol("", global: false, type: 3, section: 1)
        c.rela(1, offset: 8, symbol: section, type: X86_64Relocation.r32s, addend: 0)
        let loaded = try Self.loader(c).placeSections(at: Self.load)
        let symbols = try loaded.file.symbols(in: try #require(loaded.file.section(named: ".symtab")))
        #expect(loaded.displayName(of: symbols[section]) == ".text")
    }
}
