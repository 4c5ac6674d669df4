import WALMetrics

/// The PostgreSQL schema, as versioned migrations applied in a transaction. A database whose schema is newer than
/// this code is an error, not a guess.
public enum PostgresSchema {
    /// The schema version this code writes.
    public static let version = 1

    /// The metric tables, one per category.
    public static var tables: [String] { MetricCategory.allCases.map(\.table) }

    /// Columns written by the shipper, in COPY order (`id` and `created_at` take their defaults).
    static let copyColumns =
        "metric_id, metric_name, metric_type, value, unit, tags, agent_id, correlation_id, timestamp, log_id, wal_seq"

    /// Migration `n` (from 1) brings the schema from version n - 1 to n.
    static let migrations: [String] = [migration1]

    static var migration1: String {
        var sql = """
            CREATE TABLE IF NOT EXISTS walctl_cursors (
                log_id UUID NOT NULL,
                shipper TEXT NOT NULL,
                wal_seq BIGINT NOT NULL,
                updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                PRIMARY KEY (log_id, shipper)
            );
            CREATE TABLE IF NOT EXISTS walctl_dead_letters (
                id BIGSERIAL PRIMARY KEY,
                log_id UUID NOT NULL,
                wal_seq_from BIGINT NOT NULL,
                wal_seq_to BIGINT NOT NULL,
                target_table TEXT,
                record JSONB,
                error TEXT NOT NULL,
                created_at TIMESTAMPTZ NOT NULL DEFAULT now()
            );

            """
        for table in tables {
            // value is DOUBLE PRECISION: the design's NUMERIC(10,4) overflows at one million and would reject data.
            sql += """
                CREATE TABLE IF NOT EXISTS \(table) (
                    id BIGSERIAL,
                    metric_id VARCHAR(50) NOT NULL,
                    metric_name VARCHAR(100) NOT NULL,
                    metric_type VARCHAR(20) NOT NULL,
                    value DOUBLE PRECISION NOT NULL,
                    unit VARCHAR(20) NOT NULL,
                    tags JSONB NOT NULL DEFAULT '{}',
                    agent_id VARCHAR(100),
                    correlation_id VARCHAR(100),
                    timestamp TIMESTAMPTZ NOT NULL,
                    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                    log_id UUID NOT NULL,
                    wal_seq BIGINT NOT NULL,
                    PRIMARY KEY (id, timestamp)
                ) PARTITION BY RANGE (timestamp);
                CREATE TABLE IF NOT EXISTS \(table)_default PARTITION OF \(table) DEFAULT;
                CREATE INDEX IF NOT EXISTS \(table)_timestamp_idx ON \(table) (timestamp DESC);
                CREATE INDEX IF NOT EXISTS \(table)_metric_name_idx ON \(table) (metric_name);
                CREATE INDEX IF NOT EXISTS \(table)_tags_idx ON \(table) USING GIN (tags);
                CREATE INDEX IF NOT EXISTS \(table)_correlation_idx ON \(table) (correlation_id);
                CREATE UNIQUE INDEX IF NOT EXISTS \(table)_log_seq_idx ON \(table) (log_id, wal_seq, timestamp);

                """
        }
        return sql
    }
}
