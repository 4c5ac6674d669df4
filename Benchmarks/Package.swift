// swift-tools-version: 6.1
import Foundation
import PackageDescription

// A path dependency's identity is its folder's name, which depends on where the repository was cloned.
let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
let walctlPackage = root.lastPathComponent

// Benchmarks live in their own package so that building and testing walctl never builds package-benchmark.
// Run: cd Benchmarks && swift package --allow-writing-to-package-directory benchmark
let package = Package(
    name: "walctl-benchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(path: root.path),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.0", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "WALCoreBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "WALCore", package: walctlPackage),
                .product(name: "WALTestKit", package: walctlPackage),
            ],
            path: "WALCoreBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        .executableTarget(
            name: "WALMetricsBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "WALMetrics", package: walctlPackage),
                .product(name: "WALTestKit", package: walctlPackage),
                .product(name: "WALTraffic", package: walctlPackage),
            ],
            path: "WALMetricsBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        .executableTarget(
            name: "WALPostgresBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "WALPostgres", package: walctlPackage),
                .product(name: "WALShipping", package: walctlPackage),
                .product(name: "WALMetrics", package: walctlPackage),
                .product(name: "WALTestKit", package: walctlPackage),
            ],
            path: "WALPostgresBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        .executableTarget(
            name: "WALKafkaBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "WALKafka", package: walctlPackage),
                .product(name: "WALShipping", package: walctlPackage),
                .product(name: "WALMetrics", package: walctlPackage),
                .product(name: "WALTestKit", package: walctlPackage),
            ],
            path: "WALKafkaBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        .executableTarget(
            name: "WALObserveBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "WALObserve", package: walctlPackage),
                .product(name: "WALShipping", package: walctlPackage),
                .product(name: "WALMetrics", package: walctlPackage),
                .product(name: "WALCore", package: walctlPackage),
                .product(name: "WALTestKit", package: walctlPackage),
                .product(name: "WALTraffic", package: walctlPackage),
            ],
            path: "WALObserveBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ]
)
