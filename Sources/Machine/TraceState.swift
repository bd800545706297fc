import CUnicorn

/// Hook state, reached from C callbacks through a raw pointer: no class, no
/// dictionary, no retain/release on the hot path (the block hook runs once per
/// executed block, millions of times per run).
struct TraceState {
    /// One slot of the open-addressing table of translated blocks.
    struct Slot {
        var address: UInt64 = .max   // .max marks an empty slot
        var bytes: UInt32 = 0
        var instructions: UInt32 = 0
        var executions: UInt64 = 0
        /// For a block of only nop/pause and at most a direct jmp: where it always goes next
        /// (.max otherwise). A cycle of such blocks can never end.
        var next: UInt64 = .max
        /// Index of the attribution range holding the block's first byte; -1 outside every range.
        var range: Int32 = -1
    }

    var engine: OpaquePointer?
    var slots: UnsafeMutablePointer<Slot>
    /// The slot used by the previous block: loops re-enter the same block, so most lookups end here.
    var recent: UnsafeMutablePointer<Slot>?
    var mask: Int
    var used: Int = 0

    var instructions: UInt64 = 0
    var crossCheckInstructions: UInt64 = 0
    var budget: UInt64 = .max
    /// The hot path leaves for the slow one when the count would pass this: the budget, or
    /// earlier, the next progress report (so progress costs the hot path nothing).
    var checkpoint: UInt64 = .max
    var progressInterval: UInt64 = 0
    /// Called on the emulating thread with the count so far (a `ProgressReport`, unretained).
    var progress: UnsafeMutableRawPointer?
    var sentinel: UInt64 = .max
    /// The block counted last, which is the one running when a fault stops emulation.
    var lastCounted: Slot? {
        guard let recent, recent.pointee.executions > 0 else { return nil }
        return recent.pointee
    }

    // Fast-forward (`HashFastForward` drives these between emulation runs; see FastForward.swift).
    /// A block at this address stops emulation before it runs, uncounted (`.pause`); .max: none.
    var pauseAddress: UInt64 = .max
    /// Emulation resumes at `pauseAddress`: its next arrival runs.
    var resumingAtPause = false
    /// The last `scoutCapacity` blocks counted, in order (a ring), when scouting.
    var scoutRing: UnsafeMutablePointer<BlockRecord>?
    var scoutCapacity = 0
    var scoutTotal = 0
    /// Blocks recorded since emulation last resumed; at `scoutCapacity` the run stops (`.scout`).
    var scoutSinceResume = 0
    /// The blocks counted since the last pause, up to `stepBlockLimit`.
    var stepBlocks = GrowingBuffer<BlockRecord>()
    var stepBlockLimit = 0


    /// Set when a hook asked emulation to stop; later hooks in the same block count nothing.
    var stopped = false { didSet { hotPathBlocked = stopped || slowOnly } }
    /// Every block takes the slow path (it records blocks for the fast-forward).
    var slowOnly = false { didSet { hotPathBlocked = stopped || slowOnly } }
    /// `stopped || slowOnly`: the one flag the hot path tests.
    var hotPathBlocked = false
    var stop: Stop = .none
    var stopAddress: UInt64 = 0
    var vector: UInt32 = 0
    var access: AccessKind = .read
    var accessAddress: UInt64 = 0
    var accessSize: Int = 0
    var requestCacheFailed = false

