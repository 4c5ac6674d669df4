// MARK: - Migration 3: cheaper indexes serving the same queries

extension PostgresSchema {
    /// The indexes of each metric table from migration 3 on, and what each serves. Measured (tools/bench-pg-indexes.sh,
    /// README "What each index costs"): the design's B-tree on `timestamp`, GIN `jsonb_ops` on `tags` and B-tree on
    /// `correlation_id` cost PostgreSQL more than the rows themselves; these serve the same queries for a fraction:
    ///
    /// - `timestamp`: BRIN (`timestamp_brin`): rows arrive in time order (a shipper writes them as they are emitted),
    ///   so each block range covers a short span; with daily partitions it serves every time-range filter. Given up:
    ///   `ORDER BY timestamp DESC LIMIT n` read in index order (it sorts the matching ranges instead), and precision
    ///   when rows arrive far out of time order (a replay of old records into a live day widens the ranges it lands
    ///   in: more blocks read, never wrong results).
    /// - `tags`: GIN `jsonb_path_ops` (`tags_path_idx`): one entry per key and value pair instead of one per key and
    ///   one per value. Serves containment (`tags @> '{"agent_type": "router"}'`) and jsonpath (`@?`, `@@`). Given
    ///   up: key existence (`tags ? 'error_type'`, `?|`, `?&`) through the index. `fastupdate` stays on (the default):
    ///   off, every row's entries go straight into the tree, 15 times the cost.
    /// - `correlation_id`: hash (`correlation_hash`): equality only (`= '…'`, `IN (…)`), which is how a trace is
    ///   looked up. Given up: ranges, prefixes (`LIKE 'abc%'`) and ordering by correlation id through the index.
    ///
    /// Unchanged: the primary key `(id, timestamp)`, the B-tree on `metric_name` (cheap: deduplicated), the
    /// idempotency key `UNIQUE (log_id, wal_seq, timestamp)` (the exactly-once guarantee; it costs little, since a
    /// log's rows arrive in `wal_seq` order and land at the right edge), and the BRIN on `created_at` (rollups).
    ///
    /// Dropping and creating an index on a partitioned table does so on every partition, inside the migration's
    /// transaction: on a large database it takes a while and blocks writes meanwhile (run `walctl pg init` in a
    /// quiet hour). New partitions (`walctl pg maintain`) get the parent's indexes when attached.
    static var migration3: String {
        var sql = ""
        for table in tables {
            sql += """
                DROP INDEX IF EXISTS \(table)_timestamp_idx;
                DROP INDEX IF EXISTS \(table)_tags_idx;
                DROP INDEX IF EXISTS \(table)_correlation_idx;
                CREATE INDEX IF NOT EXISTS \(table)_timestamp_brin ON \(table) USING brin (timestamp)
                    WITH (autosummarize = on);
                CREATE INDEX IF NOT EXISTS \(table)_tags_path_idx ON \(table) USING gin (tags jsonb_path_ops);
                CREATE INDEX IF NOT EXISTS \(table)_correlation_hash ON \(table) USING hash (correlation_id);

                """
        }
        return sql
    }
}
