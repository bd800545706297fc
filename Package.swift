// swift-tools-version:6.0
import PackageDescription

// Data flows left to right: bytes → ELF → Loader → Machine → Run → CLI.
// ELF knows nothing of Unicorn, Machine nothing of ELF; Run joins them.
let package = Package(
    name: "purgatory-harness",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "purgatory-harness", targets: ["purgatory-harness"]),
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
        .target(name: "ELF"),
        .target(name: "Loader", dependencies: ["ELF"]),
        .target(name: "Machine", dependencies: ["CUnicorn"]),
        .target(name: "Disassembly", dependencies: ["CCapstone"]),
        .target(name: "Inspect", dependencies: ["ELF", "Loader", "Disassembly"]),
        .target(name: "Fuzz", dependencies: ["ELF", "Loader", "Machine", "Run", "Inspect"]),
        .target(name: "Run", dependencies: [
            "ELF", "Loader", "Machine", "Disassembly",
            .product(name: "Crypto", package: "swift-crypto"),
        ], resources: [.embedInCode("Resources/purgatory.ro")]),
        .executableTarget(name: "purgatory-harness", dependencies: [
            "Run", "Loader", "ELF", "Inspect", "Fuzz",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .testTarget(name: "HarnessTests", dependencies: [
            "ELF", "Loader", "Machine", "Disassembly", "Run", "Inspect", "Fuzz",
            .product(name: "Crypto", package: "swift-crypto"),
        ]),
    ]
)
