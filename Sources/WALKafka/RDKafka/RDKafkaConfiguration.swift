import CRdKafka

/// A librdkafka error: its code and text. Never contains a configuration value (those may be secrets).
public struct KafkaError: Error, CustomStringConvertible, Sendable {
    /// librdkafka's `rd_kafka_resp_err_t` value (negative: local errors; positive: broker errors).
    public var code: Int32
    public var message: String

    public init(code: Int32 = -1, message: String) {
        self.code = code
        self.message = message
    }

    init(_ error: rd_kafka_resp_err_t, _ context: String) {
        self.code = error.rawValue
        self.message = "\(context): \(String(cString: rd_kafka_err2str(error)))"
    }

    public var description: String { message }

    /// librdkafka's name of the code, lowercased, without the leading underscore of local errors
    /// (`transport`, `msg_timed_out`, `not_coordinator`).
    public var codeName: String {
        let name = String(cString: rd_kafka_err2name(rd_kafka_resp_err_t(rawValue: code)))
        let trimmed = name.drop { $0 == "_" }.lowercased()
        return trimmed.isEmpty ? "unknown" : trimmed
    }
}

/// Property names whose values are never logged or shown (passwords, keys, tokens).
func isSecretProperty(_ name: String) -> Bool {
    let lowered = name.lowercased()
    return ["password", "secret", "token", "oauthbearer.config", "ssl.key.pem", "ssl_key", "keystore"].contains {
        lowered.contains($0)
    }
}

/// The value as it may appear in logs.
func displayValue(_ name: String, _ value: String) -> String {
    isSecretProperty(name) ? "***" : value
}

/// Builds an `rd_kafka_conf_t` from ordered properties (later ones win). The handle is owned until `take()` hands
/// it to `rd_kafka_new`.
final class RDKafkaConfiguration {
    private var handle: OpaquePointer?

    init(_ properties: [(String, String)]) throws(KafkaError) {
        guard let handle = rd_kafka_conf_new() else { throw KafkaError(message: "rd_kafka_conf_new failed") }
        self.handle = handle
        var errorText = [CChar](repeating: 0, count: 512)
        for (name, value) in properties {
            let result = rd_kafka_conf_set(handle, name, value, &errorText, errorText.count)
            guard result == RD_KAFKA_CONF_OK else {
                // librdkafka's text names the property and may quote the value: show it only when not secret.
                let detail = isSecretProperty(name) ? "invalid value" : bufferText(errorText)
                throw KafkaError(message: "Kafka property \(name): \(detail)")
            }
        }
    }

    /// The handle, for `rd_kafka_conf_set_*` calls before `take()`.
    var pointer: OpaquePointer? { handle }

    /// Gives up ownership (to `rd_kafka_new`, which takes it on success).
    func take() -> OpaquePointer? {
        defer { handle = nil }
        return handle
    }

    deinit {
        if let handle { rd_kafka_conf_destroy(handle) }
    }
}

/// The text of a NUL-terminated error buffer librdkafka filled in.
func bufferText(_ buffer: [CChar]) -> String {
    let bytes = buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
    return String(decoding: bytes, as: UTF8.self)
}
