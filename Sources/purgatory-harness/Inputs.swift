import ArgumentParser
import Containers
import ELF
import Foundation
import Run

/// A byte count or address: decimal, 0x hex, or with a K/M/G/T (binary) suffix, `_` allowed.
struct Quantity: ExpressibleByArgument, Sendable {
    var value: UInt64
    init?(argument: String) {
        var text = argument.lowercased().replacingOccurrences(of: "_", with: "")
        var scale: UInt64 = 1
        for (suffix, factor) in [("kib", 1 << 10), ("mib", 1 << 20), ("gib", 1 << 30), ("tib", 1 << 40),
                                 ("k", 1 << 10), ("m", 1 << 20), ("g", 1 << 30), ("t", 1 << 40)] as [(String, UInt64)]
            where text.hasSuffix(suffix) && !text.hasPrefix("0x") {
            scale = factor
            text.removeLast(suffix.count)
            break
        }
        let parsed = text.hasPrefix("0x") ? UInt64(text.dropFirst(2), radix: 16) : UInt64(text)
        guard let parsed else { return nil }
        let product = parsed.multipliedReportingOverflow(by: scale)
        guard !product.overflow else { return nil }
        value = product.partialValue
    }
}

enum Inputs {
    /// Segment and input files are capped so a typo cannot ask for terabytes of host memory.
    static let maximumFileSize = 2 << 30

    static func read(_ path: String, what: String) throws -> [UInt8] {
        let attributes: [FileAttributeKey: Any]
        do { attributes = try FileManager.default.attributesOfItem(atPath: path) } catch {
            throw InputError("\(path): cannot read \(what): no such file or not accessible")
        }
        if let type = attributes[.type] as? FileAttributeType, type == .typeDirectory {
            throw InputError("\(path): cannot read \(what): it is a directory")
        }
        let size = (attributes[.size] as? NSNumber)?.intValue ?? 0
        guard size <= maximumFileSize else {
            throw InputError("\(path): \(what) is \(size) bytes, more than the \(maximumFileSize >> 30) GiB the harness accepts")
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw InputError("\(path): cannot read \(what)")
        }
        return [UInt8](data)
    }

    /// The purgatory named on the command line, or the built-in reference purgatory.
    static func purgatory(_ path: String?) throws -> ELFFile {
        guard let path else {
            do { return try DefaultPurgatory.file() } catch { throw InputError(error.description) }
        }
        return try extracted(path).file
    }

    /// The purgatory inside `path`: the file itself when it is an ELF object, else the one
    /// embedded in a vmlinux, bzImage or kexec-tools binary (named `path:purgatory` in messages).
    static func extracted(_ path: String) throws -> (file: ELFFile, extraction: Extraction) {
        let bytes = try read(path, what: "purgatory")
        let extraction: Extraction
        do { extraction = try PurgatoryExtractor.extract(bytes, name: path) } catch {
            throw InputError(error.description)
        }
        let name = extraction.container == .object || extraction.container == .image ? path : path + ":purgatory"
        guard extraction.object.count <= ELFFile.maximumSize else {
            throw InputError("\(name): \(extraction.object.count) bytes is larger than any purgatory (limit \(ELFFile.maximumSize))")
        }
        do {
            return (try ELFFile(bytes: extraction.object, name: name), extraction)
        } catch {
            throw InputError(error.description)
        }
    }
}

/// One JSON object on standard output, keys sorted so the output is stable.
func printJSON<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}
