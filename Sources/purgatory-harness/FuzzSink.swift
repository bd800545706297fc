import ELF
import Foundation
import Fuzz
import HarnessVersion
import Loader
import Run
#if canImport(Glibc)
import Glibc
#endif

/// `fuzz --jsonl FILE`: opened O_WRONLY|O_CREAT|O_APPEND (0666 less the umask), one write(2) per
/// line and no seeking, so pipes and FIFOs work and two campaigns appending to one file keep
/// every line whole. EPIPE means the reader went away; any other failure (ENOSPC…) is reported
/// with the path and errno's text.
final class FileSink: RecordSink, @unchecked Sendable {
    let path: String
    private let fd: Int32

    init(path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY, 0o666)
        guard fd >= 0 else { throw InputError("\(path): cannot open for writing: \(Inputs.errnoText())") }
        self.fd = fd
        self.path = path
    }

    deinit { close(fd) }

    func write(_ line: [UInt8]) -> SinkStatus {
        guard let code = writeAll(fd, line) else { return .written }
        return code == EPIPE ? .readerGone : .failed("\(path): cannot write: \(Inputs.errnoText(code))")
    }
}

/// What makes two JSONL files shards of one campaign: the seed, the files (names and contents),
/// the runs, the number of shards, the address ranges and every option that changes a run.
struct CampaignIdentity: Codable, Equatable {
    var seed: String
    var files: [String]
    /// FNV-1a 64 of each file's bytes, so that a rebuilt object under the same name differs.
    var digests: [String]
    var runs: Int
    var shards: Int
    var ranges: [String]
    var loader: String
    var entryRule: String
    var abi: String
    var expected: String
    var segments: String
    /// The kernel profile and machine every run used.
    var kernel: String
    var machine: String
    /// The version that ran the shard (PurgatoryHarnessVersion.string): shards run by different
    /// versions on different machines are not one campaign. nil in headers written before 0.2.0.
    var toolVersion: String?

    enum CodingKeys: String, CodingKey {
        case seed, files, digests, runs, shards, ranges, loader, abi, expected, segments, kernel, machine
        case entryRule = "entry_rule", toolVersion = "tool_version"
    }

    init(_ campaign: Campaign) {
        seed = hex(campaign.seed)
        files = campaign.files.map(\.name)
        digests = campaign.files.map { hex(fnv1a($0.bytes)) }
        runs = campaign.runs
        shards = campaign.shard.count
        ranges = (campaign.ranges ?? []).map { "\(hex($0.low))-\(hex($0.high))" }
        loader = campaign.loader.rawValue
        entryRule = (campaign.entryRule ?? campaign.kernel.entryRule).rawValue
        let abi = campaign.abi ?? .default(for: campaign.loader)
        self.abi = ([abi.name, abi.regions, abi.digest, abi.registers, abi.stack] + abi.registerOrder).joined(separator: ",")
        expected = campaign.expected.rawValue
        let plan = campaign.segments
        segments = "kernel \(plan.kernelSize) memsz \(plan.kernelMemsz ?? plan.kernelSize) initrd \(plan.initrdSize) cmdline \(plan.commandLine)"
        kernel = "\(campaign.kernel.name) \(campaign.kernel.version)" + (campaign.tdxGuest ? " tdx" : "")
            + (campaign.earlySerialPort.map { " early-serial \(hex($0))" } ?? "")
        let options = campaign.machine
        machine = "phys-bits \(options.physicalBits) paging \(options.paging.map { "\($0.rawValue)" } ?? "auto")"
            + (options.segmentRange.map { " segments \(hex($0.lowerBound))-\(hex($0.upperBound))" } ?? "")
        toolVersion = PurgatoryHarnessVersion.string
    }

    /// A short, stable name: FNV-1a 64 of the identity's sorted JSON.
    var id: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return hex(fnv1a([UInt8]((try? encoder.encode(self)) ?? Data())))
    }

    /// For messages: "seed 0x5, 1 file(s) × 100 runs, 2 shard(s), version 0.2.0".
    var summary: String { "seed \(seed), \(files.count) file(s) × \(runs) runs, \(shards) shard(s)\(ranges.isEmpty ? "" : ", ranges " + ranges.joined(separator: " ")), version \(toolVersion ?? "before 0.2.0")" }

    func headerLine(shard: (index: Int, count: Int)) -> [UInt8] {
        let header = CampaignTag(campaign: id, identity: self, shard: "\(shard.index)/\(shard.count)")
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return [UInt8]((try? encoder.encode(header)) ?? Data()) + [0x0a]
    }
}

/// The campaign fields of any JSONL line: a header carries the identity, a record only its id.
struct CampaignTag: Codable {
    var campaign: String?
    var identity: CampaignIdentity?
    var shard: String?
}

func fnv1a(_ bytes: [UInt8]) -> UInt64 {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in bytes { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 }
    return hash
}
