import WALShipping

extension KafkaError: SinkErrorKind {
    /// The error counters' kind: librdkafka's name of the code (`transport`, `msg_timed_out`).
    public var kind: String { codeName }
}

extension KafkaSink {
    /// Records written to the dead-letter files since the sink was made.
    public var deadLetteredRecords: UInt64 { statistics.deadLettered }
}
