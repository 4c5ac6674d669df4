import Foundation
import Testing
import WALCore
import WALTestKit

/// Small segments and blocks, so a few thousand records roll several segments and many frames.
func smallConfiguration() -> WALConfiguration {
    var configuration = WALConfiguration()
    configuration.segmentSize = 1 << 20
    configuration.blockSize = 16 << 10
    configuration.blockCount = 4
    configuration.sealDelayMilliseconds = 5
    return configuration
}

/// Appends `values` as `testRecord`s and returns their sequence numbers.
@discardableResult
func appendRecords(_ wal: WAL, _ values: some Sequence<UInt64>, size: Int = 100) throws -> [UInt64] {
    try values.map { try wal.append(testRecord($0, size: size)) }
}

/// Polls `condition` every millisecond until it holds or `seconds` pass (generous: it returns as soon as the
/// condition holds, and a starved sealer thread on a loaded CI machine can take seconds).
func eventually(within seconds: Double = 30, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if try condition() { return true }
        usleep(1000)
    }
    return try condition()
}

func withTemporaryDirectory<T>(_ body: (TemporaryDirectory) throws -> T) throws -> T {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    return try body(directory)
}
