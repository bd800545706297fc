import ELF
import Foundation
import Run

/// Paths and objects the tests share: real purgatories built from Purgatories/.
enum Fixtures {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()
    static let referencePath = repository.appendingPathComponent("Purgatories/reference/purgatory.ro").path

    static let referenceBytes: [UInt8] = [UInt8](FileManager.default.contents(atPath: referencePath) ?? Data())

    static func reference() throws -> ELFFile { try ELFFile(bytes: referenceBytes, name: "purgatory.ro") }

    /// The last generation whose exceptions triple-fault (no IDT at entry): a fault is `fault`.
    static let tripleFaultKernel = KernelProfile(name: "linux-6.13", version: KernelVersion(6, 13))

    /// The built command-line tool, next to the test bundle.
    static var executable: URL {
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0 ..< 4 {
            let candidate = dir.appendingPathComponent("purgatory-harness")
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        return repository.appendingPathComponent(".build/debug/purgatory-harness")
    }

    struct Output {
        var status: Int32
        /// Standard output as bytes (compressors write binary), and as text.
        var bytes: [UInt8]
        var stderr: String
        var stdout: String { String(decoding: bytes, as: UTF8.self) }
    }

    /// Runs the tool with `arguments` (and `environment` added to this process's); returns its exit status and output.
    static func harness(_ arguments: [String], environment: [String: String] = [:]) throws -> Output {
        try launch(executable, arguments, environment: environment)
    }

    /// Runs a program to completion, collecting both streams.
    static func launch(_ program: URL, _ arguments: [String], environment: [String: String] = [:]) throws -> Output {
        let process = Process()
        process.executableURL = program
        process.arguments = arguments
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Output(status: process.terminationStatus, bytes: [UInt8](stdout), stderr: String(decoding: stderr, as: UTF8.self))
    }

    static func temporaryFile(_ bytes: [UInt8], name: String = UUID().uuidString) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("ph-\(name)").path
        guard FileManager.default.createFile(atPath: path, contents: Data(bytes)) else {
            throw CocoaError(.fileWriteUnknown)
        }
        return path
    }
}

/// Builds small ET_REL x86-64 objects for loader rules no compiler emits on demand.
/// Sections are numbered from 1 in the order added; .symtab, .strtab and .shstrtab
/// and one .rela section per relocated section follow them.
struct ELFBuilder {
    struct Section {
        var name: String
        var type: UInt32 = 1 // PROGBITS
        var flags: UInt64 = 0x2 // ALLOC
        var align: UInt64 = 16
        var data: [UInt8] = []
        var nobitsSize: UInt64 = 0
        var link: UInt32 = 0
        var info: UInt32 = 0
        var entsize: UInt64 = 0
    }
    struct Sym { var name: String; var info: UInt8; var shndx: UInt16; var value: UInt64; var size: UInt64 }
    struct Rela { var offset: UInt64; var symbol: Int; var type: UInt32; var addend: Int64 }

    var entry: UInt64 = 0
    var type: UInt16 = 1
    var sections: [Section] = []
    /// Index 0 is the null symbol, added automatically.
    var symbols: [Sym] = []
    var relocations: [Int: [Rela]] = [:]
    /// Overrides for .rela sections' sh_info/sh_link/sh_type, keyed by target section.
    var relaOverrides: [Int: (info: UInt32?, link: UInt32?, type: UInt32?)] = [:]

    @discardableResult
    mutating func add(_ section: Section) -> Int { sections.append(section); return sections.count }

    /// Adds a symbol; returns its index in .symtab (locals must be added before globals by the caller).
    @discardableResult
    mutating func symbol(_ name: String, global: Bool = true, type: UInt8 = 0, section: UInt16, value: UInt64 = 0, size: UInt64 = 0) -> Int {
        symbols.append(Sym(name: name, info: (global ? 1 : 0) << 4 | type, shndx: section, value: value, size: size))
        return symbols.count
    }

