// kafka-mock: runs librdkafka's mock cluster until SIGTERM or SIGINT.
//
//   kafka-mock [--brokers N] [--bootstrap-file PATH] [--fail-produce-requests COUNT:CODE]
//
// Prints the bootstrap servers on stdout (and writes them, atomically, to PATH), then waits. Tests take the
// cluster down and back with signals: SIGUSR1 sets every broker down (connections closed and refused), SIGUSR2 sets
// them up again; each prints `down` or `up` on stdout once done. --fail-produce-requests makes the first COUNT
// produce requests fail with Kafka error CODE (21: INVALID_REQUIRED_ACKS), for tests of failed deliveries.
// Exit codes: 0 after SIGTERM or SIGINT; 1 when the cluster cannot start; 2 on usage errors.
import Foundation
import WALKafka

func fail(_ message: String, code: Int32) -> Never {
    FileHandle.standardError.write(Data("kafka-mock: \(message)\n".utf8))
    exit(code)
}

var brokers = 3
var bootstrapFile: String?
var failedProduceRequests: (count: Int, code: Int32)?
var arguments = CommandLine.arguments.dropFirst()
while let argument = arguments.popFirst() {
    switch argument {
    case "--brokers":
        guard let value = arguments.popFirst(), let count = Int(value), count >= 1, count <= 16 else {
            fail("--brokers takes a number from 1 to 16", code: 2)
        }
        brokers = count
    case "--bootstrap-file":
        guard let value = arguments.popFirst() else { fail("--bootstrap-file takes a path", code: 2) }
        bootstrapFile = value
    case "--fail-produce-requests":
        let parts = arguments.popFirst()?.split(separator: ":") ?? []
        guard parts.count == 2, let count = Int(parts[0]), count >= 1, let code = Int32(parts[1]), code > 0 else {
            fail("--fail-produce-requests takes COUNT:CODE (a Kafka error code, such as 21)", code: 2)
        }
        failedProduceRequests = (count, code)
    case "--help", "-h":
        print(
            "usage: kafka-mock [--brokers N] [--bootstrap-file PATH] [--fail-produce-requests COUNT:CODE]"
                + "   (SIGUSR1: brokers down, SIGUSR2: up)"
        )
        exit(0)
    default:
        fail("unknown argument \(argument)", code: 2)
    }
}

// Block the signals in every thread before librdkafka starts its own, then wait for them here.
var signals = sigset_t()
sigemptyset(&signals)
sigaddset(&signals, SIGTERM)
sigaddset(&signals, SIGINT)
sigaddset(&signals, SIGUSR1)
sigaddset(&signals, SIGUSR2)
pthread_sigmask(SIG_BLOCK, &signals, nil)

let cluster: KafkaMockCluster
do {
    cluster = try KafkaMockCluster(brokers: brokers)
} catch {
    fail("\(error)", code: 1)
}
if let failedProduceRequests {
    cluster.failProduceRequests(failedProduceRequests.count, code: failedProduceRequests.code)
}
if let bootstrapFile {
    let temporary = bootstrapFile + ".tmp"
    do {
        try Data((cluster.bootstrapServers + "\n").utf8).write(to: URL(fileURLWithPath: temporary))
        guard rename(temporary, bootstrapFile) == 0 else { fail("cannot write \(bootstrapFile)", code: 1) }
    } catch {
        fail("cannot write \(bootstrapFile): \(error)", code: 1)
    }
}
FileHandle.standardOutput.write(Data((cluster.bootstrapServers + "\n").utf8))

var received: Int32 = 0
while sigwait(&signals, &received) == 0 {
    switch received {
    case SIGUSR1, SIGUSR2:
        let up = received == SIGUSR2
        do {
            for broker in 1...Int32(brokers) { try cluster.setBroker(broker, up: up) }
            FileHandle.standardOutput.write(Data((up ? "up\n" : "down\n").utf8))
        } catch {
            FileHandle.standardError.write(Data("kafka-mock: \(error)\n".utf8))
        }
    default:
        withExtendedLifetime(cluster) {}
        exit(0)
    }
}
exit(1)
