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
    public var initrd: [UInt8]?
    public var kernelSize = 16 * 1024
    /// The kernel's in-memory size (its setup header's init_size) is larger than the file: the tail is zeros.
    public var kernelMemsz: Int?
    public var initrdSize = 8 * 1024
    public var commandLine = "console=ttyS0,115200n8 purgatory-harness"
    public var kernelAlignment: UInt64 = 0x20_0000

    public init() {}

    /// Boot params (struct boot_params, 4 KiB, then the command line), the protected-mode
    /// kernel, and the initrd, in the order bzImage64_load adds them.
    func requests(_ seed: UInt64) -> [SegmentRequest] {
        var content = SplitMix64.stream(seed, "segment-content")
        var params = [UInt8](repeating: 0, count: 0x1000)
        params.replaceSubrange(0x202 ..< 0x206, with: Array("HdrS".utf8))  // setup header magic, for the look of it
        params += Array(commandLine.utf8) + [0]
        let kernel = self.kernel ?? content.bytes(kernelSize)
        let initrd = self.initrd ?? content.bytes(initrdSize)
        var result = [
            SegmentRequest(name: "boot-params", data: params, alignment: 16, minimum: 0x3000),
            SegmentRequest(name: "kernel", data: kernel, memsz: kernelMemsz.map(UInt64.init) ?? UInt64(kernel.count) * 3 / 2,
                           alignment: kernelAlignment, minimum: 0x100_0000),
        ]
        if !initrd.isEmpty {
            result.append(SegmentRequest(name: "initrd", data: initrd, alignment: pageSize, minimum: 0x100_0000))
        }
        return result
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
