import ArgumentParser
import Containers
import ELF
import Foundation
import Run

struct ExtractCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "extract",
        abstract: "Write the purgatory inside a vmlinux, bzImage (/boot/vmlinuz-*) or kexec-tools binary to a file.",
        discussion: """
            A vmlinux with symbols gives kexec_purgatory/kexec_purgatory_size; a stripped one (what a bzImage \
            decompresses to: gzip, bzip2, lzma, xz, lzo, lz4 or zstd) and /sbin/kexec are scanned for the one \
            embedded ET_REL x86-64 object, sized by its own section header table. A purgatory object is copied as it is. \
            run, inspect and fuzz accept all of these inputs directly.
            """)

    @Argument(help: "vmlinux, bzImage, kexec binary or purgatory object.")
    var input: String

    @Option(name: .shortAndLong, help: "Where to write the purgatory object.")
    var output: String

    @Flag(help: "Print how the purgatory was found as JSON.")
    var json = false

    struct Summary: Encodable {
        var input: String
        var output: String
        var container: String
        var offset: Int
        var size: Int
        var sha256: String
        var provenance: [String]
    }

    func run() throws {
        let (file, extraction) = try Inputs.extracted(input)
        try OutputFile.write(extraction.object, to: output, what: "extracted purgatory")
        let summary = Summary(input: input, output: output, container: extraction.container.rawValue, offset: extraction.offset,
                              size: extraction.object.count, sha256: sha256Hex(extraction.object), provenance: extraction.provenance)
        if json { return try printJSON(summary) }
        for line in extraction.provenance { print(line) }
        let sections = file.sections.filter { $0.isAlloc }.map(\.name).joined(separator: " ")
        print("wrote \(output): \(extraction.object.count) bytes, sha256 \(summary.sha256), sections \(sections)")
    }
}
