import ArgumentParser
import ELF
import Foundation
import Inspect
import Loader
import Run

struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Show what the loader sees: sections and their addresses, relocations, ABI symbols, entry under both rules, where the object loads cleanly, and lints.",
        discussion: "Exit status: 0 when the object loads at the inspected address, 1 when the loader refuses it there, 2 for bad input.")

    @Argument(help: "Purgatory: an ELF object, or the one inside a vmlinux, bzImage or kexec-tools binary. Default: the built-in reference purgatory.")
    var file: String?

    @Option(help: "Inspect a load at this address (default: the lowest address the loader accepts).")
    var loadAddress: Quantity?

    @OptionGroup var loading: LoaderOptions

    @OptionGroup var machine: MachineArguments

    @OptionGroup var kernelGeneration: KernelArguments

    @Flag(help: "Print one JSON object.")
    var json = false

    func run() throws {
        try kernelGeneration.listIfAsked()
        let (file, extraction) = try self.file.map(Inputs.extracted) ?? (try Inputs.purgatory(nil), nil)
        let kernel = kernelGeneration.resolve(bzImages: [self.file.flatMap { path in extraction?.bzImage.map { (path, $0) } }].compactMap { $0 })
        let inspector = Inspector(file: file, kind: loading.loader, entryRule: loading.entryRule ?? kernel.profile.entryRule, abi: loading.resolvedABI)
        var report: Inspection
        do { report = try inspector.inspect(at: loadAddress?.value) } catch { throw InputError(error.description) }
        if let extraction, extraction.container != .object { report.container = extraction.provenance }
        // As in `run`, the kernel's loader decides first; then the machine must be able to hold it.
        let noRAM = report.loadError == nil ? machine.options.placementRefusal(start: report.loadAddress, size: report.segmentSize) : nil
        if json {
            try printJSON(report)
        } else {
            print(Self.render(report, noRAM: noRAM))
        }
        if let noRAM {
            FileHandle.standardError.write(Data("purgatory-harness: error: \(file.name): load address \(hex(report.loadAddress)): \(noRAM)\n".utf8))
            throw ExitCode(ExitStatus.badInput)
        }
        throw ExitCode(report.loadError == nil ? ExitStatus.expected : ExitStatus.unexpected)
    }

    static func render(_ r: Inspection, noRAM: String? = nil) -> String {
        var lines = ["purgatory-harness inspect \(r.file) (\(r.loader) loader, \(r.abi) ABI)"]
        func row(_ key: String, _ value: String) { lines.append("  " + key.padding(toLength: 15, withPad: " ", startingAt: 0) + value) }
        for (i, line) in r.container.enumerated() { row(i == 0 ? "found in" : "", line) }
        row("object", "\(r.fileType), \(r.sections.count + 1) sections")
        row("buffer", "bufsz \(hex(r.bufsz)) + bss \(hex(r.bssSize)) = memsz \(hex(r.memsz)), segment \(hex(r.segmentSize)), buf_align \(hex(r.bufAlign))")
        row("sections", "at load address \(hex(r.loadAddress)):")
        for s in r.sections {
            lines.append("      " + "\(s.index)".padding(toLength: 4, withPad: " ", startingAt: 0)
                + s.name.padding(toLength: 20, withPad: " ", startingAt: 0)
                + s.flags.padding(toLength: 5, withPad: " ", startingAt: 0)
                + "size \(hex(s.size))".padding(toLength: 16, withPad: " ", startingAt: 0)
                + "align \(s.align)".padding(toLength: 11, withPad: " ", startingAt: 0)
                + (s.address.map { "→ \(hex($0))" } ?? ""))
        }
        let bySection = Dictionary(grouping: r.relocations, by: \.section)
        row("relocations", bySection.sorted { $0.key < $1.key }.map { key, counts in
            "\(key): " + counts.map { "\($0.type) ×\($0.count)" }.joined(separator: ", ")
        }.joined(separator: "; "))
        for s in r.abiSymbols {
            row(s.role == "option" ? "option" : "abi " + s.role,
                s.present ? "\(s.name) at \(s.section ?? "?")+\(hex(s.offset ?? 0)), size \(s.size ?? 0)" + (s.address.map { " → \(hex($0))" } ?? "")
                          : "\(s.name) MISSING")
        }
        for e in r.entries { row("entry", "\(e.rule) rule: \(hex(e.address)) (\(e.source))") }
        if let never = r.neverLoads {
            row("loads", "nowhere: \(never)")
        } else {
            let ranges = r.loadsCleanly.map { "[\(hex($0.low)), \(hex($0.high))]" }.joined(separator: " ∪ ")
            row("loads", "cleanly at \(hex(r.bufAlign))-aligned addresses in \(ranges.isEmpty ? "none" : ranges)")
            if let failing = r.lowestFailingAddress { row("", "lowest failing load address \(hex(failing))") }
        }
        row("this load", r.loadError.map { "refused: \($0)" } ?? noRAM ?? "loads")
        for d in r.diagnostics { row("diagnostic", d) }
        let shown = r.lints.prefix(12)
        for l in shown { row("lint", "\(l.kind): \(l.message)") }
        if r.lints.count > shown.count { row("", "… and \(r.lints.count - shown.count) more (--json lists all)") }
        return lines.joined(separator: "\n")
    }
}
