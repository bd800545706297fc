import Disassembly
import ELF
import Loader

/// Looks at an object the way its loader will, without running it.
public struct Inspector: Sendable {
    public var file: ELFFile
    public var kind: LoaderKind
    public var entryRule: EntryRule
    public var abi: PurgatoryABI

    public init(file: ELFFile, kind: LoaderKind = .kexecFile, entryRule: EntryRule = .symbol, abi: PurgatoryABI? = nil) {
        self.file = file
        self.kind = kind
        self.entryRule = entryRule
        self.abi = abi ?? .default(for: kind)
    }

    /// x86-64 physical addresses have at most 52 bits: the kernel can place nothing higher.
    public static let physicalLimit: UInt64 = 1 << 52

    /// GOT- and PLT-relative types: they need a table no purgatory loader builds.
    static let tableRelative: Set<UInt32> = [3, 9, 25, 26, 27, 28, 29, 30, 31, 41, 42]

    /// Inspects for a buffer placed at `address` (nil: the lowest address the loader accepts).
    public func inspect(at requested: UInt64? = nil) throws(ELFError) -> Inspection {
        let loader = AnyLoader(file: file, kind: kind, entryRule: entryRule)
        let layout = loader.setupBuffer()
        let align = max(layout.bufAlign, 1)
        // The lowest aligned address ≥ 0x3000 (none when the alignment pushes it past 2^64).
        let rounded = PurgatoryLoader.minimumAddress.addingReportingOverflow(align - 1)
        let lowestAligned: UInt64? = rounded.overflow ? nil : rounded.partialValue / align * align
        let lowest = lowestAligned ?? PurgatoryLoader.minimumAddress
        let address = requested ?? lowest
        var report = Inspection(
            file: file.name, loader: kind.rawValue, abi: abi.name, fileType: Self.typeName(file.header.type),
            loadAddress: address, bufAlign: layout.bufAlign, bufsz: layout.bufsz, bssSize: layout.bssSize,
            memsz: layout.memsz, segmentSize: layout.segmentSize, sections: [], relocations: [], abiSymbols: [],
            entries: [], loadsCleanly: [], kernelLog: [], diagnostics: [], lints: [])

        // Phase 1 first: without a buffer nothing else of the loader runs, at any address.
        var bufferRefusal: LoadError?
        do throws(LoadFailure) { _ = try loader.prepareBuffer() } catch {
            switch error {
            case .malformed(let e): throw e
            case .refused(let e): bufferRefusal = e
            }
        }
        // Where the whole segment fits below the physical limit (nil: nowhere).
        let domainTop: UInt64? = layout.segmentSize <= Self.physicalLimit && layout.segmentSize > 0
            ? Self.physicalLimit - layout.segmentSize : nil
        let placeable = lowestAligned.flatMap { low in domainTop.map { low <= $0 } } ?? false

        // The real load at the requested address: exactly what `run` would see.
        var placed: LoadedPurgatory?
        do throws(LoadFailure) {
            placed = try loader.load(at: address)
        } catch {
            switch error {
            case .malformed(let e): throw e
            case .refused(let e):
                report.loadError = e.message
                report.kernelLog = e.log
            }
        }
        // Sections as placed (without relocations, so a refusal does not hide them).
        if placed == nil, case .relocatable(let l) = loader {
            do throws(LoadFailure) { placed = try l.placeSections(at: address) } catch {
                if case .malformed(let e) = error { throw e }
            }
        }
        report.sections = file.sections.dropFirst().map { s in
            Inspection.SectionInfo(index: s.index, name: s.name, type: s.type, flags: Self.flags(s.flags), size: s.size,
                                   align: s.addralign, address: s.isAlloc ? placed?.sections[s.index].addr : nil)
        }
        report.diagnostics = placed?.diagnostics.map(\.description) ?? []
        report.relocations = try histogram()
        if let placed {
            report.abiSymbols = abiSymbols(placed)
            report.entries = try entries(address)
        }

        if let bufferRefusal {
            report.neverLoads = bufferRefusal.message
            report.lowestFailingAddress = lowest
        } else if !placeable {
            report.neverLoads = "the \(hex(layout.segmentSize))-byte segment aligned to \(hex(layout.bufAlign)) has no place between 0x3000 and 2^52 (the physical address limit)"
            report.lowestFailingAddress = lowestAligned
        } else if let top = domainTop {
            switch loader {
            case .relocatable(let l):
                try predictRange(l, layout: layout, lowest: lowest, top: top, into: &report)
            case .image:
                report.loadsCleanly = report.loadError == nil ? [.init(low: lowest, high: top)] : []
            }
        }
        try lint(&report, placed: placed)
        return report
    }

