/// The few ELF constants the harness reads (System V gABI and the x86-64 psABI).
public enum ELFConstant {
    public static let machineX86_64: UInt16 = 62

    public enum FileType: UInt16, Sendable {
        case none = 0, relocatable = 1, executable = 2, sharedObject = 3, core = 4
    }

    // Section types.
    public static let shtNull: UInt32 = 0
    public static let shtProgbits: UInt32 = 1
    public static let shtSymtab: UInt32 = 2
    public static let shtStrtab: UInt32 = 3
    public static let shtRela: UInt32 = 4
    public static let shtNobits: UInt32 = 8
    public static let shtRel: UInt32 = 9
    public static let shtDynsym: UInt32 = 11

    // Section flags.
    public static let shfWrite: UInt64 = 0x1
    public static let shfAlloc: UInt64 = 0x2
    public static let shfExecInstr: UInt64 = 0x4

    // Special section indices.
    public static let shnUndef: UInt16 = 0
    public static let shnLoReserve: UInt16 = 0xff00
    public static let shnAbs: UInt16 = 0xfff1
    public static let shnCommon: UInt16 = 0xfff2
    public static let shnXindex: UInt16 = 0xffff

    // Symbol bindings and types.
    public static let stbLocal: UInt8 = 0
    public static let stbGlobal: UInt8 = 1
    public static let stbWeak: UInt8 = 2
    public static let sttSection: UInt8 = 3

    // Program header types.
    public static let ptLoad: UInt32 = 1
    public static let ptDynamic: UInt32 = 2
}

/// x86-64 relocation types by their psABI number, named for messages.
public enum X86_64Relocation {
    public static let none: UInt32 = 0
    public static let r64: UInt32 = 1
    public static let pc32: UInt32 = 2
    public static let got32: UInt32 = 3
    public static let plt32: UInt32 = 4
    public static let relative: UInt32 = 8
    public static let gotpcrel: UInt32 = 9
    public static let r32: UInt32 = 10
    public static let r32s: UInt32 = 11
    public static let gotpcrelx: UInt32 = 41
    public static let rexGotpcrelx: UInt32 = 42

    private static let names: [UInt32: String] = [
        0: "R_X86_64_NONE", 1: "R_X86_64_64", 2: "R_X86_64_PC32", 3: "R_X86_64_GOT32",
        4: "R_X86_64_PLT32", 5: "R_X86_64_COPY", 6: "R_X86_64_GLOB_DAT", 7: "R_X86_64_JUMP_SLOT",
        8: "R_X86_64_RELATIVE", 9: "R_X86_64_GOTPCREL", 10: "R_X86_64_32", 11: "R_X86_64_32S",
        12: "R_X86_64_16", 13: "R_X86_64_PC16", 14: "R_X86_64_8", 15: "R_X86_64_PC8",
        16: "R_X86_64_DTPMOD64", 17: "R_X86_64_DTPOFF64", 18: "R_X86_64_TPOFF64",
        19: "R_X86_64_TLSGD", 20: "R_X86_64_TLSLD", 21: "R_X86_64_DTPOFF32",
        22: "R_X86_64_GOTTPOFF", 23: "R_X86_64_TPOFF32", 24: "R_X86_64_PC64",
        25: "R_X86_64_GOTOFF64", 26: "R_X86_64_GOTPC32", 27: "R_X86_64_GOT64",
        28: "R_X86_64_GOTPCREL64", 29: "R_X86_64_GOTPC64", 30: "R_X86_64_GOTPLT64",
        31: "R_X86_64_PLTOFF64", 32: "R_X86_64_SIZE32", 33: "R_X86_64_SIZE64",
        34: "R_X86_64_GOTPC32_TLSDESC", 35: "R_X86_64_TLSDESC_CALL", 36: "R_X86_64_TLSDESC",
        37: "R_X86_64_IRELATIVE", 38: "R_X86_64_RELATIVE64", 41: "R_X86_64_GOTPCRELX",
        42: "R_X86_64_REX_GOTPCRELX",
    ]

    /// `R_X86_64_PC32` for 2; `type 99` for a number the psABI does not define.
    public static func name(_ type: UInt32) -> String { names[type] ?? "type \(type)" }
}
