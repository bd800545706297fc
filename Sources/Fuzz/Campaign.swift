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

    /// The classes the summary counts by: where the kernel's relocation checks change.
    public static let reporting = [
        AddressClass(name: "below 2 GiB", low: 0, high: 1 << 31),
        AddressClass(name: "2-4 GiB", low: 1 << 31, high: 1 << 32),
        AddressClass(name: "4 GiB-1 TiB", low: 1 << 32, high: 1 << 40),
        AddressClass(name: "1 TiB and above", low: 1 << 40, high: .max),
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

    enum CodingKeys: String, CodingKey {
        case file, index, seed, verdict, expected, message, instructions
        case loadAddress = "load_address", addressClass = "address_class"
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
    public var entryRule: EntryRule = .symbol
    public var abi: PurgatoryABI?
    public var expected: Verdict = .verified
    /// nil: spread evenly over log2(address) from 1 MiB to the machine's limit.
    public var ranges: [AddressClass]?
    public var shard = (index: 0, count: 1)
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
        s.abi = abi
        s.segments = segments
        s.loadAddress = drawAddress(for: files[file], seed: runSeed)
        return s
    }

    /// A buf_align-aligned address for the whole purgatory, from the ranges or log-uniformly.
    func drawAddress(for file: ELFFile, seed: UInt64) -> UInt64? {
        let layout = AnyLoader(file: file, kind: loader, entryRule: entryRule).setupBuffer()
        let align = layout.bufAlign, size = layout.segmentSize
        let limit = LongModeMachine.pagingLimit
        guard align & (align - 1) == 0, align < limit, size < limit else { return nil }
        var rng = SplitMix64.stream(seed, "fuzz-address")
        let (low, high): (UInt64, UInt64)
        if let ranges, !ranges.isEmpty {
            let range = ranges[Int(rng.next(upperBound: UInt64(ranges.count)))]
            (low, high) = (range.low, min(range.high, limit))
        } else {
            let bits: UInt64 = 20 + rng.next(upperBound: UInt64(20))  // 2^20 … 2^39
            (low, high) = (UInt64(1) << bits, min(UInt64(1) << (bits + 1), limit))
        }
        let first = (max(low, PurgatoryLoader.minimumAddress) + align - 1) / align * align
        guard high > size, first <= high - size else { return nil }
        let last = (high - size) / align * align
        guard first <= last else { return nil }
        return rng.aligned(in: first, last, alignment: align)
    }

    /// Every (file, index) this shard runs, in order.
    public var work: [(file: Int, index: Int)] {
        files.indices.flatMap { f in (0 ..< runs).map { (f, $0) } }.enumerated()
            .filter { $0.offset % shard.count == shard.index }.map(\.element)
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
            record.verdict = report.verdict
            record.message = report.message
            record.instructions = report.instructions
        } catch {
            record.verdict = .harnessError
            record.message = "\(error)"
        }
        return record
    }
}
