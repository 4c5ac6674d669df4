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

    public var exists: Bool { access(path, F_OK) == 0 }

    /// The stored state, or nil when there is none or it cannot be read (the caller then replays the log).
    public func load() -> AlertSnapshot? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        return try? JSONDecoder().decode(AlertSnapshot.self, from: data)
    }

    /// Replaces the stored state. Durable on return.
    public func store(_ snapshot: AlertSnapshot) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let bytes = [UInt8](try encoder.encode(snapshot))
        if mkdir(folder, 0o700) != 0 && errno != EEXIST { throw AlertStateError(path: folder, operation: "mkdir") }
        let temporary = path + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw AlertStateError(path: temporary, operation: "open") }
        var written = 0
        while written < bytes.count {
            let result = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + written, $0.count - written) }
            if result < 0 {
                if errno == EINTR { continue }
                let error = AlertStateError(path: temporary, operation: "write")
                close(fd)
                throw error
            }
            written += result
        }
        guard fsync(fd) == 0 else {
            let error = AlertStateError(path: temporary, operation: "fsync")
            close(fd)
            throw error
        }
        close(fd)
        guard rename(temporary, path) == 0 else { throw AlertStateError(path: path, operation: "rename") }
        let directory = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard directory >= 0 else { throw AlertStateError(path: folder, operation: "open") }
        defer { close(directory) }
        guard fsync(directory) == 0 else { throw AlertStateError(path: folder, operation: "fsync") }
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

/// The evaluator's state file cannot be written: the service stops rather than move its cursor past state it
/// could not keep.
public struct AlertStateError: Error, CustomStringConvertible, Sendable {
    public var path: String
    public var operation: String
    /// The `errno` of the failed call.
    public var code: Int32

    init(path: String, operation: String) {
        self.path = path
        self.operation = operation
        self.code = errno
    }

    public var description: String { "alert state \(path): \(operation) failed: \(String(cString: strerror(code)))" }
}
