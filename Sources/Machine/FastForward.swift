import CUnicorn

/// What the machine needs from outside to fast-forward SHA-256 (`--fast-hash`): the block
/// function on the host and an instruction decoder. The Machine module links neither.
public struct FastForwardOptions: Sendable {
    /// SHA-256's compression function: eight state words (native order, h0…h7) updated with
    /// consecutive 64-byte blocks (the count is the third argument).
    public var compress: @Sendable (UnsafeMutablePointer<UInt32>, UnsafeRawPointer, Int) -> Void
    /// The register effects of each instruction in `bytes` at `address` (nil: undecodable).
    public var registerEffects: @Sendable ([UInt8], UInt64) -> [InstructionEffects]?
    /// One step in every `checkEvery` keeps running emulated and is compared (host steps come
    /// in batches of `checkEvery - 1`).
    public var checkEvery = 256
    /// Emulated steps, with every memory access logged, that must show the same pattern before
    /// a step is taken on the host (after one more that establishes which memory a step writes).
    public var verifySteps = 4
    /// Executed blocks kept while scouting for a periodic step.
    public var scoutBlocks = 4096

    public init(compress: @escaping @Sendable (UnsafeMutablePointer<UInt32>, UnsafeRawPointer, Int) -> Void,
                registerEffects: @escaping @Sendable ([UInt8], UInt64) -> [InstructionEffects]?) {
        self.compress = compress
        self.registerEffects = registerEffects
    }
}

/// One instruction's use of the general registers and flags (Run fills it from Capstone).
public struct InstructionEffects: Equatable, Sendable {
    public var address: UInt64
    public var length: Int
    /// Bits in `Register` order (rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8…r15).
    public var reads: UInt32
    /// Registers written whole (a partial write is a read).
    public var writes: UInt32
    /// Flag bits CF 0, PF 1, AF 2, ZF 3, SF 4, OF 5, DF 6 (rflags bits in `flagMask`).
    public var flagsRead: UInt8
    public var flagsWritten: UInt8
    /// Any other register (segment, vector, x87, control…): such a step is never summarised.
    public var otherState: Bool

    public init(address: UInt64, length: Int, reads: UInt32, writes: UInt32, flagsRead: UInt8, flagsWritten: UInt8, otherState: Bool) {
        (self.address, self.length, self.reads, self.writes) = (address, length, reads, writes)
        (self.flagsRead, self.flagsWritten, self.otherState) = (flagsRead, flagsWritten, otherState)
    }

    /// rflags bits of the flag bits above.
    static let flagBits: [UInt64] = [1 << 0, 1 << 2, 1 << 4, 1 << 6, 1 << 7, 1 << 11, 1 << 10]
    static func flagMask(_ bits: UInt8) -> UInt64 {
        (0 ..< 7).reduce(0) { bits & (1 << UInt8($1)) != 0 ? $0 | flagBits[$1] : $0 }
    }
}

/// What the fast-forward did in one run.
public struct FastForwardReport: Sendable, Equatable {
    /// SHA-256 steps (one 64-byte block each) computed on the host; their instructions are derived.
    public var hostSteps: UInt64 = 0
    /// Steps of the recognised loop that ran in emulation while it was watched (the ones that
    /// established the pattern, the compared checkpoints, the last steps of each loop).
    public var emulatedSteps: UInt64 = 0
    /// Instructions one step costs (the same for every step, or it is not summarised).
    public var instructionsPerStep: UInt64?
    /// The step's anchor: the block that starts each step.
    public var anchor: UInt64?
    /// Where the state lives (the first of its 32-byte copies carried from step to step).
    public var stateAddress: UInt64?
    /// The register holding the input pointer at the anchor, if one does (`Register` raw value).
    public var inputRegister: Int?
    /// Loops (one per hashed region, typically) in which steps ran on the host.
    public var loops = 0
    /// Probes run to find where loops end.
    public var probes = 0
    /// Why the run must be repeated in full emulation (a compared step differed, the loop ended
    /// elsewhere than predicted, Unicorn cut the code differently with memory hooks); nil if not.
    public var mismatch: String?
    /// Why nothing was (or not everything could be) summarised.
    public var notes: [String] = []

    public init() {}
}

/// The SHA-256 fast-forward: finds, from what executes, a loop whose every iteration (a step)
/// compresses one 64-byte block into a 32-byte state, proves a step's pattern over several
/// emulated steps, then computes further steps on the host and writes back every effect the
/// emulated steps would have left, with their exact counts. docs/performance.md ("--fast-hash")
/// gives the rules; in short:
///
/// 1. Scout: the block hook records the blocks in order; a block that recurs with the same
///    instruction count and the same blocks in between, at least five times, is a candidate
///    anchor (the longest such period wins: inner loops have shorter ones).
/// 2. Watch: emulation pauses at every arrival at the anchor. Before the machine runs a step, a
///    shadow engine (`ShadowEngine`: same memory, memory hooks, every store undone) runs it from
///    the same CPU state and logs its accesses. Over `verifySteps` consecutive steps: the same
///    blocks and count in the machine, the same write addresses, reads of fixed addresses plus
///    one 64-byte block that moves by 64 a step (the input), a 32-byte region read before it is
///    written (the state) whose new value is SHA-256's compression of the old with that input as
///    the host computes it; registers the step reads before writing (Capstone) and memory it
///    reads before writing are constant or advance by a constant a step; flags it reads equal.
/// 3. Probe: where the loop ends is found by running single steps in the shadow from the exact
///    state of a later step (state from the host, pointers and counters projected: everything
///    the step reads is what it would be), galloping then bisecting to the first step that does
///    not come back to the anchor.
/// 4. Fast-forward: `checkEvery - 1` steps on the host, then one emulated by the machine and
///    compared with the host's prediction (state, registers, memory, accesses, count), then
///    again. The last regular step runs emulated, and the loop must leave exactly as its probe did.
/// Any difference after host steps sets `report.mismatch`: the caller repeats the run in full
/// emulation.
final class HashFastForward {
    unowned let machine: LongModeMachine
    let options: FastForwardOptions
    private(set) var report = FastForwardReport()
    var state: UnsafeMutablePointer<TraceState> { machine.state }
    private var shadow: ShadowEngine?

