import ArgumentParser
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
        let fix = try storeFixRows(file)
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

        var bench = Benchmark(file: file)
        bench.throughputBytes = Int(bytes.value)
        bench.repeats = repeats
        bench.smallRuns = runs
        let r: Benchmark.Result
        do { r = try bench.run() } catch { throw InputError(error.description) }
        var placements = PlacementBenchmark(file: bench.file)
        placements.runs = max(runs, 100)
        let p = placements.run()
        if json {
            output.guest = .init(r, p)
            try printJSON(output)
            if fix.rows.contains(where: { !$0.identical }) { throw ExitCode(ExitStatus.unexpected) }
            return
        }
        print(f("verification of %@ bytes (best of %d, same run):", HumanReport.grouped(r.bytes), repeats))
        print(f("  guest, counting exact   %8.2f MB/s  (%@ instructions, %.2f per byte)", r.exactMBps,
                HumanReport.grouped(r.exactInstructions), Double(r.exactInstructions) / Double(r.bytes)))
        print(f("    %@ blocks entered, %.1f instructions per block", HumanReport.grouped(r.exactBlocks),
                Double(r.exactInstructions) / Double(max(r.exactBlocks, 1))))
        print(f("  guest, counting off     %8.2f MB/s", r.offMBps))
        print(f("  host SHA-256 (swift-crypto) %8.1f MB/s  (%.0fx the guest)", r.hostMBps, r.hostMBps / r.offMBps))
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
        print(f("  1 job                   %8.0f placements/s", p.oneJob))
        print(f("  %d jobs                  %8.0f placements/s  (%.2fx; target >= 1500/s on 2 cores: %@)", p.jobs, p.allJobs,
                p.allJobs / p.oneJob, p.allJobs >= 1500 ? "met" : "NOT met"))
        if fix.rows.contains(where: { !$0.identical }) { throw ExitCode(ExitStatus.unexpected) }
    }

    /// The store-fix A/B: `file` on `--bytes` (as the throughput scenario), and Debian's newest
    /// kernel's purgatory on that kernel's bzImage file (raw) and the busybox initrd, when cached.
    private func storeFixRows(_ file: ELFFile) throws -> (rows: [StoreFixBenchmark.Row], skipped: [String]) {
        guard StoreFix.status == .on || StoreFix.status == .off else {
            return ([], ["store fix A/B not measured: the fix is \(StoreFix.status.rawValue)"])
        }
        var reference = Scenario(file: file, seed: 0xbe_4c4)
        reference.loadAddress = 0x70_0000_0000
        reference.segments.kernelSize = Int(bytes.value)
        reference.segments.kernelMemsz = Int(bytes.value)
        reference.segments.initrdSize = 0
        var cases = [StoreFixBenchmark.Case(name: file.name == DefaultPurgatory.name ? "reference" : file.name, scenario: reference)]
        var skipped: [String] = []
        let cache = Self.debianCache
        let kernel = cache + "/vmlinuz", initrd = cache + "/initrd.img"
        if FileManager.default.fileExists(atPath: kernel), FileManager.default.fileExists(atPath: initrd) {
            let name = (try? FileManager.default.destinationOfSymbolicLink(atPath: kernel)) ?? "vmlinuz"
            var debian = Scenario(file: try Inputs.extracted(kernel).file, seed: 0x64)
            debian.segments.kernel = try Inputs.read(kernel, what: "kernel segment")
            debian.segments.kernelMemsz = debian.segments.kernel?.count  // no zero tail: the file's bytes only
            debian.segments.initrd = try Inputs.read(initrd, what: "initrd segment")
            cases.append(.init(name: name, scenario: debian))
        } else {
            skipped.append("Debian's purgatory not measured: \(kernel) or \(initrd) missing (scripts/fetch-debian-purgatories)")
        }
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
    struct Guest: Encodable {
        var bytes: UInt64, instructions: UInt64, blocks: UInt64
        var exactMBps: Double, offMBps: Double, accountingMBps: Double, traceMBps: Double, hostMBps: Double
        var loadMs: Double, setupMs: Double, teardownMs: Double, runMs: Double
        var placementsOneJob: Double, placementsAllJobs: Double, jobs: Int
        init(_ r: Benchmark.Result, _ p: PlacementBenchmark.Result) {
            (bytes, instructions, blocks) = (r.bytes, r.exactInstructions, r.exactBlocks)
            (exactMBps, offMBps, accountingMBps, traceMBps, hostMBps) = (r.exactMBps, r.offMBps, r.accountingMBps, r.traceMBps, r.hostMBps)
            (loadMs, setupMs, teardownMs, runMs) = (r.load * 1e3, r.setup * 1e3, r.teardown * 1e3, r.perRun * 1e3)
            (placementsOneJob, placementsAllJobs, jobs) = (p.oneJob, p.allJobs, p.jobs)
        }
        enum CodingKeys: String, CodingKey {
            case bytes, instructions, blocks, jobs
            case exactMBps = "exact_mb_per_s", offMBps = "counting_off_mb_per_s", accountingMBps = "accounting_mb_per_s"
            case traceMBps = "trace_mb_per_s", hostMBps = "host_sha256_mb_per_s"
            case loadMs = "load_ms", setupMs = "setup_ms", teardownMs = "teardown_ms", runMs = "run_ms"
            case placementsOneJob = "placements_per_s_1_job", placementsAllJobs = "placements_per_s_all_jobs"
        }
    }
    var unicorn: UnicornInfo
    var storeFixCheck: Check
    var storeFix: [StoreFixRow]
    var storeFixSkipped: [String]
    var guest: Guest?

    enum CodingKeys: String, CodingKey {
        case unicorn, guest
        case storeFixCheck = "store_fix_check", storeFix = "store_fix", storeFixSkipped = "store_fix_skipped"
    }
}
