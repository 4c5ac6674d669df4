import Foundation
import Logging
import Testing
import WALCore
import WALMetrics
import WALShipping
import WALTestKit

@testable import WALKafka

/// End to end through `walctl ship --kafka` against the test cluster (mock or real), checked with kcat.
@Suite(.enabled(if: hasBootstrap, "needs KAFKA_BOOTSTRAP_SERVERS (tools/test.sh starts the mock cluster)"))
struct KafkaShippingTests {
    @Test func everyRecordArrivesOnItsCategoryTopicWithItsEventIDKeyAndHeaders() throws {
        let servers = try #require(bootstrap)
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("log")
        let prefix = uniquePrefix()
        #expect(try walctl(["emit", "--dir", path, "--count", "6000", "--threads", "2"]).status == 0)
        let shipped = try walctl(["ship", "--dir", path, "--kafka", servers, "--kafka-topic-prefix", prefix, "--drain"])
        #expect(shipped.status == 0, "\(shipped.err)")

        let records = try logRecords(path)
        #expect(records.count == 6000)
        let logID = try LogDirectory(path: path).readMeta().logID
        let messages = try consumeAll(servers, prefix: prefix)
        #expect(messages.count == records.count, "no duplicates in a run without failures")

        // Per topic: exactly the records of its category.
        for category in MetricCategory.allCases {
            let expected = records.filter { MetricCategory(metricName: $0.name) == category }.map(\.seq)
            let arrived = messages.filter { $0.topic == category.topic(prefix: prefix) }.map(\.seq)
            #expect(arrived.sorted() == expected, "topic \(category.topic(prefix: prefix))")
        }
        // Every record's event id, key and headers.
        let bySeq = Dictionary(messages.map { ($0.seq, $0) }, uniquingKeysWith: { first, _ in first })
        var checked = 0
        for record in records {
            guard let message = bySeq[record.seq] else {
                Issue.record("seq \(record.seq) missing")
                continue
            }
            let eventID = Envelope.eventID(logID: logID, seq: record.seq)
            #expect(message.headers["event_id"] == eventID)
            #expect(message.headers["log_id"] == logID.description)
            #expect(message.headers["metric_type"] == record.type.description)
            #expect(message.key == record.agentID ?? "")
            #expect(message.value.contains(#""event_id":"\#(eventID)""#))
            checked += 1
        }
        #expect(checked == records.count)
        // An agent's records keep their order: one partition per agent and topic, seqs increasing within it.
        var partitionOfAgent: [String: Int] = [:]
        var lastSeq: [String: UInt64] = [:]
        for message in messages {
            let agent = message.topic + "/" + message.key
            if let partition = partitionOfAgent[agent] {
                #expect(partition == message.partition, "agent \(agent) spans partitions")
            }
            partitionOfAgent[agent] = message.partition
            #expect(message.seq > lastSeq[agent] ?? 0, "agent \(agent) out of order")
            lastSeq[agent] = message.seq
        }
    }

