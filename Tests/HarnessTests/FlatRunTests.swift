import ELF
import Foundation
import Fuzz
import Loader
import Machine
import Run
import Testing

/// Every physical address: the kernel's loader decides first, the machine refuses only what no
/// machine can have, and runs above 2^40 (flat) give exactly the answers of runs below (walked).
@Suite struct FlatRunTests {
    /// Addresses of the issue: walked below 2^40, the 2019 machine's purgatory, below 2^47 on a
    /// 5-level machine, and just below 2^52.
    static let walked: UInt64 = 0xff_0000_0000
    static let high: [UInt64] = [0x17f_7aff_d000, 0x7ff0_0000_0000, 0xf_ffff_fff0_0000]

    /// Accounting without the relocated addresses (they differ by load address).
    static func shape(_ a: Accounting?) -> [String] {
        guard let a else { return [] }
        return a.functions.map { "\($0.name) \($0.instructions) \($0.blocksEntered)" }
            + a.phases.map { "\($0.name.rawValue) \($0.instructions) \($0.functions.map { "\($0.name)=\($0.instructions)" })" }
    }

    static func expectSameAnswers(_ base: Scenario, _ label: String) throws {
        var below = base
        below.loadAddress = walked
        let reference = try below.run()
        #expect(reference.machine?.paging != "flat", "\(label)")
        for address in high {
            var s = base
            s.loadAddress = address
            let report = try s.run()
            #expect(report.verdict == reference.verdict, "\(label) at \(hex(address)): \(report.message)")
            guard reference.verdict != .loadError else { continue }
            #expect(report.machine?.paging == "flat", "\(label) at \(hex(address))")
            #expect(report.segments == reference.segments, "\(label) at \(hex(address))")
            #expect(report.instructions == reference.instructions, "\(label) at \(hex(address))")
            #expect(shape(report.accounting) == shape(reference.accounting), "\(label) at \(hex(address))")
            if reference.verdict == .verified {
                var tampered = s
                tampered.tamper = true
                let rejected = try tampered.run()
                #expect(rejected.verdict == .rejectedDigest, "\(label) tampered at \(hex(address)): \(rejected.message)")
            }
        }
    }

    @Test func everyPurgatoryOfTheManifestGivesTheSameAnswersAboveAndBelow2To40() throws {
        let directory = Fixtures.repository.appendingPathComponent("Purgatories").path
        let data = try #require(FileManager.default.contents(atPath: directory + "/manifest.json"))
        let manifest = try JSONDecoder().decode(MatrixManifest.self, from: data)
        for variant in manifest.variants {
            let bytes = try #require(FileManager.default.contents(atPath: directory + "/" + variant.file))
            var s = Scenario(file: try ELFFile(bytes: [UInt8](bytes), name: variant.file), seed: 0x2019)
            s.loader = try #require(LoaderKind(rawValue: variant.loader))
            try Self.expectSameAnswers(s, variant.name)
        }
    }

    @Test func debianPurgatoriesGiveTheSameAnswersAboveAndBelow2To40() throws {
        for kernel in try DebianArtifacts.kernels() {
            let (file, _) = try DebianPurgatoryTests.extracted(kernel)
            try Self.expectSameAnswers(Scenario(file: file, seed: 0x2019), kernel.file)
        }
        let (kexec, _) = try DebianPurgatoryTests.extracted(try DebianArtifacts.entry("kexec"))
        var s = Scenario(file: kexec, seed: 0x2019)
        s.loader = .kexecTools
        s.symbolValues = [("console_serial", 1)]
        try Self.expectSameAnswers(s, "kexec")
    }

