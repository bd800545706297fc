import ELF

/// Which rule picks the purgatory's entry point in kexec_purgatory_setup_sechdrs
/// (kernel/kexec_file.c). All three walk the SHF_ALLOC PROGBITS sections in index order.
public enum EntryRule: String, CaseIterable, Sendable {
    /// Commit 480e1d5c64bb "kexec: derive purgatory entry from symbol" (v7.0; stable 6.1.165,
    /// 6.6.128, 6.12.75, 6.18.16): the first section, in index order, that either holds the global
    /// `purgatory_start` (executable, st_value < sh_size; checked first) or is executable and
    /// contains e_entry. No WARN.
    case symbol
    /// Commit 8652d44f466a "kexec: support purgatories with .text.hot sections" (v6.4; stable
    /// 4.19.287, 5.10.185): the first executable section containing e_entry; every later one fires
    /// WARN_ON and is ignored.
    case eEntry = "e_entry"
    /// Before 8652d44f466a: every executable section containing e_entry rebases the entry again,
    /// so a second one (clang ≥ 18's .ltext beside .text) adds the load address twice.
    case unguarded = "e_entry-unguarded"
}

/// Which program loads the purgatory, and so which rules and messages apply.
public enum LoaderKind: String, CaseIterable, Sendable {
    /// The kernel's kexec_file_load (kernel/kexec_file.c, arch/x86/kernel/machine_kexec_64.c).
    case kexecFile = "kexec-file"
    /// kexec-tools' user-space loader for kexec_load (kexec/kexec-elf-rel.c): ALIGN 0 is 1, a bss pad,
    /// the e_entry rule, fatal messages of its own.
    case kexecTools = "kexec-tools"
    /// A fully linked ET_DYN/ET_EXEC purgatory copied by its PT_LOAD segments (see `ImageLoader`).
    case image
}

/// The relocatable-purgatory loaders, phase by phase as in kernel/kexec_file.c:
/// size the buffer (`setupBuffer`), place it (the caller's address, checked by
/// `checkPlacement`), give sections their new addresses and find the entry
/// (`setupSectionHeaders`), then apply relocations (`applyRelocations`).
/// kexec-tools differs in a few named places, each marked `kind == .kexecTools`.
public struct PurgatoryLoader: Sendable {
    public let file: ELFFile
    public let kind: LoaderKind
    /// Only the kernel has a choice; kexec-tools always uses the e_entry rule.
    public let entryRule: EntryRule
    /// kexec_add_buffer's lower bound for the purgatory on x86-64.
    public static let minimumAddress: UInt64 = 0x3000
    /// Larger buffers are refused as an allocation failure (alignments can inflate bufsz far past the file).
    public static let maximumBufferSize: UInt64 = 1 << 30

    public init(file: ELFFile, kind: LoaderKind = .kexecFile, entryRule: EntryRule = .symbol) {
        precondition(kind != .image, "fully linked images load through ImageLoader")
        self.file = file
        self.kind = kind
        self.entryRule = kind == .kexecTools ? .eEntry : entryRule
    }

    /// The sections the kernel walks: the first e_shnum headers, exactly as written.
    var kernelSections: ArraySlice<SectionHeader> { file.sections.prefix(shnum) }
    /// e_shnum, or 0 when the file has no section header table (e_shoff 0): the headers that exist.
    var shnum: Int { min(Int(file.header.shnum), file.sections.count) }

    /// Phase 1, kexec_purgatory_setup_kbuf.
    public func setupBuffer() -> BufferLayout { BufferLayout.compute(kernelSections, kind: kind) }

    /// Loads the purgatory for a buffer placed at `address`.
    public func load(at address: UInt64) throws(LoadFailure) -> LoadedPurgatory {
        guard file.header.fileType == .relocatable else {
            throw .malformed(ELFError(file: file.name, structure: "ELF header",
                reason: "e_type \(file.header.type) is not ET_REL: the \(kind.rawValue) loader takes a relocatable purgatory.ro (try --loader image)"))
        }
        let layout = try allocateBuffer(setupBuffer())
        do throws(ELFError) { try checkPlacement(address, layout) } catch { throw .malformed(error) }
        var loaded = try setupSectionHeaders(layout: layout, address: address)
        try applyRelocations(&loaded)
        return loaded
    }

