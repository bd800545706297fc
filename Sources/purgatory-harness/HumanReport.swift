import ELF
import Foundation
import Run

/// The short report a person reads after `run`.
enum HumanReport {
    /// `--fast-hash` in one line: host and emulated SHA-256 blocks, and that the host's count is derived.
    static func fastHashLine(_ f: FastHashInfo) -> String {
        if let why = f.fellBack { return "fell back to full emulation (\(why)); every instruction emulated" }
        guard f.hostBlocks > 0, let per = f.instructionsPerBlock else {
            return "no block on the host" + (f.notes.first.map { " (\($0))" } ?? "") + "; every instruction emulated"
        }
        return "\(grouped(f.hostBlocks)) SHA-256 blocks on the host, \(grouped(f.emulatedBlocks)) emulated; "
            + "\(grouped(f.derivedInstructions)) instructions derived (\(grouped(per)) per block, as the emulated steps showed), not emulated"
    }

    static func render(_ r: RunReport) -> String {
        var lines = ["purgatory-harness run \(r.file)"]
        func row(_ key: String, _ value: String) { lines.append("  " + key.padding(toLength: 13, withPad: " ", startingAt: 0) + value) }
        row("loader", "\(r.loader), entry rule \(r.entryRule), seed \(hex(r.seed))")
        if let k = r.kernelProfile { row("loaded by", "\(k.name) (\(k.version)), from \(k.source)") }
        row("purgatory", "\(hex(r.loadAddress)) +\(hex(r.purgatorySize)) (buf_align \(hex(r.bufAlign)))"
            + (r.entry.map { ", entry \(hex($0)) (\(r.entrySource))" } ?? ""))
        for segment in r.segments { row(segment.name, "\(hex(segment.start)) +\(hex(segment.length))") }
        if let b = r.bootParams {
            var text = "cmdline at \(hex(b.commandLineAddress)) \"\(b.commandLine)\""
            if let start = b.initrdAddress, let size = b.initrdSize { text += ", initrd \(hex(start)) +\(hex(size))" }
            text += ", \(b.e820Entries) e820 entries" + (b.protocolVersion.map { ", setup header of boot protocol \($0)" } ?? "")
            if !b.setupData.isEmpty { text += ", setup_data " + b.setupData.joined(separator: " → ") }
            row("boot params", text)
        }
        if let m = r.machine {
            row("machine", "\(m.physBits)-bit physical, " + (m.paging == "flat" ? "flat (\(m.identityMap) identity map built, not walked)" : "\(m.paging) identity map, walked"))
            if let note = m.pagingNote { row("", note) }
        }
        if let e = r.entryState {
            row("entry state", "rsp \(hex(e.rsp)) ([rsp] \(hex(e.atRsp))), cr0 \(hex(e.cr0)) cr3 \(hex(e.cr3)) cr4 \(hex(e.cr4)) efer \(hex(e.efer)), gdt \(hex(e.gdt.base))/\(hex(e.gdt.limit)) idt \(hex(e.idt.base))/\(hex(e.idt.limit))")
        }
        if r.hashedSegments != r.segments.map(\.name) { row("digest", "covers " + (r.hashedSegments.isEmpty ? "nothing" : r.hashedSegments.joined(separator: ", "))) }
        if let rewrite = r.imaRewrite { row("ima", rewrite) }
        if let t = r.tamper { row("tamper", "flipped byte \(hex(t.offset)) of \(t.segment) (\(hex(t.address)))") }
        for d in r.diagnostics where !d.hasPrefix("kernel-warning: ") { row("diagnostic", d) }
        if let console = r.console {
            for line in console.replacingOccurrences(of: "\r\n", with: "\n").split(separator: "\n", omittingEmptySubsequences: false) where !line.isEmpty {
                row("console", line.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7f ? "\\x" + String($0.value, radix: 16) : String($0) }.joined())
            }
        }
        let mark = r.isExpected ? "" : "  [expected \(r.expected.rawValue)]"
        row("verdict", "\(r.verdict.rawValue)\(mark): \(r.message)")
        if r.verdict == .loadError {
            for line in r.kernelLog where line != r.message { row("", line) }
        } else {
            for line in r.kernelLog { row("kernel log", line) }
        }
        if r.verdict != .loadError {
            var count = "\(grouped(r.instructions)) exact"
            if let cross = r.crossCheckInstructions {
                count += cross == r.instructions ? " (per-instruction cross-check agrees)" : " (CROSS-CHECK MISMATCH: \(grouped(cross)))"
            }
            count += ", \(grouped(r.bytesHashed)) bytes hashed"
            if let ipb = r.instructionsPerByte { count += String(format: ", %.2f instructions/byte", ipb) }
            row("instructions", count)
            if let f = r.fastHash { row("fast-hash", fastHashLine(f)) }
            if let a = r.accounting { lines += accountingRows(a, total: r.instructions) }
            let t = r.timings
            var time = String(format: "%.2f ms: load %.2f, setup %.2f, emulation %.2f, teardown %.2f, results %.2f",
                              t.total * 1e3, t.load * 1e3, t.setup * 1e3, t.emulation * 1e3, t.teardown * 1e3, t.results * 1e3)
            if let mbps = r.megabytesPerSecond { time += String(format: " (%.1f MB/s hashed)", mbps) }
            row("time", time)
        }
        if let u = r.unicorn { row("unicorn", "\(u.version), store fix \(u.storeFix.rawValue)") }
        return lines.joined(separator: "\n")
    }

    /// Top functions, phases with their rules, and the accounting's notes.
    static func accountingRows(_ a: Accounting, total: UInt64, top: Int = 5) -> [String] {
        var lines: [String] = []
        func percent(_ n: UInt64) -> String { String(format: "%5.1f%%", total == 0 ? 0 : Double(n) * 100 / Double(total)) }
        let width = max(grouped(total).count, 5)
        func count(_ n: UInt64) -> String { String(repeating: " ", count: max(0, width - grouped(n).count)) + grouped(n) }
        let check = a.crossCheckAgrees.map { $0 ? ", the per-instruction cross-check agrees per function" : ", CROSS-CHECK MISMATCH per function" } ?? ""
        let shown = a.functions.prefix(top)
        lines.append("  functions    top \(shown.count) of \(a.functions.count)" + (a.functions.count > top ? " (--json lists all)" : "")
                     + (a.splitBlocks > 0 ? ", \(a.splitBlocks) block(s) split per instruction" : "") + check)
        for f in shown { lines.append("               \(count(f.instructions)) \(percent(f.instructions))  \(f.name)") }
        lines.append("  phases       (from the order of execution: \(grouped(UInt64(a.functionTransitions))) changes of function)")
        for p in a.phases {
            var text = "\(count(p.instructions)) \(percent(p.instructions))  \(p.name.rawValue.padding(toLength: 16, withPad: " ", startingAt: 0)) "
            if p.name == .hashing, let ipb = a.hashingInstructionsPerByte { text += String(format: "%.2f/byte; ", ipb) }
            text += p.rule
            if !p.functions.isEmpty {
                text += ": " + p.functions.prefix(4).map { "\($0.name) \(grouped($0.instructions))" }.joined(separator: ", ")
            }
            lines.append("               " + text)
        }
        for note in a.notes { lines.append("  accounting   " + note) }
        return lines
    }

    static func grouped(_ n: UInt64) -> String {
        var digits = Array(String(n)), out = ""
        while digits.count > 3 { out = "," + String(digits.suffix(3)) + out; digits.removeLast(3) }
        return String(digits) + out
    }
}
