import ArgumentParser
import Containers
import ELF
import Foundation
import FoundationXML
import Fuzz
import Run

/// `check`: the one command a kernel developer or a CI job runs on a purgatory.
struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Check purgatories as a kernel would load them anywhere: loader rules, a seeded campaign over every address class, tampered segments, kernel generations.",
        discussion: """
            Takes a purgatory object, a vmlinux or vmlinux.o, a bzImage, a kernel tree's kexec-purgatory.o or a kexec-tools binary. \
            Prints one PASS/FAIL/SKIP line per check and a summary. The loading kernel's generation decides: the bzImage's own \
            version, --kernel-profile, or linux-latest; other generations are skipped where they differ unless --kernel-profile all. \
            Exit status: 0 when every check passes, 1 when one fails, 2 for bad input.
            """)

    @Argument(help: "Purgatories, or the files holding them.")
    var files: [String]

    @Option(help: "Campaign runs per input (spread log-uniformly over every address class).")
    var runs = 200

    @Option(help: "Campaign seed (default: 0xc4ec, so that a CI job is the same every time).")
    var seed: Seed?

    @Option(help: "Instruction budget per run (default: 1,000,000 + 256 per hashed byte).")
    var budget: Quantity?

    @Option(help: ArgumentHelp("Worker threads for the campaign (default: all cores).", valueName: "n"))
    var jobs: Int?

    @OptionGroup var loading: LoaderOptions

    @OptionGroup var machine: MachineArguments

    @OptionGroup var kernelGeneration: KernelArguments

    @Option(help: ArgumentHelp("Write the results as JUnit XML (one testsuite per input, one testcase per check and address class).", valueName: "file"))
    var junit: String?

    @Option(help: ArgumentHelp("Draw every input's campaign as an address map (SVG).", valueName: "file"))
    var svg: String?

    @Flag(help: "Print one JSON object instead of the lines.")
    var json = false

    @Flag(help: "No progress line on stderr (it appears only on a terminal, for campaigns longer than a second).")
    var quiet = false

    func validate() throws {
        guard !files.isEmpty else { throw ValidationError("name at least one purgatory (or a vmlinux, bzImage, kexec-purgatory.o, kexec binary)") }
        guard (1 ... 1_000_000).contains(runs) else { throw ValidationError("--runs must be 1 to 1000000") }
        if let jobs, !(1 ... 1024).contains(jobs) { throw ValidationError("--jobs must be 1 to 1024") }
    }

    func run() throws {
        try kernelGeneration.listIfAsked()
        var reports: [PurgatoryCheck.Report] = []
        for path in files {
            let (file, extraction) = try Inputs.extracted(path)
            var check = PurgatoryCheck(file: file)
            check.provenance = extraction.container == .object ? [] : extraction.provenance
            check.loader = loading.loader
            check.abi = loading.resolvedABI
            check.machine = machine.options
            check.runs = runs
            check.seed = seed?.value ?? 0xc4ec
            check.budget = budget?.value
            check.jobs = jobs ?? ProcessInfo.processInfo.activeProcessorCount
            check.marks = svg == nil ? 0 : min(runs, 4000)
            check.everyProfile = kernelGeneration.kernelProfile == "all"
            var generation = kernelGeneration
            if generation.kernelProfile == "all" { generation.kernelProfile = nil }
            (check.kernel, check.kernelSource) = generation.resolve(bzImages: extraction.bzImage.map { [(path, $0)] } ?? [])
            let line = ProgressLine.forTerminal(quiet: quiet)
            if let line { check.campaignProgress = { line.campaign(done: $0, total: $1, unexpected: $2) } }
            let report: PurgatoryCheck.Report
            do { report = try check.run(reproducer: { FuzzCommand.reproducer($0, campaign: $1, paths: [path]) }) } catch {
                throw InputError("\(path): \(error)")
            }
            line?.finish()
            reports.append(report)
            if !json { print(Self.render(report, path: path)) }
        }
        if let junit {
            try OutputFile(path: junit, what: "JUnit report").write(Array(try Self.junit(reports, paths: files).utf8))
        }
        if let svg {
            let rows = zip(reports, files).map { report, path in
                AddressMapChart.Row(label: "\(path) (\(report.kernelProfile.name))", marks: report.marks.map { ($0.loadAddress, $0.verdict) },
                                    boundaries: report.boundaries)
            }
            let chart = AddressMapChart.render(title: "purgatory-harness check, seed \(hex(seed?.value ?? 0xc4ec)), \(runs) runs per input",
                                               rows: rows, limit: machine.options.ramLimit)
            try OutputFile(path: svg, what: "SVG address map").write(Array(chart.utf8))
        }
        let passed = reports.allSatisfy(\.passed)
        if json {
            try printJSON(CheckOutput(passed: passed, inputs: reports))
        } else {
            let all = reports.flatMap(\.cases)
            print("summary: \(all.filter { $0.status == .pass }.count) passed, \(all.filter { $0.status == .fail }.count) failed, "
                  + "\(all.filter { $0.status == .skip }.count) skipped, in \(reports.count) input(s): \(passed ? "PASS" : "FAIL")")
        }
        throw ExitCode(passed ? ExitStatus.expected : ExitStatus.unexpected)
    }

    struct CheckOutput: Encodable {
        var passed: Bool
        var inputs: [PurgatoryCheck.Report]
    }

    static func render(_ r: PurgatoryCheck.Report, path: String) -> String {
        var lines = ["purgatory-harness check \(path): kernel \(r.kernelProfile.name) (\(r.kernelProfile.source)), seed \(hex(r.seed)), \(r.runs) runs"]
        for line in r.container { lines.append("  found        " + line) }
        for c in r.cases {
            let mark = c.status == .pass ? "PASS" : c.status == .fail ? "FAIL" : "SKIP"
            lines.append("  \(mark)  " + c.name.padding(toLength: 19, withPad: " ", startingAt: 0) + c.message)
            if let reproduce = c.reproduce, c.status != .pass { lines.append("        " + String(repeating: " ", count: 19) + "reproduce: " + reproduce) }
        }
        return lines.joined(separator: "\n")
    }

    /// JUnit XML as Jenkins, GitLab and GitHub's test reporters read it: <testsuites>, one
    /// <testsuite> per input, one <testcase> per check (classname purgatory-harness.GROUP), with
    /// <failure> (message, and the reproducer in its text) or <skipped>, and the message as
    /// <system-out>. Written with FoundationXML, which escapes what XML needs.
    static func junit(_ reports: [PurgatoryCheck.Report], paths: [String]) throws -> String {
        func attribute(_ element: XMLElement, _ name: String, _ value: String) {
            if let node = XMLNode.attribute(withName: name, stringValue: value) as? XMLNode { element.addAttribute(node) }
        }
        let root = XMLElement(name: "testsuites")
        attribute(root, "name", "purgatory-harness check")
        let all = reports.flatMap(\.cases)
        attribute(root, "tests", "\(all.count)")
        attribute(root, "failures", "\(all.filter { $0.status == .fail }.count)")
        attribute(root, "time", String(format: "%.3f", all.reduce(0) { $0 + $1.seconds }))
        for (report, path) in zip(reports, paths) {
            let suite = XMLElement(name: "testsuite")
            attribute(suite, "name", path)
            attribute(suite, "tests", "\(report.cases.count)")
            attribute(suite, "failures", "\(report.cases.filter { $0.status == .fail }.count)")
            attribute(suite, "errors", "0")
            attribute(suite, "skipped", "\(report.cases.filter { $0.status == .skip }.count)")
            attribute(suite, "time", String(format: "%.3f", report.cases.reduce(0) { $0 + $1.seconds }))
            let properties = XMLElement(name: "properties")
            for (name, value) in [("kernel_profile", report.kernelProfile.name), ("kernel_profile_source", report.kernelProfile.source),
                                  ("seed", hex(report.seed)), ("runs", "\(report.runs)")] {
                let property = XMLElement(name: "property")
                attribute(property, "name", name)
                attribute(property, "value", value)
                properties.addChild(property)
            }
            suite.addChild(properties)
            for c in report.cases {
                let testcase = XMLElement(name: "testcase")
                attribute(testcase, "name", c.name)
                attribute(testcase, "classname", "purgatory-harness.\(c.group)")
                attribute(testcase, "time", String(format: "%.3f", c.seconds))
                switch c.status {
                case .pass: break
                case .fail:
                    let failure = XMLElement(name: "failure", stringValue: c.message + (c.reproduce.map { "\nreproduce: \($0)" } ?? ""))
                    attribute(failure, "message", c.message)
                    attribute(failure, "type", c.group)
                    testcase.addChild(failure)
                case .skip:
                    let skipped = XMLElement(name: "skipped")
                    attribute(skipped, "message", c.message)
                    testcase.addChild(skipped)
                }
                testcase.addChild(XMLElement(name: "system-out", stringValue: c.message))
                suite.addChild(testcase)
            }
            root.addChild(suite)
        }
        let document = XMLDocument(rootElement: root)
        document.version = "1.0"
        document.characterEncoding = "UTF-8"
        return String(decoding: document.xmlData(options: [.nodePrettyPrint]), as: UTF8.self)
    }
}