    /// Phases 1 and 2 only: sections placed for `address`, entry chosen, nothing relocated.
    /// `inspect` uses it to reason about relocations without being stopped by the first refusal.
    public func placeSections(at address: UInt64) throws(LoadFailure) -> LoadedPurgatory {
        let layout = try allocateBuffer(setupBuffer())
        do throws(ELFError) { try checkPlacement(address, layout) } catch { throw .malformed(error) }
        return try setupSectionHeaders(layout: layout, address: address)
    }

    /// Phase 1, its end: kexec_purgatory_setup_kbuf's `vzalloc(kbuf->bufsz)` and kexec_add_buffer.
    /// Returns the layout when the kernel gets a buffer for it; every later phase (placing, the
    /// segment's address range) may then rely on a non-empty buffer of at most `maximumBufferSize`.
    ///
    /// An object with no SHF_ALLOC bytes to copy (no allocatable section, all of them empty or
    /// SHT_NOBITS, or no section header table at all) asks for `vzalloc(0)`: __vmalloc_node_range
    /// hits `WARN_ON_ONCE(!size)` and returns NULL, so the kernel WARNs and fails with -ENOMEM.
    public func allocateBuffer(_ layout: BufferLayout) throws(LoadFailure) -> BufferLayout {
        guard layout.bufsz > 0 else {
            throw .refused(kind == .kexecFile ? .emptyBuffer
                : kind.silent("", "the object has no SHF_ALLOC bytes to load (bufsz 0, memsz \(hex(layout.memsz))): kexec-tools would add an empty segment; the harness refuses it"))
        }
        guard layout.bufsz <= PurgatoryLoader.maximumBufferSize else {
            throw .refused(kind.silent("-ENOMEM", "the purgatory buffer would be \(hex(layout.bufsz)) bytes; vzalloc cannot provide it"))
        }
        // memsz = bufsz + bss; a bss so large that the segment wraps cannot be reserved either.
        guard layout.memsz >= layout.bufsz, layout.memsz <= UInt64.max - pageSize else {
            throw .refused(kind.silent("-EADDRNOTAVAIL", "the purgatory segment would be \(hex(layout.bufsz)) + bss \(hex(layout.bssSize)) bytes, wrapping the address space; kexec_locate_mem_hole finds no hole"))
        }
        return layout
    }

    /// The relocation sections the loader applies, with their target, in its order
    /// (SHT_RELA with in-range sh_info/sh_link and an SHF_ALLOC target).
    public func appliedRelocationSections() -> [(relocations: SectionHeader, target: SectionHeader)] {
        kernelSections.compactMap { section in
            guard section.type == ELFConstant.shtRela, Int(section.info) < shnum, Int(section.link) < shnum,
                  file.sections[Int(section.info)].isAlloc else { return nil }
            return (section, file.sections[Int(section.info)])
        }
    }

    /// The caller chose the address; make sure the kernel could have chosen it.
    func checkPlacement(_ address: UInt64, _ layout: BufferLayout) throws(ELFError) {
        let what = "load address \(hex(address))"
        guard layout.bufAlign & (layout.bufAlign - 1) == 0 else {
            throw ELFError(file: file.name, structure: what,
                           reason: "buf_align \(hex(layout.bufAlign)) (the largest sh_addralign) is not a power of two")
        }
        guard address % layout.bufAlign == 0 else {
            throw ELFError(file: file.name, structure: what,
                           reason: "not aligned to the purgatory's buf_align \(hex(layout.bufAlign))")
        }
        guard address >= PurgatoryLoader.minimumAddress else {
            throw ELFError(file: file.name, structure: what, reason: "below the kernel's minimum 0x3000 for the purgatory")
        }
        guard address.addingReportingOverflow(layout.segmentSize).overflow == false else {
            throw ELFError(file: file.name, structure: what,
                           reason: "the \(hex(layout.segmentSize))-byte segment would wrap past the top of the address space")
        }
    }

