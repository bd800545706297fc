import ELF
import Foundation
import Run

/// `fuzz --svg` and `check --svg`: a campaign as an address map. log2(load address) runs across,
/// from 2^20 to the machine's limit; one row per input (and kernel profile); each run a short
/// vertical mark coloured by its verdict, jittered down the row by its index so dense regions
/// stay readable; every bisected boundary a dashed line labelled with its address; the address
/// classes (2 GiB, 4 GiB, 1 TiB, 128 TiB) as grid lines.
enum AddressMapChart {
    struct Row {
        var label: String
        var marks: [(address: UInt64, verdict: Verdict)]
        var boundaries: [UInt64]
    }

    static let colors: [Verdict: String] = [
        .verified: "#59a14f", .rejectedDigest: "#76b7b2", .loadError: "#e15759", .fault: "#b07aa1",
        .kexecException: "#ff9da7", .timeout: "#edc948", .badHandoff: "#f28e2b", .harnessError: "#9c9c9c",
    ]

    static func render(title: String, rows: [Row], limit: UInt64) -> String {
        let left = 250, width = 760, rowHeight = 46, top = 86
        let lowBits = 20.0, highBits = log2(Double(max(limit, 1 << 21)))
        func x(_ address: UInt64) -> Double {
            let bits = log2(Double(max(address, 1)))
            return Double(left) + (bits - lowBits) / (highBits - lowBits) * Double(width)
        }
        let height = top + rows.count * rowHeight + 40
        var out = """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(left + width + 40)" height="\(height)" font-family="sans-serif" font-size="12">
            <rect width="100%" height="100%" fill="white"/>
            <text x="10" y="20" font-size="15" font-weight="bold">\(escape(title))</text>
            <text x="10" y="38" fill="#555">each mark one run at its load address (log scale); dashed: where a failure starts (bisected)</text>

            """
        let used = Set(rows.flatMap { $0.marks.map(\.verdict) })
        var legendX = 10
        for verdict in Verdict.allCases where used.contains(verdict) {
            out += "<rect x=\"\(legendX)\" y=\"48\" width=\"12\" height=\"12\" fill=\"\(colors[verdict] ?? "#000")\"/>"
            out += "<text x=\"\(legendX + 16)\" y=\"58\">\(verdict.rawValue)</text>\n"
            legendX += 30 + 8 * verdict.rawValue.count
        }
        // Class boundaries and powers of two along the axis.
        let axisY = top + rows.count * rowHeight
        // 2 and 4 GiB lie close: their labels lean away from each other.
        for (bits, label, anchor) in [(31, "2 GiB", "end"), (32, "4 GiB", "start"), (40, "1 TiB", "middle"), (47, "128 TiB", "middle")] where Double(bits) < highBits {
            let px = x(1 << UInt64(bits))
            out += "<line x1=\"\(f(px))\" y1=\"\(top - 6)\" x2=\"\(f(px))\" y2=\"\(axisY)\" stroke=\"#bbb\"/>"
            out += "<text x=\"\(f(px))\" y=\"\(top - 10)\" text-anchor=\"\(anchor)\" fill=\"#555\">\(label)</text>\n"
        }
        for bits in stride(from: 20, through: Int(highBits), by: 4) {
            let px = x(1 << UInt64(bits))
            out += "<text x=\"\(f(px))\" y=\"\(axisY + 16)\" text-anchor=\"middle\" fill=\"#555\">2^\(bits)</text>\n"
        }
        out += "<line x1=\"\(left)\" y1=\"\(axisY)\" x2=\"\(left + width)\" y2=\"\(axisY)\" stroke=\"#555\"/>\n"
        for (i, row) in rows.enumerated() {
            let y0 = top + i * rowHeight
            out += "<rect x=\"\(left)\" y=\"\(y0 + 4)\" width=\"\(width)\" height=\"\(rowHeight - 8)\" fill=\"#f6f6f6\"/>"
            out += "<text x=\"\(left - 8)\" y=\"\(y0 + rowHeight / 2 + 4)\" text-anchor=\"end\">\(escape(shorten(row.label)))</text>\n"
            for (n, mark) in row.marks.enumerated() {
                let jitter = Double((n * 7919) % (rowHeight - 20))
                out += "<rect x=\"\(f(x(mark.address) - 0.75))\" y=\"\(f(Double(y0 + 8) + jitter))\" width=\"1.5\" height=\"4\" fill=\"\(colors[mark.verdict] ?? "#000")\"/>"
            }
            out += "\n"
            for boundary in row.boundaries {
                let px = x(boundary)
                out += "<line x1=\"\(f(px))\" y1=\"\(y0 + 2)\" x2=\"\(f(px))\" y2=\"\(y0 + rowHeight - 2)\" stroke=\"#000\" stroke-dasharray=\"3,2\"/>"
                let label = "≥ \(hex(boundary))"
                out += "<rect x=\"\(f(px + 2))\" y=\"\(y0 + 4)\" width=\"\(label.count * 7)\" height=\"13\" fill=\"white\" fill-opacity=\"0.85\"/>"
                out += "<text x=\"\(f(px + 4))\" y=\"\(y0 + 14)\" font-size=\"11\">\(label)</text>\n"
            }
        }
        return out + "</svg>\n"
    }

    static func f(_ value: Double) -> String { String(format: "%.1f", value) }

    static func shorten(_ label: String) -> String { label.count > 38 ? "…" + label.suffix(37) : label }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }
}
