import Foundation
import Testing

/// `check`: pass and fail as the kernel's rules say, on our builds, Debian's kernel and a kernel
/// tree's objects; JUnit that an independent reader (python's junitparser) parses back case by case.
@Suite struct CheckTests {
    /// Every test case junitparser finds: (suite, case, result) with result pass, failure or skipped.
    static func parsedByJunitparser(_ path: String) throws -> [[String]] {
        let script = """
            import json, sys
            from junitparser import JUnitXml, Failure, Skipped
            rows = []
            for suite in JUnitXml.fromfile(sys.argv[1]):
                for case in suite:
                    kind = "pass"
                    message = ""
                    for r in case.result:
                        if isinstance(r, Failure): kind = "failure"; message = (r.message or "") + "|" + (r.text or "")
                        elif isinstance(r, Skipped): kind = "skipped"; message = r.message or ""
                    rows.append([suite.name, case.name, case.classname, kind, message])
            print(json.dumps(rows))
            """
        let out = try Fixtures.launch(URL(fileURLWithPath: "/usr/bin/env"), ["python3", "-c", script, path])
        try #require(out.status == 0, "junitparser: \(out.stderr) (scripts/install-deps installs it from PyPI)")
        return try #require(try JSONSerialization.jsonObject(with: Data(out.stdout.utf8)) as? [[String]])
    }

    static func json(_ text: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    }

    @Test func theKernelModelBuildFailsWhereTheKernelRefusesIt() throws {
        let path = Fixtures.repository.appendingPathComponent("Purgatories/variants/kernel-model.ro").path
        let junit = FileManager.default.temporaryDirectory.appendingPathComponent("ph-check-\(UUID().uuidString).xml").path
        let out = try Fixtures.harness(["check", path, "--junit", junit, "--jobs", "2"])
        #expect(out.status == 1)
        #expect(out.stdout.contains("  FAIL  load range         fails from load address 0x7ffff000"))
        #expect(out.stdout.contains("  PASS  below 2 GiB"))
        #expect(out.stdout.contains("  FAIL  2-4 GiB"))
        #expect(out.stdout.contains("reproduce: purgatory-harness run \(path) --load-address 0x7ffff000"))
        let rows = try Self.parsedByJunitparser(junit)
        let json = try Self.json(try Fixtures.harness(["check", path, "--json", "--jobs", "2"]).stdout)
        let cases = try #require((json["inputs"] as? [[String: Any]])?.first?["cases"] as? [[String: Any]])
        #expect(rows.count == cases.count)
        for (row, c) in zip(rows, cases) {
            #expect(row[0] == path && row[1] == c["name"] as? String && row[2] == "purgatory-harness.\(c["group"] as? String ?? "")")
            let expected = ["pass": "pass", "fail": "failure", "skip": "skipped"][c["status"] as? String ?? ""]
            #expect(row[3] == expected, "\(row)")
            if row[3] == "failure" { #expect(row[4].contains(c["message"] as? String ?? "?"), "\(row)") }
        }
        #expect(rows.filter { $0[3] == "failure" }.map { $0[1] } == ["load range", "2-4 GiB", "4 GiB-1 TiB", "1-128 TiB", "128 TiB and above"])
        #expect(rows.filter { $0[1] == "2-4 GiB" }.first?[4].contains("reproduce: purgatory-harness run") == true)
    }

    /// Debian's 6.12 kernel (its own generation from its version string) and a kernel tree's
    /// kexec-purgatory.o and purgatory.ro: every check passes.
    @Test func debianKernelAndKernelTreeObjectsPass() throws {
        let kernel = try DebianArtifacts.kernels().first { $0.file.contains("6.12") } ?? DebianArtifacts.newestKernel()
        let tree = try #require(try LinuxArtifacts.variants().first { $0.built && $0.compiler == "gcc" && $0.model == "small" })
        let inputs = [kernel.path, try #require(tree.kexecPurgatoryPath), try #require(tree.path)]
        let junit = FileManager.default.temporaryDirectory.appendingPathComponent("ph-check-\(UUID().uuidString).xml").path
        let out = try Fixtures.harness(["check"] + inputs + ["--junit", junit, "--runs", "100", "--jobs", "2"])
        #expect(out.status == 0, "\(out.stdout)")
        #expect(out.stdout.contains("kernel linux-6.12.") || !kernel.file.contains("6.12"))
        #expect(out.stdout.contains("found        kexec-purgatory.o: symbols kexec_purgatory"))
        let rows = try Self.parsedByJunitparser(junit)
        #expect(Set(rows.map { $0[0] }) == Set(inputs))
        #expect(rows.allSatisfy { $0[3] == "pass" }, "\(rows.filter { $0[3] != "pass" })")
        #expect(rows.filter { $0[2] == "purgatory-harness.placement" }.count == 15)
    }

    @Test func theLtextBuildSkipsTheGenerationsThatDiffer() throws {
        let path = Fixtures.repository.appendingPathComponent("Purgatories/variants/ltext.ro").path
        let out = try Fixtures.harness(["check", path, "--runs", "50", "--jobs", "2"])
        #expect(out.status == 0)
        #expect(out.stdout.contains("  SKIP  linux-5.4          fault"))
        #expect(out.stdout.contains("  SKIP  linux-6.4          verified with the kernel's WARN"))
        let all = try Fixtures.harness(["check", path, "--runs", "50", "--jobs", "2", "--kernel-profile", "all"])
        #expect(all.status == 1)
        #expect(all.stdout.contains("  FAIL  linux-5.4"))
    }
}
