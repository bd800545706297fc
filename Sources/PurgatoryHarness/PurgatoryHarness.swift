import Containers
import ELF
import Fuzz
import HarnessVersion
import Inspect
import Loader
import Machine
import Run

// purgatory-harness as a library: load a purgatory from any file that holds one, inspect it as the
// kernel's loader sees it, run it in the emulated machine, run a seeded campaign or the whole
// check. Everything here is a value type; every failure of the input is a `HarnessFailure`; the
// purgatory misbehaving is a verdict in a report, never an error. docs/library.md has an example.

/// The report of one run (`purgatory-harness run --json` prints it).
/// The harness's version, as `purgatory-harness --version` and every `--json` (`tool_version`) print it.
public let harnessVersion = PurgatoryHarnessVersion.string

public typealias RunReport = Run.RunReport
/// How a run ended: verified, rejected-digest, load-error, fault, kexec-exception…
public typealias Verdict = Run.Verdict
/// A kernel generation: the loader rules and entry state of one Linux version.
public typealias KernelProfile = Run.KernelProfile
/// A Linux version, major.minor.patch.
public typealias KernelVersion = Run.KernelVersion
/// The machine: physical address width, paging depth, where segments go.
public typealias MachineOptions = Run.MachineOptions
/// The identity map's depth, 4 or 5 levels.
public typealias PagingLevels = Machine.AddressSpace.Levels
/// Which loader's rules apply: the kernel's kexec_file, kexec-tools', or a linked image's.
public typealias LoaderKind = Loader.LoaderKind
/// What `inspect` reports: sections, relocations, the load range, lints.
public typealias Inspection = Inspect.Inspection
/// A campaign's counts per address class and verdict, and its distinct failures.
public typealias CampaignSummary = Fuzz.CampaignSummary
/// The result of `check`: one case per check, pass, fail or skip.
public typealias CheckReport = Fuzz.PurgatoryCheck.Report

/// The input could not be used, or the harness could not run it: one line naming the file (when
/// there is one), the thing and the reason — never a verdict on the purgatory.
public struct HarnessFailure: Error, CustomStringConvertible, Sendable {
    /// The file the failure is about, when there is one.
    public var file: String?
    /// The whole message, as the command prints it.
    public var description: String

    /// A failure about `file` (nil: no file), described by `line`.
    public init(file: String?, line: String) {
        self.file = file
        description = line
    }

    init(_ error: any Error & CustomStringConvertible, file: String? = nil) {
        self.init(file: file, line: error.description)
    }
}

/// Settings of one run: the seed, where to load, which kernel and machine. Defaults give what
/// `purgatory-harness run` gives.
public struct RunOptions: Sendable {
    /// Every random choice (load address, segment addresses and contents, tamper) comes from it.
    public var seed: UInt64 = 1
    /// nil: drawn from the seed above 4 GiB.
    public var loadAddress: UInt64?
    /// nil: the version a bzImage container names, else linux-latest.
    public var kernel: KernelProfile?
    /// The machine's physical width, paging depth and segment range (defaults: 52 bits, 4 or 5
    /// levels by placement, segments below 2^40).
    public var machine = MachineOptions()
    /// Whose loader rules apply (default: the kernel's kexec_file).
    public var loader: LoaderKind = .kexecFile
    /// Flip one byte of a hashed segment after the digest is taken (the purgatory must refuse).
    public var tamper = false
    /// nil: 1,000,000 + 256 per hashed byte.
    public var budget: UInt64?

    /// The defaults of `purgatory-harness run`.
    public init() {}
}

/// A purgatory, found in whatever file held it.
public struct Purgatory: Sendable {
    /// How messages name it (`PATH:purgatory` when it was taken out of a container).
    public var name: String { object.name }
    /// How it was found: one line per step (empty for a plain object).
    public let provenance: [String]
    /// The kernel release string of the bzImage it came from, if it came from one.
    public let kernelRelease: String?
    /// The parsed ELF object the loaders take.
    public let object: ELFFile
    /// The container it came from, for tools that go deeper.
    public let extraction: Extraction?

    /// The purgatory inside the file at `path`: a purgatory object, a vmlinux or vmlinux.o, a
    /// kernel tree's kexec-purgatory.o, a bzImage (every payload compression), a kexec-tools binary.
    public static func load(contentsOf path: String) throws(HarnessFailure) -> Purgatory {
        let bytes = try InputFiles.read(path, what: "purgatory") { (head, complete) throws(HarnessFailure) in
            do throws(ContainerError) { try PurgatoryExtractor.checkHead(head, complete: complete) } catch {
                var named = error
                named.file = path
                throw HarnessFailure(named, file: path)
            }
        }
        return try load(bytes: bytes, name: path)
    }

