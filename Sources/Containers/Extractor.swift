import ELF
#if canImport(Glibc)
import Glibc
#endif

/// Finding the purgatory inside the files users have.
///
/// A purgatory ships in three wrappers. The kernel links its `purgatory.ro` into vmlinux's
/// .rodata as `kexec_purgatory`, followed (8-aligned) by the u64 `kexec_purgatory_size`; a
/// distribution strips vmlinux and compresses it into the bzImage, so on /boot neither symbol
/// survives. kexec-tools compiles its purgatory into a C array inside /sbin/kexec, also stripped.
///
/// So the rule is: symbols when the file has them; otherwise scan for an embedded ET_REL x86-64
/// ELF header and take exactly the bytes its own section header table accounts for (the header
/// table's end, or the furthest section's data), then parse that slice as a whole ELF file. Where
/// the kernel's size word follows, it must agree. Nothing is guessed: every refusal says what was
/// expected and what was found.
public enum ContainerKind: String, Sendable, Codable {
    case object = "purgatory object"
    case image = "purgatory image"
    case vmlinux
    case bzImage
    case kexecTools = "kexec-tools binary"
    /// arch/x86/purgatory/kexec-purgatory.o: the ET_REL wrapper the kernel links into vmlinux.
    case purgatoryWrapper = "kexec-purgatory.o"
    /// A kernel build tree's vmlinux.o (ET_REL, every object of the kernel linked together).
    case vmlinuxObject = "vmlinux.o"
    case executable
    case compressed = "compressed file"
}

public struct Extraction: Sendable {
    /// The purgatory: an ET_REL object, or for `.image` the linked image itself.
    public var object: [UInt8]
    public var container: ContainerKind
    /// Where `object` starts in the container (after decompression, for a bzImage).
    public var offset: Int
    /// How it was found, one line per step, for `extract` and `inspect` to print.
    public var provenance: [String]
    /// The bzImage, when the input was one: `run --kernel` lays out segments from it.
    public var bzImage: BzImage?
}

public enum PurgatoryExtractor {
    static let elfMagic: [UInt8] = [0x7f, 0x45, 0x4c, 0x46]

    /// Bytes `checkHead` needs to recognise every format (a bzImage's setup header ends at 0x270).
    public static let headSize = 0x1000

    /// Whether a file starting with `head` can be one of the inputs `extract` accepts: ELF magic,
    /// a bzImage's boot flag and "HdrS", or a compression format's magic. Lets a reader refuse a
    /// huge file (a sparse image, /proc/self/pagemap) after its first bytes instead of its last.
    /// `complete` says `head` is the whole file.
    public static func checkHead(_ head: ArraySlice<UInt8>, complete: Bool) throws(ContainerError) {
        if head.starts(with: elfMagic) || CompressionFormat.detect(head) != nil { return }
        if head.count >= 0x270 {
            if BzImage.looksLike(Array(head.prefix(0x270))) { return }
        } else if !complete {
            return  // too short to tell yet: the whole file decides
        }
        let found = head.isEmpty ? "found an empty file"
            : complete ? "found \(head.count) bytes starting \(hexBytes(head.prefix(8)))" : "found a file starting \(hexBytes(head.prefix(8)))"
        throw ContainerError(structure: "file type",
                             reason: "expected a purgatory ELF object, a vmlinux, a bzImage (\"HdrS\" at 0x202) or a kexec-tools binary; \(found)")
    }

    /// The purgatory inside `bytes` (named `name` in every message).
    /// `decompressionLimit` caps what a compressed payload may expand to (1 GiB by default).
    public static func extract(_ bytes: [UInt8], name: String,
                               decompressionLimit: Int = Decompression.outputLimit) throws(ContainerError) -> Extraction {
        do throws(ContainerError) {
            return try extract(bytes, name: name, depth: 0, limit: decompressionLimit)
        } catch {
            var named = error
            named.file = name
            throw named
        }
    }