    init(machine: LongModeMachine, options: FastForwardOptions) {
        self.machine = machine
        self.options = options
    }

    // MARK: Pattern

    /// A candidate step, from scouting: its blocks (anchor first), count and register use.
    struct Pattern {
        var anchor: UInt64
        var blocks: [BlockRecord]
        /// The step's instructions as contiguous address ranges, in order.
        var runs: [Range<UInt64>]
        var instructions: UInt64
        /// Registers and flags (rflags bits) the step reads before it writes them.
        var liveRegisters: UInt32
        var liveFlags: UInt64
        /// How often each block runs in one step.
        var blockCounts: [BlockRecord: UInt64]
        /// The step's code: no step may write into it.
        var code: [Range<UInt64>]
    }
    private var pattern: Pattern?
    private var rejectedAnchors: Set<UInt64> = []
    private var rejections = 0
    private var gaveUp = false

    /// The machine's state at an arrival at the anchor.
    struct Arrival {
        var registers: [UInt64]
        var rflags: UInt64
        var instructions: UInt64
        var entries: Int
        var crossCheck: UInt64
        var perRange: [UInt64]?
        var serial: Int
        var otherPorts: Int
        var handled: Int
        var guardedSeen: Int
        /// The bytes of `writeSet` here, when the write set was known.
        var memory: [UInt8]?
    }
    /// One interval between two arrivals (a step, if regular): the machine's blocks and counts,
    /// and the shadow's run of it (made just before, from the same state).
    struct Interval {
        var blocks: [BlockRecord]
        var instructions: UInt64
        /// Range entries of the interval, their first instruction relative to its start.
        var entries: [RangeEntry]
        var crossCheck: UInt64
        var perRange: [UInt64]?
        /// No port I/O, no exception handled, no new guarded instruction.
        var quiet: Bool
        var shadow: ShadowEngine.Step?
        var accesses: [MemoryAccess] { shadow?.accesses ?? [] }
    }

    private var previous: Arrival?
    /// The shadow's run of the step that starts at `previous`.
    private var observed: ShadowEngine.Step?
    /// Consecutive regular steps: (arrival before, the step).
    private var window: [(before: Arrival, step: Interval)] = []
    /// The write set (coalesced byte ranges) of the window's steps.
    private var writeSet: [Range<UInt64>] = []
    private var writeSetSize = 0

    // MARK: Engagement (one loop)

    enum ValueClass: Equatable { case constant(UInt64), linear(UInt64, delta: UInt64), varying }
    struct CarriedAccess { var address: UInt64; var size: Int; var value: ValueClass }
    struct Engagement {
        /// Steps since the engagement's arrival: the machine is at arrival `position`.
        var position = 0
        /// Registers, at the engagement's arrival (linear ones advance by `delta` a step).
        var registers: [ValueClass]
        var flags: UInt64
        var carried: [CarriedAccess]
        /// The state's copies (32 bytes each), and their values at every `chainStride`-th step
        /// (the steps between are computed again when needed).
        var states: [UInt64]
        var chains: [[UInt32]]
        /// The input block of step 0; the accesses of a step, and which move with the input.
        var input: UInt64
        var accessTemplate: [MemoryAccess]
        var moving: [Bool]
        var entries: [RangeEntry]
        var perRange: [UInt64]?
        /// Steps whose input the host can read: states exist up to this step.
        var computable: Int
        /// The first step that does not come back to the anchor, and how it leaves (its probe).
        var end: Int?
        var exit: StepResult?
        var hostSteps = 0
    }
    private var engaged: Engagement?

    // MARK: Driving

    func start() {
        let capacity = max(options.scoutBlocks, 256)
        state.pointee.scoutRing = .allocate(capacity: capacity)
        state.pointee.scoutCapacity = capacity
        state.pointee.scoutTotal = 0
        state.pointee.scoutSinceResume = 0
        state.pointee.slowOnly = true
    }

    /// Emulation stopped for the fast-forward (`.pause` at the anchor, or `.scout`); returns where
    /// to resume, or nil to end the run (a mismatch: `report.mismatch`).
    func paused(_ why: TraceState.Stop, at address: UInt64) -> UInt64? {
        if why == .scout {
            scout()
            state.pointee.scoutSinceResume = 0
            return address
        }
        arrived()
        if report.mismatch != nil { return nil }
        state.pointee.resumingAtPause = state.pointee.pauseAddress == address
        return address
    }

