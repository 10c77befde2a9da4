// swift-tools-version:6.0
import PackageDescription

let package = Package(
  name: "Parallax",
  platforms: [.macOS(.v13)],
  products: [
    .executable(name: "parallax", targets: ["Launcher"])
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
    .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
    .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
    .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
  ],
  targets: [
    // MARK: C modules (system libraries from Debian packages)
    .systemLibrary(
      name: "CMPI", path: "Sources/CMPI", pkgConfig: "mpi-c",
      providers: [.apt(["libopenmpi-dev", "openmpi-bin"])]),
    .systemLibrary(
      name: "CBLAS", path: "Sources/CBLAS", pkgConfig: "openblas",
      providers: [.apt(["libopenblas-dev"])]),
    .systemLibrary(
      name: "CZlib", path: "Sources/CZlib", pkgConfig: "zlib",
      providers: [.apt(["zlib1g-dev"])]),
    .systemLibrary(
      name: "CSndFile", path: "Sources/CSndFile", pkgConfig: "sndfile",
      providers: [.apt(["libsndfile1-dev"])]),
    .systemLibrary(
      name: "CImage", path: "Sources/CImage", pkgConfig: "libpng",
      providers: [.apt(["libpng-dev", "libturbojpeg0-dev"])]),
    .systemLibrary(
      name: "CSamplerate", path: "Sources/CSamplerate", pkgConfig: "samplerate",
      providers: [.apt(["libsamplerate0-dev"])]),

    // MARK: Parallax's own C kernels (AVX-512 with run-time dispatch, portable C twins).
    // Optimised in debug builds too (SwiftPM compiles C targets -O0 there; the tests run in
    // debug); `swift build -Xcc -DPX_PORTABLE=1` compiles the AVX-512 kernels out.
    .target(name: "CKernels", path: "Sources/CKernels", cSettings: [.unsafeFlags(["-O3"])]),

    // MARK: Library targets (arrows point down only)
    // Every library target and the executable build in the Swift 6 language mode (data-race
    // checking); DistCheck and the test targets other than DistTests stay in Swift 5 mode (the
    // package-wide setting below).
    .target(
      name: "Model", dependencies: ["CKernels", "CBLAS"], path: "Sources/Model",
      swiftSettings: [.swiftLanguageMode(.v6)]),
    .target(
      name: "Data",
      dependencies: [
        "CZlib", "CSndFile", "CSamplerate", "CImage",
        .product(name: "SystemPackage", package: "swift-system"),
      ],
      path: "Sources/Data", swiftSettings: [.swiftLanguageMode(.v6)]),
    .target(
      name: "Dist", dependencies: ["CMPI", "Model", "Data"], path: "Sources/Dist",
      swiftSettings: [.swiftLanguageMode(.v6)]),
    .target(
      name: "Train",
      dependencies: [
        "Model", "Data", "Dist", "CBLAS", .product(name: "Yams", package: "Yams"),
        .product(name: "Crypto", package: "swift-crypto"),
        .product(name: "SystemPackage", package: "swift-system"),
        .product(name: "Logging", package: "swift-log"),
      ],
      path: "Sources/Train", swiftSettings: [.swiftLanguageMode(.v6)]),

    // MARK: Executable
    .executableTarget(
      name: "Launcher",
      dependencies: [
        "Train", "Dist", "Model", "Data",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
      ],
      path: "Sources/Launcher", swiftSettings: [.swiftLanguageMode(.v6)]),

    // A small MPI program that the Dist tests run under `mpirun -np N`.
    .executableTarget(name: "DistCheck", dependencies: ["Dist", "Model"], path: "Sources/DistCheck"),

    // MARK: Tests
    .testTarget(name: "ModelTests", dependencies: ["Model", "CKernels"], path: "Tests/ModelTests"),
    .testTarget(name: "DataTests", dependencies: ["Data"], path: "Tests/DataTests"),
    .testTarget(
      name: "DistTests", dependencies: ["Dist", "Model"], path: "Tests/DistTests",
      swiftSettings: [.swiftLanguageMode(.v6)]),
    .testTarget(
      name: "TrainTests",
      dependencies: ["Train", "Model", "Data", "Dist", .product(name: "Logging", package: "swift-log")],
      path: "Tests/TrainTests"),
  ],
  swiftLanguageModes: [.v5]
)
