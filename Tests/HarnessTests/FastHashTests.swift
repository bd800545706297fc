import ELF
import Foundation
import Fuzz
import Loader
import Machine
import Run
import Testing

/// `--fast-hash`: verdict, instruction count, blocks and accounting identical to full emulation
/// on every purgatory the harness runs, with blocks actually computed on the host where the
/// family allows it; tampering still refused; a wrong SHA-256 caught and run in full.
@Suite struct FastHashTests {
    /// Segments big enough for the fast-forward to engage (it skips runs below 64 KiB hashed),
    /// small enough for a debug build.
    static func sized(_ scenario: Scenario, kernel: Int = 192 << 10) -> Scenario {
        var s = scenario
        s.segments.kernelSize = kernel
        s.segments.kernelMemsz = kernel
        s.segments.initrdSize = 16 << 10
        return s
    }

    /// Runs `scenario` in full emulation and with --fast-hash; everything but time must agree.
    @discardableResult
    static func compare(_ scenario: Scenario, _ what: String, expectHostBlocks: Bool = true,
                        sourceLocation: SourceLocation = #_sourceLocation) throws -> (full: RunReport, fast: RunReport) {
        var full = scenario, fast = scenario
        full.fastHash = false
        fast.fastHash = true
        let a = try full.run(), b = try fast.run()
        #expect(a.verdict == b.verdict, "\(what): \(a.verdict) vs \(b.verdict)", sourceLocation: sourceLocation)
        #expect(a.instructions == b.instructions, "\(what): \(a.instructions) vs \(b.instructions)", sourceLocation: sourceLocation)
        #expect(a.message == b.message, "\(what)", sourceLocation: sourceLocation)
        #expect(a.blocksExecuted == b.blocksExecuted, "\(what)", sourceLocation: sourceLocation)
        #expect(a.accounting == b.accounting, "\(what): accounting differs", sourceLocation: sourceLocation)
        #expect(a.console == b.console, "\(what)", sourceLocation: sourceLocation)
        #expect(a.crossCheckInstructions == b.crossCheckInstructions, "\(what)", sourceLocation: sourceLocation)
        #expect(a.fastHash == nil, sourceLocation: sourceLocation)
        if a.verdict == .loadError { return (a, b) }  // nothing ran
        let info = try #require(b.fastHash, "\(what): no fast_hash in the report", sourceLocation: sourceLocation)
        #expect(info.fellBack == nil, "\(what): fell back: \(info.fellBack ?? "")", sourceLocation: sourceLocation)
        if expectHostBlocks {
            #expect(info.hostBlocks > 0, "\(what): nothing on the host: \(info.notes)", sourceLocation: sourceLocation)
            #expect(info.derivedInstructions == info.hostBlocks * (info.instructionsPerBlock ?? 0), sourceLocation: sourceLocation)
            #expect(info.derivedInstructions < b.instructions, sourceLocation: sourceLocation)
        }
        return (a, b)
    }

    @Test func referenceAgreesVerifiedTamperedAndOverBudget() throws {
        let reference = Self.sized(Scenario(file: try Fixtures.reference(), seed: 31))
        let (full, fast) = try Self.compare(reference, "reference")
        #expect(full.verdict == .verified)
        #expect((fast.fastHash?.loops ?? 0) >= 2, "one loop per region: \(fast.fastHash.map { "\($0)" } ?? "")")
        #expect(fast.fastHash?.inputRegister != nil && fast.fastHash?.stateAddress != nil)

        var tampered = reference
        tampered.tamper = true
        let (t, _) = try Self.compare(tampered, "reference tampered")
        #expect(t.verdict == .rejectedDigest)

        // A budget that ends inside the kernel segment's loop: the same instruction, the same timeout.
        var short = reference
        short.budget = full.instructions / 2
        let (s, _) = try Self.compare(short, "reference over budget")
        #expect(s.verdict == .timeout)
        #expect(s.instructions <= full.instructions / 2)
    }