    /// After the run: the last interval, if a loop with host steps was still being watched.
    func finish() {
        defer {
            stopScouting()
            state.pointee.scoutRing?.deallocate()
            state.pointee.scoutRing = nil
            shadow?.close()
            shadow = nil
        }
        guard let e = engaged, e.hostSteps > 0, let pattern else { return }
        let blocks = state.pointee.stepBlocks.elements.map { (address: $0.address, bytes: $0.bytes) }
        let result = StepResult.follow(blocks, along: pattern.runs, anchor: pattern.anchor)
        if let end = e.end, e.position == end {
            checkExit(result, e)
        } else if result != .running, state.pointee.stop != .budget {
            abandon("the loop at \(hex(pattern.anchor)) left its pattern at step \(e.position) after host steps, before the end its probes found")
        }
    }

    private func abandon(_ why: String) {
        if report.mismatch == nil { report.mismatch = why }
    }

    private func note(_ text: String) {
        if !report.notes.contains(text) { report.notes.append(text) }
    }

    private func stopScouting() {
        state.pointee.scoutCapacity = 0
    }

    private func giveUp(_ why: String) {
        gaveUp = true
        note(why)
        stopScouting()
        state.pointee.slowOnly = false
        state.pointee.pauseAddress = .max
        state.pointee.stepBlockLimit = 0
        engaged = nil
        window = []
        observed = nil
    }

    // MARK: Scouting

    /// Looks for a periodic step in the recorded blocks; arms the watch on the best candidate.
    private func scout() {
        let capacity = state.pointee.scoutCapacity
        let count = min(state.pointee.scoutTotal, capacity)
        guard count > 0, let ring = state.pointee.scoutRing else { return }
        let first = state.pointee.scoutTotal - count
        let blocks = (first ..< state.pointee.scoutTotal).map { ring[$0 % capacity] }
        var offsets = [UInt64](repeating: 0, count: blocks.count + 1)
        for (i, b) in blocks.enumerated() { offsets[i + 1] = offsets[i] + UInt64(b.instructions) }
        var positions: [BlockRecord: [Int]] = [:]
        for (i, b) in blocks.enumerated() { positions[b, default: []].append(i) }
        let repeats = 5
        var candidates: [(period: UInt64, fallThrough: Bool, key: BlockRecord, from: Int, to: Int)] = []
        for (key, at) in positions where at.count >= repeats && !rejectedAnchors.contains(key.address) {
            let last = Array(at.suffix(repeats))
            let period = offsets[last[1]] - offsets[last[0]]
            guard period >= 64, period <= 4_000_000, last[1] - last[0] >= 2 else { continue }
            let regular = (1 ..< repeats).allSatisfy { offsets[last[$0]] - offsets[last[$0 - 1]] == period }
                && (2 ..< repeats).allSatisfy { blocks[last[$0 - 1] ..< last[$0]].elementsEqual(blocks[last[0] ..< last[1]]) }
            guard regular else { continue }
            // An anchor reached by falling through from the block before may sit inside a longer
            // block in another engine: prefer anchors that are jumped to.
            let before = blocks[last[repeats - 1] - 1]
            candidates.append((period, before.address + UInt64(before.bytes) == key.address, key, last[repeats - 2], last[repeats - 1]))
        }
        candidates.sort { a, b in
            if a.period != b.period { return a.period > b.period }
            if a.fallThrough != b.fallThrough { return !a.fallThrough }
            return a.key.address < b.key.address
        }
        for c in candidates.prefix(4) {
            if let found = makePattern(Array(blocks[c.from ..< c.to]), period: c.period) {
                arm(found)
                return
            }
            rejectedAnchors.insert(c.key.address)
        }
    }

    /// The pattern of a candidate step, with its liveness; nil if any instruction cannot be
    /// analysed (undecodable, or using registers other than the general ones and flags).
    private func makePattern(_ blocks: [BlockRecord], period: UInt64) -> Pattern? {
        var live: UInt32 = 0, written: UInt32 = 0
        var liveFlags: UInt8 = 0, writtenFlags: UInt8 = 0
        var decoded: [UInt64: [InstructionEffects]] = [:]
        for block in blocks {
            if decoded[block.address] == nil {
                guard let bytes = machine.read(at: block.address, count: Int(block.bytes)),
                      let effects = options.registerEffects(bytes, block.address), effects.count == Int(block.instructions) else {
                    note("a candidate step at \(hex(blocks[0].address)): the block at \(hex(block.address)) does not decode into its \(block.instructions) instructions")
                    return nil
                }
                if let other = effects.first(where: \.otherState) {
                    note("a candidate step at \(hex(blocks[0].address)) uses state other than the general registers and flags (at \(hex(other.address)))")
                    return nil
                }
                decoded[block.address] = effects
            }
            for e in decoded[block.address]! {
                live |= e.reads & ~written
                written |= e.writes
                liveFlags |= e.flagsRead & ~writtenFlags
                writtenFlags |= e.flagsWritten
            }
        }
        let guarded = machine.guardedAddresses
        if blocks.contains(where: { b in guarded.contains { b.contains($0) } }) {
            note("a candidate step at \(hex(blocks[0].address)) holds an instruction the machine executes itself")
            return nil
        }
        var counts: [BlockRecord: UInt64] = [:]
        for b in blocks { counts[b, default: 0] += 1 }
        var runs: [Range<UInt64>] = []
        for b in blocks {
            let r = b.address ..< b.address + UInt64(b.bytes)
            if let last = runs.last, last.upperBound == r.lowerBound { runs[runs.count - 1] = last.lowerBound ..< r.upperBound } else { runs.append(r) }
        }
        let code = Set(blocks.map { $0.address ..< $0.address + UInt64($0.bytes) }).sorted { $0.lowerBound < $1.lowerBound }
        return Pattern(anchor: blocks[0].address, blocks: blocks, runs: runs, instructions: period, liveRegisters: live,
                       liveFlags: InstructionEffects.flagMask(liveFlags), blockCounts: counts, code: code)
    }

