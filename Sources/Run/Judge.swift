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
            report.verdict = .fault
            report.fault = .init(vector: vector, name: Self.exceptionName(vector), rip: rip, symbol: symbols.symbolize(rip),
                                 instruction: instruction?.description)
            report.fault?.errorCode = outcome.exceptionErrorCode
            report.message = "\(Self.exceptionName(vector)) (vector \(vector)) at \(at(rip))"
                + (instruction.map { ": \($0)" } ?? "") + (outcome.exceptionNote.map { " (\($0))" } ?? "")
                + "; the IDT is invalid, so hardware would triple-fault"
        case .unmappedAccess(let kind, let address, let size, let rip):
            let instruction = kind == .fetch ? nil : stopInstruction
            report.verdict = .fault
            report.fault = .init(vector: nil, name: "unmapped-\(kind.rawValue)", rip: rip, symbol: symbols.symbolize(rip),
                                 instruction: instruction?.description, access: kind.rawValue, address: address)
            let what = kind == .fetch ? "jumps to \(hex(address))" : "\(kind.rawValue)s \(size) bytes at \(hex(address))"
            report.message = "\(what), outside the purgatory, every segment and the harness pages, at rip \(at(rip))"
                + (instruction.map { ": \($0)" } ?? "")
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

    static func exceptionName(_ vector: UInt32) -> String {
        let names = ["#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "coprocessor overrun",
                     "#TS", "#NP", "#SS", "#GP", "#PF", "reserved", "#MF", "#AC", "#MC", "#XM", "#VE", "#CP"]
        return Int(vector) < names.count ? names[Int(vector)] : "interrupt \(vector)"
    }
}
