import ELF

/// An x86 bzImage (/boot/vmlinuz-*): the real-mode setup sectors carrying the boot protocol's
/// setup header, then the protected-mode kernel — a small decompressor with the compressed
/// vmlinux inside it at `payload_offset`.
///
/// Field offsets are the boot protocol's (Documentation/arch/x86/boot.rst). The checks in
/// `checkLoadable` are the ones kexec_file's bzImage64 probe makes before it will load a kernel.
public struct BzImage: Sendable {
    public let bytes: [UInt8]
    public let setupSectors: Int
    public let protocolVersion: UInt16
    public let loadFlags: UInt8
    public let kernelAlignment: UInt32
    public let relocatable: Bool
    public let xloadFlags: UInt16
    public let commandLineSize: UInt32
    public let payloadOffset: UInt32
    public let payloadLength: UInt32
    public let preferredAddress: UInt64
    public let initSize: UInt32

    public static let headerMagicOffset = 0x202
    static let setupHeaderStart = 0x1f1

    /// True when the file carries the setup header's "HdrS" and the 0xAA55 boot flag.
    public static func looksLike(_ bytes: [UInt8]) -> Bool {
        bytes.count >= 0x270 && bytes[0x1fe] == 0x55 && bytes[0x1ff] == 0xaa && bytes[0x202 ..< 0x206].elementsEqual("HdrS".utf8)
    }

    public init(bytes: [UInt8]) throws(ContainerError) {
        guard bytes.count >= 0x270 else {
            throw ContainerError(structure: "bzImage setup header", reason: "the file is \(bytes.count) bytes, a setup header needs 0x270")
        }
        guard Self.looksLike(bytes) else {
            throw ContainerError(structure: "bzImage setup header",
                                 reason: "expected boot flag 0xaa55 at 0x1fe and \"HdrS\" at 0x202, found \(hex(u16(bytes, 0x1fe))) and \(printable(bytes[0x202 ..< 0x206]))")
        }
        self.bytes = bytes
        setupSectors = bytes[0x1f1] == 0 ? 4 : Int(bytes[0x1f1])
        protocolVersion = u16(bytes, 0x206)
        loadFlags = bytes[0x211]
        kernelAlignment = u32(bytes, 0x230)
        relocatable = bytes[0x234] != 0
        xloadFlags = u16(bytes, 0x236)
        commandLineSize = u32(bytes, 0x238)
        payloadOffset = u32(bytes, 0x248)
        payloadLength = u32(bytes, 0x24c)
        preferredAddress = u64(bytes, 0x258)
        initSize = u32(bytes, 0x260)
        guard protocolVersion >= 0x0208 else {
            throw ContainerError(structure: "bzImage setup header",
                                 reason: "boot protocol \(versionString) has no payload fields (2.08 or later expected)")
        }
        guard protectedModeOffset <= bytes.count else {
            throw ContainerError(structure: "bzImage setup header",
                                 reason: "setup_sects \(setupSectors) puts the protected-mode kernel at \(hex(protectedModeOffset)), past the end of the \(hex(bytes.count))-byte file")
        }
    }

    public var versionString: String { Self.versionString(protocolVersion) }

    /// A boot protocol version as the documentation writes it: 0x020f → "2.15".
    public static func versionString(_ version: UInt16) -> String { "\(version >> 8).\(String(version & 0xff).leftPadded(2))" }

    /// Where the protected-mode kernel (the part kexec loads as the kernel segment) starts in the file.
    public var protectedModeOffset: Int { (setupSectors + 1) * 512 }

    /// The setup header as the boot protocol defines it: from 0x1f1 to the end its jump at 0x200 skips.
    public var setupHeader: ArraySlice<UInt8> {
        bytes[Self.setupHeaderStart ..< min(bytes.count, 0x202 + Int(bytes[0x201]))]
    }

    /// The compressed vmlinux, checked to lie inside the file.
    public func payload() throws(ContainerError) -> ArraySlice<UInt8> {
        let start = protectedModeOffset + Int(payloadOffset), end = start + Int(payloadLength)
        guard payloadLength > 0, end <= bytes.count else {
            throw ContainerError(structure: "bzImage payload",
                                 reason: "payload_offset \(hex(payloadOffset)) + payload_length \(hex(payloadLength)) after the setup sectors (\(hex(protectedModeOffset))) is not inside the \(hex(bytes.count))-byte file")
        }
        return bytes[start ..< end]
    }

    /// The kernel release string the setup header's kernel_version field points to (at that value
    /// + 0x200 in the file): "6.12.118+deb12-amd64 (debian-kernel@lists.debian.org) #1 SMP …".
    /// nil when the field is 0 or points outside the setup sectors.
    public var kernelRelease: String? {
        let pointer = Int(u16(bytes, 0x20e))
        guard pointer != 0 else { return nil }
        let start = pointer + 0x200
        guard start < min(bytes.count, protectedModeOffset) else { return nil }
        let text = bytes[start ..< min(bytes.count, protectedModeOffset, start + 256)].prefix { $0 != 0 }
        guard !text.isEmpty, text.allSatisfy({ $0 >= 0x20 && $0 < 0x7f }) else { return nil }
        return String(decoding: text, as: UTF8.self)
    }

    /// XLF_5LEVEL: the kernel can be entered with 5-level paging on.
    public var handlesFiveLevelPaging: Bool { xloadFlags & 0x20 != 0 }

    /// What kexec_file's bzImage64 probe insists on: protocol 2.12+, a bzImage (LOADED_HIGH),
    /// a 64-bit entry point, loadable above 4 GiB. Returns the first failed condition, or nil.
    public func refusalToLoad() -> String? {
        if protocolVersion < 0x020c { return "boot protocol \(versionString); kexec_file needs 2.12 or later" }
        if loadFlags & 0x01 == 0 { return "loadflags \(hex(loadFlags)) lack LOADED_HIGH: a zImage, not a bzImage" }
        if xloadFlags & 0x01 == 0 { return "xloadflags \(hex(xloadFlags)) lack XLF_KERNEL_64: no 64-bit entry point" }
        if xloadFlags & 0x02 == 0 { return "xloadflags \(hex(xloadFlags)) lack XLF_CAN_BE_LOADED_ABOVE_4G" }
        return nil
    }
}

func u16(_ b: [UInt8], _ at: Int) -> UInt16 { UInt16(b[at]) | UInt16(b[at + 1]) << 8 }
func u32(_ b: [UInt8], _ at: Int) -> UInt32 { (0 ..< 4).reduce(UInt32(0)) { $0 | UInt32(b[at + $1]) << (8 * $1) } }
func u64(_ b: some RandomAccessCollection<UInt8>, _ at: Int) -> UInt64 {
    let start = b.index(b.startIndex, offsetBy: at)
    return (0 ..< 8).reduce(UInt64(0)) { $0 | UInt64(b[b.index(start, offsetBy: $1)]) << (8 * $1) }
}

func printable(_ bytes: ArraySlice<UInt8>) -> String {
    "\"" + bytes.map { (0x20 ..< 0x7f).contains($0) ? String(UnicodeScalar($0)) : "\\x" + String($0, radix: 16).leftPadded(2) }.joined() + "\""
}