    private func arm(_ found: Pattern) {
        if shadow == nil {
            do throws(MachineError) {
                shadow = try ShadowEngine(mirroring: machine)
            } catch {
                giveUp("no engine for the fast-forward's single steps: \(error)")
                return
            }
        }
        pattern = found
        report.anchor = found.anchor
        report.instructionsPerStep = found.instructions
        stopScouting()
        state.pointee.pauseAddress = found.anchor
        state.pointee.stepBlockLimit = found.blocks.count + 1
        state.pointee.stepBlocks.removeAll()
        previous = nil
        observed = nil
        window = []
    }

    // MARK: Arrivals

    private func snapshot() -> Arrival {
        let s = state.pointee
        let registers = Register.allCases.dropLast().map { machine.readRegister(LongModeMachine.ucRegister[$0.rawValue]) }
        let perRange = s.instructionsPerRange.map { Array(UnsafeBufferPointer(start: $0, count: s.rangeCount + 1)) }
        var memory: [UInt8]?
        if !writeSet.isEmpty {
            var bytes: [UInt8] = []
            bytes.reserveCapacity(writeSetSize)
            for range in writeSet {
                let count = Int(range.upperBound - range.lowerBound)
                guard let host = machine.hostPointer(at: range.lowerBound, count: count) else { break }
                bytes += UnsafeRawBufferPointer(start: host, count: count)
            }
            memory = bytes.count == writeSetSize ? bytes : nil
        }
        return Arrival(registers: registers, rflags: machine.readRegister(UC_X86_REG_RFLAGS), instructions: s.instructions,
                       entries: s.entries.count, crossCheck: s.crossCheckInstructions, perRange: perRange,
                       serial: machine.ports.transmitted.count, otherPorts: machine.ports.otherAccesses,
                       handled: s.handled.count, guardedSeen: s.guardedSeen.count, memory: memory)
    }

    private func interval(from before: Arrival, to now: Arrival) -> Interval {
        let s = state.pointee
        let entries = s.entries.elements(from: before.entries).map {
            RangeEntry(range: $0.range, firstInstruction: $0.firstInstruction &- before.instructions)
        }
        var perRange: [UInt64]?
        if let a = before.perRange, let b = now.perRange { perRange = zip(b, a).map { $0 &- $1 } }
        return Interval(blocks: s.stepBlocks.elements, instructions: now.instructions &- before.instructions, entries: entries,
                        crossCheck: now.crossCheck &- before.crossCheck, perRange: perRange,
                        quiet: now.serial == before.serial && now.otherPorts == before.otherPorts
                            && now.handled == before.handled && now.guardedSeen == before.guardedSeen,
                        shadow: observed)
    }

    /// The machine ran the pattern exactly, and so did the shadow before it.
    private func isRegular(_ step: Interval) -> Bool {
        guard let pattern, let shadow = step.shadow else { return false }
        return step.quiet && step.instructions == pattern.instructions && step.blocks == pattern.blocks
            && shadow.result == .returned && !shadow.overflow
    }

    /// At an arrival at the anchor (nothing of its block has run).
    private func arrived() {
        defer {
            state.pointee.stepBlocks.removeAll()
            if !gaveUp, let pattern, let shadow {
                observed = shadow.step(from: machine, runs: pattern.runs, anchor: pattern.anchor, sentinel: state.pointee.sentinel, log: true)
            } else {
                observed = nil
            }
        }
        var now = snapshot()
        guard let before = previous else {
            previous = now
            return
        }
        let step = interval(from: before, to: now)
        previous = now
        let regular = isRegular(step)
        if regular { report.emulatedSteps += 1 }

        if engaged != nil {
            // The machine and the shadow must agree on whether the step came back.
            if let shadowResult = step.shadow?.result, (shadowResult == .returned) != (step.blocks == pattern?.blocks && step.instructions == pattern?.instructions) {
                if engaged!.hostSteps > 0 { return abandon("the machine and the single-step engine disagree on step \(engaged!.position) of the loop at \(hex(pattern!.anchor))") }
            }
            if regular { checkpoint(step, now) } else { leaveLoop(step) }
            if report.mismatch != nil { return }
            if engaged != nil {
                fastForward(&now)
                previous = now
                return
            }
            startOver()
            return
        }

        guard regular else {
            startOver()
            return
        }
        if writeSet.isEmpty {
            // The first regular step: its writes say which memory to watch from now on.
            establishWriteSet(step)
            previous = snapshot()
            return
        }
        guard before.memory != nil, now.memory != nil, sameWrites(step, window.first?.step) else {
            window = []
            establishWriteSet(step)
            previous = snapshot()
            return
        }
        window.append((before, step))
        if window.count > options.verifySteps { window.removeFirst() }
        if window.count == options.verifySteps {
            engage(at: now)
            if engaged != nil {
                fastForward(&now)
                previous = now
            }
        }
    }

