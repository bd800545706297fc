import Crypto
import Disassembly
import ELF
import Loader
import Machine

/// One run: a purgatory, a load address, the segments, and how to run it.
public struct Scenario: Sendable {
    public var file: ELFFile
    public var seed: UInt64
    /// nil: drawn from `addressRange` with the seed.
    public var loadAddress: UInt64?
    /// Where random load addresses come from (the purgatory must fit entirely inside).
    public var addressRange: Range<UInt64> = 0x1_0000_0000 ..< LongModeMachine.pagingLimit
    public var loader: LoaderKind = .kexecFile
    public var entryRule: EntryRule = .symbol
    /// Values for the purgatory's option symbols (kexec-tools' console_serial…), each written
    /// with the symbol's own size through the loader's setter.
    public var symbolValues: [(name: String, value: UInt64)] = []
    public var segments = SegmentPlan()
    public var tamper = false
    /// nil: 1,000,000 + 256 per hashed byte, ample for any SHA-256 that does not loop.
    public var budget: UInt64?
    /// `.off` runs without budget or spin detection: only for runs known to verify (`bench`).
    public var counting: LongModeMachine.Counting = .exact
    /// nil: the loader's own ABI (kernel for kexec-file, kexec-tools for kexec-tools).
    public var abi: PurgatoryABI?
    /// Attribute the count to functions and phases (`report.accounting`); off only to measure its cost.
    public var accounting = true
    /// Record up to this many executed blocks in order (`report.trace`); 0: none.
    public var recordBlocks = 0
    var effectiveABI: PurgatoryABI { abi ?? .default(for: loader) }

    public init(file: ELFFile, seed: UInt64) {
        self.file = file
        self.seed = seed
    }

    /// Physical memory the harness itself needs: the control page (the stack relocate_kernel
    /// leaves) then up to three page-table pages (PML4 and two PDPTs cover 2^40).
    static let harnessRegionSize: UInt64 = 0x4000

    /// The kernel entry the purgatory jumps to: kernel load address + 0x200 (startup_64).
    static let kernelEntryOffset: UInt64 = 0x200

