import Disassembly
import ELF
import Loader
import Machine

extension Scenario {
    /// Everything the machine is built from, so a run can be repeated exactly.
    struct MachineImage {
        var purgatory: LoadedPurgatory
        /// The UART's port: the purgatory's own `serial_base` when it has one (kexec-tools), else COM1.
        var uartBase: UInt16
        var segments: [Segment]
        var harness: Segment
        var addressSpace: AddressSpace
        var entry: EntryState
        var sentinel: UInt64
        var budget: UInt64
        /// The code map's pieces, for attribution (empty: none).
        var ranges: [Range<UInt64>]
        /// The IDT's handlers (6.16), if the profile has them.
        var handlers: ExceptionHandlers?
        /// Bytes the digest covers (for --fast-hash's threshold).
        var bytesHashed: UInt64 = 0
        /// How the run translates: walked below Unicorn's 2^40, flat if anything lies above.
        var translation: Translation {
            ([purgatory.loadAddress &+ purgatory.layout.segmentSize] + (segments + [harness]).map(\.end)).contains { $0 > AddressSpace.walkLimit }
                ? .flat : .walked(addressSpace.levels)
        }
    }

    /// One emulation, with what judging it needs from the machine before it is closed.
    struct Emulation {
        var outcome: RunOutcome
        /// Exact: a fault inside a block is trimmed to the faulting instruction.
        var instructions: UInt64
        /// The instruction at the stop address, decoded while memory was still there.
        var instruction: Instruction?
        /// System instructions in the blocks that ran, for the machine to execute itself.
        var systemInstructions: [UInt64: GuardedInstruction] = [:]
        /// With `fastHash`: what the fast-forward did, and why a run was repeated without it.
        var fastForward: FastForwardReport?
        var fellBack: String?
    }

    /// Runs the image, then again as often as needed for an exact answer: with the per-instruction
    /// hook when an access hit unmapped memory (Unicorn 2.0.1 leaves rip at the block start, so only
    /// that hook names the instruction), and with the machine executing the system instructions the
    /// last run reached (`GuardedInstruction`) until no new one is reached. Every run is
    /// deterministic, so everything else is equal between them.
    func emulate(_ image: MachineImage, _ timings: inout RunReport.Timings, _ lap: inout Stopwatch) throws(HarnessError) -> Emulation {
        var run = try execute(image, counting: counting, &timings, &lap)
        var guarded: [UInt64: GuardedInstruction] = [:]
        var perInstruction = counting == .crossCheck
        for _ in 0 ..< 16 {
            let unmapped: Bool
            if case .unmappedAccess = run.outcome.reason { unmapped = true } else { unmapped = false }
            let new = run.systemInstructions.filter { guarded[$0.key] == nil }
            if new.isEmpty && (perInstruction || !unmapped || counting == .off) { break }
            guarded.merge(new) { old, _ in old }
            perInstruction = true
            var ignored = RunReport.Timings(), spare = Stopwatch()
            run = try execute(image, counting: .crossCheck, guarded: guarded, &ignored, &spare)
            if counting != .crossCheck { run.outcome.crossCheckInstructions = nil }
        }
        return run
    }

    /// One run of the image; with `fastHash`, repeated in full emulation if the fast-forward
    /// found anything outside the pattern after it had computed steps on the host.
    private func execute(_ image: MachineImage, counting: LongModeMachine.Counting, guarded: [UInt64: GuardedInstruction] = [:],
                         _ timings: inout RunReport.Timings, _ lap: inout Stopwatch) throws(HarnessError) -> Emulation {
        let options = fastHash && image.bytesHashed >= fastHashMinimumBytes ? Self.fastForwardOptions(checkEvery: fastHashCheckEvery) : nil
        var run = try execute(image, counting: counting, guarded: guarded, fastForward: options, &timings, &lap)
        if let mismatch = run.outcome.fastForward?.mismatch {
            let first = run.outcome.fastForward
            var spare = RunReport.Timings()
            run = try execute(image, counting: counting, guarded: guarded, fastForward: nil, &spare, &lap)
            timings.emulation += spare.setup + spare.emulation + spare.teardown
            run.fastForward = first
            run.fellBack = mismatch
        } else if fastHash && options == nil {
            var report = FastForwardReport()
            report.notes = ["not attempted: \(image.bytesHashed) bytes hashed, below \(fastHashMinimumBytes)"]
            run.fastForward = report
        } else {
            run.fastForward = run.outcome.fastForward
        }
        return run
    }

