import Foundation
import Run

/// The line a long command keeps rewriting on stderr: only on a terminal, only after the first
/// second, never with --quiet; cleared when the command ends.
final class ProgressLine: @unchecked Sendable {
    private let started = Date()
    private let lock = NSLock()
    private var shown = false
    private var last = Date.distantPast

    /// A progress line if stderr is a terminal and --quiet was not given.
    static func forTerminal(quiet: Bool) -> ProgressLine? {
        quiet || isatty(STDERR_FILENO) != 1 ? nil : ProgressLine()
    }

    /// The purgatories we know hash at 54–68 instructions a byte: the share of the segments hashed
    /// so far is estimated at 60, and said to be an estimate.
    static let instructionsPerByte = 60.0

    func emulation(instructions: UInt64, totalBytes: UInt64) {
        let elapsed = Date().timeIntervalSince(started)
        let bytes = min(Double(instructions) / Self.instructionsPerByte, Double(totalBytes))
        let rate = bytes / max(elapsed, 1e-9)
        let eta = (Double(totalBytes) - bytes) / max(rate, 1e-9)
        show(String(format: "running: %@ instructions, ≈%.1f of %.1f MB hashed (at ≈60 instructions/byte), %.1f MB/s, ETA %.0f s",
                    HumanReport.grouped(instructions), bytes / 1e6, Double(totalBytes) / 1e6, rate / 1e6, eta))
    }

    func campaign(done: Int, total: Int, unexpected: Int) {
        let elapsed = Date().timeIntervalSince(started)
        let rate = Double(done) / max(elapsed, 1e-9)
        show(String(format: "%d/%d runs, %.0f runs/s, ETA %.0f s, %d unexpected", done, total, rate, Double(total - done) / max(rate, 1e-9), unexpected))
    }

    private func show(_ text: String) {
        lock.lock()
        defer { lock.unlock() }
        let now = Date()
        guard now.timeIntervalSince(started) > 1, now.timeIntervalSince(last) > 0.25 else { return }
        last = now
        shown = true
        FileHandle.standardError.write(Data(("\r\u{1b}[K" + text).utf8))
    }

    func finish() {
        lock.lock()
        defer { lock.unlock() }
        if shown { FileHandle.standardError.write(Data("\r\u{1b}[K".utf8)) }
    }
}