    mutating func rela(_ section: Int, offset: UInt64, symbol: Int, type: UInt32, addend: Int64 = 0) {
        relocations[section, default: []].append(Rela(offset: offset, symbol: symbol, type: type, addend: addend))
    }

    func build() -> [UInt8] {
        var all = sections
        let symtabIndex = all.count + 1
        let strtabIndex = all.count + 2
        var strtab: [UInt8] = [0]
        var symtab = [UInt8](repeating: 0, count: 24)
        let firstGlobal = 1 + (symbols.firstIndex { $0.info >> 4 != 0 } ?? symbols.count)
        for sym in symbols {
            let nameOffset = sym.name.isEmpty ? 0 : UInt32(strtab.count)
            if !sym.name.isEmpty { strtab += Array(sym.name.utf8) + [0] }
            symtab += le(nameOffset) + [sym.info, 0] + le(sym.shndx) + le(sym.value) + le(sym.size)
        }
        all.append(Section(name: ".symtab", type: 2, flags: 0, align: 8, data: symtab, link: UInt32(strtabIndex),
                           info: UInt32(firstGlobal), entsize: 24))
        all.append(Section(name: ".strtab", type: 3, flags: 0, align: 1, data: strtab))
        for target in relocations.keys.sorted() {
            var data: [UInt8] = []
            for r in relocations[target]! { data += le(r.offset) + le(UInt64(r.symbol) << 32 | UInt64(r.type)) + le(UInt64(bitPattern: r.addend)) }
            let o = relaOverrides[target]
            all.append(Section(name: ".rela" + sections[target - 1].name, type: o?.type ?? 4, flags: 0x40, align: 8, data: data,
                               link: o?.link ?? UInt32(symtabIndex), info: o?.info ?? UInt32(target), entsize: 24))
        }
        var shstrtab: [UInt8] = [0]
        var nameOffsets: [UInt32] = []
        for s in all { nameOffsets.append(UInt32(shstrtab.count)); shstrtab += Array(s.name.utf8) + [0] }
        nameOffsets.append(UInt32(shstrtab.count)); shstrtab += Array(".shstrtab".utf8) + [0]
        all.append(Section(name: ".shstrtab", type: 3, flags: 0, align: 1, data: shstrtab))

        var file = [UInt8](repeating: 0, count: 64)
        var offsets: [UInt64] = []
        for s in all {
            while file.count % 16 != 0 { file.append(0) }
            offsets.append(UInt64(file.count))
            if s.type != 8 { file += s.data }
        }
        while file.count % 8 != 0 { file.append(0) }
        let shoff = UInt64(file.count)
        file += [UInt8](repeating: 0, count: 64) // null section
        for (i, s) in all.enumerated() {
            let size = s.type == 8 ? s.nobitsSize : UInt64(s.data.count)
            file += le(nameOffsets[i]) + le(s.type) + le(s.flags) + le(UInt64(0)) + le(offsets[i]) + le(size)
                + le(s.link) + le(s.info) + le(s.align) + le(s.entsize)
        }
        let header: [UInt8] = [0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0] + [UInt8](repeating: 0, count: 8)
            + le(type) + le(UInt16(62)) + le(UInt32(1)) + le(entry) + le(UInt64(0)) + le(shoff)
            + le(UInt32(0)) + le(UInt16(64)) + le(UInt16(0)) + le(UInt16(0)) + le(UInt16(64))
            + le(UInt16(all.count + 1)) + le(UInt16(all.count))
        file.replaceSubrange(0 ..< 64, with: header)
        return file
    }
}

func le<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
    (0 ..< MemoryLayout<T>.size).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) }
}

extension Fixtures {
    static let containersPath = repository.appendingPathComponent("Purgatories/containers").path

    /// Runs a system tool and returns its standard output; throws with its stderr when it fails.
    static func tool(_ arguments: [String]) throws -> [UInt8] {
        let result = try launch(URL(fileURLWithPath: "/usr/bin/env"), arguments)
        guard result.status == 0 else {
            throw ToolFailure(message: "\(arguments.joined(separator: " ")): exit \(result.status): \(result.stderr)")
        }
        return result.bytes
    }