    /// Phase 2, kexec_purgatory_setup_sechdrs: copy sections into the buffer, assign
    /// their new addresses, and find the entry point (`EntryRule`).
    func setupSectionHeaders(layout: BufferLayout, address: UInt64) throws(LoadFailure) -> LoadedPurgatory {
        var sections = Array(file.sections)
        var buffer = [UInt8](repeating: 0, count: Int(layout.bufsz))
        let eEntry = file.header.entry
        var entry = EntryChoice(eEntry: eEntry, symbol: entryRule == .symbol ? entrySymbol() : nil)
        var offset: UInt64 = 0
        var bssAddress = address &+ layout.bufsz &+ layout.bssPad

        for index in kernelSections.indices where sections[index].isAlloc {
            let original = sections[index]
            let align = kind.alignment(original.addralign)
            if original.isNobits {
                bssAddress = kernelAlign(bssAddress, align)
                sections[index].addr = bssAddress
                bssAddress &+= original.size
                continue
            }
            offset = kernelAlign(offset, align)
            entry.consider(index, original, newAddress: address &+ offset, rule: entryRule)
            guard offset <= layout.bufsz, original.size <= layout.bufsz - offset else {
                throw .refused(.unchecked("section \(original.label) (\(hex(original.size)) bytes at buffer offset \(hex(offset))) does not fit the \(hex(layout.bufsz))-byte buffer; sh_addralign 0 makes the kernel's ALIGN() return 0"))
            }
            let data = file.contents(of: original)
            buffer.replaceSubrange(Int(offset) ..< Int(offset) + data.count, with: data)
            sections[index].addr = address &+ offset
            sections[index].offset = offset
            offset &+= original.size
        }
        return LoadedPurgatory(file: file, kind: kind, layout: layout, loadAddress: address, buffer: buffer,
                               sections: sections, entry: entry.start, entrySource: entry.source(sections),
                               diagnostics: entry.diagnostics(sections, rule: entryRule, kind: kind))
    }

    /// kexec_purgatory_find_symbol for `purgatory_start`: the first STB_GLOBAL symbol of that name
    /// in any SHT_SYMTAB; nil if it is undefined or its section index is out of range.
    func entrySymbol() -> Symbol? {
        for table in kernelSections where table.type == ELFConstant.shtSymtab && Int(table.link) < shnum {
            guard let symbols = try? file.symbols(in: table) else { continue }
            guard let symbol = symbols.first(where: { $0.isGlobal && $0.name == "purgatory_start" }) else { continue }
            return symbol.shndx == ELFConstant.shnUndef || Int(symbol.shndx) >= shnum ? nil : symbol
        }
        return nil
    }

    /// Phase 3, kexec_apply_relocations and arch_kexec_apply_relocations_add.
    func applyRelocations(_ loaded: inout LoadedPurgatory) throws(LoadFailure) {
        for relocationSection in kernelSections {
            guard relocationSection.type == ELFConstant.shtRela || relocationSection.type == ELFConstant.shtRel else { continue }
            guard Int(relocationSection.info) < shnum, Int(relocationSection.link) < shnum else {
                throw .refused(kind.silent("-ENOEXEC", "relocation section \(relocationSection.label): sh_info \(relocationSection.info) or sh_link \(relocationSection.link) is not below e_shnum \(shnum)"))
            }
            let target = loaded.sections[Int(relocationSection.info)]
            guard target.isAlloc else { continue }
            guard relocationSection.type == ELFConstant.shtRela else {
                throw .refused(kind == .kexecFile ? .kexec("REL relocation unsupported.")
                               : kind.silent("", "SHT_REL section \(relocationSection.label): kexec-tools' x86-64 REL handling is not modelled"))
            }
            try applyRela(relocationSection, to: target, in: &loaded)
        }
    }

    private func applyRela(_ relocationSection: SectionHeader, to target: SectionHeader,
                           in loaded: inout LoadedPurgatory) throws(LoadFailure) {
        let symtab = file.sections[Int(relocationSection.link)]
        let what = "relocation section \(relocationSection.label)"
        let symbols: [Symbol], relocations: [Relocation]
        do throws(ELFError) {
            symbols = try file.symbols(in: symtab)
            relocations = try file.relocations(in: relocationSection)
        } catch { throw .malformed(error) }
        for relocation in relocations {
            guard relocation.symbolIndex < symbols.count else {
                throw .malformed(ELFError(file: file.name, structure: "\(what) entry \(relocation.index)",
                    reason: "symbol index \(relocation.symbolIndex) is outside \(symtab.label) (\(symbols.count) symbols)"))
            }
            let symbol = symbols[relocation.symbolIndex]
            let base = try loaded.relocationBase(of: symbol, kind: kind).get()
            let value = symbol.value &+ base &+ UInt64(bitPattern: relocation.addend)
            let place = target.addr &+ relocation.offset
            let patch: [UInt8]
            switch X86_64Relocator.apply(type: relocation.type, value: value, place: place, kind: kind) {
            case .failure(let refusal): throw .refused(refusal)
            case .success(let bytes): patch = bytes
            }
            guard !patch.isEmpty else { continue }
            let end = relocation.offset.addingReportingOverflow(UInt64(patch.count))
            guard !target.isNobits, !end.overflow, end.partialValue <= target.size else {
                throw .malformed(ELFError(file: file.name, structure: "\(what) entry \(relocation.index)",
                    reason: "\(X86_64Relocation.name(relocation.type)) at r_offset \(hex(relocation.offset)) writes outside \(target.label) (\(hex(target.size)) bytes\(target.isNobits ? ", SHT_NOBITS" : ""))"))
            }
            let at = Int(target.offset + relocation.offset)
            loaded.buffer.replaceSubrange(at ..< at + patch.count, with: patch)
        }
    }
}

