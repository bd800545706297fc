import Containers
import ELF
import Foundation
import Loader
import Machine
import Run
import Testing

/// Each kernel generation's rules, one test per row of docs/kernel-generations.md: every test
/// runs the generation before a change and the one that made it, and fails if the harness
/// modelled the previous generation for the later one.
@Suite struct KernelProfileTests {
    static func profile(_ name: String) throws -> KernelProfile { try #require(KernelProfile.resolve(name)) }

    static func run(_ bytes: [UInt8] = Fixtures.referenceBytes, kernel: String, seed: UInt64 = 5,
                    configure: (inout Scenario) -> Void = { _ in }) throws -> RunReport {
        var s = Scenario(file: try ELFFile(bytes: bytes, name: "purgatory.ro"), seed: seed)
        s.kernel = try profile(kernel)
        configure(&s)
        return try s.run()
    }

    /// The reference purgatory with `code` at purgatory_start+7, jumped to over the relocation
    /// at +3 (at most 18 bytes): it runs first, in the entry state relocate_kernel left.
    static func atEntry(_ code: [UInt8]) throws -> [UInt8] {
        precondition(code.count <= 18)
        var bytes = Fixtures.referenceBytes
        let file = try Fixtures.reference()
        let text = try #require(file.section(named: ".text"))
        let at = Int(text.offset + file.header.entry)  // e_entry = purgatory_start
        let patch: [UInt8] = [0xeb, 0x05, 0, 0, 0, 0, 0] + code
        for (i, byte) in patch.enumerated() where !(2 ..< 7).contains(i) { bytes[at + i] = byte }
        return bytes
    }

    /// `check` leaves ZF set when the entry state has the later generation's value:
    /// `je yes; no: jmp .; yes: jmp .` — the spin address tells which.
    static func observe(_ check: [UInt8], kernel: String, configure: (inout Scenario) -> Void = { _ in }) throws -> Bool {
        let code = check + [0x74, 0x02, 0xeb, 0xfe, 0xeb, 0xfe]
        let report = try run(try atEntry(code), kernel: kernel, configure: configure)
        try #require(report.verdict == .rejectedDigest, "\(kernel): \(report.message)")
        let yes = UInt64(7 + check.count + 4)
        return report.message.contains("purgatory_start+\(hex(yes))")
    }

    // MARK: versions

    @Test func versionsResolveWithTheirStableBackports() throws {
        #expect(try Self.profile("6.1.34").entryRule == .unguarded)
        #expect(try Self.profile("6.1.35").entryRule == .eEntry)
        #expect(try Self.profile("6.1.164").entryRule == .eEntry)
        #expect(try Self.profile("6.1.165").entryRule == .symbol)
        #expect(try Self.profile("linux-6.19").entryRule == .eEntry)
        #expect(try Self.profile("linux-latest").entryRule == .symbol)
        #expect(try Self.profile("6.12.93").skipsIMASegment == false)
        #expect(try Self.profile("6.12.94").skipsIMASegment == true)
        #expect(try Self.profile("6.15").skipsIMASegment == false)
        #expect(KernelVersion(release: "6.1.0-57-amd64 (debian-kernel@lists.debian.org) #1 SMP PREEMPT_DYNAMIC Debian 6.1.192-3 (2026-11-01)")
                == KernelVersion(6, 1, 192))
        #expect(KernelVersion(release: "6.12.118+deb12-amd64 (debian-kernel@lists.debian.org) #1 SMP") == KernelVersion(6, 12, 118))
        #expect(KernelProfile.resolve("linux-frob") == nil)
    }

    // MARK: entry rule (8652d44f466a, 480e1d5c64bb)

