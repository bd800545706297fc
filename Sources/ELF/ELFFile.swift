import Foundation

/// A validated, read-only view of an ELF64 little-endian x86-64 file.
///
/// Everything the rest of the harness reads goes through this type, and every
/// offset, size, count and index it hands out has been checked against the file:
/// a malformed input throws `ELFError` here, it never traps later. What the
/// *kernel* would make of a well-formed file (sh_info out of range, SHN_COMMON
/// symbols…) is not judged here: that is the Loader's business.
public struct ELFFile: Sendable {
    /// Name used in messages (the path the user gave).
    public let name: String
    /// Symbol tables parsed once per file (by section index): the loader, the code map and inspect
    /// ask for the same table many times (once per relocation section, per symbol lookup).
    private let symbolCache = SymbolCache()
    public let bytes: [UInt8]
    public let header: ELFHeader
    /// All section headers, index 0 included (SHN_XINDEX counts resolved).
    public let sections: [SectionHeader]
    public let programHeaders: [ProgramHeader]

    /// Files larger than this are refused before parsing: no purgatory, vmlinux
    /// or kexec binary comes near it, and the bound keeps every size honest.
    public static let maximumSize = 1 << 30

    public init(bytes: [UInt8], name: String) throws(ELFError) {
        self.name = name
        self.bytes = bytes
        let reader = ByteReader(bytes: bytes, file: name)
        let header = try ELFHeader(reader)
        self.header = header
        let sections = try ELFFile.readSectionHeaders(reader, header)
        self.sections = sections
        self.programHeaders = try ELFFile.readProgramHeaders(reader, header)
    }

    public func section(named name: String) -> SectionHeader? { sections.first { $0.name == name } }

    /// The file bytes of a section (empty for SHT_NOBITS). Bounds were checked at parse time for
    /// every section whose bytes anyone reads; a header that was not checked (an inactive SHT_NULL
    /// entry) gets no bytes rather than a trap.
    public func contents(of section: SectionHeader) -> ArraySlice<UInt8> {
        guard section.type != ELFConstant.shtNobits, section.size > 0,
              let range = ELFFile.fileRange(section.offset, section.size, in: bytes.count) else { return [] }
        return bytes[range]
    }

    /// [offset, offset + size) as Int indices when it lies inside a file of `count` bytes.
    public static func fileRangeChecked(_ offset: UInt64, _ size: UInt64, in count: Int) -> Range<Int>? {
        fileRange(offset, size, in: count)
    }

    static func fileRange(_ offset: UInt64, _ size: UInt64, in count: Int) -> Range<Int>? {
        let end = offset.addingReportingOverflow(size)
        guard !end.overflow, end.partialValue <= UInt64(count),
              let low = Int(exactly: offset), let high = Int(exactly: end.partialValue) else { return nil }
        return low ..< high
    }

    /// The symbols of a SHT_SYMTAB or SHT_DYNSYM section, names resolved through its sh_link.
    /// Parsed once per table and file; later calls return the same array (or the same error).
    public func symbols(in table: SectionHeader) throws(ELFError) -> [Symbol] {
        // The cache is keyed by index: only a header of this file, unmodified, may use it.
        guard table.index >= 0, table.index < sections.count, sections[table.index] == table else {
            return try parseSymbols(in: table)
        }
        return try symbolCache.value(for: table.index) { () throws(ELFError) in try parseSymbols(in: table) }
    }

    /// Longest symbol or section name the harness reads (a longer one is refused as malformed):
    /// it bounds the scan for the NUL and the memory a hostile string table can make us allocate.
    public static let maximumNameLength = 4096

