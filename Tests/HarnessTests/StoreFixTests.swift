import ELF
import Foundation
import Fuzz
import Loader
import Machine
import Run
import Testing

/// The store fix (`StoreFix`; Sources/CUnicornStoreFix/store_fix.c): interposed in this test
/// runner and in the tool, and invisible in every result: the same reports with it on and off
/// for every purgatory the project runs, and self-modifying code still seen.
///
/// Serialized, because these tests flip the process-wide switch; other suites running meanwhile
/// merely run some of their guests with the fix off, which gives them the same results, slower.
@Suite(.serialized) struct StoreFixTests {
    /// Runs `scenario` with the fix on, then off; checks from this thread's call counts that each
    /// run went through the interposed page_collection_lock in the mode asked for.
    static func onAndOff(_ scenario: Scenario, _ name: String) throws -> (on: RunReport, off: RunReport) {
        defer { StoreFix.setEnabled(true) }
        var reports: [Bool: RunReport] = [:]
        for enabled in [true, false] {
            StoreFix.setEnabled(enabled)
            let before = StoreFix.callsOnThisThread()
            let report = try scenario.run()
            let after = StoreFix.callsOnThisThread()
            let (mine, other) = enabled ? (\StoreFix.Calls.skipped, \StoreFix.Calls.forwarded) : (\.forwarded, \.skipped)
            if report.verdict != .loadError {
                #expect(after[keyPath: mine] > before[keyPath: mine], "\(name): no store took the \(enabled ? "fixed" : "stock") path")
            }
            #expect(after[keyPath: other] == before[keyPath: other], "\(name): a store took the wrong path")
            #expect(report.unicorn == UnicornInfo(version: "2.0.1", storeFix: enabled ? .on : .off), "\(name)")
            reports[enabled] = report
        }
        return (reports[true]!, reports[false]!)
    }