    /// clang ≥ 18's large model: C in .ltext, asm in .text, both containing e_entry. Before
    /// 8652d44f466a the entry lands near twice the load address and the CPU faults there;
    /// with it, the first section wins and the kernel WARNs; with 480e1d5c64bb, no WARN.
    @Test func theLtextBuildUnderEachEntryRule() throws {
        let address: UInt64 = 0x40_0000_0000
        let old = try VariantTests.runProfile("ltext", kernel: "linux-6.0", at: address)
        #expect(old.verdict == .fault, "\(old.message)")
        let entry = try #require(old.entry)
        #expect(entry > 2 * address && entry < 2 * address + 0x10000)
        #expect(old.fault?.rip == entry)
        let guarded = try VariantTests.runProfile("ltext", kernel: "linux-6.4", at: address)
        #expect(guarded.verdict == .verified)
        #expect(guarded.kernelLog.contains { $0.hasPrefix("WARNING:") && $0.contains(".text and .ltext") })
        let symbol = try VariantTests.runProfile("ltext", kernel: "linux-latest", at: address)
        #expect(symbol.verdict == .verified)
        #expect(symbol.kernelLog.isEmpty)
        #expect(symbol.entrySource == "purgatory_start in .text")
    }

    /// The WARN is in kernel_log, so a campaign can count it: `fuzz --deny-warnings`.
    @Test func fuzzCatchesTheWarnWhenAsked() throws {
        let path = Fixtures.repository.appendingPathComponent("Purgatories/variants/ltext.ro").path
        let base = ["fuzz", path, "--runs", "12", "--seed", "1", "--jobs", "1"]
        #expect(try Fixtures.harness(base + ["--kernel-profile", "linux-6.4"]).status == 0)
        let denied = try Fixtures.harness(base + ["--kernel-profile", "linux-6.4", "--deny-warnings"])
        #expect(denied.status == 1)
        #expect(denied.stdout.contains("failure: \(path): verified ×12: kernel WARNING: at kernel/kexec_file.c"))
        #expect(try Fixtures.harness(base + ["--kernel-profile", "linux-latest", "--deny-warnings"]).status == 0)
    }

    // MARK: stack (2cacf7f23a02)

    /// `cmp qword [rsp], 0`, inverted: the later generation's [rsp] is not 0; and the low byte of rsp.
    @Test func theStackAtEntry() throws {
        let rspIsPageEnd: [UInt8] = [0x40, 0xf6, 0xc4, 0xff]  // test spl, 0xff: ZF when rsp is page-aligned
        #expect(try Self.observe(rspIsPageEnd, kernel: "linux-6.13") == false)
        #expect(try Self.observe(rspIsPageEnd, kernel: "linux-6.14") == true)
        let zeroAtRsp = try Self.run(kernel: "linux-6.13").entryState
        #expect(zeroAtRsp?.atRsp == 0 && (zeroAtRsp?.rsp ?? 0) & 0xfff == 0xff8)
        let nextPage = try Self.run(kernel: "linux-6.14").entryState
        #expect((nextPage?.atRsp ?? 0) != 0 && (nextPage?.rsp ?? 1) & 0xfff == 0)
    }

    // MARK: GDT (b25eb5f5e419) and IDT (8df505af7fef)

    /// sgdt/sidt below rsp, then compare the limit: 0x1f from 6.15, 0xff from 6.16.
    @Test func theDescriptorTablesAtEntry() throws {
        let gdtLimit: [UInt8] = [0x0f, 0x01, 0x44, 0x24, 0xe0, 0x66, 0x83, 0x7c, 0x24, 0xe0, 0x1f]  // sgdt [rsp-0x20]; cmp word [rsp-0x20], 0x1f
        #expect(try Self.observe(gdtLimit, kernel: "linux-6.14") == false)
        #expect(try Self.observe(gdtLimit, kernel: "linux-6.15") == true)
        let idtLimit: [UInt8] = [0x0f, 0x01, 0x4c, 0x24, 0xe0, 0x66, 0x81, 0x7c, 0x24, 0xe0, 0xff, 0x00]  // sidt [rsp-0x20]; cmp word [rsp-0x20], 0xff
        #expect(try Self.observe(idtLimit, kernel: "linux-6.15") == false)
        #expect(try Self.observe(idtLimit, kernel: "linux-6.16") == true)
        let state = try #require(try Self.run(kernel: "linux-6.16").entryState)
        #expect(state.gdt.limit == 0x1f && state.idt.limit == 0xff && state.idt.base == state.gdt.base + 0x100)
    }

