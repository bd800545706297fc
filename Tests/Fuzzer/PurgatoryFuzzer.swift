// libFuzzer entry over the whole input path without emulation: container recognition and
// extraction (decompression capped at 64 MiB), the ELF reader, every loader at an address
// derived from the input, the code and address maps, and inspect (its Capstone sweep included).
// Built by scripts/build-fuzzer; any trap, sanitizer report or timeout is a finding.
import Containers
import ELF
import Inspect
import Loader

/// Loads above this buffer size are skipped: a 1 GiB vzalloc per input would only measure memset.
let bufferCap: UInt64 = 16 << 20

@_cdecl("LLVMFuzzerTestOneInput")
public func purgatoryFuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    let head = bytes.prefix(PurgatoryExtractor.headSize)
    _ = try? PurgatoryExtractor.checkHead(head, complete: head.count == bytes.count)
    let object = (try? PurgatoryExtractor.extract(bytes, name: "input", decompressionLimit: 64 << 20))?.object ?? bytes
    guard let file = try? ELFFile(bytes: object, name: "input") else { return 0 }

    // The address comes from the input's last 8 bytes, so the fuzzer can steer it.
    var seed: UInt64 = 0
    for byte in bytes.suffix(8) { seed = seed << 8 | UInt64(byte) }
    // One loader and entry rule per input, chosen by the address bytes: the fuzzer steers it too.
    let combinations: [(LoaderKind, EntryRule)] = [(.kexecFile, .symbol), (.kexecFile, .eEntry), (.kexecTools, .eEntry), (.image, .eEntry)]
    let (kind, rule) = combinations[Int(seed % UInt64(combinations.count))]
    let loader = AnyLoader(file: file, kind: kind, entryRule: rule)
    let layout = loader.setupBuffer()
    let prepared: BufferLayout
    do throws(LoadFailure) { prepared = try loader.prepareBuffer() } catch {
        _ = try? Inspector(file: file, kind: kind, entryRule: rule).inspect()  // refused before any buffer
        return 0
    }
    // A legitimate but huge buffer (a 256 MiB alignment) would have inspect and every load zero it
    // several times per input (found by the fuzzer as a 12 s slow unit): not a finding.
    guard prepared.bufsz <= bufferCap, prepared.memsz <= bufferCap else { return 0 }
    let align = max(layout.bufAlign, 1)
    let address = seed / align &* align
    let fallback = (PurgatoryLoader.minimumAddress / align &+ 1) &* align
    if let loaded = (try? loader.load(at: address)) ?? (try? loader.load(at: fallback)) {
        _ = loaded.codeMap()
        _ = loaded.addressMap().symbolize(loaded.entry)
        var copy = loaded
        _ = try? copy.setSymbol("purgatory_sha256_digest", [UInt8](repeating: 0, count: 32))
        _ = try? loaded.getSymbol("serial_base", size: 2)
    }
    _ = try? Inspector(file: file, kind: kind, entryRule: rule).inspect(at: seed & 1 == 0 ? address : nil)
    return 0
}
