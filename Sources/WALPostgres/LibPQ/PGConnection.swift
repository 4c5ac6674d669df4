import CLibPQ
import WALCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// An error from PostgreSQL or libpq, with its SQLSTATE when the server sent one.
public struct PGError: Error, CustomStringConvertible, Sendable {
    public var message: String
    /// The five-character SQLSTATE, nil for client-side failures (connection refused, lost connection).
    public var sqlState: String?
    /// True when the connection itself failed: the shipper reconnects and retries.
    public var connectionLost: Bool
    /// True when no retry can help (a schema newer than this code).
    public var fatal: Bool

    public init(message: String, sqlState: String? = nil, connectionLost: Bool = false, fatal: Bool = false) {
        self.message = message
        self.sqlState = sqlState
        self.connectionLost = connectionLost
        self.fatal = fatal
    }

    /// Transient failures are retried forever with backoff; the rest are permanent for the data that caused them.
    /// Transient: lost connections, connection exceptions (08), insufficient resources (53), operator
    /// intervention and timeouts (57: admin shutdown, statement timeout), serialization failures and deadlocks
    /// (40001, 40P01), lock not available (55P03), system errors (58).
    public var isTransient: Bool {
        if fatal { return false }
        if connectionLost { return true }
        guard let state = sqlState else { return true }
        if state == "40001" || state == "40P01" || state == "55P03" { return true }
        return Self.isTransientClass(state)
    }

    /// SQLSTATE classes that can heal by waiting, at connect time as later: connection exceptions (08),
    /// insufficient resources (53), operator intervention (57), system errors (58).
    static func isTransientClass(_ sqlState: String) -> Bool {
        ["08", "53", "57", "58"].contains(String(sqlState.prefix(2)))
    }

    public var description: String {
        sqlState.map { "\(message) (SQLSTATE \($0))" } ?? message
    }

    /// A word for the error counters, from the SQLSTATE class: `connection` (no SQLSTATE, class 08), `resources`
    /// (53), `unavailable` (57: shutdown, start-up, timeouts), `conflict` (40), `lock` (55), `system` (58), `data`
    /// (22, 23), `schema` (42), `auth` (28), `database` (3D), else `sqlstate_` and the class.
    public var kind: String {
        guard !connectionLost, let state = sqlState else { return "connection" }
        let names = [
            "08": "connection", "53": "resources", "57": "unavailable", "40": "conflict", "55": "lock", "58": "system",
            "22": "data", "23": "data", "42": "schema", "28": "auth", "3D": "database",
        ]
        let errorClass = String(state.prefix(2))
        return names[errorClass] ?? "sqlstate_\(errorClass.lowercased())"
    }
}

/// One libpq connection. Every call blocks: use it from a dedicated thread, never the cooperative pool.
/// Not thread-safe. The connection is closed (`PQfinish`) when the object goes away.
final class PGConnection {
    private let handle: OpaquePointer
    /// The connection string's secrets, cut out of every error message.
    private let conninfo: Conninfo

    private init(handle: OpaquePointer, conninfo: Conninfo) {
        self.handle = handle
        self.conninfo = conninfo
    }

    deinit { PQfinish(handle) }

