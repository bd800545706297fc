import Foundation
import Testing

/// docs/scale-out.md's contract, run for real: a campaign split with `fuzz --shard i/n` across
/// processes started by GNU parallel (Debian's `parallel`, as the recipe runs it over ssh hosts,
/// here on this machine) and summed with `fuzz-merge` gives the same summary, byte for byte, as
/// the campaign run in one process.
@Suite struct ScaleOutTests {
    static let parallel = "/usr/bin/parallel"
    static let kernelModelPath = Fixtures.repository.appendingPathComponent("Purgatories/variants/kernel-model.ro").path

    /// Two files (the -mcmodel=kernel build fails above 2 GiB, the reference verifies everywhere),
    /// the default log-uniform addresses up to 2^52 (flat runs above 1 TiB included), no
    /// bisection: fuzz-merge has no purgatory to bisect with (docs/scale-out.md).
    static let campaign = ["fuzz", kernelModelPath, Fixtures.referencePath, "--runs", "300", "--seed", "0x5ca1e", "--no-shrink"]

    @Test func gnuParallelShardsMergeToTheSingleProcessSummary() throws {
        guard FileManager.default.isExecutableFile(atPath: Self.parallel) else {
            Issue.record("\(Self.parallel) not found: GNU parallel is Debian's `parallel` package (scripts/install-deps installs it)")
            return
        }
        let single = try Fixtures.harness(Self.campaign + ["--jobs", "2", "--json"])
        #expect(single.status == 1, "\(single.stderr)")  // the kernel model's load errors are unexpected verdicts
        let summary = try #require(try JSONSerialization.jsonObject(with: Data(single.bytes)) as? [String: Any])
        #expect(summary["runs"] as? Int == 600)
        #expect((summary["failures"] as? [Any])?.isEmpty == false)

        // The recipe, in a directory of its own, the tool found on PATH as an installed one would be.
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("ph-scale-out-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let words = Self.campaign.map { "'\($0)'" }.joined(separator: " ")
        let recipe = """
            cd '\(directory.path)' &&
            parallel --will-cite -j2 "purgatory-harness \(words) --jobs 1 --shard {}/4 --jsonl shard-{}.jsonl; [ \\$? -le 1 ]" ::: 0 1 2 3
            """
        let path = Fixtures.executable.deletingLastPathComponent().path + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin")
        let shards = try Fixtures.launch(URL(fileURLWithPath: "/bin/sh"), ["-c", recipe], environment: ["PATH": path])
        #expect(shards.status == 0, "parallel: \(shards.stderr)")
        let files = (0 ..< 4).map { directory.appendingPathComponent("shard-\($0).jsonl").path }
        for file in files { #expect(FileManager.default.fileExists(atPath: file), "\(file) not written") }

        let merged = try Fixtures.harness(["fuzz-merge", "--json"] + files)
        #expect(merged.status == single.status, "\(merged.stderr)")
        #expect(merged.bytes == single.bytes, "fuzz-merge --json:\n\(merged.stdout)\nfuzz --json:\n\(single.stdout)")

        // Each shard ran its own quarter, and a shard repeated (a retried job appends to its
        // file again) changes nothing.
        let again = try Fixtures.harness(Self.campaign + ["--jobs", "1", "--shard", "2/4", "--jsonl", files[2]])
        #expect(again.status == 1)
        let remerged = try Fixtures.harness(["fuzz-merge", "--json"] + files)
        #expect(remerged.bytes == single.bytes)
        // Three shards of four are not the campaign.
        let partial = try Fixtures.harness(["fuzz-merge", "--json"] + files.dropLast())
        #expect(partial.bytes != single.bytes)
    }
}