    private func parseSymbols(in table: SectionHeader) throws(ELFError) -> [Symbol] {
        let what = "symbol table \(table.label)"
        guard table.type == ELFConstant.shtSymtab || table.type == ELFConstant.shtDynsym else {
            throw ELFError(file: name, structure: what, reason: "sh_type \(table.type) is not SHT_SYMTAB")
        }
        guard table.entsize == Symbol.entrySize else {
            throw ELFError(file: name, structure: what, reason: "sh_entsize \(table.entsize), expected 24")
        }
        guard table.size % Symbol.entrySize == 0 else {
            throw ELFError(file: name, structure: what, reason: "sh_size \(hex(table.size)) is not a multiple of 24")
        }
        guard table.type != ELFConstant.shtNobits, ELFFile.fileRange(table.offset, table.size, in: bytes.count) != nil else {
            throw ELFError(file: name, structure: what, reason: "data [\(hex(table.offset)), +\(hex(table.size))) is not inside the file")
        }
        guard Int(table.link) < sections.count, sections[Int(table.link)].type == ELFConstant.shtStrtab else {
            throw ELFError(file: name, structure: what,
                           reason: "sh_link \(table.link) is not a string table section")
        }
        let strings = sections[Int(table.link)]
        let reader = ByteReader(bytes: bytes, file: name)
        let count = Int(table.size / Symbol.entrySize)
        var result: [Symbol] = []
        result.reserveCapacity(count)
        // Many symbols share a name offset (section symbols all use 0): decode each name once.
        var names: [UInt32: String] = [:]
        for index in 0 ..< count {
            let at = Int(table.offset) + index * Int(Symbol.entrySize)
            let nameOffset = reader.u32(at)
            let symbolName: String
            if let known = names[nameOffset] {
                symbolName = known
            } else {
                symbolName = try string(in: strings, at: nameOffset, structure: "\(what) entry \(index)")
                names[nameOffset] = symbolName
            }
            result.append(Symbol(index: index, nameOffset: nameOffset, name: symbolName,
                                 info: reader.u8(at + 4), other: reader.u8(at + 5),
                                 shndx: reader.u16(at + 6), value: reader.u64(at + 8),
                                 size: reader.u64(at + 16)))
        }
        return result
    }

    /// The entries of a SHT_RELA section (SHT_REL entries are read with addend 0).
    public func relocations(in section: SectionHeader) throws(ELFError) -> [Relocation] {
        let what = "relocation section \(section.label)"
        let isRela = section.type == ELFConstant.shtRela
        guard isRela || section.type == ELFConstant.shtRel else {
            throw ELFError(file: name, structure: what, reason: "sh_type \(section.type) is not SHT_RELA or SHT_REL")
        }
        let entrySize: UInt64 = isRela ? 24 : 16
        guard section.entsize == entrySize else {
            throw ELFError(file: name, structure: what, reason: "sh_entsize \(section.entsize), expected \(entrySize)")
        }
        guard section.size % entrySize == 0 else {
            throw ELFError(file: name, structure: what,
                           reason: "sh_size \(hex(section.size)) is not a multiple of \(entrySize)")
        }
        guard ELFFile.fileRange(section.offset, section.size, in: bytes.count) != nil else {
            throw ELFError(file: name, structure: what, reason: "data [\(hex(section.offset)), +\(hex(section.size))) is not inside the file")
        }
        let reader = ByteReader(bytes: bytes, file: name)
        return (0 ..< Int(section.size / entrySize)).map { index in
            let at = Int(section.offset) + index * Int(entrySize)
            return Relocation(index: index, offset: reader.u64(at), info: reader.u64(at + 8),
                              addend: isRela ? Int64(bitPattern: reader.u64(at + 16)) : 0)
        }
    }

    /// A NUL-terminated string at `offset` inside string table `table`.
    public func string(in table: SectionHeader, at offset: UInt32, structure: @autoclosure () -> String) throws(ELFError) -> String {
        let data = contents(of: table)
        guard UInt64(offset) < UInt64(data.count) else {
            if offset == 0 && data.isEmpty { return "" }
            throw ELFError(file: name, structure: structure(),
                           reason: "name offset \(hex(offset)) is outside string table \(table.label) (\(hex(data.count)) bytes)")
        }
        let start = data.startIndex + Int(offset)
        let window = data[start ..< min(data.endIndex, start + ELFFile.maximumNameLength + 1)]
        guard let end = window.firstIndex(of: 0) else {
            throw ELFError(file: name, structure: structure(),
                           reason: window.count > ELFFile.maximumNameLength
                               ? "name at \(hex(offset)) in \(table.label) is longer than \(ELFFile.maximumNameLength) bytes"
                               : "name at \(hex(offset)) in \(table.label) is not NUL-terminated")
        }
        return String(decoding: data[start ..< end], as: UTF8.self)
    }

