import Loader
import Machine

// Kernel generations: what changed, release by release, in what kexec_file_load and
// relocate_kernel do to a purgatory.
//
// A profile is a kernel version; every rule below is a change with the commit that made it,
// the mainline release it entered and the stable releases it was backported to. A version has
// a change when it is at or past the mainline release, or in a stable series at or past that
// series' backport. Nothing else about a profile is stored, so "linux-6.12.0", "6.12.94" and a
// bzImage's own version string ("6.12.118+deb12-amd64") all resolve the same way.
//
// Facts checked against the commit and stable mails (docs/kernel-generations.md lists each with
// its source and the test that fails if the harness modelled the previous generation). Backports
// whose stable version could not be confirmed are not claimed: those series are treated as
// lacking the change, and the docs say so.

/// A Linux version: major.minor.patch (a release candidate counts as its release).
public struct KernelVersion: Comparable, Hashable, Sendable, CustomStringConvertible {
    public var major: Int, minor: Int, patch: Int

    public init(_ major: Int, _ minor: Int, _ patch: Int = 0) {
        (self.major, self.minor, self.patch) = (major, minor, patch)
    }

    /// The version at the start of `text`: "6.12.118+deb12-amd64 (debian-kernel@…) #1 SMP…",
    /// "linux-6.16", "7.0".
    public init?(parsing text: some StringProtocol) {
        var rest = Substring(text)
        if rest.hasPrefix("linux-") { rest = rest.dropFirst(6) }
        var numbers: [Int] = []
        var digits = ""
        for character in rest {
            if character.isASCII && character.isNumber {
                digits.append(character)
                guard digits.count <= 6 else { return nil }
            } else if character == ".", !digits.isEmpty, numbers.count < 2 {
                numbers.append(Int(digits) ?? 0)
                digits = ""
            } else {
                break
            }
        }
        if !digits.isEmpty { numbers.append(Int(digits) ?? 0) }
        guard numbers.count >= 2 else { return nil }
        self.init(numbers[0], numbers[1], numbers.count > 2 ? numbers[2] : 0)
    }

    /// The upstream version a kernel release string stands for. Debian's strings start with the
    /// ABI name ("6.1.0-57-amd64", patch level 0) and carry the real version after "Debian "
    /// ("… #1 SMP PREEMPT_DYNAMIC Debian 6.1.192-3 (2026-…)"): that one wins when present.
    public init?(release text: String) {
        if let range = text.firstRange(of: " Debian "), let version = KernelVersion(parsing: text[range.upperBound...]) {
            self = version
        } else if let version = KernelVersion(parsing: text) {
            self = version
        } else {
            return nil
        }
    }

    public var description: String { "\(major).\(minor).\(patch)" }
    var series: String { "\(major).\(minor)" }

    public static func < (a: KernelVersion, b: KernelVersion) -> Bool {
        (a.major, a.minor, a.patch) < (b.major, b.minor, b.patch)
    }
}

/// One kernel change: its commit, title, first mainline release, and stable backports (the
/// first release of each stable series that has it).
public struct KernelChange: Sendable {
    public var commit: String
    public var title: String
    public var mainline: KernelVersion
    public var backports: [KernelVersion] = []

    public func isPresent(in version: KernelVersion) -> Bool {
        version >= mainline || backports.contains { $0.series == version.series && version >= $0 }
    }

    public var citation: String {
        "\(commit) \"\(title)\" (v\(mainline.major).\(mainline.minor)"
            + (backports.isEmpty ? "" : "; stable " + backports.map(\.description).joined(separator: ", ")) + ")"
    }
}

