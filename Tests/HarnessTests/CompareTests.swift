import ELF
import Foundation
import Run
import Testing

/// `compare`: several purgatories on the same segments, side by side.
@Suite struct CompareTests {
    static let large = Fixtures.repository.appendingPathComponent("Purgatories/variants/large.ro").path

    @Test func theSameSegmentsAndAddressForEveryFileAndRowsThatAddUp() throws {
        let out = try Fixtures.harness(["compare", Self.large, Fixtures.referencePath, "--seed", "3", "--json", "--cross-check"])
        #expect(out.status == 0, "\(out.stderr)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(out.stdout.utf8)) as? [String: Any])
        let files = try #require(object["files"] as? [[String: Any]])
        #expect(files.count == 2)
        #expect(files.allSatisfy { $0["verdict"] as? String == "verified" })
        #expect(Set(files.map { ($0["load_address"] as? NSNumber)?.uint64Value ?? 0 }).count == 1)
        let rows = try #require(object["rows"] as? [[String: Any]])
        func counts(_ row: [String: Any]) -> [UInt64] { (row["counts"] as? [NSNumber] ?? []).map(\.uint64Value) }
        let totals = counts(try #require(rows.first { $0["kind"] as? String == "total" }))
        #expect(totals.count == 2)
        for (kind, expectedRows) in [("function", 0), ("phase", 4)] {
            let selected = rows.filter { $0["kind"] as? String == kind }
            if expectedRows > 0 { #expect(selected.count == expectedRows) }
            for file in 0 ..< 2 {
                let sum = selected.reduce(UInt64(0)) { $0 + ((($1["counts"] as? [Any])?[file] as? NSNumber)?.uint64Value ?? 0) }
                #expect(sum == totals[file], "\(kind) \(file)")
            }
        }
        // The first file is the baseline: ratio 1 and difference 0 in its own column.
        for row in rows {
            #expect((row["differences"] as? [NSNumber])?.first?.int64Value == 0)
        }
        let accountings = try #require(object["accountings"] as? [[String: Any]])
        #expect(accountings.allSatisfy { $0["cross_check_agrees"] as? Bool == true })
    }

    @Test func theSameCommandPrintsTheSameBytes() throws {
        let arguments = ["compare", Fixtures.referencePath, Self.large, "--seed", "9"]
        let a = try Fixtures.harness(arguments), b = try Fixtures.harness(arguments)
        #expect(a.status == 0)
        #expect(a.stdout == b.stdout)
        #expect(a.stdout.contains("compress"))
        #expect(a.stdout.contains("hand-off"))
        #expect(a.stdout.contains("instructions/byte"))
    }

    @Test func theChartHasABarPerFileAndRow() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("ph-compare-\(UUID().uuidString).svg").path
        let out = try Fixtures.harness(["compare", Fixtures.referencePath, Self.large, "--svg", path, "--json"])
        #expect(out.status == 0)
        let svg = try String(contentsOfFile: path, encoding: .utf8)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(out.stdout.utf8)) as? [String: Any])
        let rows = try #require(object["rows"] as? [Any])
        #expect(svg.hasPrefix("<svg xmlns=\"http://www.w3.org/2000/svg\""))
        #expect(svg.hasSuffix("</svg>\n"))
        // One background, one legend square per file, one bar per file and row.
        #expect(svg.components(separatedBy: "<rect").count - 1 == 1 + 2 + 2 * rows.count)
        #expect(svg.contains(">compress</text>"))
        #expect(svg.contains("purgatory"))
    }

    /// Functions are matched by name; one missing in a file has no count and no ratio there.
    @Test func functionsAreMatchedByNameAndMissingOnesSaySo() throws {
        var stripped = Fixtures.referenceBytes
        let file = try Fixtures.reference()
        let symtab = try #require(file.section(named: ".symtab"))
        for symbol in try file.symbols(in: symtab) where symbol.type == 2 && symbol.name == "compress" {
            let at = Int(symtab.offset) + symbol.index * 24 + 4
            stripped[at] = stripped[at] & 0xf0 | 4  // a FILE symbol: compress's bytes become "(.text)"
        }
        var reports: [RunReport] = []
        for bytes in [Fixtures.referenceBytes, stripped] {
            var s = Scenario(file: try ELFFile(bytes: bytes, name: "p.ro"), seed: 4)
            s.loadAddress = 0x40_0000_0000
            reports.append(try s.run())
        }
        let c = Comparison(reports: reports)
        let compress = try #require(c.rows.first { $0.name == "compress" })
        let text = try #require(c.rows.first { $0.name == "(.text)" })
        #expect(compress.counts[1] == nil && compress.ratios[1] == nil)
        #expect(text.counts[0] == nil && text.counts[1] == compress.counts[0])
        #expect(c.rows.first { $0.kind == .total }?.ratios == [1.0, 1.0])
        #expect(c.rows.filter { $0.kind == .function }.first?.name == "compress")
    }

    @Test(arguments: [["compare"], ["compare", "/nonexistent.ro"], ["compare", "--load-address", "0x10000000000000", Fixtures.referencePath]])
    func badInputExitsTwo(arguments: [String]) throws {
        let out = try Fixtures.harness(arguments)
        #expect(out.status == 2, "\(arguments): \(out.stderr)")
    }
}
