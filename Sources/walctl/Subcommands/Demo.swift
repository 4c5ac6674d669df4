import ArgumentParser
import Foundation
import WALCore
import WALMetrics
import WALTraffic

/// `walctl demo`: simulated agents emitting the catalog into a log for a few seconds.
struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run simulated agents emitting the 25 catalog metrics into a log for a few seconds.",
        discussion: """
            Each agent thread runs workflows (16 metric calls under one correlation id) at the given rate, through
            the same MetricsCollector API agent code uses. At the end it prints what was written per category, the
            bytes per record on disk, and a few records as OnexEnvelopeV1 JSON.

            Examples:
              walctl demo --dir /tmp/demo-log
              walctl demo --dir /tmp/demo-log --seconds 10 --agents 4 --rate 50000
            """
    )

    @Option(help: "The log directory (created if missing).")
    var dir: String

    @Option(help: "How long the agents run, in seconds.")
    var seconds: Double = 3

    @Option(help: "Agent threads.")
    var agents: Int = 2

    @Option(help: "Records per second per agent thread.")
    var rate: Double = 20_000

    func validate() throws {
        guard seconds > 0, seconds <= 3600 else { throw ValidationError("--seconds must be in (0, 3600]") }
        guard agents >= 1, agents <= 64 else { throw ValidationError("--agents must be between 1 and 64") }
        guard rate >= 0.001, rate <= 1e9 else {
            throw ValidationError("--rate must be between 0.001 and 1000000000 records per second")
        }
    }

    func run() throws {
        let collector: MetricsCollector
        do {
            collector = try MetricsCollector(configuration: MetricsConfiguration(directory: dir, agentID: "demo"))
        } catch {
            Output.error("walctl demo: \(error)")
            throw ExitCode(1)
        }
        let firstSeq = (collector.log?.statistics.nextSeq) ?? 1
        Output.line("demo: \(agents) agent threads, \(Int(rate)) records/s each, \(seconds) s, into \(dir)")
        let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(seconds * 1e9)
        let finished = DispatchGroup()
        for thread in 0..<agents {
            finished.enter()
            let perSecond = rate
            Thread {
                let traffic = TrafficEmitter(traffic: AgentTraffic(thread: thread), collector: collector)
                let started = DispatchTime.now().uptimeNanoseconds
                var counter: UInt64 = 0
                while DispatchTime.now().uptimeNanoseconds < deadline {
                    let due = started + UInt64(Double(counter) / perSecond * 1e9)
                    let now = DispatchTime.now().uptimeNanoseconds
                    if due > now { usleep(UInt32(min((due - now) / 1000, 100_000))) }
                    for _ in 0..<16 {
                        traffic.emit(counter)
                        counter += 1
                    }
                }
                finished.leave()
            }.start()
        }
        finished.wait()
        let statistics = collector.statistics
        do { try collector.close() } catch { Output.error("walctl demo: close: \(error)") }

        var perCategory: [MetricCategory: Int] = [:]
        var samples: [MetricRecord] = []
        let reader = MetricsReader(path: dir, from: firstSeq)
        try? reader.read { entry in
            if case .metric(let record) = entry {
                perCategory[record.category, default: 0] += 1
                if samples.count < 3 { samples.append(record) }
            }
            return true
        }
        Output.line(
            "emitted \(statistics.emitted), rejected \(statistics.rejectedTotal), dropped \(statistics.dropped)"
        )
        for category in MetricCategory.allCases where perCategory[category] != nil {
            Output.line(
                "  \(category.rawValue.padding(toLength: 13, withPad: " ", startingAt: 0)) "
                    + "\(perCategory[category] ?? 0) records -> topic \(category.topic()), table \(category.table)"
            )
        }
        if let summary = try? LogInspector.examine(path: dir), summary.records > 0 {
            Output.line(
                String(
                    format: "log: %llu records, %.1f bytes/record on disk (%.1f raw)",
                    summary.records,
                    Double(summary.bytesOnDisk) / Double(summary.records),
                    Double(summary.bytesRaw) / Double(summary.records)
                )
            )
            if let logID = try? LogDirectory(path: dir).readMeta().logID {
                Output.line("sample envelopes:")
                let sourceService = Envelope.sourceService(directory: dir)
                for record in samples {
                    Output.line(Envelope.json(record, logID: logID, sourceService: sourceService))
                }
            }
        }
    }
}
