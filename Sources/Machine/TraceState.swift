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
        var spins: Bool = false
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
    var sentinel: UInt64 = .max
    var lastBlockAddress: UInt64 = 0
    var lastBlockInstructions: UInt32 = 0
    var lastBlockBytes: UInt32 = 0

    /// Set when a hook asked emulation to stop; later hooks in the same block count nothing.
    var stopped = false
    var stop: Stop = .none
    var stopAddress: UInt64 = 0
    var vector: UInt32 = 0
    var access: AccessKind = .read
    var accessAddress: UInt64 = 0
    var accessSize: Int = 0
    var requestCacheFailed = false

    enum Stop { case none, spin, budget, sentinel, exception, unmapped }

    init(capacity: Int = 1024) {
        slots = .allocate(capacity: capacity)
        slots.initialize(repeating: Slot(), count: capacity)
        mask = capacity - 1
    }

    func release() { slots.deallocate() }

    @inline(__always)
    static func hash(_ address: UInt64) -> Int {
        Int(truncatingIfNeeded: (address ^ (address >> 29)) &* 0x9E37_79B9_7F4A_7C15 >> 20)
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
                            spins: TraceState.isSpin(engine, address, bytes))
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

    /// A block that can never leave itself and changes nothing: any number of
    /// `nop` (90) or `pause` (F3 90) followed by `jmp` (EB rel8 / E9 rel32) back to its start.
    static func isSpin(_ engine: OpaquePointer?, _ address: UInt64, _ bytes: UInt32) -> Bool {
        guard bytes >= 2, bytes <= 32 else { return false }
        var code = [UInt8](repeating: 0, count: Int(bytes))
        guard uc_mem_read(engine, address, &code, Int(bytes)) == UC_ERR_OK else { return false }
        var i = 0
        while i < code.count {
            if code[i] == 0x90 { i += 1; continue }
            if code[i] == 0xf3, i + 1 < code.count, code[i + 1] == 0x90 { i += 2; continue }
            break
        }
        let end = Int64(bytes)
        if i + 2 == code.count, code[i] == 0xeb {
            return end + Int64(Int8(bitPattern: code[i + 1])) == 0
        }
        if i + 5 == code.count, code[i] == 0xe9 {
            let rel = Int32(bitPattern: UInt32(code[i + 1]) | UInt32(code[i + 2]) << 8 | UInt32(code[i + 3]) << 16 | UInt32(code[i + 4]) << 24)
            return end + Int64(rel) == 0
        }
        return false
    }
}

// MARK: - C callbacks. Each captures nothing and finds its state through `user`.

let blockHook: ph_block_cb = { engine, address, size, user in
    let state = user!.assumingMemoryBound(to: TraceState.self)
    if state.pointee.stopped { return }
    if address == state.pointee.sentinel {
        state.pointee.stopped = true
        state.pointee.stop = .sentinel
        uc_emu_stop(engine)
        return
    }
    let slot = state.pointee.slot(address, size)
    if slot.pointee.spins {
        state.pointee.stopped = true
        state.pointee.stop = .spin
        state.pointee.stopAddress = address
        uc_emu_stop(engine)
        return
    }
    let count = UInt64(slot.pointee.instructions)
    slot.pointee.executions &+= 1
    state.pointee.instructions &+= count
    state.pointee.lastBlockAddress = address
    state.pointee.lastBlockInstructions = slot.pointee.instructions
    state.pointee.lastBlockBytes = size
    if state.pointee.instructions >= state.pointee.budget {
        // Unicorn finishes the current block after a stop request, so it is counted.
        state.pointee.stopped = true
        state.pointee.stop = .budget
        uc_emu_stop(engine)
    }
}

let codeHook: ph_block_cb = { _, _, _, user in
    let state = user!.assumingMemoryBound(to: TraceState.self)
    if !state.pointee.stopped { state.pointee.crossCheckInstructions &+= 1 }
}

let interruptHook: ph_intr_cb = { engine, vector, user in
    let state = user!.assumingMemoryBound(to: TraceState.self)
    guard state.pointee.stop == .none || state.pointee.stop == .budget else { return }
    state.pointee.stopped = true
    state.pointee.stop = .exception
    state.pointee.vector = vector
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
