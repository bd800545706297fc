import ELF
import Loader
import Testing

/// kexec-tools' rules where they differ from the kernel's (kexec-purgatory-facts §8).
@Suite struct KexecToolsLoaderTests {
    static let load: UInt64 = 0x1000_0000

    static func loader(_ b: ELFBuilder) throws -> PurgatoryLoader {
        PurgatoryLoader(file: try ELFFile(bytes: b.build(), name: "crafted.ro"), kind: .kexecTools)
    }

    static func refusal(_ b: ELFBuilder) throws -> LoadError? {
        let loader = try loader(b)
        do throws(LoadFailure) { _ = try loader.load(at: load) } catch {
            if case .refused(let e) = error { return e }
        }
        return nil
    }

    @Test func alignmentZeroIsOne() throws {
        var b = ELFBuilder()
        b.add(.init(name: ".text", flags: 0x6, align: 16, data: [UInt8](repeating: 0x90, count: 0x10)))
        b.add(.init(name: ".odd", flags: 0x2, align: 0, data: [7, 7, 7, 7, 7, 7, 7, 7]))
        let loaded = try Self.loader(b).load(at: Self.load)
        #expect(loaded.layout.bufsz == 0x18)        // the kernel would say 8
        #expect(loaded.sections[2].addr == Self.load + 0x10)
        #expect(Array(loaded.buffer[0x10 ..< 0x18]) == [7, 7, 7, 7, 7, 7, 7, 7])
    }

    @Test func bssPadIsOutsideTheCopiedBytes() throws {
        var b = ELFBuilder()
        b.add(.init(name: ".text", flags: 0x6, align: 4, data: [UInt8](repeating: 0x90, count: 0x14)))
        b.add(.init(name: ".bss", type: 8, flags: 0x3, align: 16, nobitsSize: 0x20))
        let tools = try Self.loader(b).setupBuffer()
        #expect(tools.bufsz == 0x14 && tools.bssPad == 0xc && tools.memsz == 0x40)
        let kernel = PurgatoryLoader(file: try ELFFile(bytes: b.build(), name: "k.ro")).setupBuffer()
        #expect(kernel.bufsz == 0x20 && kernel.bssPad == 0 && kernel.memsz == 0x40)
        #expect(try Self.loader(b).load(at: Self.load).sections[2].addr == Self.load + 0x20)
    }

    @Test func messagesAreKexecTools() throws {
        let over = LoaderTests.relocation(type: X86_64Relocation.r32s, addend: Int64(0x8000_0000 - Self.load))
        #expect(try Self.refusal(over)?.log == ["overflow in relocation type R_X86_64_32S val 80000000"])
        let got = LoaderTests.relocation(type: X86_64Relocation.rexGotpcrelx, addend: 0)
        #expect(try Self.refusal(got)?.message == "Unhandled rela relocation: R_X86_64_REX_GOTPCRELX")

        var loaded = try Self.loader(LoaderTests.symbolObject()).load(at: Self.load)
        let copy = loaded
        func message(_ body: () throws(LoadFailure) -> Void) -> String? {
            do { try body() } catch { if case .refused(let e) = error { return e.message } }
            return nil
        }
        #expect(message { () throws(LoadFailure) in _ = try copy.getSymbol("in_data", size: 16) } == "Symbol: in_data has size: 8 not 16")
        #expect(message { () throws(LoadFailure) in try loaded.setSymbol("in_bss", [0, 0, 0, 0, 0, 0, 0, 0]) } == "Symbol: in_bss is in a bss section cannot set")
        #expect(message { () throws(LoadFailure) in try loaded.setSymbol("nothing", [0]) } == "Symbol: nothing not found cannot set")
    }

    @Test func entryIsTheFirstExecutableSectionWithoutWarning() throws {
        let loaded = try Self.loader(LoaderTests.twoTextSections()).load(at: Self.load)
        #expect(loaded.entry == Self.load + 4)
        #expect(loaded.diagnostics.isEmpty)
    }

    @Test func kexecToolsABIProfile() {
        let abi = PurgatoryABI.default(for: .kexecTools)
        #expect(abi.regions == "sha256_regions" && abi.digest == "sha256_digest")
        #expect(abi.registerOrder.prefix(8) == ["rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp"])
        #expect(PurgatoryABI.default(for: .kexecFile).registerOrder.prefix(8) == ["rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi"])
    }
}