    /// The purgatory inside `bytes`, named `name` in every message.
    public static func load(bytes: [UInt8], name: String) throws(HarnessFailure) -> Purgatory {
        let extraction: Extraction
        do throws(ContainerError) { extraction = try PurgatoryExtractor.extract(bytes, name: name) } catch {
            throw HarnessFailure(error, file: name)
        }
        let objectName = extraction.container == .object || extraction.container == .image ? name : name + ":purgatory"
        guard extraction.object.count <= ELFFile.maximumSize else {
            throw HarnessFailure(file: name, line: "\(objectName): \(extraction.object.count) bytes is larger than any purgatory (limit \(ELFFile.maximumSize))")
        }
        do throws(ELFError) {
            return Purgatory(provenance: extraction.container == .object ? [] : extraction.provenance,
                             kernelRelease: extraction.bzImage?.kernelRelease,
                             object: try ELFFile(bytes: extraction.object, name: objectName), extraction: extraction)
        } catch {
            throw HarnessFailure(error, file: name)
        }
    }

    /// The reference purgatory built into the harness (our own C and assembly, Linux's flags).
    public static func builtIn() throws(HarnessFailure) -> Purgatory {
        do throws(ELFError) {
            return Purgatory(provenance: [], kernelRelease: nil, object: try DefaultPurgatory.file(), extraction: nil)
        } catch {
            throw HarnessFailure(error)
        }
    }

    /// The kernel profile a run takes by default: the bzImage's own version, else linux-latest.
    public var defaultKernel: KernelProfile {
        kernelRelease.flatMap(KernelVersion.init(release:)).map { KernelProfile(name: "linux-\($0)", version: $0) } ?? .latest
    }

    /// What the loader sees, without running anything, for a load at `address` (nil: the lowest).
    public func inspect(at address: UInt64? = nil, options: RunOptions = RunOptions()) throws(HarnessFailure) -> Inspection {
        let kernel = options.kernel ?? defaultKernel
        do {
            var inspection = try Inspector(file: object, kind: options.loader, entryRule: kernel.entryRule).inspect(at: address)
            inspection.container = provenance
            return inspection
        } catch {
            throw HarnessFailure(error, file: name)
        }
    }

    /// One run: load as the kernel would, lay out the segments, run, judge.
    public func run(_ options: RunOptions = RunOptions()) throws(HarnessFailure) -> RunReport {
        do throws(HarnessError) {
            return try scenario(options).run()
        } catch {
            throw HarnessFailure(error, file: name)
        }
    }

    /// A seeded campaign of `runs` placements over every address class (1 MiB to the machine's
    /// limit), each failure bisected to where it starts.
    public func campaign(runs: Int, options: RunOptions = RunOptions()) throws(HarnessFailure) -> CampaignSummary {
        var campaign = Campaign(files: [object], runs: runs, seed: options.seed)
        campaign.loader = options.loader
        campaign.kernel = options.kernel ?? defaultKernel
        campaign.machine = options.machine
        campaign.budget = options.budget
        if let why = campaign.refusal() { throw HarnessFailure(file: name, line: why) }
        let result = CampaignRunner(campaign: campaign, sink: nil).summarize()
        var summary = result.summary
        for i in summary.failures.indices {
            campaign.findBoundary(&summary.failures[i], in: result.boundaryRecords(for: summary.failures[i], in: campaign))
        }
        return summary
    }

    /// Everything `purgatory-harness check` checks, for this purgatory.
    public func check(runs: Int = 200, options: RunOptions = RunOptions()) throws(HarnessFailure) -> CheckReport {
        var check = PurgatoryCheck(file: object)
        check.provenance = provenance
        check.loader = options.loader
        check.kernel = options.kernel ?? defaultKernel
        check.machine = options.machine
        check.runs = runs
        check.seed = options.seed
        check.budget = options.budget
        do {
            return try check.run { record, campaign in
                "purgatory-harness run \(name) --load-address \(hex(record.loadAddress)) --seed \(hex(record.seed)) --kernel-profile \(campaign.kernel.name)"
            }
        } catch {
            throw HarnessFailure(file: name, line: "\(name): \(error)")
        }
    }

    func scenario(_ options: RunOptions) -> Scenario {
        var s = Scenario(file: object, seed: options.seed)
        s.loadAddress = options.loadAddress
        s.kernel = options.kernel ?? defaultKernel
        s.kernelSource = options.kernel == nil ? (kernelRelease.map { "version string: \($0)" } ?? "default") : "options"
        s.machine = options.machine
        s.loader = options.loader
        s.tamper = options.tamper
        s.budget = options.budget
        return s
    }
}