    // MARK: Pieces

    private func histogram() throws(ELFError) -> [Inspection.RelocationCount] {
        var counts: [Inspection.RelocationCount] = []
        for section in file.sections where section.type == ELFConstant.shtRela || section.type == ELFConstant.shtRel {
            let target = Int(section.info) < file.sections.count ? file.sections[Int(section.info)].name : "section \(section.info)"
            var byType: [UInt32: Int] = [:]
            for r in try file.relocations(in: section) { byType[r.type, default: 0] += 1 }
            for (type, count) in byType.sorted(by: { $0.key < $1.key }) {
                counts.append(.init(section: section.info == 0 ? section.name : target, type: X86_64Relocation.name(type),
                                    number: type, count: count))
            }
        }
        return counts
    }

    private func abiSymbols(_ placed: LoadedPurgatory) -> [Inspection.ABISymbol] {
        let roles = [("regions", abi.regions), ("digest", abi.digest), ("registers", abi.registers), ("stack", abi.stack)]
            + abi.options.map { ("option", $0) } + [("entry", "purgatory_start")]
        return roles.map { role, name in
            guard let symbol = placed.findSymbol(name) else { return .init(role: role, name: name, present: false) }
            let section = placed.sections[Int(symbol.shndx)]
            let address = placed.symbolAddress(name)
            return .init(role: role, name: name, present: true, section: section.name,
                         offset: address.map { $0 &- section.addr }, size: symbol.size, address: address)
        }
    }

    private func entries(_ address: UInt64) throws(ELFError) -> [Inspection.Entry] {
        guard kind == .kexecFile else {
            let loader = AnyLoader(file: file, kind: kind)
            guard let placed = try? loader.load(at: address) else { return [] }
            return [.init(rule: loader.entryRule.rawValue, address: placed.entry, source: placed.entrySource)]
        }
        return EntryRule.allCases.compactMap { rule in
            let loader = PurgatoryLoader(file: file, kind: kind, entryRule: rule)
            guard let placed = try? loader.placeSections(at: address) else { return nil }
            return .init(rule: rule.rawValue, address: placed.entry, source: placed.entrySource)
        }
    }

