import Foundation
@_spi(Testing) import WALCore
@_spi(Testing) import WALMetrics

// The fuzz harness of the log's readers (issue 12): one executable, the target chosen by WALCTL_FUZZ_TARGET
// (frame, staging, small-files, record, symbols). Built with libFuzzer by `tools/fuzz.sh`
// (`-sanitize=fuzzer -DWALCTL_FUZZER`); built normally, it replays corpus files given as arguments, so a crash
// found once stays a test.

/// Runs one input through the chosen reader.
func runTarget(_ target: String, _ bytes: UnsafeRawBufferPointer) -> Int? {
    switch target {
    case "frame": return CoreFuzzEntryPoints.frame(bytes)
    case "staging": return CoreFuzzEntryPoints.staging(bytes)
    case "small-files": return CoreFuzzEntryPoints.smallFiles(bytes)
    case "record": return MetricsFuzzEntryPoints.record(bytes)
    case "symbols": return MetricsFuzzEntryPoints.symbols(bytes)
    default: return nil
    }
}

let fuzzTarget = ProcessInfo.processInfo.environment["WALCTL_FUZZ_TARGET"] ?? ""

#if WALCTL_FUZZER
/// libFuzzer's driver, for programs with a main of their own (SwiftPM names an executable's entry point itself).
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> CInt

@main
struct Fuzz {
    static func main() {
        guard runTarget(fuzzTarget, UnsafeRawBufferPointer(start: nil, count: 0)) != nil else {
            FileHandle.standardError.write(
                Data("WALCTL_FUZZ_TARGET must be frame|staging|small-files|record|symbols\n".utf8)
            )
            exit(2)
        }
        var argc = CommandLine.argc
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
        let status = LLVMFuzzerRunDriver(&argc, &argv) { data, size in
            _ = runTarget(fuzzTarget, UnsafeRawBufferPointer(start: data, count: data == nil ? 0 : size))
            return 0
        }
        exit(status)
    }
}
#else
@main
struct ReplayCorpus {
    /// `WALCTL_FUZZ_TARGET=frame walctl-fuzz FILE...`: runs each file (or every file of a directory) once.
    static func main() {
        var count = 0
        for argument in CommandLine.arguments.dropFirst() {
            var isDirectory: ObjCBool = false
            FileManager.default.fileExists(atPath: argument, isDirectory: &isDirectory)
            let files =
                isDirectory.boolValue
                ? ((try? FileManager.default.contentsOfDirectory(atPath: argument)) ?? []).sorted().map {
                    argument + "/" + $0
                } : [argument]
            for file in files {
                guard let data = FileManager.default.contents(atPath: file) else { continue }
                let result = data.withUnsafeBytes { runTarget(fuzzTarget, $0) }
                guard result != nil else {
                    print("WALCTL_FUZZ_TARGET must be frame|staging|small-files|record|symbols")
                    exit(2)
                }
                count += 1
            }
        }
        print("replayed \(count) inputs for \(fuzzTarget)")
    }
}
#endif