    /// Forgets the window (a step left the pattern): this arrival may start a new loop.
    private func startOver() {
        window = []
        writeSet = []
        writeSetSize = 0
        previous = snapshot()
    }

    private func establishWriteSet(_ step: Interval) {
        var bytes = Set<UInt64>()
        for a in step.accesses where a.write {
            for i in 0 ..< UInt64(a.size) { bytes.insert(a.address &+ i) }
        }
        var ranges: [Range<UInt64>] = []
        for b in bytes.sorted() {
            if let last = ranges.last, last.upperBound == b { ranges[ranges.count - 1] = last.lowerBound ..< b + 1 } else { ranges.append(b ..< b + 1) }
        }
        writeSet = ranges
        writeSetSize = bytes.count
    }

    private func sameWrites(_ a: Interval, _ b: Interval?) -> Bool {
        guard let b else { return true }
        let wa = a.accesses.filter(\.write), wb = b.accesses.filter(\.write)
        return wa.count == wb.count && zip(wa, wb).allSatisfy { $0.address == $1.address && $0.size == $1.size }
    }

    /// Offset of `address` in an Arrival's `memory` (nil outside the write set).
    private func memoryOffset(_ address: UInt64) -> Int? {
        var offset = 0
        for r in writeSet {
            if r.contains(address) { return offset + Int(address - r.lowerBound) }
            offset += Int(r.upperBound - r.lowerBound)
        }
        return nil
    }

    private func bytes(_ memory: [UInt8], _ address: UInt64, _ count: Int) -> [UInt8]? {
        guard let start = memoryOffset(address), let end = memoryOffset(address + UInt64(count) - 1), end - start == count - 1 else { return nil }
        return Array(memory[start ... end])
    }

    private static func littleEndian(_ bytes: [UInt8]) -> UInt64 {
        bytes.reversed().reduce(0) { $0 << 8 | UInt64($1) }
    }

    private func words(_ bytes: [UInt8]) -> [UInt32] {
        (0 ..< 8).map { i -> UInt32 in
            let b = bytes[4 * i ..< 4 * i + 4].map(UInt32.init)
            return b[0] | b[1] << 8 | b[2] << 16 | b[3] << 24
        }
    }

    private func compress(_ state: [UInt32], _ input: UInt64) -> [UInt32]? {
        guard let block = machine.hostPointer(at: input, count: 64) else { return nil }
        var words = state
        words.withUnsafeMutableBufferPointer { options.compress($0.baseAddress!, block, 1) }
        return words
    }

    // MARK: Establishing the pattern of values

    private func classify(_ values: [UInt64]) -> ValueClass {
        guard let first = values.first else { return .varying }
        if values.allSatisfy({ $0 == first }) { return .constant(first) }
        let delta = values[1] &- values[0]
        for i in 1 ..< values.count where values[i] &- values[i - 1] != delta { return .varying }
        return .linear(values.last!, delta: delta)  // as at the last arrival
    }

