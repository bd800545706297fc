import Crypto
import Disassembly
import ELF
import Loader
import Machine

/// One run: a purgatory, a load address, the segments, the machine, and how to run it.
///
/// `run` goes phase by phase, as kexec_file_load and kexec -e do: the kernel's loader decides
/// first (`loadPurgatory`: a refusal is the verdict, wherever the purgatory was put), then the
/// machine must be able to hold the placement (`machinePlacement`), the segments are laid out
/// (`placeSegments`), bzImage64_load and kexec_calculate_store_digests write entry64_regs and the
/// digest (`writeBootInformation`), the machine runs it (`emulate`), and the outcome is judged.
public struct Scenario: Sendable {
    public var file: ELFFile
    public var seed: UInt64
    /// nil: drawn from `addressRange` with the seed.
    public var loadAddress: UInt64?
    /// Where random load addresses come from (the purgatory must fit entirely inside).
    public var addressRange: Range<UInt64> = 0x1_0000_0000 ..< AddressSpace.walkLimit
    public var loader: LoaderKind = .kexecFile
    /// The kernel that loads and starts the purgatory: its loader rules, entry state, digest and
    /// segments (KernelProfiles.swift).
    public var kernel = KernelProfile.latest
    /// Where `kernel` came from, for the report ("default", "--kernel-profile", a bzImage's version).
    public var kernelSource = "default"
    /// nil: the kernel profile's rule.
    public var entryRule: EntryRule?
    /// The machine is a TDX guest: from 6.11 relocate_kernel sets CR4.MCE.
    public var tdxGuest = false
    /// The loading kernel's early serial console (earlyprintk=serial,…): where its exception
    /// handlers print (6.16). nil: it had none, and they print nothing.
    public var earlySerialPort: UInt16?
    /// IMA rewrites its segment between load and kexec -e (9f0ec4b16f2b), with new measurements.
    public var imaRewrite = false
    /// Values for the purgatory's option symbols (kexec-tools' console_serial…), each written
    /// with the symbol's own size through the loader's setter.
    public var symbolValues: [(name: String, value: UInt64)] = []
    public var segments = SegmentPlan()
    /// The machine's physical width, paging depth and where segments go.
    public var machine = MachineOptions()
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
    /// Told the count now and then during a long emulation (a progress line; nil: nothing).
    public var progress: ProgressReport?
    /// `--fast-hash`: SHA-256 steps verified in emulation, then computed on the host (FastForward.swift
    /// in Machine); the verdict and the instruction count are those of full emulation.
    public var fastHash = false
    /// With `fastHash`: one step in every `fastHashCheckEvery` stays emulated and is compared.
    public var fastHashCheckEvery = 256
    /// With `fastHash`: runs hashing fewer bytes are emulated in full (the fast-forward's own
    /// cost, a second engine and its translations, exceeds what it could save).
    public var fastHashMinimumBytes: UInt64 = 64 << 10
    var effectiveABI: PurgatoryABI { abi ?? .default(for: loader) }

    public init(file: ELFFile, seed: UInt64) {
        self.file = file
        self.seed = seed
    }

    /// The kernel entry the purgatory jumps to: kernel load address + 0x200 (startup_64).
    static let kernelEntryOffset: UInt64 = 0x200

