import ELF
import Foundation
import Fuzz
import Inspect
import Run
import Testing

@Suite struct FuzzTests {
    static func kernelModel() throws -> ELFFile { try VariantTests.variant("kernel-model") }

    /// A campaign around the 2 GiB edge so the boundary is crossed often.
    static func campaign(runs: Int = 120, jobs: Int = 1) throws -> Campaign {
        var c = Campaign(files: [try kernelModel()], runs: runs, seed: 0xf00d)
        c.ranges = [AddressClass(name: "1-3 GiB", low: 1 << 30, high: 3 << 30)]
        c.jobs = jobs
        return c
    }

    @Test func runIIsTheSameWhateverTheJobs() throws {
        let one = CampaignRunner(campaign: try Self.campaign(jobs: 1), jsonl: nil).run()
        let two = CampaignRunner(campaign: try Self.campaign(jobs: 2), jsonl: nil).run()
        #expect(one == two)
        #expect(CampaignSummary(one) == CampaignSummary(two))
        #expect(Set(one.map(\.loadAddress)).count > 100)
    }

    @Test func bisectionFindsTheBoundaryInspectPredicts() throws {
        let campaign = try Self.campaign()
        let records = CampaignRunner(campaign: campaign, jsonl: nil).run()
        var summary = CampaignSummary(records)
        #expect(summary.failures.count == 1)
        var failure = try #require(summary.failures.first)
        #expect(failure.verdict == .loadError)
        #expect(failure.pattern == "kexec: Overflow in relocation type # value #")
        campaign.findBoundary(&failure, in: records)
        let predicted = try Inspector(file: try Self.kernelModel()).inspect().lowestFailingAddress
        #expect(failure.boundary == predicted)
        #expect(failure.boundaryNote?.hasPrefix("load-error for load addresses ≥ 0x7ffff000") == true)
        summary.failures[0] = failure
        // Every run's verdict agrees with the boundary.
        for r in records { #expect((r.verdict == .verified) == (r.loadAddress < predicted!), "\(r)") }
    }

    @Test func defaultAddressesSpreadOverEveryPowerOfTwoFrom1MiB() throws {
        let c = Campaign(files: [try Fixtures.reference()], runs: 800, seed: 3)
        let addresses = (0 ..< 800).compactMap { c.scenario(file: 0, index: $0).loadAddress }
        #expect(addresses.count == 800)
        let exponents = Set(addresses.map { 63 - $0.leadingZeroBitCount })
        #expect(exponents == Set(20 ..< 52))
        #expect(addresses.allSatisfy { $0 % 0x1000 == 0 && $0 + 0x3000 <= 1 << 52 })
    }

    @Test func shardsPartitionTheCampaignAndMergeToTheSameSummary() throws {
        let full = CampaignRunner(campaign: try Self.campaign(runs: 40), jsonl: nil).run()
        var parts: [FuzzRecord] = []
        for i in 0 ..< 3 {
            var c = try Self.campaign(runs: 40)
            c.shard = (i, 3)
            parts += CampaignRunner(campaign: c, jsonl: nil).run()
        }
        #expect(parts.count == full.count)
        #expect(CampaignSummary(parts) == CampaignSummary(full))
    }

    @Test func reproducerReplaysTheRunExactly() throws {
        let path = Fixtures.repository.appendingPathComponent("Purgatories/variants/kernel-model.ro").path
        let out = try Fixtures.harness(["fuzz", path, "--runs", "30", "--seed", "0x77", "--range", "1G-3G", "--jobs", "2"])
        #expect(out.status == 1)  // some runs land above the boundary
        let line = try #require(out.stdout.split(separator: "\n").first { $0.contains("reproduce: ") })
        let parts = line.components(separatedBy: "reproduce: purgatory-harness ")
        try #require(parts.count == 2)
        let replay = try Fixtures.harness(parts[1].split(separator: " ").map(String.init) + ["--json"])
        let object = try #require(try JSONSerialization.jsonObject(with: Data(replay.stdout.utf8)) as? [String: Any])
        #expect(object["verdict"] as? String == "load-error")
        #expect((object["message"] as? String)?.hasPrefix("kexec: Overflow in relocation type 11") == true)
        #expect(out.stdout.contains("load-error for load addresses ≥ 0x7ffff000"))
    }

    /// Killed with SIGKILL mid-campaign, the JSONL keeps only whole lines; merged, they summarize.
    @Test func aKilledCampaignKeepsEveryFinishedRun() throws {
        let jsonl = FileManager.default.temporaryDirectory.appendingPathComponent("ph-killed-\(UUID().uuidString).jsonl").path
        let process = Process()
        process.executableURL = Fixtures.executable
        process.arguments = ["fuzz", "--runs", "100000", "--seed", "5", "--jsonl", jsonl]
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        Thread.sleep(forTimeInterval: 1.5)
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        let text = try String(contentsOfFile: jsonl, encoding: .utf8)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.last == "")  // ends with a newline: no half-written line
        // The first line is the campaign's identity; every record names that campaign.
        #expect(lines.first?.contains("\"identity\"") == true)
        let records = try lines.dropFirst().dropLast().map { try JSONDecoder().decode(FuzzRecord.self, from: Data($0.utf8)) }
        #expect(records.count > 10)
        #expect(records.allSatisfy { $0.verdict == .verified })
        let merged = try Fixtures.harness(["fuzz-merge", jsonl])
        #expect(merged.status == 0)
        #expect(merged.stdout.contains("\(records.count) runs from 1 file(s)"))
    }

