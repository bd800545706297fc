import CUnicorn
#if canImport(Glibc)
import Glibc
#endif

/// An x86-64 machine in the state relocate_kernel hands to the purgatory:
/// long mode, an identity map over exactly the memory the harness mapped,
/// sparse physical memory, and exact instruction counting.
///
/// Unicorn 2.0.1 shapes it: page tables are walked only below 2^40, so a machine with memory
/// above runs flat (`AddressSpace`); non-identity mappings are silently wrong (so there are
/// none); host writes do not invalidate translated code (so one machine serves one run); and
/// some instructions it gets wrong are executed by the machine itself (`GuardedInstruction`).
/// No Unicorn type appears in this API.
public final class LongModeMachine {
    /// The Unicorn library this process runs with, from `uc_version`: "2.0.1" (Debian 12's
    /// 2.0.1.post1 reports 2.0.1); a release candidate gets "-rcN".
    public static let unicornVersion: String = {
        let packed = uc_version(nil, nil)
        let (major, minor, patch, extra) = (packed >> 24, packed >> 16 & 0xff, packed >> 8 & 0xff, packed & 0xff)
        return "\(major).\(minor).\(patch)" + (extra == 255 ? "" : "-rc\(extra)")
    }()

    /// Whether runs with exact counting reuse pooled engines (`EnginePool`): on by default,
    /// off with PURGATORY_HARNESS_ENGINE_REUSE=0 at start; `bench` turns it off and on to compare.
    public static var engineReuse: Bool {
        get { EnginePool.shared.enabled }
        set { EnginePool.shared.enabled = newValue }
    }

    public struct Region: Equatable, Sendable {
        public var name: String
        public var start: UInt64
        public var size: UInt64
        public var end: UInt64 { start + size }
    }

    public enum Counting: String, Sendable, CaseIterable {
        /// Block hook with per-block counts from the translation cache (the default).
        case exact
        /// `exact` plus a per-instruction hook counting the same thing independently.
        case crossCheck = "cross-check"
        /// No counting hooks: for measuring their cost. No budget and no spin detection, so
        /// only a run known to end belongs here (or pass a timeout: Unicorn's timer thread
        /// slows emulation by about 20%, measured, which is why it is not imposed).
        case off
    }

    public private(set) var regions: [Region] = []
    public let addressSpace: AddressSpace
    /// How accesses are translated, decided by `enter` from where the memory lies.
    public private(set) var translation: Translation = .walked(.four)
    /// The I/O port of the emulated 8250 UART (COM1 by default).
    public var uartBase: UInt16 {
        get { ports.uartBase }
        set { ports.uartBase = newValue }
    }
    let ports = PortState(uartBase: 0x3f8)
    let engine: OpaquePointer
    let state: UnsafeMutablePointer<TraceState>

    /// `reuseEngine`: take an engine from the pool (`EnginePool`) and give it back at `close`, if
    /// the run used only exact counting; otherwise a fresh engine, closed at `close`.
    public init(addressSpace: AddressSpace = AddressSpace(), determinism: Determinism = Determinism(seed: 0),
                reuseEngine: Bool = false) throws(MachineError) {
        self.addressSpace = addressSpace
        let handle: OpaquePointer
        if reuseEngine && EnginePool.shared.enabled {
            var taken = EnginePool.shared.take()
            if taken == nil { taken = try EnginePool.open() }
            let pooled = taken!
            handle = pooled.handle
            self.pooled = pooled
        } else {
            var opened: OpaquePointer?
            let err = uc_open(UC_ARCH_X86, UC_MODE_64, &opened)
            guard err == UC_ERR_OK, let opened else { throw MachineError(operation: "uc_open", reason: Self.text(err)) }
            handle = opened
        }
        engine = handle
        state = .allocate(capacity: 1)
        state.initialize(to: TraceState())
        state.pointee.engine = handle
        state.pointee.physicalBits = addressSpace.physicalBits
        state.pointee.timeStampBase = determinism.timeStampBase
    }

    private var closed = false
    private var hasRun = false
    /// The pooled engine this machine runs on, if any; `recyclable` once a run has ended as
    /// a pooled engine's runs must (exact counting, no error).
    private var pooled: EnginePool.Engine?
    private var recyclable = false

    deinit { close() }

