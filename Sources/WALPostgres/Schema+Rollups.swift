import WALMetrics

// MARK: - Migration 2: rollups, histograms, alerts

extension PostgresSchema {
    /// The rollup tables: one row per minute (or hour), category, metric, main tag value and agent.
    public static let rollupTables = ["walctl_rollup_1m", "walctl_rollup_1h"]

    /// The table `walctl pg maintain --alerts-from` loads fired alerts into, once per `alert_id`.
    public static let alertsTable = "walctl_alerts"

    /// The tag each category's rollups are grouped by (the first tag the design lists for it); "" for custom.
    public static func mainTag(of category: MetricCategory) -> String { MetricCatalog.tags[category]?.first ?? "" }

    /// The histogram's relative accuracy: a percentile read from a histogram is within this fraction of the
    /// nearest-rank percentile of the raw values (for |value| >= `histogramZeroBand`).
    public static let histogramRelativeError = 0.01
    /// Values closer to 0 than this share one bucket, read back as 0 (an absolute error below this band).
    public static let histogramZeroBand = 1e-9

    /// Rollups (`walctl_rollup_1m`, `walctl_rollup_1h`) with their rebuild state, the mergeable histogram's SQL
    /// functions, a BRIN index on `created_at` (how a rebuild finds the minutes rows landed in since the last
    /// one), and `walctl_alerts`.
    ///
    /// The histogram is a jsonb object from bucket key to count (sparse: only buckets that hold values). Keys are
    /// `"0"` for |v| < 1e-9, `"p<i>"` for v > 0 and `"n<i>"` for v < 0, where i = ceil(log_γ |v|) with
    /// γ = 1.01 / 0.99: bucket i holds (γ^(i-1), γ^i] and is read back as 2γ^i / (γ + 1), which is within 1 % of
    /// every value in it (the DDSketch mapping). Merging adds counts key by key, so it is exact and associative:
    /// an hour, a day or 90 days merged from minutes is the histogram of all their values.
    static var migration2: String {
        var sql = """
            CREATE FUNCTION walctl_hist_key(v double precision) RETURNS text
            LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
                SELECT CASE
                    WHEN v IS NULL OR v = 'NaN'::float8 THEN NULL
                    WHEN abs(v) < 1e-9 THEN '0'
                    WHEN v = 'Infinity'::float8 THEN 'p2147483647'
                    WHEN v = '-Infinity'::float8 THEN 'n2147483647'
                    WHEN v > 0 THEN 'p' || ceil(ln(v) / ln(1.01::float8 / 0.99::float8))::bigint
                    ELSE 'n' || ceil(ln(-v) / ln(1.01::float8 / 0.99::float8))::bigint
                END
            $$;
            CREATE FUNCTION walctl_hist_value(key text) RETURNS double precision
            LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
                SELECT CASE
                    WHEN key = '0' THEN 0::float8
                    WHEN key = 'p2147483647' THEN 'Infinity'::float8
                    WHEN key = 'n2147483647' THEN '-Infinity'::float8
                    WHEN left(key, 1) = 'p'
                        THEN 2 * power(1.01::float8 / 0.99::float8, substr(key, 2)::float8) / (1.01::float8 / 0.99::float8 + 1)
                    ELSE -2 * power(1.01::float8 / 0.99::float8, substr(key, 2)::float8) / (1.01::float8 / 0.99::float8 + 1)
                END
            $$;
            -- The sum of two histograms, key by key.
            CREATE FUNCTION walctl_hist_add(a jsonb, b jsonb) RETURNS jsonb
            LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
                SELECT coalesce(jsonb_object_agg(k, n), '{}'::jsonb) FROM (
                    SELECT k, sum(n)::bigint AS n FROM (
                        SELECT key, value::bigint FROM jsonb_each_text(coalesce(a, '{}'::jsonb))
                        UNION ALL
                        SELECT key, value::bigint FROM jsonb_each_text(coalesce(b, '{}'::jsonb))
                    ) AS e (k, n) GROUP BY k
                ) AS s
            $$;
            -- walctl_hist_merge(hist): the histogram of every value of the merged histograms.
            CREATE AGGREGATE walctl_hist_merge(jsonb) (
                SFUNC = walctl_hist_add, STYPE = jsonb, INITCOND = '{}', COMBINEFUNC = walctl_hist_add, PARALLEL = SAFE
            );
            CREATE FUNCTION walctl_hist_add_value(a jsonb, v double precision) RETURNS jsonb
            LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
                SELECT CASE WHEN walctl_hist_key(v) IS NULL THEN a ELSE jsonb_set(
                    a, ARRAY[walctl_hist_key(v)], to_jsonb(coalesce((a ->> walctl_hist_key(v))::bigint, 0) + 1)
                ) END
            $$;
            -- walctl_hist(value): the histogram of raw values (for ad-hoc queries; rollups build it by GROUP BY).
            CREATE AGGREGATE walctl_hist(double precision) (
                SFUNC = walctl_hist_add_value, STYPE = jsonb, INITCOND = '{}', COMBINEFUNC = walctl_hist_add,
                PARALLEL = SAFE
            );
            -- The nearest-rank q-percentile (0 < q <= 1, as percentile_disc), within 1 % of the raw values' one.
            CREATE FUNCTION walctl_hist_percentile(h jsonb, q double precision) RETURNS double precision
            LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
                WITH b AS (SELECT walctl_hist_value(key) AS v, value::bigint AS n FROM jsonb_each_text(h)),
                    c AS (SELECT v, sum(n) OVER (ORDER BY v) AS cumulative, sum(n) OVER () AS total FROM b)
                SELECT v FROM c WHERE cumulative >= greatest(1, ceil(q * total)) ORDER BY v LIMIT 1
            $$;
            -- The number of values a histogram holds.
            CREATE FUNCTION walctl_hist_count(h jsonb) RETURNS bigint
            LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
                SELECT coalesce(sum(value::bigint), 0)::bigint FROM jsonb_each_text(h)
            $$;

            CREATE TABLE walctl_rollup_1m (
                minute TIMESTAMPTZ NOT NULL,
                category TEXT NOT NULL,
                metric_name VARCHAR(100) NOT NULL,
                main_tag TEXT NOT NULL,
                agent_id VARCHAR(100) NOT NULL,
                count BIGINT NOT NULL,
                sum NUMERIC NOT NULL,
                min DOUBLE PRECISION NOT NULL,
                max DOUBLE PRECISION NOT NULL,
                hist JSONB NOT NULL,
                PRIMARY KEY (minute, category, metric_name, main_tag, agent_id)
            );
            CREATE TABLE walctl_rollup_1h (
                hour TIMESTAMPTZ NOT NULL,
                category TEXT NOT NULL,
                metric_name VARCHAR(100) NOT NULL,
                main_tag TEXT NOT NULL,
                agent_id VARCHAR(100) NOT NULL,
                count BIGINT NOT NULL,
                sum NUMERIC NOT NULL,
                min DOUBLE PRECISION NOT NULL,
                max DOUBLE PRECISION NOT NULL,
                hist JSONB NOT NULL,
                PRIMARY KEY (hour, category, metric_name, main_tag, agent_id)
            );
            CREATE INDEX walctl_rollup_1m_metric_idx ON walctl_rollup_1m (metric_name, minute);
            CREATE INDEX walctl_rollup_1h_metric_idx ON walctl_rollup_1h (metric_name, hour);
            -- Where the next rebuild starts looking (created_at >= scan_from), and the transactions that were in
            -- flight at the last one with a lower bound of their start (see RollupMaintenance).
            CREATE TABLE walctl_rollup_state (
                id INT PRIMARY KEY CHECK (id = 1),
                scan_from TIMESTAMPTZ NOT NULL DEFAULT '-infinity',
                in_flight JSONB NOT NULL DEFAULT '{}',
                ran_at TIMESTAMPTZ
            );
            INSERT INTO walctl_rollup_state (id) VALUES (1);

            CREATE TABLE walctl_alerts (
                alert_id TEXT PRIMARY KEY,
                fired_at TIMESTAMPTZ NOT NULL,
                severity TEXT NOT NULL,
                metric_name TEXT NOT NULL,
                value DOUBLE PRECISION,
                threshold DOUBLE PRECISION,
                agent_id TEXT,
                log_id UUID,
                payload JSONB NOT NULL,
                loaded_at TIMESTAMPTZ NOT NULL DEFAULT now()
            );
            CREATE INDEX walctl_alerts_fired_at_idx ON walctl_alerts (fired_at DESC);

            """
        for table in tables {
            sql += """
                CREATE INDEX IF NOT EXISTS \(table)_created_at_idx ON \(table) USING brin (created_at)
                    WITH (autosummarize = on);

                """
        }
        return sql
    }

    /// The statements giving `role` read access for dashboards: USAGE on the schema and SELECT on the schema
    /// version, the metric tables, the rollups and the alerts. Nothing else (no cursors, no dead letters).
    public static func readOnlyGrants(to role: String) -> [String] {
        let quoted = "\"" + role.replacingOccurrences(of: "\"", with: "\"\"") + "\""
        return ["GRANT USAGE ON SCHEMA \(currentSchemaPlaceholder) TO \(quoted)"]
            + (["walctl_schema"] + tables + rollupTables + [alertsTable]).map { "GRANT SELECT ON \($0) TO \(quoted)" }
            + ["ALTER ROLE \(quoted) SET default_transaction_read_only = on"]
    }
}
