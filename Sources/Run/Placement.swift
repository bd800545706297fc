import ELF
import Loader
import Machine

/// The machine a run asks for.
public struct MachineOptions: Sendable, Equatable {
    /// MAXPHYADDR of the machine (36…52): RAM lies below 2^physicalBits.
    public var physicalBits = 52
    /// The identity map's depth; nil: 5-level where anything lies at or above 2^46 (the most RAM
    /// a 4-level kernel uses), else 4-level.
    public var paging: AddressSpace.Levels?
    /// Where the segments and the harness's own pages are drawn from (nil: below 2^40 and below
    /// 2^physicalBits, so that a purgatory placed below 2^40 runs with its identity map walked).
    public var segmentRange: Range<UInt64>?

    public init() {}

    /// Linux without 5-level paging has MAX_PHYSMEM_BITS 46 (arch/x86/include/asm/sparsemem.h):
    /// it uses no RAM at or above 64 TiB, so nothing it loads lies there.
    public static let fourLevelKernelLimit: UInt64 = 1 << 46

    /// The highest address (exclusive) a machine with these options can have RAM below.
    public var ramLimit: UInt64 {
        let physical = AddressSpace(physicalBits: physicalBits).physicalLimit
        return paging == .four ? min(physical, Self.fourLevelKernelLimit) : physical
    }

    /// Why these options describe no machine, or nil.
    public var refusal: String? {
        AddressSpace.physicalBitsRange.contains(physicalBits) ? nil
            : "--phys-bits \(physicalBits): x86-64 physical addresses have 36 to 52 bits"
    }

    /// Why the purgatory's segment [start, start + size) cannot be RAM of this machine, or nil.
    /// With the paging depth left to the default rule, only the physical width can refuse it.
    public func placementRefusal(start: UInt64, size: UInt64) -> String? {
        let placement = MachinePlacement(options: self, purgatory: Extent(start: start, size: size))
        return placement.refusal(placement.purgatory, in: AddressSpace(physicalBits: physicalBits, levels: paging ?? .five))
    }

    var effectiveSegmentRange: Range<UInt64> { segmentRange ?? 0 ..< min(AddressSpace.walkLimit, ramLimit) }
}

/// A range of physical memory, start and size, whose end may not wrap.
struct Extent: Equatable {
    var start: UInt64
    var size: UInt64
    var end: UInt64 { start &+ size }
    func overlaps(_ other: Extent) -> Bool { start < other.end && other.start < end }
}

/// The segments of a run: what kexec loads (and hashes), and the harness's own pages.
struct PlacedSegments {
    /// Every kexec segment but the purgatory's, in the order kexec_file adds them.
    var kexec: [Segment]
    /// How many of them come before the purgatory in that order (ima, elfcorehdr).
    var beforePurgatory: Int
    /// The control page relocate_kernel runs from, the page after it, and the identity tables.
    var harness: Segment
    var all: [Segment] { kexec + [harness] }

    func named(_ name: String) -> Segment? { kexec.first { $0.name == name } }
    var bootParams: Segment { named("boot-params") ?? kexec[0] }
    var kernel: Segment { named("kernel") ?? kexec[0] }
}

extension Segment {
    var region: Extent { Extent(start: start, size: memsz) }
}

/// Where the machine puts things, before the paging depth is known.
struct MachinePlacement {
    var options: MachineOptions
    var purgatory: Extent

    /// The address space for these regions: the options' width, the options' paging or the
    /// default rule, and every region checked against both.
    /// `fiveLevelWhereAvailable`: the kernel uses 5-level paging whenever the CPU has it (6.16,
    /// 7212b58d6d71); a CPU with more than 46 physical address bits is taken to have LA57.
    func addressSpace(for regions: [Extent], fiveLevelWhereAvailable: Bool = false) throws(HarnessError) -> AddressSpace {
        let highest = regions.map(\.end).max() ?? 0
        let prefersFive = fiveLevelWhereAvailable && options.physicalBits > 46
        let levels = options.paging ?? (highest > MachineOptions.fourLevelKernelLimit || prefersFive ? .five : .four)
        let space = AddressSpace(physicalBits: options.physicalBits, levels: levels)
        for region in regions {
            if let why = refusal(region, in: space) {
                throw .input("placement [\(hex(region.start)), \(hex(region.end)))", why)
            }
        }
        return space
    }

    func refusal(_ region: Extent, in space: AddressSpace) -> String? {
        if let why = space.refusal(start: region.start, size: region.size) { return why }
        if space.levels == .four, region.end > MachineOptions.fourLevelKernelLimit {
            return "a 4-level kernel uses no RAM at or above 2^46 (MAX_PHYSMEM_BITS 46 without 5-level paging; --paging 5)"
        }
        return nil
    }
}