    /// Releases the engine now (deinit does it otherwise); the machine is unusable afterwards.
    public func close() {
        guard !closed else { return }
        closed = true
        if var pooled, recyclable, pooled.uses + 1 < EnginePool.maximumUses, recycle() {
            pooled.uses += 1
            EnginePool.shared.give(pooled)
        } else if let pooled {
            EnginePool.close(pooled)
        } else {
            uc_close(engine)
        }
        for (pointer, size) in backing { munmap(pointer, size) }
        backing = []
        state.pointee.release()
        state.deinitialize(count: 1)
        state.deallocate()
    }

    /// Makes the engine as it was before its first run: translations of every region dropped,
    /// every region unmapped (which flushes their pages from the TLB), the pristine CPU context
    /// restored. False if Unicorn refused any of it (the engine is then closed instead).
    private func recycle() -> Bool {
        guard let pooled else { return false }
        for region in regions {
            guard ph_ctl_remove_cache(engine, region.start, region.end) == UC_ERR_OK,
                  uc_mem_unmap(engine, region.start, Int(region.size)) == UC_ERR_OK else { return false }
        }
        regions = []
        guard uc_context_restore(engine, pooled.pristine) == UC_ERR_OK else { return false }
        // Deleted hooks leave Unicorn's lists only when an emulation ends; until then every
        // block would still walk past them. An emulation with nothing mapped ends at once.
        _ = uc_emu_start(engine, 0, 0, 0, 0)
        return uc_context_restore(engine, pooled.pristine) == UC_ERR_OK
    }

    // MARK: Memory

    /// Host memory behind each region (mmap'd, so untouched pages cost nothing), released by `close`.
    private(set) var backing: [(pointer: UnsafeMutableRawPointer, size: Int)] = []