    // MARK: CR4 (de60613173df), RFLAGS

    @Test func machineCheckOnTDXGuestsFrom6_11() throws {
        let mce: [UInt8] = [0x0f, 0x20, 0xe0, 0x83, 0xe0, 0x40, 0x83, 0xf0, 0x40]  // mov rax, cr4; and eax, 0x40; xor eax, 0x40
        #expect(try Self.observe(mce, kernel: "linux-6.10") { $0.tdxGuest = true } == false)
        #expect(try Self.observe(mce, kernel: "linux-6.11") { $0.tdxGuest = true } == true)
        #expect(try Self.observe(mce, kernel: "linux-6.11") == false)
        // pushfq; pop rax; cmp eax, 0x46: the final register-clearing xor leaves ZF and PF.
        #expect(try Self.observe([0x9c, 0x58, 0x83, 0xf8, 0x46], kernel: "linux-5.4") == true)
    }

    // MARK: digest (9ee8888a80fe, f7cc804a9fd4, 6dacd79d2884)

    /// IMA rewrites its segment at kexec -e: verified only where the kernel leaves it out.
    @Test func theIMASegmentAndItsRewrite() throws {
        func rewritten(_ kernel: String) throws -> RunReport {
            try Self.run(kernel: kernel) { $0.segments.imaSize = 0x3000; $0.imaRewrite = true }
        }
        let old = try rewritten("linux-6.12.0")
        #expect(old.verdict == .rejectedDigest, "\(old.message)")
        #expect(old.hashedSegments == ["ima", "boot-params", "kernel", "initrd"])
        #expect(old.segments.first?.name == "ima")
        #expect(try rewritten("6.12.94").verdict == .verified)
        #expect(try rewritten("linux-6.15").verdict == .rejectedDigest)
        let latest = try rewritten("linux-latest")
        #expect(latest.verdict == .verified, "\(latest.message)")
        #expect(latest.hashedSegments == ["boot-params", "kernel", "initrd"])
        #expect(latest.imaRewrite != nil)
    }

    /// A crash image's elfcorehdr: hashed before 6.6; 6.6–6.10 compare it with the count of
    /// hashed segments, which, with the elfcorehdr first, leaves everything out; 6.11 only it.
    @Test func theElfcorehdrOfACrashImage() throws {
        func hashed(_ kernel: String) throws -> [String] { try Self.run(kernel: kernel) { $0.segments.crash = true }.hashedSegments }
        #expect(try hashed("linux-6.5") == ["elfcorehdr", "boot-params", "kernel", "initrd"])
        #expect(try hashed("linux-6.6") == [])
        #expect(try hashed("linux-6.11") == ["boot-params", "kernel", "initrd"])
        let report = try Self.run(kernel: "linux-6.11") { $0.segments.crash = true }
        #expect(report.verdict == .verified)
        #expect(report.bootParams?.commandLine.contains(" elfcorehdr=0x") == true)
        // With nothing hashed, a tampered kernel still "verifies" under 6.6: the bug, reproduced.
        let blind = try Self.run(kernel: "linux-6.6") { $0.segments.crash = true; $0.tamper = true }
        #expect(blind.verdict == .verified && blind.tamper == nil)
    }

    // MARK: setup_data (68b8e9713c8e, b69a2afd5afc)

    @Test func theSetupDataChain() throws {
        #expect(try Self.run(kernel: "linux-5.19").bootParams?.setupData == [])
        #expect(try Self.run(kernel: "linux-6.0").bootParams?.setupData == ["rng-seed"])
        #expect(try Self.run(kernel: "linux-6.0") { $0.segments.imaSize = 0x1000 }.bootParams?.setupData == ["rng-seed", "ima"])
        #expect(try Self.run(kernel: "linux-5.19") { $0.segments.imaSize = 0x1000 }.bootParams?.setupData == [])
    }

