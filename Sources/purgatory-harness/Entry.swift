import ArgumentParser
import Foundation
import HarnessVersion

/// Exit codes: 0 the expected verdict, 1 another verdict, 2 bad input or usage.
enum ExitStatus {
    static let expected: Int32 = 0
    static let unexpected: Int32 = 1
    static let badInput: Int32 = 2
}

@main
struct PurgatoryHarness: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "purgatory-harness",
        abstract: "Load an x86-64 kexec purgatory as the kernel would and run it in an emulated long-mode machine.",
        version: PurgatoryHarnessVersion.string,
        subcommands: [RunCommand.self, CheckCommand.self, InspectCommand.self, ExtractCommand.self, FuzzCommand.self, FuzzMergeCommand.self, MatrixCommand.self,
                      BenchCommand.self, CompareCommand.self],
        defaultSubcommand: RunCommand.self)

    /// ArgumentParser exits 64 on usage errors; this tool promises 2.
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch let exit as ExitCode {
            Foundation.exit(exit.rawValue)
        } catch let error as InputError {
            refuse(error.message)
        } catch {
            if exitCode(for: error) == .success {
                print(fullMessage(for: error))
                Foundation.exit(0)
            }
            refuse(UsageHints.explain(message(for: error)))
        }
    }

    /// Bad input: one line on stderr, exit 2 — and under `--json` the same refusal as an object on
    /// stdout (`{"error": {"file", "what", "reason", "exit_code"}}`), so a JSON reader never gets nothing.
    static func refuse(_ message: String) -> Never {
        if CommandLine.arguments.dropFirst().contains("--json"),
           let object = try? JSONOutput.error(Refusal(message: message), exitCode: ExitStatus.badInput) {
            print(String(decoding: object, as: UTF8.self))
        }
        FileHandle.standardError.write(Data("purgatory-harness: error: \(message)\n".utf8))
        Foundation.exit(ExitStatus.badInput)
    }
}

/// Bad input found outside argument parsing: a file that cannot be read, an impossible value.
struct InputError: Error {
    var message: String
    init(_ message: String) { self.message = message }
}
