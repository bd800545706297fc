import ELF

// x86-64 relocations as the kexec_file loader applies them
// (arch_kexec_apply_relocations_add in arch/x86/kernel/machine_kexec_64.c).
//
// The purgatory is an ET_REL object, so every reference between its sections
// is a relocation that the kernel resolves once it knows where the buffer
// landed. The kernel's resolver is deliberately tiny: six types and nothing
// else. There is no GOT and no PLT, so the GOT-relative types that -fpic emits
// for extern data (GOTPCREL, GOTPCRELX, REX_GOTPCRELX) are refused as
// "Unknown rela relocation", which is why Linux builds the purgatory with
// hidden visibility. The absolute 32-bit types are checked for overflow: a
// purgatory built -mcmodel=kernel or without PIC loads in low memory and fails
// with "Overflow in relocation type 11" once the kernel places it at or above
// 2 GiB, the 2019 report from a 1.5 TiB machine. The PC-relative types are
// *not* checked: a displacement that does not fit 32 bits is truncated without
// a word, so the object loads and later jumps into the weeds. The harness keeps
// exactly that behaviour, and exactly the kernel's arithmetic: every value is
// computed in wrapping 64-bit unsigned arithmetic, `S + A` or `S + A - P`.

/// The value and bytes one relocation writes, or the kernel's refusal.
enum X86_64Relocator {
    /// Applies relocation `type` with computed `value` = S + A at `location` (P).
    /// Returns the bytes to store, little-endian.
    static func apply(type: UInt32, value: UInt64, place: UInt64, kind: LoaderKind = .kexecFile) -> Result<[UInt8], LoadError> {
        switch type {
        case X86_64Relocation.none:
            return .success([])
        case X86_64Relocation.r64:
            return .success(littleEndianBytes(value))
        case X86_64Relocation.r32:
            // Zero-extended 32-bit absolute: the value must fit in 32 bits unsigned.
            guard value == UInt64(UInt32(truncatingIfNeeded: value)) else { return .failure(overflow(type, value, kind)) }
            return .success(littleEndianBytes(value, width: 4))
        case X86_64Relocation.r32s:
            // Sign-extended 32-bit absolute: the value must equal its own low 32 bits sign-extended.
            guard Int64(bitPattern: value) == Int64(Int32(truncatingIfNeeded: value)) else {
                return .failure(overflow(type, value, kind))
            }
            return .success(littleEndianBytes(value, width: 4))
        case X86_64Relocation.pc32, X86_64Relocation.plt32:
            // PC-relative, truncated to 32 bits with no overflow check.
            return .success(littleEndianBytes(value &- place, width: 4))
        default:
            return .failure(kind == .kexecTools ? .kexecTools("Unhandled rela relocation: \(X86_64Relocation.name(type))")
                                                : .kexec("Unknown rela relocation: \(type)"))
        }
    }

    /// Bytes a known type writes; nil for types the kernel refuses.
    static func width(of type: UInt32) -> Int? {
        switch type {
        case X86_64Relocation.none: 0
        case X86_64Relocation.r64: 8
        case X86_64Relocation.r32, X86_64Relocation.r32s, X86_64Relocation.pc32, X86_64Relocation.plt32: 4
        default: nil
        }
    }

    private static func overflow(_ type: UInt32, _ value: UInt64, _ kind: LoaderKind) -> LoadError {
        kind == .kexecTools
            ? .kexecTools("overflow in relocation type \(X86_64Relocation.name(type)) val \(String(value, radix: 16))")
            : .kexec("Overflow in relocation type \(type) value \(hex(value))")
    }
}
