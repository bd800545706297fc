import ArgumentParser
import Foundation
import Fuzz
import Run

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure verification throughput with and without counting, the host's SHA-256, and per-run costs, in one run.",
        discussion: "Build with -c release for meaningful numbers: swift run -c release purgatory-harness bench")

    @Argument(help: "Purgatory to measure. Default: the built-in reference purgatory.")
    var file: String?

    @Option(help: "Size of the kernel segment hashed for throughput.")
    var bytes = Quantity(argument: "4M")!

    @Option(help: "Passes per counting mode (the fastest is kept).")
    var repeats = 3

    @Option(help: "Small runs averaged for setup, teardown and runs per second.")
    var runs = 300

    func validate() throws {
        guard bytes.value >= 4096, bytes.value <= 1 << 30 else { throw ValidationError("--bytes must be 4 KiB to 1 GiB") }
        guard repeats >= 1, runs >= 1 else { throw ValidationError("--repeats and --runs must be at least 1") }
    }

    func run() throws {
        var bench = Benchmark(file: try Inputs.purgatory(file))
        bench.throughputBytes = Int(bytes.value)
        bench.repeats = repeats
        bench.smallRuns = runs
        let r: Benchmark.Result
        do { r = try bench.run() } catch { throw InputError(error.description) }
        func f(_ format: String, _ args: CVarArg...) -> String { String(format: format, arguments: args) }
        print("purgatory-harness bench \(bench.file.name)")
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
        var placements = PlacementBenchmark(file: bench.file)
        placements.runs = max(runs, 100)
        let p = placements.run()
        print(f("fuzz placements (%d runs of a campaign, small segments, %@ bytes hashed each):", p.runs,
                HumanReport.grouped(p.bytesHashed)))
        print(f("  1 job                   %8.0f placements/s", p.oneJob))
        print(f("  %d jobs                  %8.0f placements/s  (%.2fx; target >= 1500/s on 2 cores: %@)", p.jobs, p.allJobs,
                p.allJobs / p.oneJob, p.allJobs >= 1500 ? "met" : "NOT met"))
    }
}
