import Disassembly
import Foundation
import Machine

/// What Capstone finds in an executed block, cached across runs by the block's bytes.
///
/// After every run the harness decodes each distinct executed block to find the system
/// instructions the machine must execute itself (`Scenario.execute`). A fuzz campaign runs the
/// same purgatory hundreds of times at different addresses: relocated code differs by address,
/// but most blocks do not (position-independent code, and SHA-256's rounds), and what the
/// classifier finds depends only on the bytes (instruction ids and register operands, never a
/// branch target). So the key is the bytes read for the block (its own and up to 15 more) and
/// the value is the system instructions by offset from the block's start; an entry is valid for
/// any block with those bytes at any address. Process-wide, behind a lock (fuzz jobs share it);
/// bounded: it is emptied when it reaches `limit` entries.
final class BlockDecodeCache: @unchecked Sendable {
    static let shared = BlockDecodeCache()

    /// The bytes with a hash computed once (FNV-1a): Swift's hashing of a [UInt8] key feeds the
    /// hasher byte by byte, twice per lookup (measured at 1 % of a placement).
    struct Key: Hashable {
        let bytes: [UInt8]
        let digest: UInt64
        init(_ bytes: [UInt8]) {
            self.bytes = bytes
            var h: UInt64 = 0xcbf2_9ce4_8422_2325
            for b in bytes { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
            digest = h
        }
        func hash(into hasher: inout Hasher) { hasher.combine(digest) }
        static func == (a: Key, b: Key) -> Bool { a.digest == b.digest && a.bytes == b.bytes }
    }
    private let lock = NSLock()
    private var entries: [Key: [(offset: UInt64, instruction: SystemInstruction)]] = [:]
    private(set) var hits = 0
    private(set) var misses = 0
    let limit = 1 << 16

    /// The system instructions in `bytes` (decoded as Capstone would at `address`), with their
    /// addresses; `decode` runs only for bytes never seen before (nil: it could not decode, and
    /// nothing is cached).
    func systemInstructions(_ bytes: [UInt8], at address: UInt64,
                            decode: ([UInt8], UInt64) -> [(address: UInt64, instruction: SystemInstruction)]?) -> [(address: UInt64, instruction: SystemInstruction)] {
        let key = Key(bytes)
        lock.lock()
        let cached = entries[key]
        if cached != nil { hits += 1 }
        lock.unlock()
        if let cached { return cached.map { (address &+ $0.offset, $0.instruction) } }
        guard let found = decode(bytes, address) else { return [] }
        lock.lock()
        misses += 1
        if entries.count >= limit { entries.removeAll(keepingCapacity: true) }
        entries[key] = found.map { ($0.address &- address, $0.instruction) }
        lock.unlock()
        return found
    }
}
