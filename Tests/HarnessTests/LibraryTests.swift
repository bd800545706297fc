import Foundation
import PurgatoryHarness
import Testing

/// The library product: its API on real purgatories, and docs/library.md's example program,
/// which imports nothing of ours but PurgatoryHarness, built and run.
@Suite struct LibraryTests {
    @Test func theAPILoadsInspectsRunsAndChecks() throws {
        let builtIn = try Purgatory.builtIn()
        var options = RunOptions()
        options.loadAddress = 0x7ff0_0000_0000
        let report = try builtIn.run(options)
        #expect(report.verdict == .verified && report.machine?.paging == "flat")
        let kernelModel = try Purgatory.load(contentsOf: Fixtures.repository.appendingPathComponent("Purgatories/variants/kernel-model.ro").path)
        #expect(try kernelModel.inspect().lowestFailingAddress == 0x7fff_f000)
        let summary = try kernelModel.campaign(runs: 60)
        #expect(summary.failures.first?.boundary == 0x7fff_f000)
        let check = try kernelModel.check(runs: 40)
        #expect(!check.passed)
        let debian = try Purgatory.load(contentsOf: try DebianArtifacts.newestKernel().path)
        #expect(debian.kernelRelease != nil && debian.defaultKernel != KernelProfile.latest)
        #expect(throws: HarnessFailure.self) { try Purgatory.load(contentsOf: "/nonexistent/purgatory.ro") }
        #expect(throws: HarnessFailure.self) { try Purgatory.load(bytes: [1, 2, 3], name: "junk") }
        #expect(harnessVersion.split(separator: ".").count == 3 && harnessVersion.allSatisfy { $0.isNumber || $0 == "." })
    }

    @Test func theExampleBuildsAgainstTheProductAndRuns() throws {
        let source = try String(contentsOfFile: Fixtures.repository.appendingPathComponent("Sources/harness-example/main.swift").path, encoding: .utf8)
        let imports = Set(source.split(separator: "\n").filter { $0.hasPrefix("import ") }.map { String($0.dropFirst(7)) })
        #expect(imports == ["Foundation", "PurgatoryHarness"])
        let example = Fixtures.executable.deletingLastPathComponent().appendingPathComponent("harness-example")
        let good = try Fixtures.launch(example, [])
        #expect(good.status == 0, "\(good.stdout)")
        #expect(good.stdout.contains("at 0x17f7affa000: verified") && good.stdout.contains("tampered: rejected-digest"))
        let bad = try Fixtures.launch(example, [Fixtures.repository.appendingPathComponent("Purgatories/variants/kernel-model.ro").path])
        #expect(bad.status == 1)
        #expect(bad.stdout.contains("failing from 0x7ffff000"))
    }
}
