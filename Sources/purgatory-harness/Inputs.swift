import ArgumentParser
import Containers
import ELF
import Foundation
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

enum Inputs {
    /// Segment and input files are capped so a typo cannot ask for terabytes of host memory.
    static let maximumFileSize = 2 << 30
    /// Bytes read per read(2): the size of the first read, which decides whether the rest is read.
    static let chunkSize = 1 << 20

    /// Reads `path` whole, never trusting its stat size (/proc files say 0, a FIFO says nothing):
    /// chunks of 1 MiB until end of file, refused past `limit`. `head`, when given, sees the
    /// first bytes before anything more is read and may refuse the file by throwing.
    /// Regular files and pipes/FIFOs are read (a FIFO without a writer reads as empty: it is
    /// opened without blocking); directories, devices and sockets are refused. Every refusal is
    /// one line naming the path and the reason (errno's text for a failed call).
    static func read(_ path: String, what: String, limit: Int = maximumFileSize,
                     head: ((_ bytes: ArraySlice<UInt8>, _ complete: Bool) throws -> Void)? = nil) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY)
        guard fd >= 0 else { throw InputError("\(path): cannot read \(what): \(errnoText())") }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw InputError("\(path): cannot read \(what): \(errnoText())") }
        switch info.st_mode & S_IFMT {
        case S_IFREG, S_IFIFO: break
        case S_IFDIR: throw InputError("\(path): cannot read \(what): it is a directory")
        case S_IFCHR: throw InputError("\(path): cannot read \(what): it is a character device, not a file")
        case S_IFBLK: throw InputError("\(path): cannot read \(what): it is a block device, not a file")
        case S_IFSOCK: throw InputError("\(path): cannot read \(what): it is a socket, not a file")
        default: throw InputError("\(path): cannot read \(what): not a regular file")
        }
        // Non-blocking only for the open (a FIFO without a writer); reads may wait for a pipe's writer.
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
        var bytes: [UInt8] = []
        var checked = head == nil
        var ended = false
        while !ended {
            let before = bytes.count
            let want = min(chunkSize, limit + 1 - before)
            bytes.append(contentsOf: repeatElement(0, count: want))
            let got = bytes.withUnsafeMutableBytes { buffer -> Int in
                guard let base = buffer.baseAddress else { return 0 }
                var total = 0
                while total < want {
                    let n = Glibc.read(fd, base + before + total, want - total)
                    if n < 0 && errno == EINTR { continue }
                    if n <= 0 { return n < 0 ? -1 : total }
                    total += n
                }
                return total
            }
            guard got >= 0 else {
                throw InputError("\(path): cannot read \(what): \(errnoText())")
            }
            bytes.removeLast(want - got)
            ended = got < want
            if bytes.count > limit {
                throw InputError("\(path): \(what) is more than \(limit) bytes (\(limit >> 20) MiB), the most the harness accepts")
            }
            if !checked, let head, ended || bytes.count >= PurgatoryExtractor.headSize {
                try head(bytes[...], ended)
                checked = true
            }
        }
        return bytes
    }

    /// errno's text, e.g. "No such file or directory".
    static func errnoText(_ code: Int32 = errno) -> String { String(cString: strerror(code)) }

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
        let bytes = try read(path, what: "purgatory") { head, complete in
            do throws(ContainerError) { try PurgatoryExtractor.checkHead(head, complete: complete) } catch {
                var named = error
                named.file = path
                throw InputError(named.description)
            }
        }
        let extraction: Extraction
        do throws(ContainerError) { extraction = try PurgatoryExtractor.extract(bytes, name: path) } catch {
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

/// One JSON object on standard output (the convention of docs/json.md: JSONOutput).
func printJSON<T: Encodable>(_ value: T, listKey: String = "rows") throws {
    print(String(decoding: try JSONOutput.data(value, listKey: listKey), as: UTF8.self))
}
