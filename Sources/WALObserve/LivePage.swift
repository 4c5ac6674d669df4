/// The live page served at `GET /`: one self-contained HTML document (inline CSS and script, no external URL, so it
/// works on a machine without internet). Its script fetches `/api/live` (`LiveView.snapshotJSON()`) every second and
/// renders the design's five real-time panels, with per-second sparklines drawn as inline SVG.
///
/// Stable hooks for tests and scripts: each panel is a `section` with `data-panel` (`routing`, `state`,
/// `coordination`, `workflow`, `alerts`); each figure is an element with `data-metric="<json path>"` whose
/// `data-raw` holds the number shown (empty without data); the alert table's rows carry `data-severity`. The body
/// has `data-status`: `loading`, `live`, `no-data` (no record in the window yet), `unreachable` (no readable log)
/// or `stale` (the last fetch of `/api/live` failed; the figures shown are from `#last-refresh`).
public enum LivePage {
    /// The page, UTF-8.
    public static let html: [UInt8] = Array(text.utf8)

    /// The content type to serve it with.
    public static let contentType = "text/html; charset=utf-8"

    static let text = #"""
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>walctl live</title>
        <style>
        :root {
          --bg: #f5f6f8; --card: #ffffff; --fg: #1d2330; --muted: #667085; --line: #e3e6eb;
          --accent: #2563eb; --ok: #15803d; --warn: #b45309; --crit: #b91c1c; --info: #4b5563;
          font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
        }
        @media (prefers-color-scheme: dark) {
          :root { --bg: #0f1217; --card: #171b22; --fg: #e6e8eb; --muted: #98a1b0; --line: #2a303a;
            --accent: #60a5fa; --ok: #4ade80; --warn: #fbbf24; --crit: #f87171; --info: #9ca3af; }
        }
        * { box-sizing: border-box; }
        body { margin: 0; background: var(--bg); color: var(--fg); }
        header { display: flex; align-items: center; gap: 16px; padding: 14px 24px; border-bottom: 1px solid var(--line);
          background: var(--card); position: sticky; top: 0; }
        header h1 { font-size: 17px; margin: 0; font-weight: 600; }
        header .meta { color: var(--muted); font-size: 13px; }
        header .spacer { flex: 1; }
        #status { font-size: 12px; font-weight: 600; padding: 3px 10px; border-radius: 999px; border: 1px solid; }
        body[data-status="live"] #status { color: var(--ok); }
        body[data-status="no-data"] #status, body[data-status="loading"] #status { color: var(--muted); }
        body[data-status="unreachable"] #status, body[data-status="stale"] #status { color: var(--crit); }
        body[data-status="stale"] main { opacity: .55; }
        main { display: grid; grid-template-columns: repeat(auto-fit, minmax(560px, 1fr)); gap: 16px; padding: 16px 24px; }
        section { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 14px 16px;
          position: relative; }
        section h2 { font-size: 14px; margin: 0 0 10px; font-weight: 600; }
        section h2 small { color: var(--muted); font-weight: 400; margin-left: 6px; }
        .figures { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: 10px 16px; }
        .figure .label { color: var(--muted); font-size: 12px; }
        .figure .value { font-size: 22px; font-weight: 600; font-variant-numeric: tabular-nums; white-space: nowrap; }
        .figure.wide { grid-column: span 2; }
        .figure .value .unit { font-size: 13px; color: var(--muted); font-weight: 400; margin-left: 2px; }
        .figure svg { display: block; width: 100%; height: 30px; margin-top: 2px; }
        svg .spark { fill: none; stroke: var(--accent); stroke-width: 1.5; vector-effect: non-scaling-stroke; }
        .bars { display: flex; align-items: flex-end; gap: 3px; height: 64px; margin-top: 6px; }
        .bars div { flex: 1; background: var(--accent); min-height: 1px; border-radius: 2px 2px 0 0; }
        .axis { display: flex; justify-content: space-between; color: var(--muted); font-size: 11px; }
        .empty { display: none; position: absolute; inset: 40px 16px 14px; align-items: center; justify-content: center;
          color: var(--muted); background: var(--card); font-size: 13px; }
        body[data-status="no-data"] .empty, body[data-status="unreachable"] .empty { display: flex; }
        #alerts { grid-column: 1 / -1; }
        table { width: 100%; border-collapse: collapse; font-size: 13px; font-variant-numeric: tabular-nums; }
        th { text-align: left; color: var(--muted); font-weight: 500; border-bottom: 1px solid var(--line);
          padding: 4px 8px; }
        td { border-bottom: 1px solid var(--line); padding: 4px 8px; }
        .sev { font-weight: 600; text-transform: uppercase; font-size: 11px; }
        .sev.critical { color: var(--crit); } .sev.warning { color: var(--warn); } .sev.info { color: var(--info); }
        #alert-frequency { display: flex; align-items: flex-end; gap: 2px; height: 56px; margin: 4px 0 12px; }
        #alert-frequency .col { flex: 1; display: flex; flex-direction: column-reverse; }
        #alert-frequency .col div { min-height: 0; }
        .c-critical { background: var(--crit); } .c-warning { background: var(--warn); } .c-info { background: var(--info); }
        .legend { color: var(--muted); font-size: 12px; }
        .legend i { display: inline-block; width: 9px; height: 9px; margin: 0 4px 0 10px; border-radius: 2px; }
        footer { color: var(--muted); font-size: 12px; padding: 0 24px 20px; }
        #logs-detail { color: var(--crit); }
        </style>
        </head>
        <body data-status="loading">
        <header>
          <h1>walctl live</h1>
          <span class="meta" id="logs-summary">connecting…</span>
          <span class="spacer"></span>
          <span class="meta">last refresh <span id="last-refresh">never</span></span>
          <span id="status">loading</span>
        </header>
        <main>
          <section id="routing" data-panel="routing">
            <h2>Routing performance <small>last 1 min</small></h2>
            <div class="figures">
              <div class="figure"><div class="label">Avg decision time</div>
                <div class="value" data-metric="routing.decision_time_ms_avg" data-unit="ms" data-raw=""></div>
                <svg data-series="routing.decision_time_ms_series" viewBox="0 0 100 30" preserveAspectRatio="none"></svg></div>
              <div class="figure"><div class="label">Cache hit rate</div>
                <div class="value" data-metric="routing.cache_hit_rate_pct" data-unit="%" data-raw=""></div>
                <svg data-series="routing.cache_hit_rate_pct_series" viewBox="0 0 100 30" preserveAspectRatio="none"></svg></div>
              <div class="figure"><div class="label">Decisions</div>
                <div class="value" data-metric="routing.decisions" data-unit="" data-raw=""></div></div>
              <div class="figure"><div class="label">Mean confidence</div>
                <div class="value" data-metric="routing.confidence_avg" data-unit="" data-raw=""></div></div>
            </div>
            <div class="label legend" style="margin-top:10px">Confidence score distribution</div>
            <div class="bars" id="confidence-bars"></div>
            <div class="axis"><span>0.0</span><span>0.5</span><span>1.0</span></div>
            <div class="empty">no data yet</div>
          </section>
          <section id="state" data-panel="state">
            <h2>State operations <small>last 1 min</small></h2>
            <div class="figures">
              <div class="figure wide"><div class="label">Get p50 / p95 / p99</div>
                <div class="value"><span data-metric="state.get_ms.p50" data-unit="" data-raw=""></span> /
                  <span data-metric="state.get_ms.p95" data-unit="" data-raw=""></span> /
                  <span data-metric="state.get_ms.p99" data-unit="ms" data-raw=""></span></div>
                <svg data-series="state.get_p99_ms_series" viewBox="0 0 100 30" preserveAspectRatio="none"></svg></div>
              <div class="figure wide"><div class="label">Set p50 / p95 / p99</div>
                <div class="value"><span data-metric="state.set_ms.p50" data-unit="" data-raw=""></span> /
                  <span data-metric="state.set_ms.p95" data-unit="" data-raw=""></span> /
                  <span data-metric="state.set_ms.p99" data-unit="ms" data-raw=""></span></div>
                <svg data-series="state.set_p99_ms_series" viewBox="0 0 100 30" preserveAspectRatio="none"></svg></div>
              <div class="figure"><div class="label">Throughput</div>
                <div class="value" data-metric="state.ops_per_s" data-unit="ops/s" data-raw=""></div>
                <svg data-series="state.ops_series" viewBox="0 0 100 30" preserveAspectRatio="none"></svg></div>
              <div class="figure"><div class="label">Lock contention</div>
                <div class="value" data-metric="state.lock_contention_per_s" data-unit="/s" data-raw=""></div></div>
              <div class="figure"><div class="label">Avg lock wait</div>
                <div class="value" data-metric="state.lock_wait_ms_avg" data-unit="ms" data-raw=""></div></div>
            </div>
            <div class="empty">no data yet</div>
          </section>
          <section id="coordination" data-panel="coordination">
            <h2>Coordination overhead <small>last 5 min</small></h2>
            <div class="figures">
              <div class="figure"><div class="label">Avg coordination time</div>
                <div class="value" data-metric="coordination.overhead_ms_avg" data-unit="ms" data-raw=""></div>
                <svg data-series="coordination.overhead_ms_series" viewBox="0 0 100 30" preserveAspectRatio="none"></svg></div>
              <div class="figure"><div class="label">Avg sync time</div>
                <div class="value" data-metric="coordination.sync_time_ms_avg" data-unit="ms" data-raw=""></div></div>
              <div class="figure"><div class="label">Active agents</div>
                <div class="value" data-metric="coordination.active_agents" data-unit="" data-raw=""></div></div>
              <div class="figure wide"><div class="label">Dependency wait avg / max</div>
                <div class="value"><span data-metric="coordination.dependency_wait_ms_avg" data-unit="" data-raw=""></span> /
                  <span data-metric="coordination.dependency_wait_ms_max" data-unit="ms" data-raw=""></span></div>
                <svg data-series="coordination.dependency_wait_ms_series" viewBox="0 0 100 30" preserveAspectRatio="none"></svg></div>
            </div>
            <div class="empty">no data yet</div>
          </section>
          <section id="workflow" data-panel="workflow">
            <h2>Workflow execution <small>last 5 min</small></h2>
            <div class="figures">
              <div class="figure"><div class="label">Success rate</div>
                <div class="value" data-metric="workflow.success_rate_pct" data-unit="%" data-raw=""></div>
                <svg data-series="workflow.success_rate_pct_series" viewBox="0 0 100 30" preserveAspectRatio="none"></svg></div>
              <div class="figure"><div class="label">Avg execution time</div>
                <div class="value" data-metric="workflow.execution_time_ms_avg" data-unit="ms" data-raw=""></div>
                <svg data-series="workflow.execution_time_ms_series" viewBox="0 0 100 30" preserveAspectRatio="none"></svg></div>
              <div class="figure"><div class="label">Parallel speedup</div>
                <div class="value" data-metric="workflow.parallel_speedup_avg" data-unit="×" data-raw=""></div>
                <svg data-series="workflow.parallel_speedup_series" viewBox="0 0 100 30" preserveAspectRatio="none"></svg></div>
              <div class="figure"><div class="label">Executions</div>
                <div class="value" data-metric="workflow.executions" data-unit="" data-raw=""></div></div>
            </div>
            <div class="empty">no data yet</div>
          </section>
          <section id="alerts" data-panel="alerts">
            <h2>Alerts <small>frequency per minute, last 30 min; recent critical and warning</small></h2>
            <div class="legend">
              <i class="c-critical"></i>critical <span data-metric="alerts.critical_30m" data-unit="" data-raw=""></span>
              <i class="c-warning"></i>warning <span data-metric="alerts.warning_30m" data-unit="" data-raw=""></span>
              <i class="c-info"></i>info <span data-metric="alerts.info_30m" data-unit="" data-raw=""></span>
            </div>
            <div id="alert-frequency"></div>
            <div class="axis" style="margin:-8px 0 12px"><span>30 min ago</span><span>now</span></div>
            <table id="alerts-table">
              <thead><tr><th>Time (UTC)</th><th>Severity</th><th>Metric</th><th>Value</th><th>Threshold</th>
                <th>Agent</th><th>Alert id</th></tr></thead>
              <tbody><tr class="none"><td colspan="7">no critical or warning alert</td></tr></tbody>
            </table>
          </section>
        </main>
        <footer>Computed from the logs themselves, refreshed every second. <span id="logs-detail"></span></footer>
        <script>
        "use strict";
        const $ = (s) => document.querySelector(s);
        const $$ = (s) => Array.from(document.querySelectorAll(s));
        const pick = (o, path) => path.split(".").reduce((v, k) => (v == null ? undefined : v[k]), o);
        const esc = (t) => String(t == null ? "" : t).replace(/[&<>"']/g, (c) => "&#" + c.charCodeAt(0) + ";");
        function fmt(v) {
          if (v == null || !isFinite(v)) return "–";
          const a = Math.abs(v);
          if (a >= 1e6) return (v / 1e6).toFixed(2) + "M";
          if (a >= 1e4 || Number.isInteger(v)) return Math.round(v).toLocaleString("en-US");
          if (a >= 100) return v.toFixed(0);
          if (a >= 10) return v.toFixed(1);
          return v.toFixed(2);
        }
        function spark(svg, values) {
          const pts = values.map((v, i) => [i, v]).filter((p) => p[1] != null && isFinite(p[1]));
          if (pts.length === 0) { svg.innerHTML = ""; return; }
          let lo = Math.min(...pts.map((p) => p[1])), hi = Math.max(...pts.map((p) => p[1]));
          if (hi === lo) { hi += 1; lo -= 1; }
          const n = Math.max(1, values.length - 1);
          const d = pts.map((p) => (p[0] * 100 / n).toFixed(2) + "," + (28 - (p[1] - lo) * 26 / (hi - lo)).toFixed(2));
          svg.innerHTML = '<polyline class="spark" points="' + d.join(" ") + '"/>';
        }
        function setStatus(status, text) {
          document.body.dataset.status = status;
          $("#status").textContent = text;
        }
        let lastOk = 0;
        function render(data) {
          const alerts = data.alerts || {};
          const freq = alerts.frequency || {};
          const sum = (a) => (a || []).reduce((x, y) => x + y, 0);
          data.alerts.critical_30m = sum(freq.critical);
          data.alerts.warning_30m = sum(freq.warning);
          data.alerts.info_30m = sum(freq.info);
          for (const el of $$("[data-metric]")) {
            const v = pick(data, el.dataset.metric);
            el.dataset.raw = v == null ? "" : String(v);
            const unit = el.dataset.unit;
            el.innerHTML = esc(fmt(v)) + (unit && v != null ? '<span class="unit">' + esc(unit) + "</span>" : "");
          }
          for (const svg of $$("svg[data-series]")) spark(svg, pick(data, svg.dataset.series) || []);
          const buckets = (data.routing && data.routing.confidence_buckets) || [];
          const top = Math.max(1, ...buckets);
          $("#confidence-bars").innerHTML = buckets.map((n, i) =>
            '<div title="' + (i / 10).toFixed(1) + "–" + ((i + 1) / 10).toFixed(1) + ": " + n +
            '" data-bucket="' + i + '" data-count="' + n + '" style="height:' + (n * 100 / top).toFixed(1) + '%"></div>').join("");
          const minutes = (freq.critical || []).length;
          let peak = 1;
          for (let i = 0; i < minutes; i++) peak = Math.max(peak, freq.critical[i] + freq.warning[i] + freq.info[i]);
          let cols = "";
          for (let i = 0; i < minutes; i++) {
            cols += '<div class="col" title="' + (minutes - i) + ' min ago">';
            for (const s of ["critical", "warning", "info"]) {
              cols += '<div class="c-' + s + '" style="height:' + (freq[s][i] * 56 / peak).toFixed(1) + 'px"></div>';
            }
            cols += "</div>";
          }
          $("#alert-frequency").innerHTML = cols;
          const rows = (alerts.recent || []).map((a) =>
            '<tr data-severity="' + esc(a.severity) + '" data-alert-id="' + esc(a.alert_id) + '"><td>' +
            esc(String(a.time).replace("T", " ").slice(0, 19)) + '</td><td class="sev ' + esc(a.severity) + '">' +
            esc(a.severity) + "</td><td>" + esc(a.metric_name) + "</td><td>" + esc(fmt(a.value)) + "</td><td>" +
            esc(fmt(a.threshold)) + "</td><td>" + esc(a.agent_id || "") + "</td><td><code>" +
            esc(String(a.alert_id).slice(0, 8)) + "</code></td></tr>");
          $("#alerts-table tbody").innerHTML = rows.length ? rows.join("") :
            '<tr class="none"><td colspan="7">no critical or warning alert</td></tr>';
          const logs = data.logs || [];
          const unreachable = logs.filter((l) => l.state === "unreachable");
          const reading = logs.filter((l) => l.state === "reading").length;
          const skipped = logs.reduce((x, l) => x + (l.skipped || 0), 0);
          const lost = logs.reduce((x, l) => x + (l.lost || 0), 0);
          const damaged = logs.filter((l) => (l.damaged || 0) > 0);
          $("#logs-summary").textContent = data.log_count + (data.log_count === 1 ? " log" : " logs") + ", " +
            reading + " active · " + fmt(data.records_per_second) + " records/s" +
            (skipped > 0 ? " · " + fmt(skipped) + " skipped to keep up" : "") +
            (lost > 0 ? " · " + fmt(lost) + " records lost in the logs (walctl verify)" : "");
          $("#logs-detail").textContent = unreachable.map((l) => l.dir + ": " + (l.error || "unreachable"))
            .concat(damaged.map((l) => l.dir + ": " + l.damaged + " damaged region" + (l.damaged === 1 ? "" : "s") +
              " (run walctl verify " + l.dir + ")")).join("; ");
          $("#last-refresh").textContent = new Date().toISOString().replace("T", " ").slice(0, 19) + " UTC";
          if (data.log_count === 0 || unreachable.length === data.log_count) {
            setStatus("unreachable", data.log_count === 0 ? "no log found" : "log unreachable");
            for (const e of $$(".empty")) e.textContent = data.log_count === 0 ? "no log found" : "log unreachable";
          } else if (!data.records_in_window) {
            setStatus("no-data", "no data yet");
            for (const e of $$(".empty")) e.textContent = "no data yet";
          } else {
            setStatus("live", "live");
          }
        }
        async function refresh() {
          // A request that hangs counts as a failure after 3 s (the page then says it is stale).
          const controller = new AbortController();
          const timer = setTimeout(() => controller.abort(), 3000);
          try {
            const response = await fetch("/api/live", { cache: "no-store", signal: controller.signal });
            if (!response.ok) throw new Error("HTTP " + response.status);
            render(await response.json());
            lastOk = Date.now();
          } catch (error) {
            const since = lastOk ? " since " + new Date(lastOk).toISOString().slice(11, 19) + " UTC" : "";
            setStatus("stale", "stale: /api/live unreachable" + since);
          } finally {
            clearTimeout(timer);
            setTimeout(refresh, 1000);
          }
        }
        refresh();
        </script>
        </body>
        </html>
        """#
}