    // MARK: placement (43b1d3e68ee7)

    /// A bzImage whose pref_address is 16 MiB, segments drawn below 40 MiB: before 6.9 the
    /// kernel may go anywhere from 1 MiB, from 6.9 not below 16 MiB.
    @Test func theKernelAbovePrefAddress() throws {
        let image = try BzImage(bytes: Fixtures.bzImage(payload: [UInt8](repeating: 0x90, count: 0x1000), initSize: 0x2000))
        func kernelStarts(_ kernel: String) throws -> [UInt64] {
            try (1 ... 12).map { seed in
                try Self.run(kernel: kernel, seed: seed) {
                    $0.segments.bzImage = image
                    $0.segments.initrdSize = 0
                    $0.machine.segmentRange = 0 ..< 40 << 20
                }.segments.first { $0.name == "kernel" }?.start ?? 0
            }
        }
        #expect(try kernelStarts("linux-6.8").contains { $0 < 16 << 20 })
        #expect(try kernelStarts("linux-6.9").allSatisfy { $0 >= 16 << 20 })
    }

    /// bzImage64_probe refuses a kernel without XLF_5LEVEL when the machine runs 5-level paging.
    @Test func fiveLevelPagingNeedsXLF5Level() throws {
        let image = try BzImage(bytes: Fixtures.bzImage(payload: [UInt8](repeating: 0x90, count: 0x1000), xloadFlags: 0x5f))
        let report = try Self.run(kernel: "linux-6.1") { $0.segments.bzImage = image; $0.machine.paging = .five }
        #expect(report.verdict == .loadError)
        #expect(report.message == "kexec-bzImage64: bzImage cannot handle 5-level paging mode.")
        #expect(try Self.run(kernel: "linux-6.1") { $0.segments.bzImage = image; $0.machine.paging = .four }.verdict == .verified)
    }

    /// 6.16 runs 5-level wherever the CPU has it (more than 46 physical bits here).
    @Test func fiveLevelWhereTheCPUHasItFrom6_16() throws {
        #expect(try Self.run(kernel: "linux-6.15").machine?.identityMap == "4-level")
        let latest = try Self.run(kernel: "linux-6.16")
        #expect(latest.machine?.identityMap == "5-level" && (latest.entryState?.cr4 ?? 0) & (1 << 12) != 0)
        #expect(try Self.run(kernel: "linux-6.16") { $0.machine.physicalBits = 46 }.machine?.identityMap == "4-level")
    }

    // MARK: 6.16's exception handlers

    static func exception(_ code: [UInt8], kernel: String, port: UInt16? = 0x3f8) throws -> RunReport {
        try run(try GuestMisbehaviourTests.patched(code), kernel: kernel) { $0.earlySerialPort = port }
    }

    @Test func faultsBeforeAndAfterTheHandlers() throws {
        let cases: [(code: [UInt8], vector: UInt32)] = [
            ([0x0f, 0x0b], 6),                                         // ud2
            ([0x31, 0xc9, 0xf7, 0xf1], 0),                              // xor ecx, ecx; div ecx
            ([0x48, 0xb8] + le(UInt64(0x8000_0000_0000_0000)) + [0x8b, 0x00], 13),  // non-canonical load: #GP
            ([0x31, 0xc0, 0x48, 0x8b, 0x00], 14),                       // xor eax, eax; mov rax, [rax]: #PF
        ]
        for c in cases {
            let old = try Self.exception(c.code, kernel: "linux-6.15")
            #expect(old.verdict == .fault, "\(c.vector): \(old.message)")
            #expect(old.console == nil)
            let new = try Self.exception(c.code, kernel: "linux-6.16")
            #expect(new.verdict == .kexecException, "\(c.vector): \(new.message)")
            #expect(new.fault?.vector == c.vector, "\(new.message)")
            let console = try #require(new.console)
            let lines = console.split(separator: "\n")
            #expect(lines.count == 19)
            #expect(lines.first.map(String.init) == "Exc:" + String(format: "%016llx", UInt64(c.vector)))
            #expect(lines.last?.hasPrefix("cr2:") == true)
            #expect(lines.allSatisfy { $0.count == 20 })
            #expect(new.instructions == old.instructions)
        }
        // #PF's dump names the address in cr2 and the error code.
        let pf = try #require(try Self.exception([0x31, 0xc0, 0x48, 0x8b, 0x00], kernel: "linux-6.16").console)
        #expect(pf.contains("Err:0000000000000000\n") && pf.contains("cr2:0000000000000000\n"))
        // Without an early serial console the handler prints nothing, and still halts.
        let silent = try Self.exception([0x0f, 0x0b], kernel: "linux-6.16", port: nil)
        #expect(silent.verdict == .kexecException && silent.console == nil)
    }