    /// The whole report as JSON, minus what may differ between the two: timings, MB/s, and the
    /// store fix's own status.
    static func withoutTimings(_ report: RunReport) throws -> String {
        var report = report
        report.timings = RunReport.Timings()
        report.megabytesPerSecond = nil
        report.unicorn = nil
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try encoder.encode(report), as: UTF8.self)
    }

    /// Same verdict, count, accounting and everything else; returns the report (fix on).
    @discardableResult
    static func expectIdentical(_ scenario: Scenario, _ name: String) throws -> RunReport {
        let (on, off) = try onAndOff(scenario, name)
        #expect(on.verdict == off.verdict, "\(name)")
        #expect(on.instructions == off.instructions, "\(name)")
        #expect(on.accounting == off.accounting, "\(name)")
        #expect(try withoutTimings(on) == withoutTimings(off), "\(name)")
        return on
    }

    // MARK: Interposed

    @Test func theFixIsOnInTheTestRunner() {
        let check = StoreFix.check
        #expect(check.unicornVersion == "2.0.1")
        #expect(LongModeMachine.unicornVersion == "2.0.1")
        #expect(check.libraryHasSymbols, "libunicorn lacks page_collection_lock_x86_64/unlock")
        #expect(check.resolvesHere, "the test runner does not export page_collection_lock_x86_64/unlock (nm -D)")
        #expect(check.probeCalls >= 1, "the probe's guest store did not reach the interposed lock")
        #expect(check.problem == nil, "\(check.problem ?? "")")
        #expect(!StoreFix.disabledByEnvironment, "PURGATORY_HARNESS_STORE_FIX=0 is set for the test run")
        #expect(StoreFix.status == .on)
        #expect(StoreFix.statusDescription == "on")
    }

    /// 0x00  B9 E8 03 00 00    mov ecx, 1000
    /// 0x05  48 89 4C 24 F0    1: mov [rsp-16], rcx    (or a 5-byte nop)
    /// 0x0a  FF C9             dec ecx
    /// 0x0c  75 F7             jnz 1b
    /// 0x0e                    mov rax, sentinel; jmp rax
    static func storeLoop(storing: Bool) -> [UInt8] {
        [0xb9, 0xe8, 0x03, 0x00, 0x00] + (storing ? [0x48, 0x89, 0x4c, 0x24, 0xf0] : [0x0f, 0x1f, 0x44, 0x00, 0x00])
            + [0xff, 0xc9, 0x75, 0xf7] + MachineTests.exitToSentinel
    }

    /// Each guest store to RAM is one call of page_collection_lock: a loop of 1,000 stores makes
    /// 1,000 more calls than the same loop without them, all of the mode's kind.
    @Test func everyGuestStoreCallsTheInterposedLock() throws {
        defer { StoreFix.setEnabled(true) }
        for enabled in [true, false] {
            StoreFix.setEnabled(enabled)
            var calls: [Bool: StoreFix.Calls] = [:]
            for storing in [false, true] {
                let m = try MachineTests.machine(Self.storeLoop(storing: storing))
                let before = StoreFix.callsOnThisThread()
                let out = try m.run(until: MachineTests.sentinel, budget: 100_000)
                let after = StoreFix.callsOnThisThread()
                #expect(out.reason == .reachedSentinel)
                #expect(out.instructions == 3003)
                calls[storing] = StoreFix.Calls(skipped: after.skipped - before.skipped, forwarded: after.forwarded - before.forwarded)
            }
            let plain = calls[false]!, storing = calls[true]!
            #expect(storing.total - plain.total == 1000, "fix \(enabled ? "on" : "off"): \(plain) without stores, \(storing) with 1,000")
            #expect((enabled ? storing.forwarded : storing.skipped) == 0)
        }
    }

    // MARK: Self-modifying code

    /// The store rewrites the next instruction, in the block being executed (QEMU's precise-SMC
    /// path, which hands the NULL page collection to page_collection_unlock):
    /// 0x00  C6 05 02 00 00 00 CB   mov byte [rip+2], 0xcb    ; the ModRM byte at 0x09
    /// 0x07  48 FF C3               inc rbx  → becomes dec rbx (48 FF CB)
    /// 0x0a                         mov rax, sentinel; jmp rax
    static let patchesTheNextInstruction: [UInt8] = [0xc6, 0x05, 0x02, 0x00, 0x00, 0x00, 0xcb, 0x48, 0xff, 0xc3]
        + MachineTests.exitToSentinel

    /// The store rewrites the immediate of a function already translated and run:
    /// 0x00  E8 3B 00 00 00         call f                    ; rbx = 1
    /// 0x05  C6 05 37 00 00 00 10   mov byte [rip+0x37], 0x10 ; f's immediate, at 0x43
    /// 0x0c  E8 2F 00 00 00         call f                    ; rbx += 0x10 (stale code: += 1)
    /// 0x11                         mov rax, sentinel; jmp rax
    /// 0x40  48 83 C3 01  C3        f: add rbx, 1; ret
    static let patchesATranslatedFunction: [UInt8] = {
        var code = [0xe8, 0x3b, 0x00, 0x00, 0x00, 0xc6, 0x05, 0x37, 0x00, 0x00, 0x00, 0x10, 0xe8, 0x2f, 0x00, 0x00, 0x00]
            + MachineTests.exitToSentinel
        code += [UInt8](repeating: 0xcc, count: 0x40 - code.count) + [0x48, 0x83, 0xc3, 0x01, 0xc3]
        return code
    }()

    @Test(arguments: [("next instruction, same block", patchesTheNextInstruction, UInt64.max, UInt64(1)),
                      ("translated function", patchesATranslatedFunction, 0x11, 2)])
    func selfModifyingCodeRunsTheNewInstructions(name: String, program: [UInt8], new: UInt64, stale: UInt64) throws {
        defer { StoreFix.setEnabled(true) }
        var outcomes: [Bool: RunOutcome] = [:]
        for enabled in [true, false] {
            StoreFix.setEnabled(enabled)
            let m = try MachineTests.machine(program)
            let out = try m.run(until: MachineTests.sentinel, budget: 1000)
            #expect(out.reason == .reachedSentinel, "\(name), fix \(enabled ? "on" : "off")")
            #expect(out.registers[.rbx] == new, "\(name), fix \(enabled ? "on" : "off"): rbx \(out.registers[.rbx]) (stale code gives \(stale))")
            outcomes[enabled] = out
        }
        #expect(outcomes[true]!.instructions == outcomes[false]!.instructions)
        #expect(MachineTests.rows(outcomes[true]!) == MachineTests.rows(outcomes[false]!))
    }

    // MARK: Every purgatory, on and off

    /// Purgatories/manifest.json: the reference and every variant at each class's address (load
    /// errors included: they must stay load errors), tampered at the highest, and the reference
    /// cross-checked.
    @Test func referenceAndVariantsReportTheSameWithTheFixOnAndOff() throws {
        let directory = Fixtures.repository.appendingPathComponent("Purgatories").path
        let data = try #require(FileManager.default.contents(atPath: directory + "/manifest.json"))
        let manifest = try JSONDecoder().decode(MatrixManifest.self, from: data)
        #expect(manifest.variants.count >= 8)
        var verified = 0
        for variant in manifest.variants {
            let bytes = try #require(FileManager.default.contents(atPath: directory + "/" + variant.file))
            let file = try ELFFile(bytes: [UInt8](bytes), name: variant.file)
            var scenario = Scenario(file: file, seed: 0x5f1)
            scenario.loader = try #require(LoaderKind(rawValue: variant.loader))
            for probe in manifest.classes {
                scenario.loadAddress = UInt64(probe.address.dropFirst(2), radix: 16)
                let report = try Self.expectIdentical(scenario, "\(variant.name) in \(probe.name)")
                if report.verdict == .verified { verified += 1 }
            }
            scenario.tamper = true
            try Self.expectIdentical(scenario, "\(variant.name) tampered")
        }
        #expect(verified >= 2 * manifest.variants.count)
        var crossChecked = Scenario(file: try Fixtures.reference(), seed: 0x5f2)
        crossChecked.counting = .crossCheck
        let report = try Self.expectIdentical(crossChecked, "reference, cross-checked")
        #expect(report.verdict == .verified && report.crossCheckInstructions == report.instructions)
    }

    /// Debian's purgatories from the cache (a missing cache fails): both kernels' and
    /// kexec-tools', verified and tampered, with a 256 KiB kernel segment.
    @Test func debianPurgatoriesReportTheSameWithTheFixOnAndOff() throws {
        var cases: [(String, Scenario)] = []
        for kernel in try DebianArtifacts.kernels() {
            let (file, _) = try DebianPurgatoryTests.extracted(kernel)
            cases.append((kernel.file, Scenario(file: file, seed: 0x5f3)))
        }
        #expect(cases.count >= 2)
        let (kexec, _) = try DebianPurgatoryTests.extracted(try DebianArtifacts.entry("kexec"))
        var scenario = Scenario(file: kexec, seed: 0x5f3)
        scenario.loader = .kexecTools
        scenario.symbolValues = [("console_serial", 1)]
        cases.append(("kexec", scenario))
        for (name, var scenario) in cases {
            scenario.segments.kernelSize = 256 << 10
            let report = try Self.expectIdentical(scenario, name)
            #expect(report.verdict == .verified, "\(name): \(report.message)")
            scenario.tamper = true
            let tampered = try Self.expectIdentical(scenario, name + " tampered")
            #expect(tampered.verdict == .rejectedDigest, "\(name): \(tampered.message)")
        }
    }

    // MARK: The tool

    /// The CLI exports the symbols too (its own check says on), reports the fix in `run --json`
    /// and the human report, honours PURGATORY_HARNESS_STORE_FIX=0, and `bench --json` has the
    /// A/B under stable keys.
    @Test func theToolReportsTheFixAndHonoursTheEnvironment() throws {
        func run(_ environment: [String: String]) throws -> [String: Any] {
            let result = try Fixtures.harness(["run", "--seed", "0x5eed", "--json"], environment: environment)
            #expect(result.status == 0, "\(result.stderr)")
            return try #require(try JSONSerialization.jsonObject(with: Data(result.bytes)) as? [String: Any])
        }
        let on = try run([:]), off = try run(["PURGATORY_HARNESS_STORE_FIX": "0"])
        #expect(on["unicorn"] as? [String: String] == ["version": "2.0.1", "store_fix": "on"])
        #expect(off["unicorn"] as? [String: String] == ["version": "2.0.1", "store_fix": "off"])
        #expect(on["instructions"] as? UInt64 == 2_804_668)
        func withoutTimings(_ report: [String: Any]) throws -> String {
            let kept = report.filter { !["timings", "megabytes_per_second", "unicorn"].contains($0.key) }
            return String(decoding: try JSONSerialization.data(withJSONObject: kept, options: [.sortedKeys]), as: UTF8.self)
        }
        #expect(try withoutTimings(on) == withoutTimings(off))

        let human = try Fixtures.harness(["run", "--seed", "0x5eed"])
        #expect(human.stdout.contains("\n  unicorn      2.0.1, store fix on\n"), "\(human.stdout)")

        let bench = try Fixtures.harness(["bench", "--store-fix-only", "--bytes", "64K", "--store-fix-repeats", "1", "--json"],
                                         environment: ["PURGATORY_HARNESS_CACHE": "/nonexistent/purgatory-harness-cache"])
        #expect(bench.status == 0, "\(bench.stdout) \(bench.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(bench.bytes)) as? [String: Any])
        #expect(json["unicorn"] as? [String: String] == ["version": "2.0.1", "store_fix": "on"])
        let check = try #require(json["store_fix_check"] as? [String: Any])
        #expect(check["resolves_here"] as? Bool == true && check["library_has_symbols"] as? Bool == true)
        #expect((check["probe_calls"] as? Int ?? 0) >= 1)
        #expect(check["problem"] is NSNull)
        let rows = try #require(json["store_fix"] as? [[String: Any]])
        #expect(rows.count == 1)
        #expect(Set(rows.first?.keys.map { $0 } ?? []) == ["name", "file", "bytes", "instructions", "on_mb_per_s", "off_mb_per_s", "speedup", "identical", "seconds"])
        #expect(rows.first?["identical"] as? Bool == true)
        #expect((json["store_fix_skipped"] as? [String])?.first?.contains("/nonexistent/purgatory-harness-cache") == true)
        #expect(json["guest"] is NSNull)  // not measured with --store-fix-only: null, as every absent value
    }
}
