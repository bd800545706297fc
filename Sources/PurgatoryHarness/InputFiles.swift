import Containers
import ELF
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Input files as the harness reads them: whole, never trusting their stat size, refused past a
/// cap, their first bytes checked before the rest is read.
public enum InputFiles {
    /// Segment and input files are capped so a typo cannot ask for terabytes of host memory.
    public static let maximumFileSize = 2 << 30
    /// Bytes read per read(2): the size of the first read, which decides whether the rest is read.
    static let chunkSize = 1 << 20

    /// Reads `path` whole, never trusting its stat size (/proc files say 0, a FIFO says nothing):
    /// chunks of 1 MiB until end of file, refused past `limit`. `head`, when given, sees the
    /// first bytes before anything more is read and may refuse the file by throwing.
    /// Regular files and pipes/FIFOs are read (a FIFO without a writer reads as empty: it is
    /// opened without blocking); directories, devices and sockets are refused. Every refusal is
    /// one line naming the path and the reason (errno's text for a failed call).
    public static func read(_ path: String, what: String, limit: Int = maximumFileSize,
                     head: ((_ bytes: ArraySlice<UInt8>, _ complete: Bool) throws(HarnessFailure) -> Void)? = nil) throws(HarnessFailure) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY)
        guard fd >= 0 else { throw HarnessFailure(file: path, line: "\(path): cannot read \(what): \(errnoText())") }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw HarnessFailure(file: path, line: "\(path): cannot read \(what): \(errnoText())") }
        switch info.st_mode & S_IFMT {
        case S_IFREG, S_IFIFO: break
        case S_IFDIR: throw HarnessFailure(file: path, line: "\(path): cannot read \(what): it is a directory")
        case S_IFCHR: throw HarnessFailure(file: path, line: "\(path): cannot read \(what): it is a character device, not a file")
        case S_IFBLK: throw HarnessFailure(file: path, line: "\(path): cannot read \(what): it is a block device, not a file")
        case S_IFSOCK: throw HarnessFailure(file: path, line: "\(path): cannot read \(what): it is a socket, not a file")
        default: throw HarnessFailure(file: path, line: "\(path): cannot read \(what): not a regular file")
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
                throw HarnessFailure(file: path, line: "\(path): cannot read \(what): \(errnoText())")
            }
            bytes.removeLast(want - got)
            ended = got < want
            if bytes.count > limit {
                throw HarnessFailure(file: path, line: "\(path): \(what) is more than \(limit) bytes (\(limit >> 20) MiB), the most the harness accepts")
            }
            if !checked, let head, ended || bytes.count >= PurgatoryExtractor.headSize {
                try head(bytes[...], ended)
                checked = true
            }
        }
        return bytes
    }

    /// errno's text, e.g. "No such file or directory".
    public static func errnoText(_ code: Int32 = errno) -> String { String(cString: strerror(code)) }

}
