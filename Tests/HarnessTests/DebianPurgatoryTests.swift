import Containers
import ELF
import Foundation
import Loader
import Run
import Testing

/// The purgatories users run: the ones inside Debian's kernels and kexec-tools, fetched by
/// scripts/fetch-debian-purgatories. A missing cache fails these tests; it is never a skip.
@Suite struct DebianPurgatoryTests {
    static func extracted(_ entry: DebianArtifacts.Entry) throws -> (ELFFile, Extraction) {
        let bytes = try Fixtures.tool(["cat", entry.path])
        let extraction = try PurgatoryExtractor.extract(bytes, name: entry.path)
        return (try ELFFile(bytes: extraction.object, name: entry.file + ":purgatory"), extraction)
    }

    @Test func cacheHoldsEveryArtifactUnchanged() throws {
        let manifest = try DebianArtifacts.manifest()
        #expect(try DebianArtifacts.kernels().allSatisfy { $0.package.hasPrefix("linux-image-") && $0.package.hasSuffix("-amd64-unsigned") })
        #expect(try DebianArtifacts.entry("kexec").package == "kexec-tools")
        #expect(try DebianArtifacts.entry("initrd.img").package == "busybox-static")
        for entry in manifest {
            let digest = try Fixtures.tool(["sha256sum", entry.path])
            #expect(String(decoding: digest.prefix(64), as: UTF8.self) == entry.sha256, "\(entry.path) changed since it was fetched")
        }
    }

