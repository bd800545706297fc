import CCompression

/// Every call into the C decompression libraries (zlib, liblzma, libzstd, libbz2, liblz4, liblzo2).
///
/// Each codec is a `step` over raw buffers; one driver feeds input, collects output in 1 MiB
/// chunks, enforces the output limit and turns "no progress" into a truncation error, so the
/// seven libraries differ only in the few lines that speak their API.
enum Codecs {
    struct Failure: Error {
        var reason: String
        static func tooLarge(_ limit: Int) -> Failure { Failure(reason: "decompresses to more than \(limit) bytes") }
    }

    struct Output {
        var bytes: [UInt8]
        /// Input bytes the codec used: a payload may carry bytes after its stream (the size trailer).
        var consumed: Int
    }

    static func decompress(_ format: CompressionFormat, _ input: ArraySlice<UInt8>, limit: Int) throws(Failure) -> Output {
        let result: Result<Output, Failure> = input.withUnsafeBufferPointer { buffer in
            let base = buffer.baseAddress ?? UnsafePointer(bitPattern: 1)!
            switch format {
            case .gzip: return gzip(base, buffer.count, limit)
            case .xz: return lzma(base, buffer.count, limit, alone: false)
            case .lzma: return lzma(base, buffer.count, limit, alone: true)
            case .zstd: return zstd(base, buffer.count, limit)
            case .bzip2: return bzip2(base, buffer.count, limit)
            case .lz4: return lz4Legacy(base, buffer.count, limit)
            case .lzo: return lzop(base, buffer.count, limit)
            }
        }
        return try result.get()
    }

    // MARK: The driver

    enum Step {
        case progress(consumed: Int, produced: Int)
        case finished(consumed: Int, produced: Int)
        case failed(String)
    }

    static let chunkSize = 1 << 20

    /// Calls `step(input, inputCount, output, outputCapacity)` until it finishes, fails or stalls.
    private static func drive(_ input: UnsafePointer<UInt8>, _ count: Int, _ limit: Int,
                              _ step: (UnsafePointer<UInt8>, Int, UnsafeMutablePointer<UInt8>, Int) -> Step) -> Result<Output, Failure> {
        let chunk = UnsafeMutablePointer<UInt8>.allocate(capacity: chunkSize)
        defer { chunk.deallocate() }
        var output: [UInt8] = []
        var offset = 0
        while true {
            let outcome = step(input + offset, count - offset, chunk, chunkSize)
            let consumed: Int, produced: Int, done: Bool
            switch outcome {
            case .failed(let reason): return .failure(Failure(reason: reason))
            case .progress(let c, let p): (consumed, produced, done) = (c, p, false)
            case .finished(let c, let p): (consumed, produced, done) = (c, p, true)
            }
            offset += consumed
            guard output.count + produced <= limit else {
                return .failure(.tooLarge(limit))
            }
            output.append(contentsOf: UnsafeBufferPointer(start: chunk, count: produced))
            if done { return .success(Output(bytes: output, consumed: offset)) }
            if consumed == 0 && produced == 0 {
                return .failure(Failure(reason: "the compressed stream ends early (after \(offset) of \(count) bytes, \(output.count) bytes out)"))
            }
        }
    }

    // MARK: The libraries

    private static func gzip(_ input: UnsafePointer<UInt8>, _ count: Int, _ limit: Int) -> Result<Output, Failure> {
        var stream = z_stream()
        guard ph_inflate_init_gzip(&stream) == Z_OK else { return .failure(Failure(reason: "zlib: inflateInit2 failed")) }
        defer { inflateEnd(&stream) }
        return drive(input, count, limit) { source, available, target, capacity in
            stream.next_in = UnsafeMutablePointer(mutating: source)
            stream.avail_in = UInt32(min(available, Int(UInt32.max)))
            stream.next_out = target
            stream.avail_out = UInt32(capacity)
            let status = inflate(&stream, Z_NO_FLUSH)
            let consumed = min(available, Int(UInt32.max)) - Int(stream.avail_in), produced = capacity - Int(stream.avail_out)
            switch status {
            case Z_STREAM_END: return .finished(consumed: consumed, produced: produced)
            case Z_OK, Z_BUF_ERROR: return .progress(consumed: consumed, produced: produced)
            default: return .failed("zlib: " + (stream.msg.map { String(cString: $0) } ?? "error \(status)"))
            }
        }
    }

