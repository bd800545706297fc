import CUnicorn

/// A second Unicorn engine over the same host memory, for the fast-forward: it runs single
/// steps with memory hooks (to see every access) and from projected states (probes), and
/// every store it makes is undone. The machine's own engine never gets memory hooks:
/// Unicorn 2.0.1 compiles them into the translated code, which can cut the code into other
/// blocks (measured on kexec-tools' straight-line sha256_process) and so change block counts.
final class ShadowEngine {
    let engine: OpaquePointer
    let state: UnsafeMutablePointer<ShadowState>
    private var hooks: [uc_hook] = []
    private let context: OpaquePointer
    private let mainContext: OpaquePointer

    /// An engine mapping every region of `machine` onto the same host bytes.
    init(mirroring machine: LongModeMachine) throws(MachineError) {
        var handle: OpaquePointer?
        var err = uc_open(UC_ARCH_X86, UC_MODE_64, &handle)
        guard err == UC_ERR_OK, let handle else { throw MachineError(operation: "uc_open (fast-forward)", reason: LongModeMachine.text(err)) }
        engine = handle
        let mapped = zip(machine.regions, machine.backing).map { HostRegion(start: $0.start, end: $0.end, base: $1.pointer) }
        state = .allocate(capacity: 1)
        state.initialize(to: ShadowState(regions: mapped))
        var mine: OpaquePointer?, theirs: OpaquePointer?
        err = uc_context_alloc(handle, &mine)
        let err2 = uc_context_alloc(machine.engine, &theirs)
        guard err == UC_ERR_OK, err2 == UC_ERR_OK, let mine, let theirs else {
            uc_close(handle)
            state.deinitialize(count: 1)
            state.deallocate()
            throw MachineError(operation: "uc_context_alloc", reason: LongModeMachine.text(err == UC_ERR_OK ? err2 : err))
        }
        context = mine
        mainContext = theirs
        do throws(MachineError) {
            for (region, backing) in zip(machine.regions, machine.backing) {
                let err = uc_mem_map_ptr(engine, region.start, backing.size, UInt32(UC_PROT_ALL.rawValue), backing.pointer)
                guard err == UC_ERR_OK else { throw MachineError(operation: "map \(region.name) (fast-forward)", reason: LongModeMachine.text(err)) }
            }
            let user = UnsafeMutableRawPointer(state)
            func add(_ body: (UnsafeMutablePointer<uc_hook>) -> uc_err) throws(MachineError) {
                var hook: uc_hook = 0
                let err = body(&hook)
                guard err == UC_ERR_OK else { throw MachineError(operation: "add hook (fast-forward)", reason: LongModeMachine.text(err)) }
                hooks.append(hook)
            }
            try add { ph_hook_add_trace(engine, $0, Int32(UC_HOOK_BLOCK.rawValue), shadowBlockHook, user, 1, 0) }
            try add { ph_hook_add_mem(engine, $0, Int32(UC_HOOK_MEM_READ.rawValue | UC_HOOK_MEM_WRITE.rawValue), shadowMemoryHook, user) }
            try add { ph_hook_add_intr(engine, $0, shadowInterruptHook, user) }
            try add { ph_hook_add_mem_invalid(engine, $0, shadowInvalidHook, user) }
            try add { ph_hook_add_in(engine, $0, shadowInHook, user) }
            try add { ph_hook_add_out(engine, $0, shadowOutHook, user) }
        } catch {
            close()
            throw error
        }
    }

    private var closed = false
    func close() {
        guard !closed else { return }
        closed = true
        uc_context_free(context)
        uc_context_free(mainContext)
        uc_close(engine)
        state.pointee.release()
        state.deinitialize(count: 1)
        state.deallocate()
    }

    deinit { close() }

    /// Drops translated code over `ranges` (a new loop: code could have changed since).
    func forget(_ ranges: [Range<UInt64>]) {
        for r in ranges { _ = ph_ctl_remove_cache(engine, r.lowerBound & ~0xfff, (r.upperBound + 0xfff) & ~0xfff) }
    }

    /// Result of one step run here.
    struct Step {
        var result: StepResult
        var accesses: [MemoryAccess]
        var overflow: Bool
    }

