import ELF
import Foundation
import Loader
import Machine
import Run
import Testing

/// Linux's own purgatory, built from Debian's linux-source packages with the kernel's own Kbuild by
/// scripts/build-linux-purgatories: every kernel × compiler × code model. A missing cache fails these
/// tests; it is never a skip.
enum LinuxArtifacts {
    struct Variant: Decodable, CustomStringConvertible {
        var kernelVersion: String
        var compiler: String
        var compilerVersion: String
        var model: String
        var path: String?
        var kexecPurgatoryPath: String?
        var relocations: [String: Int]?
        var sha256: String?
        var error: String?
        var description: String { "\(kernelVersion) \(compiler)-\(model)" }
        var built: Bool { error == nil && path != nil }
    }

    private struct Manifest: Decodable { var variants: [Variant] }

    /// `$PURGATORY_HARNESS_CACHE/linux`, else `${XDG_CACHE_HOME:-~/.cache}/purgatory-harness/linux`,
    /// as the script writes it.
    static var cache: String {
        let environment = ProcessInfo.processInfo.environment
        if let path = environment["PURGATORY_HARNESS_CACHE"], !path.isEmpty { return path + "/linux" }
        let base = environment["XDG_CACHE_HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? (NSHomeDirectory() + "/.cache")
        return base + "/purgatory-harness/linux"
    }

    static func variants() throws -> [Variant] {
        guard let data = FileManager.default.contents(atPath: cache + "/manifest.json") else {
            throw DebianArtifacts.Missing(description: "\(cache)/manifest.json not found: run scripts/build-linux-purgatories (scripts/install-deps does)")
        }
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        let variants = try decoder.decode(Manifest.self, from: data).variants
        guard !variants.isEmpty else { throw DebianArtifacts.Missing(description: "\(cache)/manifest.json lists no variant") }
        return variants
    }

    static func file(_ variant: Variant) throws -> ELFFile {
        let path = try #require(variant.path, "\(variant)")
        guard let data = FileManager.default.contents(atPath: path) else {
            throw DebianArtifacts.Missing(description: "\(path) not found: run scripts/build-linux-purgatories")
        }
        return try ELFFile(bytes: [UInt8](data), name: "\(variant.kernelVersion)/\(variant.compiler)-\(variant.model)/purgatory.ro")
    }
}

@Suite struct LinuxPurgatoryTests {
    static let models = ["small", "large", "kernel"]
    static let compilers = ["gcc", "clang14", "clang21"]
    /// Below 2 GiB, at 2 GiB, at 4 GiB, just below 1 TiB (walked), the 2019 machine's purgatory
    /// and below 128 TiB on a 5-level machine (flat).
    static let addresses: [UInt64] = [0x100_0000, 0x8000_0000, 0x1_0000_0000, 0xff_0000_0000, 0x17f_7aff_d000, 0x7ff0_0000_0000]

