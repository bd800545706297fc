import ArgumentParser
import Containers
import ELF
import Foundation
import Loader
import Machine
import Run

struct CompareCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compare",
        abstract: "Run several purgatories on the same segments at the same address; print their instruction counts per function, per phase and in total side by side.",
        discussion: """
            Functions are matched by name; ratios and differences are against the first file. \
            Exit status: 0 when every file reaches its expected verdict, 1 otherwise, 2 for bad input.
            """)

    @Argument(help: "Purgatories (objects, or vmlinux/bzImage/kexec files holding one); the first is the baseline.")
    var files: [String]

    @Option(parsing: .unconditional, help: "Seed for the segments and, without --load-address, the load address (the same for every file).")
    var seed = Seed(1)

    @Option(help: "Load every file here (default: drawn from the seed above 4 GiB, aligned for all files).")
    var loadAddress: Quantity?

    @OptionGroup var loading: LoaderOptions

    @OptionGroup var machine: MachineArguments

    @OptionGroup var kernelGeneration: KernelArguments

    @Option(help: "Size of the synthesized kernel segment.")
    var kernelSize = Quantity(16 << 10)

    @Option(help: "Size of the synthesized initrd segment (0: none).")
    var initrdSize = Quantity(8 << 10)

    @Flag(help: "Also count with the per-instruction hook; exit 1 unless it agrees per function.")
    var crossCheck = false

    @Flag(help: "Compute verified SHA-256 steps on the host (same counts and accounting; see run --help).")
    var fastHash = false

    @Option(help: "Write a bar chart of the functions and phases to this SVG file.")
    var svg: String?

    @Flag(help: "Print one JSON object instead of the table.")
    var json = false

    func validate() throws {
        guard !files.isEmpty else { throw ValidationError("name at least one purgatory file") }
        guard kernelSize.value > 0, kernelSize.value <= 256 << 20, initrdSize.value <= 256 << 20 else {
            throw ValidationError("--kernel-size must be 1 byte to 256 MiB and --initrd-size at most 256 MiB")
        }
    }

    func run() throws {
        try kernelGeneration.listIfAsked()
        let (objects, bzImages) = try Inputs.purgatories(files)
        let address = try loadAddress?.value ?? Self.commonAddress(objects, loader: loading.loader, seed: seed.value)
        var reports: [RunReport] = []
        for file in objects {
            var s = Scenario(file: file, seed: seed.value)
            s.loadAddress = address
            s.loader = loading.loader
            s.entryRule = loading.entryRule
            s.abi = loading.resolvedABI
            s.machine = machine.options
            kernelGeneration.apply(to: &s, bzImages: bzImages)
            s.counting = crossCheck ? .crossCheck : .exact
            s.fastHash = fastHash
            s.segments.kernelSize = Int(kernelSize.value)
            s.segments.initrdSize = Int(initrdSize.value)
            do { reports.append(try s.run()) } catch { throw InputError(error.description) }
        }
        if let differing = reports.first(where: { $0.verdict != .loadError && $0.segments != reports[0].segments }),
           reports[0].verdict != .loadError {
            throw InputError("\(differing.file): segments placed elsewhere than for \(reports[0].file) with seed \(hex(seed.value)) (a draw hit one purgatory and not the other): choose another --seed")
        }
        let comparison = Comparison(reports: reports)
        if let svg {
            let chart = SVGChart.render(comparison, labels: Self.labels(files))
            try OutputFile.write(Array(chart.utf8), to: svg, what: "SVG chart")
        }
        if json {
            try printJSON(comparison)
        } else {
            print(Self.render(comparison, labels: Self.labels(files)))
            if let svg { print("chart written to \(svg)") }
        }
        let agrees = reports.allSatisfy { $0.accounting?.crossCheckAgrees != false && ($0.crossCheckInstructions ?? $0.instructions) == $0.instructions }
        throw ExitCode(reports.allSatisfy(\.isExpected) && agrees ? ExitStatus.expected : ExitStatus.unexpected)
    }

    /// One address every file can be loaded at: aligned for the most demanding file, room for the
    /// largest, above 4 GiB and below the machine's limit, drawn from the seed.
    static func commonAddress(_ files: [ELFFile], loader: LoaderKind, seed: UInt64) throws -> UInt64 {
        let layouts = files.map { AnyLoader(file: $0, kind: loader).setupBuffer() }
        let align = layouts.map(\.bufAlign).max() ?? 0x1000, size = layouts.map(\.segmentSize).max() ?? 0
        let low: UInt64 = 1 << 32, limit = AddressSpace.walkLimit
        guard align & (align - 1) == 0, align < limit, size < limit - low, (limit - size) / align * align > low else {
            throw InputError("\(files.map(\.name).joined(separator: ", ")): no common load address (alignment \(hex(align)), \(hex(size)) bytes) between 4 GiB and 2^40")
        }
        var rng = SplitMix64.stream(seed, "compare-address")
        return rng.aligned(in: low, (limit - size) / align * align, alignment: align)
    }

    /// Column labels: file names without directory and ".ro", or the paths where those collide.
    static func labels(_ paths: [String]) -> [String] {
        let short = paths.map { path -> String in
            let base = path.split(separator: "/").last.map(String.init) ?? path
            return base.hasSuffix(".ro") ? String(base.dropLast(3)) : base
        }
        return Set(short).count == short.count ? short : paths
    }

    static func render(_ c: Comparison, labels: [String]) -> String {
        var lines = ["purgatory-harness compare, seed \(hex(c.seed)), load address \(hex(c.loadAddress)), the same segments for every file:"]
        lines.append("  " + c.segments.map { "\($0.name) \(hex($0.start)) +\(hex($0.length))" }.joined(separator: ", "))
        for (label, f) in zip(labels, c.files) {
            lines.append("  \(label): \(f.file): \(f.verdict.rawValue)" + (f.verdict == .verified ? "" : " (\(f.message))"))
        }
        let nameWidth = max(24, (c.rows.map(\.name.count).max() ?? 0) + 4)
        func pad(_ s: String, _ n: Int) -> String { String(repeating: " ", count: max(0, n - s.count)) + s }
        let widths = labels.map { max(13, $0.count + 2) }
        // A file the loader refused ran nothing: no count, difference or ratio, only its verdict
        // (and the message above); against a refused baseline nothing compares either.
        let refused = c.files.map { $0.verdict == .loadError }
        func cells(_ values: [String?], _ differences: [String], _ ratios: [String], total: Bool = false) -> String {
            var text = ""
            for i in values.indices {
                let none = refused[i] || (i > 0 && refused[0])
                text += pad(refused[i] ? (total ? "load-error" : "-") : values[i] ?? "-", widths[i])
                if i > 0 { text += pad(none ? "-" : differences[i], 11) + pad(none ? "-" : ratios[i], 8) }
            }
            return text
        }
        var header = "".padding(toLength: nameWidth, withPad: " ", startingAt: 0)
        for (i, label) in labels.enumerated() {
            header += pad(label, widths[i])
            if i > 0 { header += pad("Δ", 11) + pad("ratio", 8) }
        }
        lines.append("")
        lines.append(header)
        var section: Comparison.Kind?
        for row in c.rows {
            if row.kind != section {
                section = row.kind
                if row.kind == .function { lines.append("functions") }
                if row.kind == .phase { lines.append("phases") }
            }
            let name = row.kind == .total ? "total" : "  " + row.name
            let differences = row.differences.map { $0 == 0 ? "0" : ($0 > 0 ? "+" : "-") + HumanReport.grouped($0.magnitude) }
            let ratios = row.ratios.map { $0.map { String(format: "%.3f", $0) } ?? "-" }
            lines.append(name.padding(toLength: nameWidth, withPad: " ", startingAt: 0)
                         + cells(row.counts.map { $0.map(HumanReport.grouped) }, differences, ratios, total: row.kind == .total))
        }
        let perByte = c.files.map { $0.instructionsPerByte.map { String(format: "%.2f", $0) } }
        lines.append("instructions/byte".padding(toLength: nameWidth, withPad: " ", startingAt: 0)
                     + cells(perByte, c.files.map { _ in "" }, c.files.map { _ in "" }))
        let hashing = c.files.map { $0.hashingInstructionsPerByte.map { String(format: "%.2f", $0) } }
        lines.append("  of which hashing".padding(toLength: nameWidth, withPad: " ", startingAt: 0)
                     + cells(hashing, c.files.map { _ in "" }, c.files.map { _ in "" }))
        return lines.map { String($0.reversed().drop { $0 == " " }.reversed()) }.joined(separator: "\n")
    }
}
