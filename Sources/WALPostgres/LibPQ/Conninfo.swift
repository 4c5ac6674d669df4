import Foundation

/// A connection string as libpq parsed it (`Conninfo.parse`, in `PGConnection.swift`): what may be shown of it, and
/// which texts are secrets to cut out of any message libpq sends back.
struct Conninfo {
    /// The options given, in libpq's order; `hidden` for password fields (libpq's `dispchar` "*").
    var options: [(key: String, value: String, hidden: Bool)] = []
    /// Every text that would give a password away: parsed values of password fields, their raw forms in the
    /// string (percent-encoded in a URL, escaped in key/value form), and `PGPASSWORD`.
    private(set) var secrets: [String] = []

    /// The string with every password field shown as `***`, in key/value form (a URL is shown decomposed), and any
    /// secret cut out of the other values (a URL cut short by an unencoded `@` or `/` in its password puts pieces
    /// of it in the host, the port or the database name).
    var redacted: String {
        options.map { option in
            "\(option.key)=\(option.hidden ? "***" : Self.quoted(scrub(option.value)))"
        }.joined(separator: " ")
    }

    /// libpq ignores `connect_timeout` when connecting without blocking; the wait is bounded by it (or
    /// `PGCONNECT_TIMEOUT`), 60 s when neither is set. libpq treats values under 2 as 2.
    var connectTimeoutSeconds: Int {
        let given =
            options.first { $0.key == "connect_timeout" }.map(\.value)
            ?? ProcessInfo.processInfo.environment["PGCONNECT_TIMEOUT"]
        guard let seconds = given.flatMap({ Int($0) }), seconds > 0 else { return 60 }
        return max(seconds, 2)
    }

    mutating func collectSecrets(raw: String) {
        var found: [String] = []
        for option in options where option.hidden && !option.value.isEmpty {
            found.append(option.value)
            found.append(
                option.value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(
                    of: "'",
                    with: "\\'"
                )
            )
            if let encoded = option.value.addingPercentEncoding(withAllowedCharacters: .alphanumerics) {
                found.append(encoded)
            }
        }
        // The raw user-info password of a URL, as typed (percent-encoding may differ from ours).
        if let scheme = raw.range(of: "://") {
            let rest = raw[scheme.upperBound...]
            if let at = rest.lastIndex(of: "@"), let colon = rest[..<at].firstIndex(of: ":") {
                let password = String(rest[rest.index(after: colon)..<at])
                if !password.isEmpty { found.append(password) }
                // An unencoded `@`, `/`, `?`, `#` or `:` in it makes libpq cut the URL there, and the pieces come
                // back in its messages as a host name or a port ("could not translate host name "Tail@127.0.0.1"").
                found += password.split(whereSeparator: { "@/?#:".contains($0) }).map(String.init).filter {
                    $0.count >= 3
                }
            }
        }
        if let environment = ProcessInfo.processInfo.environment["PGPASSWORD"], !environment.isEmpty {
            found.append(environment)
        }
        // Longest first, so that a secret containing another is cut whole.
        secrets = Array(Set(found)).sorted { $0.count > $1.count }
    }

    /// `message` with every secret replaced by `***`.
    func scrub(_ message: String) -> String {
        secrets.reduce(message) { text, secret in text.replacingOccurrences(of: secret, with: "***") }
    }

    /// A value as libpq's key/value form reads it: single-quoted (with `\` escapes) when empty or holding a
    /// space, quote or backslash.
    static func quoted(_ value: String) -> String {
        guard value.isEmpty || value.contains(where: { $0 == " " || $0 == "'" || $0 == "\\" || $0.isNewline }) else {
            return value
        }
        return "'" + value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "'", with: "\\'")
            + "'"
    }

    /// A libpq parse error with its quoted parts (the offending token, or the whole URL) left out: they are parts
    /// of a string that may hold a password and that could not be parsed, so nothing in them can be told apart.
    static func unquoted(_ message: String) -> String {
        var result = ""
        var inQuote = false
        for character in message.trimmingCharacters(in: .whitespacesAndNewlines) {
            if character == "\"" {
                if !inQuote { result += "(not shown)" }
                inQuote.toggle()
            } else if !inQuote {
                result.append(character)
            }
        }
        // An unterminated quote hides the rest.
        return result
    }
}

/// Hides passwords in a conninfo string or URL, for logs and errors: the string is parsed as libpq parses it and
/// shown in key/value form with every password field as `***`. A string libpq cannot parse is not shown at all.
public func redactConninfo(_ conninfo: String) -> String {
    do {
        return try Conninfo.parse(conninfo).redacted
    } catch {
        return "(a connection string that cannot be parsed, not shown)"
    }
}

/// A refused connection, from libpq's verbose message: the SQLSTATE, the message without its location lines, and
/// whether a retry could ever help.
struct ConnectFailure {
    var sqlState: String?
    var message: String

    init(libpqMessage: String) {
        var lines: [String] = []
        var state: String?
        for line in libpqMessage.split(separator: "\n", omittingEmptySubsequences: true) {
            if line.hasPrefix("LOCATION:") { continue }
            var text = String(line)
            // "...: FATAL:  28P01:  password authentication failed" -> keep the message, take the code.
            for severity in ["FATAL:  ", "ERROR:  ", "PANIC:  "] {
                guard let range = text.range(of: severity) else { continue }
                let rest = text[range.upperBound...]
                let code = rest.prefix(5)
                if code.count == 5, code.allSatisfy({ $0.isNumber || ($0.isUppercase && $0.isASCII) }),
                    rest.dropFirst(5).hasPrefix(":")
                {
                    if state == nil { state = String(code) }
                    let message = rest.dropFirst(6).drop { $0 == " " }
                    text = String(text[..<range.upperBound]) + message
                }
                break
            }
            lines.append(text)
        }
        sqlState = state
        message = lines.joined(separator: "\n")
    }

    /// Only what can heal is retried: no answer or a lost connection (no SQLSTATE), connection exceptions (08),
    /// too many connections and other resource shortages (53), shutdown or start-up in progress (57P01, 57P03),
    /// system errors (58). A refusal for any other reason (28P01 wrong password, 28000 invalid authorization,
    /// 3D000 no such database, 42501 no CONNECT privilege) or an invalid option value libpq found itself is a
    /// configuration error that no retry can fix.
    var isPermanent: Bool {
        if let sqlState {
            return !PGError.isTransientClass(sqlState)
        }
        // libpq's own checks of option values: "invalid sslmode value", "invalid integer value ... for connection
        // option", "invalid port number".
        return message.hasPrefix("invalid ") || message.contains("for connection option")
    }

    func error(scrubbing secrets: Conninfo) -> PGError {
        let text = secrets.scrub(message)
        if isPermanent {
            return PGError(
                message: "cannot connect: \(text) (a configuration error: not retried)",
                sqlState: sqlState,
                connectionLost: true,
                fatal: true
            )
        }
        return PGError(message: "cannot connect: \(text)", sqlState: sqlState, connectionLost: true)
    }
}