    struct ToolFailure: Error, CustomStringConvertible { var message: String; var description: String { message } }

    /// A minimal bzImage around `payload`: 4 setup sectors with a boot protocol 2.15 setup header,
    /// a 0x100-byte stand-in for the decompressor, the payload, and a 0x40-byte tail.
    static func bzImage(payload: [UInt8], initSize: UInt32 = 0x20_0000, xloadFlags: UInt16 = 0x7f, version: UInt16 = 0x020f) -> [UInt8] {
        var image = [UInt8](repeating: 0, count: 5 * 512)
        func put(_ bytes: [UInt8], _ at: Int) { image.replaceSubrange(at ..< at + bytes.count, with: bytes) }
        image[0x1f1] = 4                                // setup_sects
        put([0x55, 0xaa], 0x1fe)                        // boot_flag
        put([0xeb, 0x6a], 0x200)                        // jmp past the header (to 0x26c)
        put(Array("HdrS".utf8), 0x202)
        put(le(version), 0x206)
        image[0x211] = 0x01                             // LOADED_HIGH
        put(le(UInt32(0x20_0000)), 0x230)               // kernel_alignment
        image[0x234] = 1                                // relocatable_kernel
        put(le(xloadFlags), 0x236)
        put(le(UInt32(2047)), 0x238)                    // cmdline_size
        put(le(UInt32(0x100)), 0x248)                   // payload_offset
        put(le(UInt32(payload.count)), 0x24c)           // payload_length
        put(le(UInt64(0x100_0000)), 0x258)              // pref_address
        put(le(initSize), 0x260)
        return image + [UInt8](repeating: 0xcc, count: 0x100) + payload + [UInt8](repeating: 0x90, count: 0x40)
    }
}

/// The real purgatories scripts/fetch-debian-purgatories puts in its cache. Missing files are a
/// test failure, never a skip: CI downloads them, and so does scripts/install-deps.
enum DebianArtifacts {
    struct Entry { var file: String; var package: String; var version: String; var sha256: String; var path: String }

    static var cache: String {
        let environment = ProcessInfo.processInfo.environment
        if let path = environment["PURGATORY_HARNESS_CACHE"], !path.isEmpty { return path }
        let base = environment["XDG_CACHE_HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? (NSHomeDirectory() + "/.cache")
        return base + "/purgatory-harness/debian"
    }

    struct Missing: Error, CustomStringConvertible {
        var description: String
    }

    static func manifest() throws -> [Entry] {
        guard let text = FileManager.default.contents(atPath: cache + "/MANIFEST") else {
            throw Missing(description: "\(cache)/MANIFEST not found: run scripts/fetch-debian-purgatories (scripts/install-deps does)")
        }
        return String(decoding: text, as: UTF8.self).split(separator: "\n").map { line in
            let f = line.split(separator: " ").map(String.init)
            return Entry(file: f[0], package: f[1], version: f[2], sha256: f[3], path: cache + "/" + f[0])
        }
    }

    static func kernels() throws -> [Entry] {
        let kernels = try manifest().filter { $0.file.hasPrefix("vmlinuz-") }
        guard !kernels.isEmpty else { throw Missing(description: "\(cache)/MANIFEST lists no kernel") }
        return kernels
    }

    static func entry(_ file: String) throws -> Entry {
        guard let entry = try manifest().first(where: { $0.file == file }) else {
            throw Missing(description: "\(cache)/MANIFEST lists no \(file)")
        }
        return entry
    }

    /// The newest kernel: what the `vmlinuz` link points at.
    static func newestKernel() throws -> Entry {
        let target = try FileManager.default.destinationOfSymbolicLink(atPath: cache + "/vmlinuz")
        guard let entry = try kernels().first(where: { $0.file == target }) else { throw Missing(description: "vmlinuz → \(target) is not in MANIFEST") }
        return entry
    }
}