    /// Over the window: which registers and memory carry from step to step and how, where the
    /// input and the state are. Engages (`engaged`) if every rule holds; otherwise says why.
    private func engage(at now: Arrival) {
        guard let pattern else { return }
        let steps = window.map(\.step)
        let arrivals = window.map(\.before) + [now]
        let memories = arrivals.compactMap(\.memory)
        guard memories.count == arrivals.count else { return }
        func reject(_ why: String) {
            note(why)
            window.removeFirst()
            rejections += 1
            if rejections > 64 { giveUp("the step at \(hex(pattern.anchor)) never showed one pattern: not fast-forwarded") }
        }

        // The same accesses in the same order, each at a fixed address or moving by 64 a step.
        let template = steps[0].accesses
        guard steps.allSatisfy({ $0.accesses.count == template.count }),
              steps.allSatisfy({ zip($0.accesses, template).allSatisfy { $0.write == $1.write && $0.size == $1.size } }) else {
            return reject("steps at \(hex(pattern.anchor)) made different memory accesses")
        }
        var moving = [Bool](repeating: false, count: template.count)
        for (i, a) in template.enumerated() {
            switch classify(steps.map { $0.accesses[i].address }) {
            case .constant: moving[i] = false
            case .linear(_, 64) where !a.write: moving[i] = true
            default: return reject("a step at \(hex(pattern.anchor)) accesses memory that neither stays nor moves with a 64-byte input")
            }
        }
        // The input: the moving reads cover exactly one 64-byte block, outside the write set.
        var inputs: [UInt64] = []
        for step in steps {
            let reads = step.accesses.indices.filter { moving[$0] }.map { step.accesses[$0] }
            guard let low = reads.map(\.address).min() else { return reject("steps at \(hex(pattern.anchor)) read no moving input") }
            var covered = Set<UInt64>()
            for r in reads { for i in 0 ..< UInt64(r.size) { covered.insert(r.address &+ i &- low) } }
            guard covered == Set(0 ..< 64) else { return reject("the moving reads of a step at \(hex(pattern.anchor)) are not one 64-byte block") }
            inputs.append(low)
        }
        if inputs.contains(where: { input in writeSet.contains { $0.overlaps(input ..< input + 64) } }) {
            return reject("the input of a step at \(hex(pattern.anchor)) overlaps what the step writes")
        }
        if writeSet.contains(where: { w in pattern.code.contains { $0.overlaps(w) } }) {
            return reject("a step at \(hex(pattern.anchor)) writes into its own code")
        }
        // Memory read before it is written in the step: carried over from the step before.
        var carriedBytes = Set<UInt64>()
        var carriedAccesses: [(address: UInt64, size: Int)] = []
        var written = Set<UInt64>()
        for (i, a) in template.enumerated() where !moving[i] {
            let range = (0 ..< UInt64(a.size)).map { a.address &+ $0 }
            if a.write {
                written.formUnion(range)
            } else {
                let fresh = range.filter { !written.contains($0) && memoryOffset($0) != nil }
                if !fresh.isEmpty {
                    carriedBytes.formUnion(fresh)
                    carriedAccesses.append((a.address, Int(a.size)))
                }
            }
        }
        // The state: 32 carried bytes that the step turns into SHA-256's compression of them.
        var states: [UInt64] = []
        for start in carriedBytes.sorted() where (0 ..< 32).allSatisfy({ carriedBytes.contains(start &+ UInt64($0)) }) {
            if let last = states.last, start < last + 32 { continue }
            let holds = steps.indices.allSatisfy { i in
                guard let before = bytes(memories[i], start, 32), let after = bytes(memories[i + 1], start, 32),
                      let computed = compress(words(before), inputs[i]) else { return false }
                return computed == words(after)
            }
            if holds { states.append(start) }
        }
        guard !states.isEmpty else {
            return giveUp("no 32 bytes carried from step to step at \(hex(pattern.anchor)) become SHA-256's compression of them and the step's 64-byte input: not fast-forwarded")
        }
        func inState(_ address: UInt64) -> Bool { states.contains { address >= $0 && address < $0 + 32 } }
        // Every other carried access holds a constant or a value that advances by a constant.
        var carried: [CarriedAccess] = []
        for (address, size) in carriedAccesses {
            let inside = (0 ..< UInt64(size)).map { inState(address &+ $0) }
            if inside.allSatisfy({ $0 }) { continue }
            if inside.contains(true) { return reject("a carried access at \(hex(address)) straddles the state") }
            let values = memories.compactMap { bytes($0, address, size).map(Self.littleEndian) }
            guard values.count == memories.count else { return reject("a carried access at \(hex(address)) leaves the write set") }
            let c = classify(values)
            if c == .varying { return reject("memory at \(hex(address)) carries a value from step to step that is neither constant nor linear") }
            carried.append(CarriedAccess(address: address, size: size, value: c))
        }
        // Registers the step reads before writing: constant or linear; live flags equal.
        var registers: [ValueClass] = []
        for r in 0 ..< 16 {
            let c = classify(arrivals.map { $0.registers[r] })
            if pattern.liveRegisters & (1 << UInt32(r)) != 0, c == .varying {
                return reject("register \(Register(rawValue: r)!) is read by the step at \(hex(pattern.anchor)) and changes irregularly")
            }
            registers.append(c)
        }
        let flags = arrivals[0].rflags & pattern.liveFlags
        if arrivals.contains(where: { $0.rflags & pattern.liveFlags != flags }) {
            return reject("flags the step at \(hex(pattern.anchor)) reads differ between steps")
        }
        // The same range entries and per-instruction counts in every step but the first.
        let last = steps[steps.count - 1]
        if steps.dropFirst().contains(where: { $0.entries != last.entries || $0.perRange != last.perRange }) {
            return reject("steps at \(hex(pattern.anchor)) were attributed differently")
        }

        let input = inputs[inputs.count - 1] + 64
        engaged = Engagement(registers: registers, flags: flags, carried: carried, states: states,
                             chains: states.map { words(bytes(now.memory!, $0, 32)!) }, input: input,
                             accessTemplate: last.accesses, moving: moving, entries: last.entries, perRange: last.perRange,
                             computable: readableSteps(from: input))
        report.stateAddress = states[0]
        report.inputRegister = (0 ..< 16).first { r in
            if case .linear(let v, 64) = registers[r] { return [0, 64, UInt64(bitPattern: -64)].contains(v &- input) }
            return false
        }
        lastState = nil
        shadow?.forget(pattern.code)
        findEnd()
    }

    /// How many 64-byte input blocks from `input` on the host can read (one mapped region).
    private func readableSteps(from input: UInt64) -> Int {
        for region in machine.regions where input >= region.start && input < region.end {
            return Int((region.end - input) / 64)
        }
        return 0
    }

    static let chainStride = 16
    /// The last state computed (step, values): checkpoints ask for consecutive steps.
    private var lastState: (step: Int, values: [[UInt32]])?

    /// The state (every copy) at arrival `n` of the engaged loop: from the nearest state kept
    /// before it (every `chainStride`-th, or the last one asked for), compressing the guest's
    /// input blocks on the host.
    private func stateAt(_ n: Int) -> [[UInt32]]? {
        guard var e = engaged, n >= 0, n <= e.computable else { return nil }
        let stride = Self.chainStride
        func advance(_ words: inout [UInt32], from step: Int, to end: Int) -> Bool {
            guard end > step else { return true }
            guard let blocks = machine.hostPointer(at: e.input &+ 64 &* UInt64(step), count: 64 * (end - step)) else { return false }
            words.withUnsafeMutableBufferPointer { options.compress($0.baseAddress!, blocks, end - step) }
            return true
        }
        let wanted = n / stride
        if e.chains[0].count / 8 <= wanted {
            engaged = nil  // the chains grow in place, not copied
            for c in e.chains.indices {
                var have = e.chains[c].count / 8
                var words = Array(e.chains[c][(have - 1) * 8 ..< have * 8])
                while have <= wanted {
                    guard advance(&words, from: (have - 1) * stride, to: have * stride) else { engaged = e; return nil }
                    e.chains[c] += words
                    have += 1
                }
            }
            engaged = e
        }
        var from = wanted * stride
        var values = e.chains.map { Array($0[wanted * 8 ..< wanted * 8 + 8]) }
        if let last = lastState, last.step <= n, last.step > from {
            from = last.step
            values = last.values
        }
        for c in values.indices { guard advance(&values[c], from: from, to: n) else { return nil } }
        lastState = (n, values)
        return values
    }

