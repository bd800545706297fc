import ArgumentParser

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bench", abstract: "Measure throughput and per-run costs side by side.")
    func run() throws { throw InputError("bench: not yet") }
}
