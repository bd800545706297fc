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

    @Option(parsing: .unconditional, help: "Campaign seed: decimal, 0x hex, or negative for two's complement (default: a fresh one, printed).")
    var seed: Seed?

    @Option(help: "Worker threads, one engine each (default: all cores).")
    var jobs: Int?

    @Option(name: .customLong("range"), help: "Draw load addresses from LO-HI (repeatable), e.g. 2G-4G.")
    var ranges: [AddressRange] = []

    @OptionGroup var loading: LoaderOptions

    @OptionGroup var machine: MachineArguments

    @OptionGroup var kernelGeneration: KernelArguments

    @Flag(help: "A run whose load makes the kernel WARN (two executable sections containing e_entry under the 6.4–6.19 rule) counts as unexpected.")
    var denyWarnings = false

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

    @Option(help: ArgumentHelp("Draw the campaign as an address map (SVG): one row per file, a mark per run coloured by verdict, bisected boundaries labelled.", valueName: "file"))
    var svg: String?

    /// Runs per file: beyond this a campaign takes weeks, and a typo should not ask for it.
    static let maximumRuns = 100_000_000
    static let maximumJobs = 1024

    func validate() throws {
        guard runs >= 1, runs <= Self.maximumRuns else {
            throw ValidationError("--runs must be 1 to \(Self.maximumRuns) per file (\(runs) asked; at ~200 runs/s \(Self.maximumRuns) runs take days)")
        }
        guard (jobs ?? 1) >= 1, (jobs ?? 1) <= Self.maximumJobs else { throw ValidationError("--jobs must be 1 to \(Self.maximumJobs)") }
    }

    func run() throws {
        try kernelGeneration.listIfAsked()
        var (objects, bzImages) = try Inputs.purgatories(files)
        if objects.isEmpty { objects = [try Inputs.purgatory(nil)] }
        var campaign = Campaign(files: objects, runs: runs, seed: seed?.value ?? UInt64.random(in: 0 ... .max))
        campaign.jobs = jobs ?? ProcessInfo.processInfo.activeProcessorCount
        campaign.fastHash = fastHash
        campaign.loader = loading.loader
        campaign.entryRule = loading.entryRule
        campaign.abi = loading.resolvedABI
        campaign.expected = expect
        campaign.denyWarnings = denyWarnings
        campaign.ranges = ranges.isEmpty ? nil : ranges.map(\.range)
        campaign.machine = machine.options
        (campaign.kernel, campaign.kernelSource) = kernelGeneration.resolve(bzImages: bzImages)
        campaign.tdxGuest = kernelGeneration.tdxGuest
        campaign.earlySerialPort = kernelGeneration.earlySerial.map { UInt16(truncatingIfNeeded: $0.value) }
        if let shard { campaign.shard = (shard.index, shard.count) }
        if let why = campaign.refusal() { throw InputError(why) }
        let identity = CampaignIdentity(campaign)

        // A reader that goes away (`| head -1`) is EPIPE on a write, not a signal that kills us.
        signal(SIGPIPE, SIG_IGN)
        var sink: FileSink?
        if let jsonl {
            let file = try FileSink(path: jsonl)
            // The campaign's identity first: fuzz-merge refuses to sum shards of different campaigns.
            if case .failed(let message) = file.write(identity.headerLine(shard: campaign.shard)) { throw InputError(message) }
            sink = file
        }
        let runner = CampaignRunner(campaign: campaign, sink: sink,
                                    lineFields: ["campaign": identity.id, "shard": "\(campaign.shard.index)/\(campaign.shard.count)"])
        if svg != nil { runner.markLimit = min(campaign.runs, 4000) }
        // Ctrl-C finishes the runs under way, prints the summary so far and exits 130 (128 + SIGINT).
        // A parent (a test runner, a CI shell) may have left SIGINT blocked: unblock it, or it would never arrive.
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
        let result = runner.summarize { done, failures in
            guard tty, lastPrint.due(done == total) else { return }
            let elapsed = Date().timeIntervalSince(started)
            let rate = Double(done) / max(elapsed, 1e-9)
            FileHandle.standardError.write(Data(String(format: "\r%d/%d runs, %.0f runs/s, ETA %.0f s, %d unexpected   ",
                                                       done, total, rate, Double(total - done) / max(rate, 1e-9), failures).utf8))
        }
        if tty { FileHandle.standardError.write(Data("\n".utf8)) }
        let elapsed = Date().timeIntervalSince(started)
        var summary = result.summary
        if !noShrink && result.stopReason == nil {
            for i in summary.failures.indices {
                campaign.findBoundary(&summary.failures[i], in: result.boundaryRecords(for: summary.failures[i], in: campaign))
            }
        }
        if let svg {
            let rows = campaign.files.indices.map { i in
                AddressMapChart.Row(label: "\(campaign.files[i].name) (\(campaign.kernel.name))",
                                    marks: (i < result.marks.count ? result.marks[i] : []).compactMap { $0.map { ($0.address, $0.verdict) } },
                                    boundaries: summary.failures.filter { $0.file == campaign.files[i].name }.compactMap(\.boundary))
            }
            let title = "purgatory-harness fuzz, seed \(hex(campaign.seed)), \(campaign.runs) runs per file" + (campaign.runs > 4000 ? " (the first 4,000 drawn)" : "")
            try OutputFile(path: svg, what: "SVG address map").write(Array(AddressMapChart.render(title: title, rows: rows, limit: campaign.machine.ramLimit).utf8))
        }
        let note: String
        switch result.stopReason {
        case nil: note = ""
        case .interrupted?: note = " (interrupted: summary so far)"
        case .readerGone?: note = " (the --jsonl reader went away: summary so far)"
        case .sinkFailed?: note = " (--jsonl write failed: summary so far)"
        }
        if json {
            try? printJSON(summary)
        } else {
            print(Self.render(summary, campaign: campaign, paths: files))
            print(String(format: "%d runs in %.1f s: %.0f runs/s with %d job(s)%@", summary.runs, elapsed,
                         Double(summary.runs) / max(elapsed, 1e-9), campaign.jobs, note))
        }
        fflush(nil)
        switch result.stopReason {
        case .sinkFailed(let message)?: throw InputError(message)
        case .interrupted?: throw ExitCode(130)
        default: throw ExitCode(summary.unexpected == 0 ? ExitStatus.expected : ExitStatus.unexpected)
        }
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
        if campaign.kernel != .latest { words += ["--kernel-profile", campaign.kernel.name] }
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
        var builder = CampaignSummary.Builder()
        var campaign: (identity: CampaignIdentity, path: String, line: Int)?
        // Seen runs, one bit per (file, index): a shard rerun may repeat a run.
        var seen: [[UInt64]] = []
        var runs = 0
        let decoder = JSONDecoder()
        for path in files {
            let bytes = try Inputs.read(path, what: "fuzz JSONL")
            var number = 0
            for line in bytes.split(separator: 0x0a) where !line.isEmpty {
                number += 1
                let data = Data(line)
                guard let tag = try? decoder.decode(CampaignTag.self, from: data) else {
                    throw InputError("\(path): line \(number): not a fuzz record or campaign header")
                }
                guard let id = tag.campaign else {
                    throw InputError("\(path): line \(number): a fuzz record without a campaign identity (written by an older version): cannot tell which campaign it belongs to")
                }
                if let identity = tag.identity {
                    if let known = campaign {
                        guard known.identity == identity else {
                            throw InputError("\(path): line \(number): campaign \(identity.id) (\(identity.summary)) is not campaign \(known.identity.id) of \(known.path) line \(known.line) (\(known.identity.summary)): fuzz-merge sums shards of one campaign only")
                        }
                    } else {
                        campaign = (identity, path, number)
                        seen = identity.files.map { _ in [UInt64](repeating: 0, count: (identity.runs + 63) / 64) }
                    }
                    continue
                }
                guard let known = campaign else {
                    throw InputError("\(path): line \(number): a fuzz record before any campaign header line")
                }
                guard id == known.identity.id else {
                    throw InputError("\(path): line \(number): record of campaign \(id), not campaign \(known.identity.id) of \(known.path) line \(known.line): fuzz-merge sums shards of one campaign only")
                }
                let record: FuzzRecord
                do { record = try decoder.decode(FuzzRecord.self, from: data) } catch {
                    throw InputError("\(path): line \(number): not a fuzz record")
                }
                guard let file = known.identity.files.firstIndex(of: record.file), record.index >= 0, record.index < known.identity.runs else {
                    throw InputError("\(path): line \(number): run \(record.index) of \(record.file) is not part of campaign \(id)")
                }
                let bit: UInt64 = 1 << UInt64(record.index % 64)
                if seen[file][record.index / 64] & bit != 0 { continue }
                seen[file][record.index / 64] |= bit
                builder.add(record)
                runs += 1
            }
        }
        let summary = builder.summary
        if json {
            try printJSON(summary)
        } else {
            let name = campaign.map { " of campaign \($0.identity.id) (\($0.identity.summary))" } ?? ""
            print("purgatory-harness fuzz-merge: \(runs) runs from \(files.count) file(s)\(name)")
            print(FuzzCommand.render(summary, campaign: nil, paths: []))
        }
        throw ExitCode(summary.unexpected == 0 ? ExitStatus.expected : ExitStatus.unexpected)
    }
}
