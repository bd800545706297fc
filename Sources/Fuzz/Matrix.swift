import ELF
import Foundation
import Inspect
import Loader
import Run

/// Purgatories/manifest.json: each build, how it was made, its relocation profile, and the
/// verdict the kernel's rules give it in each address class.
public struct MatrixManifest: Codable, Sendable {
    public struct Probe: Codable, Sendable { public var name: String; public var address: String }
    public struct Variant: Codable, Sendable {
        public var name: String
        public var file: String
        public var loader: String
        public var compiler: String
        public var flags: String
        public var relocations: [String: Int]
        public var expected: [String: Verdict]
        /// Where a kernel profile changes a verdict: profile name → class → verdict.
        public var byProfile: [String: [String: Verdict]]?

        enum CodingKeys: String, CodingKey {
            case name, file, loader, compiler, flags, relocations, expected
            case byProfile = "by_profile"
        }

        public func expected(under profile: String) -> [String: Verdict] {
            expected.merging(byProfile?[profile] ?? [:]) { _, override in override }
        }
    }
    public var baseline: String
    public var classes: [Probe]
    public var variants: [Variant]
}

/// One variant's row: verdict per class, its relocation profile as found, its instruction count.
public struct MatrixRow: Codable, Sendable {
    public var name: String
    /// The kernel profile the row was run under.
    public var kernelProfile: String
    public var loader: String
    public var verdicts: [String: Verdict]
    public var expected: [String: Verdict]
    public var relocations: [String: Int]
    public var profileMatches: Bool
    /// From the highest class that verified (same segments for every variant: same seed).
    public var instructions: UInt64?
    public var relativeToBaseline: Double?
    public var matches: Bool { profileMatches && verdicts == expected }

    enum CodingKeys: String, CodingKey {
        case name, loader, verdicts, expected, relocations, instructions
        case kernelProfile = "kernel_profile", profileMatches = "profile_matches", relativeToBaseline = "relative_to_baseline"
    }
}

public enum Matrix {
    /// Runs every variant of `manifest` (files relative to `directory`) at each class's probe address.
    /// A probe the harness cannot run (an address the machine cannot hold) is that class's
    /// `harness-error`, never an abort of the whole matrix.
    public static func run(_ manifest: MatrixManifest, directory: String, seed: UInt64 = 1,
                           machine: MachineOptions = MachineOptions(), kernels: [KernelProfile] = [.latest]) throws -> [MatrixRow] {
        var rows: [MatrixRow] = []
        for kernel in kernels {
            rows += try run(manifest, directory: directory, seed: seed, machine: machine, kernel: kernel)
        }
        return rows
    }

    static func run(_ manifest: MatrixManifest, directory: String, seed: UInt64, machine: MachineOptions,
                    kernel: KernelProfile) throws -> [MatrixRow] {
        var rows: [MatrixRow] = []
        for variant in manifest.variants {
            let path = directory + "/" + variant.file
            guard let data = FileManager.default.contents(atPath: path) else {
                throw HarnessError.badInput("\(path): listed in the manifest but cannot be read")
            }
            let file = try ELFFile(bytes: [UInt8](data), name: variant.file)
            guard let kind = LoaderKind(rawValue: variant.loader) else {
                throw HarnessError.badInput("\(variant.name): unknown loader \(variant.loader)")
            }
            var found: [String: Int] = [:]
            for count in try Inspector(file: file, kind: kind).inspect().relocations { found[count.type, default: 0] += count.count }
            var row = MatrixRow(name: variant.name, kernelProfile: kernel.name, loader: variant.loader, verdicts: [:],
                                expected: variant.expected(under: kernel.name),
                                relocations: found, profileMatches: found == variant.relocations)
            for probe in manifest.classes {
                guard let address = UInt64(probe.address.dropFirst(2), radix: 16) else {
                    throw HarnessError.badInput("manifest: class \(probe.name): address \(probe.address) is not 0x hex")
                }
                var s = Scenario(file: file, seed: seed)
                s.loader = kind
                s.loadAddress = address
                s.machine = machine
                s.kernel = kernel
                s.kernelSource = "matrix"
                guard let report = try? s.run() else {
                    row.verdicts[probe.name] = .harnessError
                    continue
                }
                row.verdicts[probe.name] = report.verdict
                if report.verdict == .verified { row.instructions = report.instructions }
            }
            rows.append(row)
        }
        if let base = rows.first(where: { $0.name == manifest.baseline })?.instructions {
            for i in rows.indices { rows[i].relativeToBaseline = rows[i].instructions.map { Double($0) / Double(base) } }
        }
        return rows
    }
}
