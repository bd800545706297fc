import Containers
import ELF
import Loader
import Machine

/// One kexec segment: `data` (the kernel's bufsz bytes) followed by zeros up to `memsz`.
public struct Segment: Sendable {
    public var name: String
    public var start: UInt64
    public var data: [UInt8]
    /// Page-rounded, as kexec_add_buffer leaves it; the digest covers all of it.
    public var memsz: UInt64
    public var end: UInt64 { start + memsz }
}

/// What bzImage64_load asks kexec_add_buffer for, before placement.
public struct SegmentRequest: Sendable {
    public var name: String
    public var data: [UInt8]
    public var memsz: UInt64
    public var alignment: UInt64
    public var minimum: UInt64

    public init(name: String, data: [UInt8], memsz: UInt64? = nil, alignment: UInt64, minimum: UInt64) {
        self.name = name
        self.data = data
        self.memsz = kernelAlign(max(memsz ?? 0, UInt64(data.count)), pageSize)
        self.alignment = max(alignment, pageSize)
        self.minimum = minimum
    }
}

/// The segments of a bzImage64 load (kexec-purgatory-facts §5), synthesized from a seed
/// or taken from the user's files.
public struct SegmentPlan: Sendable {
    public var kernel: [UInt8]?
    /// A real kernel: the segments are laid out from its setup header as bzImage64_load does.
    public var bzImage: BzImage?
    /// How messages name the kernel (its path, for `run --kernel`).
    public var kernelName = "kernel"
    public var initrd: [UInt8]?
    public var kernelSize = 16 * 1024
    /// The kernel's in-memory size (its setup header's init_size) is larger than the file: the tail is zeros.
    public var kernelMemsz: Int?
    public var initrdSize = 8 * 1024
    public var commandLine = "console=ttyS0,115200n8 purgatory-harness"
    public var kernelAlignment: UInt64 = 0x20_0000

    public init() {}

    /// bzImage64_load's lower bounds (arch/x86/kernel/kexec-bzImage64.c).
    static let minimumBootParamsAddress: UInt64 = 0x1000
    static let minimumKernelAddress: UInt64 = 0x10_0000
    static let minimumInitrdAddress: UInt64 = 0x100_0000
    /// sizeof(struct boot_params): the command line follows it in the same segment.
    static let bootParamsSize = 0x1000

    /// Offsets in struct boot_params of the fields bzImage64_load writes (and the report reads back).
    enum Field {
        static let setupHeader = 0x1f1, version = 0x206, typeOfLoader = 0x210, loadFlags = 0x211
        static let commandLine = 0x228, commandLineHigh = 0x0c8
        static let ramdiskImage = 0x218, ramdiskSize = 0x21c, ramdiskImageHigh = 0x0c0, ramdiskSizeHigh = 0x0c4
        static let e820Entries = 0x1e8, e820Table = 0x2d0, e820EntrySize = 20, e820MaxEntries = 128
    }

    /// What bzImage64's probe and the start of its load refuse, before the purgatory is loaded.
    func check() throws(HarnessError) {
        guard let image = bzImage else { return }
        if let refusal = image.refusalToLoad() {
            throw .input("\(kernelName): bzImage setup header", "kexec_file's bzImage64 probe would refuse it: \(refusal)")
        }
        let commandLineLength = commandLine.utf8.count + 1
        guard commandLineLength <= Int(image.commandLineSize) else {
            throw .input("kernel command line", "\(commandLineLength) bytes with its NUL, longer than the kernel's cmdline_size \(image.commandLineSize)")
        }
    }

    /// Boot params (struct boot_params, 4 KiB, then the command line), the protected-mode
    /// kernel, and the initrd, in the order bzImage64_load adds them.
    func requests(_ seed: UInt64) -> [SegmentRequest] {
        var content = SplitMix64.stream(seed, "segment-content")
        var params = [UInt8](repeating: 0, count: Self.bootParamsSize)
        let kernelRequest: SegmentRequest
        if let image = bzImage {
            // "Copy setup header onto bootparams": struct boot_params.hdr sits at 0x1f1 like in the file.
            params.replaceSubrange(Field.setupHeader ..< Field.setupHeader + image.setupHeader.count, with: image.setupHeader)
            let minimum = max(image.preferredAddress, Self.minimumKernelAddress)
            kernelRequest = SegmentRequest(name: "kernel", data: Array(image.bytes[image.protectedModeOffset...]),
                                           memsz: UInt64(image.initSize), alignment: UInt64(image.kernelAlignment), minimum: minimum)
        } else {
            params.replaceSubrange(0x202 ..< 0x206, with: Array("HdrS".utf8))  // setup header magic, for the look of it
            let kernel = self.kernel ?? content.bytes(kernelSize)
            kernelRequest = SegmentRequest(name: "kernel", data: kernel, memsz: kernelMemsz.map(UInt64.init) ?? UInt64(kernel.count) * 3 / 2,
                                           alignment: kernelAlignment, minimum: Self.minimumKernelAddress)
        }
        params += Array(commandLine.utf8) + [0]
        let initrd = self.initrd ?? content.bytes(initrdSize)
        var result = [SegmentRequest(name: "boot-params", data: params, alignment: 16, minimum: Self.minimumBootParamsAddress), kernelRequest]
        if !initrd.isEmpty {
            result.append(SegmentRequest(name: "initrd", data: initrd, alignment: pageSize, minimum: Self.minimumInitrdAddress))
        }
        return result
    }

