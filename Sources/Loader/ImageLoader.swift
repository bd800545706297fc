import ELF

/// Loads a fully linked purgatory (ET_DYN from `ld -pie --no-dynamic-linker`, or ET_EXEC)
/// the simple way a boot loader would: copy each PT_LOAD at its offset from the lowest one,
/// add the load bias to every R_X86_64_RELATIVE, and refuse any other dynamic relocation by
/// name. No kernel loads such an image today; this answers "would it run if one did?".
public struct ImageLoader: Sendable {
    public let file: ELFFile

    public init(file: ELFFile) { self.file = file }

    var loads: [ProgramHeader] { file.programHeaders.filter { $0.type == ELFConstant.ptLoad && $0.memsz > 0 } }

    /// Lowest PT_LOAD address rounded down to a page: the image's link-time base.
    var linkBase: UInt64 { (loads.map(\.vaddr).min() ?? 0) & ~(pageSize - 1) }

    public func setupBuffer() -> BufferLayout {
        let base = linkBase
        let memEnd = loads.map { $0.vaddr &+ $0.memsz }.max() ?? base
        let fileEnd = loads.map { $0.vaddr &+ $0.filesz }.max() ?? base
        let align = loads.map(\.align).max() ?? 1
        return BufferLayout(bufAlign: max(align, pageSize), bufsz: fileEnd &- base, bssAlign: 1,
                            bssSize: memEnd &- fileEnd, memsz: memEnd &- base)
    }

    /// The buffer's checks: PT_LOAD segments that span a non-empty, bounded, unwrapped range.
    public func allocateBuffer(_ layout: BufferLayout) throws(LoadFailure) -> BufferLayout {
        let base = linkBase
        let spans = loads.allSatisfy { !$0.vaddr.addingReportingOverflow($0.memsz).overflow && $0.vaddr >= base }
        guard spans, layout.memsz > 0, layout.memsz <= PurgatoryLoader.maximumBufferSize, layout.bufsz <= layout.memsz else {
            throw .malformed(ELFError(file: file.name, structure: "fully linked image",
                reason: "PT_LOAD segments span \(hex(layout.memsz)) bytes from \(hex(base)); the harness loads 1 byte to \(hex(PurgatoryLoader.maximumBufferSize)) without wrapping"))
        }
        return layout
    }

    public func load(at address: UInt64) throws(LoadFailure) -> LoadedPurgatory {
        let what = "fully linked image"
        guard file.header.fileType == .sharedObject || file.header.fileType == .executable else {
            throw .malformed(ELFError(file: file.name, structure: "ELF header",
                reason: "e_type \(file.header.type) is not ET_DYN or ET_EXEC: the image loader takes a linked purgatory"))
        }
        guard !loads.isEmpty else {
            throw .malformed(ELFError(file: file.name, structure: what, reason: "no PT_LOAD segment"))
        }
        let layout = try allocateBuffer(setupBuffer())
        let base = linkBase
        guard address % layout.bufAlign == 0, address >= PurgatoryLoader.minimumAddress,
              !address.addingReportingOverflow(layout.segmentSize).overflow else {
            throw .malformed(ELFError(file: file.name, structure: "load address \(hex(address))",
                reason: "must be ≥ 0x3000 and aligned to \(hex(layout.bufAlign)), with room for \(hex(layout.segmentSize)) bytes"))
        }
        var buffer = [UInt8](repeating: 0, count: Int(layout.bufsz))
        for segment in loads {
            // Bounded by allocateBuffer (vaddr - base + filesz <= bufsz <= 1 GiB) and by the ELF reader.
            let at = Int(segment.vaddr - base)
            guard let source = ELFFile.fileRangeChecked(segment.offset, segment.filesz, in: file.bytes.count),
                  at + source.count <= buffer.count else {
                throw .malformed(ELFError(file: file.name, structure: "program header \(segment.index)",
                                          reason: "file bytes [\(hex(segment.offset)), +\(hex(segment.filesz))) do not fit the image"))
            }
            buffer.replaceSubrange(at ..< at + source.count, with: file.bytes[source])
        }
        let bias = address &- base
        var sections = file.sections
        for i in sections.indices where sections[i].isAlloc {
            sections[i].offset = sections[i].addr &- base
            sections[i].addr = sections[i].addr &+ bias
        }
        var diagnostics: [Diagnostic] = []
        if file.header.fileType == .executable && bias != 0 {
            diagnostics.append(Diagnostic(kind: .lint, message: "ET_EXEC linked at \(hex(base)) loaded at \(hex(address)): its absolute references still point at the link address"))
        }
        var loaded = LoadedPurgatory(file: file, kind: .image, layout: layout, loadAddress: address, buffer: buffer,
                                     sections: sections, entry: file.header.entry &+ bias,
                                     entrySource: "e_entry \(hex(file.header.entry)) + bias \(hex(bias))",
                                     diagnostics: diagnostics)
        loaded.image = (bias, base)
        try applyRelative(&loaded, base: base, bias: bias)
        return loaded
    }