extension Scenario {
    /// The harness's pages before the identity tables: the control page and the page after it.
    static let harnessFixedPages: UInt64 = 2

    /// A buf_align-aligned load address: the caller's, or drawn from `addressRange` within the
    /// machine's RAM.
    func chooseLoadAddress(_ layout: BufferLayout) throws(HarnessError) -> UInt64 {
        if let why = machine.refusal { throw .badInput(why) }
        if let address = loadAddress { return address }
        // An empty buffer still gets an address: the loader refuses it there (vzalloc(0)).
        let align = layout.bufAlign, size = max(layout.segmentSize, pageSize)
        let top = min(addressRange.upperBound, machine.ramLimit)
        let low = kernelAlign(max(addressRange.lowerBound, PurgatoryLoader.minimumAddress), align)
        guard align > 0, align & (align - 1) == 0, low >= addressRange.lowerBound, top > low, top - low >= size else {
            throw .input("\(file.name): address range [\(hex(addressRange.lowerBound)), \(hex(addressRange.upperBound)))",
                         "holds no \(hex(align))-aligned place for the \(hex(size))-byte purgatory below \(hex(machine.ramLimit))")
        }
        var rng = SplitMix64.stream(seed, "load-address")
        return rng.aligned(in: low, (top - size) / align * align, alignment: align)
    }

    /// The purgatory must be somewhere the machine can have RAM (the loader has accepted it already).
    func machinePlacement(purgatory address: UInt64, size: UInt64) throws(HarnessError) -> MachinePlacement {
        let extent = Extent(start: address, size: size)
        guard size > 0 else {
            throw .input("\(file.name): purgatory", "its SHF_ALLOC sections hold no bytes: there is nothing to place or run")
        }
        if let why = machine.placementRefusal(start: address, size: size) {
            throw .input("\(file.name): load address \(hex(address))", "the \(hex(size))-byte purgatory cannot be placed there: \(why)")
        }
        return MachinePlacement(options: machine, purgatory: extent)
    }

    /// The kexec segments in kexec_file's order (ima, elfcorehdr, boot params, kernel, initrd)
    /// and the harness's pages, at seeded non-overlapping places in the segment range.
    func placeSegments(avoiding purgatory: Extent, in placement: MachinePlacement) throws(HarnessError) -> PlacedSegments {
        var rng = SplitMix64.stream(seed, "segments")
        let range = machine.effectiveSegmentRange
        let ordered = segments.requests(seed, kernel: kernel)
        let beforePurgatory = ordered.firstIndex { $0 == nil } ?? 0
        var requests = ordered.compactMap { $0 }
        // Identity tables: a root, and per region at most two PML4s and two PDPTs more than its
        // size needs (it may straddle one boundary of each).
        let sizes = [purgatory.size] + requests.map(\.memsz) + [1 << 30]
        let tablePages = sizes.reduce(UInt64(1)) { $0 &+ ($1 >> 39) &+ ($1 >> 48) &+ 4 }
        let harnessSize = (Self.harnessFixedPages &+ tablePages) &* pageSize
        requests.append(SegmentRequest(name: "harness", data: controlPage(at: nil) + nextPage(),
                                       memsz: harnessSize, alignment: pageSize, minimum: 0x1000))
        var placed = try place(requests, avoiding: [purgatory], within: range, rng: &rng)
        var harness = placed.removeLast()
        harness.data = controlPage(at: harness.start) + nextPage()
        SegmentPlan.completeBootParams(&placed, ram: ([purgatory] + placed.map(\.region) + [harness.region]).map { $0.start ... $0.end &- 1 },
                                       kernel: kernel, seed: seed)
        return PlacedSegments(kexec: placed, beforePurgatory: beforePurgatory, harness: harness)
    }

    /// The page after the control page holds what RAM holds: bytes from the seed, never a zero
    /// first qword (from 6.14 the purgatory finds it at [rsp]).
    func nextPage() -> [UInt8] {
        var content = SplitMix64.stream(seed, "harness")
        var page = content.bytes(Int(pageSize))
        page[7] |= 0x80
        return page
    }

