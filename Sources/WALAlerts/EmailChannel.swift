import CWALCurl
import Foundation
import WALMetrics

/// Where and how alert emails are sent.
public struct EmailSettings: Sendable {
    public var host: String
    public var port: Int = 587
    /// Require STARTTLS (the connection upgrades to TLS before anything is sent, or the delivery fails).
    public var startTLS = true
    /// Verify the server's certificate and name (turn off only for a test server with a self-signed one).
    public var verifyTLS = true
    public var from: String
    public var to: [String]
    public var username: String?
    public var password: String?
    public var timeoutSeconds = 30

    public init(host: String, from: String, to: [String]) {
        self.host = host
        self.from = from
        self.to = to
    }
}

/// Alerts by email through an SMTP server (libcurl): one plain-text message per alert, whose `Message-ID` is
/// derived from the alert id, with every field of the alert and its JSON payload.
public final class EmailAlertChannel: AlertChannel, @unchecked Sendable {
    public let name = "email"
    public let settings: EmailSettings

    private static let initialized: Bool = curl_global_init(Int(CURL_GLOBAL_DEFAULT)) == CURLE_OK

    public init(settings: EmailSettings) { self.settings = settings }

    public func deliver(_ alert: Alert) throws {
        guard Self.initialized, let handle = curl_easy_init() else {
            throw AlertDeliveryError(message: "email: libcurl could not start")
        }
        defer { curl_easy_cleanup(handle) }
        let message = MessageSource(Array(Self.message(alert, settings: settings).utf8))
        let context = Unmanaged.passRetained(message)
        defer { context.release() }
        var recipients: UnsafeMutablePointer<curl_slist>?
        for address in settings.to { recipients = curl_slist_append(recipients, "<\(address)>") }
        defer { curl_slist_free_all(recipients) }
        var errorText = [CChar](repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)
        var code = CURLE_OK
        func check(_ result: CURLcode) {
            if code == CURLE_OK { code = result }
        }
        check(walctl_curl_setopt_string(handle, CURLOPT_URL, "smtp://\(settings.host):\(settings.port)"))
        check(
            walctl_curl_setopt_long(
                handle,
                CURLOPT_USE_SSL,
                Int(settings.startTLS ? CURLUSESSL_ALL.rawValue : CURLUSESSL_NONE.rawValue)
            )
        )
        if !settings.verifyTLS {
            check(walctl_curl_setopt_long(handle, CURLOPT_SSL_VERIFYPEER, 0))
            check(walctl_curl_setopt_long(handle, CURLOPT_SSL_VERIFYHOST, 0))
        }
        if let username = settings.username { check(walctl_curl_setopt_string(handle, CURLOPT_USERNAME, username)) }
        if let password = settings.password { check(walctl_curl_setopt_string(handle, CURLOPT_PASSWORD, password)) }
        check(walctl_curl_setopt_string(handle, CURLOPT_MAIL_FROM, "<\(settings.from)>"))
        check(walctl_curl_setopt_pointer(handle, CURLOPT_MAIL_RCPT, UnsafeMutableRawPointer(recipients)))
        check(walctl_curl_setopt_long(handle, CURLOPT_UPLOAD, 1))
        check(
            walctl_curl_setopt_read_function(handle) { buffer, size, count, context in
                guard let buffer, let context else { return 0 }
                return Unmanaged<MessageSource>.fromOpaque(context).takeUnretainedValue().read(
                    into: buffer,
                    max: size * count
                )
            }
        )
        check(walctl_curl_setopt_pointer(handle, CURLOPT_READDATA, context.toOpaque()))
        check(walctl_curl_setopt_long(handle, CURLOPT_CONNECTTIMEOUT, settings.timeoutSeconds))
        check(walctl_curl_setopt_long(handle, CURLOPT_TIMEOUT, settings.timeoutSeconds))
        check(walctl_curl_setopt_long(handle, CURLOPT_NOSIGNAL, 1))
        let performed = errorText.withUnsafeMutableBufferPointer { buffer -> CURLcode in
            check(walctl_curl_setopt_pointer(handle, CURLOPT_ERRORBUFFER, buffer.baseAddress))
            guard code == CURLE_OK else { return code }
            return curl_easy_perform(handle)
        }
        guard performed == CURLE_OK else {
            let detail = String(cString: errorText)
            throw AlertDeliveryError(
                message: "email via \(settings.host):\(settings.port): "
                    + (detail.isEmpty ? String(cString: curl_easy_strerror(performed)) : detail)
            )
        }
    }

    /// The RFC 5322 message of an alert (CRLF line ends).
    static func message(_ alert: Alert, settings: EmailSettings) -> String {
        let comparison = alert.direction == .above ? ">" : "<"
        var time: [UInt8] = []
        Envelope.appendTimestamp(alert.timestampNanos, into: &time)
        let timestamp = String(decoding: time, as: UTF8.self)
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss Z"
        let lines = [
            "Date: \(formatter.string(from: Date()))",
            "From: <\(settings.from)>",
            "To: " + settings.to.map { "<\($0)>" }.joined(separator: ", "),
            "Message-ID: <\(alert.id)@walctl>",
            "Subject: [walctl \(alert.severity.rawValue.uppercased())] \(alert.metric) = "
                + "\(Envelope.numberText(alert.value)) (\(comparison) \(Envelope.numberText(alert.threshold)))",
            "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=utf-8",
            "",
            "severity: \(alert.severity.rawValue)",
            "metric: \(alert.metric)",
            "value: \(Envelope.numberText(alert.value))",
            "threshold: \(comparison) \(Envelope.numberText(alert.threshold))",
            "window: \(alert.window)",
            "agent_id: \(alert.agentID ?? "-")",
            "correlation_id: \(alert.correlationID ?? "-")",
            "tags: " + alert.tags.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ", "),
            "timestamp: \(timestamp)",
            "alert_id: \(alert.id)",
            "",
            alert.json(),
            "",
        ]
        return lines.joined(separator: "\r\n")
    }
}

/// The bytes of a message, handed to libcurl's read callback piece by piece.
final class MessageSource {
    private let bytes: [UInt8]
    private var offset = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    func read(into buffer: UnsafeMutablePointer<CChar>, max: Int) -> Int {
        let count = min(max, bytes.count - offset)
        guard count > 0 else { return 0 }
        bytes.withUnsafeBufferPointer { source in
            guard let base = source.baseAddress else { return }
            UnsafeMutableRawPointer(buffer).copyMemory(from: base + offset, byteCount: count)
        }
        offset += count
        return count
    }
}
