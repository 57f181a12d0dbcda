//! Output: a human summary, one final JSON line, and an optional SVG latency plot.

use std::collections::BTreeMap;
use std::path::Path;

use hdrhistogram::Histogram;
use plotters::prelude::*;

use crate::stats::Summary;

/// Rounds to 3 decimals (for JSON).
pub fn r3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// KiB as a readable size.
pub fn kib(v: Option<u64>) -> String {
    match v {
        None => "?".into(),
        Some(k) if k >= 10 * 1024 => format!("{:.1} MiB", k as f64 / 1024.0),
        Some(k) => format!("{k} KiB"),
    }
}

/// `a: 3, b: 1` from a tally.
pub fn tally_line(t: &BTreeMap<String, u64>) -> String {
    let mut v: Vec<(&String, &u64)> = t.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1));
    v.iter()
        .take(10)
        .map(|(k, n)| format!("{n}× {k}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The human summary, printed to stdout before the JSON line.
pub struct Human(Vec<String>);

impl Human {
    /// An empty summary.
    pub fn new() -> Human {
        Human(Vec::new())
    }

    /// Adds a line.
    pub fn line(&mut self, s: String) {
        self.0.push(s);
    }

    /// Adds a latency line.
    pub fn latency(&mut self, what: &str, s: &Summary) {
        if s.count == 0 {
            self.0.push(format!("{what}: no samples"));
        } else {
            self.0.push(format!(
                "{what} (ms, {} samples): p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  mean {:.3}",
                s.count, s.p50_ms, s.p90_ms, s.p99_ms, s.p999_ms, s.max_ms, s.mean_ms
            ));
        }
    }

    /// Adds a tally line when it is not empty.
    pub fn tallies(&mut self, what: &str, t: &BTreeMap<String, u64>) {
        if !t.is_empty() {
            self.0.push(format!("{what}: {}", tally_line(t)));
        }
    }

    /// Prints it.
    pub fn print(&self) {
        for l in &self.0 {
            println!("{l}");
        }
    }
}

/// `fields! { "key": value, … }`: JSON object fields in the order written.
#[macro_export]
macro_rules! fields {
    ($($k:literal : $v:expr),* $(,)?) => {
        [$(($k, serde_json::to_value(&$v).expect("serializable"))),*]
    };
}

/// Prints the final JSON result line (always the last line of stdout), keys in the given
/// order.
pub fn json_line(fields: &[(&str, serde_json::Value)]) {
    println!("{}", json_object(fields));
}

/// A JSON object text with keys in the given order.
pub fn json_object(fields: &[(&str, serde_json::Value)]) -> String {
    let mut s = String::from("{");
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&serde_json::Value::from(*k).to_string());
        s.push(':');
        s.push_str(&v.to_string());
    }
    s.push('}');
    s
}