    // Attribution (see `LongModeMachine.run(…attributing:…)`). All of it is touched on the slow
    // path only: the hot path runs the block that ran last, so the range cannot have changed.
    /// Sorted, disjoint attribution ranges [start, end).
    var rangeStarts: UnsafeMutablePointer<UInt64>?
    var rangeEnds: UnsafeMutablePointer<UInt64>?
    var rangeCount = 0
    /// The range of the block counted last (Int32.min before the first one).
    var currentRange: Int32 = .min
    /// Every entry into a different range, with the instructions counted before it.
    var entries = GrowingBuffer<RangeEntry>()
    /// Executed blocks in order, up to `orderLimit` (0: not recorded); later ones only counted.
    var order = GrowingBuffer<ExecutedBlock>()
    var orderLimit = 0
    var orderDropped: UInt64 = 0
    /// The per-instruction hook's counts per range, `rangeCount` (outside) last; nil unless cross-checking.
    var instructionsPerRange: UnsafeMutablePointer<UInt64>?
    /// The range the previous instruction fell in, so most instructions need no search.
    var cachedRange: Int32 = -1
    var cachedLow: UInt64 = 1
    var cachedHigh: UInt64 = 0
    /// Sorted addresses of the instructions the machine executes itself (`GuardedInstruction`),
    /// with their kinds at the same index; checked by the per-instruction hook only.
    var guardedAddresses: UnsafeMutablePointer<UInt64>?
    var guardedKinds: UnsafeMutablePointer<GuardedInstruction>?
    var guardedCount = 0
    /// Results to set before the next instruction runs (the guarded instruction just ran).
    var pendingFixup: Fixup?
    /// Guarded instructions that ran (or stopped the run), in order of first execution, at most 64.
    var guardedSeen = GrowingBuffer<UInt64>()

    // The CPU state Unicorn does not keep for the machine.
    var translation: Translation = .walked(.four)
    var physicalBits = 52
    /// EFER as the CPU holds it (Unicorn 2.0.1 drops SCE and NXE).
    var efer: UInt64 = 0
    var timeStampBase: UInt64 = 0

    /// The exception handlers in the IDT (nil: none, every exception triple-faults).
    var handlers: ExceptionHandlers?
    /// Exceptions the handlers took, in order.
    var handled = GrowingBuffer<HandledException>()
    /// The UART (PortState, unretained), to note how much the guest had printed.
    var ports: UnsafeMutableRawPointer?

    /// Why the guarded instruction stopped the run: the CPU's exception, or the harness refusing.
    var errorCode: UInt64?
    var note: String?

    enum Stop { case none, spin, budget, sentinel, exception, unmapped, refused, pause, scout }

    init(capacity: Int = 1024) {
        slots = .allocate(capacity: capacity)
        slots.initialize(repeating: Slot(), count: capacity)
        mask = capacity - 1
    }

    func release() {
        slots.deallocate()
        rangeStarts?.deallocate()
        rangeEnds?.deallocate()
        instructionsPerRange?.deallocate()
        guardedAddresses?.deallocate()
        guardedKinds?.deinitialize(count: guardedCount)
        guardedKinds?.deallocate()
        entries.release()
        order.release()
        scoutRing?.deallocate()
        stepBlocks.release()
        guardedSeen.release()
        handled.release()
    }

    /// Index of the range holding `address`, -1 if none (binary search: slow path only).
    func rangeIndex(_ address: UInt64) -> Int32 {
        guard let starts = rangeStarts, let ends = rangeEnds else { return -1 }
        var low = 0, high = rangeCount
        while low < high {
            let mid = (low + high) / 2
            if starts[mid] <= address { low = mid + 1 } else { high = mid }
        }
        return low > 0 && address < ends[low - 1] ? Int32(low - 1) : -1
    }

    /// Counts one execution of `slot` (the caller checked the budget) and notes range changes
    /// and, when recording, the block itself.
    @inline(__always)
    mutating func count(_ slot: UnsafeMutablePointer<Slot>) {
        let before = instructions
        slot.pointee.executions &+= 1
        instructions &+= UInt64(slot.pointee.instructions)
        if slot.pointee.range != currentRange {
            currentRange = slot.pointee.range
            entries.append(RangeEntry(range: Int(currentRange), firstInstruction: before))
        }
        if orderLimit > 0 {
            if order.count < orderLimit {
                order.append(ExecutedBlock(address: slot.pointee.address, instructions: slot.pointee.instructions))
            } else {
                orderDropped &+= 1
            }
        }
    }

