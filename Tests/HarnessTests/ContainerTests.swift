import Containers
import ELF
import Foundation
import Testing

/// Finding the purgatory inside a vmlinux, a bzImage (every payload format, compressed by the
/// real tools) and an executable; and every refusal naming what was expected and found.
@Suite struct ContainerTests {
    static let stripped = Fixtures.containersPath + "/vmlinux-like.stripped"
    static let withSymbols = Fixtures.containersPath + "/vmlinux-like"

    /// The command that compresses a vmlinux as the kernel's build does for each format
    /// (smaller presets where they only cost time), and whether the build appends the size.
    static let compressors: [(CompressionFormat, [String], appendsSize: Bool)] = [
        (.gzip, ["gzip", "-9", "-n", "-c"], false),  // gzip's own trailer ends with the size
        (.bzip2, ["bzip2", "-9", "-c"], true),
        (.lzma, ["xz", "--format=lzma", "-9", "-c"], true),
        (.xz, ["xz", "--format=xz", "--check=crc32", "--x86", "--lzma2=preset=9", "-c"], true),
        (.lzo, ["lzop", "-9", "-c"], true),
        (.lz4, ["lz4", "-l", "-9", "-c"], true),
        (.zstd, ["zstd", "-19", "-q", "-c"], true),
    ]

    static func payload(_ format: CompressionFormat) throws -> [UInt8] {
        let (_, command, appendsSize) = compressors.first { $0.0 == format }!
        let compressed = try Fixtures.tool(command + [stripped])
        let size = try FileManager.default.attributesOfItem(atPath: stripped)[.size] as! Int
        return compressed + (appendsSize ? le(UInt32(size)) : [])
    }

    @Test(arguments: CompressionFormat.allCases)
    func bzImageOfEveryPayloadFormatYieldsThePurgatory(format: CompressionFormat) throws {
        let image = Fixtures.bzImage(payload: try Self.payload(format))
        let extraction = try PurgatoryExtractor.extract(image, name: "bzImage-\(format)")
        #expect(extraction.object == Fixtures.referenceBytes)
        #expect(extraction.container == .bzImage)
        #expect(extraction.provenance[0].contains("\(format.rawValue) payload"), "\(extraction.provenance)")
        #expect(extraction.provenance.contains { $0.contains("kexec_purgatory_size) says 8744 too") })
        #expect(extraction.bzImage?.versionString == "2.15")
    }

    @Test(arguments: CompressionFormat.allCases)
    func damagedPayloadsAreRefusedWithAReason(format: CompressionFormat) throws {
        let good = try Self.payload(format)
        // Cut in half: the stream ends early (or the size check catches it).
        let cut = Fixtures.bzImage(payload: Array(good.prefix(good.count / 2)))
        #expect(throws: ContainerError.self) { try PurgatoryExtractor.extract(cut, name: "cut") }
        // Bytes flipped in the middle: a codec error, a size mismatch or a broken ELF — never a trap.
        var flipped = good
        for i in stride(from: good.count / 3, to: good.count / 3 + 64, by: 7) { flipped[i] ^= 0x5a }
        do {
            let extraction = try PurgatoryExtractor.extract(Fixtures.bzImage(payload: flipped), name: "flipped")
            // Formats without a checksum may decode to other bytes that still parse; then they differ.
            #expect(extraction.object != Fixtures.referenceBytes || format == .lzo || format == .lz4)
        } catch {
            #expect(error.file == "flipped")
            #expect(!error.reason.isEmpty)
        }
    }

    @Test(arguments: CompressionFormat.allCases)
    func decompressionStopsAtItsLimit(format: CompressionFormat) throws {
        let error = #expect(throws: ContainerError.self) { try Decompression.decompress(try Self.payload(format)[...], limit: 4096) }
        #expect(error?.structure == "\(format.rawValue) payload")
        #expect(error?.reason == "decompresses to more than 4096 bytes")
    }

