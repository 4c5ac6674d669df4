import WALShipping

extension PGError: SinkErrorKind {}

extension PostgresSink {
    /// Records written to `walctl_dead_letters` since the sink was made.
    public var deadLetteredRecords: UInt64 { deadLetterCount }
}