    /// The per-instruction hook's attribution of one instruction at `address`.
    @inline(__always)
    mutating func countInstruction(_ address: UInt64) {
        guard let counts = instructionsPerRange else { return }
        if address < cachedLow || address >= cachedHigh {
            cachedRange = rangeIndex(address)
            if cachedRange >= 0 {
                cachedLow = rangeStarts![Int(cachedRange)]
                cachedHigh = rangeEnds![Int(cachedRange)]
            } else {
                (cachedLow, cachedHigh) = (1, 0)  // outside: search again next time
            }
        }
        counts[cachedRange >= 0 ? Int(cachedRange) : rangeCount] &+= 1
    }

    @inline(__always)
    static func hash(_ address: UInt64) -> Int {
        Int(truncatingIfNeeded: ((address ^ (address >> 29)) &* 0x9E37_79B9_7F4A_7C15) >> 20)
    }

    /// The slot for the block at `address` of `bytes` bytes, filled on first sight.
    @inline(__always)
    mutating func slot(_ address: UInt64, _ bytes: UInt32) -> UnsafeMutablePointer<Slot> {
        if let recent, recent.pointee.address == address, recent.pointee.bytes == bytes { return recent }
        let found = lookup(address, bytes)
        recent = found
        return found
    }

    @inline(__always)
    private mutating func lookup(_ address: UInt64, _ bytes: UInt32) -> UnsafeMutablePointer<Slot> {
        var index = TraceState.hash(address) & mask
        while true {
            let slot = slots + index
            if slot.pointee.address == address && slot.pointee.bytes == bytes { return slot }
            if slot.pointee.address == .max { return fill(slot, address, bytes) }
            index = (index + 1) & mask
        }
    }

    private mutating func fill(_ slot: UnsafeMutablePointer<Slot>, _ address: UInt64, _ bytes: UInt32) -> UnsafeMutablePointer<Slot> {
        var tb = uc_tb()
        if ph_ctl_request_cache(engine, address, &tb) != UC_ERR_OK || tb.pc != address {
            requestCacheFailed = true
        }
        slot.pointee = Slot(address: address, bytes: bytes, instructions: UInt32(tb.icount), executions: 0,
                            next: TraceState.inertSuccessor(engine, address, bytes) ?? .max, range: rangeIndex(address))
        used += 1
        if used * 2 > mask + 1 {
            grow()
            return lookup(address, bytes)
        }
        return slot
    }

    private mutating func grow() {
        recent = nil
        let old = slots, oldCount = mask + 1
        let count = oldCount * 2
        slots = .allocate(capacity: count)
        slots.initialize(repeating: Slot(), count: count)
        mask = count - 1
        for i in 0 ..< oldCount where old[i].address != .max {
            var index = TraceState.hash(old[i].address) & mask
            while slots[index].address != .max { index = (index + 1) & mask }
            slots[index] = old[i]
        }
        old.deallocate()
    }

    /// Any slot for the block starting at `address` (whatever its size), if seen.
    func anySlot(_ address: UInt64) -> UnsafeMutablePointer<Slot>? {
        var index = TraceState.hash(address) & mask
        while slots[index].address != .max {
            if slots[index].address == address { return slots + index }
            index = (index + 1) & mask
        }
        return nil
    }

    /// True when following inert blocks from `slot` comes back to it: `jmp .`, or
    /// `1: pause; jmp 1b`, which QEMU splits into two blocks at the pause.
    func isInertCycle(_ slot: UnsafeMutablePointer<Slot>) -> Bool {
        var next = slot.pointee.next
        for _ in 0 ..< 8 {
            if next == .max { return false }
            if next == slot.pointee.address { return true }
            guard let following = anySlot(next) else { return false }
            next = following.pointee.next
        }
        return false
    }