    private static func lzma(_ input: UnsafePointer<UInt8>, _ count: Int, _ limit: Int, alone: Bool) -> Result<Output, Failure> {
        var stream = lzma_stream()
        let started = alone ? lzma_alone_decoder(&stream, UInt64.max) : lzma_stream_decoder(&stream, UInt64.max, 0)
        guard started == LZMA_OK else { return .failure(Failure(reason: "liblzma: decoder init failed (\(started.rawValue))")) }
        defer { lzma_end(&stream) }
        return drive(input, count, limit) { source, available, target, capacity in
            stream.next_in = source
            stream.avail_in = available
            stream.next_out = target
            stream.avail_out = capacity
            let status = lzma_code(&stream, LZMA_RUN)
            let consumed = available - stream.avail_in, produced = capacity - stream.avail_out
            switch status {
            case LZMA_STREAM_END: return .finished(consumed: consumed, produced: produced)
            case LZMA_OK, LZMA_BUF_ERROR: return .progress(consumed: consumed, produced: produced)
            case LZMA_DATA_ERROR: return .failed("liblzma: corrupt data")
            case LZMA_FORMAT_ERROR: return .failed("liblzma: not in the \(alone ? "lzma" : "xz") format")
            case LZMA_OPTIONS_ERROR: return .failed("liblzma: unsupported options")
            default: return .failed("liblzma: error \(status.rawValue)")
            }
        }
    }

    private static func zstd(_ input: UnsafePointer<UInt8>, _ count: Int, _ limit: Int) -> Result<Output, Failure> {
        guard let context = ZSTD_createDCtx() else { return .failure(Failure(reason: "libzstd: cannot create a context")) }
        defer { ZSTD_freeDCtx(context) }
        // The kernel compresses with -22 --ultra: windows up to 128 MiB, above zstd's default cap.
        ZSTD_DCtx_setParameter(context, ZSTD_d_windowLogMax, 31)
        return drive(input, count, limit) { source, available, target, capacity in
            var inBuffer = ZSTD_inBuffer(src: source, size: available, pos: 0)
            var outBuffer = ZSTD_outBuffer(dst: target, size: capacity, pos: 0)
            let status = ZSTD_decompressStream(context, &outBuffer, &inBuffer)
            if ZSTD_isError(status) != 0 { return .failed("libzstd: " + String(cString: ZSTD_getErrorName(status))) }
            return status == 0 ? .finished(consumed: inBuffer.pos, produced: outBuffer.pos)
                               : .progress(consumed: inBuffer.pos, produced: outBuffer.pos)
        }
    }

    private static func bzip2(_ input: UnsafePointer<UInt8>, _ count: Int, _ limit: Int) -> Result<Output, Failure> {
        var stream = bz_stream()
        guard BZ2_bzDecompressInit(&stream, 0, 0) == BZ_OK else { return .failure(Failure(reason: "libbz2: init failed")) }
        defer { BZ2_bzDecompressEnd(&stream) }
        return drive(input, count, limit) { source, available, target, capacity in
            let feed = min(available, Int(UInt32.max))
            stream.next_in = UnsafeMutableRawPointer(mutating: source).assumingMemoryBound(to: CChar.self)
            stream.avail_in = UInt32(feed)
            stream.next_out = UnsafeMutableRawPointer(target).assumingMemoryBound(to: CChar.self)
            stream.avail_out = UInt32(capacity)
            let status = BZ2_bzDecompress(&stream)
            let consumed = feed - Int(stream.avail_in), produced = capacity - Int(stream.avail_out)
            switch status {
            case BZ_STREAM_END: return .finished(consumed: consumed, produced: produced)
            case BZ_OK: return .progress(consumed: consumed, produced: produced)
            default: return .failed("libbz2: error \(status)")
            }
        }
    }

    /// LZ4's legacy frame (`lz4 -l`, what the kernel uses): magic 0x184C2102, then blocks of
    /// {u32 compressed size, data}, each at most 8 MiB once decompressed.
    private static func lz4Legacy(_ input: UnsafePointer<UInt8>, _ count: Int, _ limit: Int) -> Result<Output, Failure> {
        let magic: UInt32 = 0x184C_2102, blockLimit = 8 << 20
        guard count >= 4, readLE32(input) == magic else { return .failure(Failure(reason: "lz4: no legacy-frame magic")) }
        var offset = 4
        var output: [UInt8] = []
        let block = UnsafeMutablePointer<UInt8>.allocate(capacity: blockLimit)
        defer { block.deallocate() }
        // The payload ends with the kernel's 4-byte size; a block header needs 4 bytes plus data.
        while count - offset > 4 {
            let size = Int(readLE32(input + offset))
            offset += 4
            if UInt32(size) == magic { continue }  // concatenated frames
            guard size <= count - offset, size <= Int(Int32.max) else {
                return .failure(Failure(reason: "lz4: block of \(size) bytes at \(offset - 4) runs past the end (\(count) bytes)"))
            }
            let produced = input.advanced(by: offset).withMemoryRebound(to: CChar.self, capacity: size) { source in
                block.withMemoryRebound(to: CChar.self, capacity: blockLimit) { LZ4_decompress_safe(source, $0, Int32(size), Int32(blockLimit)) }
            }
            guard produced >= 0 else { return .failure(Failure(reason: "lz4: corrupt block at \(offset - 4)")) }
            guard output.count + Int(produced) <= limit else { return .failure(.tooLarge(limit)) }
            output.append(contentsOf: UnsafeBufferPointer(start: block, count: Int(produced)))
            offset += size
        }
        return .success(Output(bytes: output, consumed: offset))
    }