    /// Writes guest data bytes straight into host memory (no translated code is invalidated:
    /// only for bytes that are not code). False if no one region holds them all.
    @discardableResult
    func poke(_ bytes: [UInt8], at address: UInt64) -> Bool {
        guard let host = hostPointer(at: address, count: bytes.count) else { return false }
        bytes.withUnsafeBytes { UnsafeMutableRawPointer(mutating: host).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        return true
    }

    /// Host memory holding guest bytes [address, address + count), when one region holds them all.
    func hostPointer(at address: UInt64, count: Int) -> UnsafeRawPointer? {
        for (i, region) in regions.enumerated() where address >= region.start && address < region.end {
            guard UInt64(count) <= region.end - address else { return nil }
            return UnsafeRawPointer(backing[i].pointer + Int(address - region.start))
        }
        return nil
    }

    /// Addresses of the instructions the machine executes itself in this run.
    var guardedAddresses: [UInt64] {
        guard let addresses = state.pointee.guardedAddresses else { return [] }
        return Array(UnsafeBufferPointer(start: addresses, count: state.pointee.guardedCount))
    }

    /// Maps zeroed RAM holding `contents` at its start; page-aligned, non-overlapping, where the
    /// address space can have RAM. The bytes are placed in host memory before Unicorn sees it: no
    /// uc_mem_write, whose per-page code invalidation dominated the cost of a run's setup.
    public func map(_ name: String, at start: UInt64, size: UInt64, contents: [UInt8] = []) throws(MachineError) {
        var what: String { "map \(name) [\(hex(start)), +\(hex(size)))" }  // only for errors
        guard start % 0x1000 == 0, size % 0x1000 == 0, size > 0 else {
            throw MachineError(operation: what, reason: "not page-aligned")
        }
        if let refusal = addressSpace.refusal(start: start, size: size) {
            throw MachineError(operation: what, reason: refusal)
        }
        guard let hostSize = Int(exactly: size) else { throw MachineError(operation: what, reason: "too large for the host") }
        if let other = regions.first(where: { start < $0.end && $0.start < start + size }) {
            throw MachineError(operation: what, reason: "overlaps \(other.name)")
        }
        guard contents.count <= hostSize else { throw MachineError(operation: what, reason: "\(contents.count) bytes do not fit") }
        guard let host = mmap(nil, hostSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0),
              host != MAP_FAILED else {
            throw MachineError(operation: what, reason: "host mmap failed (\(String(cString: strerror(errno))))")
        }
        contents.withUnsafeBytes { bytes in
            if let source = bytes.baseAddress { host.copyMemory(from: source, byteCount: bytes.count) }
        }
        let err = uc_mem_map_ptr(engine, start, hostSize, UInt32(UC_PROT_ALL.rawValue), host)
        guard err == UC_ERR_OK else {
            munmap(host, hostSize)
            throw MachineError(operation: what, reason: Self.text(err))
        }
        backing.append((host, hostSize))
        regions.append(Region(name: name, start: start, size: size))
    }

    public func write(_ bytes: [UInt8], at address: UInt64) throws(MachineError) {
        guard !bytes.isEmpty else { return }
        let err = bytes.withUnsafeBytes { uc_mem_write(engine, address, $0.baseAddress, $0.count) }
        guard err == UC_ERR_OK else {
            throw MachineError(operation: "write \(bytes.count) bytes at \(hex(address))", reason: Self.text(err))
        }
    }

    /// The bytes at `address`, or nil where any of them is unmapped.
    public func read(at address: UInt64, count: Int) -> [UInt8]? {
        var bytes = [UInt8](repeating: 0, count: count)
        let err = bytes.withUnsafeMutableBytes { uc_mem_read(engine, address, $0.baseAddress, count) }
        return err == UC_ERR_OK ? bytes : nil
    }

    // MARK: Entry state

    /// Page-table bytes `installIdentityPaging` needs for the regions mapped so far.
    public func pageTableSize() -> UInt64 { Self.identityTableSize(regions, levels: addressSpace.levels) }

    /// Page-table bytes an identity map of `levels` over `regions` takes.
    public static func identityTableSize(_ regions: [Region], levels: AddressSpace.Levels) -> UInt64 {
        UInt64(IdentityMap(regions, levels: levels).pages) * 0x1000
    }

    /// Writes identity tables at `base` (already mapped, `pageTableSize()` bytes) covering every
    /// region mapped so far. Returns the CR3 value.
    public func installIdentityPaging(at base: UInt64) throws(MachineError) -> UInt64 {
        try write(IdentityMap(regions, levels: addressSpace.levels).bytes(at: base), at: base)
        return base
    }

    /// Maps a region whose page at `start + tablesOffset` onwards holds identity tables covering
    /// every region mapped so far and this one; `contents` fill the bytes before the tables.
    /// One mapping, no later writes. Returns CR3.
    public func mapWithPageTables(_ name: String, at start: UInt64, size: UInt64, tablesOffset: UInt64,
                                  contents: [UInt8] = []) throws(MachineError) -> UInt64 {
        let mine = Region(name: name, start: start, size: size)
        let tables = IdentityMap(regions + [mine], levels: addressSpace.levels)
        guard contents.count <= tablesOffset, tablesOffset <= size, UInt64(tables.pages) * 0x1000 <= size - tablesOffset,
              let offset = Int(exactly: tablesOffset) else {
            throw MachineError(operation: "map \(name)", reason: "\(tables.pages) pages of page tables do not fit at offset \(hex(tablesOffset)) of \(hex(size)) bytes")
        }
        let head = contents + [UInt8](repeating: 0, count: offset - contents.count)
        try map(name, at: start, size: size, contents: head + tables.bytes(at: start + tablesOffset))
        return start + tablesOffset
    }

    /// Puts the CPU in `entry`'s state. Memory at or above Unicorn's walk limit makes the run
    /// flat: CR0.PG stays clear, CR3 and CR4 are not loaded (the tables exist but nothing walks
    /// them); everything else is as given. Returns how the run will translate.
    @discardableResult
    public func enter(_ entry: EntryState) throws(MachineError) -> Translation {
        let flat = regions.contains { $0.end > AddressSpace.walkLimit }
        translation = flat ? .flat : .walked(addressSpace.levels)
        state.pointee.translation = translation
        state.pointee.efer = entry.control.efer
        if !flat {
            try setRegister(UC_X86_REG_CR3, entry.cr3)
            try setRegister(UC_X86_REG_CR4, entry.control.cr4)
        }
        var efer = uc_x86_msr(rid: 0xC000_0080, value: entry.control.efer)
        try check(uc_reg_write(engine, Int32(UC_X86_REG_MSR.rawValue), &efer), "write EFER")
        try setRegister(UC_X86_REG_CR0, flat ? entry.control.cr0 & ~ControlBits.cr0PG : entry.control.cr0)
        var gdt = uc_x86_mmr(selector: 0, base: entry.gdt.base, limit: UInt32(entry.gdt.limit), flags: 0)
        try check(uc_reg_write(engine, Int32(UC_X86_REG_GDTR.rawValue), &gdt), "write GDTR")
        var idt = uc_x86_mmr(selector: 0, base: entry.idt.base, limit: UInt32(entry.idt.limit), flags: 0)
        try check(uc_reg_write(engine, Int32(UC_X86_REG_IDTR.rawValue), &idt), "write IDTR")
        var registers = GeneralRegisters()
        registers[.rsp] = entry.rsp
        registers[.rip] = entry.rip
        try setRegisters(registers)
        try setRegister(UC_X86_REG_RFLAGS, entry.control.rflags)
        return translation
    }

    /// `enter` with the kexec entry state's control registers and empty GDT and IDT.
    public func setEntryState(cr3: UInt64, rip: UInt64, rsp: UInt64,
                              control: ControlState = .kexecEntry) throws(MachineError) {
        try enter(EntryState(control: control, cr3: cr3, rip: rip, rsp: rsp))
    }

    public func setRegisters(_ registers: GeneralRegisters) throws(MachineError) {
        for register in Register.allCases { try setRegister(Self.ucRegister[register.rawValue], registers[register]) }
    }

    public func registers() -> GeneralRegisters {
        GeneralRegisters(values: Register.allCases.map { readRegister(Self.ucRegister[$0.rawValue]) })
    }

    /// The control registers as the modelled CPU holds them: Unicorn's CR0, CR4 and RFLAGS, and
    /// EFER as the machine keeps it (Unicorn 2.0.1 drops SCE and NXE; see `unicornEFER`).
    public func controlState() -> ControlState {
        ControlState(cr0: readRegister(UC_X86_REG_CR0), cr4: readRegister(UC_X86_REG_CR4),
                     efer: state.pointee.efer, rflags: readRegister(UC_X86_REG_RFLAGS))
    }

    /// EFER as Unicorn holds it.
    public func unicornEFER() -> UInt64 {
        var efer = uc_x86_msr(rid: 0xC000_0080, value: 0)
        uc_reg_read(engine, Int32(UC_X86_REG_MSR.rawValue), &efer)
        return efer.value
    }

    // MARK: Running

    /// Runs from the current rip until the sentinel is reached, the guest spins,
    /// faults or halts, or `budget` instructions have run.
    ///
    /// `ranges` (sorted, disjoint, e.g. functions) attribute the count by block start: the outcome
    /// lists each entry into a different range; with `.crossCheck` the per-instruction hook also
    /// counts per range. `recordBlocks` > 0 records that many executed blocks in order (a slower hook).
    /// `guarded`: instructions the machine executes itself (see `GuardedInstruction`); they need
    /// `.crossCheck` (the per-instruction hook).
    public func run(until sentinel: UInt64, budget: UInt64, counting: Counting = .exact,
                    timeoutMicroseconds: UInt64 = 0, attributing ranges: [Range<UInt64>] = [],
                    recordBlocks: Int = 0, guarded: [UInt64: GuardedInstruction] = [:],
                    handlers: ExceptionHandlers? = nil, progress: ProgressReport? = nil,
                    fastForward: FastForwardOptions? = nil) throws(MachineError) -> RunOutcome {
        // Counters, stop reason and the block table belong to one run; a second run would
        // inherit them (and translated code stale after host writes), so it is refused.
        guard !hasRun else { throw MachineError(operation: "run", reason: "a machine runs once; create a new one") }
        hasRun = true
        state.pointee.sentinel = sentinel
        state.pointee.budget = budget
        state.pointee.checkpoint = progress.map { min(budget, $0.interval) } ?? budget
        state.pointee.progressInterval = progress?.interval ?? 0
        state.pointee.progress = progress.map { Unmanaged.passUnretained($0).toOpaque() }
        defer { withExtendedLifetime(progress) {} }
        state.pointee.handlers = handlers
        state.pointee.ports = Unmanaged.passUnretained(ports).toOpaque()
        try setAttribution(ranges, perInstruction: counting == .crossCheck)
        state.pointee.orderLimit = max(recordBlocks, 0)
        if !guarded.isEmpty {
            guard counting == .crossCheck else {
                throw MachineError(operation: "run", reason: "guarded instructions need the per-instruction hook (counting .crossCheck)")
            }
            let sorted = guarded.sorted { $0.key < $1.key }
            let addresses = UnsafeMutablePointer<UInt64>.allocate(capacity: sorted.count)
            let kinds = UnsafeMutablePointer<GuardedInstruction>.allocate(capacity: sorted.count)
            for (i, entry) in sorted.enumerated() {
                addresses[i] = entry.key
                (kinds + i).initialize(to: entry.value)
            }
            state.pointee.guardedAddresses = addresses
            state.pointee.guardedKinds = kinds
            state.pointee.guardedCount = sorted.count
        }
        var hooks: [uc_hook] = []
        defer { for hook in hooks { uc_hook_del(engine, hook) } }
        func add(_ body: (UnsafeMutablePointer<uc_hook>) -> uc_err, _ what: String) throws(MachineError) {
            var hook: uc_hook = 0
            try check(body(&hook), "add \(what) hook")
            hooks.append(hook)
        }
        let user = UnsafeMutableRawPointer(state)
        if counting != .off {
            let hook = recordBlocks > 0 ? recordingBlockHook : blockHook
            try add({ ph_hook_add_trace(engine, $0, Int32(UC_HOOK_BLOCK.rawValue), hook, user, 1, 0) }, "block")
        }
        if counting == .crossCheck {
            try add({ ph_hook_add_trace(engine, $0, Int32(UC_HOOK_CODE.rawValue), codeHook, user, 1, 0) }, "code")
        }
        try add({ ph_hook_add_intr(engine, $0, interruptHook, user) }, "interrupt")
        try add({ ph_hook_add_mem_invalid(engine, $0, invalidMemoryHook, user) }, "invalid-memory")
        let portUser = Unmanaged.passUnretained(ports).toOpaque()
        try add({ ph_hook_add_in(engine, $0, inHook, portUser) }, "in")
        try add({ ph_hook_add_out(engine, $0, outHook, portUser) }, "out")

        var start = readRegister(UC_X86_REG_RIP)
        let timeout = timeoutMicroseconds
        // With a fast-forward the run pauses (at the step's anchor, or to scout for one) and
        // resumes in the same engine: translated code stays valid, as the host writes no code.
        let driver = counting == .off ? nil : fastForward.map { HashFastForward(machine: self, options: $0) }
        driver?.start()
        var err: uc_err
        while true {
            err = uc_emu_start(engine, start, sentinel, timeout, 0)
            if let fixup = state.pointee.pendingFixup {
                state.pointee.pendingFixup = nil
                state.pointee.apply(fixup)
            }
            guard let driver, err == UC_ERR_OK, state.pointee.stop == .pause || state.pointee.stop == .scout else { break }
            let why = state.pointee.stop, at = state.pointee.stopAddress
            state.pointee.stopped = false
            state.pointee.stop = .none
            guard let next = driver.paused(why, at: at) else { break }
            start = next
        }
        driver?.finish()
        var registers = registers()
        // A stop from the block hook leaves rip wherever the last per-instruction hook synced it;
        // the block the hook refused is where the guest would resume.
        if state.pointee.stop == .budget || state.pointee.stop == .spin { registers[.rip] = state.pointee.stopAddress }
        let rip = registers[.rip]
        let s = state.pointee
        let reason: StopReason
        switch s.stop {
        case .spin: reason = .spin(at: s.stopAddress)
        case .budget: reason = .budgetExhausted
        case .sentinel: reason = .reachedSentinel
        case .exception: reason = .exception(vector: s.vector, rip: s.stopAddress)
        case .unmapped: reason = .unmappedAccess(kind: s.access, address: s.accessAddress, size: s.accessSize, rip: s.stopAddress)
        case .refused: reason = .unmodelled(rip: s.stopAddress, reason: s.note ?? "")
        case .pause, .scout: reason = .emulatorError("the fast-forward stopped the run at \(hex(s.stopAddress))")
        case .none:
            if err == UC_ERR_INSN_INVALID {
                reason = .exception(vector: 6, rip: rip)  // #UD: Unicorn reports it as an error, not an interrupt
            } else if err != UC_ERR_OK {
                reason = .emulatorError(Self.text(err))
            } else if rip == sentinel {
                reason = .reachedSentinel
            } else if let byte = read(at: rip &- 1, count: 1), byte == [0xf4] {
                reason = .halted(at: rip &- 1)
            } else if counting == .off {
                reason = .budgetExhausted
            } else {
                reason = .emulatorError("emulation ended at \(hex(rip)) with no reason (\(Self.text(err)))")
            }
        }
        if s.requestCacheFailed {
            throw MachineError(operation: "count instructions", reason: "uc_ctl_request_cache did not return a block")
        }
        var outcome = RunOutcome(reason: reason, instructions: s.instructions,
                          crossCheckInstructions: counting == .crossCheck ? s.crossCheckInstructions : nil,
                          lastBlock: s.lastCounted.map { ($0.address, $0.bytes, $0.instructions) } ?? (0, 0, 0),
                          registers: registers, rflags: readRegister(UC_X86_REG_RFLAGS),
                          blocks: blockCounts(), serialOutput: ports.transmitted,
                          otherPortAccesses: ports.otherAccesses)
        if s.stop == .exception {
            outcome.exceptionErrorCode = s.errorCode
            outcome.exceptionNote = s.note
        }
        outcome.fastForward = driver?.report
        if let mismatch = driver?.report.mismatch {
            // The caller repeats the run in full emulation; nothing of this one is to be trusted.
            outcome.reason = .emulatorError("fast-forward abandoned: \(mismatch)")
        }
        outcome.guardedExecuted = s.guardedSeen.elements
        outcome.handledExceptions = s.handled.elements
        outcome.translation = translation
        outcome.rangeEntries = s.entries.elements
        outcome.crossCheckPerRange = s.instructionsPerRange.map { Array(UnsafeBufferPointer(start: $0, count: s.rangeCount + 1)) }
        if recordBlocks > 0 {
            outcome.executedBlocks = s.order.elements
            outcome.executedBlocksDropped = s.orderDropped
        }
        // Only exact counting's hook types may leave the engine for another run (EnginePool).
        recyclable = counting == .exact && guarded.isEmpty
        return outcome
    }

    private func setAttribution(_ ranges: [Range<UInt64>], perInstruction: Bool) throws(MachineError) {
        for (a, b) in zip(ranges, ranges.dropFirst()) where b.lowerBound < a.upperBound {
            throw MachineError(operation: "attribute counts", reason: "ranges \(hex(a.lowerBound))..<\(hex(a.upperBound)) and \(hex(b.lowerBound))..<\(hex(b.upperBound)) are not sorted and disjoint")
        }
        let n = ranges.count
        if n > 0 {
            let starts = UnsafeMutablePointer<UInt64>.allocate(capacity: n)
            let ends = UnsafeMutablePointer<UInt64>.allocate(capacity: n)
            for (i, r) in ranges.enumerated() {
                starts[i] = r.lowerBound
                ends[i] = r.upperBound
            }
            state.pointee.rangeStarts = starts
            state.pointee.rangeEnds = ends
        }
        state.pointee.rangeCount = n
        if perInstruction {
            let counts = UnsafeMutablePointer<UInt64>.allocate(capacity: n + 1)
            counts.initialize(repeating: 0, count: n + 1)
            state.pointee.instructionsPerRange = counts
        }
    }

    private func blockCounts() -> [BlockCount] {
        (0 ... state.pointee.mask).compactMap { i in
            let slot = state.pointee.slots[i]
            return slot.address == .max || slot.executions == 0 ? nil
                : BlockCount(address: slot.address, bytes: slot.bytes, instructions: slot.instructions, executions: slot.executions)
        }.sorted { $0.address < $1.address }
    }

    // MARK: Unicorn plumbing

    static let ucRegister: [uc_x86_reg] = [
        UC_X86_REG_RAX, UC_X86_REG_RCX, UC_X86_REG_RDX, UC_X86_REG_RBX, UC_X86_REG_RSP, UC_X86_REG_RBP,
        UC_X86_REG_RSI, UC_X86_REG_RDI, UC_X86_REG_R8, UC_X86_REG_R9, UC_X86_REG_R10, UC_X86_REG_R11,
        UC_X86_REG_R12, UC_X86_REG_R13, UC_X86_REG_R14, UC_X86_REG_R15, UC_X86_REG_RIP,
    ]

    func setRegister(_ register: uc_x86_reg, _ value: UInt64) throws(MachineError) {
        var value = value
        try check(uc_reg_write(engine, Int32(register.rawValue), &value), "write register \(register.rawValue)")
    }

    func readRegister(_ register: uc_x86_reg) -> UInt64 {
        var value: UInt64 = 0
        uc_reg_read(engine, Int32(register.rawValue), &value)
        return value
    }

    func check(_ err: uc_err, _ operation: String) throws(MachineError) {
        guard err == UC_ERR_OK else { throw MachineError(operation: operation, reason: Self.text(err)) }
    }

    static func text(_ err: uc_err) -> String { String(cString: uc_strerror(err)) }
}

func hex<T: BinaryInteger>(_ value: T) -> String { "0x" + String(value, radix: 16) }
