import WALMetrics

/// The PostgreSQL schema, as versioned migrations applied in a transaction. A database whose schema is newer than
/// this code is an error, not a guess.
public enum PostgresSchema {
    /// The schema version this code writes.
    public static let version = 3

    /// The metric tables, one per category.
    public static var tables: [String] { MetricCategory.allCases.map(\.table) }

    /// Columns written by the shipper, in COPY order (`id` and `created_at` take their defaults).
    static let copyColumns =
        "metric_id, metric_name, metric_type, value, unit, tags, agent_id, correlation_id, timestamp, log_id, wal_seq"

    /// Migration `n` (from 1) brings the schema from version n - 1 to n.
    static let migrations: [String] = [migration1, migration2, migration3]

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

// MARK: - Checking a database against the schema

extension PostgresSchema {
    /// The columns the shipper relies on, per table, with their types as `format_type` prints them.
    static var expectedColumns: [(table: String, columns: [(name: String, type: String)])] {
        let metricColumns: [(String, String)] = [
            ("metric_id", "character varying(50)"), ("metric_name", "character varying(100)"),
            ("metric_type", "character varying(20)"), ("value", "double precision"),
            ("unit", "character varying(20)"), ("tags", "jsonb"), ("agent_id", "character varying(100)"),
            ("correlation_id", "character varying(100)"), ("timestamp", "timestamp with time zone"),
            ("log_id", "uuid"), ("wal_seq", "bigint"),
        ]
        return [
            (
                "walctl_cursors",
                [
                    ("log_id", "uuid"), ("shipper", "text"), ("wal_seq", "bigint"),
                    ("updated_at", "timestamp with time zone"),
                ]
            ),
            (
                "walctl_dead_letters",
                [
                    ("log_id", "uuid"), ("wal_seq_from", "bigint"), ("wal_seq_to", "bigint"), ("target_table", "text"),
                    ("record", "jsonb"), ("error", "text"),
                ]
            ),
        ] + tables.map { ($0, metricColumns) }
    }

    /// How the tables in the session's schema differ from what the shipper writes: missing tables or columns,
    /// changed types (lengths included), and added columns the shipper cannot fill (NOT NULL without a default).
    /// Empty when they match. Reads the catalog (`pg_attribute`), so a role without privileges on a table still
    /// sees its columns.
    static func differences(_ connection: PGConnection) throws(PGError) -> [String] {
        let names = expectedColumns.map(\.table)
        let result = try connection.execute(
            """
            SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull AND NOT a.atthasdef
            FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
            WHERE c.relnamespace = current_schema()::regnamespace AND c.relname = ANY($1::text[])
              AND a.attnum > 0 AND NOT a.attisdropped
            """,
            ["{" + names.joined(separator: ",") + "}"]
        )
        var actual: [String: [String: (type: String, required: Bool)]] = [:]
        for row in 0..<result.rowCount {
            guard let table = result.value(row, 0), let column = result.value(row, 1) else { continue }
            actual[table, default: [:]][column] = (result.value(row, 2) ?? "", result.value(row, 3) == "t")
        }
        var differences: [String] = []
        for (table, columns) in expectedColumns {
            guard let present = actual[table] else {
                differences.append("table \(table) is missing")
                continue
            }
            for (name, type) in columns {
                guard let found = present[name] else {
                    differences.append("\(table).\(name) is missing (expected \(type))")
                    continue
                }
                if found.type != type { differences.append("\(table).\(name) is \(found.type), expected \(type)") }
            }
            let known = Set(columns.map(\.name) + ["id", "created_at"])
            for (name, found) in present.sorted(by: { $0.key < $1.key }) where !known.contains(name) && found.required {
                differences.append("\(table).\(name) is NOT NULL without a default: the shipper cannot fill it")
            }
        }
        return differences
    }

    /// The statements giving `role` what shipping needs and no more: reading the schema version; reading,
    /// inserting and updating cursors; reading and inserting dead letters (reading for `walctl inspect`); reading and inserting metric rows (reading for
    /// `ON CONFLICT DO NOTHING` after a replay). No DDL: partitions stay the job of `walctl pg maintain`.
    public static func grants(to role: String) -> [String] {
        let quoted = "\"" + role.replacingOccurrences(of: "\"", with: "\"\"") + "\""
        var statements = [
            "GRANT USAGE ON SCHEMA \(currentSchemaPlaceholder) TO \(quoted)",
            "GRANT SELECT ON walctl_schema TO \(quoted)",
            "GRANT SELECT, INSERT, UPDATE ON walctl_cursors TO \(quoted)",
            "GRANT SELECT, INSERT ON walctl_dead_letters TO \(quoted)",
            "GRANT USAGE ON SEQUENCE walctl_dead_letters_id_seq TO \(quoted)",
        ]
        for table in tables {
            statements.append("GRANT SELECT, INSERT ON \(table) TO \(quoted)")
            statements.append("GRANT USAGE ON SEQUENCE \(table)_id_seq TO \(quoted)")
        }
        return statements
    }

    /// Replaced by the session's schema (`current_schema()`) before the grants run.
    static let currentSchemaPlaceholder = "{schema}"
}
