import ELF
import Loader
import Machine

/// Why the harness could not produce a verdict: bad input (exit 2) or a harness fault.
public enum HarnessError: Error, CustomStringConvertible, Sendable {
    /// The user's input: a malformed file, an impossible address, a size out of range.
    case badInput(String)
    /// The emulator failed in a way that says nothing about the purgatory.
    case machine(MachineError)

    static func input(_ thing: String, _ reason: String) -> HarnessError { .badInput("\(thing): \(reason)") }

    public var description: String {
        switch self {
        case .badInput(let text): text
        case .machine(let error): error.description
        }
    }
}

extension HarnessError {
    init(_ error: ELFError) { self = .badInput(error.description) }
}
