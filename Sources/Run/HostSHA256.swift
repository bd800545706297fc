import CLibCrypto

/// SHA-256's compression function on the host: OpenSSL's libcrypto (`SHA256_Transform`, through
/// `ph_sha256_blocks` in Sources/CLibCrypto/shim.h). Every call into libcrypto is in this file.
///
/// swift-crypto (the digest the harness stores) hashes whole messages and does not expose the
/// block function; `--fast-hash` needs it on the guest's own state, block by block.
public enum HostSHA256 {
    /// Updates the eight state words (native byte order, h0 … h7) with `blocks` 64-byte blocks at `data`.
    public static func compress(_ state: UnsafeMutablePointer<UInt32>, _ data: UnsafeRawPointer, blocks: Int = 1) {
        ph_sha256_blocks(state, data.assumingMemoryBound(to: UInt8.self), blocks)
    }

    /// "OpenSSL 3.0.x …" as the library reports it.
    public static var libraryVersion: String { String(cString: OpenSSL_version(OPENSSL_VERSION)) }
}
