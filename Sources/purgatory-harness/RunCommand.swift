import ArgumentParser
import Containers
import ELF
import Foundation
import Loader
import Machine
import Run

extension Verdict: ExpressibleByArgument {}
extension EntryRule: ExpressibleByArgument {}

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Load a purgatory at a (random) physical address, seed segments and digest, run it, report a verdict.",
        discussion: """
            Exit status: 0 when the verdict is the expected one (verified; rejected-digest with --tamper; \
            or --expect), 1 for any other verdict, 2 for bad input or usage.
            """)

    @Argument(help: "Purgatory: an ELF object, or the one inside a vmlinux, bzImage or kexec-tools binary. Default: the built-in reference purgatory.")
    var file: String?

    @Option(parsing: .unconditional, help: "Seed for every random choice (decimal, 0x hex, or negative for two's complement). Default: a fresh one, printed.")
    var seed: Seed?

    @Option(help: "Place the purgatory here instead of drawing an address.")
    var loadAddress: Quantity?

    @Option(help: "Lowest address a drawn load address may have.")
    var minAddress = Quantity(argument: "4G")!

    @Option(help: "Drawn load addresses keep the purgatory below this address.")
    var maxAddress = Quantity(argument: "1T")!

    @OptionGroup var loading: LoaderOptions

    @OptionGroup var machine: MachineArguments

    @OptionGroup var kernelGeneration: KernelArguments

    @Option(name: .customLong("set"), help: "Write VALUE into the purgatory's global NAME (its own size), e.g. console_serial=1.")
    var assignments: [SymbolAssignment] = []

    @Option(help: ArgumentHelp("The next kernel: a bzImage (/boot/vmlinuz-*) is laid out as bzImage64_load does; any other file is used as raw bytes.",
                               discussion: "With a bzImage: boot params carry its setup header and the command line, the protected-mode kernel sits at its kernel_alignment with memsz = init_size, the initrd at or above 16 MiB."))
    var kernel: String?

    @Option(help: "Use this file's bytes as the initrd segment.")
    var initrd: String?

    @Option(help: "Kernel command line stored after boot params.")
    var cmdline = SegmentPlan().commandLine

    @Option(help: "Size of the synthesized kernel segment (e.g. 16K, 1M).")
    var kernelSize = Quantity(argument: "16K")!

    @Option(help: "In-memory size of the kernel segment, zero tail included (default: 1.5 × its size).")
    var kernelMemsz: Quantity?

    @Option(help: "Size of the synthesized initrd segment (0: none).")
    var initrdSize = Quantity(argument: "8K")!

    @Option(help: ArgumentHelp("Add an IMA measurement list segment of this size (CONFIG_IMA_KEXEC), segment 0 as ima_add_kexec_buffer adds it.", valueName: "size"))
    var imaSegment: Quantity?

    @Flag(help: "IMA rewrites its segment between load and kexec -e (9f0ec4b16f2b): it verifies only where the kernel leaves that segment out of the digest (6.16, 6.12.94).")
    var imaRewrite = false

    @Flag(help: "Load a crash (kdump) image: an elfcorehdr segment first, \"elfcorehdr=0x…K\" on the command line.")
    var crash = false

    @Flag(help: "Flip one byte of a hashed segment after the digest is taken; the expected verdict becomes rejected-digest.")
    var tamper = false

    @Option(help: "Instruction budget. Default: 1,000,000 + 256 per hashed byte.")
    var budget: Quantity?

    @Flag(help: "Also count with a per-instruction hook and fail unless both counts agree.")
    var crossCheck = false

    @Flag(help: ArgumentHelp("Compute verified SHA-256 steps on the host: same verdict and instruction count, much faster on large segments.",
                             discussion: "The hashing loop's steps are proven in emulation first, one in every --check-every stays emulated and is compared, and any difference repeats the run in full emulation (docs/performance.md)."))
    var fastHash = false

    @Option(help: ArgumentHelp("With --fast-hash: one step in every N stays emulated and is compared.", valueName: "N"))
    var checkEvery = 256

    @Option(help: "The verdict that counts as success (default: verified, or rejected-digest with --tamper).")
    var expect: Verdict?

    @Flag(help: "Print one JSON object instead of the human report.")
    var json = false

    @Flag(help: "No progress line on stderr (it appears only on a terminal, for runs longer than a second).")
    var quiet = false

    @Option(help: "Write the executed blocks in order to this file: address, function+offset, instructions; one block a line.")
    var trace: String?

    @Option(help: "Most blocks --trace writes (the run goes on and counts the rest; at most \(TraceFile.maximumBlocks)).")
    var traceLimit = TraceFile.defaultBlocks

    func validate() throws {
        guard maxAddress.value > minAddress.value else { throw ValidationError("--max-address must be above --min-address") }
        guard kernelSize.value > 0, kernelSize.value <= UInt64(Inputs.maximumFileSize),
              initrdSize.value <= UInt64(Inputs.maximumFileSize) else {
            throw ValidationError("--kernel-size must be 1 byte to 2 GiB and --initrd-size at most 2 GiB")
        }
        try TraceFile.validate(limit: traceLimit)
        if imaRewrite && imaSegment == nil { throw ValidationError("--ima-rewrite needs --ima-segment SIZE") }
        if let size = imaSegment?.value, size == 0 || size > 256 << 20 { throw ValidationError("--ima-segment must be 1 byte to 256M") }
        guard checkEvery >= 2 else { throw ValidationError("--check-every must be at least 2") }
    }

    func run() throws {
        try kernelGeneration.listIfAsked()
        var bzImages: [(path: String, image: BzImage)] = []
        let file: ELFFile
        if let path = self.file {
            let extracted = try Inputs.extracted(path)
            file = extracted.file
            if let image = extracted.extraction.bzImage { bzImages.append((path, image)) }
        } else {
            file = try Inputs.purgatory(nil)
        }
        var scenario = Scenario(file: file, seed: seed?.value ?? UInt64.random(in: 0 ... UInt64.max))
        scenario.loadAddress = loadAddress?.value
        scenario.addressRange = minAddress.value ..< maxAddress.value
        scenario.machine = machine.options
        scenario.loader = loading.loader
        scenario.entryRule = loading.entryRule
        scenario.abi = loading.resolvedABI
        scenario.symbolValues = assignments.map { ($0.name, $0.value) }
        scenario.tamper = tamper
        scenario.budget = budget?.value
        scenario.counting = crossCheck ? .crossCheck : .exact
        scenario.fastHash = fastHash
        scenario.fastHashCheckEvery = checkEvery
        scenario.segments.commandLine = cmdline
        scenario.segments.kernelSize = Int(kernelSize.value)
        scenario.segments.initrdSize = Int(initrdSize.value)
        scenario.segments.kernelMemsz = kernelMemsz.map { Int($0.value) }
        scenario.segments.imaSize = imaSegment.map { Int($0.value) }
        scenario.segments.crash = crash
        scenario.imaRewrite = imaRewrite
        if let kernel {
            let bytes = try Inputs.read(kernel, what: "kernel segment")
            if BzImage.looksLike(bytes) {
                guard kernelMemsz == nil else { throw InputError("\(kernel): --kernel-memsz does not apply to a bzImage (its init_size decides)") }
                do { scenario.segments.bzImage = try BzImage(bytes: bytes) } catch {
                    var named = error
                    named.file = kernel
                    throw InputError(named.description)
                }
                scenario.segments.kernelName = kernel
                if let image = scenario.segments.bzImage { bzImages.append((kernel, image)) }
            } else {
                scenario.segments.kernel = bytes
            }
        }
        if let initrd { scenario.segments.initrd = try Inputs.read(initrd, what: "initrd segment") }

        kernelGeneration.apply(to: &scenario, bzImages: bzImages)
        let line = ProgressLine.forTerminal(quiet: quiet)
        scenario.progress = line.map { line in
            let total = scenario.segments.estimatedBytes
            return ProgressReport(every: 20_000_000) { instructions in line.emulation(instructions: instructions, totalBytes: total) }
        }

        let traceFile = try trace.map { try TraceFile(path: $0) }
        scenario.recordBlocks = traceFile == nil ? 0 : traceLimit

        var report: RunReport
        do { report = try scenario.run() } catch { throw InputError(error.description) }
        line?.finish()
        if let expect { report.expected = expect }
        let crossCheckFailed = report.crossCheckInstructions.map { $0 != report.instructions } ?? false
            || report.accounting?.crossCheckAgrees == false
        // The verdict is reported even when the trace cannot be written: report first, then the error.
        var traceSummary: String?, traceError: Error?
        do { traceSummary = try traceFile?.write(report) } catch { traceError = error }

        defer { fflush(nil) }
        if json {
            try printJSON(report)
            if let traceSummary, report.trace?.isComplete == false {
                FileHandle.standardError.write(Data("purgatory-harness: trace: \(traceSummary)\n".utf8))
            }
        } else {
            print(HumanReport.render(report))
            if let traceSummary { print("  trace        " + traceSummary) }
        }
        if let traceError { throw traceError }
        if report.verdict == .harnessError && expect != .harnessError {
            FileHandle.standardError.write(Data("purgatory-harness: error: \(report.file): \(report.message)\n".utf8))
            throw ExitCode(ExitStatus.badInput)
        }
        throw ExitCode(report.isExpected && !crossCheckFailed ? ExitStatus.expected : ExitStatus.unexpected)
    }
}
