import ELF
import Foundation
import Loader
import Machine
import Run

/// Where fuzzed load addresses come from, and how results are grouped.
public struct AddressClass: Sendable, Equatable, Codable {
    public var name: String
    public var low: UInt64
    public var high: UInt64  // exclusive

    public init(name: String, low: UInt64, high: UInt64) {
        self.name = name
        self.low = low
        self.high = high
    }

    /// The classes the summary counts by: where the kernel's relocation checks change (2 and
    /// 4 GiB: R_X86_64_32S and 32), where Unicorn stops walking page tables (1 TiB: flat runs
    /// above), and where identity mapping needs 5-level paging (128 TiB = 2^47).
    public static let reporting = [
        AddressClass(name: "below 2 GiB", low: 0, high: 1 << 31),
        AddressClass(name: "2-4 GiB", low: 1 << 31, high: 1 << 32),
        AddressClass(name: "4 GiB-1 TiB", low: 1 << 32, high: 1 << 40),
        AddressClass(name: "1-128 TiB", low: 1 << 40, high: 1 << 47),
        AddressClass(name: "128 TiB and above", low: 1 << 47, high: .max),
    ]

    public static func name(of address: UInt64) -> String {
        reporting.first { address >= $0.low && address < $0.high }?.name ?? "?"
    }
}

/// One run of a campaign, as written to JSONL.
public struct FuzzRecord: Codable, Sendable, Equatable {
    public var file: String
    public var index: Int
    public var seed: UInt64
    public var loadAddress: UInt64
    public var addressClass: String
    public var verdict: Verdict
    public var expected: Verdict
    public var message: String
    public var instructions: UInt64
    /// The WARN the kernel printed while loading, if it did.
    public var kernelWarning: String? = nil
    /// The run counts against the campaign: a verdict other than the expected one, or — with
    /// `--deny-warnings` — the kernel's WARN.
    public var unexpected = false

    enum CodingKeys: String, CodingKey {
        case file, index, seed, verdict, expected, message, instructions, unexpected
        case loadAddress = "load_address", addressClass = "address_class", kernelWarning = "kernel_warning"
    }

    public init(file: String, index: Int, seed: UInt64, loadAddress: UInt64, addressClass: String, verdict: Verdict,
                expected: Verdict, message: String, instructions: UInt64, kernelWarning: String? = nil, unexpected: Bool? = nil) {
        self.file = file
        self.index = index
        self.seed = seed
        self.loadAddress = loadAddress
        self.addressClass = addressClass
        self.verdict = verdict
        self.expected = expected
        self.message = message
        self.instructions = instructions
        self.kernelWarning = kernelWarning
        self.unexpected = unexpected ?? (verdict != expected)
    }

    /// Lines written before `unexpected` and `kernel_warning` existed read as they meant then.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(file: try c.decode(String.self, forKey: .file), index: try c.decode(Int.self, forKey: .index),
                  seed: try c.decode(UInt64.self, forKey: .seed), loadAddress: try c.decode(UInt64.self, forKey: .loadAddress),
                  addressClass: try c.decode(String.self, forKey: .addressClass), verdict: try c.decode(Verdict.self, forKey: .verdict),
                  expected: try c.decode(Verdict.self, forKey: .expected), message: try c.decode(String.self, forKey: .message),
                  instructions: try c.decode(UInt64.self, forKey: .instructions),
                  kernelWarning: try c.decodeIfPresent(String.self, forKey: .kernelWarning),
                  unexpected: try c.decodeIfPresent(Bool.self, forKey: .unexpected))
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(file, forKey: .file)
        try c.encode(index, forKey: .index)
        try c.encode(seed, forKey: .seed)
        try c.encode(loadAddress, forKey: .loadAddress)
        try c.encode(addressClass, forKey: .addressClass)
        try c.encode(verdict, forKey: .verdict)
        try c.encode(expected, forKey: .expected)
        try c.encode(message, forKey: .message)
        try c.encode(instructions, forKey: .instructions)
        try c.encode(kernelWarning, forKey: .kernelWarning)
        try c.encode(unexpected, forKey: .unexpected)
    }
}

/// A seeded campaign over load addresses. Run `i` of file `f` under seed `S` draws its load
/// address and its segments from (S, f, i) alone, so it is the same on every machine, with any
/// number of jobs, in any shard.
public struct Campaign: Sendable {
    public var files: [ELFFile]
    public var runs: Int
    public var seed: UInt64
    public var jobs = 1
    public var loader: LoaderKind = .kexecFile
    /// nil: the kernel profile's rule.
    public var entryRule: EntryRule?
    /// The loading kernel and where it was named (see Scenario.kernel).
    public var kernel = KernelProfile.latest
    public var kernelSource = "default"
    public var tdxGuest = false
    public var earlySerialPort: UInt16?
    public var abi: PurgatoryABI?
    public var expected: Verdict = .verified
    /// nil: spread evenly over log2(address) from 1 MiB to the machine's limit.
    public var ranges: [AddressClass]?
    /// The machine every run uses (physical width, paging).
    public var machine = MachineOptions()
    /// Each run's instruction budget (nil: the scenario's default).
    public var budget: UInt64?
    /// A run whose load makes the kernel WARN counts as unexpected, whatever its verdict.
    public var denyWarnings = false
    public var shard = (index: 0, count: 1)
    /// `--fast-hash` for every run (Scenario.fastHash).
    public var fastHash = false
    /// Small segments: one page of kernel, no initrd, a short command line.
    public var segments: SegmentPlan = {
        var plan = SegmentPlan()
        plan.kernelSize = 4096
        plan.kernelMemsz = 4096
        plan.initrdSize = 0
        plan.commandLine = "console=ttyS0"
        return plan
    }()

