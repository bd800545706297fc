import ArgumentParser
import Containers
import ELF
import Foundation
import Loader
import Run

/// The kernel generation a purgatory is loaded and started by: shared by run, fuzz, compare,
/// matrix and inspect.
struct KernelArguments: ParsableArguments {
    @Option(help: ArgumentHelp("The loading kernel: a name from `--kernel-profile list` (linux-6.16, linux-latest…) or any version (6.12.94). Default: the version string of the bzImage the purgatory (or --kernel) came from, else linux-latest.",
                               valueName: "name"))
    var kernelProfile: String?

    @Flag(help: "The machine is a TDX guest (from 6.11 relocate_kernel keeps CR4.MCE set).")
    var tdxGuest = false

    @Option(help: ArgumentHelp("The loading kernel's early serial console port (earlyprintk=serial): where 6.16's exception handlers print their register dump. Default: none.",
                               valueName: "port"))
    var earlySerial: Quantity?

    func validate() throws {
        if let name = kernelProfile, name != "list", name != "all", KernelProfile.resolve(name) == nil {
            throw ValidationError("--kernel-profile \(name): not a profile (see --kernel-profile list) or a kernel version such as 6.12.94")
        }
        if let port = earlySerial, port.value > 0xffff {
            throw ValidationError("--early-serial \(hex(port.value)): an I/O port is 16 bits")
        }
    }

    /// `--kernel-profile list`: prints every named profile and what it sets, then exits 0.
    func listIfAsked() throws {
        guard kernelProfile == "list" else { return }
        var lines: [String] = []
        for profile in KernelProfile.named {
            lines.append("\(profile.name) (\(profile.version))")
            lines += profile.summary.map { "    " + $0 }
        }
        lines.append("Any version resolves the same way, stable backports included: --kernel-profile 6.12.94, 6.1.192.")
        print(lines.joined(separator: "\n"))
        throw ExitCode(ExitStatus.expected)
    }

    /// The profile asked for, or the one the bzImage's version string names, or linux-latest;
    /// with where it came from.
    func resolve(bzImages: [(path: String, image: BzImage)]) -> (profile: KernelProfile, source: String) {
        if let name = kernelProfile, let profile = KernelProfile.resolve(name) { return (profile, "--kernel-profile \(name)") }
        for (path, image) in bzImages {
            if let release = image.kernelRelease, let version = KernelVersion(release: release) {
                return (KernelProfile(name: "linux-\(version)", version: version), "version string of \(path): \(release.prefix(80))")
            }
        }
        return (.latest, "default (no bzImage named the kernel)")
    }

    func apply(to scenario: inout Scenario, bzImages: [(path: String, image: BzImage)]) {
        (scenario.kernel, scenario.kernelSource) = resolve(bzImages: bzImages)
        scenario.tdxGuest = tdxGuest
        scenario.earlySerialPort = earlySerial.map { UInt16(truncatingIfNeeded: $0.value) }
    }
}
