import ELF
import Foundation
import Machine
import Run
import Testing

/// A guest that does what the kexec entry state forbids gets what the CPU would raise, and a
/// guest that asks for time or randomness gets answers from the seed: the same seed, the same run.
@Suite struct GuestMisbehaviourTests {
    /// The reference purgatory with `code` at purgatory+0xb (at most 23 bytes): purgatory() jumps
    /// over its first relocation (at +0x7) to it.
    static func patched(_ code: [UInt8]) throws -> [UInt8] {
        precondition(code.count <= 0x17)
        return try ScenarioTests.patchedPurgatory([0xeb, 0x09] + [UInt8](repeating: 0x90, count: 9) + code)
    }

    static func run(_ code: [UInt8], seed: UInt64 = 6, at address: UInt64? = nil) throws -> RunReport {
        var s = Scenario(file: try ELFFile(bytes: try Self.patched(code), name: "guest.ro"), seed: seed)
        s.kernel = Fixtures.tripleFaultKernel
        s.loadAddress = address
        return try s.run()
    }

    static let efer: [UInt8] = [0xb9, 0x80, 0x00, 0x00, 0xc0, 0x0f, 0x32]  // mov ecx, EFER; rdmsr
    static let wrmsr: [UInt8] = [0x0f, 0x30]
    static let spin: [UInt8] = [0xeb, 0xfe]

    @Test func clearingCR0PagingIsAGeneralProtectionFault() throws {
        // mov rax, cr0; btr eax, 31; mov cr0, rax; jmp .
        let report = try Self.run([0x0f, 0x20, 0xc0, 0x0f, 0xba, 0xf0, 0x1f, 0x0f, 0x22, 0xc0] + Self.spin)
        #expect(report.verdict == .fault)
        #expect(report.fault?.vector == 13 && report.fault?.errorCode == 0)
        #expect(report.fault?.instruction == "mov cr0, rax")
        #expect(report.message.contains("clears PG in 64-bit mode"), "\(report.message)")
    }

    @Test func clearingEFERLongModeIsAGeneralProtectionFault() throws {
        // mov ecx, EFER; rdmsr; btr eax, 8; wrmsr; jmp .
        let report = try Self.run(Self.efer + [0x0f, 0xba, 0xf0, 0x08] + Self.wrmsr + Self.spin)
        #expect(report.verdict == .fault)
        #expect(report.fault?.vector == 13)
        #expect(report.fault?.instruction == "wrmsr")
        #expect(report.message.contains("changes EFER.LME with paging on"), "\(report.message)")
    }

    @Test func syscallFollowsEFERSCEAsTheMachineKeepsIt() throws {
        // mov ecx, EFER; rdmsr; and eax, ~1 (SCE); wrmsr; syscall
        let cleared = try Self.run(Self.efer + [0x83, 0xe0, 0xfe] + Self.wrmsr + [0x0f, 0x05] + Self.spin)
        #expect(cleared.verdict == .fault && cleared.fault?.vector == 6, "\(cleared.message)")
        #expect(cleared.message.contains("syscall with EFER.SCE clear"))
        // The kernel ran with SCE set: syscall leaves for the old kernel's entry point, unmapped.
        let set = try Self.run([0x0f, 0x05] + Self.spin)
        #expect(set.verdict == .fault && set.fault?.vector == 14, "\(set.message)")
        // rdmsr EFER answers 0xd01 (SCE|LME|LMA|NXE), not Unicorn's 0x500: bit 0 set, so no jump.
        // mov ecx, EFER; rdmsr; test al, 1; jz .; nop; jmp .
        let read = try Self.run(Self.efer + [0xa8, 0x01, 0x74, 0xfe, 0x90] + Self.spin)
        #expect(read.verdict == .rejectedDigest)
        #expect(read.message.contains("purgatory+0x17"), "\(read.message)")
    }

    /// A loop that waits on the time stamp counter runs the same number of instructions for the
    /// same seed, every time and in every process; other seeds give other counts.
    @Test func timeStampLoopsAreTheSameForTheSameSeed() throws {
        // 1: rdtsc; test al, 0x0e; jnz 1b; jmp .
        let loop: [UInt8] = [0x0f, 0x31, 0xa8, 0x0e, 0x75, 0xfa] + Self.spin
        let counts = try (0 ..< 3).map { _ in try Self.run(loop, seed: 77).instructions }
        #expect(Set(counts).count == 1)
        let others = try Set((1 ... 12).map { try Self.run(loop, seed: $0).instructions })
        #expect(others.count > 1)
        let path = try Fixtures.temporaryFile(try Self.patched(loop), name: "rdtsc.ro")
        let a = try Fixtures.harness(["fuzz", path, "--runs", "20", "--seed", "5", "--expect", "rejected-digest", "--json", "--jobs", "2"])
        let b = try Fixtures.harness(["fuzz", path, "--runs", "20", "--seed", "5", "--expect", "rejected-digest", "--json", "--jobs", "1"])
        #expect(a.status == 0 && a.stdout == b.stdout)
        let runA = try Fixtures.harness(["run", path, "--seed", "9", "--expect", "rejected-digest", "--json"])
        let runB = try Fixtures.harness(["run", path, "--seed", "9", "--expect", "rejected-digest", "--json"])
        func withoutTimings(_ text: String) throws -> Data {
            let object = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
            return try JSONSerialization.data(withJSONObject: object.filter { !["timings", "megabytes_per_second"].contains($0.key) },
                                              options: [.sortedKeys])
        }
        #expect(try withoutTimings(runA.stdout) == withoutTimings(runB.stdout))
    }

    /// The emulated CPU (Unicorn's qemu64 model) has no RDRAND or RDSEED (CPUID.01H:ECX bit 30 and
    /// CPUID.07H:EBX bit 18 clear): they raise #UD, as on a CPU without them, on every run.
    @Test func rdrandAndRdseedAreUndefinedOnTheEmulatedCPU() throws {
        for code: [UInt8] in [[0x48, 0x0f, 0xc7, 0xf0], [0x48, 0x0f, 0xc7, 0xf8]] {  // rdrand rax, rdseed rax
            let reports = try (1 ... 3).map { try Self.run(code + Self.spin, seed: $0) }
            for report in reports {
                #expect(report.verdict == .fault && report.fault?.vector == 6, "\(report.message)")
                #expect(report.fault?.symbol == "purgatory+0xb")
            }
            #expect(Set(reports.map(\.instructions)).count == 1)
        }
    }

    /// Guarded instructions behave the same in a flat run (above 2^40) where they do not depend
    /// on paging.
    @Test func flatRunsRaiseTheSameFaults() throws {
        let report = try Self.run(Self.efer + [0x83, 0xe0, 0xfe] + Self.wrmsr + [0x0f, 0x05] + Self.spin, at: 0x17f_7aff_d000)
        // wrmsr EFER depends on paging (LME): refused in a flat run, never passed silently.
        #expect(report.verdict == .harnessError, "\(report.message)")
        let time = try Self.run([0x0f, 0x31, 0xa8, 0x0e, 0x75, 0xfa] + Self.spin, seed: 77, at: 0x17f_7aff_d000)
        #expect(time.verdict == .rejectedDigest)
        #expect(time.instructions == (try Self.run([0x0f, 0x31, 0xa8, 0x0e, 0x75, 0xfa] + Self.spin, seed: 77)).instructions)
    }
}