    public init(files: [ELFFile], runs: Int, seed: UInt64) {
        self.files = files
        self.runs = runs
        self.seed = seed
    }

    public static let lowestAddress: UInt64 = 1 << 20

    /// The seed of run `index` of file number `file`.
    public func runSeed(file: Int, index: Int) -> UInt64 {
        var rng = SplitMix64.stream(seed, "run \(file) \(index)")
        return rng.next()
    }

    /// The scenario for run `index` of file number `file` (nil address: the file cannot be placed).
    public func scenario(file: Int, index: Int) -> Scenario {
        let runSeed = runSeed(file: file, index: index)
        var s = Scenario(file: files[file], seed: runSeed)
        s.loader = loader
        s.entryRule = entryRule
        s.kernel = kernel
        s.kernelSource = kernelSource
        s.tdxGuest = tdxGuest
        s.earlySerialPort = earlySerialPort
        s.abi = abi
        s.segments = segments
        s.machine = machine
        s.budget = budget
        s.loadAddress = drawAddress(for: files[file], seed: runSeed)
        s.fastHash = fastHash
        s.accounting = false  // a campaign's records carry verdicts and counts, not where the count went
        return s
    }

    /// The ranges load addresses are drawn from: the user's, or one per power of two from 1 MiB
    /// to the machine's RAM limit (so the draw is log-uniform).
    public var drawRanges: [AddressClass] {
        if let ranges, !ranges.isEmpty { return ranges }
        let top = 63 - machine.ramLimit.leadingZeroBitCount
        return (20 ..< top).map { AddressClass(name: "2^\($0)", low: 1 << UInt64($0), high: 1 << UInt64($0 + 1)) }
    }

    /// Why this campaign cannot run, before anything runs: a range beyond the machine's RAM, or
    /// with no room for a purgatory.
    public func refusal() -> String? {
        if let why = machine.refusal { return why }
        for range in ranges ?? [] where range.high > machine.ramLimit {
            return "--range \(range.name): reaches \(hex(range.high)), beyond the machine's RAM (below \(hex(machine.ramLimit)): --phys-bits \(machine.physicalBits)\(machine.paging == .four ? ", --paging 4" : ""))"
        }
        for file in files {
            let layout = AnyLoader(file: file, kind: loader, entryRule: entryRule ?? kernel.entryRule).setupBuffer()
            for range in drawRanges where slots(in: range, layout) == nil {
                return "\(file.name): --range \(range.name) has no \(hex(layout.bufAlign))-aligned place for the \(hex(layout.segmentSize))-byte purgatory"
            }
        }
        return nil
    }

    /// The first and last buf_align-aligned load addresses in `range` that keep the purgatory inside it.
    func slots(in range: AddressClass, _ layout: BufferLayout) -> (first: UInt64, last: UInt64)? {
        let align = layout.bufAlign, size = layout.segmentSize
        guard align > 0, align & (align - 1) == 0, size > 0, range.high > size else { return nil }
        let low = max(range.low, PurgatoryLoader.minimumAddress)
        let first = kernelAlign(low, align)
        guard first >= low, first <= range.high - size else { return nil }
        return (first, (range.high - size) / align * align)
    }

    /// A buf_align-aligned address for the whole purgatory, from one of the draw ranges.
    func drawAddress(for file: ELFFile, seed: UInt64) -> UInt64? {
        let layout = AnyLoader(file: file, kind: loader, entryRule: entryRule ?? kernel.entryRule).setupBuffer()
        var rng = SplitMix64.stream(seed, "fuzz-address")
        let ranges = drawRanges
        let range = ranges[Int(rng.next(upperBound: UInt64(ranges.count)))]
        guard let (first, last) = slots(in: range, layout) else { return nil }
        return rng.aligned(in: first, last, alignment: layout.bufAlign)
    }

    /// Every (file, index) this shard runs, in order.
    public var work: [(file: Int, index: Int)] {
        files.indices.flatMap { f in (0 ..< runs).map { (f, $0) } }.enumerated()
            .filter { $0.offset % shard.count == shard.index }.map(\.element)
    }

    /// How a run counts: its verdict and message, the kernel's WARN, and whether it is unexpected
    /// (another verdict; or, with `denyWarnings`, a WARN — then the message is the WARN).
    func judge(_ report: RunReport) -> (verdict: Verdict, message: String, warning: String?, unexpected: Bool) {
        let warning = report.kernelLog.first { $0.hasPrefix("WARNING:") }
        if report.verdict == expected, denyWarnings, let warning { return (report.verdict, "kernel " + warning, warning, true) }
        return (report.verdict, report.message, warning, report.verdict != expected)
    }

    /// Runs one item; bad input (an address the machine cannot model) becomes a record too.
    public func execute(file: Int, index: Int) -> FuzzRecord {
        let s = scenario(file: file, index: index)
        var record = FuzzRecord(file: files[file].name, index: index, seed: s.seed, loadAddress: s.loadAddress ?? 0,
                                addressClass: AddressClass.name(of: s.loadAddress ?? 0), verdict: .loadError,
                                expected: expected, message: "", instructions: 0)
        guard s.loadAddress != nil else {
            record.verdict = .harnessError
            record.message = "no address in the chosen ranges fits the purgatory"
            return record
        }
        do {
            let report = try s.run()
            (record.verdict, record.message, record.kernelWarning, record.unexpected) = judge(report)
            record.instructions = report.instructions
        } catch {
            record.verdict = .harnessError
            record.message = "\(error)"
            record.unexpected = expected != .harnessError
        }
        return record
    }
}