    @Test func theEnvelopeParsedBackMatchesTheRecordFieldByField() throws {
        let servers = try #require(bootstrap)
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("log")
        let prefix = uniquePrefix()
        let collector = try MetricsCollector(configuration: MetricsConfiguration(directory: path))
        collector.record(
            MetricCatalog.routingDecisionTime,
            value: 12.5,
            tags: ["agent_type": "router", "routing_strategy": "say \"hi\"\n\tüñí"],
            correlationID: "corr-1",
            agentID: "agent-7"
        )
        collector.recordGauge("custom_queue_depth", value: -0.000123, unit: "count")
        collector.recordRate("quorum_participation_rate", percent: 100, correlationID: "corr-2", agentID: "a")
        collector.recordCounter("state_operation_count", count: 1e300, agentID: "agent-7")
        try collector.close()
        let shipped = try walctl(["ship", "--dir", path, "--kafka", servers, "--kafka-topic-prefix", prefix, "--drain"])
        #expect(shipped.status == 0, "\(shipped.err)")

        let logID = try LogDirectory(path: path).readMeta().logID
        let records = try logRecords(path)
        let messages = Dictionary(
            try consumeAll(servers, prefix: prefix).map { ($0.seq, $0) },
            uniquingKeysWith: { first, _ in first }
        )
        #expect(records.count == 4 && messages.count == 4)
        for record in records {
            let message = try #require(messages[record.seq])
            let envelope = try #require(
                try JSONSerialization.jsonObject(with: Data(message.value.utf8)) as? [String: Any]
            )
            #expect(envelope["event_type"] as? String == "metric.recorded")
            #expect(envelope["event_version"] as? String == "v1")
            #expect(envelope["event_id"] as? String == Envelope.eventID(logID: logID, seq: record.seq))
            #expect(envelope["source_service"] as? String == Envelope.defaultSourceService)
            #expect(envelope["correlation_id"] as? String == record.correlationID)
            let timestamp = try #require(envelope["timestamp"] as? String)
            #expect(timestamp.hasSuffix("Z") && timestamp.count == 30)
            let payload = try #require(envelope["payload"] as? [String: Any])
            #expect(payload["metric_id"] as? String == MetricCatalog.metricID(for: record.name))
            #expect(payload["metric_name"] as? String == record.name)
            #expect(payload["metric_type"] as? String == record.type.description)
            #expect((payload["value"] as? NSNumber)?.doubleValue == record.value)
            #expect(payload["unit"] as? String == record.unit)
            #expect(payload["tags"] as? [String: String] == record.tags)
            #expect(payload["agent_id"] as? String == record.agentID)
            #expect(payload["correlation_id"] as? String == record.correlationID)
            if record.agentID == nil { #expect(payload["agent_id"] is NSNull) }
        }
    }

    @Test func theCursorLivesInKafkaAndSurvivesLosingTheLocalCopy() throws {
        let servers = try #require(bootstrap)
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("log")
        let prefix = uniquePrefix()
        let ship = ["ship", "--dir", path, "--kafka", servers, "--kafka-topic-prefix", prefix, "--drain"]
        #expect(try walctl(["emit", "--dir", path, "--count", "3000"]).status == 0)
        #expect(try walctl(ship).status == 0)
        let probe = try CursorProbe(servers: servers, path: path, prefix: prefix)
        #expect(probe.committed() == 3000)

        // Without the local cursor file, the shipper resumes from Kafka's commit: nothing is sent twice.
        try FileManager.default.removeItem(atPath: path + "/cursors")
        #expect(try walctl(["emit", "--dir", path, "--count", "2000"]).status == 0)
        #expect(try walctl(ship).status == 0)
        #expect(probe.committed() == 5000)
        let messages = try consumeAll(servers, prefix: prefix)
        #expect(messages.count == 5000)
        #expect(Set(messages.map(\.seq)) == Set(1...5000))

        // Another consumer group is another cursor: it starts over, with the same event ids.
        #expect(try walctl(ship + ["--kafka-group", "walctl-test-other-\(UUID().uuidString)"]).status == 0)
        let twice = try consumeAll(servers, prefix: prefix)
        #expect(twice.count == 10_000)
        let ids = Dictionary(grouping: twice, by: \.seq).mapValues { Set($0.compactMap { $0.headers["event_id"] }) }
        #expect(ids.values.allSatisfy { $0.count == 1 }, "a re-sent record keeps its event id")
    }

    @Test func aGroupHoldingAnotherLogsCursorIsRefused() throws {
        let servers = try #require(bootstrap)
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let prefix = uniquePrefix()
        let group = "walctl-test-shared-\(UUID().uuidString)"
        for name in ["a", "b"] {
            #expect(try walctl(["emit", "--dir", directory.file(name), "--count", "100"]).status == 0)
        }
        let arguments = ["--kafka", servers, "--kafka-topic-prefix", prefix, "--kafka-group", group, "--drain"]
        #expect(try walctl(["ship", "--dir", directory.file("a")] + arguments).status == 0)
        let second = try walctl(["ship", "--dir", directory.file("b")] + arguments)
        #expect(second.status == 1)
        #expect(second.err.contains("holds the cursor of log"))
    }

