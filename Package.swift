// swift-tools-version:5.9
import PackageDescription

// Dependencies point one way: dim-dist (CLI) -> DIMTrain -> DIMCore (numerics, model), with the
// services DIMMPI (collectives) and DIMIO (HDF5 files) beside them.
let package = Package(
    name: "dim-dist",
    products: [
        .executable(name: "dim-dist", targets: ["dim-dist"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // TensorBoard event files (generated code committed: Sources/DIMTrain/TensorBoard).
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
    ],
    targets: [
        // System libraries from Debian, found through pkg-config. Each is a module map plus a shim
        // header that re-exports the C macros Swift cannot import.
        .systemLibrary(name: "CMPI", pkgConfig: "ompi-c", providers: [.apt(["libopenmpi-dev"])]),
        .systemLibrary(name: "CBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CHDF5", pkgConfig: "hdf5-serial", providers: [.apt(["libhdf5-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        // cpuid and the SSE control register (header-only: static inline functions).
        .systemLibrary(name: "CCPU"),
        // JPEG (libjpeg-turbo) and PNG (libpng) for folder imports.
        .systemLibrary(name: "CImageCodecs", pkgConfig: "libturbojpeg", providers: [.apt(["libturbojpeg0-dev", "libpng-dev"])]),
        // oneDNN for the bf16 GEMMs (Debian ships no pkg-config file for it).
        .systemLibrary(name: "CDNNL", providers: [.apt(["libdnnl-dev"])]),

        // The estimators' elementwise kernels, compiled for several instruction sets and chosen at
        // load time (C: Swift has no per-function targets).
        .target(name: "CKernels", cSettings: [.unsafeFlags(["-O3", "-ffp-contract=on"])]),
        .target(name: "DIMCore", dependencies: ["CBLAS", "CCPU", "CDNNL", "CKernels"]),
        .target(name: "DIMMPI", dependencies: ["DIMCore", "CMPI"]),
        .target(name: "DIMIO", dependencies: ["DIMCore", "CHDF5", "CZlib", "CImageCodecs"]),
        .target(name: "DIMTrain",
                dependencies: ["DIMCore", "DIMIO", "CKernels", .product(name: "SwiftProtobuf", package: "swift-protobuf")],
                exclude: ["TensorBoard/event.proto"]),
        .executableTarget(
            name: "dim-dist",
            dependencies: [
                "DIMCore", "DIMIO", "DIMTrain", "DIMMPI",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),

        // Helpers the test targets share (temporary directories, image folders).
        .target(name: "DIMTestSupport", dependencies: ["DIMIO"], path: "Tests/DIMTestSupport"),
        .testTarget(name: "DIMCoreTests", dependencies: ["DIMCore", "DIMTestSupport"]),
        .testTarget(name: "DIMIOTests", dependencies: ["DIMIO", "DIMCore", "DIMTestSupport"]),
        .testTarget(name: "DIMTrainTests", dependencies: ["DIMTrain", "DIMIO", "DIMCore", "DIMMPI", "DIMTestSupport"]),
    ]
)
