// swift-tools-version: 6.1
import PackageDescription

// Layers, bottom to top (dependencies point down only):
//   C modules (CLZ4, CRdKafka, CLibPQ, CWALSupport, CWALCurl)
//   WALCore      the payload-agnostic segment log
//   WALMetrics   the metrics model: emit API, catalog, record codec, swift-metrics backend
//   WALShipping  shipper service, sink protocol, retry policy, dead-letter file
//   WALPostgres, WALKafka   one sink each
//   WALAlerts    thresholds, their evaluation, the log/webhook/email channels (no sink: the Kafka alert channel is
//                wired in by walctl, which links both)
//   WALObserve   the HTTP listener beside the shippers: /metrics (Prometheus), /healthz, /readyz, the live page
//                (LiveView: the design's real-time panels computed from the logs themselves)
//   WALTraffic   realistic, deterministic agent traffic (`walctl emit`/`demo`, tests, benchmarks); above WALMetrics
//   walctl       the operator's CLI (parses arguments and prints; shipping, replay and lag live in WALShipping)
// WALTestKit (fakes, temp dirs, crash helpers) is for tests and benchmarks only: no product code links it.
// Each C module is imported by exactly one Swift target.
let package = Package(
    name: "walctl",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "WALCore", targets: ["WALCore"]),
        .library(name: "WALMetrics", targets: ["WALMetrics"]),
        .library(name: "WALShipping", targets: ["WALShipping"]),
        .library(name: "WALPostgres", targets: ["WALPostgres"]),
        .library(name: "WALKafka", targets: ["WALKafka"]),
        .library(name: "WALAlerts", targets: ["WALAlerts"]),
        .library(name: "WALObserve", targets: ["WALObserve"]),
        // The collector for C and Python (walctl.h): build with --static-swift-stdlib so it carries the runtime.
        .library(name: "walctl_c", type: .dynamic, targets: ["WALCollectorC"]),
        .executable(name: "kafka-mock", targets: ["kafka-mock"]),
        // Realistic agent traffic, for walctl emit/demo, tests and Benchmarks/.
        .library(name: "WALTraffic", targets: ["WALTraffic"]),
        // Test support (temp dirs, corruptors, child processes, fake sinks), for tests and Benchmarks/.
        .library(name: "WALTestKit", targets: ["WALTestKit"]),
        .executable(name: "walctl", targets: ["walctl"]),
        // The readers' fuzz harness (tools/fuzz.sh builds it with libFuzzer; a normal build replays a corpus).
        .executable(name: "walctl-fuzz", targets: ["walctl-fuzz"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-system", from: "1.4.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.5.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.0"),
        // The shipper's HTTP listener (/metrics, /healthz, the live page) and its Prometheus exposition.
        .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.1.0"),
    ],
    targets: [
        // MARK: - C libraries from Debian, as system-library modules
        .systemLibrary(
            name: "CLZ4",
            pkgConfig: "liblz4",
            providers: [.apt(["liblz4-dev"])]
        ),
        .systemLibrary(
            name: "CRdKafka",
            pkgConfig: "rdkafka",
            providers: [.apt(["librdkafka-dev"])]
        ),
        .systemLibrary(
            name: "CLibPQ",
            pkgConfig: "libpq",
            providers: [.apt(["libpq-dev"])]
        ),
        // What Swift cannot see: CRC32C with SSE4.2, fallocate.
        .target(
            name: "CWALSupport",
            cSettings: [.define("_GNU_SOURCE")]
        ),

        // MARK: - The log
        .target(
            name: "WALCore",
            dependencies: [
                "CLZ4",
                "CWALSupport",
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),

        // MARK: - The metrics model
        .target(
            name: "WALMetrics",
            dependencies: [
                "WALCore",
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),

        // MARK: - The collector's C interface (libwalctl_c.so, walctl.h), used by the Python package in python/
        .target(name: "CWALCollector"),
        .target(
            name: "WALCollectorC",
            dependencies: ["CWALCollector", "WALMetrics"],
            exclude: ["exports.map"],
            // The library carries the Swift runtime and exports only walctl_* (see exports.map): a Python wheel or a
            // C program needs no Swift toolchain at run time, only liblz4 and the C library.
            linkerSettings: [
                .unsafeFlags([
                    "-static-stdlib",
                    "-Xlinker", "--version-script=\(Context.packageDirectory)/Sources/WALCollectorC/exports.map",
                ])
            ]
        ),

        // MARK: - Shipping
        .target(
            name: "WALShipping",
            dependencies: [
                "WALCore",
                "WALMetrics",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .target(
            name: "WALPostgres",
            dependencies: [
                "CLibPQ",
                "WALShipping",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),

        .target(
            name: "WALKafka",
            dependencies: [
                "CRdKafka",
                "WALShipping",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // libcurl for the email channel (SMTP with STARTTLS); wrappers for its variadic curl_easy_setopt.
        .target(
            name: "CWALCurl",
            linkerSettings: [.linkedLibrary("curl")]
        ),

        // MARK: - Alerting: thresholds, evaluation, channels
        .target(
            name: "WALAlerts",
            dependencies: [
                "CWALCurl",
                "WALCore",
                "WALMetrics",
                "WALShipping",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Yams", package: "Yams"),
            ]
        ),

        // MARK: - Watching it run: the HTTP listener, /metrics, /healthz, /readyz and the live page
        .target(
            name: "WALObserve",
            dependencies: [
                "WALAlerts",
                "WALCore",
                "WALMetrics",
                "WALShipping",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),

        // librdkafka's mock cluster as a process, for tests where no broker can be installed.
        .executableTarget(
            name: "kafka-mock",
            dependencies: ["WALKafka"]
        ),

        .executableTarget(
            name: "walctl-fuzz",
            dependencies: ["WALCore", "WALMetrics"],
            path: "Sources/walctl-fuzz"
        ),

        // MARK: - Agent traffic (emit, demo, tests, benchmarks)
        .target(
            name: "WALTraffic",
            dependencies: ["WALCore", "WALMetrics"]
        ),

        // MARK: - Test support, shared by tests and benchmarks
        .target(
            name: "WALTestKit",
            dependencies: ["WALCore", "WALMetrics", "WALShipping", "WALTraffic"],
            path: "Sources/WALTestKit"
        ),

        // MARK: - CLI
        .executableTarget(
            name: "walctl",
            dependencies: [
                "WALAlerts",
                "WALCore",
                "WALMetrics",
                "WALKafka",
                "WALObserve",
                "WALPostgres",
                "WALShipping",
                "WALTraffic",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),

        // MARK: - Tests
        .testTarget(
            name: "WALCoreTests",
            dependencies: ["WALCore", "WALTestKit", "WALTraffic", "walctl"],
            resources: [.copy("Fixtures")]
        ),
        .testTarget(
            name: "WALShippingTests",
            dependencies: ["WALShipping", "WALMetrics", "WALCore", "WALTestKit", "WALTraffic"]
        ),
        .testTarget(
            name: "WALPostgresTests",
            dependencies: [
                "WALPostgres", "WALShipping", "WALMetrics", "WALTestKit", "WALTraffic", "walctl", "kafka-mock",
            ]
        ),
        .testTarget(
            name: "WALKafkaTests",
            dependencies: ["WALKafka", "WALShipping", "WALMetrics", "WALTestKit", "kafka-mock", "walctl"]
        ),
        .testTarget(
            name: "WALAlertsTests",
            dependencies: ["WALAlerts", "WALKafka", "WALMetrics", "WALTestKit", "walctl", "kafka-mock"]
        ),
        .testTarget(
            name: "WALObserveTests",
            dependencies: ["WALObserve", "WALAlerts", "WALShipping", "WALMetrics", "WALTestKit", "WALTraffic", "walctl"]
        ),
        .testTarget(
            name: "WALMetricsTests",
            dependencies: [
                "WALMetrics",
                "WALTestKit",
                "WALTraffic",
                "walctl",
                .product(name: "Metrics", package: "swift-metrics"),
            ]
        ),
    ]
)
