/// Why a file holds no purgatory the harness can use: which structure, and what was expected
/// against what was found. `file` is filled in by the front door, so one line names all three.
public struct ContainerError: Error, Equatable, CustomStringConvertible, Sendable {
    public var file: String
    public var structure: String
    public var reason: String

    public init(file: String = "", structure: String, reason: String) {
        self.file = file
        self.structure = structure
        self.reason = reason
    }

    public var description: String { "\(file): \(structure): \(reason)" }
}