    /// Connects with a conninfo string or URL (libpq's `PG*` environment variables and `.pgpass` fill the gaps).
    ///
    /// The string is parsed first (`PQconninfoParse`): one libpq cannot parse is refused without being echoed
    /// (`fatal`). Connection errors carry the server's SQLSTATE (read from a verbose error message, the only way
    /// libpq exposes it before a session exists) and are `fatal` when no retry can heal them (wrong password,
    /// missing database or role, an invalid option value); every password-like value is cut out of the message.
    static func connect(_ conninfo: String, applicationName: String) throws(PGError) -> PGConnection {
        let parsed = try Conninfo.parse(conninfo)
        guard let handle = PQconnectStart(conninfo) else {
            throw PGError(message: "libpq could not allocate a connection", connectionLost: true)
        }
        let connection = PGConnection(handle: handle, conninfo: parsed)
        // Verbose messages carry the SQLSTATE of a refused connection ("FATAL:  28P01: ...").
        _ = PQsetErrorVerbosity(handle, PQERRORS_VERBOSE)
        let timeout = parsed.connectTimeoutSeconds
        if PQstatus(handle) != CONNECTION_BAD {
            guard connection.pollUntilConnected(timeoutSeconds: timeout) else {
                throw PGError(
                    message: "cannot connect: no answer within \(timeout) s (connect_timeout)",
                    connectionLost: true
                )
            }
        }
        guard PQstatus(handle) == CONNECTION_OK else {
            throw ConnectFailure(libpqMessage: connection.lastError).error(scrubbing: parsed)
        }
        _ = PQsetErrorVerbosity(handle, PQERRORS_DEFAULT)
        _ = try connection.execute("SET application_name = \(quoteLiteral(applicationName))")
        return connection
    }

    /// Drives `PQconnectPoll` until the connection is made or fails; false when `timeoutSeconds` passed first
    /// (libpq ignores `connect_timeout` in this mode, so the wait is bounded here).
    private func pollUntilConnected(timeoutSeconds: Int) -> Bool {
        let deadline = monotonicSeconds() + UInt64(timeoutSeconds)
        var status = PGRES_POLLING_WRITING
        while true {
            switch status {
            case PGRES_POLLING_OK, PGRES_POLLING_FAILED:
                return true
            default:
                let now = monotonicSeconds()
                guard now < deadline else { return false }
                var descriptor = pollfd(
                    fd: PQsocket(handle),
                    events: Int16(status == PGRES_POLLING_READING ? POLLIN : POLLOUT),
                    revents: 0
                )
                let ready = poll(&descriptor, 1, Int32(min(1000, (deadline - now) * 1000)))
                if ready < 0 && errno != EINTR { return true }
                if ready <= 0 { continue }
            }
            status = PQconnectPoll(handle)
        }
    }

    var isConnected: Bool { PQstatus(handle) == CONNECTION_OK }

    /// The backend process id (for tests that terminate it).
    var backendPID: Int32 { PQbackendPID(handle) }

    var lastError: String {
        conninfo.scrub(String(cString: PQerrorMessage(handle)).trimmingWhitespace())
    }

    /// Runs SQL without parameters (may hold several statements).
    @discardableResult
    func execute(_ sql: String) throws(PGError) -> PGResult {
        try check(PQexec(handle, sql))
    }

    /// Runs one statement with text parameters (`$1`, `$2` ...); nil is SQL NULL.
    @discardableResult
    func execute(_ sql: String, _ parameters: [String?]) throws(PGError) -> PGResult {
        var cStrings: [UnsafeMutablePointer<CChar>?] = parameters.map { $0.flatMap { strdup($0) } }
        defer { cStrings.forEach { free($0) } }
        let result = cStrings.withUnsafeMutableBufferPointer { buffer in
            buffer.baseAddress!.withMemoryRebound(to: UnsafePointer<CChar>?.self, capacity: buffer.count) { values in
                PQexecParams(handle, sql, Int32(parameters.count), nil, values, nil, nil, 0)
            }
        }
        return try check(result)
    }

    /// `COPY ... FROM STDIN` with `data` as the whole input.
    func copyIn(_ sql: String, data: [UInt8]) throws(PGError) {
        let start = try check(PQexec(handle, sql), expecting: PGRES_COPY_IN)
        _ = start
        let sent = data.withUnsafeBytes { bytes -> Int32 in
            var offset = 0
            while offset < bytes.count {
                let chunk = min(1 << 20, bytes.count - offset)
                let rc = PQputCopyData(
                    handle,
                    bytes.baseAddress!.advanced(by: offset).assumingMemoryBound(to: CChar.self),
                    Int32(chunk)
                )
                if rc != 1 { return rc }
                offset += chunk
            }
            return 1
        }
        guard sent == 1 else { throw PGError(message: "COPY data: \(lastError)", connectionLost: !isConnected) }
        guard PQputCopyEnd(handle, nil) == 1 else {
            throw PGError(message: "COPY end: \(lastError)", connectionLost: !isConnected)
        }
        var failure: PGError?
        while let result = PQgetResult(handle) {
            if failure == nil, PQresultStatus(result) != PGRES_COMMAND_OK {
                failure = error(from: result)
            }
            PQclear(result)
        }
        if let failure { throw failure }
    }

