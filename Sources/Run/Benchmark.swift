import Crypto
import ELF
import Machine

/// Speed measured side by side in one process, so the ratios mean something on a noisy machine.
public struct Benchmark: Sendable {
    public var file: ELFFile
    /// Bytes in the throughput scenario's kernel segment.
    public var throughputBytes = 4 << 20
    /// Passes per counting mode; the fastest of each is kept.
    public var repeats = 3
    /// Runs of the small default scenario for setup, teardown and placements per second.
    public var smallRuns = 300

    public init(file: ELFFile) { self.file = file }

    public struct Result: Sendable {
        public var bytes: UInt64
        public var exactMBps: Double
        public var offMBps: Double
        /// Exact counting with the per-function accounting (the default of every run).
        public var accountingMBps: Double
        /// Accounting plus every block recorded in order (`run --trace`).
        public var traceMBps: Double
        public var hostMBps: Double
        /// SHA-256's block function on the host (libcrypto, what --fast-hash uses), same bytes.
        public var hostBlockMBps: Double
        public var exactInstructions: UInt64
        /// Blocks entered in the exact-counting run: the block hook's call count.
        public var exactBlocks: UInt64
        public var smallRuns: Int
        public var smallBytes: UInt64
        public var load: Double
        public var setup: Double
        public var teardown: Double
        public var perRun: Double
        /// Wall time of a whole small run with the accounting (default) and without it.
        public var wallWithAccounting: Double
        public var wallWithoutAccounting: Double
        /// uc_open + uc_close alone, and with the five regions of a run mapped (no writes).
        public var engineOnly: Double
        public var engineAndMaps: Double
        /// Throughput lost to counting: 1 - exact / off.
        public var countingCost: Double { 1 - exactMBps / offMBps }
        /// What the accounting adds to exact counting: 1 - accounting / exact.
        public var accountingCost: Double { 1 - accountingMBps / exactMBps }
        /// What recording every block adds to the accounting: 1 - trace / accounting.
        public var traceCost: Double { 1 - traceMBps / accountingMBps }
    }

    public func run() throws(HarnessError) -> Result {
        // Throughput: the same large verification with the block hook and with no hooks, interleaved.
        var big = Scenario(file: file, seed: 0xbe_4c4)
        big.loadAddress = 0x70_0000_0000
        big.segments.kernelSize = throughputBytes
        big.segments.kernelMemsz = throughputBytes
        big.segments.initrdSize = 0
        enum Mode: CaseIterable { case off, exact, accounting, trace }
        var best: [Mode: Double] = [:]
        var bytes: UInt64 = 0, exactInstructions: UInt64 = 0, exactBlocks: UInt64 = 0
        for _ in 0 ..< repeats {
            for mode in Mode.allCases {
                big.counting = mode == .off ? .off : .exact
                big.accounting = mode == .accounting || mode == .trace
                // Room for every block: ~2 per hashed byte with our SHA-256.
                big.recordBlocks = mode == .trace ? 4 * throughputBytes + 1_000_000 : 0
                let report = try big.run()
                guard report.verdict == .verified, mode != .trace || report.trace?.isComplete == true else {
                    throw .badInput("bench: \(file.name) did not verify (\(report.verdict.rawValue): \(report.message))")
                }
                bytes = report.bytesHashed
                if mode == .exact {
                    exactInstructions = report.instructions
                    exactBlocks = report.blocksExecuted ?? 0
                }
                best[mode] = min(best[mode] ?? .infinity, report.timings.emulation)
            }
        }

        // The host's SHA-256 of the same number of bytes, timed the same way (best of several).
        let data = [UInt8](repeating: 0xa5, count: Int(bytes))
        var hostBest = Double.infinity
        for _ in 0 ..< max(repeats, 5) {
            var lap = Stopwatch()
            var hasher = SHA256()
            hasher.update(data: data)
            let digest = hasher.finalize()
            hostBest = min(hostBest, lap.split())
            precondition(digest.description.count > 0)
        }
        var blockBest = Double.infinity
        for _ in 0 ..< max(repeats, 5) {
            var lap = Stopwatch()
            var state: [UInt32] = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]
            data.withUnsafeBytes { bytes in
                state.withUnsafeMutableBufferPointer { HostSHA256.compress($0.baseAddress!, bytes.baseAddress!, blocks: bytes.count / 64) }
            }
            blockBest = min(blockBest, lap.split())
            precondition(state[0] != 0 || state[1] != 0)
        }

        // Per-run costs on the small default scenario, at a new address each time.
        var load = 0.0, setup = 0.0, teardown = 0.0, total = 0.0, smallBytes: UInt64 = 0
        // Wall time of whole runs (attribution after the run included), with and without accounting, alternated.
        var wall = [false: 0.0, true: 0.0]
        for i in 0 ..< smallRuns {
            var scenario = Scenario(file: file, seed: UInt64(i))
            for accounting in [i % 2 == 0, i % 2 != 0] {
                scenario.accounting = accounting
                var lap = Stopwatch()
                _ = try scenario.run()
                wall[accounting]! += lap.split()
            }
            let report = try Scenario(file: file, seed: UInt64(i)).run()
            load += report.timings.load
            setup += report.timings.setup
            teardown += report.timings.teardown
            total += report.timings.total
            smallBytes = report.bytesHashed
        }
        let n = Double(smallRuns)

        // What an engine costs by itself, and with five page-sized regions mapped.
        var engineOnly = 0.0, engineAndMaps = 0.0
        do throws(MachineError) {
            for i in 0 ..< smallRuns {
                var lap = Stopwatch()
                let bare = try LongModeMachine()
                bare.close()
                engineOnly += lap.split()
                let mapped = try LongModeMachine()
                for r in 0 ..< 5 { try mapped.map("r\(r)", at: UInt64(i % 200 + 1) << 32 + UInt64(r) << 24, size: 0x4000) }
                mapped.close()
                engineAndMaps += lap.split()
            }
        } catch { throw .machine(error) }
        return Result(bytes: bytes, exactMBps: Double(bytes) / 1e6 / best[.exact]!, offMBps: Double(bytes) / 1e6 / best[.off]!,
                      accountingMBps: Double(bytes) / 1e6 / best[.accounting]!, traceMBps: Double(bytes) / 1e6 / best[.trace]!,
                      hostMBps: Double(bytes) / 1e6 / hostBest, hostBlockMBps: Double(bytes / 64 * 64) / 1e6 / blockBest,
                      exactInstructions: exactInstructions, exactBlocks: exactBlocks,
                      smallRuns: smallRuns, smallBytes: smallBytes,
                      load: load / n, setup: setup / n, teardown: teardown / n, perRun: total / n,
                      wallWithAccounting: wall[true]! / n, wallWithoutAccounting: wall[false]! / n,
                      engineOnly: engineOnly / n, engineAndMaps: engineAndMaps / n)
    }
}
