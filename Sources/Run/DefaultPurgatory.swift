import ELF

/// The reference purgatory built from Purgatories/reference (committed as
/// Purgatories/reference/purgatory.ro) and embedded at build time, so that
/// `purgatory-harness run` with no file works from any directory.
public enum DefaultPurgatory {
    public static let name = "Purgatories/reference/purgatory.ro (built in)"
    public static var bytes: [UInt8] { PackageResources.purgatory_ro }
    public static func file() throws(ELFError) -> ELFFile { try ELFFile(bytes: bytes, name: name) }
}
