/// A structural defect in an ELF file: which file, which structure, and why.
///
/// Rendered as one line, e.g.
/// `purgatory.ro: section header 7 (.rela.text): data [0x1c40, +0x600) extends past the end of the file (0x1e00 bytes)`.
public struct ELFError: Error, Equatable, CustomStringConvertible, Sendable {
    public var file: String
    public var structure: String
    public var reason: String

    public init(file: String, structure: String, reason: String) {
        self.file = file
        self.structure = structure
        self.reason = reason
    }

    public var description: String { "\(file): \(structure): \(reason)" }
}

/// Hex formatting used in every message of the project: `0x1f`, never padded.
@inlinable
public func hex<T: BinaryInteger>(_ value: T) -> String {
    value < 0 ? "-0x" + String(value.magnitude, radix: 16) : "0x" + String(value, radix: 16)
}