/// Writes a latency-by-percentile plot (HdrHistogram style: the x axis stretches the tail,
/// 1/(1-q) on a log scale) of one or more histograms (µs) to an SVG file.
pub fn plot(path: &Path, title: &str, series: &[(&str, &Histogram<u64>)]) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| format!("plot {}: {e}", path.display());
    let mut curves: Vec<(&str, Vec<(f64, f64)>)> = Vec::new();
    let mut x_max: f64 = 100.0;
    let mut y_max: f64 = 0.001;
    for (name, h) in series {
        if h.is_empty() {
            continue;
        }
        let pts = percentile_points(h);
        for &(x, y) in &pts {
            x_max = x_max.max(x);
            y_max = y_max.max(y);
        }
        curves.push((name, pts));
    }
    // Whole decades, at least to 99.9% and at most to 99.9999%.
    let decades = x_max.log10().ceil().clamp(3.0, 6.0);
    let x_max = 10f64.powf(decades);
    let root = SVGBackend::new(path, (900, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .margin_right(48)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((1f64..x_max).log_scale(), 0f64..y_max * 1.08)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .x_label_formatter(&|x| percentile_label(*x))
        .draw()
        .map_err(|e| err(&e))?;
    let colors = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];
    for (i, (name, pts)) in curves.into_iter().enumerate() {
        let color = colors[i % colors.len()];
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// (1/(1-q), latency ms) points from the 0th percentile to the maximum.
fn percentile_points(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    let mut pts = Vec::new();
    let top = 1.0 - 1.0 / (h.len() as f64).max(2.0);
    for v in h.iter_quantiles(4) {
        let q = v.quantile_iterated_to().min(top);
        pts.push((1.0 / (1.0 - q), v.value_iterated_to() as f64 / 1000.0));
    }
    pts.push((1.0 / (1.0 - top), h.max() as f64 / 1000.0));
    pts
}

fn percentile_label(x: f64) -> String {
    let q = 100.0 * (1.0 - 1.0 / x);
    if q <= 0.0 {
        "0%".into()
    } else if (q - q.round()).abs() < 1e-6 {
        format!("{q:.0}%")
    } else {
        let mut s = format!("{q:.6}");
        while s.ends_with('0') {
            s.pop();
        }
        format!("{s}%")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats;

    #[test]
    fn labels_and_rounding() {
        assert_eq!(percentile_label(1.0), "0%");
        assert_eq!(percentile_label(10.0), "90%");
        assert_eq!(percentile_label(100.0), "99%");
        assert_eq!(percentile_label(1000.0), "99.9%");
        assert_eq!(percentile_label(100000.0), "99.999%");
        assert_eq!(r3(1.23456), 1.235);
        assert_eq!(kib(Some(100)), "100 KiB");
        assert_eq!(kib(Some(20480)), "20.0 MiB");
        assert_eq!(kib(None), "?");
        let o = json_object(
            &crate::fields! { "scenario": "fanout", "subs": 3, "p50_ms": 1.5, "x": None::<u32> },
        );
        assert_eq!(o, r#"{"scenario":"fanout","subs":3,"p50_ms":1.5,"x":null}"#);
    }

    #[test]
    fn writes_an_svg_plot() {
        let mut h = stats::new_hist();
        for i in 1..=5000u64 {
            stats::record_ns(&mut h, i * 1000);
        }
        let empty = stats::new_hist();
        let path =
            std::env::temp_dir().join(format!("herald-bench-plot-{}.svg", std::process::id()));
        plot(&path, "test", &[("a", &h), ("empty", &empty)]).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("99.9%"));
        assert!(svg.contains("latency (ms)"));
        let pts = percentile_points(&h);
        assert!(pts.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));
        assert!((pts.last().unwrap().1 - 5.0).abs() < 0.01);
    }
}

/// A number for a table: whole above 1000, else up to 3 decimals without trailing zeros.
fn num(x: f64) -> String {
    if x.abs() >= 1000.0 {
        format!("{x:.0}")
    } else {
        let s = format!("{x:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Markdown tables of result lines (one JSON object per line, as printed by the scenarios),
/// grouped by scenario; lines that are not results are skipped. Runs with the same label get
/// a "median" row when there are several.
pub fn markdown_tables(text: &str) -> String {
    use serde_json::Value;
    let rows: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .filter(|v| v.get("scenario").is_some())
        .collect();
    let f = |v: &Value, k: &str| -> String {
        match v.get(k) {
            None | Some(Value::Null) => "–".into(),
            Some(Value::Number(n)) if n.is_f64() => num(n.as_f64().unwrap_or(0.0)),
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        }
    };
    let mut out = String::new();
    type Col = (&'static str, &'static str);
    let tables: [(&str, &str, &[Col]); 5] = [
        (
            "fanout",
            "Fan-out (delivery latency = receive time − publish send time, ms)",
            &[
                ("label", "run"),
                ("subscribed", "subs"),
                ("rate", "msg/s"),
                ("client_model", "client"),
                ("mode", "mode"),
                ("published", "published"),
                ("publish_rate", "published/s"),
                ("received", "received"),
                ("expected", "expected"),
                ("loss_pct", "loss %"),
                ("deliveries_per_s", "deliveries/s"),
                ("p50_ms", "p50"),
                ("p90_ms", "p90"),
                ("p99_ms", "p99"),
                ("p999_ms", "p99.9"),
                ("max_ms", "max"),
                ("arrival_p99_ms", "p99 into the socket"),
                ("publish_rtt_p50_ms", "publish RTT p50"),
                ("publish_rtt_p99_ms", "publish RTT p99"),
                ("disconnects", "disconnects"),
                ("server_cpu_pct", "server CPU %"),
                ("bench_cpu_pct", "bench CPU %"),
                ("server_rss_after_kib", "server RSS KiB"),
                ("loadavg", "load"),
                ("cpu_pressure_pct", "CPU pressure %"),
            ],
        ),
        (
            "idle",
            "Idle connections (server memory)",
            &[
                ("label", "run"),
                ("subs", "clients"),
                ("connected", "connected"),
                ("held", "held"),
                ("hold_s", "hold s"),
                ("server_rss_start_kib", "RSS before KiB"),
                ("server_rss_connected_kib", "RSS connected KiB"),
                ("server_rss_per_conn_kib", "server KiB/conn"),
                ("server_rss_per_conn_end_kib", "KiB/conn at end"),
                ("server_cpu_pct_idle", "server CPU % idle"),
                ("bench_rss_per_conn_kib", "bench KiB/conn"),
                ("setup_s", "set-up s"),
                ("listen_drops", "listen drops"),
                ("loadavg", "load"),
                ("cpu_pressure_pct", "CPU pressure %"),
            ],
        ),
        (
            "connect",
            "Connect + subscribe",
            &[
                ("label", "run"),
                ("subs", "clients"),
                ("concurrency", "concurrency"),
                ("connected", "ok"),
                ("connect_failed", "failed"),
                ("connects_per_s", "clients/s"),
                ("handshake_p50_ms", "handshake p50"),
                ("connect_p50_ms", "connect p50"),
                ("subscribe_p50_ms", "subscribe p50"),
                ("p50_ms", "set-up p50"),
                ("p99_ms", "set-up p99"),
                ("max_ms", "set-up max"),
                ("listen_drops", "listen drops"),
                ("loadavg", "load"),
                ("cpu_pressure_pct", "CPU pressure %"),
            ],
        ),
        (
            "publish",
            "Durable publish through the API (ack latency = request sent → response received, ms)",
            &[
                ("label", "run"),
                ("mode", "loop"),
                ("concurrency", "connections"),
                ("channels", "channels"),
                ("rate", "target/s"),
                ("published", "acked"),
                ("publish_errors", "errors"),
                ("without_offset", "no offset"),
                ("publish_rate", "publications/s"),
                ("per_s_min", "min 1 s"),
                ("per_s_max", "max 1 s"),
                ("p50_ms", "p50"),
                ("p90_ms", "p90"),
                ("p99_ms", "p99"),
                ("p999_ms", "p99.9"),
                ("max_ms", "max"),
                ("late", "late"),
                ("server_cpu_pct", "server CPU %"),
                ("bench_cpu_pct", "bench CPU %"),
                ("loadavg", "load"),
                ("cpu_pressure_pct", "CPU pressure %"),
            ],
        ),
        (
            "recover",
            "Recovery after a disconnect (time from the reconnect signal to the recovered subscribe reply, ms)",
            &[
                ("label", "run"),
                ("subscribed", "clients"),
                ("procs", "procs"),
                ("published", "missed"),
                ("recovered", "recovered"),
                ("recover_failed", "failed"),
                ("publications_received", "publications"),
                ("total_s", "all done s"),
                ("p50_ms", "p50"),
                ("p90_ms", "p90"),
                ("p99_ms", "p99"),
                ("max_ms", "max"),
                ("subscribe_p50_ms", "subscribe p50"),
                ("listen_drops", "listen drops"),
                ("server_cpu_pct", "server CPU %"),
                ("bench_cpu_pct", "bench CPU %"),
                ("loadavg", "load"),
                ("cpu_pressure_pct", "CPU pressure %"),
            ],
        ),
    ];
    for (scenario, title, cols) in tables {
        let these: Vec<&Value> = rows.iter().filter(|v| v["scenario"] == scenario).collect();
        if these.is_empty() {
            continue;
        }
        out.push_str(&format!("### {title}\n\n|"));
        for (_, h) in cols.iter() {
            out.push_str(&format!(" {h} |"));
        }
        out.push_str("\n|");
        for (k, _) in cols.iter() {
            out.push_str(if *k == "label" { "---|" } else { "---:|" });
        }
        out.push('\n');
        let mut i = 0;
        while i < these.len() {
            let label = &these[i]["label"];
            let mut j = i;
            while j < these.len() && &these[j]["label"] == label {
                j += 1;
            }
            for v in &these[i..j] {
                out.push('|');
                for (k, _) in cols.iter() {
                    out.push_str(&format!(" {} |", f(v, k)));
                }
                out.push('\n');
            }
            if j - i > 1 {
                out.push('|');
                for (k, _) in cols.iter() {
                    let cell = if *k == "label" {
                        format!("**median of {}** (per column)", j - i)
                    } else {
                        let mut xs: Vec<f64> = these[i..j]
                            .iter()
                            .filter_map(|v| v.get(*k)?.as_f64())
                            .collect();
                        if xs.len() == j - i {
                            xs.sort_by(|a, b| a.total_cmp(b));
                            format!("**{}**", num(xs[xs.len() / 2]))
                        } else {
                            String::new()
                        }
                    };
                    out.push_str(&format!(" {cell} |"));
                }
                out.push('\n');
            }
            i = j;
        }
        out.push('\n');
        if scenario == "idle" {
            if let Some(line) = marginal_memory(&these) {
                out.push_str(&line);
            }
        }
    }
    out
}

/// The memory each further connection costs, from the smallest and the largest idle run (RSS
/// at the end of the hold): unlike the per-connection columns, which divide all the growth
/// since the server started by the clients, this leaves out what only the server's first
/// connections cost (code pages and thread caches touched for the first time).
fn marginal_memory(idle: &[&serde_json::Value]) -> Option<String> {
    let point = |v: &serde_json::Value| {
        Some((
            v.get("connected")?.as_f64()?,
            v.get("server_rss_end_kib")?.as_f64()?,
        ))
    };
    let points: Vec<(f64, f64)> = idle.iter().filter_map(|v| point(v)).collect();
    let small = points.iter().min_by(|a, b| a.0.total_cmp(&b.0))?;
    let large = points.iter().max_by(|a, b| a.0.total_cmp(&b.0))?;
    if large.0 <= small.0 {
        return None;
    }
    let per_conn = (large.1 - small.1) / (large.0 - small.0);
    Some(format!(
        "Marginal server memory per connection, between the idle runs with {} and {} clients \
         (RSS at the end of the hold): **{} KiB**. The columns above divide all growth since \
         start-up, including what only the first connections cost (code pages and thread \
         caches touched for the first time).\n\n",
        small.0,
        large.0,
        num(per_conn)
    ))
}

#[cfg(test)]
mod table_tests {
    use super::*;

    #[test]
    fn two_idle_runs_give_the_marginal_memory_per_connection() {
        let text = r#"
{"scenario":"idle","label":"idle-3000","subs":3000,"connected":3000,"server_rss_end_kib":13000}
{"scenario":"idle","label":"idle-15000","subs":15000,"connected":15000,"server_rss_end_kib":25000}
"#;
        let md = markdown_tables(text);
        assert!(
            md.contains("between the idle runs with 3000 and 15000 clients"),
            "{md}"
        );
        assert!(
            md.contains("**1 KiB**"),
            "12,000 KiB over 12,000 clients: {md}"
        );
    }

    #[test]
    fn groups_runs_and_adds_medians() {
        let text = r#"
set up 10/10 clients
{"scenario":"fanout","label":"a","subscribed":10,"rate":100.0,"p50_ms":1.5,"loss_pct":0.0}
{"scenario":"fanout","label":"a","subscribed":10,"rate":100.0,"p50_ms":0.5,"loss_pct":0.0}
{"scenario":"fanout","label":"a","subscribed":10,"rate":100.0,"p50_ms":1.0,"loss_pct":0.0}
{"scenario":"idle","label":"i","subs":5,"server_rss_per_conn_kib":3.25,"loadavg":null}
{"scenario":"publish","label":"p","mode":"closed","concurrency":64,"rate":null,"publish_rate":101234.4,"p99_ms":4.25}
{"scenario":"recover","label":"r","subscribed":15000,"recovered":15000,"recover_failed":0,"total_s":2.5}
"#;
        let md = markdown_tables(text);
        assert!(md.contains("### Fan-out"), "{md}");
        assert!(md.contains("| a | 10 | 100 |"), "{md}");
        assert!(md.contains("**median of 3**"), "{md}");
        assert!(md.contains("**1**"), "median p50 is 1.0: {md}");
        assert!(md.contains("### Idle"), "{md}");
        assert!(
            !md.contains("Marginal"),
            "one idle run gives no slope: {md}"
        );
        assert!(md.contains("| 3.25 |"), "{md}");
        assert!(!md.contains("### Connect"), "{md}");
        assert!(md.contains("### Durable publish"), "{md}");
        assert!(md.contains("| p | closed | 64 | – | – |"), "{md}");
        assert!(md.contains("| 101234 |"), "{md}");
        assert!(md.contains("### Recovery"), "{md}");
        assert!(
            md.contains("| r | 15000 | – | – | 15000 | 0 | – | 2.5 |"),
            "{md}"
        );
    }
}
