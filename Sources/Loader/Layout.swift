import ELF

/// Kernel arithmetic on sizes and alignments. `ALIGN(x, 0)` is 0 in the kernel
/// (the mask is all zeros) and that quirk is reproduced on purpose.
@inlinable
public func kernelAlign(_ x: UInt64, _ alignment: UInt64) -> UInt64 {
    (x &+ alignment &- 1) & ~(alignment &- 1)
}

public let pageSize: UInt64 = 0x1000

/// The purgatory buffer as kexec_purgatory_setup_kbuf sizes it, before placement.
public struct BufferLayout: Equatable, Sendable {
    /// Alignment of the whole buffer, at least a page (kexec_add_buffer raises it).
    public var bufAlign: UInt64
    /// Bytes copied from the file (PROGBITS and friends, in section order).
    public var bufsz: UInt64
    public var bssAlign: UInt64
    public var bssSize: UInt64
    /// bufsz + bss, as the kernel computes it.
    public var memsz: UInt64
    /// memsz rounded up to a page: the segment's length, and what purgatory occupies in RAM.
    public var segmentSize: UInt64 { kernelAlign(memsz, pageSize) }

    /// kexec_purgatory_setup_kbuf: walk SHF_ALLOC sections in index order.
    static func compute(_ sections: ArraySlice<SectionHeader>) -> BufferLayout {
        var bufAlign: UInt64 = 1, bssAlign: UInt64 = 1, bufsz: UInt64 = 0, bssSize: UInt64 = 0
        for section in sections where section.isAlloc {
            let align = section.addralign
            if section.isNobits {
                bssAlign = max(bssAlign, align)
                bssSize = kernelAlign(bssSize, align) &+ section.size
            } else {
                bufAlign = max(bufAlign, align)
                bufsz = kernelAlign(bufsz, align) &+ section.size
            }
        }
        bufsz = kernelAlign(bufsz, bssAlign)
        let memsz = bufsz &+ bssSize
        bufAlign = max(bufAlign, bssAlign, pageSize)
        return BufferLayout(bufAlign: bufAlign, bufsz: bufsz, bssAlign: bssAlign,
                            bssSize: bssSize, memsz: memsz)
    }
}
