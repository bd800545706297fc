import ELF
import Foundation
import Run

/// `compare --svg`: grouped horizontal bars, one group per function, phase and the total, one
/// bar per file. Each group is scaled to its own largest count, so that differences between
/// files show at every size (compress and entry64 differ by five orders of magnitude); the
/// exact count and the ratio to the first file are written next to each bar.
enum SVGChart {
    static let colors = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7"]

    static func render(_ c: Comparison, labels: [String]) -> String {
        let files = c.files.count
        let bar = 14, gap = 3, groupGap = 12, left = 230, barWidth = 420, firstRow = 70
        let groupHeight = files * (bar + gap) + groupGap
        var sectionBreaks = 0
        var previous: Comparison.Kind?
        for row in c.rows where row.kind != previous { previous = row.kind; sectionBreaks += 1 }
        let width = left + barWidth + 230
        // The legend wraps: as many 170-pixel entries per line as the width holds.
        let perLine = max(1, (width - 20) / 170), legendLines = (labels.count + perLine - 1) / perLine
        let top = firstRow + (legendLines - 1) * 18
        let height = top + c.rows.count * groupHeight + sectionBreaks * 24 + 20
        var out = """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(width)" height="\(height)" font-family="sans-serif" font-size="12">
            <rect width="100%" height="100%" fill="white"/>
            <text x="10" y="20" font-size="15" font-weight="bold">Instructions per function and phase (seed \(hex(c.seed)), same segments)</text>
            <text x="10" y="38" fill="#555">each group scaled to its largest count; labels: exact count, ratio to \(escape(labels.first ?? ""))</text>

            """
        for (i, label) in labels.enumerated() {
            let x = 10 + (i % perLine) * 170, line = 18 * (i / perLine)
            out += "<rect x=\"\(x)\" y=\"\(48 + line)\" width=\"12\" height=\"12\" fill=\"\(colors[i % colors.count])\"/>"
            out += "<text x=\"\(x + 16)\" y=\"\(58 + line)\">\(escape(label))</text>\n"
        }
        var y = top
        previous = nil
        for row in c.rows {
            if row.kind != previous {
                previous = row.kind
                y += 18
                let title = row.kind == .function ? "functions" : row.kind == .phase ? "phases" : "total"
                out += "<text x=\"10\" y=\"\(y)\" font-weight=\"bold\">\(title)</text>\n"
                y += 6
            }
            let largest = max(row.counts.compactMap { $0 }.max() ?? 0, 1)
            out += "<text x=\"\(left - 8)\" y=\"\(y + files * (bar + gap) / 2 + 4)\" text-anchor=\"end\">\(escape(row.name))</text>\n"
            for (i, count) in row.counts.enumerated() {
                let by = y + i * (bar + gap)
                let w = count.map { max(Int((Double($0) / Double(largest) * Double(barWidth)).rounded()), $0 > 0 ? 1 : 0) } ?? 0
                out += "<rect x=\"\(left)\" y=\"\(by)\" width=\"\(w)\" height=\"\(bar)\" fill=\"\(colors[i % colors.count])\"/>"
                var text = count.map(HumanReport.grouped) ?? "absent"
                if i > 0, let ratio = row.ratios[i] { text += String(format: "  ×%.3f", ratio) }
                out += "<text x=\"\(left + w + 6)\" y=\"\(by + bar - 3)\">\(escape(text))</text>\n"
            }
            y += groupHeight
        }
        return out + "</svg>\n"
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}
