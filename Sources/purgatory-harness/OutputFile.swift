#if canImport(Glibc)
import Glibc
#endif

/// An output file written in place: open(O_WRONLY|O_CREAT|O_TRUNC, 0666 less the umask), write,
/// close. Never renamed over nor unlinked, so a character device stays one (/dev/null), a
/// symlink keeps pointing where it did, an existing file keeps its mode and owner. A directory
/// is refused, and so is a FIFO nobody reads (opened without blocking: no hang). Every failure
/// is one line naming the path, what was being written and errno's text.
final class OutputFile {
    let path: String
    let what: String
    private var fd: Int32

    init(path: String, what: String) throws {
        self.path = path
        self.what = what
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOCTTY | O_NONBLOCK, 0o666)
        guard fd >= 0 else { throw InputError("\(path): cannot open the \(what) for writing: \(Inputs.errnoText())") }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
        self.fd = fd
    }

    deinit { if fd >= 0 { Glibc.close(fd) } }

    func write(_ bytes: [UInt8]) throws {
        if let code = writeAll(fd, bytes) {
            throw InputError("\(path): cannot write the \(what): \(Inputs.errnoText(code))")
        }
    }

    /// Closes the file; a failing close (NFS, a full disk discovered late) is an error too.
    func close() throws {
        guard fd >= 0 else { return }
        let result = Glibc.close(fd)
        fd = -1
        if result != 0 { throw InputError("\(path): cannot write the \(what): \(Inputs.errnoText())") }
    }

    /// Opens, writes `bytes` and closes.
    static func write(_ bytes: [UInt8], to path: String, what: String) throws {
        let file = try OutputFile(path: path, what: what)
        try file.write(bytes)
        try file.close()
    }
}

/// write(2) until every byte is out, through short writes and EINTR; errno when it fails.
func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Int32? {
    var offset = 0
    while offset < bytes.count {
        let n = bytes.withUnsafeBytes { buffer -> Int in
            guard let base = buffer.baseAddress else { return 0 }
            return Glibc.write(fd, base + offset, bytes.count - offset)
        }
        if n < 0 {
            if errno == EINTR { continue }
            return errno
        }
        offset += n
    }
    return nil
}