    /// relocate_kernel's hand-over as the profile's kernel leaves it (kexec-purgatory-facts §6,
    /// KernelProfiles.swift): every general register 0 but rsp; CR0 PG|PE…; CR4 PAE, LA57 with a
    /// 5-level map, MCE on a TDX guest from 6.11; EFER as the kernel ran it; RFLAGS 0x46 (the
    /// final register-clearing xor leaves ZF and PF set); rsp and the GDT and IDT per generation.
    func entryState(_ purgatory: LoadedPurgatory, _ harness: Segment, _ space: AddressSpace) -> EntryState {
        var control = ControlState.kexecEntry
        control.rflags = 0x46
        if space.levels == .five { control.cr4 |= 1 << 12 }  // LA57
        if tdxGuest && kernel.setsMachineCheckOnTDX { control.cr4 |= 1 << 6 }  // MCE
        let controlPage = harness.start
        let rsp = kernel.stack == .atPageEnd ? controlPage + pageSize : controlPage + pageSize - 8
        return EntryState(control: control, cr3: harness.start + Self.harnessFixedPages * pageSize, rip: purgatory.entry, rsp: rsp,
                          gdt: kernel.hasDebugGDT ? DescriptorTable(base: controlPage + ControlPage.gdt, limit: 0x1f) : .invalid,
                          idt: kernel.hasExceptionHandlers ? DescriptorTable(base: controlPage + ControlPage.idt, limit: 0xff) : .invalid)
    }

    /// Where the harness puts relocate_kernel's debug tables in the control page (the kernel's own
    /// offsets depend on its build; nothing the purgatory does can see them but through GDTR/IDTR).
    enum ControlPage {
        static let gdt: UInt64 = 0x800, idt: UInt64 = 0x900, stubs: UInt64 = 0xa00
        /// b25eb5f5e419: null, 0x08 32-bit code, 0x10 64-bit code, 0x18 data.
        static let gdtEntries: [UInt64] = [0, 0x00cf_9a00_0000_ffff, 0x00af_9a00_0000_ffff, 0x00cf_9200_0000_ffff]
    }

    /// The control page's bytes: zero (relocate_kernel's stack top holds 0), with the debug GDT
    /// (6.15) and the IDT of 16 trap gates, selector 0x10, DPL 0 (6.16). The gates lead to stubs
    /// of `hlt; jmp .-1` the harness writes (never reached: the machine applies the handlers'
    /// effects itself, see ExceptionHandlers).
    func controlPage(at base: UInt64?) -> [UInt8] {
        var page = [UInt8](repeating: 0, count: Int(pageSize))
        guard let base else { return page }
        func put(_ value: UInt64, _ offset: UInt64, _ width: Int = 8) {
            page.replaceSubrange(Int(offset) ..< Int(offset) + width, with: littleEndianBytes(value, width: width))
        }
        if kernel.hasDebugGDT {
            for (i, entry) in ControlPage.gdtEntries.enumerated() { put(entry, ControlPage.gdt + UInt64(i) * 8) }
        }
        if kernel.hasExceptionHandlers {
            for vector in 0 ..< UInt64(16) {
                let handler = base + ControlPage.stubs + vector * 8
                let gate = ControlPage.idt + vector * 16
                put(handler & 0xffff, gate, 2)
                put(0x10, gate + 2, 2)       // __KERNEL_CS
                put(0x8f00, gate + 4, 2)     // IST 0, type 0xF (trap gate), DPL 0, present
                put(handler >> 16 & 0xffff, gate + 6, 2)
                put(handler >> 32, gate + 8, 4)
                page.replaceSubrange(Int(ControlPage.stubs + vector * 8) ..< Int(ControlPage.stubs + vector * 8) + 3, with: [0xf4, 0xeb, 0xfd])
            }
        }
        return page
    }
}

/// Places each request at a random aligned address in `range` (at or above its minimum) that
/// overlaps nothing placed before.
func place(_ requests: [SegmentRequest], avoiding taken: [Extent], within range: Range<UInt64>,
           rng: inout SplitMix64) throws(HarnessError) -> [Segment] {
    var taken = taken
    var segments: [Segment] = []
    for request in requests {
        let alignment = max(request.alignment, 1)
        let low = kernelAlign(max(request.minimum, range.lowerBound), alignment)
        guard alignment & (alignment - 1) == 0, low >= range.lowerBound, request.memsz > 0,
              request.memsz <= range.upperBound, low <= range.upperBound - request.memsz else {
            throw HarnessError.input("segment \(request.name)", "\(request.memsz) bytes aligned to \(hex(alignment)) at or above \(hex(max(request.minimum, range.lowerBound))) do not fit below \(hex(range.upperBound))")
        }
        let high = (range.upperBound - request.memsz) / alignment * alignment
        var placed: Segment?
        for _ in 0 ..< 256 {
            let start = rng.aligned(in: low, high, alignment: alignment)
            let extent = Extent(start: start, size: request.memsz)
            if !taken.contains(where: { $0.overlaps(extent) }) {
                placed = Segment(name: request.name, start: start, data: request.data, memsz: request.memsz)
                taken.append(extent)
                break
            }
        }
        guard let placed else { throw HarnessError.input("segment \(request.name)", "found no free place in 256 draws") }
        segments.append(placed)
    }
    return segments
}
