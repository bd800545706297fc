import ArgumentParser
import Loader

extension LoaderKind: ExpressibleByArgument {}

/// How to load the purgatory and which ABI symbols to write: shared by run, inspect and friends.
struct LoaderOptions: ParsableArguments {
    @Option(help: "Loader whose rules apply: kexec-file (the kernel's kexec_file_load), kexec-tools, or image (fully linked ET_DYN/ET_EXEC).")
    var loader: LoaderKind = .kexecFile

    @Option(help: "How kexec-file picks the entry point: symbol (480e1d5c64bb, v7.0), e_entry (8652d44f466a, v6.4, WARN on a second section) or e_entry-unguarded (before). Default: the kernel profile's.")
    var entryRule: EntryRule?

    @Option(help: "ABI profile for symbol names and register order: kernel or kexec-tools. Default: the loader's own.")
    var abi: String?

    @Option(help: "Override the region table symbol.")
    var regionsSymbol: String?
    @Option(help: "Override the digest symbol.")
    var digestSymbol: String?
    @Option(help: "Override the register block symbol.")
    var registersSymbol: String?
    @Option(help: "Override the stack symbol whose address becomes rsp.")
    var stackSymbol: String?
    @Option(help: "Override the register block's field order: 17 comma-separated names, rip last.")
    var registerOrder: String?

    func validate() throws {
        if let abi, PurgatoryABI.profile(named: abi) == nil {
            throw ValidationError("--abi must be one of \(PurgatoryABI.profiles.map(\.name).joined(separator: ", "))")
        }
    }

    /// The profile with any overrides applied.
    var resolvedABI: PurgatoryABI {
        var result = abi.flatMap(PurgatoryABI.profile(named:)) ?? .default(for: loader)
        if let regionsSymbol { result.regions = regionsSymbol }
        if let digestSymbol { result.digest = digestSymbol }
        if let registersSymbol { result.registers = registersSymbol }
        if let stackSymbol { result.stack = stackSymbol }
        if let registerOrder { result.registerOrder = registerOrder.split(separator: ",").map { String($0) } }
        return result
    }
}

/// `NAME=VALUE` for --set.
struct SymbolAssignment: ExpressibleByArgument {
    var name: String
    var value: UInt64
    init?(argument: String) {
        let parts = argument.split(separator: "=", maxSplits: 1)
        guard parts.count == 2, !parts[0].isEmpty, let value = Quantity(argument: String(parts[1]))?.value else { return nil }
        name = String(parts[0])
        self.value = value
    }
}