    /// §7: the kernel builds its purgatory small-PIC-hidden, so only PC32, PLT32 and 64 remain.
    @Test func kernelPurgatoriesComeOutOfTheBzImage() throws {
        for kernel in try DebianArtifacts.kernels() {
            let (file, extraction) = try Self.extracted(kernel)
            #expect(extraction.container == .bzImage)
            #expect(extraction.provenance.contains { $0.contains("kexec_purgatory_size) says \(extraction.object.count) too") },
                    "\(kernel.file): \(extraction.provenance)")
            #expect(file.header.fileType == .relocatable)
            let types = Set(try file.sections.filter { $0.type == ELFConstant.shtRela }.flatMap { try file.relocations(in: $0) }.map(\.type))
            #expect(types.isSubset(of: [X86_64Relocation.pc32, X86_64Relocation.plt32, X86_64Relocation.r64]), "\(kernel.file): \(types)")
            let names = Set(try file.sections.filter { $0.type == ELFConstant.shtSymtab }.flatMap { try file.symbols(in: $0) }.map(\.name))
            #expect(names.isSuperset(of: ["purgatory_start", "purgatory_sha_regions", "purgatory_sha256_digest", "entry64_regs", "stack_end"]))
        }
    }

    @Test func kernelPurgatoriesVerifyAbove4GiBAndRejectATamperedSegment() throws {
        for kernel in try DebianArtifacts.kernels() {
            let (file, _) = try Self.extracted(kernel)
            for seed in [1, 2, 3, 0x5eed] as [UInt64] {
                let report = try Scenario(file: file, seed: seed).run()
                #expect(report.verdict == .verified, "\(kernel.file) seed \(seed): \(report.message)")
                #expect(report.loadAddress >= 0x1_0000_0000)
                #expect(report.crossCheckInstructions == nil)
            }
            var tampered = Scenario(file: file, seed: 9)
            tampered.tamper = true
            let report = try tampered.run()
            #expect(report.verdict == .rejectedDigest, "\(kernel.file): \(report.message)")
            // The kernel's purgatory() loops forever on a mismatch.
            #expect(report.message.contains("(purgatory+0x"), "\(report.message)")
        }
    }

    @Test func kernelPurgatoryCountIsExactUnderCrossCheck() throws {
        let (file, _) = try Self.extracted(try DebianArtifacts.newestKernel())
        var scenario = Scenario(file: file, seed: 4)
        scenario.counting = .crossCheck
        let report = try scenario.run()
        #expect(report.verdict == .verified)
        #expect(report.crossCheckInstructions == report.instructions)
    }

    /// §8: kexec-tools' own loader rules and ABI; with console_serial set it talks to the 8250.
    @Test func kexecToolsPurgatoryPrintsAndVerifies() throws {
        let (file, extraction) = try Self.extracted(try DebianArtifacts.entry("kexec"))
        #expect(extraction.container == .kexecTools)
        var scenario = Scenario(file: file, seed: 21)
        scenario.loader = .kexecTools
        scenario.symbolValues = [("console_serial", 1)]
        let report = try scenario.run()
        #expect(report.verdict == .verified, "\(report.message)")
        #expect(report.console == "I'm in purgatory\r\n")

        scenario.tamper = true
        let tampered = try scenario.run()
        #expect(tampered.verdict == .rejectedDigest, "\(tampered.message)")
        #expect(tampered.console?.hasPrefix("I'm in purgatory\r\nsha256 digests do not match :(\r\n") == true, "\(tampered.console ?? "")")
        #expect(tampered.message.contains("(purgatory+0x"))

        scenario.tamper = false
        scenario.symbolValues = []
        let quiet = try scenario.run()
        #expect(quiet.verdict == .verified)
        #expect(quiet.console == nil)
    }

    /// The documented end-to-end command: the newest kernel's purgatory loading that kernel's own
    /// bzImage with the busybox initramfs, segments laid out as bzImage64_load does.
    @Test func kernelLoadsItsOwnBzImageWithARealInitrd() throws {
        let kernel = try DebianArtifacts.newestKernel(), initrd = try DebianArtifacts.entry("initrd.img")
        let result = try Fixtures.harness(["run", kernel.path, "--kernel", kernel.path, "--initrd", initrd.path,
                                           "--cmdline", "console=ttyS0 rdinit=/init", "--seed", "0x64", "--json"])
        #expect(result.status == 0, "\(result.stdout) \(result.stderr)")
        let report = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as! [String: Any]
        #expect(report["verdict"] as? String == "verified")
        let image = try BzImage(bytes: try Fixtures.tool(["cat", kernel.path]))
        let segments = Dictionary(uniqueKeysWithValues: (report["segments"] as! [[String: Any]]).map { ($0["name"] as! String, $0) })
        #expect(segments["kernel"]?["length"] as? UInt64 == (UInt64(image.initSize) + 0xfff) & ~0xfff)
        #expect((segments["kernel"]?["start"] as! UInt64) % UInt64(image.kernelAlignment) == 0)
        let initrdSize = try FileManager.default.attributesOfItem(atPath: initrd.path)[.size] as! Int
        #expect((report["boot_params"] as! [String: Any])["initrd_size"] as? Int == initrdSize)
        #expect((report["bytes_hashed"] as! UInt64) > 32 << 20)
    }

    /// The accounting's phase rules, written for these purgatories' function names, hold on the
    /// real objects: every phase present, hashing dominated by the SHA-256 block function, the
    /// hand-off in entry64, and functions and phases each summing to the exact count.
    @Test func accountingFindsEveryPhaseInTheRealPurgatories() throws {
        var cases: [(String, Scenario, String)] = []
        for kernel in try DebianArtifacts.kernels() {
            let (file, _) = try Self.extracted(kernel)
            var scenario = Scenario(file: file, seed: 12)
            scenario.counting = .crossCheck
            cases.append((kernel.file, scenario, "sha256"))
        }
        let (kexec, _) = try Self.extracted(try DebianArtifacts.entry("kexec"))
        var scenario = Scenario(file: kexec, seed: 12)
        scenario.loader = .kexecTools
        scenario.counting = .crossCheck
        cases.append(("kexec", scenario, "sha256_process"))
        for (name, scenario, hashing) in cases {
            let report = try scenario.run()
            #expect(report.verdict == .verified, "\(name): \(report.message)")
            let accounting = try #require(report.accounting, "\(name)")
            #expect(accounting.notes.isEmpty, "\(name): \(accounting.notes)")
            #expect(accounting.crossCheckAgrees == true, "\(name)")
            #expect(accounting.functions.reduce(0) { $0 + $1.instructions } == report.instructions)
            #expect(accounting.phases.map(\.name) == Accounting.PhaseName.allCases, "\(name)")
            #expect(accounting.phases.reduce(0) { $0 + $1.instructions } == report.instructions)
            #expect(accounting.phases.allSatisfy { $0.instructions > 0 }, "\(name): \(accounting.phases)")
            let top = try #require(accounting.functions.max { $0.instructions < $1.instructions })
            #expect(top.name.hasPrefix(hashing) && top.instructions * 100 > report.instructions * 99, "\(name): \(top)")
            #expect(accounting.phases.last?.functions.contains { $0.name == "entry64" } == true, "\(name)")
        }
    }
}
