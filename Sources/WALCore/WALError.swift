import SystemPackage

/// Every error WALCore throws.
///
/// A corruption error names the file and the byte offset, so that `walctl verify` and `repair` can act on it.
public struct WALError: Error, CustomStringConvertible, Sendable {
    /// What kind of failure this is; stable across releases, safe to switch over.
    public enum Code: String, Sendable {
        /// A system call failed; `cause` holds the errno.
        case io
        /// Bytes read from disk are not what the format says they must be.
        case corrupt
        /// Another process holds the writer lock of the directory.
        case locked
        /// A record larger than one staging block can hold.
        case recordTooLarge
        /// The record was dropped by the `whenFull` policy; the loss is recorded in the log as a gap marker.
        case dropped
        /// The log was closed.
        case closed
        /// A configuration value or argument is out of range.
        case invalidArgument
        /// The directory holds a log of another format version, or is not a log at all.
        case incompatible
        /// No log exists at the path.
        case notFound
    }

    public var code: Code
    public var message: String
    /// The file concerned, when there is one.
    public var path: String?
    /// The byte offset inside `path`, for corruption.
    public var offset: Int64?
    /// The underlying system error, for `.io`.
    public var cause: Errno?
    /// The sequence number a `.dropped` record took (it is covered by a gap marker).
    public var seq: UInt64?
    /// Where in WALCore the error was raised.
    public var location: String

    public init(
        _ code: Code,
        _ message: String,
        path: String? = nil,
        offset: Int64? = nil,
        cause: Errno? = nil,
        fileID: String = #fileID,
        line: Int = #line
    ) {
        self.code = code
        self.message = message
        self.path = path
        self.offset = offset
        self.cause = cause
        self.location = "\(fileID):\(line)"
    }

    public var description: String {
        var text = message
        if let path {
            text += " (\(path)"
            if let offset { text += " at byte \(offset)" }
            text += ")"
        }
        if let cause { text += ": \(cause)" }
        return text
    }

    static func io(
        _ what: String,
        path: String?,
        _ errno: Errno,
        fileID: String = #fileID,
        line: Int = #line
    )
        -> WALError
    {
        WALError(.io, what, path: path, cause: errno, fileID: fileID, line: line)
    }
}
