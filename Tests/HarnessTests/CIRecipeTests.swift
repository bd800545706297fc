import Foundation
import Testing

/// docs/ci.md's recipes, run for real: every `sh` block in a kernel build tree made of Linux 6.12's
/// own purgatory (scripts/build-linux-purgatories) and Debian's 6.12 bzImage, its documented
/// output checked line by line; and every `purgatory-harness` command of the CI files.
@Suite struct CIRecipeTests {
    struct Block { var id: String?; var language: String; var text: String; var output: String? }

    static func blocks() throws -> [Block] {
        let text = try String(contentsOfFile: Fixtures.repository.appendingPathComponent("docs/ci.md").path, encoding: .utf8)
        var blocks: [Block] = []
        var current: Block?
        var lines: [String] = []
        var awaitingOutput = false
        for line in text.components(separatedBy: "\n") {
            if line.hasPrefix("```") {
                if var block = current {
                    block.text = lines.joined(separator: "\n")
                    if block.language == "" && awaitingOutput, let last = blocks.indices.last {
                        blocks[last].output = block.text
                        awaitingOutput = false
                    } else {
                        blocks.append(block)
                        awaitingOutput = block.language == "sh"
                    }
                    current = nil
                } else {
                    let header = line.dropFirst(3)
                    let language = String(header.prefix { $0 != " " })
                    let id = header.range(of: "{#").map { String(header[$0.upperBound...].prefix { $0 != "}" }) }
                    current = Block(id: id, language: language, text: "", output: nil)
                    lines = []
                }
            } else if current != nil {
                lines.append(line)
            }
        }
        return blocks
    }

    /// A kernel build tree as `make O=…` leaves it, from the project's builds.
    static func buildTree() throws -> (tree: String, purgatories: String) {
        let variant = try #require(try LinuxArtifacts.variants().first { $0.built && $0.kernelVersion.hasPrefix("6.12.") && $0.compiler == "gcc" && $0.model == "small" })
        let kernel = try #require(try DebianArtifacts.kernels().first { $0.file.contains("6.12") })
        let tree = FileManager.default.temporaryDirectory.appendingPathComponent("ph-kbuild-\(UUID().uuidString)").path
        let purgatory = tree + "/arch/x86/purgatory", boot = tree + "/arch/x86/boot"
        try FileManager.default.createDirectory(atPath: purgatory, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: boot, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: try #require(variant.path), toPath: purgatory + "/purgatory.ro")
        try FileManager.default.copyItem(atPath: try #require(variant.kexecPurgatoryPath), toPath: purgatory + "/kexec-purgatory.o")
        try FileManager.default.createSymbolicLink(atPath: boot + "/bzImage", withDestinationPath: kernel.path)
        return (tree, URL(fileURLWithPath: try #require(variant.path)).deletingLastPathComponent().deletingLastPathComponent().path)
    }

    static func shell(_ script: String, tree: String, purgatories: String) throws -> Fixtures.Output {
        var environment = ProcessInfo.processInfo.environment
        environment["KBUILD_OUTPUT"] = tree
        environment["PURGATORIES"] = purgatories
        environment["PATH"] = Fixtures.executable.deletingLastPathComponent().path + ":" + (environment["PATH"] ?? "/usr/bin:/bin")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = ["-c", "cd \"$0\" && " + script, tree]
        process.environment = environment
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile(), stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Fixtures.Output(status: process.terminationStatus, bytes: [UInt8](stdout), stderr: String(decoding: stderr, as: UTF8.self))
    }

    @Test func everyShellStepRunsAndPrintsWhatTheDocsShow() throws {
        let (tree, purgatories) = try Self.buildTree()
        defer { try? FileManager.default.removeItem(atPath: tree) }
        let steps = try Self.blocks().filter { $0.language == "sh" }
        #expect(steps.map(\.id) == ["after-make", "compiler-matrix"])
        for step in steps {
            let out = try Self.shell(step.text, tree: tree, purgatories: purgatories)
            let documented = try #require(step.output, "\(step.id ?? "?"): no output block after it")
            // Every documented line not abridged with … appears, word for word (paths shortened to …/).
            for line in documented.components(separatedBy: "\n") where !line.isEmpty && !line.contains("…") {
                #expect(out.stdout.contains(line), "\(step.id ?? "?"): missing \(line)\n\(out.stdout)")
            }
            if step.id == "after-make" {
                #expect(out.status == 0, "\(out.stdout)\(out.stderr)")
                #expect(FileManager.default.fileExists(atPath: tree + "/purgatory-junit.xml"))
            }
        }
    }

    /// The GitHub Actions and GitLab files' purgatory-harness commands, run in the same tree.
    @Test func theCIFilesCommandsRun() throws {
        let (tree, purgatories) = try Self.buildTree()
        defer { try? FileManager.default.removeItem(atPath: tree) }
        var commands: [String] = []
        for block in try Self.blocks() where block.language == "yaml" {
            // A command may continue over lines ending in a backslash.
            let joined = block.text.replacingOccurrences(of: "\\\n", with: " ")
            for line in joined.components(separatedBy: "\n") {
                guard let range = line.range(of: "purgatory-harness check") else { continue }
                commands.append(String(line[range.lowerBound...]))
            }
        }
        #expect(commands.count == 2)
        for command in commands {
            let out = try Self.shell(command, tree: tree, purgatories: purgatories)
            #expect(out.status == 0, "\(command)\n\(out.stdout)\(out.stderr)")
            #expect(out.stdout.contains("in 2 input(s): PASS"), "\(command)\n\(out.stdout)")
        }
    }
}