    @Test func aRecordTooLargeForTheBrokerGoesToTheDeadLetterFileAndTheRestFlows() throws {
        let servers = try #require(bootstrap)
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("log")
        let prefix = uniquePrefix()
        let collector = try MetricsCollector(configuration: MetricsConfiguration(directory: path))
        let long = String(repeating: "x", count: 250)
        for index in 0..<20 {
            let tags = index == 7 ? ["a": long, "b": long, "c": long, "d": long] : ["agent_type": "router"]
            collector.recordGauge("custom_payload_size", value: Double(index), unit: "count", tags: tags)
        }
        try collector.close()
        let shipped = try walctl([
            "ship", "--dir", path, "--kafka", servers, "--kafka-topic-prefix", prefix,
            "--kafka-property", "message.max.bytes=1000", "--drain",
        ])
        #expect(shipped.status == 0, "\(shipped.err)")
        #expect(shipped.err.contains("1 dead-lettered"))
        let messages = try consumeAll(servers, prefix: prefix)
        #expect(Set(messages.map(\.seq)) == Set((1...20).filter { $0 != 8 }))
        let lines = try String(contentsOfFile: path + "/dead-letters/kafka.jsonl", encoding: .utf8)
            .split(separator: "\n")
        #expect(lines.count == 1)
        let entry = try #require(try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as? [String: Any])
        #expect(entry["wal_seq"] as? Int == 8)
        #expect((entry["reason"] as? String)?.lowercased().contains("too large") == true)
        #expect((entry["envelope"] as? [String: Any])?["event_id"] as? String != nil)
        #expect(try CursorProbe(servers: servers, path: path, prefix: prefix).committed() == 20)
    }

    @Test func sigkillOfTheShipperAtRandomMomentsLosesNothingAndRepeatsAtMostTheBatchInFlight() throws {
        let servers = try #require(bootstrap)
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("log")
        let prefix = uniquePrefix()
        #expect(try walctl(["emit", "--dir", path, "--count", "30000", "--threads", "2"]).status == 0)
        // A writer keeps emitting while the shipper is killed again and again (it never ends by itself: a writer of
        // fixed length ended after the first trials on a slow machine).
        let writer = try ChildProcess.endlessWriter(path, rate: 5000)
        let probe = try CursorProbe(servers: servers, path: path, prefix: prefix)
        let batch = 500
        let trials = 8
        var generator = SeededGenerator()
        var committedSeen: [UInt64] = []
        for trial in 0..<trials {
            let before = probe.committed() ?? 0
            let shipper = try ChildProcess(
                walctlPath,
                [
                    "ship", "--dir", path, "--kafka", servers, "--kafka-topic-prefix", prefix,
                    "--batch-size", "\(batch)", "--max-batch-size", "\(batch)", "--flush-interval-ms", "50",
                ]
            )
            // Odd trials kill mid-stream for sure (after a fresh commit); even ones at any moment, startup included.
            let remaining = (try LogInspector.lastSealedSeqCheap(path: path)) > before
            if trial % 2 == 1 && remaining { #expect(waitFor(seconds: 60) { (probe.committed() ?? 0) > before }) }
            usleep(UInt32.random(in: 10_000...300_000, using: &generator))
            shipper.kill(SIGKILL)
            committedSeen.append(probe.committed() ?? 0)
        }
        #expect(writer.process.isRunning, "the writer wrote through every kill")
        writer.kill(SIGKILL)
        try WAL.open(path: path).close()  // Seals what the killed writer staged.
        #expect(committedSeen.last ?? 0 > 0, "the shipper made progress between kills")
        #expect(committedSeen == committedSeen.sorted(), "the committed position never goes back")
        let final = try walctl(["ship", "--dir", path, "--kafka", servers, "--kafka-topic-prefix", prefix, "--drain"])
        #expect(final.status == 0, "\(final.err)")

        let records = try logRecords(path)
        #expect(records.count > 30_000)
        #expect(records.map(\.seq) == Array(1...UInt64(records.count)))
        let messages = try consumeAll(servers, prefix: prefix)
        let seen = Set(messages.map(\.seq))
        #expect(seen == Set(records.map(\.seq)), "every record present at least once")
        let duplicates = messages.count - seen.count
        // A kill re-sends at most the batches in flight (KafkaSinkConfiguration.batchesInFlight).
        let inFlight = KafkaSinkConfiguration(bootstrapServers: servers, deadLetterFile: "").batchesInFlight
        #expect(
            duplicates <= trials * batch * inFlight,
            "\(duplicates) duplicates for \(trials) kills of \(inFlight) \(batch)-record batches in flight"
        )
    }
}

