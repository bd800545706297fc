import CUnicorn

/// Port I/O the purgatory may do: an 8250/16550 UART at one base port, enough for a
/// purgatory that prints (kexec-tools' `console_serial`). The line status register reads
/// "transmitter empty" so a polling loop proceeds; bytes written to the transmit register
/// (with DLAB clear) are collected. Every other port reads as a missing device (all ones).
final class PortState {
    var uartBase: UInt16
    var lineControl: UInt8 = 0
    var transmitted: [UInt8] = []
    /// Port accesses other than the UART's, for the report.
    var otherAccesses = 0

    init(uartBase: UInt16) { self.uartBase = uartBase }

    static let lineStatus: UInt8 = 0x60  // THRE | TEMT

    func read(_ port: UInt16, size: Int) -> UInt32 {
        let offset = port &- uartBase
        guard offset < 8 else {
            otherAccesses += 1
            return size == 1 ? 0xff : size == 2 ? 0xffff : 0xffff_ffff
        }
        switch offset {
        case 3: return UInt32(lineControl)
        case 5: return UInt32(PortState.lineStatus)
        default: return 0
        }
    }

    func write(_ port: UInt16, size: Int, value: UInt32) {
        let offset = port &- uartBase
        guard offset < 8 else { otherAccesses += 1; return }
        switch offset {
        case 0 where lineControl & 0x80 == 0: transmitted.append(UInt8(truncatingIfNeeded: value))
        case 3: lineControl = UInt8(truncatingIfNeeded: value)
        default: break
        }
    }
}

let inHook: ph_in_cb = { _, port, size, user in
    Unmanaged<PortState>.fromOpaque(user!).takeUnretainedValue().read(UInt16(truncatingIfNeeded: port), size: Int(size))
}

let outHook: ph_out_cb = { _, port, size, value, user in
    Unmanaged<PortState>.fromOpaque(user!).takeUnretainedValue().write(UInt16(truncatingIfNeeded: port), size: Int(size), value: value)
}
