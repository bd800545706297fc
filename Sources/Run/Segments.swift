import Containers
import ELF
import Loader

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

    /// Boot params (struct boot_params, 4 KiB, then the command line), the protected-mode
    /// kernel, and the initrd, in the order bzImage64_load adds them.
    func requests(_ seed: UInt64) throws(HarnessError) -> [SegmentRequest] {
        var content = SplitMix64.stream(seed, "segment-content")
        var params = [UInt8](repeating: 0, count: Self.bootParamsSize)
        let kernelRequest: SegmentRequest
        if let image = bzImage {
            if let refusal = image.refusalToLoad() { throw .input("kernel", "kexec_file would refuse this bzImage: \(refusal)") }
            let commandLineLength = commandLine.utf8.count + 1
            guard commandLineLength <= Int(image.commandLineSize) else {
                throw .input("kernel command line", "\(commandLineLength) bytes with its NUL, longer than the kernel's cmdline_size \(image.commandLineSize)")
            }
            // "Copy setup header onto bootparams": struct boot_params.hdr sits at 0x1f1 like in the file.
            params.replaceSubrange(0x1f1 ..< 0x1f1 + image.setupHeader.count, with: image.setupHeader)
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
        params[0x210] = 0xd0  // type_of_loader: kexec (0x0D << 4)
        params[0x211] = 0     // loadflags
        let commandLine = segments[0].start + UInt64(bootParamsSize)
        put(commandLine & 0xffff_ffff, at: 0x228, width: 4)  // hdr.cmd_line_ptr
        put(commandLine >> 32, at: 0x0c8, width: 4)          // ext_cmd_line_ptr
        if let initrd = segments.first(where: { $0.name == "initrd" }) {
            let length = UInt64(initrd.data.count)
            put(initrd.start & 0xffff_ffff, at: 0x218, width: 4)  // hdr.ramdisk_image
            put(length & 0xffff_ffff, at: 0x21c, width: 4)        // hdr.ramdisk_size
            put(initrd.start >> 32, at: 0x0c0, width: 4)          // ext_ramdisk_image
            put(length >> 32, at: 0x0c4, width: 4)                // ext_ramdisk_size
        }
        // e820_table (128 entries of {u64 addr, u64 size, u32 type} at 0x2d0), e820_entries at 0x1e8.
        let entries = ram.sorted { $0.lowerBound < $1.lowerBound }.prefix(128)
        params[0x1e8] = UInt8(entries.count)
        for (i, range) in entries.enumerated() {
            put(range.lowerBound, at: 0x2d0 + 20 * i, width: 8)
            put(range.upperBound - range.lowerBound + 1, at: 0x2d0 + 20 * i + 8, width: 8)
            put(1, at: 0x2d0 + 20 * i + 16, width: 4)  // E820_TYPE_RAM
        }
        segments[0].data = params
    }

    /// What the boot params segment finally says, read back from its bytes.
    static func summarize(_ params: [UInt8]) -> RunReport.BootParamsInfo {
        func read(_ offset: Int, _ width: Int) -> UInt64 {
            (0 ..< width).reduce(UInt64(0)) { $0 | UInt64(params[offset + $1]) << (8 * $1) }
        }
        let commandLine = read(0x228, 4) | read(0x0c8, 4) << 32
        let initrd = read(0x218, 4) | read(0x0c0, 4) << 32, initrdSize = read(0x21c, 4) | read(0x0c4, 4) << 32
        let text = params[bootParamsSize...].prefix { $0 != 0 }
        let version = read(0x206, 2)
        return .init(protocolVersion: version == 0 ? nil : "\(version >> 8).\(String(version & 0xff).count == 1 ? "0" : "")\(version & 0xff)",
                     typeOfLoader: UInt8(read(0x210, 1)), commandLineAddress: commandLine,
                     commandLine: String(decoding: text, as: UTF8.self),
                     initrdAddress: initrdSize == 0 ? nil : initrd, initrdSize: initrdSize == 0 ? nil : initrdSize,
                     e820Entries: Int(params[0x1e8]))
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
