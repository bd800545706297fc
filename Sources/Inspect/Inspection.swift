import Disassembly
import ELF
import Loader

/// What `inspect` reports: what the loader sees in an object, and where it will and will not load.
public struct Inspection: Codable, Sendable {
    public struct SectionInfo: Codable, Sendable {
        public var index: Int
        public var name: String
        public var type: UInt32
        public var flags: String
        public var size: UInt64
        public var align: UInt64
        /// Address at the inspected load address (SHF_ALLOC sections only).
        public var address: UInt64?
    }
    public struct RelocationCount: Codable, Sendable, Equatable {
        public var section: String
        public var type: String
        public var number: UInt32
        public var count: Int
    }
    public struct ABISymbol: Codable, Sendable {
        public var role: String
        public var name: String
        public var present: Bool
        public var section: String?
        public var offset: UInt64?
        public var size: UInt64?
        public var address: UInt64?
    }
    public struct Entry: Codable, Sendable {
        public var rule: String
        public var address: UInt64
        public var source: String
    }
    public struct Range: Codable, Sendable, Equatable {
        public var low: UInt64
        public var high: UInt64
        public init(low: UInt64, high: UInt64) { self.low = low; self.high = high }
    }
    public struct Lint: Codable, Sendable {
        public var kind: String
        public var message: String
        /// For overflow lints: the lowest aligned load address at which this relocation fails.
        public var failsFrom: UInt64?
        enum CodingKeys: String, CodingKey { case kind, message, failsFrom = "fails_from" }
    }

    public var file: String
    public var loader: String
    public var abi: String
    public var fileType: String
    public var loadAddress: UInt64
    public var bufAlign: UInt64
    public var bufsz: UInt64
    public var bssSize: UInt64
    public var memsz: UInt64
    public var segmentSize: UInt64
    public var sections: [SectionInfo]
    public var relocations: [RelocationCount]
    public var abiSymbols: [ABISymbol]
    public var entries: [Entry]
    /// buf_align-aligned load addresses (≥ 0x3000) at which every relocation applies.
    public var loadsCleanly: [Range]
    /// Why it never loads, when that does not depend on the address.
    public var neverLoads: String?
    /// The lowest aligned load address at or above 0x3000 that fails, if any.
    public var lowestFailingAddress: UInt64?
    /// The result of a real load at `loadAddress`: nil if it loads, else the loader's message.
    public var loadError: String?
    public var kernelLog: [String]
    public var diagnostics: [String]
    public var lints: [Lint]
    /// How the object was found inside a vmlinux, bzImage or kexec binary (empty for a plain object).
    public var container: [String] = []

    enum CodingKeys: String, CodingKey {
        case file, loader, abi, sections, relocations, entries, lints, diagnostics, container
        case fileType = "file_type", loadAddress = "load_address", bufAlign = "buf_align", bufsz
        case bssSize = "bss_size", memsz, segmentSize = "segment_size", abiSymbols = "abi_symbols"
        case loadsCleanly = "loads_cleanly", neverLoads = "never_loads", lowestFailingAddress = "lowest_failing_address"
        case loadError = "load_error", kernelLog = "kernel_log"
    }
}