    public func run() throws(HarnessError) -> RunReport {
        let unicorn = UnicornInfo.current  // before the clock: the first call runs the store fix's check
        var lap = Stopwatch()
        try checkInputs()
        let loader = AnyLoader(file: file, kind: self.loader, entryRule: entryRule ?? kernel.entryRule)
        let layout = loader.setupBuffer()
        let address = try chooseLoadAddress(layout)
        var report = RunReport(
            file: file.name, verdict: .loadError, expected: tamper ? .rejectedDigest : .verified, message: "",
            kernelLog: [], seed: seed, loader: self.loader.rawValue, entryRule: loader.entryRule.rawValue, loadAddress: address,
            purgatorySize: layout.segmentSize, bufAlign: layout.bufAlign, entry: nil, entrySource: "", segments: [],
            instructions: 0, budget: 0, bytesHashed: 0, diagnostics: [])
        report.kernelProfile = .init(name: kernel.name, version: kernel.version.description, source: kernelSource)
        report.unicorn = unicorn

        var purgatory: LoadedPurgatory
        switch try loadPurgatory(loader, at: address) {
        case .failure(let refusal): return refused(refusal, &report, &lap)
        case .success(let loaded): purgatory = loaded
        }
        report.entry = purgatory.entry
        report.entrySource = purgatory.entrySource
        report.diagnostics = purgatory.diagnostics.map(\.description)
        report.kernelLog = purgatory.diagnostics.filter { $0.kind == .kernelWarning }.map(\.message)

        let placement = try machinePlacement(purgatory: address, size: layout.segmentSize)
        var segments = try placeSegments(avoiding: placement.purgatory, in: placement)
        let machine = try placement.addressSpace(for: [placement.purgatory] + segments.all.map(\.region),
                                                 fiveLevelWhereAvailable: kernel.fiveLevelWhereAvailable)
        report.segments = segments.kexec.map { .init(name: $0.name, start: $0.start, length: $0.memsz) }
        report.bootParams = SegmentPlan.summarize(segments.bootParams.data, at: segments.bootParams.start)
        if let refusal = probeRefusal(machine) { return refused(refusal, &report, &lap) }

        let expectedRegisters: GeneralRegisters
        switch try writeBootInformation(&purgatory, segments) {
        case .failure(let refusal): return refused(refusal, &report, &lap)
        case .success(let registers): expectedRegisters = registers
        }
        let hashed = digestSegments(segments)
        report.hashedSegments = hashed.map { segments.kexec[$0].name }
        report.bytesHashed = hashed.reduce(0) { $0 &+ segments.kexec[$1].memsz }
        let budget = self.budget ?? 1_000_000 &+ 256 &* report.bytesHashed
        report.budget = budget
        if tamper { report.tamper = Self.tamper(&segments.kexec, among: hashed, seed) }
        if imaRewrite { report.imaRewrite = Self.rewriteIMA(&segments.kexec, seed) }
        report.timings.load = lap.split()

        let codeMap = purgatory.codeMap()
        var image = MachineImage(purgatory: purgatory, uartBase: Self.uartBase(of: purgatory), segments: segments.kexec,
                                 harness: segments.harness, addressSpace: machine, entry: entryState(purgatory, segments.harness, machine),
                                 sentinel: segments.kernel.start &+ Self.kernelEntryOffset, budget: budget,
                                 ranges: accounting ? codeMap.pieces.map { $0.start ..< $0.end } : [],
                                 handlers: kernel.hasExceptionHandlers ? ExceptionHandlers(vectors: 16, returning: [3]) : nil)
        image.bytesHashed = report.bytesHashed
        report.machine = MachineInfo(image)
        report.entryState = EntryStateInfo(image)

        let run = try emulate(image, &report.timings, &lap)
        report.instructions = run.instructions
        report.crossCheckInstructions = run.outcome.crossCheckInstructions
        if fastHash { report.fastHash = FastHashInfo(run, checkEvery: fastHashCheckEvery) }
        if counting != .off { report.blocksExecuted = run.outcome.blocks.reduce(0) { $0 + $1.executions } }
        judge(run.outcome, run.outcome.registers, expectedRegisters, purgatory.addressMap(), run.instruction, &report)
        report.console = console(run.outcome, &report)
        account(run, codeMap, purgatory, &report)
        if report.bytesHashed > 0 { report.instructionsPerByte = Double(report.instructions) / Double(report.bytesHashed) }
        report.timings.results += lap.split()
        if report.timings.emulation > 0 {
            report.megabytesPerSecond = Double(report.bytesHashed) / 1e6 / report.timings.emulation
        }
        return report
    }

    /// bzImage64_probe, with the paging known: a kernel entered with 5-level paging on must say
    /// it can take it (ee338b9ee282, since about v5.0).
    private func probeRefusal(_ space: AddressSpace) -> LoadError? {
        guard space.levels == .five, let image = segments.bzImage, !image.handlesFiveLevelPaging else { return nil }
        return LoadError(log: ["kexec-bzImage64: bzImage cannot handle 5-level paging mode."])
    }

    /// kexec_calculate_store_digests' choice: indexes into `segments.kexec` of the segments it
    /// hashes, in order. The purgatory's own is never hashed; from 6.16 (and 6.12.94) nor the IMA
    /// segment; a crash image's elfcorehdr by its index (6.11) or — 6.6 to 6.10 — by the number
    /// of segments hashed so far, which drops every later segment too.
    func digestSegments(_ segments: PlacedSegments) -> [Int] {
        // kexec_file's segment numbers: the purgatory sits after `beforePurgatory` segments.
        func number(_ i: Int) -> Int { i < segments.beforePurgatory ? i : i + 1 }
        let elfcorehdr = segments.kexec.firstIndex { $0.name == "elfcorehdr" }.map(number)
        var hashed: [Int] = []
        for (i, segment) in segments.kexec.enumerated() {
            if kernel.skipsIMASegment && segment.name == "ima" { continue }
            switch kernel.elfcorehdrExclusion {
            case .segmentIndex where number(i) == elfcorehdr: continue
            case .hashedCount where hashed.count == elfcorehdr: continue
            default: break
            }
            hashed.append(i)
        }
        return hashed
    }