    public func run() throws(HarnessError) -> RunReport {
        let unicorn = UnicornInfo.current  // before the clock: the first call runs the store fix's check
        var lap = Stopwatch()
        let names = effectiveABI.registerOrder
        guard names.count == Register.allCases.count, Set(names) == Set(Register.allCases.map(\.description)) else {
            throw .badInput("register order \(names.joined(separator: ",")): must name each of \(Register.allCases.map(\.description).joined(separator: ",")) once")
        }
        try segments.check()
        let loader = AnyLoader(file: file, kind: self.loader, entryRule: entryRule)
        let layout = loader.setupBuffer()
        let address = try chooseLoadAddress(layout)
        var report = RunReport(
            file: file.name, verdict: .loadError, expected: tamper ? .rejectedDigest : .verified, message: "",
            kernelLog: [], seed: seed, loader: self.loader.rawValue, entryRule: loader.entryRule.rawValue, loadAddress: address,
            purgatorySize: layout.segmentSize, bufAlign: layout.bufAlign, entry: 0, entrySource: "", segments: [],
            instructions: 0, budget: 0, bytesHashed: 0, diagnostics: [])
        report.unicorn = unicorn

        // Load as kexec_load_purgatory does; a refusal is the verdict.
        var purgatory: LoadedPurgatory
        do throws(LoadFailure) {
            purgatory = try loader.load(at: address)
        } catch {
            return try refused(error, &report, &lap)
        }
        report.entry = purgatory.entry
        report.entrySource = purgatory.entrySource
        report.diagnostics = purgatory.diagnostics.map(\.description)

        // Segments, then entry64_regs and the digest, as bzImage64_load and kexec_file do.
        var rng = SplitMix64.stream(seed, "segments")
        let harnessRequest = SegmentRequest(name: "harness", data: [], memsz: Self.harnessRegionSize, alignment: pageSize, minimum: 0x1000)
        let purgatoryRange = address ... address + layout.segmentSize - 1
        var segments = try place(self.segments.requests(seed) + [harnessRequest], avoiding: [purgatoryRange],
                                 below: LongModeMachine.pagingLimit, rng: &rng)
        let harness = segments.removeLast()
        SegmentPlan.completeBootParams(&segments, ram: [purgatoryRange, harness.start ... harness.end - 1] + segments.map { $0.start ... $0.end - 1 })
        report.bootParams = SegmentPlan.summarize(segments[0].data)
        report.segments = segments.map { .init(name: $0.name, start: $0.start, length: $0.memsz) }
        let bootParams = segments[0], kernel = segments[1]
        let expectedRegisters: GeneralRegisters
        do throws(LoadFailure) {
            expectedRegisters = try writeEntryRegisters(&purgatory, bootParams: bootParams.start, kernel: kernel.start)
            try storeDigest(&purgatory, segments)
            for (name, value) in symbolValues {
                let size = Int(purgatory.findSymbol(name)?.size ?? 0)
                try purgatory.setSymbol(name, littleEndianBytes(value, width: [1, 2, 4, 8].contains(size) ? size : 8))
            }
        } catch {
            return try refused(error, &report, &lap)
        }
        report.bytesHashed = segments.reduce(0) { $0 + $1.memsz }
        let budget = self.budget ?? 1_000_000 + 256 * report.bytesHashed
        report.budget = budget
        if tamper { report.tamper = Self.tamper(&segments, seed) }
        report.timings.load = lap.split()

        // The machine: purgatory, segments, control page and page tables; then run.
        let uartBase = (try? purgatory.getSymbol("serial_base", size: 2)).map { UInt16($0[0]) | UInt16($0[1]) << 8 } ?? 0x3f8
        let codeMap = purgatory.codeMap()
        let machineImage = MachineImage(purgatory: purgatory, uartBase: uartBase, segments: segments, harness: harness,
                                        sentinel: kernel.start + Self.kernelEntryOffset, budget: budget,
                                        ranges: accounting ? codeMap.pieces.map { $0.start ..< $0.end } : [])
        var run = try execute(machineImage, counting: counting, &report.timings, &lap)
        // Unicorn 2.0.1 does not restore rip when an access hits unmapped memory: the block hook
        // only knows the block. Running the same machine again with the per-instruction hook gives
        // the exact instruction (and count); the run is deterministic, so everything else is equal.
        if case .unmappedAccess = run.outcome.reason, counting == .exact {
            var ignored = RunReport.Timings(), spare = Stopwatch()
            run = try execute(machineImage, counting: .crossCheck, &ignored, &spare)
            run.outcome.crossCheckInstructions = nil
        }
        // Unicorn 2.0.1 runs SSE with CR4.OSFXSR clear; the CPU raises #UD at the first one.
        // When the run executed any, it is repeated with #UD at those instructions.
        let undefined = run.executedVectorInstructions
        if !undefined.isEmpty {
            var ignored = RunReport.Timings(), spare = Stopwatch()
            run = try execute(machineImage, counting: .crossCheck, undefinedAt: undefined, &ignored, &spare)
            if counting != .crossCheck { run.outcome.crossCheckInstructions = nil }
        }
        report.instructions = run.instructions
        report.crossCheckInstructions = run.outcome.crossCheckInstructions
        if counting != .off { report.blocksExecuted = run.outcome.blocks.reduce(0) { $0 + $1.executions } }
        if !run.outcome.serialOutput.isEmpty {
            report.console = String(decoding: run.outcome.serialOutput, as: UTF8.self)
        }
        judge(run.outcome, run.outcome.registers, expectedRegisters, purgatory.addressMap(), run.instruction, &report)
        if case .exception(6, let rip) = run.outcome.reason, undefined.contains(rip) {
            report.message += ": SSE/AVX state with CR4.OSFXSR and CR4.OSXSAVE clear, as relocate_kernel leaves them (Unicorn 2.0.1 would have run it)"
        }
        account(run, codeMap, purgatory, &report)
        if report.bytesHashed > 0 { report.instructionsPerByte = Double(report.instructions) / Double(report.bytesHashed) }
        if report.timings.emulation > 0 {
            report.megabytesPerSecond = Double(report.bytesHashed) / 1e6 / report.timings.emulation
        }
        return report
    }