    private static func extract(_ bytes: [UInt8], name: String, depth: Int, limit: Int) throws(ContainerError) -> Extraction {
        if bytes.starts(with: elfMagic) {
            let elf: ELFFile
            do { elf = try ELFFile(bytes: bytes, name: name) } catch {
                throw ContainerError(structure: error.structure, reason: error.reason)
            }
            switch elf.header.fileType {
            case .relocatable?:
                // A kernel build tree's wrappers are ET_REL too: they hold the purgatory as data
                // between kexec_purgatory and kexec_purgatory_size.
                let kind: ContainerKind = definesSymbol(elf, "start_kernel") ? .vmlinuxObject : .purgatoryWrapper
                if let wrapped = try fromSymbols(elf, kind: kind) { return wrapped }
                return Extraction(object: bytes, container: .object, offset: 0, provenance: ["\(name): ET_REL x86-64 object, used as it is"])
            case .executable?, .sharedObject?:
                return try fromExecutable(elf)
            default:
                throw ContainerError(structure: "ELF header", reason: "e_type \(elf.header.type): expected ET_REL (a purgatory), or ET_EXEC/ET_DYN (vmlinux, kexec)")
            }
        }
        if BzImage.looksLike(bytes) {
            let image = try BzImage(bytes: bytes)
            let payload = try image.payload()
            let vmlinux = try Decompression.decompress(payload, limit: limit)
            guard vmlinux.sizeAgrees else {
                throw ContainerError(structure: "\(vmlinux.format.rawValue) payload",
                                     reason: "decompressed to \(vmlinux.bytes.count) bytes, but the size appended to it says \(vmlinux.declaredSize)")
            }
            guard vmlinux.bytes.starts(with: elfMagic) else {
                throw ContainerError(structure: "\(vmlinux.format.rawValue) payload", reason: "decompressed to \(vmlinux.bytes.count) bytes that are not an ELF file (expected vmlinux)")
            }
            var inner = try extract(vmlinux.bytes, name: name, depth: depth + 1, limit: limit)
            inner.provenance.insert("bzImage, boot protocol \(image.versionString): \(vmlinux.format.rawValue) payload of \(payload.count) bytes at \(hex(payload.startIndex)) → vmlinux of \(vmlinux.bytes.count) bytes (the size appended to the payload agrees)", at: 0)
            inner.container = .bzImage
            inner.bzImage = image
            return inner
        }
        if depth == 0, let format = CompressionFormat.detect(bytes[...]) {
            let inner = try Decompression.decompress(bytes[...], limit: limit)
            var extraction = try extract(inner.bytes, name: name, depth: depth + 1, limit: limit)
            extraction.provenance.insert("\(format.rawValue)-compressed file → \(inner.bytes.count) bytes", at: 0)
            return extraction
        }
        let head = hexBytes(bytes.prefix(8))
        throw ContainerError(structure: "file type",
                             reason: "expected a purgatory ELF object, a vmlinux, a bzImage (\"HdrS\" at 0x202) or a kexec-tools binary; found \(bytes.count) bytes starting \(head)")
    }

    // MARK: vmlinux and kexec

    private static func kind(of elf: ELFFile) -> ContainerKind {
        if elf.programHeaders.contains(where: { $0.type == ELFConstant.ptLoad && $0.vaddr >= 0xffff_ffff_8000_0000 }) { return .vmlinux }
        if elf.programHeaders.contains(where: { $0.type == 3 /* PT_INTERP */ }) {
            return find(Array("kexec-tools".utf8), in: elf.bytes, from: 0) != nil ? .kexecTools : .executable
        }
        return .executable
    }

