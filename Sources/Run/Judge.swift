import Disassembly
import ELF
import Loader
import Machine

extension Scenario {
    /// Turns how the machine stopped into a verdict and a one-line message.
    func judge(_ outcome: RunOutcome, _ registers: GeneralRegisters, _ expected: GeneralRegisters,
               _ symbols: AddressMap, _ stopInstruction: Instruction?, _ report: inout RunReport) {
        func at(_ address: UInt64) -> String {
            symbols.symbolize(address).map { "\(hex(address)) (\($0))" } ?? hex(address)
        }
        switch outcome.reason {
        case .reachedSentinel:
            let wrong = Register.allCases.filter { registers[$0] != expected[$0] }
            if wrong.isEmpty {
                report.verdict = .verified
                report.message = "reached the kernel entry \(hex(expected[.rip])) with the registers the kernel set (rsi \(hex(expected[.rsi])), rsp \(hex(expected[.rsp])))"
            } else {
                report.verdict = .badHandoff
                report.message = "reached the kernel entry with " + wrong.map {
                    "\($0) \(hex(registers[$0])) (expected \(hex(expected[$0])))"
                }.joined(separator: ", ")
            }
        case .spin(let address):
            report.verdict = .rejectedDigest
            report.message = "spins at \(at(address)) after \(report.instructions) instructions: the purgatory refused the segments"
        case .halted(let address):
            report.verdict = .rejectedDigest
            report.message = "halts at \(at(address)) with interrupts off after \(report.instructions) instructions"
        case .budgetExhausted:
            report.verdict = .timeout
            report.message = "still running after \(report.instructions) instructions (budget \(report.budget)), rip \(at(registers[.rip]))"
        case .exception(let vector, let rip):
            let instruction = stopInstruction
            report.verdict = kernel.hasExceptionHandlers && vector < 16 ? .kexecException : .fault
            report.fault = .init(vector: vector, name: Self.exceptionName(vector), rip: rip, symbol: symbols.symbolize(rip),
                                 instruction: instruction?.description)
            report.fault?.errorCode = outcome.exceptionErrorCode ?? (Self.pushesErrorCode(vector) && kernel.hasExceptionHandlers ? 0 : nil)
            report.message = "\(Self.exceptionName(vector)) (vector \(vector)) at \(at(rip))"
                + (instruction.map { ": \($0)" } ?? "") + (outcome.exceptionNote.map { " (\($0))" } ?? "")
                + (outcome.exceptionErrorCode.map { ", error code \(hex($0))" } ?? "") + "; " + afterException
        case .unmappedAccess(let kind, let address, let size, let rip):
            let instruction = kind == .fetch ? nil : stopInstruction
            report.verdict = .fault
            report.fault = .init(vector: nil, name: "unmapped-\(kind.rawValue)", rip: rip, symbol: symbols.symbolize(rip),
                                 instruction: instruction?.description, access: kind.rawValue, address: address)
            let what = kind == .fetch ? "jumps to \(hex(address))" : "\(kind.rawValue)s \(size) bytes at \(hex(address))"
            report.message = "\(what), outside the purgatory, every segment and the harness pages, at rip \(at(rip))"
                + (instruction.map { ": \($0)" } ?? "")
            // On hardware: #GP(0) for a non-canonical address (a fetch faults on the target), else a
            // #PF, since the identity map maps nothing there.
            let canonical = address >> 47 == 0 || address >> 47 == UInt64.max >> 47
                || (report.machine?.identityMap == "5-level" && (address >> 56 == 0 || address >> 56 == UInt64.max >> 56))
            let (vector, code): (UInt32, UInt64) = canonical ? (14, Self.pageFaultErrorCode(kind)) : (13, 0)
            if kernel.hasExceptionHandlers {
                report.verdict = .kexecException
                report.fault?.vector = vector
                report.fault?.name = Self.exceptionName(vector)
                report.fault?.errorCode = code
                report.message += "; \(Self.exceptionName(vector)) (vector \(vector), error code \(hex(code))); " + afterException
            } else if !canonical {
                report.message += "; the address is not canonical: #GP, and the invalid IDT makes it a triple fault"
            }
        case .unmodelled(let rip, let reason):
            report.verdict = .harnessError
            report.message = "the machine cannot run \(stopInstruction.map { "`\($0)`" } ?? "the instruction") at \(at(rip)) honestly: \(reason)"
        case .emulatorError(let text):
            report.verdict = .fault
            report.message = "the emulator stopped at \(at(registers[.rip])): \(text)"
        }
        if let cross = outcome.crossCheckInstructions, cross != report.instructions {
            report.message += "; cross-check MISMATCH: per-instruction hook counted \(cross), block hook \(report.instructions)"
        }
    }