    /// Both counts, the per-instruction hook's included, and the order of execution (--trace).
    @Test func crossCheckAndTraceAgree() throws {
        var scenario = Self.sized(Scenario(file: try Fixtures.reference(), seed: 32), kernel: 128 << 10)
        scenario.counting = .crossCheck
        let (_, fast) = try Self.compare(scenario, "reference cross-checked")
        #expect(fast.crossCheckInstructions == fast.instructions)
        #expect(fast.accounting?.crossCheckAgrees == true)

        scenario.counting = .exact
        scenario.recordBlocks = 1 << 20
        var full = scenario, quick = scenario
        full.fastHash = false
        quick.fastHash = true
        let a = try full.run(), b = try quick.run()
        #expect((b.fastHash?.hostBlocks ?? 0) > 0)
        #expect(a.trace?.blocks == b.trace?.blocks)
        #expect(a.trace?.dropped == b.trace?.dropped)
    }

    /// One compared step in every two, and in every seven: the same result (more checkpoints).
    @Test func everyCheckpointSpacingAgrees() throws {
        for every in [2, 7] {
            var scenario = Self.sized(Scenario(file: try Fixtures.reference(), seed: 33), kernel: 96 << 10)
            scenario.fastHashCheckEvery = every
            try Self.compare(scenario, "check every \(every)")
        }
    }