    /// Runs one step from `main`'s CPU state (all of it: registers, flags, segments, control
    /// registers), with `adjust` applied first (a probe's projected registers), following
    /// `runs` (the step's instructions as contiguous address ranges) from `anchor`, and undoes
    /// every store it made. Memory writes the caller made before are the caller's to undo.
    func step(from main: LongModeMachine, runs: [Range<UInt64>], anchor: UInt64, sentinel: UInt64,
              log: Bool, adjust: (ShadowEngine) -> Void = { _ in }) -> Step {
        uc_context_save(main.engine, mainContext)
        uc_context_restore(engine, mainContext)
        adjust(self)
        let expected = UnsafeMutableBufferPointer<Range<UInt64>>.allocate(capacity: max(runs.count, 1))
        _ = expected.initialize(from: runs)
        defer { expected.deallocate() }
        state.pointee.begin(runs: UnsafeBufferPointer(start: expected.baseAddress, count: runs.count), anchor: anchor, log: log)
        let err = uc_emu_start(engine, anchor, sentinel, 0, 0)
        if state.pointee.result == .running {
            state.pointee.result = err == UC_ERR_OK ? .deviated(offset: state.pointee.offset, address: readRegister(UC_X86_REG_RIP)) : .fault
        }
        // Undo, newest first.
        let undo = state.pointee.undo
        for i in stride(from: undo.count - 1, through: 0, by: -1) {
            // Straight into host memory: data only (a step never writes code), so no translated
            // block needs invalidating.
            if let host = state.pointee.host(undo[i].address, Int(undo[i].size)) {
                withUnsafeBytes(of: undo[i].old) { host.copyMemory(from: $0.baseAddress!, byteCount: Int(undo[i].size)) }
            }
        }
        return Step(result: state.pointee.result, accesses: log ? state.pointee.accesses.elements : [], overflow: state.pointee.overflow)
    }

    func setRegister(_ register: uc_x86_reg, _ value: UInt64) {
        var value = value
        uc_reg_write(engine, Int32(register.rawValue), &value)
    }

    func readRegister(_ register: uc_x86_reg) -> UInt64 {
        var value: UInt64 = 0
        uc_reg_read(engine, Int32(register.rawValue), &value)
        return value
    }
}

/// How a step went, in the terms of its instruction stream (which both engines share, whatever
/// blocks each cuts it into).
enum StepResult: Equatable {
    case running
    /// Every instruction of the step in order, then the anchor again.
    case returned
    /// After `offset` bytes of the step's instructions, execution went to `address` instead.
    case deviated(offset: Int, address: UInt64)
    /// An exception, an access to unmapped memory, or port I/O.
    case fault

    /// Follows `blocks` (address, bytes) along `runs` from their start: the same rule as the
    /// shadow's block hook, for blocks the machine itself ran. `.running` if they end first.
    static func follow(_ blocks: [(address: UInt64, bytes: UInt32)], along runs: [Range<UInt64>], anchor: UInt64) -> StepResult {
        var run = 0, cursor = runs.first?.lowerBound ?? 0, offset = 0
        for b in blocks {
            if run == runs.count { return b.address == anchor ? .returned : .deviated(offset: offset, address: b.address) }
            let end = b.address &+ UInt64(b.bytes)
            if b.address != cursor || end > runs[run].upperBound { return .deviated(offset: offset, address: b.address) }
            offset += Int(b.bytes)
            cursor = end
            if cursor == runs[run].upperBound {
                run += 1
                cursor = run < runs.count ? runs[run].lowerBound : 0
            }
        }
        return .running
    }
}

/// One guest data access as the shadow's memory hook sees it (before a write lands).
struct MemoryAccess: Equatable {
    var write: Bool
    var size: UInt8
    var address: UInt64
    /// The value written (little-endian, `size` bytes); 0 for reads.
    var value: UInt64
}

/// Guest RAM [start, end) at host address `base`.
struct HostRegion {
    var start: UInt64
    var end: UInt64
    var base: UnsafeMutableRawPointer
}

/// The shadow engine's hook state (behind a raw pointer, like `TraceState`).
struct ShadowState {
    /// Owned: `release` frees it.
    let regions: UnsafeMutablePointer<HostRegion>
    let regionCount: Int
    var lastRegion = 0

    init(regions mapped: [HostRegion]) {
        regions = .allocate(capacity: max(mapped.count, 1))
        regions.initialize(from: mapped, count: mapped.count)
        regionCount = mapped.count
    }