    private func check(_ result: OpaquePointer?, expecting: ExecStatusType? = nil) throws(PGError) -> PGResult {
        guard let result else {
            throw PGError(message: lastError, connectionLost: !isConnected)
        }
        let status = PQresultStatus(result)
        let ok = expecting.map { status == $0 } ?? (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK)
        guard ok else {
            let failure = error(from: result)
            PQclear(result)
            throw failure
        }
        return PGResult(result)
    }

    private func error(from result: OpaquePointer) -> PGError {
        let state = PQresultErrorField(result, Int32(UInt8(ascii: "C"))).map { String(cString: $0) }
        var message = conninfo.scrub(String(cString: PQresultErrorMessage(result)).trimmingWhitespace())
        if message.isEmpty { message = lastError }
        return PGError(message: message, sqlState: state, connectionLost: !isConnected)
    }

    /// A SQL string literal.
    static func quoteLiteral(_ text: String) -> String {
        "'" + text.replacingAll("'", with: "''") + "'"
    }
}

/// The result of a query; freed (`PQclear`) when the object goes away.
final class PGResult {
    private let handle: OpaquePointer

    init(_ handle: OpaquePointer) { self.handle = handle }

    deinit { PQclear(handle) }

    var rowCount: Int { Int(PQntuples(handle)) }

    /// Rows affected by INSERT, UPDATE, DELETE or COPY.
    var affectedRows: Int { Int(String(cString: PQcmdTuples(handle))) ?? 0 }

    /// The text value at (row, column), nil for NULL or out of range.
    func value(_ row: Int, _ column: Int) -> String? {
        guard row >= 0, row < rowCount, column >= 0, column < Int(PQnfields(handle)) else { return nil }
        guard PQgetisnull(handle, Int32(row), Int32(column)) == 0 else { return nil }
        return String(cString: PQgetvalue(handle, Int32(row), Int32(column)))
    }
}

extension String {
    func replacingAll(_ target: String, with replacement: String) -> String {
        split(separator: Character(target), omittingEmptySubsequences: false).joined(separator: replacement)
    }
}

// MARK: - Connection strings

extension Conninfo {
    /// Parses `conninfo` the way libpq will (`PQconninfoParse`: key/value form with any quoting and spacing, or a
    /// URL with percent-encoding). Throws a `fatal` error that never quotes the string (libpq's own message does,
    /// and may hold the password).
    static func parse(_ conninfo: String) throws(PGError) -> Conninfo {
        var errorMessage: UnsafeMutablePointer<CChar>?
        guard let options = PQconninfoParse(conninfo, &errorMessage) else {
            let reason = errorMessage.map { String(cString: $0) } ?? "out of memory"
            if let errorMessage { PQfreemem(errorMessage) }
            throw PGError(message: "invalid connection string: \(Conninfo.unquoted(reason))", fatal: true)
        }
        defer { PQconninfoFree(options) }
        var parsed = Conninfo()
        var option = options
        while let keyword = option.pointee.keyword {
            if let value = option.pointee.val {
                let hidden = option.pointee.dispchar.map { String(cString: $0) == "*" } ?? false
                parsed.options.append((String(cString: keyword), String(cString: value), hidden))
            }
            option += 1
        }
        parsed.collectSecrets(raw: conninfo)
        return parsed
    }
}
