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
        subcommands: [RunCommand.self, InspectCommand.self, ExtractCommand.self, FuzzCommand.self, FuzzMergeCommand.self, MatrixCommand.self,
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
            FileHandle.standardError.write(Data("purgatory-harness: error: \(error.message)\n".utf8))
            Foundation.exit(ExitStatus.badInput)
        } catch {
            if exitCode(for: error) == .success {
                print(fullMessage(for: error))
                Foundation.exit(0)
            }
            FileHandle.standardError.write(Data("purgatory-harness: error: \(UsageHints.explain(message(for: error)))\n".utf8))
            Foundation.exit(ExitStatus.badInput)
        }
    }
}

/// Bad input found outside argument parsing: a file that cannot be read, an impossible value.
struct InputError: Error {
    var message: String
    init(_ message: String) { self.message = message }
}