    /// int3 returns from the 6.16 handler: the purgatory goes on and verifies, one instruction
    /// more than without it, the dump printed. (purgatory() starts `push r12`; `int3; push rsp`
    /// keeps the stack's shape, and entry64 reloads every register.)
    @Test func int3ReturnsUnder6_16() throws {
        let bytes = try ScenarioTests.patchedPurgatory([0xcc, 0x54])
        let old = try Self.run(bytes, kernel: "linux-6.15")
        #expect(old.verdict == .fault && old.fault?.vector == 3)
        let new = try Self.run(bytes, kernel: "linux-6.16") { $0.earlySerialPort = 0x3f8 }
        #expect(new.verdict == .verified, "\(new.message)")
        #expect(new.instructions == (try Self.run(kernel: "linux-6.16")).instructions + 1)
        #expect(new.console?.hasPrefix("Exc:0000000000000003\nErr:0000000000000000\nrip:") == true)
    }

    /// A vector beyond the IDT's 16 gates is #GP with the IDT error code (vector × 8 + 2).
    @Test func aVectorBeyondTheIDTIsAGeneralProtectionFault() throws {
        let report = try Self.exception([0xcd, 0x80], kernel: "linux-6.16")  // int 0x80
        #expect(report.verdict == .kexecException)
        #expect(report.fault?.vector == 13 && report.fault?.errorCode == 0x402, "\(report.message)")
    }

    // MARK: real kernels

    /// Debian's purgatories under the profile their own version string names, and under
    /// linux-latest: both verify; the profile is reported.
    @Test func debianKernelsUnderTheirOwnProfile() throws {
        for entry in try DebianArtifacts.kernels() {
            let out = try Fixtures.harness(["run", entry.path, "--seed", "3", "--json"])
            #expect(out.status == 0, "\(entry.file): \(out.stderr)")
            let object = try #require(try JSONSerialization.jsonObject(with: Data(out.stdout.utf8)) as? [String: Any])
            let profile = try #require(object["kernel_profile"] as? [String: Any])
            let version = try #require(profile["version"] as? String)
            #expect(entry.version.hasPrefix(version), "\(entry.file): \(version) vs package \(entry.version)")
            #expect((profile["source"] as? String)?.hasPrefix("version string of ") == true)
            let latest = try Fixtures.harness(["run", entry.path, "--seed", "3", "--kernel-profile", "linux-latest"])
            #expect(latest.status == 0, "\(entry.file): \(latest.stdout)")
        }
    }

    @Test func listNamesEveryProfile() throws {
        let out = try Fixtures.harness(["run", "--kernel-profile", "list"])
        #expect(out.status == 0)
        for profile in KernelProfile.named { #expect(out.stdout.contains(profile.name)) }
        #expect(out.stdout.contains("480e1d5c64bb") && out.stdout.contains("2cacf7f23a02"))
    }
}

extension VariantTests {
    static func runProfile(_ name: String, kernel: String, at address: UInt64) throws -> RunReport {
        var s = Scenario(file: try variant(name), seed: 11)
        s.kernel = try #require(KernelProfile.resolve(kernel))
        s.loadAddress = address
        return try s.run()
    }
}
