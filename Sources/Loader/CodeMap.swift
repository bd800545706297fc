import ELF

/// The purgatory's executable bytes cut into functions at their relocated addresses: what
/// instruction counts are attributed to. Every byte of every executable section belongs to
/// exactly one function, so nothing the purgatory runs can go unattributed.
///
/// Owner of an address: the sized code symbol (FUNC, or NOTYPE with st_size — the kernel's
/// SYM_CODE_START/END) covering it, the innermost if several do; else the nearest label before
/// it in its section if that label is unsized (an assembly label); else the section itself,
/// named "(.text)" (padding after a function). Unsized labels inside a sized function (the
/// kernel's `new_cs_exit`) stay part of it.
public struct CodeMap: Sendable, Equatable {
    public struct Function: Sendable, Equatable {
        /// The symbol's name; "#2", "#3" appended when another function of the file has the same name
        /// (statics of different files); "(.text)" for bytes no symbol covers.
        public var name: String
        /// Relocated address of the symbol (or of the section for a "(section)" function).
        public var address: UInt64
        public var section: String
        public var isSymbol: Bool
    }
    /// A piece of one function: [start, end), sorted and disjoint across the map.
    public struct Piece: Sendable, Equatable {
        public var start: UInt64
        public var end: UInt64
        public var function: Int
    }

    public let functions: [Function]
    public let pieces: [Piece]

    public init(functions: [Function], pieces: [Piece]) {
        self.functions = functions
        self.pieces = pieces
    }

    /// Index of the piece holding `address`, nil outside every executable section.
    public func pieceIndex(_ address: UInt64) -> Int? {
        var low = 0, high = pieces.count
        while low < high {
            let mid = (low + high) / 2
            if pieces[mid].start <= address { low = mid + 1 } else { high = mid }
        }
        return low > 0 && address < pieces[low - 1].end ? low - 1 : nil
    }

    /// The function holding `address`, nil outside every executable section.
    public func function(at address: UInt64) -> Int? { pieceIndex(address).map { pieces[$0].function } }

    /// `name+0xoff` relative to the function's own address.
    public func symbolize(_ address: UInt64) -> String? {
        guard let f = function(at: address) else { return nil }
        let offset = address &- functions[f].address
        return offset == 0 ? functions[f].name : "\(functions[f].name)+0x\(String(offset, radix: 16))"
    }
}

extension LoadedPurgatory {
    /// The functions of every SHF_ALLOC | SHF_EXECINSTR section, at this load's addresses.
    public func codeMap() -> CodeMap {
        struct Label { var name: String; var start: UInt64; var size: UInt64; var isFunction: Bool }
        var functions: [CodeMap.Function] = []
        var pieces: [CodeMap.Piece] = []
        var byKey: [String: Int] = [:]  // "name@address" → function index
        let executable = sections.prefix(shnum).filter { $0.isAlloc && $0.isExecutable && $0.size > 0 }
            .sorted { $0.addr < $1.addr }
        var labels: [Int: [Label]] = [:]  // by section index
        for table in sections.prefix(shnum) where table.type == ELFConstant.shtSymtab {
            guard Int(table.link) < shnum, let symbols = try? file.symbols(in: table) else { continue }
            for symbol in symbols where !symbol.name.isEmpty && (symbol.type == 0 || symbol.type == 2) {
                guard symbol.shndx != ELFConstant.shnUndef, Int(symbol.shndx) < shnum else { continue }
                let section = sections[Int(symbol.shndx)]
                guard section.isAlloc, section.isExecutable else { continue }
                labels[Int(symbol.shndx), default: []].append(
                    Label(name: symbol.name, start: address(of: symbol), size: symbol.size, isFunction: symbol.type == 2))
            }
        }
        // The innermost (latest start) first; at one address a FUNC before a NOTYPE, then by name.
        func preferred(_ a: Label, _ b: Label) -> Bool {
            if a.start != b.start { return a.start > b.start }
            if a.isFunction != b.isFunction { return a.isFunction }
            return a.name < b.name
        }
        for section in executable {
            let start = section.addr, end = section.addr &+ section.size
            let mine = (labels[section.index] ?? []).filter { $0.start >= start && $0.start < end }
            var cuts = Set([start, end])
            for l in mine {
                cuts.insert(l.start)
                if l.size > 0 { cuts.insert(min(l.start &+ l.size, end)) }
            }
            let points = cuts.sorted()
            let sized = mine.filter { $0.size > 0 }
            let candidates = sized + mine.filter { l in
                l.size == 0 && !sized.contains { $0.start <= l.start && l.start < $0.start &+ $0.size }
            }
            for (low, high) in zip(points, points.dropFirst()) {
                let covering = mine.filter { $0.size > 0 && $0.start <= low && low < $0.start &+ $0.size }
                // Past the end of a sized function and before any label of its own: nobody's
                // ("(.text)"). Labels inside a sized function belong to it and own nothing beyond.
                let nearest = candidates.filter { $0.start <= low }.min(by: preferred)
                let owner = covering.min(by: preferred) ?? nearest.flatMap { $0.size == 0 ? $0 : nil }
                let key = owner.map { "\($0.name)@\($0.start)" } ?? "(\(section.name))@\(start)"
                let index: Int
                if let known = byKey[key] {
                    index = known
                } else {
                    index = functions.count
                    byKey[key] = index
                    functions.append(owner.map { .init(name: $0.name, address: $0.start, section: section.name, isSymbol: true) }
                                     ?? .init(name: "(\(section.name))", address: start, section: section.name, isSymbol: false))
                }
                if let last = pieces.last, last.function == index, last.end == low {
                    pieces[pieces.count - 1].end = high
                } else {
                    pieces.append(.init(start: low, end: high, function: index))
                }
            }
        }
        // Distinct names, so that counts can be matched by name across files.
        var seen: [String: Int] = [:]
        for i in functions.indices {
            let count = seen[functions[i].name, default: 0] + 1
            seen[functions[i].name] = count
            if count > 1 { functions[i].name += "#\(count)" }
        }
        return CodeMap(functions: functions, pieces: pieces)
    }
}