/// The changes the profiles follow, one per behaviour.
public enum KernelChanges {
    /// The guarded e_entry rule with WARN_ON (EntryRule.eEntry). The 6.1.y and 5.15.y backports
    /// came in the June 2023 stable batch: 6.1.35 and 5.15.118 are inferred from it.
    public static let guardedEntry = KernelChange(
        commit: "8652d44f466a", title: "kexec: support purgatories with .text.hot sections", mainline: KernelVersion(6, 4),
        backports: [KernelVersion(4, 19, 287), KernelVersion(5, 10, 185), KernelVersion(5, 15, 118), KernelVersion(6, 1, 35)])
    /// The purgatory_start rule (EntryRule.symbol).
    public static let symbolEntry = KernelChange(
        commit: "480e1d5c64bb", title: "kexec: derive purgatory entry from symbol", mainline: KernelVersion(7, 0),
        backports: [KernelVersion(6, 1, 165), KernelVersion(6, 6, 128), KernelVersion(6, 12, 75), KernelVersion(6, 18, 16)])
    /// SETUP_RNG_SEED: 32 random bytes in the setup_data chain at every load.
    public static let rngSeed = KernelChange(commit: "68b8e9713c8e", title: "x86/setup: Use rng seeds from setup_data", mainline: KernelVersion(6, 0))
    /// SETUP_IMA: the IMA measurement buffer's address and size in the setup_data chain.
    public static let imaSetupData = KernelChange(commit: "b69a2afd5afc", title: "x86/kexec: Carry forward IMA measurement log on kexec", mainline: KernelVersion(6, 0))
    /// The elfcorehdr of a crash image left out of the digest (CONFIG_CRASH_HOTPLUG), compared
    /// against the count of hashed segments: every segment after it is left out as well.
    public static let elfcorehdrExclusion = KernelChange(commit: "f7cc804a9fd4", title: "kexec: exclude elfcorehdr from the segment digest", mainline: KernelVersion(6, 6))
    /// The exclusion compares the segment's own index. The 6.6.y and 6.10.y backports' versions
    /// are not confirmed: those series keep the output-index comparison here.
    public static let elfcorehdrIndexFix = KernelChange(commit: "6dacd79d2884", title: "kexec_file: fix elfcorehdr digest exclusion when CONFIG_CRASH_HOTPLUG=y", mainline: KernelVersion(6, 11))
    /// The kernel segment at or above max(1 MiB, the setup header's pref_address).
    public static let preferredAddress = KernelChange(commit: "43b1d3e68ee7", title: "kexec: Allocate kernel above bzImage's pref_address", mainline: KernelVersion(6, 9))
    /// CR4.MCE set at entry on TDX guests.
    public static let tdxMachineCheck = KernelChange(commit: "de60613173df", title: "x86/kexec: Keep CR4.MCE set during kexec for TDX guest", mainline: KernelVersion(6, 11))
    /// No `pushq $0`: rsp = control page + 0x1000 at entry, [rsp] the next page's first qword.
    public static let stackAtPageEnd = KernelChange(commit: "2cacf7f23a02", title: "x86/kexec: Fix stack and handling of re-entry point for ::preserve_context", mainline: KernelVersion(6, 14))
    /// A debug GDT in the control page (limit 0x1f), loaded by identity_mapped.
    public static let debugGDT = KernelChange(commit: "b25eb5f5e419", title: "x86/kexec: Add relocate_kernel() debugging support: Load a GDT", mainline: KernelVersion(6, 15))
    /// A debug IDT of 16 trap gates whose handlers dump registers to the early 8250 and halt;
    /// int3 returns (with 3d66af75b086, d358b45120cc, 7516e7216bdf, de085ddd493b).
    public static let debugIDT = KernelChange(commit: "8df505af7fef", title: "x86/kexec: Debugging support: Load an IDT and basic exception entry points", mainline: KernelVersion(6, 16))
    /// The IMA segment left out of the digest: IMA rewrites it at kexec -e (9f0ec4b16f2b).
    public static let imaExclusion = KernelChange(commit: "9ee8888a80fe", title: "ima: kexec: skip IMA segment validation after kexec soft reboot", mainline: KernelVersion(6, 16),
                                                  backports: [KernelVersion(6, 12, 94)])
    /// 5-level paging wherever the CPU has it (CONFIG_X86_5LEVEL gone).
    public static let fiveLevelUnconditional = KernelChange(commit: "7212b58d6d71", title: "x86/mm/64: Make 5-level paging support unconditional", mainline: KernelVersion(6, 16))
}

/// What a kernel version does to a purgatory, derived from `KernelChanges`.
public struct KernelProfile: Sendable, Equatable {
    /// How the profile was asked for ("linux-6.16", or a version string's origin).
    public var name: String
    public var version: KernelVersion

    public init(name: String, version: KernelVersion) {
        self.name = name
        self.version = version
    }

    func has(_ change: KernelChange) -> Bool { change.isPresent(in: version) }

    /// kexec_purgatory_setup_sechdrs' entry rule.
    public var entryRule: EntryRule {
        has(KernelChanges.symbolEntry) ? .symbol : has(KernelChanges.guardedEntry) ? .eEntry : .unguarded
    }

    public enum Stack: String, Sendable {
        /// rsp = control page + 0xff8, holding the 0 relocate_kernel pushed.
        case belowPageEnd = "control page + 0xff8, holding 0"
        /// rsp = control page + 0x1000: [rsp] is the first qword of the next page.
        case atPageEnd = "control page + 0x1000, [rsp] = the next page's first qword"
    }
    public var stack: Stack { has(KernelChanges.stackAtPageEnd) ? .atPageEnd : .belowPageEnd }
    public var hasDebugGDT: Bool { has(KernelChanges.debugGDT) }
    public var hasExceptionHandlers: Bool { has(KernelChanges.debugIDT) }
    public var setsMachineCheckOnTDX: Bool { has(KernelChanges.tdxMachineCheck) }
    public var skipsIMASegment: Bool { has(KernelChanges.imaExclusion) }

