import ELF
import Foundation
import Testing

/// Every file of a directory of hostile inputs, made here, through `run`, `inspect`, `extract`
/// and `fuzz` as subprocesses of the built tool: exit 0, 1 or 2, never a trap or a backtrace,
/// one stderr line on exit 2, and each process done within its timeout (else killed: a failure).
@Suite(.serialized) struct HostileFilesTests {
    static let timeout: TimeInterval = 20

    struct Result { var status: Int32; var stderr: String; var timedOut: Bool; var seconds: Double }

    /// Runs the tool with a deadline; stdout is discarded, stderr kept.
    static func run(_ arguments: [String]) throws -> Result {
        let process = Process()
        process.executableURL = Fixtures.executable
        process.arguments = arguments
        let errPath = FileManager.default.temporaryDirectory.appendingPathComponent("ph-err-\(UUID().uuidString)").path
        try #require(FileManager.default.createFile(atPath: errPath, contents: nil))
        defer { try? FileManager.default.removeItem(atPath: errPath) }
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle(forWritingAtPath: errPath)
        process.standardInput = FileHandle.nullDevice
        let start = Date()
        try process.run()
        var timedOut = false
        while process.isRunning {
            if Date().timeIntervalSince(start) > timeout {
                timedOut = true
                kill(process.processIdentifier, SIGKILL)
                break
            }
            Thread.sleep(forTimeInterval: 0.01)
        }
        process.waitUntilExit()
        let stderr = String(decoding: FileManager.default.contents(atPath: errPath) ?? Data(), as: UTF8.self)
        return Result(status: process.terminationStatus, stderr: stderr, timedOut: timedOut, seconds: Date().timeIntervalSince(start))
    }

