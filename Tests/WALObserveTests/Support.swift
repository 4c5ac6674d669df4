import Foundation
import Testing
import WALTestKit

/// One sample of a Prometheus text exposition: the name, the labels and the value.
struct Sample: Equatable {
    var name: String
    var labels: [String: String]
    var value: Double
}

/// The samples of a text exposition (comments skipped). Label values here hold no escaped quotes.
func samples(_ text: String) -> [Sample] {
    text.split(separator: "\n").compactMap { line -> Sample? in
        guard !line.hasPrefix("#"), let space = line.lastIndex(of: " "),
            let value = Double(line[line.index(after: space)...])
        else { return nil }
        let series = line[..<space]
        guard let open = series.firstIndex(of: "{") else {
            return Sample(name: String(series), labels: [:], value: value)
        }
        var labels: [String: String] = [:]
        let body = series[series.index(after: open)..<(series.lastIndex(of: "}") ?? series.endIndex)]
        for pair in body.components(separatedBy: "\",") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            guard parts.count == 2 else { continue }
            labels[String(parts[0])] = parts[1].trimmingCharacters(in: CharacterSet(charactersIn: "\""))
        }
        return Sample(name: String(series[..<open]), labels: labels, value: value)
    }
}

/// The value of the one sample named `name` whose labels include `labels`; nil when there is none (or several).
func sample(_ text: String, _ name: String, _ labels: [String: String] = [:]) -> Double? {
    let matching = samples(text).filter { sample in
        sample.name == name && labels.allSatisfy { sample.labels[$0.key] == $0.value }
    }
    return matching.count == 1 ? matching[0].value : nil
}

/// A tool from the Debian packages tools/setup.sh installs (prometheus, promtool, chromium); nil when missing.
func debianTool(_ name: String) -> String? {
    ["/usr/bin/\(name)", "/usr/local/bin/\(name)"].first { FileManager.default.isExecutableFile(atPath: $0) }
}

/// Under CI the tools must be there (tools/setup.sh installs them); elsewhere a test without them is skipped.
let requireDebianTools = ProcessInfo.processInfo.environment["CI"] != nil

/// `promtool check metrics` over an exposition: its exit status and what it said.
func promtoolCheck(_ text: String) throws -> (status: Int32, output: String) {
    let promtool = try #require(debianTool("promtool"), "promtool missing: run tools/setup.sh")
    let child = try ChildProcess(promtool, ["check", "metrics"], input: text)
    let out = child.remainingOutput()
    let status = child.wait()
    return (status, out + child.standardError())
}
