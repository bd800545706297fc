/// The physical address space of the emulated machine, and how its identity map is executed.
///
/// relocate_kernel hands the purgatory an identity map (virtual = physical) built with the
/// paging depth the old kernel ran with: 4 levels reach 2^47 (the lower canonical half),
/// 5 levels (CR4.LA57) reach 2^56. The CPU's physical width (MAXPHYADDR, 36…52 bits) bounds
/// where RAM can be at all.
///
/// Unicorn 2.0.1 walks page tables only for physical addresses below 2^40 (its CPU models
/// report 40 bits, and a table, fetch or access at or above 2^40 faults with paging on, 5-level
/// included: measured, unicorn-2.0.1-notes "Machine state"). So a machine whose memory all
/// lies below 2^40 executes the real identity map, walked at every access; any other machine
/// executes with paging off ("flat"): in long mode with CR0.PG clear Unicorn runs 64-bit code at
/// any mapped address and checks neither canonical form nor physical width. The identity tables
/// are still built in the harness pages and CR3 shows them, but nothing walks them, and the
/// machine refuses to let the guest observe the difference (see `GuardedInstruction`).
public struct AddressSpace: Sendable, Equatable {
    /// Paging depth of the identity map.
    public enum Levels: Int, Sendable, CaseIterable {
        case four = 4, five = 5
        public var name: String { "\(rawValue)-level" }
    }

    /// MAXPHYADDR: RAM lies below 2^physicalBits.
    public var physicalBits: Int
    public var levels: Levels

    public static let physicalBitsRange = 36 ... 52
    /// Unicorn 2.0.1's physical width with paging on: memory at or above this runs flat.
    public static let walkLimit: UInt64 = 1 << 40

    public init(physicalBits: Int = 52, levels: Levels = .four) {
        self.physicalBits = physicalBits
        self.levels = levels
    }

    /// 2^physicalBits, for widths in `physicalBitsRange` (others are clamped into it).
    public var physicalLimit: UInt64 {
        UInt64(1) << UInt64(min(max(physicalBits, Self.physicalBitsRange.lowerBound), Self.physicalBitsRange.upperBound))
    }

    /// First address an identity map of this depth cannot reach (virtual = physical must be canonical).
    public var identityLimit: UInt64 { levels == .four ? 1 << 47 : 1 << 56 }

    /// Why `[start, start + size)` cannot be RAM of this machine, or nil when it can.
    public func refusal(start: UInt64, size: UInt64) -> String? {
        let end = start.addingReportingOverflow(size)
        guard !end.overflow else { return "it wraps past the top of the address space" }
        if end.partialValue > physicalLimit {
            return "no RAM can exist there: the machine's physical addresses have \(physicalBits) bits (below \(hex(physicalLimit)); --phys-bits)"
        }
        if end.partialValue > identityLimit {
            return "a \(levels.name) identity map cannot reach it (virtual = physical must stay below \(hex(identityLimit)); --paging 5)"
        }
        return nil
    }
}

/// How a run's memory accesses are translated.
public enum Translation: Sendable, Equatable {
    /// Paging on: the identity tables of this depth are walked at every access.
    case walked(AddressSpace.Levels)
    /// Paging off: every mapped address runs, nothing is walked (memory at or above 2^40).
    case flat

    /// "4-level", "5-level" or "flat".
    public var name: String {
        switch self {
        case .walked(let levels): levels.name
        case .flat: "flat"
        }
    }
}
