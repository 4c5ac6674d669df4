import Foundation
import Testing
import WALCore
import WALMetrics
import WALShipping
import WALTestKit

@testable import WALKafka

/// `Replayer` in process against the test cluster: the shipper's messages, no cursor committed.
@Suite(.enabled(if: hasBootstrap, "needs KAFKA_BOOTSTRAP_SERVERS (tools/test.sh starts the mock cluster)"))
struct KafkaLibraryReplayTests {
    @Test func replayThroughTheLibrarySendsTheRangeAndCommitsNoCursor() throws {
        let servers = try #require(bootstrap)
        let log = try CatalogLog(records: 3000, prefix: "walctl-kafka-replay")
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let prefix = uniquePrefix()
        var settings = KafkaSinkConfiguration(
            bootstrapServers: servers,
            deadLetterFile: directory.file("dead-letters.jsonl")
        )
        settings.topicPrefix = prefix
        let sink = KafkaSink(configuration: settings)
        defer { sink.disconnect() }
        var replay = ReplayConfiguration()
        replay.filter.fromSeq = 1001
        replay.filter.toSeq = 2500
        replay.batchSize = 400
        let statistics = try Replayer(directory: log.path, sink: sink, configuration: replay).run()
        #expect(statistics.sent == 1500 && statistics.failed == 0)
        #expect(try sink.peekCommittedSeq(logID: log.logID) == 0, "replay commits no cursor")

        let messages = try consumeAll(servers, prefix: prefix)
        #expect(messages.count == 1500)
        #expect(Set(messages.map(\.seq)) == Set(UInt64(1001)...2500))
        for message in messages {
            #expect(message.headers["event_id"] == Envelope.eventID(logID: log.logID, seq: message.seq))
        }
        #expect(!FileManager.default.fileExists(atPath: log.path + "/dead-letters"), "nothing beside the log")
    }
}
