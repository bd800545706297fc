import ELF
import Foundation
import Inspect
import Loader
import Machine
import Run

/// `check`: does this purgatory do what the kernel expects of it wherever the kernel may put it?
/// One verdict per check, each a JUnit test case: the loader's view (relocations, load range,
/// entry point), a seeded campaign over every address class, tampered segments, and the kernel
/// generations.
public struct PurgatoryCheck: Sendable {
    public var file: ELFFile
    /// How the purgatory was found (a container's provenance), for the report.
    public var provenance: [String] = []
    public var loader: LoaderKind = .kexecFile
    public var abi: PurgatoryABI?
    /// The loading kernel: its rules decide pass and fail.
    public var kernel = KernelProfile.latest
    public var kernelSource = "default"
    /// Every named profile must pass too (`--kernel-profile all`); otherwise the others only say
    /// where they differ (skipped).
    public var everyProfile = false
    public var machine = MachineOptions()
    public var runs = 200
    public var seed: UInt64 = 0xc4ec
    public var jobs = 1
    public var budget: UInt64?
    /// Runs whose load address and verdict to keep for a picture (per file, the lowest indexes).
    public var marks = 0
    /// Told (done, total, unexpected) as the campaign's runs finish.
    public var campaignProgress: (@Sendable (Int, Int, Int) -> Void)?

    public init(file: ELFFile) { self.file = file }

    public enum Status: String, Codable, Sendable { case pass, fail, skip }

    public struct Case: Codable, Sendable, Equatable {
        public var name: String
        /// The group the case belongs to: loader, placement, tamper, kernel.
        public var group: String
        public var status: Status
        public var message: String
        /// A `run` command line that replays the failure, when one does.
        public var reproduce: String?
        public var seconds: Double
    }

    public struct Report: Encodable, Sendable {
        public var file: String
        public var container: [String]
        public var kernelProfile: KernelProfileInfo
        public var seed: UInt64
        public var runs: Int
        public var cases: [Case]
        public var passed: Bool { !cases.contains { $0.status == .fail } }
        /// The campaign's runs (lowest indexes, `marks` of them): load address and verdict.
        public var marks: [Mark]
        /// Where each placement failure starts, bisected.
        public var boundaries: [UInt64]

        public struct Mark: Codable, Sendable, Equatable {
            public var loadAddress: UInt64
            public var verdict: Verdict
            enum CodingKeys: String, CodingKey { case verdict, loadAddress = "load_address" }
        }

