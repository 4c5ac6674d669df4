import Foundation
import WALCore

/// The shipper's position as committed to Kafka: a consumer-group offset commit on partition 0 of the cursor
/// topic, whose offset is the last delivered sequence number and whose metadata string says which log it belongs to:
///
/// ```json
/// {"format":"walctl.cursor.v1","log_id":"0f6c…","wal_seq":1234}
/// ```
public struct KafkaCursor: Sendable, Equatable {
    public static let format = "walctl.cursor.v1"

    public var logID: String
    public var seq: UInt64

    public init(logID: String, seq: UInt64) {
        self.logID = logID
        self.seq = seq
    }

    /// The metadata string of the commit.
    public var metadata: String {
        #"{"format":"\#(Self.format)","log_id":"\#(logID)","wal_seq":\#(seq)}"#
    }

    /// Reads a committed offset back; nil when the metadata is not a walctl cursor or disagrees with the offset.
    public init?(offset: Int64, metadata: String) {
        guard offset >= 0,
            let object = try? JSONSerialization.jsonObject(with: Data(metadata.utf8)) as? [String: Any],
            object["format"] as? String == Self.format,
            let logID = object["log_id"] as? String,
            let seq = (object["wal_seq"] as? NSNumber)?.uint64Value,
            seq == UInt64(offset)
        else { return nil }
        self.logID = logID
        self.seq = seq
    }
}