    /// Where every relocation fits: the intersection, over R_X86_64_32/32S, of the load
    /// addresses that keep each value in range; address-independent refusals end it early.
    private func predictRange(_ loader: PurgatoryLoader, layout: BufferLayout, lowest: UInt64, top: UInt64,
                              into report: inout Inspection) throws(ELFError) {
        let align = layout.bufAlign
        let domain = AddressSet(ranges: [lowest ... top])
        var valid = domain
        let probe: LoadedPurgatory
        do throws(LoadFailure) { probe = try loader.placeSections(at: lowest) } catch {
            if case .refused(let e) = error { report.neverLoads = e.message; report.lowestFailingAddress = lowest }
            return
        }
        var overflowLints: [Inspection.Lint] = []
        let symbolizer = self.symbolizer
        for (relocations, target) in loader.appliedRelocationSections() {
            let symtab = file.sections[Int(relocations.link)]
            let symbols = try file.symbols(in: symtab)
            for r in try file.relocations(in: relocations) {
                guard r.symbolIndex < symbols.count else { continue }
                let symbol = symbols[r.symbolIndex]
                guard X86_64Relocation.r32 == r.type || X86_64Relocation.r32s == r.type else {
                    if ![0, 1, 2, 4].contains(r.type) && report.neverLoads == nil {
                        report.neverLoads = "\(X86_64Relocation.name(r.type)) at \(target.name)+\(hex(r.offset)) is refused at every address"
                    }
                    continue
                }
                let base: UInt64
                switch probe.relocationBase(of: symbol, kind: kind) {
                case .failure(let failure):
                    if report.neverLoads == nil { report.neverLoads = failure.description }
                    continue
                case .success(let b): base = b
                }
                let value = symbol.value &+ base &+ UInt64(bitPattern: r.addend)
                let start: UInt64 = r.type == X86_64Relocation.r32 ? 0 : 0xffff_ffff_8000_0000
                let fits: AddressSet
                if symbol.shndx == ELFConstant.shnAbs {
                    fits = AddressSet.shiftedWindow(start: start, k: value).contains(0) ? .all : .none
                } else {
                    fits = AddressSet.shiftedWindow(start: start, k: value &- lowest)  // k = value - L at the probe
                }
                let mine = domain.intersection(fits)
                valid = valid.intersection(fits)
                if mine != domain {
                    let failsFrom = mine.firstExcluded(from: lowest, alignment: align)
                    let place = "\(target.name)+\(hex(r.offset))" + (symbolizer.name(target, r.offset).map { " (\($0))" } ?? "")
                    let range = failsFrom.map { "load addresses ≥ \(hex($0))" } ?? "some load addresses"
                    overflowLints.append(.init(kind: "overflow", message: "\(X86_64Relocation.name(r.type)) at \(place) overflows for \(range)", failsFrom: failsFrom))
                }
            }
        }
        if report.neverLoads != nil { valid = .none }
        report.loadsCleanly = valid.aligned(to: align).ranges.map { .init(low: $0.lowerBound, high: $0.upperBound) }
        // Failing only at the top of the address space (the segment would wrap) is not a finding.
        let alignedValid = valid.aligned(to: align), alignedDomain = domain.aligned(to: align)
        report.lowestFailingAddress = report.neverLoads != nil ? lowest
            : alignedValid == alignedDomain ? nil : alignedValid.firstExcluded(from: lowest, alignment: align)
        report.lints += overflowLints.sorted { ($0.failsFrom ?? 0) < ($1.failsFrom ?? 0) }
    }

    private func lint(_ report: inout Inspection, placed: LoadedPurgatory?) throws(ELFError) {
        let symbolize = symbolizer.name
        // GOT/PLT-relative relocations.
        for section in file.sections where section.type == ELFConstant.shtRela {
            let relocations = try file.relocations(in: section)
            let target = Int(section.info) < file.sections.count ? file.sections[Int(section.info)] : nil
            for type in Set(relocations.map(\.type)).sorted() where Self.tableRelative.contains(type) {
                let these = relocations.filter { $0.type == type }
                let first = these[0]
                let place = target.map { t in "\(t.name)+\(hex(first.offset))" + (symbolize(t, first.offset).map { " (\($0))" } ?? "") } ?? hex(first.offset)
                report.lints.append(.init(kind: "got-plt", message: "\(these.count) × \(X86_64Relocation.name(type)) (GOT/PLT-relative; no purgatory loader builds a GOT), first at \(place): declare extern data with hidden visibility"))
            }
        }
        // Vector instructions raise #UD with CR4.OSFXSR clear.
        if let decoder = Disassembler() {
            for section in file.sections where section.isExecutable && !section.isNobits {
                let code = Array(file.contents(of: section))
                let vector = decodeAll(decoder, code).filter(\.usesVectorRegisters)
                if let first = vector.first {
                    let place = "\(section.name)+\(hex(first.address))" + (symbolize(section, first.address).map { " (\($0))" } ?? "")
                    report.lints.append(.init(kind: "simd", message: "\(vector.count) SSE/AVX instruction\(vector.count == 1 ? "" : "s") in \(section.name), first \(first) at \(place): #UD in the kexec entry state (CR4.OSFXSR clear) if it runs; `run` reports that #UD when one executes"))
                }
            }
        }
        // ABI symbols.
        for symbol in report.abiSymbols where !symbol.present && symbol.role != "option" {
            report.lints.append(.init(kind: "abi", message: "no defined global \(symbol.name) (\(abi.name) ABI \(symbol.role)): the loader cannot \(symbol.role == "stack" ? "find the stack" : "set it")"))
        }
        // Several executable sections.
        let executable = file.sections.filter { $0.isAlloc && $0.isExecutable && $0.size > 0 }
        if executable.count > 1 {
            report.lints.append(.init(kind: "sections", message: "\(executable.count) executable sections (\(executable.map(\.name).joined(separator: ", "))): with the e_entry rule the first containing e_entry wins, and two trip the kernel's WARN"))
        }
    }