    // MARK: Probes

    /// Runs step `n` of the engaged loop in the shadow from its exact state — host-computed
    /// state, projected registers and carried memory, everything else as the machine has it
    /// now — and undoes it all. Nothing is counted.
    private func probe(_ n: Int) -> StepResult {
        guard let pattern, let shadow, let e = engaged, let values = stateAt(n) else { return .fault }
        report.probes += 1
        var restore: [(UInt64, [UInt8])] = []
        projectMemory(e, to: n, state: values) { address, bytes in
            if let old = machine.read(at: address, count: bytes.count) { restore.append((address, old)) }
            machine.poke(bytes, at: address)
        }
        let step = shadow.step(from: machine, runs: pattern.runs, anchor: pattern.anchor, sentinel: state.pointee.sentinel, log: false) { sh in
            for (r, value) in self.projectedRegisters(e, to: n) { sh.setRegister(LongModeMachine.ucRegister[r], value) }
        }
        for (address, old) in restore.reversed() { machine.poke(old, at: address) }
        return step.result
    }

    /// The state copies and the linear carried memory at arrival `n`.
    private func projectMemory(_ e: Engagement, to n: Int, state values: [[UInt32]], write: (UInt64, [UInt8]) -> Void) {
        for (address, words) in zip(e.states, values) {
            write(address, words.flatMap { w in (0 ..< 4).map { UInt8(truncatingIfNeeded: w >> (8 * $0)) } })
        }
        for carried in e.carried {
            if case .linear(let v, let d) = carried.value {
                let value = v &+ d &* UInt64(n)
                write(carried.address, (0 ..< carried.size).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) })
            }
        }
    }

    /// The live linear registers at arrival `n` (register number, value).
    private func projectedRegisters(_ e: Engagement, to n: Int) -> [(Int, UInt64)] {
        (0 ..< 16).compactMap { r in
            guard case .linear(let v, let d) = e.registers[r], pattern!.liveRegisters & (1 << UInt32(r)) != 0 else { return nil }
            return (r, v &+ d &* UInt64(n))
        }
    }

    /// Gallops then bisects for the first step that does not come back to the anchor.
    private func findEnd() {
        guard let limit = engaged?.computable else { return }
        var regular = -1, at = 0, stride = 1
        var irregular: (step: Int, result: StepResult)?
        while at <= limit {
            let r = probe(at)
            if r != .returned {
                irregular = (at, r)
                break
            }
            regular = at
            if at == limit { break }
            at = min(at + stride, limit)
            stride *= 2
        }
        guard var (high, result) = irregular else { return }
        while high - regular > 1 {
            let mid = (high + regular) / 2
            let r = probe(mid)
            if r == .returned { regular = mid } else { (high, result) = (mid, r) }
        }
        engaged?.end = high
        engaged?.exit = result
    }

    // MARK: Fast-forwarding

    /// At arrival `now` of an engaged loop: a batch of host steps, if the loop has room.
    private func fastForward(_ now: inout Arrival) {
        guard let pattern, let e = engaged else { return }
        let position = e.position
        // Host steps stop two before the end (or before the input runs out), so that the last
        // regular step runs emulated; and within the budget, with a step to spare.
        let last = min(e.end.map { $0 - 2 } ?? Int.max, e.computable - 2)
        let room = (state.pointee.budget &- state.pointee.instructions) / pattern.instructions
        let k = min(options.checkEvery - 1, last - position + 1, Int(min(room, UInt64(Int.max))) - 1)
        guard k >= 1, let values = stateAt(position + k) else { return }
        var updated = engaged!
        projectMemory(updated, to: position + k, state: values) { address, bytes in machine.poke(bytes, at: address) }
        for (r, value) in projectedRegisters(updated, to: position + k) { try? machine.setRegister(LongModeMachine.ucRegister[r], value) }
        replicate(k, pattern, updated)
        if updated.hostSteps == 0 { report.loops += 1 }
        updated.hostSteps += k
        updated.position += k
        report.hostSteps += UInt64(k)
        engaged = updated
        now = snapshot()
    }

    /// Adds `k` steps' worth of every counter a step moves, as the emulated steps moved them.
    private func replicate(_ k: Int, _ pattern: Pattern, _ e: Engagement) {
        let n = UInt64(k)
        let base = state.pointee.instructions
        for (block, times) in pattern.blockCounts {
            state.pointee.anySlot(block.address, bytes: block.bytes)?.pointee.executions &+= times &* n
        }
        for i in 0 ..< n {
            for entry in e.entries {
                state.pointee.entries.append(RangeEntry(range: entry.range, firstInstruction: base &+ i &* pattern.instructions &+ entry.firstInstruction))
            }
        }
        state.pointee.instructions &+= n &* pattern.instructions
        if let counts = state.pointee.instructionsPerRange {
            state.pointee.crossCheckInstructions &+= n &* pattern.instructions
            for (i, d) in (e.perRange ?? []).enumerated() { counts[i] &+= n &* d }
        }
        if state.pointee.orderLimit > 0 {
            for _ in 0 ..< k {
                for b in pattern.blocks {
                    if state.pointee.order.count < state.pointee.orderLimit {
                        state.pointee.order.append(ExecutedBlock(address: b.address, instructions: b.instructions))
                    } else {
                        state.pointee.orderDropped &+= 1
                    }
                }
            }
        }
    }

    /// A regular emulated step of an engaged loop, compared with the host's prediction.
    private func checkpoint(_ step: Interval, _ now: Arrival) {
        guard let pattern, var e = engaged else { return }
        let from = e.position
        e.position += 1
        engaged = e
        let n = e.position
        func mismatch(_ what: String) {
            let why = "step \(from) of the loop at \(hex(pattern.anchor)) after \(e.hostSteps) host steps: \(what)"
            if e.hostSteps > 0 {
                abandon(why)
            } else {
                // Nothing was skipped in this loop: stop watching it; the run stays exact.
                note(why)
                engaged = nil
            }
        }
        if let end = e.end, from >= end { return mismatch("its probe said the loop leaves at step \(end)") }
        // The same accesses: fixed ones where they were, the input where it is now (the
        // template is the step before the engagement, one block before step 0's input).
        guard step.accesses.count == e.accessTemplate.count else { return mismatch("\(step.accesses.count) memory accesses, not \(e.accessTemplate.count)") }
        let shift = 64 &* UInt64(from + 1)
        for (i, (a, t)) in zip(step.accesses, e.accessTemplate).enumerated() {
            let expected = e.moving[i] ? t.address &+ shift : t.address
            if a.write != t.write || a.size != t.size || a.address != expected {
                return mismatch("\(a.write ? "a write" : "a read") at \(hex(a.address)), expected at \(hex(expected))")
            }
        }
        if step.entries != e.entries || step.perRange != e.perRange { return mismatch("attributed differently") }
        guard let memory = now.memory, let values = stateAt(n) else { return mismatch("its memory could not be read") }
        for (address, words) in zip(e.states, values) where bytes(memory, address, 32).map(self.words) != words {
            return mismatch("the state at \(hex(address)) is not what the host computes")
        }
        for r in 0 ..< 16 {
            switch e.registers[r] {
            case .constant(let v) where now.registers[r] != v:
                return mismatch("register \(Register(rawValue: r)!) is \(hex(now.registers[r])), not \(hex(v))")
            case .linear(let v, let d) where now.registers[r] != v &+ d &* UInt64(n):
                return mismatch("register \(Register(rawValue: r)!) is \(hex(now.registers[r])), not \(hex(v &+ d &* UInt64(n)))")
            default: break
            }
        }
        if now.rflags & pattern.liveFlags != e.flags { return mismatch("flags \(hex(now.rflags))") }
        for c in e.carried {
            let value = bytes(memory, c.address, c.size).map(Self.littleEndian)
            switch c.value {
            case .constant(let v) where value != v: return mismatch("memory at \(hex(c.address)) changed")
            case .linear(let v, let d) where value != v &+ d &* UInt64(n): return mismatch("memory at \(hex(c.address)) did not advance as before")
            default: break
            }
        }
    }

    /// The loop's first irregular interval since it was engaged.
    private func leaveLoop(_ step: Interval) {
        guard let e = engaged, let pattern else { return }
        defer { engaged = nil }
        guard e.hostSteps > 0 else { return }
        if let end = e.end, e.position == end {
            checkExit(StepResult.follow(step.blocks.map { ($0.address, $0.bytes) }, along: pattern.runs, anchor: pattern.anchor), e)
        } else {
            abandon("the loop at \(hex(pattern.anchor)) left its pattern at step \(e.position) after host steps; its probes said step \(e.end.map(String.init) ?? "none") (\(e.computable) readable)")
        }
    }

    /// The machine left the loop at step `end`: it must have done so as that step's probe did.
    private func checkExit(_ result: StepResult, _ e: Engagement) {
        guard let pattern else { return }
        switch e.exit {
        case .deviated?:
            if result != e.exit! {
                abandon("the loop at \(hex(pattern.anchor)) did not leave as its probe did (\(result) instead of \(e.exit!))")
            }
        case .fault?:
            if state.pointee.stop != .exception && state.pointee.stop != .unmapped {
                abandon("the loop at \(hex(pattern.anchor)) was to fault at step \(e.position) and did not")
            }
        default:
            break
        }
    }
}

extension BlockRecord {
    func contains(_ address: UInt64) -> Bool { address >= self.address && address < self.address + UInt64(bytes) }
}

extension TraceState {
    /// The slot of the block at `address` with `bytes` bytes, if it ran.
    func anySlot(_ address: UInt64, bytes: UInt32) -> UnsafeMutablePointer<Slot>? {
        var index = TraceState.hash(address) & mask
        while slots[index].address != .max {
            if slots[index].address == address && slots[index].bytes == bytes { return slots + index }
            index = (index + 1) & mask
        }
        return nil
    }
}