    /// Where an inert block goes next: a block of nop (90) and pause (F3 90) only, ending in
    /// `jmp rel8/rel32` (its target) or in nothing (QEMU ends blocks after pause: the next byte).
    /// nil for any block that does something.
    static func inertSuccessor(_ engine: OpaquePointer?, _ address: UInt64, _ bytes: UInt32) -> UInt64? {
        guard bytes >= 1, bytes <= 32 else { return nil }
        var code = [UInt8](repeating: 0, count: Int(bytes))
        guard uc_mem_read(engine, address, &code, Int(bytes)) == UC_ERR_OK else { return nil }
        var i = 0
        while i < code.count {
            if code[i] == 0x90 { i += 1; continue }
            if code[i] == 0xf3, i + 1 < code.count, code[i + 1] == 0x90 { i += 2; continue }
            break
        }
        let end = address &+ UInt64(bytes)
        if i == code.count { return end }
        if i + 2 == code.count, code[i] == 0xeb {
            return end &+ UInt64(bitPattern: Int64(Int8(bitPattern: code[i + 1])))
        }
        if i + 5 == code.count, code[i] == 0xe9 {
            let rel = Int32(bitPattern: UInt32(code[i + 1]) | UInt32(code[i + 2]) << 8 | UInt32(code[i + 3]) << 16 | UInt32(code[i + 4]) << 24)
            return end &+ UInt64(bitPattern: Int64(rel))
        }
        return nil
    }
}

// MARK: - C callbacks. Each captures nothing and finds its state through `user`.

/// The hot path: one known block, counted. Everything rarer lives in `blockHookSlowPath`,
/// so this function needs no stack frame to speak of.
let blockHook: ph_block_cb = { engine, address, size, user in
    let state = user.unsafelyUnwrapped.assumingMemoryBound(to: TraceState.self)
    if let slot = state.pointee.recent, slot.pointee.address == address, slot.pointee.bytes == size,
       slot.pointee.next == .max, !state.pointee.hotPathBlocked {
        let count = UInt64(slot.pointee.instructions)
        if state.pointee.instructions &+ count <= state.pointee.checkpoint {
            slot.pointee.executions &+= 1
            state.pointee.instructions &+= count
            return
        }
    }
    blockHookSlowPath(engine, address, size, state)
}

/// The block hook when every block is recorded in order (`--trace`): always the slow path,
/// which records; the default hook above stays as it was.
let recordingBlockHook: ph_block_cb = { engine, address, size, user in
    blockHookSlowPath(engine, address, size, user.unsafelyUnwrapped.assumingMemoryBound(to: TraceState.self))
}

@inline(never)
func blockHookSlowPath(_ engine: OpaquePointer?, _ address: UInt64, _ size: UInt32, _ state: UnsafeMutablePointer<TraceState>) {
    if state.pointee.stopped { return }
    if address == state.pointee.sentinel {
        state.pointee.stopped = true
        state.pointee.stop = .sentinel
        uc_emu_stop(engine)
        return
    }
    if address == state.pointee.pauseAddress {
        if state.pointee.resumingAtPause {
            state.pointee.resumingAtPause = false
        } else {
            // Like a budget stop: the block does not run and is not counted; emulation resumes here.
            state.pointee.stopped = true
            state.pointee.stop = .pause
            state.pointee.stopAddress = address
            uc_emu_stop(engine)
            return
        }
    }
    if state.pointee.scoutCapacity > 0, state.pointee.scoutSinceResume >= state.pointee.scoutCapacity {
        state.pointee.stopped = true
        state.pointee.stop = .scout
        state.pointee.stopAddress = address
        uc_emu_stop(engine)
        return
    }
    let slot = state.pointee.slot(address, size)
    if slot.pointee.next != .max, state.pointee.isInertCycle(slot) {
        state.pointee.stopped = true
        state.pointee.stop = .spin
        state.pointee.stopAddress = address
        uc_emu_stop(engine)
        return
    }
    let count = UInt64(slot.pointee.instructions)
    if state.pointee.instructions &+ count > state.pointee.budget {
        // A stop requested from the block hook keeps the block from running (measured), so the
        // count stays at what ran: never more than the budget.
        state.pointee.stopped = true
        state.pointee.stop = .budget
        state.pointee.stopAddress = address
        uc_emu_stop(engine)
        return
    }
    if state.pointee.instructions &+ count > state.pointee.checkpoint, let progress = state.pointee.progress {
        // The next checkpoint lies ahead of the count, which a fast-forwarded batch may have moved far.
        state.pointee.checkpoint = min(state.pointee.budget, max(state.pointee.checkpoint, state.pointee.instructions) &+ state.pointee.progressInterval)
        Unmanaged<ProgressReport>.fromOpaque(progress).takeUnretainedValue().report(state.pointee.instructions)
    }
    state.pointee.count(slot)
    if state.pointee.slowOnly { state.pointee.record(slot) }
}