    /// Every build in Purgatories/manifest.json, at the first class address where the kernel's
    /// rules let it load.
    @Test func everyVariantAgrees() throws {
        let directory = Fixtures.repository.appendingPathComponent("Purgatories").path
        let data = try #require(FileManager.default.contents(atPath: directory + "/manifest.json"))
        let manifest = try JSONDecoder().decode(MatrixManifest.self, from: data)
        for variant in manifest.variants {
            let file = try ELFFile(bytes: [UInt8](try #require(FileManager.default.contents(atPath: directory + "/" + variant.file))),
                                   name: variant.file)
            // Where it verifies; a build the kernel refuses everywhere (GOT relocations) at the
            // first class, where both runs must refuse it alike.
            let verifies = manifest.classes.first { variant.expected[$0.name] == .verified }
            let probe = try #require(verifies ?? manifest.classes.first)
            let address = try #require(UInt64(probe.address.dropFirst(2), radix: 16))
            var scenario = Self.sized(Scenario(file: file, seed: 34), kernel: 96 << 10)
            scenario.loader = try #require(LoaderKind(rawValue: variant.loader))
            scenario.loadAddress = address
            let (full, _) = try Self.compare(scenario, "\(variant.name) at \(probe.address)", expectHostBlocks: verifies != nil)
            #expect(full.verdict == variant.expected[probe.name], "\(variant.name): \(full.message)")
        }
    }

    /// The four families: Linux 6.1 (transform inlined into sha256_update), 6.12
    /// (sha256_transform_blocks per region), kexec-tools (sha256_process per block), verified
    /// and tampered.
    @Test func debianPurgatoriesAgree() throws {
        var cases: [(String, Scenario)] = []
        for kernel in try DebianArtifacts.kernels() {
            let (file, _) = try DebianPurgatoryTests.extracted(kernel)
            cases.append((kernel.file, Scenario(file: file, seed: 35)))
        }
        let (kexec, _) = try DebianPurgatoryTests.extracted(try DebianArtifacts.entry("kexec"))
        var tools = Scenario(file: kexec, seed: 35)
        tools.loader = .kexecTools
        tools.symbolValues = [("console_serial", 1)]
        cases.append(("kexec", tools))
        for (name, base) in cases {
            let scenario = Self.sized(base)
            let (full, _) = try Self.compare(scenario, name)
            #expect(full.verdict == .verified, "\(name): \(full.message)")
            var tampered = scenario
            tampered.tamper = true
            let (t, _) = try Self.compare(tampered, "\(name) tampered")
            #expect(t.verdict == .rejectedDigest, "\(name): \(t.message)")
        }
    }

    /// A purgatory whose SHA-256 is wrong (one round constant changed): no region of its state
    /// changes as SHA-256 computes it, so nothing runs on the host, and the run — fully
    /// emulated — refuses the segments exactly as without --fast-hash.
    @Test func aWrongSHA256RunsInFullEmulation() throws {
        var bytes = Fixtures.referenceBytes
        let k10: [UInt8] = [0xbe, 0x85, 0x31, 0x24]  // 0x243185be, little-endian, in .rodata's K[]
        let at = try #require((0 ... bytes.count - 4).first { Array(bytes[$0 ..< $0 + 4]) == k10 })
        bytes[at] ^= 1
        let wrong = try ELFFile(bytes: bytes, name: "wrong-k10.ro")
        let (full, fast) = try Self.compare(Self.sized(Scenario(file: wrong, seed: 36)), "wrong K[10]", expectHostBlocks: false)
        #expect(full.verdict == .rejectedDigest)
        #expect(fast.fastHash?.hostBlocks == 0)
        #expect(fast.fastHash?.notes.contains { $0.contains("compression") } == true, "\(fast.fastHash?.notes ?? [])")
    }

    /// Below 64 KiB hashed the fast-forward is not attempted (it would cost more than it saves).
    @Test func smallRunsAreEmulatedInFull() throws {
        var scenario = Scenario(file: try Fixtures.reference(), seed: 37)
        scenario.fastHash = true
        let report = try scenario.run()
        #expect(report.verdict == .verified)
        #expect(report.fastHash?.hostBlocks == 0)
        #expect(report.fastHash?.notes.first?.hasPrefix("not attempted") == true)
    }

    /// The CLI: the flag, the JSON object (null without the flag), the human line.
    @Test func theToolReportsIt() throws {
        let fast = try Fixtures.harness(["run", "--seed", "5", "--kernel-size", "256K", "--fast-hash", "--json"])
        #expect(fast.status == 0, "\(fast.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(fast.bytes)) as? [String: Any])
        let info = try #require(json["fast_hash"] as? [String: Any])
        for key in ["emulated_blocks", "host_blocks", "instructions_per_block", "derived_instructions", "loops", "probes",
                    "anchor", "state_address", "input_register", "check_every", "fell_back", "notes"] {
            #expect(info.keys.contains(key), "fast_hash.\(key)")
        }
        #expect((info["host_blocks"] as? Int ?? 0) > 0)
        let plain = try Fixtures.harness(["run", "--seed", "5", "--kernel-size", "256K", "--json"])
        let plainJSON = try #require(try JSONSerialization.jsonObject(with: Data(plain.bytes)) as? [String: Any])
        #expect(plainJSON.keys.contains("fast_hash") && plainJSON["fast_hash"] is NSNull)
        #expect(plainJSON["instructions"] as? Int == json["instructions"] as? Int)
        let human = try Fixtures.harness(["run", "--seed", "5", "--kernel-size", "256K", "--fast-hash"])
        #expect(human.stdout.contains("SHA-256 blocks on the host"), "\(human.stdout)")
    }
}

/// Engines reused between runs (EnginePool) give the runs fresh engines give.
@Suite(.serialized) struct EngineReuseTests {
    @Test func pooledAndFreshEnginesGiveTheSameRuns() throws {
        let before = LongModeMachine.engineReuse
        defer { LongModeMachine.engineReuse = before }
        // A mix: every kernel profile's entry state, flat runs above 1 TiB, 5-level paging, tampering.
        var scenarios: [Scenario] = []
        let reference = try Fixtures.reference()
        for (i, profile) in KernelProfile.named.enumerated() {
            var s = Scenario(file: reference, seed: UInt64(40 + i))
            s.kernel = profile
            s.tamper = i % 3 == 1
            scenarios.append(s)
        }
        var flat = Scenario(file: reference, seed: 50)
        flat.loadAddress = 0x17f_7aff_a000
        scenarios.append(flat)
        var five = Scenario(file: reference, seed: 51)
        five.machine.paging = .five
        scenarios.append(five)
        func runAll() throws -> [String] {
            try (scenarios + scenarios).map { s in
                let r = try s.run()
                return "\(r.verdict) \(r.instructions) \(r.blocksExecuted ?? 0) \(r.message)"
            }
        }
        LongModeMachine.engineReuse = false
        let fresh = try runAll()
        LongModeMachine.engineReuse = true
        let pooled = try runAll()
        #expect(fresh == pooled)
    }

    /// A campaign's records do not depend on which engine ran which placement.
    @Test func campaignRecordsDoNotDependOnEngines() throws {
        let before = LongModeMachine.engineReuse
        defer { LongModeMachine.engineReuse = before }
        var campaign = Campaign(files: [try Fixtures.reference()], runs: 60, seed: 0x77)
        LongModeMachine.engineReuse = false
        let fresh = CampaignRunner(campaign: campaign, jsonl: nil).run()
        LongModeMachine.engineReuse = true
        campaign.jobs = 2
        let pooled = CampaignRunner(campaign: campaign, jsonl: nil).run()
        #expect(fresh == pooled)
    }
}