    /// Host memory for guest bytes [address, address + count) within one region.
    mutating func host(_ address: UInt64, _ count: Int) -> UnsafeMutableRawPointer? {
        if lastRegion < regionCount {
            let r = regions[lastRegion]
            if address >= r.start, address &+ UInt64(count) <= r.end { return r.base + Int(address - r.start) }
        }
        for i in 0 ..< regionCount where address >= regions[i].start && address &+ UInt64(count) <= regions[i].end {
            lastRegion = i
            return regions[i].base + Int(address - regions[i].start)
        }
        return nil
    }

    var runs = UnsafeBufferPointer<Range<UInt64>>(start: nil, count: 0)
    var run = 0
    var cursor: UInt64 = 0
    var offset = 0
    var anchor: UInt64 = 0
    var result = StepResult.running
    var stopped = false
    var log = false
    var accesses = GrowingBuffer<MemoryAccess>()
    var overflow = false
    static let accessLimit = 1 << 16
    var undo = GrowingBuffer<(address: UInt64, size: UInt8, old: UInt64)>()

    mutating func begin(runs: UnsafeBufferPointer<Range<UInt64>>, anchor: UInt64, log: Bool) {
        self.runs = runs
        run = 0
        cursor = runs.first?.lowerBound ?? 0
        offset = 0
        self.anchor = anchor
        result = .running
        stopped = false
        self.log = log
        accesses.removeAll()
        overflow = false
        undo.removeAll()
    }

    mutating func end(_ result: StepResult, _ engine: OpaquePointer?) {
        if self.result == .running { self.result = result }
        stopped = true
        uc_emu_stop(engine)
    }

    func release() {
        accesses.release()
        undo.release()
        regions.deallocate()
    }
}

let shadowBlockHook: ph_block_cb = { engine, address, size, user in
    let s = user.unsafelyUnwrapped.assumingMemoryBound(to: ShadowState.self)
    guard !s.pointee.stopped else { return }
    if s.pointee.run == s.pointee.runs.count {
        s.pointee.end(address == s.pointee.anchor ? .returned : .deviated(offset: s.pointee.offset, address: address), engine)
        return
    }
    let end = address &+ UInt64(size)
    let run = s.pointee.runs[s.pointee.run]
    if address != s.pointee.cursor || end > run.upperBound {
        s.pointee.end(.deviated(offset: s.pointee.offset, address: address), engine)
        return
    }
    s.pointee.offset += Int(size)
    s.pointee.cursor = end
    if end == run.upperBound {
        s.pointee.run += 1
        s.pointee.cursor = s.pointee.run < s.pointee.runs.count ? s.pointee.runs[s.pointee.run].lowerBound : 0
    }
}

let shadowMemoryHook: ph_mem_cb = { engine, type, address, size, value, user in
    let s = user.unsafelyUnwrapped.assumingMemoryBound(to: ShadowState.self)
    let write = type == UC_MEM_WRITE
    if write {
        var old: UInt64 = 0
        if size <= 8, let host = s.pointee.host(address, Int(size)) {
            withUnsafeMutableBytes(of: &old) { $0.baseAddress!.copyMemory(from: host, byteCount: Int(size)) }
            s.pointee.undo.append((address, UInt8(size), old))
        } else {
            s.pointee.end(.fault, engine)  // a store the undo log cannot hold
        }
    }
    guard s.pointee.log else { return }
    if s.pointee.accesses.count < ShadowState.accessLimit {
        s.pointee.accesses.append(MemoryAccess(write: write, size: UInt8(truncatingIfNeeded: size), address: address,
                                               value: UInt64(bitPattern: value)))
    } else {
        s.pointee.overflow = true
    }
}

let shadowInterruptHook: ph_intr_cb = { engine, _, user in
    user!.assumingMemoryBound(to: ShadowState.self).pointee.end(.fault, engine)
}

let shadowInvalidHook: ph_mem_invalid_cb = { engine, _, _, _, _, user in
    user!.assumingMemoryBound(to: ShadowState.self).pointee.end(.fault, engine)
    return false
}

let shadowInHook: ph_in_cb = { engine, _, _, user in
    user!.assumingMemoryBound(to: ShadowState.self).pointee.end(.fault, engine)
    return 0xffff_ffff
}

let shadowOutHook: ph_out_cb = { engine, _, _, _, user in
    user!.assumingMemoryBound(to: ShadowState.self).pointee.end(.fault, engine)
}