    private static func fromExecutable(_ elf: ELFFile) throws(ContainerError) -> Extraction {
        let kind = kind(of: elf)
        if let bySymbol = try fromSymbols(elf, kind: kind) { return bySymbol }
        let found = embeddedObjects(in: elf.bytes)
        let usable = found.compactMap { try? $0.get() }
        if usable.isEmpty {
            if kind == .executable, !elf.programHeaders.contains(where: { $0.type == 3 }) {
                return Extraction(object: elf.bytes, container: .image, offset: 0,
                                  provenance: ["\(elf.name): linked x86-64 image without an interpreter, used as it is (--loader image)"])
            }
            let rejected = found.compactMap { result -> String? in if case .failure(let e) = result { e.reason } else { nil } }
            throw ContainerError(structure: "embedded purgatory",
                                 reason: "expected kexec_purgatory symbols or one well-formed ET_REL x86-64 object inside this \(kind.rawValue), found neither"
                                    + (rejected.isEmpty ? "" : " (rejected: " + rejected.prefix(3).joined(separator: "; ") + ")"))
        }
        var chosen = usable
        if chosen.count > 1 { chosen = usable.filter(\.definesPurgatoryStart) }
        guard chosen.count == 1 else {
            throw ContainerError(structure: "embedded purgatory",
                                 reason: "\(usable.count) ET_REL x86-64 objects inside, at \(usable.map { hex($0.offset) }.joined(separator: ", ")); expected exactly one defining purgatory_start")
        }
        let object = chosen[0]
        var provenance = ["\(kind.rawValue) (\(elf.bytes.count) bytes, no kexec_purgatory symbol): ET_REL x86-64 object at \(hex(object.offset)), \(object.bytes.count) bytes by its section header table"]
        // The kernel's kexec-purgatory.S: the blob, .align 8, then the u64 kexec_purgatory_size.
        let sizeWord = (object.offset + object.bytes.count + 7) & ~7
        if sizeWord + 8 <= elf.bytes.count, u64(elf.bytes, sizeWord) == UInt64(object.bytes.count) {
            provenance.append("the u64 after it (kexec_purgatory_size) says \(object.bytes.count) too")
        }
        return Extraction(object: object.bytes, container: kind, offset: object.offset, provenance: provenance)
    }

    static func definesSymbol(_ elf: ELFFile, _ name: String) -> Bool {
        elf.sections.filter { $0.type == ELFConstant.shtSymtab }.contains { table in
            ((try? elf.symbols(in: table)) ?? []).contains { $0.name == name && $0.shndx != 0 }
        }
    }

    /// An unstripped vmlinux, vmlinux.o or kexec-purgatory.o: `kexec_purgatory` and
    /// `kexec_purgatory_size`, read through their sections (in an ET_REL, st_value is the offset
    /// in the section, whose sh_addr is 0: the same arithmetic). The wrapper's forms — kexec-purgatory.S's
    /// `.incbin` with a `.quad` after it, and the older bin2c C array — define both symbols.
    private static func fromSymbols(_ elf: ELFFile, kind: ContainerKind) throws(ContainerError) -> Extraction? {
        guard let table = elf.sections.first(where: { $0.type == ELFConstant.shtSymtab }),
              let symbols = try? elf.symbols(in: table),
              let blob = symbols.first(where: { $0.name == "kexec_purgatory" && $0.shndx != 0 }) else { return nil }
        func fileOffset(_ symbol: Symbol, length: UInt64) throws(ContainerError) -> Int {
            guard Int(symbol.shndx) < elf.sections.count, symbol.shndx != 0 else {
                throw ContainerError(structure: "symbol \(symbol.name)", reason: "section index \(symbol.shndx) is not a section of the file")
            }
            let section = elf.sections[Int(symbol.shndx)]
            // Only sections whose file range was checked (an inactive SHT_NULL header was not).
            guard !section.isNobits, ELFFile.fileRangeChecked(section.offset, section.size, in: elf.bytes.count) != nil,
                  symbol.value >= section.addr, symbol.value - section.addr <= section.size,
                  length <= section.size - (symbol.value - section.addr) else {
                throw ContainerError(structure: "symbol \(symbol.name)",
                                     reason: "\(hex(symbol.value)) +\(hex(length)) is not inside the file data of section \(section.label)")
            }
            return Int(section.offset + symbol.value - section.addr)
        }
        guard let sizeSymbol = symbols.first(where: { $0.name == "kexec_purgatory_size" }) else {
            throw ContainerError(structure: "symbol kexec_purgatory_size", reason: "kexec_purgatory is defined but its size symbol is not")
        }
        let size = u64(elf.bytes, try fileOffset(sizeSymbol, length: 8))
        let start = try fileOffset(blob, length: size)
        let object = try parseEmbedded(elf.bytes, at: start, limit: start + Int(size))
        guard object.bytes.count == Int(size) else {
            throw ContainerError(structure: "symbol kexec_purgatory",
                                 reason: "kexec_purgatory_size says \(size) bytes, the object's section header table accounts for \(object.bytes.count)")
        }
        return Extraction(object: object.bytes, container: kind, offset: start,
                          provenance: ["\(kind.rawValue): symbols kexec_purgatory at \(hex(blob.value)) (file offset \(hex(start))) and kexec_purgatory_size = \(size), which the object's section header table confirms"])
    }