    @Test func manifestHasEveryVariantAndTheRequiredOnesBuilt() throws {
        let variants = try LinuxArtifacts.variants()
        let kernels = Set(variants.map(\.kernelVersion))
        #expect(kernels.contains { $0.hasPrefix("6.1.") }, "\(kernels)")
        for kernel in kernels {
            let names = Set(variants.filter { $0.kernelVersion == kernel }.map { "\($0.compiler)-\($0.model)" })
            #expect(names == Set(Self.compilers.flatMap { c in Self.models.map { "\(c)-\($0)" } }), "\(kernel): \(names)")
        }
        // The script fails unless these build; a manifest without them is stale or hand-made.
        for variant in variants where variant.kernelVersion.hasPrefix("6.1.") && variant.compiler != "clang21" {
            #expect(variant.built, "\(variant): \(variant.error ?? "")")
        }
        for variant in variants where variant.built {
            let digest = try Fixtures.tool(["sha256sum", try #require(variant.path)])
            #expect(String(decoding: digest.prefix(64), as: UTF8.self) == variant.sha256, "\(variant) changed since it was built")
            #expect(FileManager.default.fileExists(atPath: try #require(variant.kexecPurgatoryPath)), "\(variant)")
        }
    }

    /// What each code model leaves for the loader: small-PIC only PC32, PLT32 and 64; large no
    /// 32-bit absolute relocations; -mcmodel=kernel its R_X86_64_32S (type 11).
    @Test func relocationProfilesFollowTheCodeModel() throws {
        for variant in try LinuxArtifacts.variants() where variant.built {
            let file = try LinuxArtifacts.file(variant)
            var histogram: [UInt32: Int] = [:]
            for section in file.sections where section.type == ELFConstant.shtRela {
                for relocation in try file.relocations(in: section) { histogram[relocation.type, default: 0] += 1 }
            }
            let listed = Dictionary(uniqueKeysWithValues: (variant.relocations ?? [:]).map { (Self.relocationTypes[$0.key] ?? .max, $0.value) })
            #expect(histogram == listed, "\(variant): \(histogram) vs manifest \(variant.relocations ?? [:])")
            let types = Set(histogram.keys)
            switch variant.model {
            case "small": #expect(types.isSubset(of: [X86_64Relocation.pc32, X86_64Relocation.plt32, X86_64Relocation.r64]), "\(variant): \(types)")
            case "large": #expect(types.isDisjoint(with: [X86_64Relocation.r32, X86_64Relocation.r32s]), "\(variant): \(types)")
            default: #expect(types.contains(X86_64Relocation.r32s), "\(variant): \(types)")
            }
        }
    }

    static let relocationTypes: [String: UInt32] = [
        "R_X86_64_NONE": 0, "R_X86_64_64": 1, "R_X86_64_PC32": 2, "R_X86_64_GOT32": 3, "R_X86_64_PLT32": 4,
        "R_X86_64_RELATIVE": 8, "R_X86_64_GOTPCREL": 9, "R_X86_64_32": 10, "R_X86_64_32S": 11,
        "R_X86_64_GOTPCRELX": 41, "R_X86_64_REX_GOTPCRELX": 42,
    ]

    /// The kernel's rules: small and large verify anywhere; -mcmodel=kernel verifies below 2 GiB and
    /// is refused from 2 GiB up, with the kernel's own message (the 2019 Superdome Flex failure);
    /// wherever a build verifies, a tampered segment makes it spin.
    @Test func verdictsAreTheKernelsAtSixAddresses() throws {
        for variant in try LinuxArtifacts.variants() where variant.built {
            let file = try LinuxArtifacts.file(variant)
            for address in Self.addresses {
                var scenario = Scenario(file: file, seed: 1)
                scenario.loadAddress = address
                let report = try scenario.run()
                let at = "\(variant) at 0x\(String(address, radix: 16))"
                if variant.model == "kernel" && address >= 0x8000_0000 {
                    #expect(report.verdict == .loadError, "\(at): \(report.verdict) \(report.message)")
                    #expect(report.message.contains("Overflow in relocation type 11"), "\(at): \(report.message)")
                    continue
                }
                #expect(report.verdict == .verified, "\(at): \(report.verdict) \(report.message)")
                #expect(report.loadAddress == address)
                scenario.tamper = true
                let tampered = try scenario.run()
                #expect(tampered.verdict == .rejectedDigest, "\(at) tampered: \(tampered.verdict) \(tampered.message)")
            }
        }
    }

    /// The 2019 report, word for word: Linux's purgatory built -mcmodel=kernel (gcc), placed at
    /// 0x17f7affa000 on a 1.5 TiB machine: "kexec: Overflow in relocation type 11 value 0x17f7affd000".
    @Test func theSuperdomeFlexOverflowOf2019() throws {
        let variant = try #require(try LinuxArtifacts.variants().first { $0.kernelVersion.hasPrefix("6.1.") && $0.compiler == "gcc" && $0.model == "kernel" })
        var scenario = Scenario(file: try LinuxArtifacts.file(variant), seed: 1)
        scenario.loadAddress = 0x17f_7aff_a000
        let report = try scenario.run()
        #expect(report.verdict == .loadError)
        #expect(report.message == "kexec: Overflow in relocation type 11 value 0x17f7affd000")
        #expect(report.kernelLog == ["kexec: Overflow in relocation type 11 value 0x17f7affd000", "kexec-bzImage64: Loading purgatory failed"])
    }

    /// Every build under every named kernel profile at 4 GiB: the kernel-model builds are refused
    /// by every generation's loader; clang ≥ 18's large model (.text + .ltext) goes to about twice
    /// its load address before 8652d44f466a and faults there, verifies with the WARN from 6.4 and
    /// without it under the symbol rule; everything else verifies, with the same count under every
    /// generation (what changes between them is not on the purgatory's path).
    @Test func everyBuildUnderEveryProfile() throws {
        let address: UInt64 = 0x1_0000_0000
        for variant in try LinuxArtifacts.variants() where variant.built {
            let file = try LinuxArtifacts.file(variant)
            var counts: Set<UInt64> = []
            for kernel in KernelProfile.named {
                var scenario = Scenario(file: file, seed: 1)
                scenario.loadAddress = address
                scenario.kernel = kernel
                let report = try scenario.run()
                let at = "\(variant) under \(kernel.name)"
                let twoTexts = variant.compiler == "clang21" && variant.model == "large"
                switch (variant.model, twoTexts, kernel.entryRule) {
                case ("kernel", _, _):
                    #expect(report.verdict == .loadError, "\(at): \(report.message)")
                case (_, true, .unguarded):
                    #expect(report.verdict == .fault, "\(at): \(report.message)")
                    #expect((report.entry ?? 0) > 2 * address, "\(at): entry \(hex(report.entry ?? 0))")
                case (_, true, .eEntry):
                    #expect(report.verdict == .verified, "\(at): \(report.message)")
                    #expect(report.kernelLog.contains { $0.contains("WARN_ON") }, "\(at)")
                default:
                    #expect(report.verdict == .verified, "\(at): \(report.message)")
                    #expect(report.kernelLog.isEmpty, "\(at): \(report.kernelLog)")
                }
                if report.verdict == .verified { counts.insert(report.instructions) }
            }
            #expect(counts.count <= 1, "\(variant): \(counts)")
        }
    }
}
