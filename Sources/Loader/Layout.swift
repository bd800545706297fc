import ELF

/// Kernel arithmetic on sizes and alignments. `ALIGN(x, 0)` is 0 in the kernel
/// (the mask is all zeros) and that quirk is reproduced on purpose.
@inlinable
public func kernelAlign(_ x: UInt64, _ alignment: UInt64) -> UInt64 {
    (x &+ alignment &- 1) & ~(alignment &- 1)
}

public let pageSize: UInt64 = 0x1000

/// The low `width` bytes of `value`, little-endian: how every loader stores a field.
public func littleEndianBytes(_ value: UInt64, width: Int = 8) -> [UInt8] {
    (0 ..< width).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) }
}

/// The purgatory buffer as kexec_purgatory_setup_kbuf sizes it, before placement.
public struct BufferLayout: Equatable, Sendable {
    /// Alignment of the whole buffer, at least a page (kexec_add_buffer raises it).
    public var bufAlign: UInt64
    /// Bytes copied from the file (PROGBITS and friends, in section order).
    public var bufsz: UInt64
    public var bssAlign: UInt64
    public var bssSize: UInt64
    /// Zeros between the copied bytes and the bss that kexec-tools adds to memsz but not
    /// to bufsz (the kernel folds them into bufsz instead, so it is 0 there).
    public var bssPad: UInt64 = 0
    /// bufsz + bss_pad + bss.
    public var memsz: UInt64
    /// memsz rounded up to a page: the segment's length, and what purgatory occupies in RAM.
    public var segmentSize: UInt64 { kernelAlign(memsz, pageSize) }

    /// kexec_purgatory_setup_kbuf (or kexec-tools' elf_rel_load): walk SHF_ALLOC sections in index order.
    static func compute(_ sections: ArraySlice<SectionHeader>, kind: LoaderKind) -> BufferLayout {
        var bufAlign: UInt64 = 1, bssAlign: UInt64 = 1, bufsz: UInt64 = 0, bssSize: UInt64 = 0
        for section in sections where section.isAlloc {
            let align = kind.alignment(section.addralign)
            if section.isNobits {
                bssAlign = max(bssAlign, align)
                bssSize = kernelAlign(bssSize, align) &+ section.size
            } else {
                bufAlign = max(bufAlign, align)
                bufsz = kernelAlign(bufsz, align) &+ section.size
            }
        }
        var bssPad: UInt64 = 0
        if kind == .kexecTools {
            bssPad = kernelAlign(bufsz, bssAlign) &- bufsz
        } else {
            bufsz = kernelAlign(bufsz, bssAlign)
        }
        let memsz = bufsz &+ bssPad &+ bssSize
        bufAlign = max(bufAlign, bssAlign, pageSize)
        return BufferLayout(bufAlign: bufAlign, bufsz: bufsz, bssAlign: bssAlign,
                            bssSize: bssSize, bssPad: bssPad, memsz: memsz)
    }
}

extension LoaderKind {
    /// The alignment a loader uses for sh_addralign: kexec-tools reads 0 as 1, the kernel does not.
    func alignment(_ addralign: UInt64) -> UInt64 { self == .kexecTools && addralign == 0 ? 1 : addralign }
}
