import Foundation
import Logging
import Testing
import WALCore
import WALMetrics
import WALShipping
import WALTestKit
import WALTraffic

/// What a shipper passes over in a damaged log: each sequence number once, as a record delivered or in one skipped
/// range, never both and never in two ranges (PostgreSQL's dead-letter ranges counted one number twice).
@Suite struct DamagedRangeTests {
    @Test func aDamagedFrameHeaderIsSkippedAsOneRangeDisjointFromEverythingElse() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        // 1 MiB segments: the damage is in a sealed segment, with frames after it and segments after that.
        var configuration = MetricsConfiguration(directory: directory.file("log"))
        configuration.log.segmentSize = 1 << 20
        let collector = try MetricsCollector(configuration: configuration)
        for counter in 0..<UInt64(150_000) { AgentTraffic(thread: 0).emit(counter, into: collector) }
        try collector.close()
        let path = directory.file("log")
        let logID = try LogDirectory(path: path).readMeta().logID
        let last = try LogInspector.lastSealedSeqCheap(path: path)
        let frames = try LogInspector.frames(path: path).filter { $0.kind == "data" }
        let first = try #require(frames.first?.file)
        let inFirst = frames.filter { $0.file == first }
        try #require(inFirst.count >= 3 && frames.contains { $0.file != first }, "\(frames.count) frames")
        let victim = inFirst[inFirst.count / 2]
        let lost = try #require(victim.firstSeq)...(try #require(victim.lastSeq))
        // A bit of the frame header's first seq: its header checksum no longer matches, nothing tells its range.
        try Corruptor.flipBit(path + "/" + victim.file, at: victim.offset + 8, bit: 1)

        let sink = FakeSink()
        var settings = ShipperConfiguration()
        settings.pollMilliseconds = 5
        settings.drainThroughSeq = last
        let shipper = Shipper(directory: path, sink: sink, configuration: settings, logger: Logger(label: "test"))
        try shipper.runBlocking()

        let delivered = Set(sink.rows(of: logID).keys)
        let skipped = sink.skipped(of: logID)
        var seen: [UInt64: Int] = [:]
        for seq in delivered { seen[seq, default: 0] += 1 }
        for entry in skipped { for seq in entry.fromSeq...entry.toSeq { seen[seq, default: 0] += 1 } }
        #expect(seen.filter { $0.value > 1 }.keys.sorted().isEmpty, "counted twice: \(skipped)")
        #expect(Set(seen.keys) == Set(1...last), "every sequence number delivered or skipped")
        #expect(skipped.map { $0.fromSeq...$0.toSeq } == [lost], "\(skipped)")
        #expect(skipped.first?.reason.contains("checksum") == true, "the damage's own reason is kept: \(skipped)")
        #expect(delivered.count == Int(last) - lost.count)
    }
}
