import ELF

/// The loader refused the purgatory, as the kernel would: `message` is the line
/// the kernel prints (prefix included), `log` everything it prints in order.
/// A refusal is a verdict about the purgatory, not a harness failure.
public struct LoadError: Error, Equatable, CustomStringConvertible, Sendable {
    public var log: [String]
    public var message: String { log.first ?? "" }
    public var description: String { message }

    public init(log: [String]) { self.log = log }

    /// The bzImage loader's line after any failure inside kexec_load_purgatory.
    static let purgatoryFailed = "kexec-bzImage64: Loading purgatory failed"

    /// A relocation failure: machine_kexec_64.c prints under the "kexec: " prefix.
    static func kexec(_ line: String) -> LoadError {
        LoadError(log: ["kexec: " + line, purgatoryFailed])
    }

    /// A symbol failure: kexec_file.c prints under the "kexec_file: " prefix.
    static func kexecFile(_ line: String) -> LoadError {
        LoadError(log: ["kexec_file: " + line])
    }

    /// kexec-tools dies with one line on stderr, no prefix.
    static func kexecTools(_ line: String) -> LoadError { LoadError(log: [line]) }

    /// A failure the kernel does not print (it only returns an errno); the text is ours.
    static func silent(_ errno: String, _ reason: String, inPurgatoryLoad: Bool = true) -> LoadError {
        LoadError(log: ["(no kernel message: \(errno)) " + reason] + (inPurgatoryLoad ? [purgatoryFailed] : []))
    }

    /// kexec_purgatory_setup_kbuf's vzalloc(0): __vmalloc_node_range's WARN_ON_ONCE(!size), then -ENOMEM.
    static let emptyBuffer = LoadError(log: [
        "WARNING: at mm/vmalloc.c __vmalloc_node_range: WARN_ON_ONCE(!size): vzalloc(0) for a purgatory with no SHF_ALLOC bytes (-ENOMEM)",
        purgatoryFailed,
    ])

    /// A condition the kernel does not detect at all and on which it would corrupt memory.
    static func unchecked(_ reason: String) -> LoadError {
        LoadError(log: ["harness: the kernel does not check this and would overrun its buffer: " + reason])
    }
}

/// Something the loader noticed that does not stop the load.
public struct Diagnostic: Equatable, Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        /// The kernel itself would print this (WARN_ON and friends).
        case kernelWarning = "kernel-warning"
        /// Our own observation about the object.
        case lint
    }
    public var kind: Kind
    public var message: String
    public var description: String { "\(kind.rawValue): \(message)" }
}

/// Either way a load can fail: the object is malformed (bad input), or the kernel refuses it (a verdict).
public enum LoadFailure: Error, CustomStringConvertible, Sendable {
    case malformed(ELFError)
    case refused(LoadError)

    public var description: String {
        switch self {
        case .malformed(let e): e.description
        case .refused(let e): e.description
        }
    }
}

extension LoaderKind {
    /// A failure this loader reports without a message of its own; the text is ours.
    func silent(_ errno: String, _ reason: String, inPurgatoryLoad: Bool = true) -> LoadError {
        switch self {
        case .kexecFile: .silent(errno, reason, inPurgatoryLoad: inPurgatoryLoad)
        default: LoadError(log: ["(no \(rawValue) message\(errno.isEmpty ? "" : ": " + errno)) " + reason])
        }
    }
}
