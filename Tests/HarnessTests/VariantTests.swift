import ELF
import Foundation
import Inspect
import Loader
import Run
import Testing

/// The purgatory variants under Purgatories/variants (built by real gcc and clang), each with the
/// verdict the kernel's rules give it, and `inspect`'s predictions confirmed by `run`.
@Suite struct VariantTests {
    static func variant(_ name: String) throws -> ELFFile {
        let path = Fixtures.repository.appendingPathComponent("Purgatories/variants/\(name).ro").path
        let bytes = try #require(FileManager.default.contents(atPath: path))
        return try ELFFile(bytes: [UInt8](bytes), name: "\(name).ro")
    }

    static func run(_ name: String, loader: LoaderKind = .kexecFile, at address: UInt64? = nil, seed: UInt64 = 11,
                    rule: EntryRule = .symbol, tamper: Bool = false) throws -> RunReport {
        var s = Scenario(file: try variant(name), seed: seed)
        s.loader = loader
        s.loadAddress = address
        s.entryRule = rule
        s.tamper = tamper
        return try s.run()
    }

    /// The acceptance check: inspect names the lowest failing address of a
    /// -mcmodel=kernel build, and run fails exactly there and verifies one page below.
    @Test func kernelModelBoundaryPredictedByInspectIsConfirmedByRun() throws {
        let report = try Inspector(file: try Self.variant("kernel-model")).inspect()
        let boundary = try #require(report.lowestFailingAddress)
        #expect(boundary < 0x8000_0000 && boundary > 0x7fff_0000)
        let below = try Self.run("kernel-model", at: boundary - report.bufAlign)
        #expect(below.verdict == .verified, "\(below.message)")
        let at = try Self.run("kernel-model", at: boundary)
        #expect(at.verdict == .loadError)
        #expect(at.message.hasPrefix("kexec: Overflow in relocation type 11 value 0x8"))
        #expect(try Inspector(file: try Self.variant("kernel-model")).inspect(at: boundary).loadError == at.message)
        #expect(report.lints.filter { $0.kind == "overflow" }.count == 5)
    }

    @Test(arguments: [
        ("large", UInt64(0x80_0000_0000), Verdict.verified, ""),
        ("large", 0x3000, .verified, ""),
        ("small-nopic", 0x7000_0000, .verified, ""),
        ("small-nopic", 0x9000_0000, .loadError, "kexec: Overflow in relocation type 11 value 0x"),
        ("small-nopic", 0x1_2000_0000, .loadError, "kexec: Overflow in relocation type 10 value 0x"),
        ("pic-no-hidden", 0x7000_0000, .loadError, "kexec: Unknown rela relocation: 42"),
        ("kernel-model", 0x1000_0000, .verified, ""),
        ("kernel-model", 0x2_0000_0000, .loadError, "kexec: Overflow in relocation type 11 value 0x"),
        ("ltext", 0x50_0000_0000, .verified, ""),
    ])
    func variantVerdictsFollowTheKernelsRules(name: String, address: UInt64, verdict: Verdict, message: String) throws {
        let report = try Self.run(name, at: address)
        #expect(report.verdict == verdict, "\(name) at \(hex(address)): \(report.message)")
        #expect(report.message.hasPrefix(message))
    }

    @Test func ltextTripsTheWarnUnderTheEEntryRuleAndStillRuns() throws {
        let old = try Self.run("ltext", rule: .eEntry)
        #expect(old.verdict == .verified)
        #expect(old.diagnostics.contains { $0.hasPrefix("kernel-warning: WARNING") && $0.contains("WARN_ON") && $0.contains(".text and .ltext") })
        let new = try Self.run("ltext", rule: .symbol)
        #expect(new.entrySource == "purgatory_start in .text")
        #expect(!new.diagnostics.contains { $0.hasPrefix("kernel-warning") })
    }

    @Test func linkedImageRunsThroughTheImageLoaderOnly() throws {
        let report = try Self.run("pie-image", loader: .image, seed: 12)
        #expect(report.verdict == .verified, "\(report.message)")
        #expect(report.loadAddress >= 0x1_0000_0000)
        let tampered = try Self.run("pie-image", loader: .image, seed: 12, tamper: true)
        #expect(tampered.verdict == .rejectedDigest)
        #expect {
            _ = try Self.run("pie-image", loader: .kexecFile)
        } throws: { error in
            guard case HarnessError.badInput(let text) = error else { return false }
            return text.contains("is not ET_REL") && text.contains("--loader image")
        }
    }

    @Test func kexecToolsPurgatoryRunsThroughTheKexecToolsLoader() throws {
        let report = try Self.run("kexec-tools-abi", loader: .kexecTools, seed: 13)
        #expect(report.verdict == .verified, "\(report.message)")
        #expect(report.entryRule == "e_entry")
        let tampered = try Self.run("kexec-tools-abi", loader: .kexecTools, seed: 13, tamper: true)
        #expect(tampered.verdict == .rejectedDigest)
        // Through the kernel's loader it lacks the kernel's symbols.
        let wrong = try Self.run("kexec-tools-abi", loader: .kexecFile, seed: 13)
        #expect(wrong.verdict == .loadError)
        #expect(wrong.message.contains("purgatory_sha_regions"))
    }

    @Test func inspectLintsTheGOTVariant() throws {
        let report = try Inspector(file: try Self.variant("pic-no-hidden")).inspect()
        #expect(report.neverLoads != nil)
        #expect(report.lints.contains { $0.kind == "got-plt" && $0.message.hasPrefix("2 × R_X86_64_REX_GOTPCRELX") && $0.message.contains("(purgatory+0x") })
    }
}

extension VariantTests {
    /// kexec-tools' console option: the purgatory polls the 8250's line status and prints.
    @Test func kexecToolsConsoleSerialPrintsThroughTheEmulatedUART() throws {
        var s = Scenario(file: try Self.variant("kexec-tools-abi"), seed: 14)
        s.loader = .kexecTools
        s.symbolValues = [("console_serial", 1)]
        let report = try s.run()
        #expect(report.verdict == .verified)
        #expect(report.console == "I'm in purgatory\n")
        s.tamper = true
        let tampered = try s.run()
        #expect(tampered.verdict == .rejectedDigest)
        #expect(tampered.console == "I'm in purgatory\nsha256 digests do not match :(\n")
        // Quiet by default.
        s.symbolValues = []
        #expect(try s.run().console == nil)
    }
}