/// Where a long run tells how far it got: `report` gets the instructions counted so far, every
/// `interval` instructions, on the emulating thread.
public final class ProgressReport: @unchecked Sendable {
    public let interval: UInt64
    public let report: (UInt64) -> Void
    public init(every interval: UInt64, _ report: @escaping (UInt64) -> Void) {
        self.interval = max(interval, 1)
        self.report = report
    }
}

let codeHook: ph_block_cb = { engine, address, _, user in
    let state = user!.assumingMemoryBound(to: TraceState.self)
    guard !state.pointee.stopped else { return }
    if let fixup = state.pointee.pendingFixup {
        state.pointee.pendingFixup = nil
        state.pointee.apply(fixup)
    }
    state.pointee.crossCheckInstructions &+= 1
    state.pointee.countInstruction(address)
    if state.pointee.guardedCount > 0, let index = state.pointee.guardedIndex(address) {
        state.pointee.guard(index, at: address, engine)
    }
}

extension TraceState {
    /// Index of `address` among the guarded instructions (binary search).
    func guardedIndex(_ address: UInt64) -> Int? {
        guard let addresses = guardedAddresses else { return nil }
        var low = 0, high = guardedCount
        while low < high {
            let mid = (low + high) / 2
            if addresses[mid] < address { low = mid + 1 } else { high = mid }
        }
        return low < guardedCount && addresses[low] == address ? low : nil
    }

    /// Runs the CPU's rules for guarded instruction `index`, about to execute at `address`.
    /// A raised exception counts the instruction, like any faulting instruction.
    mutating func `guard`(_ index: Int, at address: UInt64, _ engine: OpaquePointer?) {
        guard let kinds = guardedKinds else { return }
        if guardedSeen.count < 64, !guardedSeen.contains(address) { guardedSeen.append(address) }
        switch decide(kinds[index], at: address) {
        case .proceed: break
        case .proceedThenFix(let fixup): pendingFixup = fixup
        case .raise(let vector, let code, let why):
            stopped = true
            stop = .exception
            self.vector = vector
            errorCode = code
            note = why
            stopAddress = address
            uc_emu_stop(engine)
        case .refuse(let why):
            stopped = true
            stop = .refused
            note = why
            stopAddress = address
            uc_emu_stop(engine)
        }
    }
}

