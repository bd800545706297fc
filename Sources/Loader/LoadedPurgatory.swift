import ELF

/// A purgatory laid out and relocated for one load address: the bytes the kernel
/// would copy into the segment, the section headers with their new addresses,
/// and the entry point. Symbol access follows kexec_purgatory_get_set_symbol.
public struct LoadedPurgatory: Sendable {
    public let file: ELFFile
    public let kind: LoaderKind
    public let layout: BufferLayout
    public let loadAddress: UInt64
    /// `layout.bufsz` bytes; the `bssSize` bytes after them (and the page tail) are zero in the segment.
    public internal(set) var buffer: [UInt8]
    /// Copies of the section headers: SHF_ALLOC ones carry their new sh_addr (and,
    /// for PROGBITS, sh_offset relative to the buffer), as in the kernel's pi->sechdrs.
    public let sections: [SectionHeader]
    public internal(set) var entry: UInt64
    /// How the entry was chosen, for reports ("purgatory_start in .text").
    public internal(set) var entrySource: String
    public internal(set) var diagnostics: [Diagnostic]
    /// For fully linked images, st_value is a link-time address: the symbol lives at
    /// st_value + bias, and at st_value - linkBase in the buffer. nil for relocatable objects,
    /// whose st_value is an offset into the symbol's section.
    var image: (bias: UInt64, linkBase: UInt64)?

    /// e_shnum, or 0 when the file has no section header table (e_shoff 0): the headers that exist.
    var shnum: Int { min(Int(file.header.shnum), sections.count) }

    /// Where a defined symbol ends up in memory.
    func address(of symbol: Symbol) -> UInt64 {
        if let image { return symbol.value &+ image.bias }
        return sections[Int(symbol.shndx)].addr &+ symbol.value
    }

    /// Where a defined symbol's bytes start in the buffer (before bounds checks).
    func bufferOffset(of symbol: Symbol) -> (partialValue: UInt64, overflow: Bool) {
        if let image { return symbol.value.subtractingReportingOverflow(image.linkBase) }
        return sections[Int(symbol.shndx)].offset.addingReportingOverflow(symbol.value)
    }

    /// The symbol's offset inside its section.
    func sectionOffset(of symbol: Symbol) -> UInt64 {
        image == nil ? symbol.value : symbol.value &- file.sections[Int(symbol.shndx)].addr
    }

    /// kexec_purgatory_find_symbol: the first STB_GLOBAL symbol of that name in any
    /// SHT_SYMTAB; nil if there is none or if it is undefined or has a bad section index.
    public func findSymbol(_ name: String) -> Symbol? {
        for table in sections.prefix(shnum) where table.type == ELFConstant.shtSymtab {
            guard Int(table.link) < shnum, let symbols = try? file.symbols(in: table) else { continue }
            for symbol in symbols where symbol.isGlobal && symbol.name == name {
                if symbol.shndx == ELFConstant.shnUndef || Int(symbol.shndx) >= shnum { return nil }
                return symbol
            }
        }
        return nil
    }

    /// kexec_purgatory_get_symbol_addr: section's new address plus st_value.
    public func symbolAddress(_ name: String) -> UInt64? {
        findSymbol(name).map(address(of:))
    }

    /// kexec_purgatory_get_set_symbol with get_value = true.
    public func getSymbol(_ name: String, size: Int) throws(LoadFailure) -> [UInt8] {
        let range = try symbolBytes(name, size: size, verb: "get")
        return Array(buffer[range])
    }

    /// kexec_purgatory_get_set_symbol with get_value = false.
    public mutating func setSymbol(_ name: String, _ bytes: [UInt8]) throws(LoadFailure) {
        let range = try symbolBytes(name, size: bytes.count, verb: "set")
        buffer.replaceSubrange(range, with: bytes)
    }

