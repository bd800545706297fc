// swift-tools-version:6.0
import PackageDescription

// Data flows left to right: bytes → Containers (vmlinux, bzImage, kexec) → ELF → Loader → Machine → Run → CLI.
// ELF knows nothing of Unicorn, Machine nothing of ELF; Run joins them.
let package = Package(
    name: "purgatory-harness",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "purgatory-harness", targets: ["purgatory-harness"]),
        // The harness as a library: load, inspect, run, campaign, check (docs/library.md).
        .library(name: "PurgatoryHarness", targets: ["PurgatoryHarness"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-crypto", "3.0.0"..<"5.0.0"),
    ],
    targets: [
        .systemLibrary(name: "CUnicorn", pkgConfig: "unicorn",
                       providers: [.apt(["libunicorn-dev"])]),
        .systemLibrary(name: "CCapstone", pkgConfig: "capstone",
                       providers: [.apt(["libcapstone-dev"])]),
        // SHA-256's block function on the host for --fast-hash (Sources/CLibCrypto/shim.h says why libcrypto).
        .systemLibrary(name: "CLibCrypto", pkgConfig: "libcrypto",
                       providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CCompression",
                       providers: [.apt(["zlib1g-dev", "liblzma-dev", "libzstd-dev", "libbz2-dev", "liblz4-dev", "liblzo2-dev"])]),
        // The version (PurgatoryHarnessVersion.string), read by the CLI and by scripts/package-deb.
        .target(name: "HarnessVersion"),
        .target(name: "ELF"),
        .target(name: "Containers", dependencies: ["ELF", "CCompression"]),
        .target(name: "Loader", dependencies: ["ELF"]),
        // Unicorn 2.1's page_collection_lock/unlock for Debian's 2.0.1, interposed from the
        // executable (Sources/CUnicornStoreFix/store_fix.c explains; Machine/StoreFix.swift checks).
        .target(name: "CUnicornStoreFix"),
        .target(name: "Machine", dependencies: ["CUnicorn", "CUnicornStoreFix"]),
        .target(name: "Disassembly", dependencies: ["CCapstone"]),
        .target(name: "Inspect", dependencies: ["ELF", "Loader", "Disassembly"]),
        .target(name: "Fuzz", dependencies: ["ELF", "Loader", "Machine", "Run", "Inspect"]),
        .target(name: "Run", dependencies: [
            "ELF", "Loader", "Machine", "Disassembly", "Containers", "CLibCrypto",
            .product(name: "Crypto", package: "swift-crypto"),
        ], resources: [.embedInCode("Resources/purgatory.ro")]),
        .target(name: "PurgatoryHarness", dependencies: ["ELF", "Containers", "Loader", "Machine", "Run", "Inspect", "Fuzz", "HarnessVersion"]),
        // docs/library.md's example, built and run by the tests: it imports PurgatoryHarness only.
        .executableTarget(name: "harness-example", dependencies: ["PurgatoryHarness"]),
        .executableTarget(name: "purgatory-harness", dependencies: [
            "PurgatoryHarness",
            "Run", "Loader", "ELF", "Inspect", "Fuzz", "Containers", "HarnessVersion",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .testTarget(name: "HarnessTests", dependencies: [
            "PurgatoryHarness",
            "ELF", "Loader", "Machine", "Disassembly", "Run", "Inspect", "Fuzz", "Containers",
            .product(name: "Crypto", package: "swift-crypto"),
        ]),
    ]
)
