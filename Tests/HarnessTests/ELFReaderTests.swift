import ELF
import Testing

@Suite struct ELFReaderTests {
    @Test func readsTheReferencePurgatory() throws {
        let file = try Fixtures.reference()
        #expect(file.header.fileType == .relocatable)
        let names = file.sections.map(\.name)
        for expected in [".text", ".rodata", ".data", ".kexec-purgatory", ".bss", ".symtab", ".strtab", ".rela.text"] {
            #expect(names.contains(expected))
        }
        let symtab = try #require(file.section(named: ".symtab"))
        let symbols = try file.symbols(in: symtab)
        let start = try #require(symbols.first { $0.name == "purgatory_start" })
        #expect(start.isGlobal)
        #expect(file.header.entry == start.value)
        #expect(file.header.entry != 0)  // not at offset 0 of .text
        let regs = try #require(symbols.first { $0.name == "entry64_regs" })
        #expect(regs.size == 136)
        let rela = try #require(file.section(named: ".rela.text"))
        let types = Set(try file.relocations(in: rela).map(\.type))
        #expect(types.isSubset(of: [X86_64Relocation.pc32, X86_64Relocation.plt32]))
    }

    /// Every prefix of a real object either parses or throws ELFError naming the file: never a trap.
    @Test func everyTruncationIsAnErrorOrAValidPrefix() throws {
        let bytes = Fixtures.referenceBytes
        var errors = 0
        for length in 0 ..< bytes.count {
            do {
                let file = try ELFFile(bytes: Array(bytes.prefix(length)), name: "cut.ro")
                for section in file.sections where section.type == ELFConstant.shtSymtab { _ = try? file.symbols(in: section) }
            } catch {
                errors += 1
                #expect(error.file == "cut.ro")
                #expect(!error.description.contains("\n"))
            }
        }
        // The section header table sits at the end: every strict prefix loses it.
        #expect(errors == bytes.count)
    }

    @Test(arguments: [
        (0, UInt8(0x00), "no ELF magic"),
        (4, UInt8(1), "EI_CLASS 1 is not ELFCLASS64"),
        (5, UInt8(2), "is not little-endian"),
        (18, UInt8(3), "e_machine 3 is not x86-64"),
        (58, UInt8(65), "e_shentsize 65, expected 64"),
        (62, UInt8(0xf0), "e_shstrndx 240 is out of range"),
    ])
    func corruptHeaderFieldsAreNamed(offset: Int, value: UInt8, reason: String) throws {
        var bytes = Fixtures.referenceBytes
        bytes[offset] = value
        let error = #expect(throws: ELFError.self) { try ELFFile(bytes: bytes, name: "bad.ro") }
        #expect(error?.description.contains(reason) == true, "\(String(describing: error))")
        #expect(error?.description.hasPrefix("bad.ro: ") == true)
    }

    @Test func sectionDataPastTheEndIsNamed() throws {
        var bytes = Fixtures.referenceBytes
        let file = try Fixtures.reference()
        let text = try #require(file.section(named: ".text"))
        let at = Int(file.header.shoff) + text.index * 64 + 32  // sh_size
        bytes.replaceSubrange(at ..< at + 8, with: le(UInt64(1) << 40))
        let error = #expect(throws: ELFError.self) { try ELFFile(bytes: bytes, name: "big.ro") }
        #expect(error?.description.contains("section header \(text.index)") == true)
        #expect(error?.description.contains("extends past the end of the file") == true)
    }

    @Test func sectionTableOffsetNearTheTopIsAnError() throws {
        var bytes = Fixtures.referenceBytes
        bytes.replaceSubrange(40 ..< 48, with: le(UInt64.max - 10))  // e_shoff
        #expect(throws: ELFError.self) { try ELFFile(bytes: bytes, name: "x.ro") }
    }
}