    /// Ctrl-C: the summary so far, then exit 130 as a shell reports a SIGINT death.
    @Test func ctrlCStopsWithTheSummarySoFar() throws {
        let process = Process()
        process.executableURL = Fixtures.executable
        process.arguments = ["fuzz", "--runs", "100000", "--seed", "6", "--no-shrink"]
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        Thread.sleep(forTimeInterval: 1.5)
        process.interrupt()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 130)  // 128 + SIGINT, after the summary so far
        #expect(text.contains("(interrupted: summary so far)"))
        #expect(text.contains("runs per address class and verdict:"))
    }

    /// A range with no room for the purgatory is refused before the campaign, naming the range.
    @Test func aRangeWithNoRoomIsRefusedBeforeTheCampaign() throws {
        let out = try Fixtures.harness(["fuzz", "--range", "0x100000-0x101000", "--runs", "3", "--seed", "1", "--jobs", "1"])
        #expect(out.status == 2)
        #expect(out.stdout.isEmpty)
        #expect(out.stderr.split(separator: "\n").count == 1)
        #expect(out.stderr.contains("--range 0x100000-0x101000 has no 0x1000-aligned place for the 0x3000-byte purgatory"))
        let beyond = try Fixtures.harness(["fuzz", "--range", "1T-0x20000000000000", "--runs", "3", "--seed", "1"])
        #expect(beyond.status == 2)
        #expect(beyond.stderr.contains("beyond the machine's RAM (below 0x10000000000000"))
    }
}

/// The JSONL sink, --runs bounds, merges of different campaigns, memory that does not grow.
@Suite struct FuzzSinkTests {
    /// The -mcmodel=kernel build above 4 GiB: the loader refuses every run, so runs are fast.
    static let kernelModelPath = Fixtures.repository.appendingPathComponent("Purgatories/variants/kernel-model.ro").path
    static let range = [kernelModelPath, "--range", "4G-8G"]

    @Test func runsAreCappedWithAClearRefusal() throws {
        let out = try Fixtures.harness(["fuzz", "--runs", "1000000000000"])
        #expect(out.status == 2)
        #expect(out.stderr.contains("--runs must be 1 to 100000000"))
        #expect(out.stderr.split(separator: "\n").count == 1)
    }

    @Test func aFullDiskIsOneLineNamingTheFile() throws {
        let out = try Fixtures.harness(["fuzz", "--runs", "5", "--seed", "1", "--jsonl", "/dev/full"] + Self.range)
        #expect(out.status == 2)
        #expect(out.stderr == "purgatory-harness: error: /dev/full: cannot write: No space left on device\n")
    }

