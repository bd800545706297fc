import ArgumentParser
import Containers
import ELF
import Foundation
import PurgatoryHarness
import Run
#if canImport(Glibc)
import Glibc
#endif

/// A byte count or address: decimal, 0x hex, or with a K/M/G/T (binary) suffix, `_` allowed.
struct Quantity: ExpressibleByArgument, Sendable, CustomStringConvertible {
    var value: UInt64

    init(_ value: UInt64) { self.value = value }

    init?(argument: String) {
        guard let value = Self.parse(argument) else { return nil }
        self.value = value
    }

    static func parse(_ argument: String) -> UInt64? {
        var text = argument.lowercased().replacingOccurrences(of: "_", with: "")
        var scale: UInt64 = 1
        for (suffix, factor) in [("kib", 1 << 10), ("mib", 1 << 20), ("gib", 1 << 30), ("tib", 1 << 40),
                                 ("k", 1 << 10), ("m", 1 << 20), ("g", 1 << 30), ("t", 1 << 40)] as [(String, UInt64)]
            where text.hasSuffix(suffix) && !text.hasPrefix("0x") {
            scale = factor
            text.removeLast(suffix.count)
            break
        }
        guard !text.isEmpty, !text.hasPrefix("+"), !text.hasPrefix("-") else { return nil }
        let parsed = text.hasPrefix("0x") ? UInt64(text.dropFirst(2), radix: 16) : UInt64(text)
        guard let parsed else { return nil }
        let product = parsed.multipliedReportingOverflow(by: scale)
        guard !product.overflow else { return nil }
        return product.partialValue
    }

    /// `4G`, `16K`, `0x6ec52d4000`: the shortest exact form, for help defaults and messages.
    var description: String { Self.format(value) }

    static func format(_ value: UInt64) -> String {
        if value == 0 { return "0" }
        for (suffix, shift) in [("T", 40), ("G", 30), ("M", 20), ("K", 10)] as [(String, UInt64)]
            where value >> shift != 0 && value & ((1 << shift) - 1) == 0 && value >> shift < 1 << 20 {
            return "\(value >> shift)\(suffix)"
        }
        return value < 1 << 20 ? "\(value)" : hex(value)
    }

    static let accepted = "a decimal number, 0x hex, or a number with a K, M, G or T suffix (binary: 4K = 4096), below 2^64"

    var defaultValueDescription: String { description }

    static var defaultCompletionKind: CompletionKind { .default }
}

/// Unsigned 64-bit option values that may also be written as negative numbers for their
/// two's complement (`--seed -1` is 0xffffffffffffffff), so no value looks like an option.
struct Seed: ExpressibleByArgument, Sendable, CustomStringConvertible {
    var value: UInt64
    init(_ value: UInt64) { self.value = value }
    init?(argument: String) {
        if argument.hasPrefix("-"), let magnitude = Quantity.parse(String(argument.dropFirst())), magnitude <= 1 << 63 {
            value = 0 &- magnitude
        } else if let parsed = Quantity.parse(argument) {
            value = parsed
        } else {
            return nil
        }
    }
    var description: String { hex(value) }
    var defaultValueDescription: String { description }
}

/// The command's inputs, read and taken apart by the PurgatoryHarness library (InputFiles,
/// Purgatory.load): its failures become the command's one-line refusals.
enum Inputs {
    static let maximumFileSize = InputFiles.maximumFileSize

    static func read(_ path: String, what: String, limit: Int = maximumFileSize) throws -> [UInt8] {
        do throws(HarnessFailure) { return try InputFiles.read(path, what: what, limit: limit) } catch {
            throw InputError(error.description)
        }
    }

    /// errno's text, e.g. "No such file or directory".
    static func errnoText(_ code: Int32 = errno) -> String { InputFiles.errnoText(code) }

    /// The purgatory named on the command line, or the built-in reference purgatory.
    static func purgatory(_ path: String?) throws -> ELFFile {
        do throws(HarnessFailure) {
            guard let path else { return try Purgatory.builtIn().object }
            return try Purgatory.load(contentsOf: path).object
        } catch {
            throw InputError(error.description)
        }
    }

    /// The purgatories in `paths`, and the bzImages among their containers (whose version strings
    /// name the loading kernel).
    static func purgatories(_ paths: [String]) throws -> (objects: [ELFFile], bzImages: [(path: String, image: BzImage)]) {
        var objects: [ELFFile] = [], bzImages: [(path: String, image: BzImage)] = []
        for path in paths {
            let extracted = try extracted(path)
            objects.append(extracted.file)
            if let image = extracted.extraction.bzImage { bzImages.append((path, image)) }
        }
        return (objects, bzImages)
    }

    /// The purgatory inside `path`: the file itself when it is an ELF object, else the one
    /// embedded in a vmlinux, bzImage or kexec-tools binary (named `path:purgatory` in messages).
    static func extracted(_ path: String) throws -> (file: ELFFile, extraction: Extraction) {
        do throws(HarnessFailure) {
            let purgatory = try Purgatory.load(contentsOf: path)
            guard let extraction = purgatory.extraction else { throw HarnessFailure(file: path, line: "\(path): no container") }
            return (purgatory.object, extraction)
        } catch {
            throw InputError(error.description)
        }
    }
}

/// One JSON object on standard output (the convention of docs/json.md: JSONOutput).
func printJSON<T: Encodable>(_ value: T, listKey: String = "rows") throws {
    print(String(decoding: try JSONOutput.data(value, listKey: listKey), as: UTF8.self))
}
