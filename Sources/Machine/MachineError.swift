/// The emulator could not do what the harness asked (a harness problem, not a verdict).
public struct MachineError: Error, CustomStringConvertible, Sendable {
    public var operation: String
    public var reason: String
    public var description: String { "machine: \(operation): \(reason)" }
}