let interruptHook: ph_intr_cb = { engine, vector, user in
    let state = user!.assumingMemoryBound(to: TraceState.self)
    guard state.pointee.stop == .none || state.pointee.stop == .budget else { return }
    var vector = vector
    var errorCode: UInt64?
    // Unicorn 2.0.1's page walk faults a non-canonical address with #PF; the CPU checks the form
    // first and raises #GP(0).
    if vector == 14, !state.pointee.isCanonical(state.pointee.read(UC_X86_REG_CR2)) {
        vector = 13
        errorCode = 0
    }
    if let handlers = state.pointee.handlers {
        if vector >= handlers.vectors {
            errorCode = UInt64(vector) * 8 + 2  // beyond the IDT's limit: #GP, IDT flag set
            vector = 13
        }
        // A handler that returns: the guest goes on after the instruction (int3 is a trap).
        if handlers.returning.contains(vector), state.pointee.deliverReturning(vector: vector, errorCode: errorCode ?? 0, engine) {
            return
        }
    }
    state.pointee.stopped = true
    state.pointee.stop = .exception
    state.pointee.vector = vector
    state.pointee.errorCode = errorCode
    var rip: UInt64 = 0
    uc_reg_read(engine, Int32(UC_X86_REG_RIP.rawValue), &rip)
    state.pointee.stopAddress = rip
    uc_emu_stop(engine)
}

let invalidMemoryHook: ph_mem_invalid_cb = { engine, type, address, size, _, user in
    let state = user!.assumingMemoryBound(to: TraceState.self)
    state.pointee.stopped = true
    state.pointee.stop = .unmapped
    switch type {
    case UC_MEM_WRITE_UNMAPPED, UC_MEM_WRITE_PROT: state.pointee.access = .write
    case UC_MEM_FETCH_UNMAPPED, UC_MEM_FETCH_PROT: state.pointee.access = .fetch
    default: state.pointee.access = .read
    }
    state.pointee.accessAddress = address
    state.pointee.accessSize = Int(size)
    var rip: UInt64 = 0
    uc_reg_read(engine, Int32(UC_X86_REG_RIP.rawValue), &rip)
    state.pointee.stopAddress = rip
    return false
}

/// An append-only buffer behind a raw pointer, for hook state (no Array on the hook path).
struct GrowingBuffer<Element> {
    private(set) var base: UnsafeMutablePointer<Element>?
    private(set) var count = 0
    private var capacity = 0

    @inline(__always)
    mutating func append(_ element: Element) {
        if count == capacity { grow() }
        (base.unsafelyUnwrapped + count).initialize(to: element)
        count += 1
    }

    private mutating func grow() {
        let bigger = max(256, capacity * 2)
        let new = UnsafeMutablePointer<Element>.allocate(capacity: bigger)
        if let base {
            new.moveInitialize(from: base, count: count)
            base.deallocate()
        }
        base = new
        capacity = bigger
    }

    var elements: [Element] { base.map { Array(UnsafeBufferPointer(start: $0, count: count)) } ?? [] }

    subscript(_ index: Int) -> Element { base.unsafelyUnwrapped[index] }

    /// Elements from `start` on.
    func elements(from start: Int) -> [Element] {
        guard let base, start < count else { return [] }
        return Array(UnsafeBufferPointer(start: base + start, count: count - start))
    }

    /// Empties the buffer, keeping its storage.
    mutating func removeAll() {
        base?.deinitialize(count: count)
        count = 0
    }

    func contains(_ element: Element) -> Bool where Element: Equatable {
        guard let base else { return false }
        return UnsafeBufferPointer(start: base, count: count).contains(element)
    }

    func release() {
        base?.deinitialize(count: count)
        base?.deallocate()
    }
}

// MARK: - Fast-forward records (FastForward.swift)

/// One counted block: the key of its slot and its instruction count.
struct BlockRecord: Hashable {
    var address: UInt64
    var bytes: UInt32
    var instructions: UInt32
}

extension TraceState {
    /// Records a counted block for the fast-forward (slow path only).
    mutating func record(_ slot: UnsafeMutablePointer<Slot>) {
        let block = BlockRecord(address: slot.pointee.address, bytes: slot.pointee.bytes, instructions: slot.pointee.instructions)
        if let ring = scoutRing, scoutCapacity > 0 {
            ring[scoutTotal % scoutCapacity] = block
            scoutTotal += 1
            scoutSinceResume += 1
        }
        if stepBlocks.count < stepBlockLimit { stepBlocks.append(block) }
    }
}