    @Test func aPipeWhoseReaderLeavesStopsQuietly() throws {
        let out = try Fixtures.launch(URL(fileURLWithPath: "/bin/sh"), ["-c",
            "'\(Fixtures.executable.path)' fuzz '\(Self.kernelModelPath)' --runs 100000 --seed 1 --jobs 1 --jsonl /dev/stdout --range 4G-8G | head -1 >/dev/null; echo \"status ${PIPESTATUS:-x}\""])
        #expect(!out.stderr.contains("Fatal error") && !out.stderr.contains("Illegal seek"))
        let direct = try Fixtures.launch(URL(fileURLWithPath: "/bin/bash"), ["-c",
            "'\(Fixtures.executable.path)' fuzz '\(Self.kernelModelPath)' --runs 100000 --seed 1 --jobs 1 --jsonl /dev/stdout --range 4G-8G | head -1 >/dev/null; echo ${PIPESTATUS[0]}"])
        #expect(direct.stdout == "1\n")  // exits as the campaign would (harness-errors are unexpected)
        #expect(direct.stderr.isEmpty)
    }

    @Test func twoCampaignsAppendingToOneFileKeepEveryLine() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("ph-append-\(UUID().uuidString).jsonl").path
        let arguments = { (seed: String) in ["fuzz", "--runs", "3000", "--seed", seed, "--jobs", "2", "--jsonl", path, "--no-shrink"] + Self.range }
        let a = Process(), b = Process()
        for (p, seed) in [(a, "1"), (b, "2")] {
            p.executableURL = Fixtures.executable
            p.arguments = arguments(seed)
            p.standardOutput = FileHandle.nullDevice
            try p.run()
        }
        a.waitUntilExit(); b.waitUntilExit()
        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 6002)
        #expect(lines.allSatisfy { (try? JSONSerialization.jsonObject(with: Data($0.utf8))) != nil })
        let merge = try Fixtures.harness(["fuzz-merge", path])
        #expect(merge.status == 2)
        #expect(merge.stderr.contains("fuzz-merge sums shards of one campaign only"))
        #expect(merge.stderr.split(separator: "\n").count == 1)
    }

    @Test func mergedShardsGiveTheSingleProcessSummary() throws {
        let dir = FileManager.default.temporaryDirectory.path + "/ph-shards-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let common = ["fuzz", "Purgatories/variants/kernel-model.ro", "--runs", "40", "--seed", "0x2019", "--no-shrink", "--json",
                      "--range", "1G-3G", "--range", "3G-5G"].map { $0 == "Purgatories/variants/kernel-model.ro" ? Fixtures.repository.path + "/" + $0 : $0 }
        let single = try Fixtures.harness(common)
        for i in 0 ..< 3 { _ = try Fixtures.harness(common + ["--shard", "\(i)/3", "--jsonl", "\(dir)/\(i).jsonl"]) }
        let merged = try Fixtures.harness(["fuzz-merge", "--json", "\(dir)/0.jsonl", "\(dir)/1.jsonl", "\(dir)/2.jsonl"])
        #expect(single.status == 1 && merged.status == 1)
        let decode = { (o: Fixtures.Output) in try JSONDecoder().decode(CampaignSummary.self, from: Data(o.bytes)) }
        #expect(try decode(single) == decode(merged))
        // A shard of another campaign (another --runs) is refused.
        _ = try Fixtures.harness(Array(common.dropLast(0)) + ["--shard", "0/3", "--jsonl", "\(dir)/other.jsonl", "--runs", "41"])
        let mixed = try Fixtures.harness(["fuzz-merge", "\(dir)/0.jsonl", "\(dir)/other.jsonl"])
        #expect(mixed.status == 2)
    }

    /// Resident memory after 10^5 runs is within a few MB of that after 10^3 (it grew ~6 KB a run).
    @Test func memoryStaysFlat() throws {
        func peak(_ runs: Int) throws -> Int {
            let out = try Fixtures.launch(URL(fileURLWithPath: "/bin/sh"), ["-c",
                "ASAN_OPTIONS=quarantine_size_mb=0 '\(Fixtures.executable.path)' fuzz '\(Self.kernelModelPath)' --runs \(runs) --seed 3 --no-shrink --range 4G-8G >/dev/null & pid=$!; max=0; " +
                "while kill -0 $pid 2>/dev/null; do r=$(awk '/VmHWM/{print $2}' /proc/$pid/status 2>/dev/null); [ -n \"$r\" ] && [ \"$r\" -gt \"$max\" ] && max=$r; sleep 0.05; done; echo $max"])
            return Int(out.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
        }
        let small = try peak(1_000), large = try peak(100_000)
        #expect(small > 0 && large - small < 8 * 1024, "peak RSS \(small) KiB after 10^3 runs, \(large) KiB after 10^5")
    }
}