    /// The 2019 regression: -mcmodel=kernel placed at 0x17f7affa000 is refused by the loader with
    /// the type-11 overflow, before any question of what the machine can hold; at 2^60 too.
    @Test func theLoaderDecidesFirstAtAnyAddress() throws {
        for address: UInt64 in [0x17f_7aff_a000, 1 << 60] {
            let report = try VariantTests.run("kernel-model", at: address)
            #expect(report.verdict == .loadError)
            #expect(report.message.hasPrefix("kexec: Overflow in relocation type 11 value 0x"), "\(report.message)")
            #expect(report.entry == nil && report.machine == nil)
        }
        let path = Fixtures.repository.appendingPathComponent("Purgatories/variants/kernel-model.ro").path
        let run = try Fixtures.harness(["run", path, "--load-address", "0x17f7affa000"])
        #expect(run.status == 1)
        #expect(run.stdout.contains("load-error  [expected verified]: kexec: Overflow in relocation type 11 value 0x17f7aff"))
        let inspect = try Fixtures.harness(["inspect", path, "--load-address", "0x17f7affa000"])
        #expect(inspect.status == 1)
        #expect(inspect.stdout.contains("kexec: Overflow in relocation type 11 value 0x17f7aff"))
        // A purgatory the loader accepts, where no RAM can be: refused by the machine, exit 2.
        let top = try Fixtures.harness(["run", "--load-address", "0x1000000000000000"])
        #expect(top.status == 2)
        #expect(top.stderr.contains("no RAM can exist there"))
        let inspectTop = try Fixtures.harness(["inspect", "--load-address", "0x10000000000000"])
        #expect(inspectTop.status == 2)
        #expect(inspectTop.stdout.contains("this load      no RAM can exist there"))
        #expect(!inspectTop.stdout.contains("this load      loads"))
        let fourLevel = try Fixtures.harness(["run", "--load-address", "0x400000000000", "--paging", "4"])
        #expect(fourLevel.status == 2)
        #expect(fourLevel.stderr.contains("4-level kernel uses no RAM at or above 2^46"))
    }

    /// A flat run that reads CR3 cannot pass: refused (run exits 2, fuzz records harness-error),
    /// while the same code walked reads the kernel's CR3 and goes on.
    @Test func aFlatRunThatDependsOnPagingIsRefused() throws {
        let bytes = try ScenarioTests.patchedPurgatory([0x0f, 0x20, 0xd8, 0xeb, 0xfe])  // mov rax, cr3; jmp .
        var s = Scenario(file: try ELFFile(bytes: bytes, name: "cr3.ro"), seed: 4)
        s.loadAddress = Self.walked
        #expect(try s.run().verdict == .rejectedDigest)
        s.loadAddress = Self.high[0]
        let flat = try s.run()
        #expect(flat.verdict == .harnessError)
        #expect(flat.message.contains("`mov rax, cr3`") && flat.message.contains("flat run"), "\(flat.message)")
        let path = try Fixtures.temporaryFile(bytes, name: "cr3.ro")
        let run = try Fixtures.harness(["run", path, "--load-address", hex(Self.high[0])])
        #expect(run.status == 2)
        #expect(run.stderr.contains("mov rax, cr3"))
        let fuzz = try Fixtures.harness(["fuzz", path, "--range", "1T-2T", "--runs", "3", "--seed", "1", "--jobs", "1"])
        #expect(fuzz.status == 1)
        #expect(fuzz.stdout.contains("1-128 TiB         harness-error    3"), "\(fuzz.stdout)")
    }

    /// The done-when of the address-space issue: over the default range (1 MiB to 2^52) the
    /// -mcmodel=kernel build has one boundary, at 0x7ffff000, and runs in every class.
    @Test func fuzzOverTheWholeAddressSpaceFindsTheOneBoundary() throws {
        let path = Fixtures.repository.appendingPathComponent("Purgatories/variants/kernel-model.ro").path
        let out = try Fixtures.harness(["fuzz", path, "--runs", "300", "--seed", "0x2019", "--jobs", "2"])
        #expect(out.status == 1)
        for name in AddressClass.reporting.map(\.name) { #expect(out.stdout.contains(name), "\(name)") }
        #expect(out.stdout.components(separatedBy: "failure: ").count == 2)
        #expect(out.stdout.contains("load-error for load addresses ≥ 0x7ffff000"))
        #expect(out.stdout.contains("reproduce: purgatory-harness run \(path) --load-address 0x7ffff000 "))
    }
}