    public enum ElfcorehdrExclusion: String, Sendable {
        case none
        /// f7cc804a9fd4: compared with the number of segments hashed so far.
        case hashedCount = "hashed-count"
        /// 6dacd79d2884: compared with the segment's index.
        case segmentIndex = "segment-index"
    }
    public var elfcorehdrExclusion: ElfcorehdrExclusion {
        has(KernelChanges.elfcorehdrIndexFix) ? .segmentIndex : has(KernelChanges.elfcorehdrExclusion) ? .hashedCount : .none
    }
    public var addsRNGSeed: Bool { has(KernelChanges.rngSeed) }
    public var addsIMASetupData: Bool { has(KernelChanges.imaSetupData) }
    public var kernelAbovePreferredAddress: Bool { has(KernelChanges.preferredAddress) }
    public var fiveLevelWhereAvailable: Bool { has(KernelChanges.fiveLevelUnconditional) }

    /// The anchors `--kernel-profile list` shows: the first release of each behaviour change.
    public static let named: [KernelProfile] = [
        ("linux-5.4", KernelVersion(5, 4)), ("linux-6.0", KernelVersion(6, 0)), ("linux-6.4", KernelVersion(6, 4)),
        ("linux-6.6", KernelVersion(6, 6)), ("linux-6.9", KernelVersion(6, 9)), ("linux-6.11", KernelVersion(6, 11)),
        ("linux-6.14", KernelVersion(6, 14)), ("linux-6.15", KernelVersion(6, 15)), ("linux-6.16", KernelVersion(6, 16)),
        ("linux-latest", KernelVersion(7, 0)),
    ].map { KernelProfile(name: $0.0, version: $0.1) }

    public static let latest = named[named.count - 1]

    /// A named profile, or any version ("linux-6.12.0", "6.1.192").
    public static func resolve(_ text: String) -> KernelProfile? {
        if let profile = named.first(where: { $0.name == text }) { return profile }
        guard let version = KernelVersion(parsing: text), version >= KernelVersion(3, 0), version < KernelVersion(100, 0) else { return nil }
        return KernelProfile(name: text.hasPrefix("linux-") ? text : "linux-\(version)", version: version)
    }

    /// What the profile sets, one line each, with the commits.
    public var summary: [String] {
        func mark(_ change: KernelChange) -> String { has(change) ? change.commit : "before \(change.commit)" }
        return [
            "entry rule \(entryRule.rawValue) (\(entryRule == .symbol ? KernelChanges.symbolEntry.commit : mark(KernelChanges.guardedEntry)))",
            "rsp \(stack.rawValue) (\(mark(KernelChanges.stackAtPageEnd)))",
            "GDT \(hasDebugGDT ? "debug GDT in the control page, limit 0x1f" : "invalid, limit 0") (\(mark(KernelChanges.debugGDT)))",
            "IDT \(hasExceptionHandlers ? "16 trap gates to handlers that dump registers and halt, int3 returns" : "invalid, limit 0: any exception triple-faults") (\(mark(KernelChanges.debugIDT)))",
            "CR4 PAE, LA57 with a 5-level map\(setsMachineCheckOnTDX ? ", MCE on TDX guests" : "") (\(mark(KernelChanges.tdxMachineCheck)))\(fiveLevelWhereAvailable ? "; 5-level wherever the CPU has it (\(KernelChanges.fiveLevelUnconditional.commit))" : "")",
            "digest skips the purgatory\(skipsIMASegment ? ", the IMA segment (\(KernelChanges.imaExclusion.commit))" : "")"
                + (elfcorehdrExclusion == .none ? "" : ", a crash image's elfcorehdr by \(elfcorehdrExclusion.rawValue) (\(elfcorehdrExclusion == .segmentIndex ? KernelChanges.elfcorehdrIndexFix.commit : KernelChanges.elfcorehdrExclusion.commit))"),
            "setup_data " + ([addsRNGSeed ? "RNG seed (\(KernelChanges.rngSeed.commit))" : nil, addsIMASetupData ? "IMA buffer (\(KernelChanges.imaSetupData.commit))" : nil].compactMap { $0 }.joined(separator: ", ").nonEmpty ?? "none"),
            "kernel at or above \(kernelAbovePreferredAddress ? "max(1 MiB, pref_address) (\(KernelChanges.preferredAddress.commit))" : "1 MiB")",
        ]
    }
}

extension String {
    var nonEmpty: String? { isEmpty ? nil : self }
}