/// The entry point as kexec_purgatory_setup_sechdrs works it out, section by section.
struct EntryChoice {
    let eEntry: UInt64
    /// `purgatory_start`, for the symbol rule.
    let symbol: Symbol?
    private(set) var start: UInt64
    /// The section that fixed the entry (symbol rule) or the first that rebased it.
    private var chosen: (index: Int, bySymbol: Bool)?
    /// Every executable section whose original range contains e_entry, in order.
    private(set) var containing: [Int] = []
    /// How often the entry was rebased (more than once only by the unguarded rule).
    private var rebases = 0

    init(eEntry: UInt64, symbol: Symbol?) {
        self.eEntry = eEntry
        self.symbol = symbol
        start = eEntry
    }

    /// One SHF_ALLOC PROGBITS section, about to be copied to `newAddress`.
    mutating func consider(_ index: Int, _ section: SectionHeader, newAddress: UInt64, rule: EntryRule) {
        let contains = section.isExecutable && eEntry >= section.addr && eEntry < section.addr &+ section.size
        if contains { containing.append(index) }
        switch rule {
        case .symbol:
            if chosen == nil, let symbol, Int(symbol.shndx) == index, section.isExecutable, symbol.value < section.size {
                start = newAddress &+ symbol.value
                chosen = (index, true)
            }
            if chosen == nil, contains, start == eEntry {
                start = start &- section.addr &+ newAddress
                chosen = (index, false)
            }
        case .eEntry:
            if contains, start == eEntry {  // !WARN_ON(image->start != e_entry)
                start = start &- section.addr &+ newAddress
                chosen = (index, false)
            }
        case .unguarded:
            if contains {
                start = start &- section.addr &+ newAddress
                rebases += 1
                if chosen == nil { chosen = (index, false) }
            }
        }
    }

    func source(_ sections: [SectionHeader]) -> String {
        guard let chosen else { return "e_entry \(hex(eEntry)) unrelocated: no executable section contains it" }
        let name = sections[chosen.index].name
        if chosen.bySymbol { return "purgatory_start in \(name)" }
        if rebases > 1 {
            return "e_entry \(hex(eEntry)) rebased in each of \(containing.map { sections[$0].name }.joined(separator: " and "))"
        }
        return "e_entry \(hex(eEntry)) in \(name)"
    }

    func diagnostics(_ sections: [SectionHeader], rule: EntryRule, kind: LoaderKind) -> [Diagnostic] {
        guard containing.count > 1, kind == .kexecFile else { return [] }
        let names = containing.map { sections[$0].name }
        let first = names[0], later = names.dropFirst().joined(separator: " and ")
        switch rule {
        case .eEntry:
            return [Diagnostic(kind: .kernelWarning,
                               message: "WARNING: at kernel/kexec_file.c: kexec_purgatory_setup_sechdrs: WARN_ON: e_entry \(hex(eEntry)) lies in executable sections \(names.joined(separator: " and ")); the first one, \(first), sets the entry, \(later) is ignored")]
        case .unguarded:
            return [Diagnostic(kind: .lint,
                               message: "e_entry \(hex(eEntry)) lies in executable sections \(names.joined(separator: " and ")): before 8652d44f466a the kernel rebases the entry in each, so it points to \(hex(start)), not into \(first)")]
        case .symbol:
            return chosen?.bySymbol == true ? [] : [Diagnostic(kind: .lint,
                message: "e_entry \(hex(eEntry)) lies in executable sections \(names.joined(separator: " and ")); the first one, \(first), sets the entry (with 8652d44f466a's e_entry rule the kernel would WARN)")]
        }
    }
}