    /// What bzImage64's probe and kexec_file refuse before anything is loaded.
    private func checkInputs() throws(HarnessError) {
        let names = effectiveABI.registerOrder
        guard names.count == Register.allCases.count, Set(names) == Set(Register.allCases.map(\.description)) else {
            throw .badInput("register order \(names.joined(separator: ",")): must name each of \(Register.allCases.map(\.description).joined(separator: ",")) once")
        }
        try segments.check()
    }

    /// kexec_load_purgatory: layout, section addresses, relocations. The kernel decides this at any
    /// address its loader accepts (buf_min 0x3000, buf_max ULONG_MAX), whatever the machine can hold.
    private func loadPurgatory(_ loader: AnyLoader, at address: UInt64) throws(HarnessError) -> Result<LoadedPurgatory, LoadError> {
        do throws(LoadFailure) {
            return .success(try loader.load(at: address))
        } catch {
            switch error {
            case .malformed(let malformed): throw HarnessError(malformed)
            case .refused(let refusal): return .failure(refusal)
            }
        }
    }

    /// bzImage64_load and kexec_calculate_store_digests: entry64_regs, the digest and region
    /// table, then the user's option symbols. Returns the registers the kernel set.
    private func writeBootInformation(_ purgatory: inout LoadedPurgatory, _ segments: PlacedSegments) throws(HarnessError) -> Result<GeneralRegisters, LoadError> {
        do throws(LoadFailure) {
            let registers = try writeEntryRegisters(&purgatory, bootParams: segments.bootParams.start, kernel: segments.kernel.start)
            try storeDigest(&purgatory, digestSegments(segments).map { segments.kexec[$0] })
            for (name, value) in symbolValues {
                let size = Int(purgatory.findSymbol(name)?.size ?? 0)
                try purgatory.setSymbol(name, littleEndianBytes(value, width: [1, 2, 4, 8].contains(size) ? size : 8))
            }
            return .success(registers)
        } catch {
            switch error {
            case .malformed(let malformed): throw HarnessError(malformed)
            case .refused(let refusal): return .failure(refusal)
            }
        }
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
        registers[.rip] = kernel &+ Self.kernelEntryOffset
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
        let zeros = [UInt8](repeating: 0, count: 1 << 16)
        for segment in segments {
            hasher.update(data: segment.data)
            var tail = segment.memsz &- UInt64(segment.data.count)
            while tail > 0 {
                let chunk = min(tail, UInt64(zeros.count))
                zeros.withUnsafeBytes { hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: $0.prefix(Int(chunk)))) }
                tail -= chunk
            }
            regions += littleEndianBytes(segment.start) + littleEndianBytes(segment.memsz)
        }
        regions += [UInt8](repeating: 0, count: max(0, PurgatoryABI.regionCount * 16 - regions.count))
        try purgatory.setSymbol(abi.regions, regions)
        try purgatory.setSymbol(abi.digest, Array(hasher.finalize()))
    }

    /// Flips one byte of one hashed segment (anywhere in its memsz, the zero tail included).
    static func tamper(_ segments: inout [Segment], among hashed: [Int], _ seed: UInt64) -> RunReport.TamperInfo? {
        guard !hashed.isEmpty else { return nil }
        var rng = SplitMix64.stream(seed, "tamper")
        let index = hashed[Int(rng.next(upperBound: UInt64(hashed.count)))]
        let offset = rng.next(upperBound: segments[index].memsz)
        if offset >= UInt64(segments[index].data.count) {
            segments[index].data += [UInt8](repeating: 0, count: Int(offset) + 1 - segments[index].data.count)
        }
        segments[index].data[Int(offset)] ^= 0xff
        return .init(segment: segments[index].name, offset: offset, address: segments[index].start + offset)
    }

    /// What ima_update_kexec_buffer does at kexec -e: the measurement list, grown by the
    /// measurements since load, copied over the IMA segment (same size, d0a00ce470e3).
    static func rewriteIMA(_ segments: inout [Segment], _ seed: UInt64) -> String? {
        guard let index = segments.firstIndex(where: { $0.name == "ima" }) else { return nil }
        var rng = SplitMix64.stream(seed, "ima-rewrite")
        segments[index].data = rng.bytes(segments[index].data.count)
        return "ima segment \(hex(segments[index].start)) +\(hex(UInt64(segments[index].data.count))) rewritten after the digest was taken"
    }

    /// The UART's port: the purgatory's own `serial_base` when it has one (kexec-tools), else COM1.
    static func uartBase(of purgatory: LoadedPurgatory) -> UInt16 {
        (try? purgatory.getSymbol("serial_base", size: 2)).map { UInt16($0[0]) | UInt16($0[1]) << 8 } ?? 0x3f8
    }

    private func refused(_ refusal: LoadError, _ report: inout RunReport, _ lap: inout Stopwatch) -> RunReport {
        report.verdict = .loadError
        report.message = refusal.message
        report.kernelLog += refusal.log
        report.timings.load = lap.split()
        return report
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
