import ArgumentParser
import ELF
import Machine
import Run

extension AddressSpace.Levels: ExpressibleByArgument {
    public init?(argument: String) { self.init(rawValue: Int(argument) ?? 0) }
    public static var allValueStrings: [String] { ["4", "5"] }
}

/// The machine a purgatory runs on: shared by run, fuzz, compare, matrix and inspect.
struct MachineArguments: ParsableArguments {
    @Option(help: ArgumentHelp("The machine's physical address width, 36 to 52: no RAM at or above 2^N.", valueName: "N"))
    var physBits = 52

    @Option(help: ArgumentHelp("Identity map depth, 4 or 5 (default: 5 where anything lies at or above 2^46, the most RAM a 4-level kernel uses; else 4).",
                               valueName: "levels"))
    var paging: AddressSpace.Levels?

    @Option(help: ArgumentHelp("Draw the segments and the harness's pages from LO-HI (default: below 2^40 and below 2^phys-bits).",
                               valueName: "LO-HI"))
    var segmentRange: AddressRange?

    func validate() throws {
        guard AddressSpace.physicalBitsRange.contains(physBits) else {
            throw ValidationError("--phys-bits \(physBits): x86-64 physical addresses have 36 to 52 bits")
        }
        if let segmentRange, segmentRange.range.high > options.ramLimit {
            throw ValidationError("--segment-range \(segmentRange.range.name): reaches beyond the machine's RAM (below \(hex(options.ramLimit)))")
        }
    }

    var options: MachineOptions {
        var options = MachineOptions()
        options.physicalBits = physBits
        options.paging = paging
        options.segmentRange = segmentRange.map { $0.range.low ..< $0.range.high }
        return options
    }
}
