import ArgumentParser
import ELF
import Foundation
import Run

/// `run --trace FILE`: the executed blocks in order, one line each (address, function+offset,
/// instructions), `#` comment lines around them. The instruction column adds up to the run's
/// exact count unless the trace was cut at its limit, which the last line then says.
struct TraceFile {
    /// About 30 bytes a line: 2 M blocks is ~60 MB of text, ~66 M instructions (~1 MB hashed by our SHA-256).
    static let defaultBlocks = 2_000_000
    /// 50 M blocks is ~2.3 GB of text: beyond that a trace is no longer a debugging aid.
    static let maximumBlocks = 50_000_000

    static func validate(limit: Int) throws {
        guard limit >= 1, limit <= maximumBlocks else {
            throw ValidationError("--trace-limit must be 1 to \(maximumBlocks) blocks (a longer trace would be gigabytes)")
        }
    }

    let path: String
    private let file: OutputFile

    /// Opens (truncates, in place) the file before the run, so a bad path fails before any work.
    init(path: String) throws {
        self.path = path
        self.file = try OutputFile(path: path, what: "trace")
    }

    /// Writes the report's trace; returns one line saying what was written.
    func write(_ report: RunReport) throws -> String {
        guard let trace = report.trace else {
            try file.write(Array("# no blocks ran (\(report.verdict.rawValue): \(report.message))\n".utf8))
            try file.close()
            return "no blocks ran; \(path) holds only a comment"
        }
        var buffer = [UInt8]()
        buffer.reserveCapacity(1 << 20)
        func flush() throws {
            try file.write(buffer)
            buffer.removeAll(keepingCapacity: true)
        }
        buffer += Array("""
            # purgatory-harness trace of \(report.file), seed \(hex(report.seed)), load address \(hex(report.loadAddress))
            # one executed block a line: address, function+offset, instructions in the block (as run)

            """.utf8)
        var sum: UInt64 = 0
        for block in trace.blocks {
            buffer += Array(trace.line(block).utf8)
            buffer.append(0x0a)
            sum += UInt64(block.instructions)
            if buffer.count >= 1 << 20 { try flush() }
        }
        let blocks = HumanReport.grouped(UInt64(trace.blocks.count))
        let summary = trace.isComplete
            ? "\(blocks) blocks, \(HumanReport.grouped(sum)) instructions (the exact count), written to \(path)"
            : "TRUNCATED at --trace-limit: the first \(blocks) blocks (\(HumanReport.grouped(sum)) instructions) of \(HumanReport.grouped(UInt64(trace.blocks.count) + trace.dropped)), written to \(path)"
        buffer += Array("# \(summary); verdict \(report.verdict.rawValue)\n".utf8)
        try flush()
        try file.close()
        return summary
    }
}
