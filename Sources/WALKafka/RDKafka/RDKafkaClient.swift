import CRdKafka
import Logging
import Synchronization
import WALCore

/// What librdkafka's callbacks need, reached through the handle's opaque pointer (`rd_kafka_opaque`).
///
/// The delivery fields are touched only inside `rd_kafka_poll`, which only the owning shipper thread calls; the
/// error text is also written by librdkafka's threads (the log callback), hence the mutex.
final class RDKafkaContext: @unchecked Sendable {
    let logger: Logger
    /// The delivery reports of a batch of messages: how many are still to come, and the failures among them.
    struct Batch {
        var outstanding = 0
        var failures: [(index: Int, error: rd_kafka_resp_err_t)] = []
    }
    /// The batches in flight, oldest first; `firstBatch` is the number of `batches[0]`. Reports of a batch no longer
    /// here (retired, or abandoned after a purge) are ignored.
    /// Unchecked exclusivity: touched once per message (`produce`, the delivery report), only on the shipper's
    /// thread, never with an access in progress.
    @exclusivity(unchecked) var batches: [Batch] = []
    @exclusivity(unchecked) var firstBatch: UInt32 = 1
    let lastError = Mutex<String?>(nil)
    /// Client errors logged and suppressed since (at most one warning per `errorLogInterval`).
    private let errorLog = Mutex<(lastAt: UInt64, suppressed: Int)>((0, 0))
    static let errorLogIntervalNanos: UInt64 = 5_000_000_000

    init(logger: Logger) { self.logger = logger }

    /// Records a client error; logs it unless another was logged within the interval (a broker down produces one
    /// per connection attempt).
    func clientError(_ text: String) {
        lastError.withLock { $0 = text }
        let now = monotonicNanos()
        let suppressed: Int? = errorLog.withLock { state in
            if state.lastAt != 0 && now - state.lastAt < Self.errorLogIntervalNanos {
                state.suppressed += 1
                return nil
            }
            defer { state = (now, 0) }
            return state.suppressed
        }
        guard let suppressed else { return }
        var metadata: Logger.Metadata = ["error": "\(text)"]
        if suppressed > 0 { metadata["suppressed"] = "\(suppressed)" }
        logger.warning("Kafka client error", metadata: metadata)
    }

    static func from(_ handle: OpaquePointer?) -> RDKafkaContext? {
        guard let handle, let opaque = rd_kafka_opaque(handle) else { return nil }
        return Unmanaged<RDKafkaContext>.fromOpaque(opaque).takeUnretainedValue()
    }
}

/// The per-message opaque: the batch number (never 0, so the pointer is never nil) and the message's index in it.
/// Batch numbers wrap around after 2^32 batches; at most a few are ever in flight.
@inline(__always)
func messageOpaque(batch: UInt32, index: Int) -> UnsafeMutableRawPointer? {
    UnsafeMutableRawPointer(bitPattern: UInt(batch) << 32 | UInt(UInt32(truncatingIfNeeded: index)))
}

private let deliveryReport:
    @convention(c) (OpaquePointer?, UnsafePointer<rd_kafka_message_t>?, UnsafeMutableRawPointer?) -> Void = {
        handle,
        message,
        _ in
        guard let handle, let message, let opaque = rd_kafka_opaque(handle) else { return }
        // The client keeps its context alive as long as the handle: no retain per report.
        Unmanaged<RDKafkaContext>.fromOpaque(opaque)._withUnsafeGuaranteedRef { context in
            let tag = UInt(bitPattern: message.pointee._private)
            let slot = Int(UInt32(truncatingIfNeeded: tag >> 32) &- context.firstBatch)
            guard slot < context.batches.count else { return }
            context.batches[slot].outstanding -= 1
            if message.pointee.err != RD_KAFKA_RESP_ERR_NO_ERROR {
                context.batches[slot].failures.append((Int(UInt32(truncatingIfNeeded: tag)), message.pointee.err))
            }
        }
    }

private let errorCallback:
    @convention(c) (OpaquePointer?, Int32, UnsafePointer<CChar>?, UnsafeMutableRawPointer?) -> Void =
        { handle, code, reason, _ in
            guard let context = RDKafkaContext.from(handle) else { return }
            let error = rd_kafka_resp_err_t(rawValue: code)
            context.clientError(
                "\(String(cString: rd_kafka_err2str(error))): \(reason.map { String(cString: $0) } ?? "")"
            )
        }