    /// R_X86_64_RELATIVE: B + A at each r_offset; nothing else is supported.
    private func applyRelative(_ loaded: inout LoadedPurgatory, base: UInt64, bias: UInt64) throws(LoadFailure) {
        for section in file.sections where section.type == ELFConstant.shtRela || section.type == ELFConstant.shtRel {
            let relocations: [Relocation]
            do throws(ELFError) { relocations = try file.relocations(in: section) } catch { throw .malformed(error) }
            for r in relocations where r.type != X86_64Relocation.none {
                guard r.type == X86_64Relocation.relative, section.type == ELFConstant.shtRela else {
                    throw .refused(LoadError(log: ["image loader: \(X86_64Relocation.name(r.type)) at \(hex(r.offset)) in \(section.name): only R_X86_64_RELATIVE (in SHT_RELA) is applied"]))
                }
                let at = r.offset &- base
                guard r.offset >= base, at <= UInt64(loaded.buffer.count), UInt64(loaded.buffer.count) - at >= 8 else {
                    throw .malformed(ELFError(file: file.name, structure: "relocation section \(section.label) entry \(r.index)",
                        reason: "R_X86_64_RELATIVE at \(hex(r.offset)) lies outside the loaded file bytes"))
                }
                let value = bias &+ UInt64(bitPattern: r.addend)
                loaded.buffer.replaceSubrange(Int(at) ..< Int(at) + 8, with: littleEndianBytes(value))
            }
        }
    }
}

/// The two ways into a LoadedPurgatory, behind one face for the scenario and inspect.
public enum AnyLoader: Sendable {
    case relocatable(PurgatoryLoader)
    case image(ImageLoader)

    public init(file: ELFFile, kind: LoaderKind, entryRule: EntryRule = .symbol) {
        self = kind == .image ? .image(ImageLoader(file: file)) : .relocatable(PurgatoryLoader(file: file, kind: kind, entryRule: entryRule))
    }

    public func setupBuffer() -> BufferLayout {
        switch self {
        case .relocatable(let l): l.setupBuffer()
        case .image(let l): l.setupBuffer()
        }
    }

    /// Phase 1 whole: the layout, and whether the loader can get a buffer for it (see
    /// `PurgatoryLoader.allocateBuffer`). Nothing that needs a non-empty segment runs before it.
    public func prepareBuffer() throws(LoadFailure) -> BufferLayout {
        switch self {
        case .relocatable(let l): try l.allocateBuffer(l.setupBuffer())
        case .image(let l): try l.allocateBuffer(l.setupBuffer())
        }
    }

    public func load(at address: UInt64) throws(LoadFailure) -> LoadedPurgatory {
        switch self {
        case .relocatable(let l): try l.load(at: address)
        case .image(let l): try l.load(at: address)
        }
    }

    /// The entry rule in force ("e_entry" for kexec-tools and images).
    public var entryRule: EntryRule {
        switch self {
        case .relocatable(let l): l.entryRule
        case .image: .eEntry
        }
    }
}