    private func chooseLoadAddress(_ layout: BufferLayout) throws(HarnessError) -> UInt64 {
        let limit = LongModeMachine.pagingLimit
        guard layout.memsz >= layout.bufsz, layout.memsz < limit else {
            throw .input("\(file.name): purgatory memsz", "\(hex(layout.memsz)) bytes (bss \(hex(layout.bssSize))) cannot be placed below \(hex(limit))")
        }
        if let address = loadAddress {
            guard address < limit, layout.segmentSize <= limit - address else {
                throw .input("\(file.name): load address \(hex(address))",
                             "the \(hex(layout.segmentSize))-byte purgatory would reach \(hex(limit)) (2^40): Unicorn 2.0.1's paging faults there, so the machine cannot model it honestly")
            }
            return address
        }
        let align = layout.bufAlign
        let low = kernelAlign(max(addressRange.lowerBound, PurgatoryLoader.minimumAddress), align)
        let top = min(addressRange.upperBound, limit)
        guard align & (align - 1) == 0, align < limit, low >= addressRange.lowerBound, top > low,
              top - low >= layout.segmentSize else {
            throw .input("\(file.name): address range [\(hex(addressRange.lowerBound)), \(hex(addressRange.upperBound)))",
                         "holds no \(hex(layout.bufAlign))-aligned place for the \(hex(layout.segmentSize))-byte purgatory below \(hex(limit))")
        }
        var rng = SplitMix64.stream(seed, "load-address")
        return rng.aligned(in: low, (top - layout.segmentSize) / layout.bufAlign * layout.bufAlign, alignment: layout.bufAlign)
    }

    /// bzImage64_load: read entry64_regs, set rbx, rsi, rip and rsp, write it back.
    private func writeEntryRegisters(_ purgatory: inout LoadedPurgatory, bootParams: UInt64,
                                     kernel: UInt64) throws(LoadFailure) -> GeneralRegisters {
        let abi = effectiveABI
        let order = abi.registerOrder.compactMap { name in Register.allCases.first { $0.description == name } }
        let raw = try purgatory.getSymbol(abi.registers, size: order.count * 8)
        var registers = GeneralRegisters()
        for (i, register) in order.enumerated() {
            registers[register] = raw[i * 8 ..< i * 8 + 8].reversed().reduce(0) { $0 << 8 | UInt64($1) }
        }
        registers[.rbx] = 0
        registers[.rsi] = bootParams
        registers[.rip] = kernel + Self.kernelEntryOffset
        guard let stack = purgatory.symbolAddress(abi.stack) else {
            throw .refused(LoadError(log: ["kexec-bzImage64: Could not find address of symbol \(abi.stack)"]))
        }
        registers[.rsp] = stack
        try purgatory.setSymbol(abi.registers, order.flatMap { littleEndianBytes(registers[$0]) })
        return registers
    }

    /// kexec_calculate_store_digests: SHA-256 over every segment but the purgatory's own,
    /// then the region table and the digest written into the purgatory.
    private func storeDigest(_ purgatory: inout LoadedPurgatory, _ segments: [Segment]) throws(LoadFailure) {
        let abi = effectiveABI
        var hasher = SHA256()
        var regions: [UInt8] = []
        for segment in segments {
            hasher.update(data: segment.data)
            hasher.update(data: [UInt8](repeating: 0, count: Int(segment.memsz) - segment.data.count))
            regions += littleEndianBytes(segment.start) + littleEndianBytes(segment.memsz)
        }
        regions += [UInt8](repeating: 0, count: PurgatoryABI.regionCount * 16 - regions.count)
        try purgatory.setSymbol(abi.regions, regions)
        try purgatory.setSymbol(abi.digest, Array(hasher.finalize()))
    }

    /// Flips one byte of one segment (anywhere in its memsz, the zero tail included).
    static func tamper(_ segments: inout [Segment], _ seed: UInt64) -> RunReport.TamperInfo {
        var rng = SplitMix64.stream(seed, "tamper")
        let index = Int(rng.next(upperBound: UInt64(segments.count)))
        let offset = rng.next(upperBound: segments[index].memsz)
        if offset >= UInt64(segments[index].data.count) {
            segments[index].data += [UInt8](repeating: 0, count: Int(offset) + 1 - segments[index].data.count)
        }
        segments[index].data[Int(offset)] ^= 0xff
        return .init(segment: segments[index].name, offset: offset, address: segments[index].start + offset)
    }

    /// Everything the machine is built from, so a run can be repeated exactly.
    struct MachineImage {
        var purgatory: LoadedPurgatory
        /// The UART's port: the purgatory's own `serial_base` when it has one (kexec-tools), else COM1.
        var uartBase: UInt16
        var segments: [Segment]
        var harness: Segment
        var sentinel: UInt64
        var budget: UInt64
        /// The code map's pieces, for attribution (empty: none).
        var ranges: [Range<UInt64>]
    }