    /// The hostile inputs: truncations, bit flips and every header and table field of the
    /// reference purgatory and of the stripped miniature vmlinux set to 0, all ones and a large
    /// value; then special files.
    static func makeCorpus() throws -> (dir: String, files: [String]) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ph-hostile-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var files: [String] = []
        func add(_ name: String, _ bytes: [UInt8]) {
            let path = dir + "/" + name
            #expect(FileManager.default.createFile(atPath: path, contents: Data(bytes)), "\(path)")
            files.append(path)
        }
        let container = [UInt8](FileManager.default.contents(atPath: Fixtures.containersPath + "/vmlinux-like.stripped") ?? Data())
        for (label, original) in [("ref", Fixtures.referenceBytes), ("vmlinux", container)] {
            let elf = try ELFFile(bytes: original, name: label)
            for length in [0, 3, 63, 64, 200, Int(elf.header.shoff), original.count - 1] where length < original.count {
                add("\(label)-trunc-\(length)", Array(original.prefix(length)))
            }
            var rng = UInt64(0x5eed)
            for flip in 0 ..< 6 {
                var bytes = original
                for _ in 0 ..< 4 {
                    rng = rng &* 6364136223846793005 &+ 1442695040888963407
                    let at = Int(rng >> 33) % bytes.count
                    bytes[at] ^= UInt8(1) << UInt8((rng >> 20) % 8)
                }
                add("\(label)-flip-\(flip)", bytes)
            }
            // ELF header fields (offset, width) after e_ident, and every section header field.
            let header: [(Int, Int)] = [(16, 2), (18, 2), (20, 4), (24, 8), (32, 8), (40, 8), (48, 4), (52, 2), (54, 2), (56, 2), (58, 2), (60, 2), (62, 2)]
            let sectionFields: [(Int, Int)] = [(0, 4), (4, 4), (8, 8), (16, 8), (24, 8), (32, 8), (40, 4), (44, 4), (48, 8), (56, 8)]
            var fields = header.map { (name: "h\($0.0)", at: $0.0, width: $0.1) }
            // Per table type, its first section: code, bss, symbols, strings, relocations.
            var sections: [Int] = []
            for type in [ELFConstant.shtProgbits, ELFConstant.shtNobits, ELFConstant.shtSymtab, ELFConstant.shtStrtab, ELFConstant.shtRela] {
                if let s = elf.sections.first(where: { $0.type == type && $0.index > 0 }) { sections.append(s.index) }
            }
            if label != "ref" { sections = Array(sections.prefix(2)) }
            for s in sections {
                for f in sectionFields where !(label == "vmlinux" && f.0 == 0) {
                    fields.append((name: "s\(s)f\(f.0)", at: Int(elf.header.shoff) + 64 * s + f.0, width: f.1))
                }
            }
            for (n, field) in fields.enumerated() {
                let all: [UInt64] = [0, .max, 1 << 62]
                for (v, value) in [(n % 3, all[n % 3])] {
                    var bytes = original
                    for i in 0 ..< field.width { bytes[field.at + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i))) }
                    add("\(label)-\(field.name)-\(v)", bytes)
                }
            }
        }
        // Special files.
        add("empty", [])
        let fifo = dir + "/fifo"
        mkfifo(fifo, 0o600)
        let directory = dir + "/directory"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let sparse = dir + "/sparse-2g"
        try #require(FileManager.default.createFile(atPath: sparse, contents: nil))
        truncate(sparse, 2 << 30)
        files += [fifo, directory, sparse, "/dev/zero", "/proc/self/pagemap"]
        return (dir, files)
    }

    @Test func everyCommandSurvivesEveryHostileFile() throws {
        let (dir, files) = try Self.makeCorpus()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let commands: [(String, [String])] = [
            ("run", ["run", "--seed", "1", "--budget", "300000"]),
            ("inspect", ["inspect"]),
            ("extract", ["extract", "-o", dir + "/out.ro"]),
            ("fuzz", ["fuzz", "--runs", "2", "--seed", "1", "--jobs", "1", "--no-shrink"]),
        ]
        var jobs: [(file: String, arguments: [String])] = []
        for (index, file) in files.enumerated() {
            for (n, (name, arguments)) in commands.enumerated() {
                // Every command on the special files; each mutant through one command, in turn
                // (a process per pair costs 0.2–0.5 s of a 2-core machine).
                let special = !file.hasPrefix(dir + "/ref") && !file.hasPrefix(dir + "/vmlinux")
                if !special && index % commands.count != n { continue }
                _ = name
                var args = arguments
                args.insert(file, at: name == "extract" ? 1 : 1)
                jobs.append((file, args))
            }
        }
        let results = LockedResults()
        let work = jobs
        DispatchQueue.concurrentPerform(iterations: 4) { worker in
            for (i, job) in work.enumerated() where i % 4 == worker {
                let outcome: Result? = try? Self.run(job.arguments)
                results.append(job.arguments.joined(separator: " "), outcome)
            }
        }
        var failures: [String] = []
        for (command, result) in results.all {
            guard let result else { failures.append("\(command): could not launch"); continue }
            let lines = result.stderr.split(separator: "\n")
            if result.timedOut { failures.append("\(command): killed after \(Self.timeout) s") }
            if ![0, 1, 2].contains(result.status) { failures.append("\(command): exit \(result.status): \(result.stderr.prefix(300))") }
            if result.stderr.contains("Fatal error") || result.stderr.contains("Backtrace") || result.stderr.contains("Stack dump") {
                failures.append("\(command): trapped: \(result.stderr.prefix(300))")
            }
            if result.status == 2 && lines.count > 1 { failures.append("\(command): \(lines.count) stderr lines: \(result.stderr.prefix(300))") }
        }
        let report = "\(failures.count) of \(results.all.count) runs broke the promise:\n" + failures.prefix(20).joined(separator: "\n")
        #expect(failures.isEmpty, Comment(rawValue: report))
        #expect(results.all.count > 100)
    }

    // MARK: Output files

    @Test func traceWritesIntoASymlinkAndKeepsItsTargetsMode() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ph-out-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try #require(FileManager.default.createFile(atPath: dir + "/target", contents: Data("old".utf8), attributes: [.posixPermissions: 0o600]))
        try FileManager.default.createSymbolicLink(atPath: dir + "/link", withDestinationPath: "target")
        let out = try Fixtures.harness(["run", "--seed", "1", "--trace", dir + "/link"])
        #expect(out.status == 0)
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: dir + "/link") == "target")
        let attributes = try FileManager.default.attributesOfItem(atPath: dir + "/target")
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        #expect(((attributes[.size] as? NSNumber)?.intValue ?? 0) > 1000)
        // A character device stays one.
        let null = try Fixtures.harness(["extract", Fixtures.containersPath + "/vmlinux-like", "-o", "/dev/null"])
        #expect(null.status == 0)
        var info = stat()
        #expect(stat("/dev/null", &info) == 0 && info.st_mode & S_IFMT == S_IFCHR)
        let directory = try Fixtures.harness(["extract", Fixtures.containersPath + "/vmlinux-like", "-o", dir])
        #expect(directory.status == 2 && directory.stderr.contains("Is a directory"))
    }

    @Test func aFailedTraceWriteStillReportsTheVerdictFirst() throws {
        let out = try Fixtures.harness(["run", "--seed", "1", "--trace", "/dev/full"])
        #expect(out.status == 2)
        #expect(out.stdout.contains("verdict      verified"))
        #expect(out.stderr == "purgatory-harness: error: /dev/full: cannot write the trace: No space left on device\n")
    }

    @Test func readsNeverTrustStatAndNameTheReason() throws {
        let missing = try Fixtures.harness(["run", "/nonexistent/purgatory.ro"])
        #expect(missing.stderr == "purgatory-harness: error: /nonexistent/purgatory.ro: cannot read purgatory: No such file or directory\n")
        let pagemap = try Fixtures.harness(["run", "/proc/self/pagemap"])
        #expect(pagemap.status == 2 && pagemap.stderr.contains("found a file starting 00 00"))
        let zero = try Fixtures.harness(["inspect", "/dev/zero"])
        #expect(zero.status == 2 && zero.stderr.contains("character device"))
    }
}


final class LockedResults: @unchecked Sendable {
    private let lock = NSLock()
    private(set) var all: [(String, HostileFilesTests.Result?)] = []
    func append(_ command: String, _ result: HostileFilesTests.Result?) {
        lock.lock(); all.append((command, result)); lock.unlock()
    }
}