    /// lzop's container (what the kernel's `lzo` payload is): a header, then blocks of
    /// {u32 BE uncompressed size (0 ends), u32 BE compressed size, optional checksums, data}.
    private static func lzop(_ input: UnsafePointer<UInt8>, _ count: Int, _ limit: Int) -> Result<Output, Failure> {
        let magic: [UInt8] = [0x89, 0x4c, 0x5a, 0x4f, 0x00, 0x0d, 0x0a, 0x1a, 0x0a]
        guard ph_lzo_init() == LZO_E_OK else { return .failure(Failure(reason: "liblzo2: init failed")) }
        var offset = 0
        func take(_ n: Int) -> UInt64? {
            guard count - offset >= n else { return nil }
            defer { offset += n }
            return (0 ..< n).reduce(UInt64(0)) { $0 << 8 | UInt64(input[offset + $1]) }
        }
        guard count >= magic.count, (0 ..< magic.count).allSatisfy({ input[$0] == magic[$0] }) else {
            return .failure(Failure(reason: "lzo: no lzop magic"))
        }
        offset = magic.count
        let truncated = Failure(reason: "lzo: the lzop header is truncated")
        guard let version = take(2), take(2) != nil else { return .failure(truncated) }
        if version >= 0x0940 { guard take(2) != nil else { return .failure(truncated) } }
        guard let method = take(1) else { return .failure(truncated) }
        guard [1, 2, 3].contains(method) else { return .failure(Failure(reason: "lzo: method \(method) is not LZO1X")) }
        if version >= 0x0940 { guard take(1) != nil else { return .failure(truncated) } }
        guard let flags = take(4) else { return .failure(truncated) }
        if flags & 0x800 != 0 { guard take(4) != nil else { return .failure(truncated) } }  // F_H_FILTER
        guard take(4) != nil, take(4) != nil else { return .failure(truncated) }             // mode, mtime
        if version >= 0x0940 { guard take(4) != nil else { return .failure(truncated) } }  // mtime high
        guard let nameLength = take(1), take(Int(nameLength)) != nil, take(4) != nil else { return .failure(truncated) }  // name, header checksum
        let decompressedChecksums = (flags & 0x1 != 0 ? 1 : 0) + (flags & 0x100 != 0 ? 1 : 0)  // F_ADLER32_D, F_CRC32_D
        let compressedChecksums = (flags & 0x2 != 0 ? 1 : 0) + (flags & 0x200 != 0 ? 1 : 0)    // F_ADLER32_C, F_CRC32_C
        var output: [UInt8] = []
        while true {
            guard let plain = take(4) else { return .failure(Failure(reason: "lzo: block header truncated at \(offset)")) }
            if plain == 0 { return .success(Output(bytes: output, consumed: offset)) }
            guard let packed = take(4), take(4 * decompressedChecksums) != nil else {
                return .failure(Failure(reason: "lzo: block header truncated at \(offset)"))
            }
            if packed < plain, take(4 * compressedChecksums) == nil { return .failure(Failure(reason: "lzo: block header truncated at \(offset)")) }
            guard plain <= 64 << 20, packed <= plain, Int(packed) <= count - offset else {
                return .failure(Failure(reason: "lzo: block at \(offset) claims \(packed) → \(plain) bytes (\(count - offset) left)"))
            }
            guard output.count + Int(plain) <= limit else { return .failure(.tooLarge(limit)) }
            if packed == plain {
                output.append(contentsOf: UnsafeBufferPointer(start: input + offset, count: Int(plain)))
            } else {
                let start = output.count
                output.append(contentsOf: repeatElement(0, count: Int(plain)))
                var produced = lzo_uint(plain)
                let status = output.withUnsafeMutableBufferPointer { target in
                    lzo1x_decompress_safe(input + offset, lzo_uint(packed), target.baseAddress! + start, &produced, nil)
                }
                guard status == LZO_E_OK, produced == lzo_uint(plain) else {
                    return .failure(Failure(reason: "lzo: corrupt block at \(offset) (error \(status))"))
                }
            }
            offset += Int(packed)
        }
    }

    private static func readLE32(_ p: UnsafePointer<UInt8>) -> UInt32 {
        UInt32(p[0]) | UInt32(p[1]) << 8 | UInt32(p[2]) << 16 | UInt32(p[3]) << 24
    }
}