    private static func readSectionHeaders(_ reader: ByteReader, _ header: ELFHeader) throws(ELFError) -> [SectionHeader] {
        let file = reader.file
        if header.shoff == 0 { return [] }
        guard header.shentsize == SectionHeader.entrySize else {
            throw ELFError(file: file, structure: "ELF header", reason: "e_shentsize \(header.shentsize), expected 64")
        }
        guard header.shoff <= UInt64(reader.count), UInt64(reader.count) - header.shoff >= SectionHeader.entrySize else {
            throw ELFError(file: file, structure: "ELF header",
                           reason: "e_shoff \(hex(header.shoff)) leaves no room for a section header in \(hex(reader.count)) bytes")
        }
        // Section 0 holds the real count and string-table index when they overflow 16 bits.
        let zero = SectionHeader.read(reader, at: Int(header.shoff), index: 0)
        let count = header.shnum == 0 ? zero.size : UInt64(header.shnum)
        let tableSize = count.multipliedReportingOverflow(by: SectionHeader.entrySize)
        guard !tableSize.overflow, tableSize.partialValue <= UInt64(reader.count) - header.shoff else {
            throw ELFError(file: file, structure: "section header table",
                           reason: "\(count) entries at \(hex(header.shoff)) extend past the end of the file (\(hex(reader.count)) bytes)")
        }
        var sections = (0 ..< Int(count)).map {
            SectionHeader.read(reader, at: Int(header.shoff) + $0 * Int(SectionHeader.entrySize), index: $0)
        }
        // SHT_NULL entries are inactive, except that a loader copies an SHF_ALLOC one like any other.
        for section in sections where section.type != ELFConstant.shtNobits && (section.type != ELFConstant.shtNull || section.isAlloc) {
            let end = section.offset.addingReportingOverflow(section.size)
            guard !end.overflow, end.partialValue <= UInt64(reader.count) else {
                throw ELFError(file: file, structure: "section header \(section.index)",
                               reason: "data [\(hex(section.offset)), +\(hex(section.size))) extends past the end of the file (\(hex(reader.count)) bytes)")
            }
        }
        let stringIndex = header.shstrndx == ELFConstant.shnXindex ? UInt64(zero.link) : UInt64(header.shstrndx)
        guard stringIndex != 0 else { return sections }
        guard stringIndex < count else {
            throw ELFError(file: file, structure: "ELF header",
                           reason: "e_shstrndx \(stringIndex) is out of range (\(count) sections)")
        }
        let names = sections[Int(stringIndex)]
        guard names.type == ELFConstant.shtStrtab else {
            throw ELFError(file: file, structure: "ELF header",
                           reason: "e_shstrndx \(stringIndex) names a section of type \(names.type), not SHT_STRTAB")
        }
        let partial = ELFFile(unchecked: reader.bytes, name: file, header: header, sections: sections)
        for index in sections.indices {
            sections[index].name = try partial.string(in: names, at: sections[index].nameOffset,
                                                      structure: "section header \(index)")
        }
        return sections
    }