    /// The fast-forward's host side: libcrypto's SHA-256 block function and Capstone's register effects.
    static func fastForwardOptions(checkEvery: Int) -> FastForwardOptions {
        var options = FastForwardOptions(
            compress: { state, blocks, count in HostSHA256.compress(state, blocks, blocks: count) },
            registerEffects: { bytes, address in
                Disassembler()?.registerEffects(bytes, at: address)?.map {
                    InstructionEffects(address: $0.address, length: $0.length, reads: $0.reads, writes: $0.writes,
                                       flagsRead: $0.flagsRead, flagsWritten: $0.flagsWritten, otherState: $0.otherState)
                }
            })
        options.checkEvery = max(checkEvery, 2)
        return options
    }

    private func execute(_ image: MachineImage, counting: LongModeMachine.Counting, guarded: [UInt64: GuardedInstruction],
                         fastForward: FastForwardOptions?, _ timings: inout RunReport.Timings,
                         _ lap: inout Stopwatch) throws(HarnessError) -> Emulation {
        do throws(MachineError) {
            let machine = try LongModeMachine(addressSpace: image.addressSpace, determinism: Determinism(seed: seed),
                                              reuseEngine: counting == .exact)
            defer { machine.close() }
            machine.uartBase = image.uartBase
            let purgatory = image.purgatory
            try machine.map("purgatory", at: purgatory.loadAddress, size: purgatory.layout.segmentSize, contents: purgatory.buffer)
            for segment in image.segments {
                try machine.map(segment.name, at: segment.start, size: segment.memsz, contents: segment.data)
            }
            _ = try machine.mapWithPageTables("harness", at: image.harness.start, size: image.harness.memsz,
                                              tablesOffset: image.entry.cr3 - image.harness.start, contents: image.harness.data)
            try machine.enter(image.entry)
            timings.setup = lap.split()

            let outcome = try machine.run(until: image.sentinel, budget: image.budget, counting: counting,
                                          attributing: image.ranges, recordBlocks: counting == .off ? 0 : recordBlocks,
                                          guarded: guarded, handlers: image.handlers, progress: progress,
                                          fastForward: fastForward)
            timings.emulation = lap.split()

            // Capstone only when something needs decoding: a stop inside a block, or bytes the cache has not seen.
            lazy var decoder = Disassembler()
            var stop: UInt64?
            switch outcome.reason {
            case .exception(_, let rip), .unmappedAccess(.read, _, _, let rip), .unmappedAccess(.write, _, _, let rip),
                 .unmodelled(let rip, _): stop = rip
            default: stop = nil
            }
            let instruction = stop.flatMap { rip in machine.read(at: rip, count: 15).flatMap { decoder?.decode($0, at: rip, limit: 1).first } }
            var emulation = Emulation(outcome: outcome, instructions: exactCount(outcome, machine: machine, decoder: { decoder }),
                                      instruction: instruction)
            // Every distinct executed block decoded once (hundreds per run): which system instructions ran.
            // Decoded once per distinct bytes for the whole process (`BlockDecodeCache`).
            // A block that ended in an exception may report fewer bytes than its last instruction
            // has (measured: `mov cr0, rax` leaving long mode), so 15 more bytes are read where mapped.
            if counting != .off {
                for block in outcome.blocks {
                    let end = block.address &+ UInt64(block.bytes)
                    guard let bytes = machine.read(at: block.address, count: Int(block.bytes) + 15)
                            ?? machine.read(at: block.address, count: Int(block.bytes)) else { continue }
                    let found = BlockDecodeCache.shared.systemInstructions(bytes, at: block.address) { decoder?.systemInstructions($0, at: $1) }
                    for (address, found) in found where address < end {
                        if let kind = Self.guarded(found) { emulation.systemInstructions[address] = kind }
                    }
                }
            }
            timings.results += lap.split()  // decoding what ran
            machine.close()
            timings.teardown = lap.split()
            return emulation
        } catch {
            throw .machine(error)
        }
    }