    /// Linear sweep that skips one byte past anything Capstone cannot decode: linear time,
    /// since each decode starts where the last stopped and never copies the rest of the code.
    private func decodeAll(_ decoder: Disassembler, _ code: [UInt8]) -> [Instruction] {
        var result: [Instruction] = []
        decoder.sweep(code) { result.append($0) }
        return result
    }

    /// `function+0x34` for offsets inside a section, from the file's symbols: built once per
    /// inspection (sorted per section), answered by binary search.
    private var symbolizer: Symbolizer { Symbolizer(file) }

    struct Symbolizer {
        /// Per section index: (offset in the section, name), sorted by offset, one name per offset.
        private var bySection: [Int: [(value: UInt64, name: String)]] = [:]

        init(_ file: ELFFile) {
            var best: [Int: [UInt64: (name: String, isFunction: Bool)]] = [:]
            for table in file.sections where table.type == ELFConstant.shtSymtab {
                guard let symbols = try? file.symbols(in: table) else { continue }
                for s in symbols where Int(s.shndx) < file.sections.count && !s.name.isEmpty && s.type <= 2 {
                    let section = file.sections[Int(s.shndx)]
                    let value = file.header.fileType == .relocatable ? s.value : s.value &- section.addr
                    // At one offset the first function wins, else the first name.
                    if let b = best[section.index]?[value], b.isFunction || s.type != 2 { continue }
                    best[section.index, default: [:]][value] = (s.name, s.type == 2)
                }
            }
            for (index, names) in best {
                bySection[index] = names.map { (value: $0.key, name: $0.value.name) }.sorted { $0.value < $1.value }
            }
        }

        func name(_ section: SectionHeader, _ offset: UInt64) -> String? {
            guard let entries = bySection[section.index] else { return nil }
            var low = 0, high = entries.count
            while low < high {
                let mid = (low + high) / 2
                if entries[mid].value <= offset { low = mid + 1 } else { high = mid }
            }
            guard low > 0 else { return nil }
            let best = entries[low - 1]
            return offset == best.value ? best.name : "\(best.name)+\(hex(offset - best.value))"
        }
    }

    static func typeName(_ type: UInt16) -> String {
        switch ELFConstant.FileType(rawValue: type) {
        case .relocatable: "ET_REL"
        case .executable: "ET_EXEC"
        case .sharedObject: "ET_DYN"
        case .core: "ET_CORE"
        default: "e_type \(type)"
        }
    }

    static func flags(_ flags: UInt64) -> String {
        (flags & ELFConstant.shfWrite != 0 ? "W" : "") + (flags & ELFConstant.shfAlloc != 0 ? "A" : "")
            + (flags & ELFConstant.shfExecInstr != 0 ? "X" : "")
    }
}