    private func symbolBytes(_ name: String, size: Int, verb: String) throws(LoadFailure) -> Range<Int> {
        let tools = kind == .kexecTools
        guard let symbol = findSymbol(name) else {
            throw .refused(tools ? .kexecTools("Symbol: \(name) not found cannot \(verb)")
                : kind.silent("-EINVAL", "kexec_purgatory_\(verb)_symbol: no defined global symbol \(name)", inPurgatoryLoad: false))
        }
        guard symbol.size == UInt64(size) else {
            throw .refused(tools ? .kexecTools("Symbol: \(name) has size: \(symbol.size) not \(size)")
                : .kexecFile("symbol \(name) size mismatch: expected \(size) actual \(UInt32(truncatingIfNeeded: symbol.size))"))
        }
        let section = sections[Int(symbol.shndx)]
        guard !section.isNobits else {
            throw .refused(tools ? .kexecTools("Symbol: \(name) is in a bss section cannot \(verb)")
                : .kexecFile("symbol \(name) is in a bss section. Cannot \(verb)"))
        }
        // The kernel trusts st_value; a symbol outside its section would have it scribble elsewhere.
        let start = bufferOffset(of: symbol)
        let inSection = sectionOffset(of: symbol)
        guard section.isAlloc, !start.overflow, inSection <= section.size, UInt64(size) <= section.size - inSection,
              start.partialValue <= UInt64(buffer.count), UInt64(size) <= UInt64(buffer.count) - start.partialValue else {
            throw .malformed(ELFError(file: file.name, structure: "symbol \(name)",
                reason: "value \(hex(symbol.value)) size \(size) lies outside section \(section.label) (\(hex(section.size)) bytes)"))
        }
        return Int(start.partialValue) ..< Int(start.partialValue) + size
    }

    /// The base the kernel adds to st_value for a relocation against `symbol`.
    public func relocationBase(of symbol: Symbol, kind: LoaderKind) -> Result<UInt64, LoadFailure> {
        let name = displayName(of: symbol)
        // kexec-tools' wording for these is not in our reference; it gets the kernel's text, unprefixed.
        func refuse(_ line: String) -> Result<UInt64, LoadFailure> {
            .failure(.refused(kind == .kexecTools ? .kexecTools(line) : .kexec(line)))
        }
        switch symbol.shndx {
        case ELFConstant.shnUndef: return refuse("Undefined symbol: \(name)")
        case ELFConstant.shnCommon: return refuse("symbol '\(name)' in common section")
        case ELFConstant.shnAbs: return .success(0)
        case let index where Int(index) >= shnum: return refuse("Invalid section \(index) for symbol \(name)")
        case let index: return .success(sections[Int(index)].addr)
        }
    }

    /// A symbol's name, or its section's name when it has none (section symbols).
    public func displayName(of symbol: Symbol) -> String {
        if symbol.nameOffset != 0 { return symbol.name }
        return Int(symbol.shndx) < sections.count ? sections[Int(symbol.shndx)].name : ""
    }

    /// Named code and data symbols at their relocated addresses, sorted, for `symbolize`.
    public func addressMap() -> AddressMap {
        var entries: [AddressMap.Entry] = []
        for table in sections where table.type == ELFConstant.shtSymtab {
            guard let symbols = try? file.symbols(in: table) else { continue }
            for symbol in symbols where !symbol.name.isEmpty && symbol.type <= 2 /* NOTYPE, OBJECT, FUNC */ {
                guard Int(symbol.shndx) < shnum, symbol.shndx != 0 else { continue }
                let section = sections[Int(symbol.shndx)]
                guard section.isAlloc else { continue }
                entries.append(.init(address: address(of: symbol), size: symbol.size, name: symbol.name,
                                     isFunction: symbol.type == 2, sectionEnd: section.addr &+ section.size))
            }
        }
        return AddressMap(entries: entries)
    }
}

/// Relocated addresses back to `symbol+0xoff`.
public struct AddressMap: Sendable {
    public struct Entry: Sendable, Equatable {
        public var address: UInt64
        public var size: UInt64
        public var name: String
        public var isFunction: Bool
        public var sectionEnd: UInt64
    }
    /// Sorted by address; at one address functions come before other names.
    public let entries: [Entry]

    public init(entries: [Entry]) {
        self.entries = entries.sorted { ($0.address, $0.isFunction ? 0 : 1, $0.name) < ($1.address, $1.isFunction ? 0 : 1, $1.name) }
    }

    /// The symbol whose range covers `address` (or the nearest one below it in the same section).
    public func lookup(_ address: UInt64) -> (name: String, offset: UInt64)? {
        var low = 0, high = entries.count
        while low < high {
            let mid = (low + high) / 2
            if entries[mid].address <= address { low = mid + 1 } else { high = mid }
        }
        var index = low - 1
        guard index >= 0 else { return nil }
        // Prefer a function starting at the same address.
        let start = entries[index].address
        while index > 0, entries[index - 1].address == start { index -= 1 }
        let entry = entries[index]
        guard address < entry.sectionEnd else { return nil }
        return (entry.name, address - entry.address)
    }

    public func symbolize(_ address: UInt64) -> String? {
        guard let (name, offset) = lookup(address) else { return nil }
        return offset == 0 ? name : "\(name)+\(hex(offset))"
    }
}