    /// What happens after an exception, in the profile's words.
    var afterException: String {
        kernel.hasExceptionHandlers
            ? "the loading kernel's debug IDT (\(KernelChanges.debugIDT.commit), \(kernel.name)) takes it: the handler prints the registers"
                + (earlySerialPort.map { " on its early serial console (\(hex($0)))" } ?? " (nowhere: no early serial console, --early-serial)") + " and halts"
            : "the IDT is invalid, so hardware would triple-fault"
    }

    /// #PF's error code for an access to memory the identity map does not map: not present,
    /// write, instruction fetch.
    static func pageFaultErrorCode(_ kind: AccessKind) -> UInt64 {
        switch kind {
        case .read: 0
        case .write: 0x2
        case .fetch: 0x10
        }
    }

    /// Vectors for which the CPU pushes an error code (#DF, #TS, #NP, #SS, #GP, #PF, #AC…).
    static func pushesErrorCode(_ vector: UInt32) -> Bool { [8, 10, 11, 12, 13, 14, 17, 21].contains(vector) }

    /// The console as a person would read it: what the guest sent to its UART, and, where they
    /// happened, the dumps the 6.16 exception handler prints on the early serial console (20 lines
    /// of a 4-character label and 16 hex digits: 3d66af75b086).
    func console(_ outcome: RunOutcome, _ report: inout RunReport) -> String? {
        var dumps: [(offset: Int, text: String)] = []
        if earlySerialPort != nil, kernel.hasExceptionHandlers {
            for handled in outcome.handledExceptions {
                dumps.append((handled.consoleOffset, Self.dump(vector: handled.vector, errorCode: handled.errorCode, rip: handled.rip,
                                                               registers: handled.registers, cr2: handled.cr2)))
            }
            if report.verdict == .kexecException, let fault = report.fault {
                let cr2 = fault.vector == 14 ? (fault.address ?? fault.rip) : (outcome.handledExceptions.last?.cr2 ?? 0)
                dumps.append((outcome.serialOutput.count, Self.dump(vector: fault.vector ?? 0, errorCode: fault.errorCode ?? 0, rip: fault.rip,
                                                                     registers: outcome.registers, cr2: cr2)))
            }
        }
        guard !outcome.serialOutput.isEmpty || !dumps.isEmpty else { return nil }
        var text = ""
        var done = 0
        for dump in dumps {
            text += String(decoding: outcome.serialOutput[done ..< min(dump.offset, outcome.serialOutput.count)], as: UTF8.self) + dump.text
            done = min(dump.offset, outcome.serialOutput.count)
        }
        return text + String(decoding: outcome.serialOutput[done...], as: UTF8.self)
    }

    static func dump(vector: UInt32, errorCode: UInt64, rip: UInt64, registers: GeneralRegisters, cr2: UInt64) -> String {
        let rows: [(String, UInt64)] = [("Exc:", UInt64(vector)), ("Err:", errorCode), ("rip:", rip), ("rsp:", registers[.rsp]),
                                        ("rax:", registers[.rax]), ("rbx:", registers[.rbx]), ("rcx:", registers[.rcx]), ("rdx:", registers[.rdx]),
                                        ("rsi:", registers[.rsi]), ("rdi:", registers[.rdi]), ("r8 :", registers[.r8]), ("r9 :", registers[.r9]),
                                        ("r10:", registers[.r10]), ("r11:", registers[.r11]), ("r12:", registers[.r12]), ("r13:", registers[.r13]),
                                        ("r14:", registers[.r14]), ("r15:", registers[.r15]), ("cr2:", cr2)]
        return rows.map { label, value in
            let digits = String(value, radix: 16)
            return label + String(repeating: "0", count: 16 - digits.count) + digits + "\n"
        }.joined()
    }

    static func exceptionName(_ vector: UInt32) -> String {
        let names = ["#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "coprocessor overrun",
                     "#TS", "#NP", "#SS", "#GP", "#PF", "reserved", "#MF", "#AC", "#MC", "#XM", "#VE", "#CP"]
        return Int(vector) < names.count ? names[Int(vector)] : "interrupt \(vector)"
    }
}
