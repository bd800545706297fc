/// The payload formats the kernel's bzImage can carry (arch/x86/boot/compressed), told apart
/// by their magic bytes as the boot decompressor's table does.
public enum CompressionFormat: String, CaseIterable, Sendable {
    case gzip, bzip2, lzma, xz, lzo, lz4, zstd

    var magic: [UInt8] {
        switch self {
        case .gzip: [0x1f, 0x8b]
        case .bzip2: Array("BZh".utf8)
        case .lzma: [0x5d, 0x00, 0x00]
        case .xz: [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]
        case .lzo: [0x89, 0x4c, 0x5a, 0x4f]
        case .lz4: [0x02, 0x21, 0x4c, 0x18]
        case .zstd: [0x28, 0xb5, 0x2f, 0xfd]
        }
    }

    public static func detect(_ bytes: ArraySlice<UInt8>) -> CompressionFormat? {
        allCases.first { bytes.starts(with: $0.magic) }
    }
}

/// A decompressed payload and what the decompression proved about it.
public struct Decompressed: Sendable {
    public var format: CompressionFormat
    public var bytes: [UInt8]
    /// Compressed bytes after the end of the stream (the kernel appends the 4-byte size).
    public var trailing: Int
    /// The uncompressed size in the payload's last four bytes (every kernel format carries one),
    /// and whether it matches what came out.
    public var declaredSize: UInt32
    public var sizeAgrees: Bool { declaredSize == UInt32(truncatingIfNeeded: bytes.count) }
}

public enum Decompression {
    /// Output is capped: a vmlinux is tens of MiB, the cap keeps a hostile payload from filling memory.
    public static let outputLimit = 1 << 30

    /// Decompresses a kernel payload; the error reason names the format and what went wrong.
    public static func decompress(_ payload: ArraySlice<UInt8>, limit: Int = outputLimit) throws(ContainerError) -> Decompressed {
        guard let format = CompressionFormat.detect(payload) else {
            let head = hexBytes(payload.prefix(6))
            throw ContainerError(structure: "compressed payload",
                                 reason: "starts with \(head), the magic of none of \(CompressionFormat.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let output: Codecs.Output
        do { output = try Codecs.decompress(format, payload, limit: limit) } catch {
            throw ContainerError(structure: "\(format.rawValue) payload", reason: error.reason)
        }
        let tail = payload.suffix(4)
        let declared = tail.count == 4 ? tail.reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) } : 0
        return Decompressed(format: format, bytes: output.bytes, trailing: payload.count - output.consumed, declaredSize: declared)
    }
}

extension String {
    func leftPadded(_ width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}

/// Bytes as two-digit hex separated by spaces ("7f 45 4c 46"), for naming what a file starts with.
func hexBytes(_ bytes: some Sequence<UInt8>) -> String {
    bytes.map { String($0, radix: 16).leftPadded(2) }.joined(separator: " ")
}