    private static func readProgramHeaders(_ reader: ByteReader, _ header: ELFHeader) throws(ELFError) -> [ProgramHeader] {
        guard header.phoff != 0, header.phnum != 0 else { return [] }
        let file = reader.file
        guard header.phentsize == ProgramHeader.entrySize else {
            throw ELFError(file: file, structure: "ELF header", reason: "e_phentsize \(header.phentsize), expected 56")
        }
        let size = UInt64(header.phnum) * ProgramHeader.entrySize
        guard header.phoff <= UInt64(reader.count), size <= UInt64(reader.count) - header.phoff else {
            throw ELFError(file: file, structure: "program header table",
                           reason: "\(header.phnum) entries at \(hex(header.phoff)) extend past the end of the file (\(hex(reader.count)) bytes)")
        }
        let headers = (0 ..< Int(header.phnum)).map {
            ProgramHeader.read(reader, at: Int(header.phoff) + $0 * Int(ProgramHeader.entrySize), index: $0)
        }
        for ph in headers {
            let end = ph.offset.addingReportingOverflow(ph.filesz)
            guard !end.overflow, end.partialValue <= UInt64(reader.count) else {
                throw ELFError(file: file, structure: "program header \(ph.index)",
                               reason: "file range [\(hex(ph.offset)), +\(hex(ph.filesz))) extends past the end of the file")
            }
            guard ph.filesz <= ph.memsz else {
                throw ELFError(file: file, structure: "program header \(ph.index)",
                               reason: "p_filesz \(hex(ph.filesz)) exceeds p_memsz \(hex(ph.memsz))")
            }
        }
        return headers
    }

    /// Whether two values describe the same file (the symbol cache is not compared).
    public func sameFile(as other: ELFFile) -> Bool {
        name == other.name && header == other.header && sections == other.sections && bytes == other.bytes
    }

    private init(unchecked bytes: [UInt8], name: String, header: ELFHeader, sections: [SectionHeader]) {
        self.bytes = bytes
        self.name = name
        self.header = header
        self.sections = sections
        self.programHeaders = []
    }
}

/// The fields of the ELF64 file header the harness uses.
public struct ELFHeader: Sendable, Equatable {
    public static let size = 64
    public var type: UInt16
    public var machine: UInt16
    public var entry: UInt64
    public var phoff: UInt64
    public var shoff: UInt64
    public var phentsize: UInt16
    public var phnum: UInt16
    public var shentsize: UInt64
    /// e_shnum as written (0 when the count lives in section 0); the kernel loops over this value.
    public var shnum: UInt16
    public var shstrndx: UInt16

    public var fileType: ELFConstant.FileType? { ELFConstant.FileType(rawValue: type) }

    init(_ reader: ByteReader) throws(ELFError) {
        let file = reader.file
        guard reader.count >= ELFHeader.size else {
            throw ELFError(file: file, structure: "ELF header",
                           reason: "file is \(reader.count) bytes, shorter than the 64-byte ELF64 header")
        }
        guard reader.u8(0) == 0x7f, reader.u8(1) == 0x45, reader.u8(2) == 0x4c, reader.u8(3) == 0x46 else {
            throw ELFError(file: file, structure: "ELF header", reason: "no ELF magic (\\x7fELF) at offset 0")
        }
        guard reader.u8(4) == 2 else {
            throw ELFError(file: file, structure: "ELF header", reason: "EI_CLASS \(reader.u8(4)) is not ELFCLASS64")
        }
        guard reader.u8(5) == 1 else {
            throw ELFError(file: file, structure: "ELF header", reason: "EI_DATA \(reader.u8(5)) is not little-endian")
        }
        guard reader.u8(6) == 1, reader.u32(20) == 1 else {
            throw ELFError(file: file, structure: "ELF header", reason: "ELF version is not 1 (EV_CURRENT)")
        }
        type = reader.u16(16)
        machine = reader.u16(18)
        guard machine == ELFConstant.machineX86_64 else {
            throw ELFError(file: file, structure: "ELF header", reason: "e_machine \(machine) is not x86-64 (62)")
        }
        entry = reader.u64(24)
        phoff = reader.u64(32)
        shoff = reader.u64(40)
        phentsize = reader.u16(54)
        phnum = reader.u16(56)
        shentsize = UInt64(reader.u16(58))
        shnum = reader.u16(60)
        shstrndx = reader.u16(62)
    }
}

public struct SectionHeader: Sendable, Equatable {
    static let entrySize: UInt64 = 64
    public var index: Int
    public var nameOffset: UInt32
    public var name: String = ""
    public var type: UInt32
    public var flags: UInt64
    public var addr: UInt64
    public var offset: UInt64
    public var size: UInt64
    public var link: UInt32
    public var info: UInt32
    public var addralign: UInt64
    public var entsize: UInt64

