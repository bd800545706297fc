import ArgumentParser
import Containers
import ELF
import Foundation
import Fuzz
import Machine
import Run

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure verification throughput with the store fix on and off, with and without counting, the host's SHA-256, and per-run costs, in one run.",
        discussion: """
            Build with -c release for meaningful numbers: swift run -c release purgatory-harness bench. \
            The store-fix A/B runs the purgatory on --bytes and, when the Debian cache is there, Debian's newest \
            kernel's purgatory on that kernel's bzImage file and the busybox initrd (13 MB hashed).
            """)

    @Argument(help: "Purgatory to measure. Default: the built-in reference purgatory.")
    var file: String?

    @Option(help: "Size of the kernel segment hashed for throughput.")
    var bytes = Quantity(argument: "4M")!

    @Option(help: "Passes per counting mode (the fastest is kept).")
    var repeats = 3

    @Option(help: "Small runs averaged for setup, teardown and runs per second.")
    var runs = 300

    @Option(help: "On/off pairs per store-fix case (the fastest of each side is kept).")
    var storeFixRepeats = 2

    @Flag(help: "Only the store fix: its status and the on/off throughput (about 15 s).")
    var storeFixOnly = false

    @Flag(help: "Only --fast-hash against full emulation (the reference on --bytes, Debian's newest purgatory on its bzImage file and initrd).")
    var fastHashOnly = false

    @Flag(help: "Also --fast-hash against full emulation on Debian's newest kernel loaded as bzImage64_load does with the initrd (about 60 MB hashed; full emulation takes 10-20 s).")
    var fastHashDebian = false

    @Flag(help: "Print one JSON object instead of the report.")
    var json = false

    func validate() throws {
        guard bytes.value >= 4096, bytes.value <= 1 << 30 else { throw ValidationError("--bytes must be 4 KiB to 1 GiB") }
        guard repeats >= 1, runs >= 1, storeFixRepeats >= 1 else { throw ValidationError("--repeats, --runs and --store-fix-repeats must be at least 1") }
    }

    func run() throws {
        let file = try Inputs.purgatory(file)
        func f(_ format: String, _ args: CVarArg...) -> String { String(format: format, arguments: args) }
        let check = StoreFix.check
        let fix = fastHashOnly ? (rows: [], skipped: ["store fix A/B not measured (--fast-hash-only)"]) : try storeFixRows(file)
        var output = BenchJSON(unicorn: .current, storeFixCheck: .init(check), storeFix: fix.rows.map(BenchJSON.StoreFixRow.init),
                               storeFixSkipped: fix.skipped)
        if !json {
            print("purgatory-harness bench \(file.name)")
            print("unicorn \(LongModeMachine.unicornVersion), store fix \(StoreFix.statusDescription)"
                  + (check.interposed ? " (checked: a one-store guest run called the interposed page_collection_lock \(check.probeCalls) time(s))" : ""))
            if !fix.rows.isEmpty {
                print(f("store fix on vs off, exact counting + accounting (best of %d pairs, same run):", storeFixRepeats))
                let width = fix.rows.map(\.name.count).max() ?? 0
                for row in fix.rows {
                    print(f("  %@  %10@ bytes  %6.2f MB/s on  %6.2f MB/s off  %5.2fx  (%@ instructions, %@; %.1f s)",
                            row.name.padding(toLength: width, withPad: " ", startingAt: 0),
                            HumanReport.grouped(row.bytes), row.onMBps, row.offMBps, row.speedup, HumanReport.grouped(row.instructions),
                            row.identical ? "identical reports" : "REPORTS DIFFER", row.seconds))
                }
            }
            for note in fix.skipped { print("  " + note) }
        }
        guard !storeFixOnly else {
            if json { try printJSON(output) }
            if fix.rows.contains(where: { !$0.identical }) { throw ExitCode(ExitStatus.unexpected) }
            return
        }
        let fast = try fastHashRows(file)
        output.fastHash = fast.rows.map(BenchJSON.FastHashRow.init)
        output.fastHashSkipped = fast.skipped
        if !json { printFastHash(fast) }
        let failed = fix.rows.contains { !$0.identical } || fast.rows.contains { !$0.identical }
        guard !fastHashOnly else {
            output.targets = .init(fix: fix.rows, guest: nil, placements: nil, fastHash: fast.rows)
            if json { try printJSON(output) }
            if failed { throw ExitCode(ExitStatus.unexpected) }
            return
        }

        var bench = Benchmark(file: file)
        bench.throughputBytes = Int(bytes.value)
        bench.repeats = repeats
        bench.smallRuns = runs
        let r: Benchmark.Result
        do { r = try bench.run() } catch { throw InputError(error.description) }
        var placements = PlacementBenchmark(file: bench.file)
        placements.runs = max(runs, 100)
        let p = placements.run()
        let split = placements.breakdown()
        if json {
            output.guest = .init(r, p, split)
            output.targets = .init(fix: fix.rows, guest: r, placements: p, fastHash: fast.rows)
            try printJSON(output)
            if failed { throw ExitCode(ExitStatus.unexpected) }
            return
        }
        print(f("verification of %@ bytes (best of %d, same run):", HumanReport.grouped(r.bytes), repeats))
        print(f("  guest, counting exact   %8.2f MB/s  (%@ instructions, %.2f per byte)", r.exactMBps,
                HumanReport.grouped(r.exactInstructions), Double(r.exactInstructions) / Double(r.bytes)))
        print(f("    %@ blocks entered, %.1f instructions per block", HumanReport.grouped(r.exactBlocks),
                Double(r.exactInstructions) / Double(max(r.exactBlocks, 1))))
        print(f("  guest, counting off     %8.2f MB/s", r.offMBps))
        print(f("  host SHA-256 (swift-crypto) %8.1f MB/s  (%.0fx the guest)", r.hostMBps, r.hostMBps / r.offMBps))
        print(f("  host SHA-256 block function (libcrypto SHA256_Transform, --fast-hash) %.1f MB/s", r.hostBlockMBps))
        print(f("  counting cost           %8.1f %%      target <= 5 %%: %@", r.countingCost * 100, r.countingCost <= 0.05 ? "met" : "NOT met"))
        print(f("  guest, exact + accounting %6.2f MB/s  (functions and phases: every run's default)", r.accountingMBps))
        print(f("  accounting cost         %8.1f %%      (vs exact counting alone)", r.accountingCost * 100))
        print(f("  guest, + trace recorded %8.2f MB/s  (run --trace: every block in order)", r.traceMBps))
        print(f("  trace recording cost    %8.1f %%      (vs exact + accounting)", r.traceCost * 100))
        print(f("one run, mean of %d small runs (%@ bytes hashed each):", r.smallRuns, HumanReport.grouped(r.smallBytes)))
        print(f("  load (layout, relocate, digest) %7.3f ms", r.load * 1e3))
        print(f("  setup (engine, map, tables)     %7.3f ms", r.setup * 1e3))
        print(f("  teardown (uc_close)             %7.3f ms", r.teardown * 1e3))
        print(f("  setup + teardown                %7.3f ms  target <= 1 ms: %@", (r.setup + r.teardown) * 1e3,
                r.setup + r.teardown <= 1e-3 ? "met" : "NOT met"))
        print(f("    of which uc_open + uc_close alone   %7.3f ms", r.engineOnly * 1e3))
        print(f("    uc_open + 5 x uc_mem_map + uc_close %7.3f ms", r.engineAndMaps * 1e3))
        print(f("  whole run                       %7.3f ms  (%.0f runs/s on one core)", r.perRun * 1e3, 1 / r.perRun))
        print(f("  wall time, accounting on / off  %7.3f / %.3f ms  (attribution after the run: %+.3f ms)", r.wallWithAccounting * 1e3,
                r.wallWithoutAccounting * 1e3, (r.wallWithAccounting - r.wallWithoutAccounting) * 1e3))
        print(f("fuzz placements (%d runs of a campaign, small segments, %@ bytes hashed each):", p.runs,
                HumanReport.grouped(p.bytesHashed)))
        print(f("  1 job                   %8.0f placements/s  (%.0f per CPU-second: target >= 580 per core, 2x wave 1's 290: %@)",
                p.oneJob, p.oneJobPerCPUSecond, p.oneJobPerCPUSecond >= 580 ? "met" : "NOT met"))
        print(f("  %d jobs                  %8.0f placements/s  (%.2fx one job)", p.jobs, p.allJobs, p.allJobs / p.oneJob))
        print(f("one placement, mean of %d, by phase (pooled engine | fresh engine, alternated):", split.reused.runs))
        for (name, a, b) in [("load (layout, relocate, digest)", split.reused.load, split.fresh.load),
                             ("setup (engine, maps, tables)", split.reused.setup, split.fresh.setup),
                             ("emulation (translation + run)", split.reused.emulation, split.fresh.emulation),
                             ("teardown (unmap | uc_close)", split.reused.teardown, split.fresh.teardown),
                             ("results (decode, judge, account)", split.reused.results, split.fresh.results),
                             ("other (draw, record)", split.reused.other, split.fresh.other),
                             ("whole placement", split.reused.total, split.fresh.total),
                             ("CPU time", split.reused.cpu, split.fresh.cpu)] {
            print(f("  %@ %7.3f ms | %7.3f ms", name.padding(toLength: 33, withPad: " ", startingAt: 0), a * 1e3, b * 1e3))
        }
        if failed { throw ExitCode(ExitStatus.unexpected) }
    }

    private func printFastHash(_ fast: (rows: [FastHashBenchmark.Row], skipped: [String])) {
        func f(_ format: String, _ args: CVarArg...) -> String { String(format: format, arguments: args) }
        if !fast.rows.isEmpty { print("--fast-hash vs full emulation, same segments (emulation phase; whole run in brackets):") }
        let width = fast.rows.map(\.name.count).max() ?? 0
        for row in fast.rows {
            let host = row.fastHash.map { "\(HumanReport.grouped($0.hostBlocks)) host / \(HumanReport.grouped($0.emulatedBlocks)) emulated blocks" } ?? ""
            print(f("  %@  %11@ bytes  full %7.3f s  fast %7.3f s  %6.1fx (%5.1fx)  %@ %@ instructions, %@; %@",
                    row.name.padding(toLength: width, withPad: " ", startingAt: 0), HumanReport.grouped(row.bytes),
                    row.fullEmulation, row.fastEmulation, row.speedup, row.totalSpeedup, row.verdict.rawValue,
                    HumanReport.grouped(row.instructions), row.identical ? "identical reports" : "REPORTS DIFFER", host))
        }
        for note in fast.skipped { print("  " + note) }
    }

    /// --fast-hash against full emulation: `file` on `--bytes`, Debian's newest purgatory on its
    /// bzImage file and the initrd (raw segments), and with --fast-hash-debian the real layout.
    private func fastHashRows(_ file: ELFFile) throws -> (rows: [FastHashBenchmark.Row], skipped: [String]) {
        let common = try commonCases(file)
        var cases = common.cases
        let skipped = common.skipped
        let kernel = Self.debianCache + "/vmlinuz", initrd = Self.debianCache + "/initrd.img"
        if fastHashDebian, skipped.isEmpty {
            let name = (try? FileManager.default.destinationOfSymbolicLink(atPath: kernel)) ?? "vmlinuz"
            let extracted = try Inputs.extracted(kernel)
            let bytes = try Inputs.read(kernel, what: "kernel segment")
            var real = Scenario(file: extracted.file, seed: 0x64)
            do { real.segments.bzImage = try BzImage(bytes: bytes) } catch { throw InputError("\(kernel): \(error)") }
            real.segments.kernelName = kernel
            real.segments.initrd = try Inputs.read(initrd, what: "initrd segment")
            if let release = real.segments.bzImage?.kernelRelease, let version = KernelVersion(release: release) {
                (real.kernel, real.kernelSource) = (KernelProfile(name: "linux-\(version)", version: version), "version string of \(kernel)")
            }
            cases.append(.init(name: name + " as bzImage64_load", scenario: real))
        }
        do { return (try FastHashBenchmark(cases: cases).run(), skipped) } catch { throw InputError(error.description) }
    }

    /// The cases both side-by-side benchmarks run: `file` on `--bytes` (the throughput scenario), and
    /// Debian's newest kernel's purgatory on that kernel's bzImage file (raw) and the busybox initrd,
    /// when cached (else a note saying why not).
    private func commonCases(_ file: ELFFile) throws -> (cases: [BenchmarkCase], skipped: [String]) {
        var cases = [BenchmarkCase(name: file.name == DefaultPurgatory.name ? "reference" : file.name, scenario: throughputScenario(file))]
        let kernel = Self.debianCache + "/vmlinuz", initrd = Self.debianCache + "/initrd.img"
        guard FileManager.default.fileExists(atPath: kernel), FileManager.default.fileExists(atPath: initrd) else {
            return (cases, ["Debian's purgatory not measured: \(kernel) or \(initrd) missing (scripts/fetch-debian-purgatories)"])
        }
        let name = (try? FileManager.default.destinationOfSymbolicLink(atPath: kernel)) ?? "vmlinuz"
        cases.append(.init(name: name, scenario: try debianScenario(try Inputs.extracted(kernel).file)))
        return (cases, [])
    }

    /// The throughput scenario: the purgatory hashing one `--bytes` kernel segment at 0x70_0000_0000.
    private func throughputScenario(_ file: ELFFile) -> Scenario {
        var s = Scenario(file: file, seed: 0xbe_4c4)
        s.loadAddress = 0x70_0000_0000
        s.segments.kernelSize = Int(bytes.value)
        s.segments.kernelMemsz = Int(bytes.value)
        s.segments.initrdSize = 0
        return s
    }

    /// Debian's newest kernel's purgatory hashing that kernel's bzImage file (raw) and the initrd.
    private func debianScenario(_ purgatory: ELFFile) throws -> Scenario {
        let cache = Self.debianCache
        var debian = Scenario(file: purgatory, seed: 0x64)
        debian.segments.kernel = try Inputs.read(cache + "/vmlinuz", what: "kernel segment")
        debian.segments.kernelMemsz = debian.segments.kernel?.count  // no zero tail: the file's bytes only
        debian.segments.initrd = try Inputs.read(cache + "/initrd.img", what: "initrd segment")
        return debian
    }

    /// The store-fix A/B: `file` on `--bytes` (as the throughput scenario), and Debian's newest
    /// kernel's purgatory on that kernel's bzImage file (raw) and the busybox initrd, when cached.
    private func storeFixRows(_ file: ELFFile) throws -> (rows: [StoreFixBenchmark.Row], skipped: [String]) {
        guard StoreFix.status == .on || StoreFix.status == .off else {
            return ([], ["store fix A/B not measured: the fix is \(StoreFix.status.rawValue)"])
        }
        let (cases, skipped) = try commonCases(file)
        var ab = StoreFixBenchmark(cases: cases)
        ab.repeats = storeFixRepeats
        do { return (try ab.run(), skipped) } catch { throw InputError(error.description) }
    }

    /// scripts/fetch-debian-purgatories' cache: $PURGATORY_HARNESS_CACHE, else $XDG_CACHE_HOME or ~/.cache.
    static var debianCache: String {
        let environment = ProcessInfo.processInfo.environment
        if let path = environment["PURGATORY_HARNESS_CACHE"], !path.isEmpty { return path }
        let base = environment["XDG_CACHE_HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? (NSHomeDirectory() + "/.cache")
        return base + "/purgatory-harness/debian"
    }
}

