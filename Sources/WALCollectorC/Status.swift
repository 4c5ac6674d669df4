import WALMetrics

/// The `walctl_status` codes of `walctl.h`.
enum Status {
    static let ok: Int32 = 0
    static let dropped: Int32 = 1
    static let disabled: Int32 = 2
    static let invalidType: Int32 = 22
    static let argument: Int32 = -1
    static let configuration: Int32 = -2
    static let io: Int32 = -3
    static let forked: Int32 = -4

    /// The code of a rejection reason: `WALCTL_REJECTED_*`, in `RejectionReason` order.
    static func code(_ reason: RejectionReason) -> Int32 {
        switch reason {
        case .invalidName: return 10
        case .nonFiniteValue: return 11
        case .tooManyTags: return 12
        case .invalidTagKey: return 13
        case .tagValueTooLong: return 14
        case .invalidUnit: return 15
        case .invalidCorrelationID: return 16
        case .invalidAgentID: return 17
        case .nulCharacter: return 18
        case .conflictingDefinition: return 19
        case .symbolTableFull: return 20
        case .logUnavailable: return 21
        }
    }

    /// Every code with its snake_case name (the rejection codes carry `RejectionReason.rawValue`).
    static let allNamed: [(code: Int32, name: String)] =
        [(ok, "ok"), (dropped, "dropped"), (disabled, "disabled"), (invalidType, "invalid_type")]
        + RejectionReason.allCases.map { (code($0), $0.rawValue) }
        + [(argument, "invalid_argument"), (configuration, "invalid_configuration"), (io, "io"), (forked, "forked")]
}