    // MARK: Embedded ELF objects

    struct EmbeddedObject {
        var offset: Int
        var bytes: [UInt8]
        var definesPurgatoryStart: Bool
    }

    /// Every ET_REL x86-64 ELF header in `bytes` past offset 0, each parsed or rejected with a reason.
    static func embeddedObjects(in bytes: [UInt8]) -> [Result<EmbeddedObject, ContainerError>] {
        let signature: [UInt8] = elfMagic + [2, 1, 1]  // ELFCLASS64, little-endian, EV_CURRENT
        var results: [Result<EmbeddedObject, ContainerError>] = []
        var at = 1
        while let hit = find(signature, in: bytes, from: at) {
            at = hit + 1
            guard hit + 64 <= bytes.count, u16(bytes, hit + 16) == 1, u16(bytes, hit + 18) == ELFConstant.machineX86_64 else { continue }
            do throws(ContainerError) {
                results.append(.success(try parseEmbedded(bytes, at: hit, limit: bytes.count)))
            } catch {
                results.append(.failure(error))
            }
        }
        return results
    }

    /// The object at `offset`, sized by its section header table and parsed whole.
    static func parseEmbedded(_ bytes: [UInt8], at offset: Int, limit: Int) throws(ContainerError) -> EmbeddedObject {
        let what = "ET_REL object at \(hex(offset))"
        guard offset + 64 <= limit, bytes[offset ..< offset + 4].elementsEqual(elfMagic) else {
            throw ContainerError(structure: what, reason: "expected an ELF header, found none")
        }
        let shoff = u64(bytes, offset + 0x28), entsize = u16(bytes, offset + 0x3a), count = u16(bytes, offset + 0x3c)
        guard entsize == 64, count > 0, shoff < UInt64(limit - offset), UInt64(count) * 64 <= UInt64(limit - offset) - shoff else {
            throw ContainerError(structure: what, reason: "section header table (e_shoff \(hex(shoff)), \(count) × \(entsize) bytes) is not inside the \(limit - offset) bytes that follow")
        }
        var end = shoff + UInt64(count) * 64
        for index in 0 ..< Int(count) {
            let header = offset + Int(shoff) + index * 64
            let type = u32(bytes, header + 4), start = u64(bytes, header + 0x18), size = u64(bytes, header + 0x20)
            guard type != ELFConstant.shtNobits, type != ELFConstant.shtNull else { continue }
            guard start <= UInt64(limit - offset), size <= UInt64(limit - offset) - start else {
                throw ContainerError(structure: what, reason: "section \(index) data [\(hex(start)), +\(hex(size))) runs past the \(limit - offset) bytes that follow")
            }
            end = max(end, start + size)
        }
        let slice = Array(bytes[offset ..< offset + Int(end)])
        let elf: ELFFile
        do { elf = try ELFFile(bytes: slice, name: what) } catch {
            throw ContainerError(structure: what, reason: "\(error.structure): \(error.reason)")
        }
        let defines = elf.sections.filter { $0.type == ELFConstant.shtSymtab }.contains { table in
            ((try? elf.symbols(in: table)) ?? []).contains { $0.name == "purgatory_start" && $0.shndx != 0 }
        }
        return EmbeddedObject(offset: offset, bytes: slice, definesPurgatoryStart: defines)
    }

    /// First occurrence of `needle` in `haystack` at or after `from` (memchr for the first byte).
    static func find(_ needle: [UInt8], in haystack: [UInt8], from: Int) -> Int? {
        guard let first = needle.first, from < haystack.count else { return nil }
        return haystack.withUnsafeBufferPointer { buffer -> Int? in
            guard let base = buffer.baseAddress else { return nil }
            var at = from
            while at + needle.count <= buffer.count {
                guard let hit = memchr(base + at, Int32(first), buffer.count - at) else { return nil }
                let index = UnsafePointer<UInt8>(hit.assumingMemoryBound(to: UInt8.self)) - base
                if index + needle.count <= buffer.count, (1 ..< needle.count).allSatisfy({ buffer[index + $0] == needle[$0] }) { return index }
                at = index + 1
            }
            return nil
        }
    }
}