    @Test func inspectSaysWhereThePurgatoryWasFound() throws {
        let input = try Fixtures.temporaryFile(Fixtures.bzImage(payload: try Self.payload(.lz4)), name: "bzImage-lz4")
        let result = try Fixtures.harness(["inspect", input])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("inspect \(input):purgatory (kexec-file loader, kernel ABI)"))
        #expect(result.stdout.contains("  found in       bzImage, boot protocol 2.15: lz4 payload of"))
        #expect(result.stdout.contains("ET_REL x86-64 object at 0x2000, 8744 bytes by its section header table"))
    }

    @Test func wrongAppendedSizeIsNamed() throws {
        var payload = try Self.payload(.xz)
        payload[payload.count - 1] ^= 0x01
        let error = #expect(throws: ContainerError.self) {
            try PurgatoryExtractor.extract(Fixtures.bzImage(payload: payload), name: "vmlinuz")
        }
        #expect(error?.description.contains("the size appended to it says") == true, "\(String(describing: error))")
        #expect(error?.description.hasPrefix("vmlinuz: xz payload: decompressed to") == true)
    }

    @Test func unknownPayloadMagicListsTheFormats() throws {
        let error = #expect(throws: ContainerError.self) {
            try PurgatoryExtractor.extract(Fixtures.bzImage(payload: [1, 2, 3, 4, 5, 6, 7, 8]), name: "vmlinuz")
        }
        #expect(error?.description == "vmlinuz: compressed payload: starts with 01 02 03 04 05 06, the magic of none of gzip, bzip2, lzma, xz, lzo, lz4, zstd")
    }

    @Test func payloadOutsideTheFileIsRefused() throws {
        var image = Fixtures.bzImage(payload: try Self.payload(.gzip))
        image.replaceSubrange(0x24c ..< 0x250, with: le(UInt32(0x7fff_ffff)))
        let error = #expect(throws: ContainerError.self) { try PurgatoryExtractor.extract(image, name: "vmlinuz") }
        #expect(error?.structure == "bzImage payload")
    }

    @Test func vmlinuxWithSymbolsUsesThem() throws {
        let bytes = try Fixtures.tool(["cat", Self.withSymbols])
        let extraction = try PurgatoryExtractor.extract(bytes, name: "vmlinux")
        #expect(extraction.object == Fixtures.referenceBytes)
        #expect(extraction.container == .vmlinux)
        #expect(extraction.provenance == ["vmlinux: symbols kexec_purgatory at 0xffffffff81002000 (file offset 0x2000) and kexec_purgatory_size = 8744, which the object's section header table confirms"])
    }

    @Test func strippedVmlinuxIsScannedAndTheSizeWordAgrees() throws {
        let bytes = try Fixtures.tool(["cat", Self.stripped])
        let extraction = try PurgatoryExtractor.extract(bytes, name: "vmlinux")
        #expect(extraction.object == Fixtures.referenceBytes)
        #expect(extraction.offset == 0x2000)
        #expect(extraction.provenance == [
            "vmlinux (17232 bytes, no kexec_purgatory symbol): ET_REL x86-64 object at 0x2000, 8744 bytes by its section header table",
            "the u64 after it (kexec_purgatory_size) says 8744 too",
        ])
    }

    @Test func twoEmbeddedPurgatoriesAreAmbiguous() throws {
        let bytes = try Fixtures.tool(["cat", Self.stripped]) + Fixtures.referenceBytes
        let error = #expect(throws: ContainerError.self) { try PurgatoryExtractor.extract(bytes, name: "vmlinux") }
        #expect(error?.reason.contains("2 ET_REL x86-64 objects inside, at 0x2000, 0x4350; expected exactly one defining purgatory_start") == true,
                "\(String(describing: error))")
    }

    @Test func executableWithoutAPurgatoryIsRefused() throws {
        let bytes = try Fixtures.tool(["cat", "/usr/bin/env"])
        let error = #expect(throws: ContainerError.self) { try PurgatoryExtractor.extract(bytes, name: "/usr/bin/env") }
        #expect(error?.description == "/usr/bin/env: embedded purgatory: expected kexec_purgatory symbols or one well-formed ET_REL x86-64 object inside this executable, found neither")
    }

    @Test func damagedEmbeddedObjectIsRejectedWithItsReason() throws {
        var bytes = try Fixtures.tool(["cat", Self.stripped])
        // The embedded object's e_shoff now points past the end of the file.
        bytes.replaceSubrange(0x2000 + 0x28 ..< 0x2000 + 0x30, with: le(UInt64(0x10_0000)))
        let error = #expect(throws: ContainerError.self) { try PurgatoryExtractor.extract(bytes, name: "vmlinux") }
        #expect(error?.reason.hasSuffix("found neither (rejected: section header table (e_shoff 0x100000, 12 × 64 bytes) is not inside the 9040 bytes that follow)") == true,
                "\(String(describing: error))")
    }

    @Test func linkedPurgatoryImagePassesThrough() throws {
        let path = Fixtures.repository.appendingPathComponent("Purgatories/variants/pie-image.ro").path
        let bytes = try Fixtures.tool(["cat", path])
        let extraction = try PurgatoryExtractor.extract(bytes, name: path)
        #expect(extraction.container == .image)
        #expect(extraction.object == bytes)
    }

    @Test func garbageNamesWhatWasExpected() throws {
        let error = #expect(throws: ContainerError.self) {
            try PurgatoryExtractor.extract(Array("hello, world".utf8), name: "notes.txt")
        }
        #expect(error?.description == "notes.txt: file type: expected a purgatory ELF object, a vmlinux, a bzImage (\"HdrS\" at 0x202) or a kexec-tools binary; found 12 bytes starting 68 65 6c 6c 6f 2c 20 77")
    }

    @Test func extractCommandWritesTheObjectAndRefusesWithExitTwo() throws {
        let image = Fixtures.bzImage(payload: try Self.payload(.zstd))
        let input = try Fixtures.temporaryFile(image, name: "bzImage-zstd")
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("ph-extracted-\(UUID().uuidString).ro").path
        let result = try Fixtures.harness(["extract", input, "-o", output, "--json"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(FileManager.default.contents(atPath: output).map([UInt8].init) == Fixtures.referenceBytes)
        #expect(result.stdout.contains("\"container\":\"bzImage\""))
        #expect(result.stdout.contains("\"sha256\":\"8af8103bf28bbb8e1f3659b10156df566f2836a730ad2b51679278b2ce682f64\""))

        let garbage = try Fixtures.temporaryFile(Array("not a kernel".utf8))
        let refused = try Fixtures.harness(["extract", garbage, "-o", output])
        #expect(refused.status == 2)
        #expect(refused.stderr.hasPrefix("purgatory-harness: error: \(garbage): file type: expected a purgatory ELF object"))
        #expect(refused.stderr.split(separator: "\n").count == 1)
    }

    @Test func runLaysOutABzImageAsBzImage64LoadDoes() throws {
        let image = Fixtures.bzImage(payload: try Self.payload(.gzip), initSize: 0x30_1234)
        let kernel = try Fixtures.temporaryFile(image, name: "bzImage-gzip-run")
        let initrd = try Fixtures.temporaryFile([UInt8](repeating: 0x42, count: 0x1801), name: "initrd")
        // The purgatory of the "running kernel" (the same bzImage) loading that bzImage.
        let result = try Fixtures.harness(["run", kernel, "--kernel", kernel, "--initrd", initrd, "--cmdline", "root=/dev/ram0 quiet",
                                           "--seed", "11", "--json"])
        #expect(result.status == 0, "\(result.stdout) \(result.stderr)")
        let report = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as! [String: Any]
        let segments = report["segments"] as! [[String: Any]]
        let byName = Dictionary(uniqueKeysWithValues: segments.map { ($0["name"] as! String, $0) })
        let kernelStart = byName["kernel"]!["start"] as! UInt64, initrdStart = byName["initrd"]!["start"] as! UInt64
        #expect(kernelStart % 0x20_0000 == 0 && kernelStart >= 0x100_0000)    // kernel_alignment, pref_address
        #expect(byName["kernel"]!["length"] as! UInt64 == 0x30_2000)           // PAGE_ALIGN(init_size)
        #expect(initrdStart % 0x1000 == 0 && initrdStart >= 0x100_0000)
        #expect(byName["initrd"]!["length"] as! UInt64 == 0x2000)
        let boot = report["boot_params"] as! [String: Any]
        #expect(boot["protocol_version"] as? String == "2.15")
        #expect(boot["type_of_loader"] as? Int == 0xd0)
        #expect(boot["command_line"] as? String == "root=/dev/ram0 quiet")
        #expect(boot["command_line_address"] as? UInt64 == (byName["boot-params"]!["start"] as! UInt64) + 0x1000)
        #expect(boot["initrd_address"] as? UInt64 == initrdStart)
        #expect(boot["initrd_size"] as? Int == 0x1801)
        #expect(boot["e820_entries"] as? Int == 5)  // purgatory, harness page, three segments
    }

    @Test func runRefusesABzImageKexecFileWouldNotLoad() throws {
        let image = Fixtures.bzImage(payload: try Self.payload(.gzip), xloadFlags: 0x01)
        let kernel = try Fixtures.temporaryFile(image, name: "bzImage-below-4g")
        let result = try Fixtures.harness(["run", "--kernel", kernel, "--seed", "1"])
        #expect(result.status == 2)
        #expect(result.stderr == "purgatory-harness: error: \(kernel): bzImage setup header: kexec_file's bzImage64 probe would refuse it: xloadflags 0x1 lack XLF_CAN_BE_LOADED_ABOVE_4G\n")
    }

    @Test func runRefusesACommandLineLongerThanCmdlineSize() throws {
        let kernel = try Fixtures.temporaryFile(Fixtures.bzImage(payload: try Self.payload(.gzip)), name: "bzImage-cmdline")
        let result = try Fixtures.harness(["run", "--kernel", kernel, "--cmdline", String(repeating: "x", count: 2047), "--seed", "1"])
        #expect(result.status == 2)
        #expect(result.stderr == "purgatory-harness: error: kernel command line: 2048 bytes with its NUL, longer than the kernel's cmdline_size 2047\n")
    }
}

/// A kernel build tree's objects: kexec-purgatory.o (the ET_REL wrapper, .incbin or bin2c form)
/// and vmlinux.o hold the purgatory between kexec_purgatory and kexec_purgatory_size.
@Suite struct BuildTreeContainerTests {
    /// The bin2c form (kernels before kexec-purgatory.S): the array in .rodata, the size as a
    /// separate constant in another section.
    static func bin2cWrapper(withStartKernel: Bool = false) -> [UInt8] {
        var b = ELFBuilder()
        let rodata = b.add(.init(name: ".rodata", flags: 0x2, align: 16, data: Fixtures.referenceBytes))
        let size = b.add(.init(name: ".rodata.size", flags: 0x2, align: 8, data: le(UInt64(Fixtures.referenceBytes.count))))
        b.symbol("kexec_purgatory", type: 1, section: UInt16(rodata), value: 0, size: UInt64(Fixtures.referenceBytes.count))
        b.symbol("kexec_purgatory_size", type: 1, section: UInt16(size), value: 0, size: 8)
        if withStartKernel {
            let text = b.add(.init(name: ".text", flags: 0x6, align: 16, data: [0xc3]))
            b.symbol("start_kernel", type: 2, section: UInt16(text), value: 0, size: 1)
        }
        return b.build()
    }

    @Test func theWrapperAndVmlinuxOHoldThePurgatory() throws {
        for (bytes, kind) in [(Self.bin2cWrapper(), ContainerKind.purgatoryWrapper), (Self.bin2cWrapper(withStartKernel: true), .vmlinuxObject)] {
            let extraction = try PurgatoryExtractor.extract(bytes, name: "kexec-purgatory.o")
            #expect(extraction.container == kind)
            #expect(extraction.object == Fixtures.referenceBytes)
            #expect(extraction.provenance.first?.contains("kexec_purgatory_size = \(Fixtures.referenceBytes.count)") == true)
        }
        let path = try Fixtures.temporaryFile(Self.bin2cWrapper(), name: "kexec-purgatory.o")
        let run = try Fixtures.harness(["run", path, "--seed", "2"])
        #expect(run.status == 0, "\(run.stdout)")
        let inspect = try Fixtures.harness(["inspect", path])
        #expect(inspect.stdout.contains("found in       kexec-purgatory.o: symbols kexec_purgatory"))
    }

    /// Linux's own wrappers (the .incbin form), built by scripts/build-linux-purgatories: the
    /// object inside is byte for byte the purgatory.ro next to it.
    @Test func linuxWrappersHoldTheirPurgatoryRo() throws {
        for variant in try LinuxArtifacts.variants() where variant.built {
            let wrapper = try Fixtures.tool(["cat", try #require(variant.kexecPurgatoryPath)])
            let extraction = try PurgatoryExtractor.extract(wrapper, name: "kexec-purgatory.o")
            #expect(extraction.container == .purgatoryWrapper, "\(variant)")
            #expect(extraction.object == (try Fixtures.tool(["cat", try #require(variant.path)])), "\(variant)")
        }
    }
}
