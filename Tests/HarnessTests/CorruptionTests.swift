import ELF
import Inspect
import Loader
import Machine
import Run
import Testing

/// Randomly corrupted real objects: every one must end in a verdict or a typed error, never a
/// trap or a hang (a trap would take the whole test process down).
@Suite struct CorruptionTests {
    @Test(arguments: [UInt64(1), 2, 3])
    func corruptedObjectsGiveVerdictsOrErrors(seed: UInt64) throws {
        var rng = SplitMix64(seed: seed)
        let original = Fixtures.referenceBytes
        var verdicts: [Verdict: Int] = [:], errors = 0
        for _ in 0 ..< 150 {
            var bytes = original
            // 1–4 bytes anywhere, biased to the headers and tables where structure lives.
            for _ in 0 ... rng.next(upperBound: UInt64(4)) {
                let inHeaders = rng.next(upperBound: UInt64(2)) == 0
                let file = try ELFFile(bytes: original, name: "x")
                let at = inHeaders ? Int(file.header.shoff) + Int(rng.next(upperBound: UInt64(original.count) - file.header.shoff))
                                   : Int(rng.next(upperBound: UInt64(original.count)))
                bytes[at] = UInt8(truncatingIfNeeded: rng.next())
            }
            guard let file = try? ELFFile(bytes: bytes, name: "corrupt.ro") else { errors += 1; continue }
            _ = try? Inspector(file: file).inspect()
            var s = Scenario(file: file, seed: rng.next())
            s.budget = 3_000_000
            do { verdicts[try s.run().verdict, default: 0] += 1 } catch { errors += 1 }
        }
        #expect(verdicts.values.reduce(0, +) + errors == 150)
        #expect(errors > 0 && !verdicts.isEmpty)
    }
}