/// Brokers going down and coming back, on a mock cluster of the test's own (a test cannot stop a real broker).
@Suite struct KafkaOutageTests {
    @Test func brokersDownThenBackAndTheShipperCatchesUpOnItsOwn() throws {
        let cluster = try KafkaMockProcess()
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("log")
        #expect(try walctl(["emit", "--dir", path, "--count", "2000"]).status == 0)
        let shipper = try ChildProcess(
            walctlPath,
            [
                "ship", "--dir", path, "--kafka", cluster.servers, "--flush-interval-ms", "50",
                "--kafka-property", "message.timeout.ms=2000",
            ]
        )
        let probe = try CursorProbe(servers: cluster.servers, path: path, prefix: "agent.metrics")
        #expect(waitFor(seconds: 60) { probe.committed() == 2000 })

        #expect(cluster.set(up: false))
        // Emitting does not notice.
        let emit = try walctl(["emit", "--dir", path, "--count", "3000"])
        #expect(emit.status == 0)
        #expect(probe.committed() == nil, "the cluster is really down")
        // The shipper fails, says so, and retries.
        #expect(waitFor(seconds: 60) { shipperLogged(shipper, "delivery failed; retrying") })

        #expect(cluster.set(up: true))
        #expect(waitFor(seconds: 90) { probe.committed() == 5000 }, "caught up after the brokers came back")
        shipper.kill(SIGTERM)
        #expect(shipper.wait() == 0)
        let messages = try consumeAll(cluster.servers, prefix: "agent.metrics")
        #expect(Set(messages.map(\.seq)) == Set(1...5000))
        #expect(messages.count - 5000 <= 3000, "repeats only from the batch that was in flight")
    }

    @Test func theCommittedCursorNeverPassesABatchWhoseDeliveryFailed() throws {
        // The cluster's first produce requests fail (INVALID_REQUIRED_ACKS, which librdkafka does not retry): the
        // first batch in flight fails while the later ones are acknowledged.
        // (TOPIC_AUTHORIZATION_FAILED would be more natural, but it makes librdkafka 2.0 refuse the topic's next
        // message in rd_kafka_produceva, whose error path then frees the headers twice: librdkafka issue 4627.)
        let cluster = try KafkaMockProcess(failingProduceRequests: (3, 21))
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("log")
        #expect(try walctl(["emit", "--dir", path, "--count", "4000"]).status == 0)
        let records = try logRecords(path)
        let logID = try LogDirectory(path: path).readMeta().logID
        var configuration = KafkaSinkConfiguration(bootstrapServers: cluster.servers, deadLetterFile: "/dev/null")
        configuration.batchesInFlight = 4
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let sink = KafkaSink(configuration: configuration, logger: logger)
        #expect(try sink.committedSeq(logID: logID) == 0)

        func batch(from start: Int) -> ShipBatch {
            let end = min(records.count, start + 500)
            return ShipBatch(logID: logID, records: Array(records[start..<end]), throughSeq: UInt64(end), skipped: [])
        }
        var reported: UInt64 = 0
        var failure: (any Error)?
        do {
            for start in stride(from: 0, to: records.count, by: 500) {
                reported = max(reported, try sink.send([batch(from: start)])[logID] ?? 0)
            }
            while sink.hasBatchesInFlight {
                reported = max(reported, try sink.awaitBatchesInFlight(milliseconds: 100)[logID] ?? 0)
            }
        } catch {
            failure = error
        }
        #expect(failure != nil, "the failed produce requests failed a batch")
        sink.disconnect()
        let committed = try sink.committedSeq(logID: logID)
        let present = Set(try consumeAll(cluster.servers, prefix: "agent.metrics").map(\.seq))
        #expect(reported <= committed, "a position reported to the engine is committed")
        #expect(committed < 4000, "the cursor stopped at the failed batch")
        for seq in 1...4000 where UInt64(seq) <= committed {
            guard present.contains(UInt64(seq)) else {
                Issue.record("record \(seq) is behind the committed cursor \(committed) and not in Kafka")
                break
            }
        }

        // What the shipper does next: send again from the committed cursor; everything arrives.
        for start in stride(from: Int(committed), to: records.count, by: 500) {
            _ = try sink.send([batch(from: start)])
        }
        while sink.hasBatchesInFlight { _ = try sink.awaitBatchesInFlight(milliseconds: 100) }
        #expect(try sink.committedSeq(logID: logID) == 4000)
        let all = Set(try consumeAll(cluster.servers, prefix: "agent.metrics").map(\.seq))
        #expect(all == Set(records.map(\.seq)))
    }

