import ArgumentParser
import Foundation
import Fuzz
import Run

struct MatrixCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "matrix",
        abstract: "Run every purgatory of a manifest in each address class and compare with the verdicts the kernel's rules predict.",
        discussion: "Exit status 1 if a verdict or a relocation profile differs from the manifest, 2 for bad input.")

    @Argument(help: "Directory holding manifest.json and the objects it lists.")
    var directory = "Purgatories"

    @Option(parsing: .unconditional, help: "Seed for the segments (the same for every variant, so counts compare).")
    var seed = Seed(1)

    @OptionGroup var machine: MachineArguments

    @Option(help: ArgumentHelp("Run under this kernel profile, or `all` of `--kernel-profile list` (default: linux-latest).", valueName: "name"))
    var kernelProfile = "linux-latest"

    @Flag(help: "Print the rows as JSON.")
    var json = false

    func validate() throws {
        guard kernelProfile == "all" || KernelProfile.resolve(kernelProfile) != nil else {
            throw ValidationError("--kernel-profile \(kernelProfile): not `all`, a profile of `run --kernel-profile list` or a kernel version")
        }
    }

    var kernels: [KernelProfile] {
        kernelProfile == "all" ? KernelProfile.named : KernelProfile.resolve(kernelProfile).map { [$0] } ?? [.latest]
    }

    func run() throws {
        let path = directory + "/manifest.json"
        let manifest: MatrixManifest
        do { manifest = try JSONDecoder().decode(MatrixManifest.self, from: Data(try Inputs.read(path, what: "manifest"))) } catch let e as InputError {
            throw e
        } catch { throw InputError("\(path): not a purgatory manifest (\(error))") }
        let rows: [MatrixRow]
        do { rows = try Matrix.run(manifest, directory: directory, seed: seed.value, machine: machine.options, kernels: kernels) } catch { throw InputError("\(error)") }
        if json {
            try printJSON(rows)
        } else {
            let classes = manifest.classes.map(\.name)
            var lines = ["variant".padding(toLength: 29, withPad: " ", startingAt: 0) + "kernel".padding(toLength: 14, withPad: " ", startingAt: 0) + "loader".padding(toLength: 13, withPad: " ", startingAt: 0)
                         + classes.map { $0.padding(toLength: 19, withPad: " ", startingAt: 0) }.joined() + "instructions   vs \(manifest.baseline)"]
            for row in rows {
                var line = row.name.padding(toLength: 29, withPad: " ", startingAt: 0) + row.kernelProfile.padding(toLength: 14, withPad: " ", startingAt: 0)
                    + row.loader.padding(toLength: 13, withPad: " ", startingAt: 0)
                for c in classes {
                    let v = row.verdicts[c]?.rawValue ?? "?"
                    line += (row.verdicts[c] == row.expected[c] ? v : "\(v)≠\(row.expected[c]?.rawValue ?? "?")").padding(toLength: 19, withPad: " ", startingAt: 0)
                }
                line += (row.instructions.map { HumanReport.grouped($0) } ?? "-").padding(toLength: 15, withPad: " ", startingAt: 0)
                line += row.relativeToBaseline.map { String(format: "%.3f", $0) } ?? "-"
                if !row.profileMatches { line += "  relocation profile differs: \(row.relocations)" }
                lines.append(line)
            }
            print(lines.joined(separator: "\n"))
        }
        throw ExitCode(rows.allSatisfy(\.matches) ? ExitStatus.expected : ExitStatus.unexpected)
    }
}
