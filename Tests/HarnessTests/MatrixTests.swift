import Foundation
import Fuzz
import Run
import Testing

/// Purgatories/manifest.json: every variant × address class gives the verdict the kernel's
/// rules predict, and every object keeps the relocation profile recorded for it.
@Suite struct MatrixTests {
    @Test func everyVariantMatchesTheManifest() throws {
        let directory = Fixtures.repository.appendingPathComponent("Purgatories").path
        let data = try #require(FileManager.default.contents(atPath: directory + "/manifest.json"))
        let manifest = try JSONDecoder().decode(MatrixManifest.self, from: data)
        let rows = try Matrix.run(manifest, directory: directory, kernels: KernelProfile.named)
        #expect(rows.count == manifest.variants.count * KernelProfile.named.count)
        for row in rows {
            #expect(row.profileMatches, "\(row.name): relocations \(row.relocations)")
            for probe in manifest.classes {
                #expect(row.verdicts[probe.name] == row.expected[probe.name], "\(row.name) under \(row.kernelProfile) in \(probe.name)")
            }
        }
        #expect(rows.first { $0.name == manifest.baseline }?.relativeToBaseline == 1)
        // The manifest's profile overrides are what the entry rules give: only before 8652d44f466a.
        for variant in manifest.variants { #expect(Set((variant.byProfile ?? [:]).keys).isSubset(of: ["linux-5.4", "linux-6.0"])) }
        #expect(rows.filter { $0.verdicts.values.contains(.fault) }.map(\.kernelProfile).allSatisfy { ["linux-5.4", "linux-6.0"].contains($0) })
    }
}