    @Test func aFatalProducerErrorRebuildsTheProducerWhichResumesFromTheCommittedCursor() throws {
        let cluster = try KafkaMockProcess(brokers: 1)
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("log")
        #expect(try walctl(["emit", "--dir", path, "--count", "300"]).status == 0)
        let records = try logRecords(path)
        let logID = try LogDirectory(path: path).readMeta().logID
        let sink = KafkaSink(
            configuration: KafkaSinkConfiguration(bootstrapServers: cluster.servers, deadLetterFile: "/dev/null")
        )
        #expect(try sink.committedSeq(logID: logID) == 0)
        try sink.deliver(ShipBatch(logID: logID, records: Array(records[0..<100]), throughSeq: 100, skipped: []))

        sink.raiseFatalErrorForTesting()
        let second = ShipBatch(logID: logID, records: Array(records[100..<200]), throughSeq: 200, skipped: [])
        #expect(throws: KafkaError.self) { try sink.deliver(second) }
        // What the shipper does after a failure: disconnect, ask where the sink is, send again.
        sink.disconnect()
        #expect(try sink.committedSeq(logID: logID) == 100)
        try sink.deliver(second)
        #expect(try sink.committedSeq(logID: logID) == 200)
        #expect(sink.statistics.producerRebuilds == 1)
        let messages = try consumeAll(cluster.servers, prefix: "agent.metrics")
        #expect(Set(messages.map(\.seq)) == Set(1...200))
    }
}

private func shipperLogged(_ shipper: ChildProcess, _ text: String) -> Bool {
    shipper.partialStandardError().contains(text)
}

extension KafkaShippingTests {
    /// One `walctl ship --root` for many logs: every record in Kafka at least once, distinct event ids equal to the
    /// record count, and each log's cursor in its own group.
    @Test func oneHostShipperDeliversEveryLogWithDistinctEventIDsAndACursorPerLog() throws {
        let servers = try #require(bootstrap)
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let root = directory.file("agents")
        let prefix = uniquePrefix()
        var paths: [String] = []
        for index in 0..<6 {
            paths.append(try agentLogPath(root, "agent-\(index)"))
            #expect(try walctl(["emit", "--dir", paths[index], "--count", "\(200 + index * 150)"]).status == 0)
        }
        let shipped = try walctl([
            "ship", "--root", root, "--kafka", servers, "--kafka-topic-prefix", prefix, "--drain",
        ])
        #expect(shipped.status == 0, "\(shipped.err.suffix(2000))")

        var expected = Set<String>()
        for path in paths {
            let logID = try LogDirectory(path: path).readMeta().logID
            for record in try logRecords(path) { expected.insert(Envelope.eventID(logID: logID, seq: record.seq)) }
            let probe = try CursorProbe(servers: servers, path: path, prefix: prefix)
            #expect(probe.committed() == (try LogInspector.lastSealedSeqCheap(path: path)))
        }
        let messages = try consumeAll(servers, prefix: prefix)
        let eventIDs = Set(messages.compactMap { $0.headers["event_id"] })
        #expect(messages.count >= expected.count)
        #expect(eventIDs == expected)
    }
}