    /// The machine's name for what Capstone found.
    static func guarded(_ instruction: SystemInstruction) -> GuardedInstruction? {
        func register(_ name: String) -> Register? { Register.allCases.first { $0.description == name } }
        switch instruction {
        case .vectorState(let xsave): return .vectorState(xsave: xsave)
        case .readControl(let n): return .readControl(n)
        case .writeControl(let n, let source): return register(source).map { .writeControl(n, from: $0) }
        case .tlbInvalidation: return .tlbInvalidation
        case .readMSR: return .readMSR
        case .writeMSR: return .writeMSR
        case .syscall: return .syscall
        case .sysret: return .sysret
        case .sysenter: return .sysenter
        case .timeStamp(let aux): return .timeStamp(aux: aux)
        }
    }

    /// The block hook counts whole blocks; a fault inside a block ran only part of it
    /// (the faulting instruction included, as the per-instruction hook counts it).
    private func exactCount(_ outcome: RunOutcome, machine: LongModeMachine, decoder: () -> Disassembler?) -> UInt64 {
        let rip: UInt64
        switch outcome.reason {
        case .exception(_, let at), .unmappedAccess(_, _, _, let at), .unmodelled(let at, _): rip = at
        default: return outcome.instructions
        }
        let block = outcome.lastBlock
        guard rip >= block.address, rip < block.address &+ UInt64(block.bytes),
              let bytes = machine.read(at: block.address, count: Int(block.bytes)), let decoder = decoder() else { return outcome.instructions }
        let ran = decoder.count(bytes, at: block.address, through: rip)
        return outcome.instructions &- UInt64(block.instructions) &+ UInt64(ran)
    }
}

extension MachineInfo {
    init(_ image: Scenario.MachineImage) {
        physBits = image.addressSpace.physicalBits
        paging = image.translation.name
        identityMap = image.addressSpace.levels.name
        if image.translation == .flat {
            pagingNote = "memory at or above 2^40: Unicorn 2.0.1 walks page tables only for 40-bit physical addresses, so the run executes with paging off (flat); the kernel's \(identityMap) identity map was built (CR3 \(hex(image.entry.cr3))) but not walked, and the machine refuses any instruction whose result depends on paging"
        }
    }
}

extension EntryStateInfo {
    init(_ image: Scenario.MachineImage) {
        let entry = image.entry
        let offset = entry.rsp &- image.harness.start
        let bytes = offset < UInt64(image.harness.data.count) ? image.harness.data.dropFirst(Int(offset)).prefix(8) : []
        atRsp = bytes.reversed().reduce(0) { $0 << 8 | UInt64($1) }
        rip = entry.rip
        rsp = entry.rsp
        cr0 = entry.control.cr0
        cr3 = entry.cr3
        cr4 = entry.control.cr4
        efer = entry.control.efer
        rflags = entry.control.rflags
        gdt = Table(base: entry.gdt.base, limit: entry.gdt.limit)
        idt = Table(base: entry.idt.base, limit: entry.idt.limit)
    }
}

extension FastHashInfo {
    init(_ run: Scenario.Emulation, checkEvery: Int) {
        let f = run.fastForward ?? FastForwardReport()
        let host = run.fellBack == nil ? f.hostSteps : 0
        self.init(emulatedBlocks: f.emulatedSteps, hostBlocks: host, instructionsPerBlock: f.instructionsPerStep,
                  derivedInstructions: host &* (f.instructionsPerStep ?? 0), loops: run.fellBack == nil ? f.loops : 0,
                  probes: f.probes, anchor: f.anchor, stateAddress: f.stateAddress,
                  inputRegister: f.inputRegister.flatMap { Register(rawValue: $0)?.description }, checkEvery: checkEvery,
                  fellBack: run.fellBack, notes: f.notes)
    }
}
