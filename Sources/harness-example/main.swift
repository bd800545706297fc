// docs/library.md's example: a tool of your own on top of the PurgatoryHarness library.
// Usage: harness-example [FILE]  — checks the purgatory in FILE (or the built-in one) at the
// 2019 machine's address, tampered and untampered, and prints a line each.
import Foundation
import PurgatoryHarness

let path = CommandLine.arguments.dropFirst().first
do {
    let purgatory = try path.map { try Purgatory.load(contentsOf: $0) } ?? Purgatory.builtIn()
    print("\(purgatory.name): loaded by \(purgatory.defaultKernel.name)")
    for line in purgatory.provenance { print("  found: \(line)") }

    var options = RunOptions()
    options.seed = 0x2019
    options.loadAddress = 0x17f_7aff_a000
    let clean = try purgatory.run(options)
    print("  at 0x17f7affa000: \(clean.verdict.rawValue), \(clean.instructions) instructions (\(clean.machine?.paging ?? "never ran"))")

    options.tamper = true
    let tampered = try purgatory.run(options)
    print("  tampered: \(tampered.verdict.rawValue)")

    let summary = try purgatory.campaign(runs: 100)
    print("  campaign: \(summary.runs) runs, \(summary.unexpected) unexpected"
          + (summary.failures.first?.boundary.map { String(format: ", failing from 0x%llx", $0) } ?? ""))
    exit(clean.verdict == .verified && tampered.verdict == .rejectedDigest && summary.unexpected == 0 ? 0 : 1)
} catch {
    print("harness-example: \(error)")
    exit(2)
}