    /// One emulation, with what judging it needs from the machine before it is closed.
    struct Emulation {
        var outcome: RunOutcome
        /// Exact: a fault inside a block is trimmed to the faulting instruction.
        var instructions: UInt64
        /// The instruction at the stop address, decoded while memory was still there.
        var instruction: Instruction?
        /// Addresses of executed instructions that use xmm/ymm/zmm registers (sorted).
        var executedVectorInstructions: [UInt64] = []
    }

    private func execute(_ image: MachineImage, counting: LongModeMachine.Counting, undefinedAt: [UInt64] = [],
                         _ timings: inout RunReport.Timings, _ lap: inout Stopwatch) throws(HarnessError) -> Emulation {
        do throws(MachineError) {
            let machine = try LongModeMachine()
            defer { machine.close() }
            machine.uartBase = image.uartBase
            let purgatory = image.purgatory
            try machine.map("purgatory", at: purgatory.loadAddress, size: purgatory.layout.segmentSize, contents: purgatory.buffer)
            for segment in image.segments {
                try machine.map(segment.name, at: segment.start, size: segment.memsz, contents: segment.data)
            }
            let cr3 = try machine.mapWithPageTables("harness", at: image.harness.start, size: image.harness.memsz, tablesOffset: pageSize)
            try machine.setEntryState(cr3: cr3, rip: purgatory.entry, rsp: image.harness.start + pageSize - 8)
            timings.setup = lap.split()

            let outcome = try machine.run(until: image.sentinel, budget: image.budget, counting: counting,
                                          attributing: image.ranges, recordBlocks: counting == .off ? 0 : recordBlocks,
                                          undefinedAt: undefinedAt)
            timings.emulation = lap.split()

            let decoder = Disassembler()
            var stop: UInt64?
            switch outcome.reason {
            case .exception(_, let rip), .unmappedAccess(.read, _, _, let rip), .unmappedAccess(.write, _, _, let rip): stop = rip
            default: stop = nil
            }
            let instruction = stop.flatMap { rip in machine.read(at: rip, count: 15).flatMap { decoder?.decode($0, at: rip, limit: 1).first } }
            var emulation = Emulation(outcome: outcome, instructions: exactCount(outcome, machine: machine, decoder: decoder),
                                      instruction: instruction)
            // Every distinct executed block decoded once (hundreds per run): whether any SSE ran.
            if let decoder {
                emulation.executedVectorInstructions = outcome.blocks.flatMap { block in
                    (machine.read(at: block.address, count: Int(block.bytes)).map { decoder.decode($0, at: block.address) } ?? [])
                        .filter(\.usesVectorRegisters).map(\.address)
                }.sorted()
            }
            lap.split()  // reading results is nobody's phase
            machine.close()
            timings.teardown = lap.split()
            return emulation
        } catch {
            throw .machine(error)
        }
    }

    /// The block hook counts whole blocks; a fault inside a block ran only part of it
    /// (the faulting instruction included, as the per-instruction hook counts it).
    private func exactCount(_ outcome: RunOutcome, machine: LongModeMachine, decoder: Disassembler?) -> UInt64 {
        let rip: UInt64
        switch outcome.reason {
        case .exception(_, let at), .unmappedAccess(_, _, _, let at): rip = at
        default: return outcome.instructions
        }
        let block = outcome.lastBlock
        guard let decoder, rip >= block.address, rip < block.address + UInt64(block.bytes),
              let bytes = machine.read(at: block.address, count: Int(block.bytes)) else { return outcome.instructions }
        let ran = decoder.decode(bytes, at: block.address).filter { $0.address <= rip }.count
        return outcome.instructions - UInt64(block.instructions) + UInt64(ran)
    }

    private func refused(_ failure: LoadFailure, _ report: inout RunReport,
                         _ lap: inout Stopwatch) throws(HarnessError) -> RunReport {
        switch failure {
        case .malformed(let error): throw HarnessError(error)
        case .refused(let error):
            report.verdict = .loadError
            report.message = error.message
            report.kernelLog = error.log
            report.timings.load = lap.split()
            return report
        }
    }
}


/// Consecutive lap times on the monotonic clock.
struct Stopwatch {
    private let clock = ContinuousClock()
    private var last: ContinuousClock.Instant
    init() { last = clock.now }

    /// Seconds since the previous split (or creation).
    @discardableResult
    mutating func split() -> Double {
        let now = clock.now
        defer { last = now }
        let d = now - last
        return Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
    }
}