    /// What bzImage64_load writes into boot params once the segments have addresses: the loader
    /// type, cleared loadflags, the command line and initrd pointers (split into the header's
    /// low 32 bits and the ext_ fields' high 32), and an e820 map of the emulated machine's RAM.
    static func completeBootParams(_ segments: inout [Segment], ram: [ClosedRange<UInt64>]) {
        guard segments.count >= 2, segments[0].name == "boot-params" else { return }
        var params = segments[0].data
        func put(_ value: UInt64, at offset: Int, width: Int) {
            params.replaceSubrange(offset ..< offset + width, with: littleEndianBytes(value, width: width))
        }
        /// A 64-bit value split into a header field (low 32 bits) and its ext_ field (high 32).
        func putSplit(_ value: UInt64, low: Int, high: Int) {
            put(value & 0xffff_ffff, at: low, width: 4)
            put(value >> 32, at: high, width: 4)
        }
        params[Field.typeOfLoader] = 0xd0  // kexec (0x0D << 4)
        params[Field.loadFlags] = 0
        putSplit(segments[0].start + UInt64(bootParamsSize), low: Field.commandLine, high: Field.commandLineHigh)
        if let initrd = segments.first(where: { $0.name == "initrd" }) {
            putSplit(initrd.start, low: Field.ramdiskImage, high: Field.ramdiskImageHigh)
            putSplit(UInt64(initrd.data.count), low: Field.ramdiskSize, high: Field.ramdiskSizeHigh)
        }
        // e820_table: entries of {u64 addr, u64 size, u32 type}.
        let entries = ram.sorted { $0.lowerBound < $1.lowerBound }.prefix(Field.e820MaxEntries)
        params[Field.e820Entries] = UInt8(entries.count)
        for (i, range) in entries.enumerated() {
            let entry = Field.e820Table + Field.e820EntrySize * i
            put(range.lowerBound, at: entry, width: 8)
            put(range.upperBound - range.lowerBound + 1, at: entry + 8, width: 8)
            put(1, at: entry + 16, width: 4)  // E820_TYPE_RAM
        }
        segments[0].data = params
    }

    /// What the boot params segment finally says, read back from its bytes.
    static func summarize(_ params: [UInt8]) -> RunReport.BootParamsInfo {
        func read(_ offset: Int, _ width: Int) -> UInt64 {
            (0 ..< width).reduce(UInt64(0)) { $0 | UInt64(params[offset + $1]) << (8 * $1) }
        }
        func readSplit(low: Int, high: Int) -> UInt64 { read(low, 4) | read(high, 4) << 32 }
        let initrd = readSplit(low: Field.ramdiskImage, high: Field.ramdiskImageHigh)
        let initrdSize = readSplit(low: Field.ramdiskSize, high: Field.ramdiskSizeHigh)
        let text = params[bootParamsSize...].prefix { $0 != 0 }
        let version = UInt16(read(Field.version, 2))
        return .init(protocolVersion: version == 0 ? nil : BzImage.versionString(version),
                     typeOfLoader: params[Field.typeOfLoader],
                     commandLineAddress: readSplit(low: Field.commandLine, high: Field.commandLineHigh),
                     commandLine: String(decoding: text, as: UTF8.self),
                     initrdAddress: initrdSize == 0 ? nil : initrd, initrdSize: initrdSize == 0 ? nil : initrdSize,
                     e820Entries: Int(params[Field.e820Entries]))
    }
}

/// Places each request at a random aligned address in [minimum, limit) that overlaps nothing placed before.
func place(_ requests: [SegmentRequest], avoiding taken: [ClosedRange<UInt64>], below limit: UInt64,
           rng: inout SplitMix64) throws(HarnessError) -> [Segment] {
    var taken = taken
    var segments: [Segment] = []
    for request in requests {
        guard request.memsz < limit, limit - request.memsz > request.minimum else {
            throw HarnessError.input("segment \(request.name)", "\(request.memsz) bytes do not fit below \(hex(limit))")
        }
        let low = kernelAlign(request.minimum, request.alignment)
        let high = (limit - request.memsz) / request.alignment * request.alignment
        var placed: Segment?
        for _ in 0 ..< 256 {
            let start = rng.aligned(in: low, high, alignment: request.alignment)
            let range = start ... start + request.memsz - 1
            if !taken.contains(where: { $0.overlaps(range) }) {
                placed = Segment(name: request.name, start: start, data: request.data, memsz: request.memsz)
                taken.append(range)
                break
            }
        }
        guard let placed else { throw HarnessError.input("segment \(request.name)", "found no free place in 256 draws") }
        segments.append(placed)
    }
    return segments
}
