import Foundation
import Testing
import WALTestKit

@Suite struct KafkaHarnessTests {
    @Test(.enabled(if: bootstrap != nil, "needs KAFKA_BOOTSTRAP_SERVERS (tools/test.sh starts the mock cluster)"))
    func messagesProducedByKcatAreConsumedBackInOrder() throws {
        let servers = try #require(bootstrap)
        let topic = "walctl-harness-\(UUID().uuidString.prefix(8))"
        let messages = (0..<100).map { "message-\($0)" }
        let produce = try kcat(
            ["-P", "-b", servers, "-t", topic, "-p", "0"],
            input: messages.joined(separator: "\n") + "\n"
        )
        #expect(produce.status == 0)
        let consume = try kcat([
            "-C", "-b", servers, "-t", topic, "-p", "0", "-o", "beginning", "-c", "100", "-e", "-q",
        ])
        #expect(consume.status == 0)
        #expect(consume.out.split(separator: "\n").map(String.init) == messages)
    }

    @Test func kafkaMockPrintsAndWritesItsBootstrapAndStopsOnSIGTERM() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let file = directory.file("bootstrap")
        let mock = try ChildProcess(kafkaMockPath, ["--brokers", "2", "--bootstrap-file", file])
        let printed = try #require(mock.readLine())
        #expect(printed.split(separator: ",").count == 2)
        #expect(printed.split(separator: ",").allSatisfy { $0.hasPrefix("127.0.0.1:") })
        #expect(try String(contentsOfFile: file, encoding: .utf8) == printed + "\n")
        // A real client can use it.
        let topic = "walctl-mock-\(UUID().uuidString.prefix(8))"
        #expect(try kcat(["-P", "-b", printed, "-t", topic], input: "hello\n").status == 0)
        let consumed = try kcat(["-C", "-b", printed, "-t", topic, "-o", "beginning", "-c", "1", "-e", "-q"])
        #expect(consumed.out == "hello")
        Foundation.kill(mock.pid, SIGTERM)
        #expect(mock.wait() == 0, "exits 0 on SIGTERM")
    }

    @Test func kafkaMockRefusesBadUsageWithExitTwo() throws {
        let child = try ChildProcess(kafkaMockPath, ["--brokers", "0"])
        _ = child.remainingOutput()
        #expect(child.wait() == 2)
        #expect(child.standardError().contains("--brokers"))
    }
}