private let logCallback: @convention(c) (OpaquePointer?, Int32, UnsafePointer<CChar>?, UnsafePointer<CChar>?) -> Void =
    { handle, level, facility, buffer in
        guard let context = RDKafkaContext.from(handle), let buffer else { return }
        let text = String(cString: buffer)
        let facilityText = facility.map { String(cString: $0) } ?? ""
        // syslog levels: 0-2 critical, 3-4 warning, 5-7 debug. Connection failures (FAIL) also reach the error
        // callback, which rate-limits them: here they are debug.
        let logLevel: Logger.Level =
            facilityText == "FAIL" ? .debug : level <= 2 ? .critical : level <= 4 ? .warning : .debug
        context.logger.log(level: logLevel, "librdkafka: \(text)", metadata: ["facility": "\(facilityText)"])
    }

/// One librdkafka client handle (`rd_kafka_t`), producer or consumer, with its callbacks wired to a context.
/// The handle lives exactly as long as this object.
final class RDKafkaClient {
    let handle: OpaquePointer
    let context: RDKafkaContext
    let kind: rd_kafka_type_t
    /// Topic handles by name (`topicHandle(_:)`), destroyed before the client.
    private var topicHandles: [String: OpaquePointer] = [:]

    private init(handle: OpaquePointer, context: RDKafkaContext, kind: rd_kafka_type_t) {
        self.handle = handle
        self.context = context
        self.kind = kind
    }

    /// Creates a client from ordered properties (later ones win).
    static func make(
        _ kind: rd_kafka_type_t,
        properties: [(String, String)],
        logger: Logger
    ) throws(KafkaError) -> RDKafkaClient {
        let configuration = try RDKafkaConfiguration(properties)
        let context = RDKafkaContext(logger: logger)
        rd_kafka_conf_set_opaque(configuration.pointer, Unmanaged.passUnretained(context).toOpaque())
        rd_kafka_conf_set_error_cb(configuration.pointer, errorCallback)
        rd_kafka_conf_set_log_cb(configuration.pointer, logCallback)
        if kind == RD_KAFKA_PRODUCER {
            rd_kafka_conf_set_dr_msg_cb(configuration.pointer, deliveryReport)
        }
        var errorText = [CChar](repeating: 0, count: 512)
        let owned = configuration.take()
        guard let handle = rd_kafka_new(kind, owned, &errorText, errorText.count) else {
            rd_kafka_conf_destroy(owned)
            throw KafkaError(message: "cannot create the Kafka client: \(bufferText(errorText))")
        }
        return RDKafkaClient(handle: handle, context: context, kind: kind)
    }

    /// librdkafka's fatal error, if one was raised (an idempotent producer that can no longer guarantee order).
    var fatalError: KafkaError? {
        var text = [CChar](repeating: 0, count: 512)
        let error = rd_kafka_fatal_error(handle, &text, text.count)
        guard error != RD_KAFKA_RESP_ERR_NO_ERROR else { return nil }
        return KafkaError(code: error.rawValue, message: "fatal Kafka error: \(bufferText(text))")
    }

    /// The client's handle of topic `name`, made once and kept as long as the client: producing through it spares
    /// librdkafka a lookup of the topic by name (under its client lock) for every message. Nil when librdkafka
    /// refuses the name.
    ///
    /// The corresponding C function is `rd_kafka_topic_new`.
    func topicHandle(_ name: String) -> OpaquePointer? {
        if let known = topicHandles[name] { return known }
        guard let made = rd_kafka_topic_new(handle, name, nil) else { return nil }
        topicHandles[name] = made
        return made
    }

    deinit {
        for topic in topicHandles.values { rd_kafka_topic_destroy(topic) }
        if kind == RD_KAFKA_PRODUCER {
            // Whatever is still queued belongs to a batch that was never committed: it is sent again on restart.
            rd_kafka_purge(handle, Int32(RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT))
            rd_kafka_poll(handle, 0)
        } else {
            rd_kafka_consumer_close(handle)
        }
        rd_kafka_destroy(handle)
        withExtendedLifetime(context) {}
    }
}