/// `bench --json`: stable snake_case keys; `guest` is absent with --store-fix-only.
struct BenchJSON: Encodable {
    struct Check: Encodable {
        var libraryHasSymbols: Bool, resolvesHere: Bool, probeCalls: UInt64, problem: String?
        init(_ c: StoreFix.Check) {
            (libraryHasSymbols, resolvesHere, probeCalls, problem) = (c.libraryHasSymbols, c.resolvesHere, c.probeCalls, c.problem)
        }
        enum CodingKeys: String, CodingKey {
            case libraryHasSymbols = "library_has_symbols", resolvesHere = "resolves_here", probeCalls = "probe_calls", problem
        }
        /// Every key always, `problem` null when the fix is interposed.
        func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(libraryHasSymbols, forKey: .libraryHasSymbols)
            try c.encode(resolvesHere, forKey: .resolvesHere)
            try c.encode(probeCalls, forKey: .probeCalls)
            try c.encode(problem, forKey: .problem)
        }
    }
    struct StoreFixRow: Encodable {
        var name: String, file: String, bytes: UInt64, instructions: UInt64
        var onMBps: Double, offMBps: Double, speedup: Double, identical: Bool, seconds: Double
        init(_ r: StoreFixBenchmark.Row) {
            (name, file, bytes, instructions) = (r.name, r.file, r.bytes, r.instructions)
            (onMBps, offMBps, speedup, identical, seconds) = (r.onMBps, r.offMBps, r.speedup, r.identical, r.seconds)
        }
        enum CodingKeys: String, CodingKey {
            case name, file, bytes, instructions, identical, seconds, speedup
            case onMBps = "on_mb_per_s", offMBps = "off_mb_per_s"
        }
    }
    struct Placement: Encodable {
        var loadMs: Double, setupMs: Double, emulationMs: Double, teardownMs: Double, resultsMs: Double, otherMs: Double
        var totalMs: Double, cpuMs: Double
        init(_ b: PlacementBenchmark.Breakdown) {
            (loadMs, setupMs, emulationMs, teardownMs) = (b.load * 1e3, b.setup * 1e3, b.emulation * 1e3, b.teardown * 1e3)
            (resultsMs, otherMs, totalMs, cpuMs) = (b.results * 1e3, b.other * 1e3, b.total * 1e3, b.cpu * 1e3)
        }
        enum CodingKeys: String, CodingKey {
            case loadMs = "load_ms", setupMs = "setup_ms", emulationMs = "emulation_ms", teardownMs = "teardown_ms"
            case resultsMs = "results_ms", otherMs = "other_ms", totalMs = "total_ms", cpuMs = "cpu_ms"
        }
    }
    struct Guest: Encodable {
        var bytes: UInt64, instructions: UInt64, blocks: UInt64
        var exactMBps: Double, offMBps: Double, accountingMBps: Double, traceMBps: Double, hostMBps: Double, hostBlockMBps: Double
        var countingCost: Double
        var loadMs: Double, setupMs: Double, teardownMs: Double, setupTeardownMs: Double, runMs: Double
        var placementsOneJob: Double, placementsAllJobs: Double, placementsPerCPUSecond: Double, jobs: Int
        var placementBytes: UInt64
        var placementPooledEngine: Placement, placementFreshEngine: Placement
        init(_ r: Benchmark.Result, _ p: PlacementBenchmark.Result, _ split: (reused: PlacementBenchmark.Breakdown, fresh: PlacementBenchmark.Breakdown)) {
            (bytes, instructions, blocks) = (r.bytes, r.exactInstructions, r.exactBlocks)
            (exactMBps, offMBps, accountingMBps, traceMBps, hostMBps) = (r.exactMBps, r.offMBps, r.accountingMBps, r.traceMBps, r.hostMBps)
            (hostBlockMBps, countingCost) = (r.hostBlockMBps, r.countingCost)
            (loadMs, setupMs, teardownMs, runMs) = (r.load * 1e3, r.setup * 1e3, r.teardown * 1e3, r.perRun * 1e3)
            setupTeardownMs = (r.setup + r.teardown) * 1e3
            (placementsOneJob, placementsAllJobs, placementsPerCPUSecond, jobs) = (p.oneJob, p.allJobs, p.oneJobPerCPUSecond, p.jobs)
            placementBytes = p.bytesHashed
            (placementPooledEngine, placementFreshEngine) = (Placement(split.reused), Placement(split.fresh))
        }
        enum CodingKeys: String, CodingKey {
            case bytes, instructions, blocks, jobs
            case exactMBps = "exact_mb_per_s", offMBps = "counting_off_mb_per_s", accountingMBps = "accounting_mb_per_s"
            case traceMBps = "trace_mb_per_s", hostMBps = "host_sha256_mb_per_s", hostBlockMBps = "host_sha256_block_mb_per_s"
            case countingCost = "counting_cost"
            case loadMs = "load_ms", setupMs = "setup_ms", teardownMs = "teardown_ms", setupTeardownMs = "setup_teardown_ms", runMs = "run_ms"
            case placementsOneJob = "placements_per_s_1_job", placementsAllJobs = "placements_per_s_all_jobs"
            case placementsPerCPUSecond = "placements_per_cpu_second_1_job", placementBytes = "placement_bytes_hashed"
            case placementPooledEngine = "placement_pooled_engine", placementFreshEngine = "placement_fresh_engine"
        }
    }
    struct FastHashRow: Encodable {
        var name: String, file: String, bytes: UInt64, verdict: String, instructions: UInt64
        var fullSeconds: Double, fastSeconds: Double, speedup: Double, fullTotalSeconds: Double, fastTotalSeconds: Double, totalSpeedup: Double
        var identical: Bool, hostBlocks: UInt64, emulatedBlocks: UInt64, instructionsPerBlock: UInt64?, fellBack: String?
        init(_ r: FastHashBenchmark.Row) {
            (name, file, bytes, verdict, instructions) = (r.name, r.file, r.bytes, r.verdict.rawValue, r.instructions)
            (fullSeconds, fastSeconds, speedup) = (r.fullEmulation, r.fastEmulation, r.speedup)
            (fullTotalSeconds, fastTotalSeconds, totalSpeedup) = (r.fullTotal, r.fastTotal, r.totalSpeedup)
            identical = r.identical
            (hostBlocks, emulatedBlocks) = (r.fastHash?.hostBlocks ?? 0, r.fastHash?.emulatedBlocks ?? 0)
            (instructionsPerBlock, fellBack) = (r.fastHash?.instructionsPerBlock, r.fastHash?.fellBack)
        }
        enum CodingKeys: String, CodingKey {
            case name, file, bytes, verdict, instructions, speedup, identical
            case fullSeconds = "full_emulation_s", fastSeconds = "fast_hash_emulation_s"
            case fullTotalSeconds = "full_total_s", fastTotalSeconds = "fast_hash_total_s", totalSpeedup = "total_speedup"
            case hostBlocks = "host_blocks", emulatedBlocks = "emulated_blocks", instructionsPerBlock = "instructions_per_block"
            case fellBack = "fell_back"
        }
        func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(name, forKey: .name); try c.encode(file, forKey: .file); try c.encode(bytes, forKey: .bytes)
            try c.encode(verdict, forKey: .verdict); try c.encode(instructions, forKey: .instructions)
            try c.encode(fullSeconds, forKey: .fullSeconds); try c.encode(fastSeconds, forKey: .fastSeconds); try c.encode(speedup, forKey: .speedup)
            try c.encode(fullTotalSeconds, forKey: .fullTotalSeconds); try c.encode(fastTotalSeconds, forKey: .fastTotalSeconds)
            try c.encode(totalSpeedup, forKey: .totalSpeedup); try c.encode(identical, forKey: .identical)
            try c.encode(hostBlocks, forKey: .hostBlocks); try c.encode(emulatedBlocks, forKey: .emulatedBlocks)
            try c.encode(instructionsPerBlock, forKey: .instructionsPerBlock); try c.encode(fellBack, forKey: .fellBack)
        }
    }
    /// The issue's targets, each null when this bench did not measure it.
    struct Targets: Encodable {
        /// Store fix: guest MB/s with the fix at least 2× without, on every case.
        var storeFixSpeedup2x: Bool?
        /// Exact counting costs at most 5 % of the guest's throughput.
        var countingCost5Percent: Bool?
        /// Placements per CPU-second with one job at least 2 × 290.
        var placements580PerCore: Bool?
        /// --fast-hash at least 20× faster than full emulation (emulation phase) on the bzImage64 layout, identical.
        var fastHash20xDebian: Bool?
        /// Every fast-hash case identical to full emulation.
        var fastHashIdentical: Bool?
        init(fix: [StoreFixBenchmark.Row], guest: Benchmark.Result?, placements: PlacementBenchmark.Result?, fastHash: [FastHashBenchmark.Row]) {
            storeFixSpeedup2x = fix.isEmpty ? nil : fix.allSatisfy { $0.speedup >= 2 }
            countingCost5Percent = guest.map { $0.countingCost <= 0.05 }
            placements580PerCore = placements.map { $0.oneJobPerCPUSecond >= 580 }
            let layout = fastHash.first { $0.name.hasSuffix("as bzImage64_load") }
            fastHash20xDebian = layout.map { $0.speedup >= 20 && $0.identical }
            fastHashIdentical = fastHash.isEmpty ? nil : fastHash.allSatisfy(\.identical)
        }
        enum CodingKeys: String, CodingKey {
            case storeFixSpeedup2x = "store_fix_speedup_2x", countingCost5Percent = "counting_cost_5_percent"
            case placements580PerCore = "placements_580_per_core", fastHash20xDebian = "fast_hash_20x_debian"
            case fastHashIdentical = "fast_hash_identical"
        }
        func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(storeFixSpeedup2x, forKey: .storeFixSpeedup2x)
            try c.encode(countingCost5Percent, forKey: .countingCost5Percent)
            try c.encode(placements580PerCore, forKey: .placements580PerCore)
            try c.encode(fastHash20xDebian, forKey: .fastHash20xDebian)
            try c.encode(fastHashIdentical, forKey: .fastHashIdentical)
        }
    }
    var unicorn: UnicornInfo
    var storeFixCheck: Check
    var storeFix: [StoreFixRow]
    var storeFixSkipped: [String]
    var guest: Guest?
    var fastHash: [FastHashRow]?
    var fastHashSkipped: [String]?
    var targets: Targets?

    enum CodingKeys: String, CodingKey {
        case unicorn, guest, targets
        case storeFixCheck = "store_fix_check", storeFix = "store_fix", storeFixSkipped = "store_fix_skipped"
        case fastHash = "fast_hash", fastHashSkipped = "fast_hash_skipped"
    }
}
