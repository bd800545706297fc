import ArgumentParser
import Containers
import ELF
import Foundation
import Fuzz
import Loader
import Machine
import Run

/// `LO-HI` (either bound with K/M/G/T or 0x): an address range for --range.
struct AddressRange: ExpressibleByArgument {
    var range: AddressClass
    init?(argument: String) {
        let parts = argument.split(separator: "-", maxSplits: 1).map(String.init)
        guard parts.count == 2, let low = Quantity(argument: parts[0])?.value, let high = Quantity(argument: parts[1])?.value,
              high > low else { return nil }
        range = AddressClass(name: argument, low: low, high: high)
    }
}

/// `i/n` for --shard.
struct Shard: ExpressibleByArgument {
    var index: Int, count: Int
    init?(argument: String) {
        let parts = argument.split(separator: "/").map { Int($0) }
        guard parts.count == 2, let i = parts[0], let n = parts[1], n >= 1, i >= 0, i < n else { return nil }
        (index, count) = (i, n)
    }
}

struct FuzzCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fuzz",
        abstract: "Run seeded campaigns of load addresses over purgatories; bisect every failure to the address where it starts.",
        discussion: """
            Run i of seed S draws its load address (log-uniform from 1 MiB to the machine's RAM limit, 2^phys-bits, \
            unless --range is given) and its \
            segments from (S, file, i) alone: the same on any machine, for any --jobs and any --shard. \
            Exit status 1 if any run's verdict differs from --expect (default verified), 0 otherwise, 2 for bad input.
            """)

    @Argument(help: "Purgatories (objects, or vmlinux/bzImage/kexec files holding one). Default: the built-in reference purgatory.")
    var files: [String] = []

    @Option(help: "Runs per file.")
    var runs = 1000

    @Option(help: "Campaign seed (default: a fresh one, printed).")
    var seed: Quantity?

    @Option(help: "Worker threads, one engine each (default: all cores).")
    var jobs = ProcessInfo.processInfo.activeProcessorCount

    @Option(name: .customLong("range"), help: "Draw load addresses from LO-HI (repeatable), e.g. 2G-4G.")
    var ranges: [AddressRange] = []

    @OptionGroup var loading: LoaderOptions

    @OptionGroup var machine: MachineArguments

    @OptionGroup var kernelGeneration: KernelArguments

    @Option(help: "The verdict every run should have.")
    var expect: Verdict = .verified

    @Option(help: "Append one JSON line per run to this file, flushed as each run ends.")
    var jsonl: String?

    @Option(help: "Run only every n-th item starting at i (i/n), to split a campaign across CI jobs.")
    var shard: Shard?

    @Flag(help: "Compute verified SHA-256 steps on the host (same verdicts and counts; see run --help).")
    var fastHash = false

    @Flag(help: "Skip the bisection of failures.")
    var noShrink = false

    @Flag(help: "Print the summary as JSON.")
    var json = false

    func validate() throws {
        guard runs >= 1, jobs >= 1 else { throw ValidationError("--runs and --jobs must be at least 1") }
    }

    func run() throws {
        try kernelGeneration.listIfAsked()
        var bzImages: [(path: String, image: BzImage)] = []
        var objects: [ELFFile] = []
        for path in files {
            let extracted = try Inputs.extracted(path)
            objects.append(extracted.file)
            if let image = extracted.extraction.bzImage { bzImages.append((path, image)) }
        }
        if objects.isEmpty { objects = [try Inputs.purgatory(nil)] }
        var campaign = Campaign(files: objects, runs: runs, seed: seed?.value ?? UInt64.random(in: 0 ... .max))
        campaign.jobs = jobs
        campaign.fastHash = fastHash
        campaign.loader = loading.loader
        campaign.entryRule = loading.entryRule
        campaign.abi = loading.resolvedABI
        campaign.expected = expect
        campaign.ranges = ranges.isEmpty ? nil : ranges.map(\.range)
        campaign.machine = machine.options
        (campaign.kernel, campaign.kernelSource) = kernelGeneration.resolve(bzImages: bzImages)
        campaign.tdxGuest = kernelGeneration.tdxGuest
        campaign.earlySerialPort = kernelGeneration.earlySerial.map { UInt16(truncatingIfNeeded: $0.value) }
        if let shard { campaign.shard = (shard.index, shard.count) }
        if let why = campaign.refusal() { throw InputError(why) }

        var sink: FileHandle?
        if let jsonl {
            guard FileManager.default.fileExists(atPath: jsonl) || FileManager.default.createFile(atPath: jsonl, contents: nil),
                  let handle = FileHandle(forWritingAtPath: jsonl) else { throw InputError("\(jsonl): cannot open for writing") }
            handle.seekToEndOfFile()
            sink = handle
        }
        let runner = CampaignRunner(campaign: campaign, jsonl: sink)
        // Ctrl-C finishes the runs under way and prints the summary so far. A parent (a test
        // runner, a CI shell) may have left SIGINT blocked: unblock it, or it would never arrive.
        signal(SIGINT) { _ in CampaignRunner.stopRequested = true }
        var interrupt = sigset_t()
        sigemptyset(&interrupt)
        sigaddset(&interrupt, SIGINT)
        pthread_sigmask(SIG_UNBLOCK, &interrupt, nil)
        let tty = isatty(STDERR_FILENO) == 1 && !json
        let started = Date()
        if !json {
            print("purgatory-harness fuzz: \(objects.count) file(s) × \(runs) runs, seed \(hex(campaign.seed)), \(campaign.jobs) job(s), kernel \(campaign.kernel.name) (\(campaign.kernelSource))"
                  + (campaign.shard.count > 1 ? ", shard \(campaign.shard.index)/\(campaign.shard.count): \(runner.total) runs" : ""))
        }
        let total = runner.total
        let lastPrint = LockedTime()
        let records = runner.run { done, failures in
            guard tty, lastPrint.due(done == total) else { return }
            let elapsed = Date().timeIntervalSince(started)
            let rate = Double(done) / max(elapsed, 1e-9)
            FileHandle.standardError.write(Data(String(format: "\r%d/%d runs, %.0f runs/s, ETA %.0f s, %d unexpected   ",
                                                       done, total, rate, Double(total - done) / max(rate, 1e-9), failures).utf8))
        }
        if tty { FileHandle.standardError.write(Data("\n".utf8)) }
        let elapsed = Date().timeIntervalSince(started)
        var summary = CampaignSummary(records)
        if !noShrink && !CampaignRunner.stopRequested {
            for i in summary.failures.indices { campaign.findBoundary(&summary.failures[i], in: records) }
        }
        if json {
            try printJSON(summary)
        } else {
            print(Self.render(summary, campaign: campaign, paths: files))
            print(String(format: "%d runs in %.1f s: %.0f runs/s with %d job(s)%@", records.count, elapsed,
                         Double(records.count) / max(elapsed, 1e-9), campaign.jobs,
                         CampaignRunner.stopRequested ? " (interrupted: summary so far)" : ""))
        }
        throw ExitCode(summary.unexpected == 0 ? ExitStatus.expected : ExitStatus.unexpected)
    }

    static func render(_ summary: CampaignSummary, campaign: Campaign?, paths: [String]) -> String {
        var lines = ["runs per address class and verdict:"]
        var lastFile = ""
        for cell in summary.cells {
            // Long paths keep their end (the file name) and lose their start.
            let name = cell.file.count > 39 ? "…" + cell.file.suffix(38) : cell.file
            let file = cell.file == lastFile ? "" : name
            lastFile = cell.file
            lines.append("  " + file.padding(toLength: 40, withPad: " ", startingAt: 0)
                         + cell.addressClass.padding(toLength: 18, withPad: " ", startingAt: 0)
                         + cell.verdict.rawValue.padding(toLength: 17, withPad: " ", startingAt: 0) + "\(cell.count)")
        }
        if summary.failures.isEmpty {
            lines.append("no run differs from the expected verdict")
        }
        for f in summary.failures {
            lines.append("failure: \(f.file): \(f.verdict.rawValue) ×\(f.count): \(f.example.message)")
            if let note = f.boundaryNote { lines.append("  " + note) }
            if let campaign, f.verdict != .harnessError {
                var replay = f.example
                replay.loadAddress = f.boundary ?? replay.loadAddress
                lines.append("  reproduce: " + reproducer(replay, campaign: campaign, paths: paths))
            }
        }
        return lines.joined(separator: "\n")
    }

    /// The `run` command line that replays one fuzz run exactly.
    static func reproducer(_ r: FuzzRecord, campaign: Campaign, paths: [String]) -> String {
        let path = paths.first { $0 == r.file } ?? (paths.isEmpty ? "" : r.file)
        var words = ["purgatory-harness", "run"] + (path.isEmpty ? [] : [path])
        words += ["--load-address", hex(r.loadAddress), "--seed", hex(r.seed)]
        if campaign.loader != .kexecFile { words += ["--loader", campaign.loader.rawValue] }
        if let rule = campaign.entryRule { words += ["--entry-rule", rule.rawValue] }
        if campaign.kernelSource != "default" || campaign.kernel != .latest { words += ["--kernel-profile", campaign.kernel.name] }
        if campaign.tdxGuest { words += ["--tdx-guest"] }
        if let port = campaign.earlySerialPort { words += ["--early-serial", hex(port)] }
        if campaign.machine.physicalBits != MachineOptions().physicalBits { words += ["--phys-bits", "\(campaign.machine.physicalBits)"] }
        if let levels = campaign.machine.paging { words += ["--paging", "\(levels.rawValue)"] }
        if let range = campaign.machine.segmentRange { words += ["--segment-range", "\(hex(range.lowerBound))-\(hex(range.upperBound))"] }
        let plan = campaign.segments
        words += ["--kernel-size", "\(plan.kernelSize)", "--kernel-memsz", "\(plan.kernelMemsz ?? plan.kernelSize)",
                  "--initrd-size", "\(plan.initrdSize)", "--cmdline", plan.commandLine]
        if campaign.expected != .verified { words += ["--expect", campaign.expected.rawValue] }
        return words.map { $0.contains(" ") || $0.isEmpty ? "'\($0)'" : $0 }.joined(separator: " ")
    }
}

