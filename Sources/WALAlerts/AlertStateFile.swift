import Foundation
import WALCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The evaluator's state as journaled: which log and thresholds it belongs to, and the last sequence number it
/// covers.
public struct AlertSnapshot: Sendable, Equatable, Codable {
    public var version = 1
    /// The log's id (`LogID.description`): a state copied beside another log is not used.
    public var logID: String
    /// `AlertStateFile.fingerprint` of the rules: a state of other thresholds is not used.
    public var rules: String
    /// Every record up to this sequence number is in `state`; the next evaluation starts after it.
    public var throughSeq: UInt64
    public var state: AlertEvaluatorState

    enum CodingKeys: String, CodingKey {
        case version
        case logID = "log_id"
        case rules
        case throughSeq = "through_seq"
        case state
    }
}

/// `{log}/alerts/state.json`: the evaluator's latest `AlertSnapshot`, replaced atomically (temporary file,
/// fsync, rename, fsync of the folder), so a crash leaves either the old or the new state, never a mix.
/// One writer (the alert service); not thread-safe.
public struct AlertStateFile: Sendable {
    public static let fileName = "state.json"
    public let folder: String
    public let path: String

    public init(logDirectory: String) {
        folder = logDirectory + "/" + AlertJournal.folder
        path = folder + "/" + Self.fileName
    }

    /// The stored state, or nil when there is none or it cannot be read (the caller then replays the log).
    public func load() -> AlertSnapshot? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        return try? JSONDecoder().decode(AlertSnapshot.self, from: data)
    }

    /// Replaces the stored state (WALCore's atomic write). Durable on return; a failure is a `WALError`, and the
    /// service stops rather than move its cursor past state it could not keep.
    public func store(_ snapshot: AlertSnapshot) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let bytes = [UInt8](try encoder.encode(snapshot))
        try FileSystem.makeDirectory(folder, followLink: false)
        try FileSystem.writeAtomically(path, directory: folder, bytes: bytes)
    }

    /// A canonical text of the rules (every field that changes an evaluation, in file order): a stored state is
    /// used only by the same rules.
    public static func fingerprint(_ rules: [ThresholdRule]) -> String {
        rules.map { rule in
            var parts = [rule.metric, rule.direction.rawValue]
            parts += rule.levels.sorted { $0.key < $1.key }.map { "\($0.key.rawValue)=\($0.value.bitPattern)" }
            switch rule.window {
            case .last: parts.append("last")
            case .aggregate(let kind, let duration, let minSamples):
                parts.append("\(kind.rawValue)/\(duration)/\(minSamples)")
            }
            parts += rule.tags.sorted { $0.key < $1.key }.map { "tag \($0.key)=\($0.value)" }
            parts.append("cooldown \(rule.cooldownNanos)")
            return parts.joined(separator: "|")
        }.joined(separator: "\n")
    }
}
