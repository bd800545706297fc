/// The identity page tables relocate_kernel's init_pgtable builds, reduced to what the harness
/// maps: 1 GiB leaves (direct_gbpages) over every GiB a region touches, nothing else.
///
/// Pages in order: the root (PML4, or PML5 with 5 levels), then the PML4s (5 levels only), then
/// the PDPTs, each group sorted by address, so the same regions always give the same bytes.
struct IdentityMap {
    let levels: AddressSpace.Levels
    /// Every GiB (address >> 30) some region touches, sorted.
    let gibibytes: [UInt64]
    /// Keys (address >> 48) of the PML4 pages, with 5 levels.
    let pml4Keys: [UInt64]
    /// Keys (address >> 39) of the PDPT pages.
    let pdptKeys: [UInt64]

    init(_ regions: [LongModeMachine.Region], levels: AddressSpace.Levels) {
        self.levels = levels
        var touched = Set<UInt64>()
        for region in regions where region.size > 0 {
            for gib in (region.start >> 30) ... ((region.start &+ (region.size - 1)) >> 30) { touched.insert(gib) }
        }
        gibibytes = touched.sorted()
        pdptKeys = Array(Set(gibibytes.map { $0 >> 9 })).sorted()
        pml4Keys = levels == .five ? Array(Set(gibibytes.map { $0 >> 18 })).sorted() : []
    }

    var pages: Int { 1 + pml4Keys.count + pdptKeys.count }

    /// The tables' bytes for a placement at `base` (page-aligned, identity-mapped).
    func bytes(at base: UInt64) -> [UInt8] {
        let present: UInt64 = 0x3  // P | RW (supervisor only: U/S clear)
        let large: UInt64 = 0x80   // PS
        var words = [UInt64](repeating: 0, count: 512 * pages)
        func page(_ n: Int) -> UInt64 { base + UInt64(n) * 0x1000 }
        let firstPDPT = 1 + pml4Keys.count
        for (n, key) in pdptKeys.enumerated() {
            let pdpt = page(firstPDPT + n)
            switch levels {
            case .four:
                words[Int(key & 511)] = pdpt | present
            case .five:
                guard let m = pml4Keys.firstIndex(of: key >> 9) else { continue }
                words[Int(key >> 9 & 511)] = page(1 + m) | present
                words[512 * (1 + m) + Int(key & 511)] = pdpt | present
            }
        }
        for gib in gibibytes {
            guard let n = pdptKeys.firstIndex(of: gib >> 9) else { continue }
            words[512 * (firstPDPT + n) + Int(gib & 511)] = gib << 30 | present | large
        }
        return words.withUnsafeBytes { Array($0) }  // little-endian host
    }
}
