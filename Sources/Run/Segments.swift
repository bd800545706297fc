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
    /// Bytes of IMA measurement list carried over (CONFIG_IMA_KEXEC): an "ima" segment, segment 0,
    /// added by ima_add_kexec_buffer before the image loader runs. nil: none.
    public var imaSize: Int?
    /// A crash (kdump) image: bzImage64_load adds an "elfcorehdr" segment first and appends
    /// "elfcorehdr=0x…" to the command line.
    public var crash = false

    public init() {}

    /// About how many bytes the digest will cover (for a progress line before placement).
    public var estimatedBytes: UInt64 {
        let kernelBytes = bzImage.map { UInt64($0.initSize) } ?? UInt64(kernelMemsz ?? (kernel?.count ?? kernelSize) * 3 / 2)
        return kernelBytes + UInt64(initrd?.count ?? initrdSize) + UInt64(SegmentPlan.bootParamsSize * 2) + UInt64(imaSize ?? 0)
    }

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
        static let setupData = 0x250
    }

    /// setup_data types (arch/x86/include/uapi/asm/bootparam.h).
    enum SetupDataType {
        static let ima: UInt32 = 8, rngSeed: UInt32 = 9
    }
    /// struct setup_data's header: next (u64), type (u32), len (u32).
    static let setupDataHeader = 16
    /// RNG_SEED_LENGTH.
    static let rngSeedLength = 32
    /// MAX_ELFCOREHDR_STR_LEN: room kept after the command line for " elfcorehdr=0x…K".
    static let elfcorehdrArgumentRoom = 30

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

    /// The segments in the order kexec_file adds them, the purgatory's place marked by `nil`:
    /// [ima] (ima_add_kexec_buffer, before the image loader), [elfcorehdr] (crash images),
    /// purgatory, boot params (struct boot_params, 4 KiB, the command line, then setup_data),
    /// the protected-mode kernel, the initrd.
    func requests(_ seed: UInt64, kernel profile: KernelProfile) -> [SegmentRequest?] {
        var content = SplitMix64.stream(seed, "segment-content")
        var params = [UInt8](repeating: 0, count: Self.bootParamsSize)
        let kernelRequest: SegmentRequest
        let lowest = profile.kernelAbovePreferredAddress ? { (p: UInt64) in max(p, Self.minimumKernelAddress) } : { _ in Self.minimumKernelAddress }
        if let image = bzImage {
            // "Copy setup header onto bootparams": struct boot_params.hdr sits at 0x1f1 like in the file.
            params.replaceSubrange(Field.setupHeader ..< Field.setupHeader + image.setupHeader.count, with: image.setupHeader)
            kernelRequest = SegmentRequest(name: "kernel", data: Array(image.bytes[image.protectedModeOffset...]),
                                           memsz: UInt64(image.initSize), alignment: UInt64(image.kernelAlignment), minimum: lowest(image.preferredAddress))
        } else {
            params.replaceSubrange(0x202 ..< 0x206, with: Array("HdrS".utf8))  // setup header magic, for the look of it
            let kernel = self.kernel ?? content.bytes(kernelSize)
            kernelRequest = SegmentRequest(name: "kernel", data: kernel, memsz: kernelMemsz.map(UInt64.init) ?? UInt64(kernel.count) * 3 / 2,
                                           alignment: kernelAlignment, minimum: lowest(0))
        }
        params += Array(commandLine.utf8) + [0] + [UInt8](repeating: 0, count: crash ? Self.elfcorehdrArgumentRoom : 0)
        params += [UInt8](repeating: 0, count: Int(kernelAlign(UInt64(params.count), 16)) - params.count)
        if imaSize != nil && profile.addsIMASetupData { params += [UInt8](repeating: 0, count: Self.setupDataHeader + 16) }
        if profile.addsRNGSeed { params += [UInt8](repeating: 0, count: Self.setupDataHeader + Self.rngSeedLength) }
        let initrd = self.initrd ?? content.bytes(initrdSize)
        var result: [SegmentRequest?] = []
        if let imaSize {
            var ima = SplitMix64.stream(seed, "ima")
            result.append(SegmentRequest(name: "ima", data: ima.bytes(imaSize), alignment: pageSize, minimum: 0))
        }
        if crash {
            // An ELF64 core header: ident, ET_CORE, EM_X86_64; room for hotplug's program headers.
            var header = [UInt8](repeating: 0, count: 64)
            header.replaceSubrange(0 ..< 7, with: [0x7f, 0x45, 0x4c, 0x46, 2, 1, 1])
            header[16] = 4
            header[18] = 0x3e
            result.append(SegmentRequest(name: "elfcorehdr", data: header + content.bytes(0x1000 - 64), memsz: 0x10000,
                                         alignment: pageSize, minimum: 0))
        }
        result.append(nil)
        result += [SegmentRequest(name: "boot-params", data: params, alignment: 16, minimum: Self.minimumBootParamsAddress), kernelRequest]
        if !initrd.isEmpty {
            result.append(SegmentRequest(name: "initrd", data: initrd, alignment: pageSize, minimum: Self.minimumInitrdAddress))
        }
        return result
    }

    /// What bzImage64_load writes into boot params once the segments have addresses: the loader
    /// type, cleared loadflags, the command line (with " elfcorehdr=0x…K" for a crash image) and
    /// initrd pointers (split into the header's low 32 bits and the ext_ fields' high 32), an e820
    /// map of the emulated machine's RAM, and the setup_data chain: SETUP_IMA then SETUP_RNG_SEED,
    /// each prepended, so the chain starts with the RNG seed (32 bytes from the run's seed).
    static func completeBootParams(_ segments: inout [Segment], ram: [ClosedRange<UInt64>], kernel profile: KernelProfile, seed: UInt64) {
        guard let index = segments.firstIndex(where: { $0.name == "boot-params" }) else { return }
        var params = segments[index].data
        let base = segments[index].start
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
        putSplit(base + UInt64(bootParamsSize), low: Field.commandLine, high: Field.commandLineHigh)
        var end = bootParamsSize + (params[bootParamsSize...].firstIndex(of: 0).map { $0 - bootParamsSize } ?? 0)
        if let elfcorehdr = segments.first(where: { $0.name == "elfcorehdr" }) {
            let argument = Array(" elfcorehdr=0x\(String(elfcorehdr.start >> 10, radix: 16))K".utf8)
            params.replaceSubrange(end ..< end + argument.count, with: argument)
            end += argument.count
        }
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
        var offset = params.count - setupDataLength(segments, profile)
        func prepend(_ type: UInt32, _ data: [UInt8]) {
            put(read(params, Field.setupData, 8), at: offset, width: 8)  // next = the chain so far
            put(UInt64(type), at: offset + 8, width: 4)
            put(UInt64(data.count), at: offset + 12, width: 4)
            params.replaceSubrange(offset + setupDataHeader ..< offset + setupDataHeader + data.count, with: data)
            put(base + UInt64(offset), at: Field.setupData, width: 8)
            offset += setupDataHeader + data.count
        }
        if profile.addsIMASetupData, let ima = segments.first(where: { $0.name == "ima" }) {
            prepend(SetupDataType.ima, littleEndianBytes(ima.start) + littleEndianBytes(UInt64(ima.data.count)))
        }
        if profile.addsRNGSeed {
            var rng = SplitMix64.stream(seed, "rng-seed")
            prepend(SetupDataType.rngSeed, rng.bytes(rngSeedLength))
        }
        segments[index].data = params
    }

    /// Bytes `requests` reserved at the end of boot params for setup_data.
    static func setupDataLength(_ segments: [Segment], _ profile: KernelProfile) -> Int {
        (profile.addsIMASetupData && segments.contains { $0.name == "ima" } ? setupDataHeader + 16 : 0)
            + (profile.addsRNGSeed ? setupDataHeader + rngSeedLength : 0)
    }

    /// A little-endian field of `width` bytes (0 past the end).
    static func read(_ bytes: [UInt8], _ offset: Int, _ width: Int) -> UInt64 {
        guard offset >= 0, offset + width <= bytes.count else { return 0 }
        return (0 ..< width).reduce(UInt64(0)) { $0 | UInt64(bytes[offset + $1]) << (8 * $1) }
    }

    /// What the boot params segment finally says, read back from its bytes.
    static func summarize(_ params: [UInt8], at base: UInt64) -> RunReport.BootParamsInfo {
        func read(_ offset: Int, _ width: Int) -> UInt64 { Self.read(params, offset, width) }
        func readSplit(low: Int, high: Int) -> UInt64 { read(low, 4) | read(high, 4) << 32 }
        let initrd = readSplit(low: Field.ramdiskImage, high: Field.ramdiskImageHigh)
        let initrdSize = readSplit(low: Field.ramdiskSize, high: Field.ramdiskSizeHigh)
        let text = params[bootParamsSize...].prefix { $0 != 0 }
        let version = UInt16(read(Field.version, 2))
        // The setup_data chain, followed inside this segment (at most 8 links).
        var chain: [String] = []
        var next = read(Field.setupData, 8)
        while next != 0, next >= base, next - base < UInt64(params.count), chain.count < 8 {
            let at = Int(next - base)
            let type = read(at + 8, 4)
            chain.append(type == UInt64(SetupDataType.rngSeed) ? "rng-seed" : type == UInt64(SetupDataType.ima) ? "ima" : "type \(type)")
            next = read(at, 8)
        }
        return .init(protocolVersion: version == 0 ? nil : BzImage.versionString(version),
                     typeOfLoader: params[Field.typeOfLoader],
                     commandLineAddress: readSplit(low: Field.commandLine, high: Field.commandLineHigh),
                     commandLine: String(decoding: text, as: UTF8.self),
                     initrdAddress: initrdSize == 0 ? nil : initrd, initrdSize: initrdSize == 0 ? nil : initrdSize,
                     e820Entries: Int(params[Field.e820Entries]), setupData: chain)
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
