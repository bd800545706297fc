import Foundation
import Testing

/// The `purgatory-harness` executable: exit codes, JSON shape, one-line errors.
@Suite struct CommandLineTests {
    @Test func runWithNoFileVerifiesTheBuiltInPurgatory() throws {
        let out = try Fixtures.harness(["run", "--seed", "0x5eed"])
        #expect(out.status == 0, "\(out.stdout)\(out.stderr)")
        #expect(out.stdout.contains("verdict      verified"))
        #expect(out.stdout.contains("seed 0x5eed"))
    }

    @Test func jsonCarriesTheDocumentedKeys() throws {
        let out = try Fixtures.harness(["run", "--seed", "12", "--json", "--cross-check"])
        #expect(out.status == 0)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(out.stdout.utf8)) as? [String: Any])
        #expect(object["verdict"] as? String == "verified")
        for key in ["load_address", "entry", "instructions", "bytes_hashed", "seed", "cross_check_instructions"] {
            #expect(object[key] is NSNumber, "\(key)")
        }
        #expect((object["load_address"] as? NSNumber)?.uint64Value ?? 0 >= 1 << 32)
        #expect(object["message"] is String)
        let segments = try #require(object["segments"] as? [[String: Any]])
        #expect(segments.count == 3)
        #expect(segments.allSatisfy { $0["name"] is String && $0["start"] is NSNumber && $0["length"] is NSNumber })
        #expect(object["instructions"] as? NSNumber == object["cross_check_instructions"] as? NSNumber)
    }

    @Test func tamperIsTheExpectedVerdict() throws {
        let out = try Fixtures.harness(["run", "--seed", "3", "--tamper"])
        #expect(out.status == 0)
        #expect(out.stdout.contains("rejected-digest"))
    }

    @Test func anUnexpectedVerdictExitsOne() throws {
        let out = try Fixtures.harness(["run", "--seed", "3", "--expect", "fault"])
        #expect(out.status == 1)
        #expect(out.stdout.contains("[expected fault]"))
        let timeout = try Fixtures.harness(["run", "--seed", "3", "--budget", "1000"])
        #expect(timeout.status == 1)
        #expect(timeout.stdout.contains("timeout"))
    }

    @Test(arguments: [64, 1000, 5000])
    func truncatedFilesExitTwoWithOneLine(length: Int) throws {
        let path = try Fixtures.temporaryFile(Array(Fixtures.referenceBytes.prefix(length)), name: "cut-\(length).ro")
        let out = try Fixtures.harness(["run", path])
        #expect(out.status == 2)
        #expect(out.stdout.isEmpty)
        let lines = out.stderr.split(separator: "\n")
        #expect(lines.count == 1)
        #expect(out.stderr.contains(path))
    }

    @Test func corruptedFilesExitTwo() throws {
        var bytes = Fixtures.referenceBytes
        bytes[0] = 0x7e
        let path = try Fixtures.temporaryFile(bytes, name: "nomagic.ro")
        let out = try Fixtures.harness(["run", path])
        #expect(out.status == 2)
        #expect(out.stderr == "purgatory-harness: error: \(path): file type: expected a purgatory ELF object, a vmlinux, a bzImage (\"HdrS\" at 0x202) or a kexec-tools binary; found 8744 bytes starting 7e 45 4c 46 02 01 01 00\n")
    }

    @Test(arguments: [
        ["run", "/nonexistent/purgatory.ro"],
        ["run", "--seed", "zz"],
        ["run", "--load-address", "0x10000000000000"],
        ["run", "--load-address", "0x1000"],
        ["run", "--frobnicate"],
    ])
    func badInputExitsTwo(arguments: [String]) throws {
        let out = try Fixtures.harness(arguments)
        #expect(out.status == 2, "\(arguments): \(out.stderr)")
        #expect(out.stderr.split(separator: "\n").count >= 1)
        #expect(out.stderr.hasPrefix("purgatory-harness: error: ") || out.stderr.contains("Error:"))
    }
}