/// Rate-limits the progress line to a few updates a second.
final class LockedTime: @unchecked Sendable {
    private let lock = NSLock()
    private var last = Date.distantPast
    func due(_ force: Bool) -> Bool {
        lock.lock(); defer { lock.unlock() }
        let now = Date()
        guard force || now.timeIntervalSince(last) > 0.25 else { return false }
        last = now
        return true
    }
}

struct FuzzMergeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fuzz-merge",
        abstract: "Combine the JSONL files of several fuzz shards into one summary.",
        discussion: "Exit status 1 if any run's verdict differs from its expected one.")

    @Argument(help: "JSONL files written by fuzz --jsonl.")
    var files: [String]

    @Flag(help: "Print the summary as JSON.")
    var json = false

    func run() throws {
        var records: [FuzzRecord] = []
        for path in files {
            let text = String(decoding: try Inputs.read(path, what: "fuzz JSONL"), as: UTF8.self)
            for (n, line) in text.split(separator: "\n").enumerated() where !line.isEmpty {
                do { records.append(try JSONDecoder().decode(FuzzRecord.self, from: Data(line.utf8))) } catch {
                    throw InputError("\(path): line \(n + 1): not a fuzz record")
                }
            }
        }
        // A shard rerun may repeat a run: keep one record per (file, index, seed).
        var seen = Set<String>()
        records = records.filter { seen.insert("\($0.file)\u{0}\($0.index)\u{0}\($0.seed)").inserted }
        let summary = CampaignSummary(records)
        if json {
            try printJSON(summary)
        } else {
            print("purgatory-harness fuzz-merge: \(records.count) runs from \(files.count) file(s)")
            print(FuzzCommand.render(summary, campaign: nil, paths: []))
        }
        throw ExitCode(summary.unexpected == 0 ? ExitStatus.expected : ExitStatus.unexpected)
    }
}