    public var isAlloc: Bool { flags & ELFConstant.shfAlloc != 0 }
    public var isExecutable: Bool { flags & ELFConstant.shfExecInstr != 0 }
    public var isNobits: Bool { type == ELFConstant.shtNobits }
    /// `7 (.rela.text)` for messages.
    public var label: String { name.isEmpty ? "\(index)" : "\(index) (\(name))" }

    static func read(_ r: ByteReader, at o: Int, index: Int) -> SectionHeader {
        SectionHeader(index: index, nameOffset: r.u32(o), type: r.u32(o + 4), flags: r.u64(o + 8),
                      addr: r.u64(o + 16), offset: r.u64(o + 24), size: r.u64(o + 32),
                      link: r.u32(o + 40), info: r.u32(o + 44), addralign: r.u64(o + 48),
                      entsize: r.u64(o + 56))
    }
}

public struct ProgramHeader: Sendable, Equatable {
    static let entrySize: UInt64 = 56
    public var index: Int
    public var type: UInt32
    public var flags: UInt32
    public var offset: UInt64
    public var vaddr: UInt64
    public var paddr: UInt64
    public var filesz: UInt64
    public var memsz: UInt64
    public var align: UInt64

    static func read(_ r: ByteReader, at o: Int, index: Int) -> ProgramHeader {
        ProgramHeader(index: index, type: r.u32(o), flags: r.u32(o + 4), offset: r.u64(o + 8),
                      vaddr: r.u64(o + 16), paddr: r.u64(o + 24), filesz: r.u64(o + 32),
                      memsz: r.u64(o + 40), align: r.u64(o + 48))
    }
}

public struct Symbol: Sendable, Equatable {
    static let entrySize: UInt64 = 24
    public var index: Int
    public var nameOffset: UInt32
    public var name: String
    public var info: UInt8
    public var other: UInt8
    public var shndx: UInt16
    public var value: UInt64
    public var size: UInt64

    public var binding: UInt8 { info >> 4 }
    public var type: UInt8 { info & 0xf }
    public var isGlobal: Bool { binding == ELFConstant.stbGlobal }
}

public struct Relocation: Sendable, Equatable {
    public var index: Int
    public var offset: UInt64
    public var info: UInt64
    public var addend: Int64
    public var symbolIndex: Int { Int(info >> 32) }
    public var type: UInt32 { UInt32(truncatingIfNeeded: info) }
}

/// Parsed symbol tables by section index, shared by copies of one ELFFile and filled on first use.
final class SymbolCache: @unchecked Sendable {
    private let lock = NSLock()
    private var tables: [Int: Result<[Symbol], ELFError>] = [:]

    func value(for index: Int, _ parse: () throws(ELFError) -> [Symbol]) throws(ELFError) -> [Symbol] {
        lock.lock()
        if let known = tables[index] { lock.unlock(); return try known.get() }
        lock.unlock()
        // Parsed outside the lock: two threads may both parse one table; both get equal answers.
        let result: Result<[Symbol], ELFError>
        do throws(ELFError) { result = .success(try parse()) } catch { result = .failure(error) }
        lock.lock()
        tables[index] = result
        lock.unlock()
        return try result.get()
    }
}

/// Little-endian loads at offsets the caller has already bounds-checked.
struct ByteReader {
    let bytes: [UInt8]
    let file: String
    var count: Int { bytes.count }

    func u8(_ at: Int) -> UInt8 { bytes[at] }
    func u16(_ at: Int) -> UInt16 { load(at) }
    func u32(_ at: Int) -> UInt32 { load(at) }
    func u64(_ at: Int) -> UInt64 { load(at) }

    private func load<T: FixedWidthInteger>(_ at: Int) -> T {
        precondition(at >= 0 && at + MemoryLayout<T>.size <= bytes.count, "unchecked ELF read")
        return bytes.withUnsafeBytes { T(littleEndian: $0.loadUnaligned(fromByteOffset: at, as: T.self)) }
    }
}