        enum CodingKeys: String, CodingKey {
            case file, container, seed, runs, cases, passed, marks, boundaries
            case kernelProfile = "kernel_profile"
        }

        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(file, forKey: .file)
            try c.encode(container, forKey: .container)
            try c.encode(kernelProfile, forKey: .kernelProfile)
            try c.encode(seed, forKey: .seed)
            try c.encode(runs, forKey: .runs)
            try c.encode(cases, forKey: .cases)
            try c.encode(passed, forKey: .passed)
            try c.encode(marks, forKey: .marks)
            try c.encode(boundaries, forKey: .boundaries)
        }
    }

    /// Runs every check. `reproducer` turns a failing run into the command line that replays it.
    public func run(reproducer: (FuzzRecord, Campaign) -> String) throws -> Report {
        var cases: [Case] = []
        var clock = ContinuousClock.now
        func add(_ name: String, _ group: String, _ status: Status, _ message: String, reproduce: String? = nil) {
            let now = ContinuousClock.now
            let d = now - clock
            clock = now
            cases.append(Case(name: name, group: group, status: status, message: message, reproduce: reproduce,
                              seconds: Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18))
        }
        let inspection = try Inspector(file: file, kind: loader, entryRule: kernel.entryRule, abi: abi).inspect()
        checkRelocations(inspection, add)
        checkLoadRange(inspection, add)
        try checkEntry(add)

        var campaign = Campaign(files: [file], runs: runs, seed: seed)
        campaign.loader = loader
        campaign.abi = abi
        campaign.kernel = kernel
        campaign.kernelSource = kernelSource
        campaign.machine = machine
        campaign.jobs = jobs
        campaign.budget = budget
        let runner = CampaignRunner(campaign: campaign, sink: nil)
        runner.markLimit = marks
        let total = runner.total
        let progress = campaignProgress
        let result = runner.summarize { done, failures in progress?(done, total, failures) }
        var summary = result.summary
        for i in summary.failures.indices {
            campaign.findBoundary(&summary.failures[i], in: result.boundaryRecords(for: summary.failures[i], in: campaign))
        }
        for addressClass in AddressClass.reporting where addressClass.low < machine.ramLimit {
            let cells = summary.cells.filter { $0.addressClass == addressClass.name }
            let total = cells.reduce(0) { $0 + $1.count }
            let bad = cells.filter { $0.verdict != .verified }
            if total == 0 {
                add(addressClass.name, "placement", .skip, "no run of \(runs) landed in this class: raise --runs")
            } else if bad.isEmpty {
                add(addressClass.name, "placement", .pass, "\(total) of \(total) runs verified")
            } else {
                let failure = summary.failures.filter { AddressClass.name(of: $0.example.loadAddress) == addressClass.name }
                    .min { $0.example.loadAddress < $1.example.loadAddress } ?? summary.failures.first
                let counts = bad.map { "\($0.count) \($0.verdict.rawValue)" }.joined(separator: ", ")
                // The replay is at the boundary, where the failure starts, when bisection found one.
                var replay = failure?.example
                if let boundary = failure?.boundary { replay?.loadAddress = boundary }
                add(addressClass.name, "placement", .fail,
                    "\(counts) of \(total) runs: \(failure?.example.message ?? "")" + (failure?.boundaryNote.map { "; \($0)" } ?? ""),
                    reproduce: replay.map { reproducer($0, campaign) })
            }
        }
        try checkTamper(campaign, add)
        try checkGenerations(add)
        let marks = result.marks.first.map { $0.compactMap { $0 } } ?? []
        return Report(file: file.name, container: provenance,
                      kernelProfile: KernelProfileInfo(name: kernel.name, version: kernel.version.description, source: kernelSource),
                      seed: seed, runs: runs, cases: cases, marks: marks.map { .init(loadAddress: $0.address, verdict: $0.verdict) },
                      boundaries: summary.failures.compactMap(\.boundary))
    }

    /// Relocation types the loader applies, none refused: GOT/PLT-relative ones and missing ABI
    /// symbols never load; SSE instructions and several executable sections are noted.
    private func checkRelocations(_ inspection: Inspection, _ add: (String, String, Status, String, String?) -> Void) {
        var histogram: [String: Int] = [:]
        for count in inspection.relocations { histogram[count.type, default: 0] += count.count }
        let types = histogram.sorted { $0.key < $1.key }.map { "\($0.key.replacingOccurrences(of: "R_X86_64_", with: "")) ×\($0.value)" }.joined(separator: ", ")
        let refused = inspection.lints.filter { ["got-plt", "abi"].contains($0.kind) }
        if let never = inspection.neverLoads {
            add("relocations", "loader", .fail, "never loads: \(never)", nil)
        } else if !refused.isEmpty {
            add("relocations", "loader", .fail, refused.map(\.message).joined(separator: "; "), nil)
        } else {
            let notes = inspection.lints.filter { $0.kind == "simd" }.map(\.message)
            add("relocations", "loader", .pass, (types.isEmpty ? "no relocations" : types) + (notes.isEmpty ? "" : "; note: " + notes.joined(separator: "; ")), nil)
        }
    }

    /// Every aligned address the kernel may choose (0x3000 up to the machine's RAM limit) loads.
    private func checkLoadRange(_ inspection: Inspection, _ add: (String, String, Status, String, String?) -> Void) {
        let overflows = inspection.lints.filter { $0.kind == "overflow" }
        if let failing = inspection.lowestFailingAddress, failing < machine.ramLimit {
            add("load range", "loader", .fail, "fails from load address \(hex(failing))"
                + (overflows.first.map { ": \($0.message)" } ?? "") + (overflows.count > 1 ? " (and \(overflows.count - 1) more)" : ""),
                "purgatory-harness inspect \(file.name) --load-address \(hex(failing))")
        } else {
            add("load range", "loader", .pass, "every \(hex(inspection.bufAlign))-aligned load address from 0x3000 to \(hex(machine.ramLimit)) applies every relocation", nil)
        }
    }

    /// The entry point the loading kernel takes, with no WARN from its loader.
    private func checkEntry(_ add: (String, String, Status, String, String?) -> Void) throws {
        let loaded: LoadedPurgatory
        do throws(LoadFailure) {
            loaded = try AnyLoader(file: file, kind: loader, entryRule: kernel.entryRule).load(at: 0x100_0000)
        } catch {
            add("entry", "loader", .skip, "the loader refuses the object: \(error)", nil)
            return
        }
        let warnings = loaded.diagnostics.filter { $0.kind == .kernelWarning }
        let symbol = loaded.symbolAddress("purgatory_start")
        let rule = "\(kernel.entryRule.rawValue) rule of \(kernel.name)"
        if !warnings.isEmpty {
            add("entry", "loader", .fail, "the kernel WARNs: " + warnings.map(\.message).joined(separator: "; "), nil)
        } else if let symbol, symbol != loaded.entry, loader != .image {
            add("entry", "loader", .fail, "the \(rule) enters at \(hex(loaded.entry)) (\(loaded.entrySource)), not at purgatory_start (\(hex(symbol)))", nil)
        } else {
            add("entry", "loader", .pass, "\(loaded.entrySource), by the \(rule)", nil)
        }
    }

    /// A byte flipped in a hashed segment makes the purgatory refuse, walked and flat, at
    /// addresses where it verifies untampered.
    private func checkTamper(_ campaign: Campaign, _ add: (String, String, Status, String, String?) -> Void) throws {
        var outcomes: [String] = []
        var failed: String?
        for (i, address) in [UInt64(0x1_0000_0000), 0x17f_7aff_d000, 0x100_0000].enumerated() where address < machine.ramLimit {
            var s = campaign.scenario(file: 0, index: i)
            s.loadAddress = address
            s.budget = budget
            guard let clean = try? s.run(), clean.verdict == .verified else { continue }
            s.tamper = true
            guard let report = try? s.run() else { continue }
            outcomes.append("\(hex(address)): \(report.verdict.rawValue)")
            if report.verdict != .rejectedDigest && failed == nil {
                failed = "purgatory-harness run \(file.name) --load-address \(hex(address)) --seed \(hex(s.seed)) --tamper --kernel-profile \(kernel.name)"
            }
        }
        if outcomes.isEmpty {
            add("tamper", "tamper", .skip, "no address where the untampered purgatory verifies (0x100000000, 0x17f7affd000, 0x1000000)", nil)
        } else if let failed {
            add("tamper", "tamper", .fail, "a tampered segment is not refused: " + outcomes.joined(separator: ", "), failed)
        } else {
            add("tamper", "tamper", .pass, "a flipped byte in a hashed segment is refused: " + outcomes.joined(separator: ", "), nil)
        }
    }

    /// The purgatory under every named generation at 4 GiB. With `everyProfile` each must verify
    /// without a WARN; otherwise a generation that answers as the loading kernel does passes, and
    /// one that differs is skipped, saying how.
    private func checkGenerations(_ add: (String, String, Status, String, String?) -> Void) throws {
        func outcome(_ profile: KernelProfile) -> (verdict: Verdict, warned: Bool, message: String)? {
            var s = Scenario(file: file, seed: seed)
            s.loader = loader
            s.abi = abi
            s.kernel = profile
            s.kernelSource = "check"
            s.machine = machine
            s.loadAddress = 0x1_0000_0000
            s.budget = budget
            guard let report = try? s.run() else { return nil }
            return (report.verdict, report.kernelLog.contains { $0.contains("WARN") }, report.message)
        }
        let own = outcome(kernel)
        for profile in KernelProfile.named where profile != kernel {
            guard let result = outcome(profile) else { continue }
            let text = result.verdict.rawValue + (result.warned ? " with the kernel's WARN" : "")
                + (result.verdict == .verified ? "" : ": \(result.message)")
            let replay = "purgatory-harness run \(file.name) --load-address 0x100000000 --seed \(hex(seed)) --kernel-profile \(profile.name)"
            let clean = result.verdict == .verified && !result.warned
            if everyProfile {
                add(profile.name, "kernel", clean ? .pass : .fail, text, clean ? nil : replay)
            } else if let own, own.verdict == result.verdict && own.warned == result.warned {
                add(profile.name, "kernel", .pass, "\(text), as under \(kernel.name)", nil)
            } else {
                add(profile.name, "kernel", .skip, "\(text), where \(kernel.name) gives \(own.map { $0.verdict.rawValue + ($0.warned ? " with the WARN" : "") } ?? "no verdict") (not the loading kernel: --kernel-profile all makes every generation count)", replay)
            }
        }
    }
}
