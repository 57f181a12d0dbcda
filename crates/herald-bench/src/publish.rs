//! The `publish` scenario: publications per second through `POST /api/publish` and the
//! latency of each acknowledgement (request sent → response received), over `--concurrency`
//! keep-alive HTTP/1.1 connections with one request in flight each, to `--channels` channels
//! round-robin (`<prefix>0` … `<prefix>N-1`).
//!
//! Closed loop (no `--rate`): every connection sends its next publication as soon as the
//! previous one is acknowledged, so the rate shows what the server sustains at that
//! concurrency; with durable history, concurrency is what lets group commit put many
//! publications in one fsync. Open loop (`--rate R`): publication n is due at `start + n/R`
//! and the next free connection sends it; a publication sent late because every connection was
//! busy is counted, and its latency from the due time is kept apart.
//!
//! A durable publication's answer carries its stream offset (`{"result":{"offset":N,…}}`);
//! answers without one are counted (`without_offset`): their channel keeps no history, so
//! they measure something else.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::PublishArgs;
use crate::proto;
use crate::publisher::{Api, HttpPublisher};
use crate::report::{self, r3};
use crate::scenario;
use crate::stats::{self, Tally};
use crate::sys::{self, now_ns};

/// An open-loop send later than this after its due time counts as late.
pub const LATE_NS: u64 = 2_000_000;

/// How much to publish and when to stop.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Open loop at this many publications per second; closed loop when `None`.
    pub rate: Option<f64>,
    /// Publications to make at most (`u64::MAX`: until the time is up).
    pub total: u64,
    /// No publication is started later than this many seconds after the start (an open loop
    /// behind schedule stops 1 s after its planned duration).
    pub stop_after_s: f64,
}

/// The plan for `--rate`, `--duration` and `--count` (10 s when neither bound is given).
pub fn plan(rate: Option<f64>, duration: Option<f64>, count: Option<u64>) -> Result<Plan, String> {
    if let Some(r) = rate
        && !(r > 0.0 && r <= 10_000_000.0)
    {
        return Err("--rate must be in (0, 10000000]".into());
    }
    if let Some(d) = duration
        && !(d > 0.0 && d <= 3600.0)
    {
        return Err("--duration must be in (0, 3600] seconds".into());
    }
    if let Some(n) = count
        && !(1..=1_000_000_000).contains(&n)
    {
        return Err("--count must be 1..1000000000".into());
    }
    match (rate, duration, count) {
        (_, Some(_), Some(_)) => Err("give --duration or --count, not both".into()),
        (Some(r), None, Some(n)) => {
            let secs = n as f64 / r;
            if secs > 3600.0 {
                return Err("--count / --rate is more than an hour".into());
            }
            Ok(Plan {
                rate,
                total: n,
                stop_after_s: secs + 1.0,
            })
        }
        (Some(r), d, None) => {
            let d = d.unwrap_or(10.0);
            Ok(Plan {
                rate,
                total: (r * d).round().max(1.0) as u64,
                stop_after_s: d + 1.0,
            })
        }
        (None, None, Some(n)) => Ok(Plan {
            rate,
            total: n,
            stop_after_s: 3600.0,
        }),
        (None, d, None) => Ok(Plan {
            rate,
            total: u64::MAX,
            stop_after_s: d.unwrap_or(10.0),
        }),
    }
}

/// The channel names, as JSON string literals: `<prefix>0` … `<prefix>N-1`.
pub fn channel_names(prefix: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| serde_json::to_string(&format!("{prefix}{i}")).expect("string"))
        .collect()
}

/// Rates per second between consecutive `(monotonic ns, cumulative count)` samples (taken about
/// once a second): (min, median, max).
pub fn per_second(samples: &[(u64, u64)]) -> Option<(u64, u64, u64)> {
    let mut d: Vec<u64> = samples
        .windows(2)
        .filter(|w| w[1].0 > w[0].0)
        .map(|w| {
            let n = w[1].1.saturating_sub(w[0].1) as f64;
            (n * 1e9 / (w[1].0 - w[0].0) as f64).round() as u64
        })
        .collect();
    if d.is_empty() {
        return None;
    }
    d.sort_unstable();
    Some((d[0], d[d.len() / 2], d[d.len() - 1]))
}

struct Shared {
    next: AtomicU64,
    ok: AtomicU64,
    failed: AtomicU64,
    without_offset: AtomicU64,
    late: AtomicU64,
    first_ns: AtomicU64,
    last_ack_ns: AtomicU64,
    errors: Tally,
}

struct Run {
    plan: Plan,
    channels: Vec<String>,
    payload_size: usize,
    start_ns: u64,
    stop_ns: u64,
}

/// One connection's loop: takes the next publication number until the plan is done; returns
/// (ack latency, latency from the due time) histograms.
async fn connection(
    mut p: HttpPublisher,
    run: Arc<Run>,
    shared: Arc<Shared>,
) -> (Histogram<u64>, Histogram<u64>) {
    let mut ack = stats::new_hist();
    let mut sched = stats::new_hist();
    let mut data = Vec::with_capacity(run.payload_size + 64);
    loop {
        let n = shared.next.fetch_add(1, Relaxed);
        if n >= run.plan.total {
            break;
        }
        let due = match run.plan.rate {
            Some(r) => run.start_ns + (n as f64 * 1e9 / r) as u64,
            None => 0,
        };
        let now = now_ns();
        if now >= run.stop_ns {
            break;
        }
        if due > now {
            tokio::time::sleep(Duration::from_nanos(due - now)).await;
        }
        let ts = now_ns();
        if run.plan.rate.is_some() && ts > due + LATE_NS {
            shared.late.fetch_add(1, Relaxed);
        }
        shared.first_ns.fetch_min(ts, Relaxed);
        proto::bench_data(&mut data, ts, n + 1, run.payload_size);
        let channel = &run.channels[(n % run.channels.len() as u64) as usize];
        match p.publish(channel, &data).await {
            Ok(offset) => {
                let done = now_ns();
                stats::record_ns(&mut ack, done - ts);
                if run.plan.rate.is_some() {
                    stats::record_ns(&mut sched, done.saturating_sub(due));
                }
                shared.ok.fetch_add(1, Relaxed);
                if offset.is_none() {
                    shared.without_offset.fetch_add(1, Relaxed);
                }
                shared.last_ack_ns.fetch_max(done, Ordering::Relaxed);
            }
            Err(e) => {
                shared.failed.fetch_add(1, Relaxed);
                shared.errors.add(e);
            }
        }
    }
    (ack, sched)
}

/// The `publish` scenario.
pub async fn publish(a: PublishArgs) -> Result<(), String> {
    let plan = plan(a.rate, a.duration, a.count)?;
    if !(1..=100_000).contains(&a.concurrency) {
        return Err("--concurrency must be 1..100000".into());
    }
    if !(1..=1_000_000).contains(&a.channels) {
        return Err("--channels must be 1..1000000".into());
    }
    if a.payload_size > 1 << 20 {
        return Err("--payload-size must be at most 1 MiB".into());
    }
    let key = a
        .api_key
        .as_deref()
        .filter(|k| !k.is_empty())
        .ok_or("--api-key (or HERALD_BENCH_API_KEY) is needed to publish through the API")?;
    let api = Api::parse(&a.api, key)?;
    let nofile =
        sys::raise_nofile_limit().map_err(|e| format!("cannot raise the open-file limit: {e}"))?;
    if a.concurrency as u64 + 64 > nofile {
        return Err(format!(
            "--concurrency {} exceeds the open-file limit ({nofile})",
            a.concurrency
        ));
    }
    let server_pid = a.server_pid.or_else(|| {
        let addr = api.addr();
        if addr.ip().is_loopback() {
            sys::find_listener_pid(addr.port())
        } else {
            None
        }
    });
    let concurrency = a
        .concurrency
        .min(plan.total.min(usize::MAX as u64) as usize);

    // Open every connection before the clock starts.
    let mut connecting = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let mut p = HttpPublisher::new(api.clone());
        connecting.spawn(async move { p.connect().await.map(|()| p) });
    }
    let mut pubs = Vec::with_capacity(concurrency);
    let connect_errors = Tally::default();
    while let Some(r) = connecting.join_next().await {
        match r {
            Ok(Ok(p)) => pubs.push(p),
            Ok(Err(e)) => connect_errors.add(e),
            Err(e) => connect_errors.add(e.to_string()),
        }
    }
    if pubs.is_empty() {
        return Err(format!(
            "no API connection could be opened: {}",
            report::tally_line(&connect_errors.get())
        ));
    }
    let connected = pubs.len();

    let load = sys::loadavg();
    let server_rss_before = server_pid.and_then(sys::rss_kib);
    let server_cpu_before = server_pid.and_then(sys::cpu_seconds);
    let own_cpu = || sys::cpu_seconds(std::process::id()).unwrap_or(0.0);
    let bench_cpu_before = own_cpu();
    let clock = Instant::now();
    let start_ns = now_ns() + 20_000_000;
    let run = Arc::new(Run {
        plan: plan.clone(),
        channels: channel_names(&a.channel_prefix, a.channels),
        payload_size: a.payload_size,
        start_ns,
        stop_ns: start_ns + (plan.stop_after_s * 1e9) as u64,
    });
    let shared = Arc::new(Shared {
        next: AtomicU64::new(0),
        ok: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        without_offset: AtomicU64::new(0),
        late: AtomicU64::new(0),
        first_ns: AtomicU64::new(u64::MAX),
        last_ack_ns: AtomicU64::new(0),
        errors: Tally::default(),
    });
    let mut tasks = tokio::task::JoinSet::new();
    for p in pubs {
        tasks.spawn(connection(p, run.clone(), shared.clone()));
    }
    let by_count = plan.total != u64::MAX;
    let pb = if by_count {
        scenario::bar(plan.total, "publish")
    } else {
        scenario::bar((plan.stop_after_s * 1000.0) as u64, "ms")
    };
    let mut ack = stats::new_hist();
    let mut sched = stats::new_hist();
    let mut samples = Vec::new();
    let mut next_sample = start_ns;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    while !tasks.is_empty() {
        tokio::select! {
            r = tasks.join_next() => {
                if let Some(Ok((a, s))) = r {
                    stats::merge(&mut ack, &a);
                    stats::merge(&mut sched, &s);
                }
            }
            _ = tick.tick() => {
                let now = now_ns();
                let done = shared.ok.load(Relaxed) + shared.failed.load(Relaxed);
                if now >= next_sample && now < run.stop_ns {
                    samples.push((now, shared.ok.load(Relaxed)));
                    next_sample = now + 1_000_000_000;
                }
                if by_count {
                    pb.set_position(done);
                } else {
                    pb.set_position(now.saturating_sub(start_ns) / 1_000_000);
                }
                if let Some((_, rate, _)) = per_second(&samples[samples.len().saturating_sub(2)..]) {
                    pb.set_message(format!("{done} sent, {rate} acks/s"));
                }
            }
        }
    }
    pb.finish_and_clear();
    let wall = clock.elapsed().as_secs_f64();
    let server_cpu_after = server_pid.and_then(sys::cpu_seconds);
    let bench_cpu_pct = 100.0 * (own_cpu() - bench_cpu_before) / wall.max(1e-9);
    let server_rss_after = server_pid.and_then(sys::rss_kib);
    let pressure = sys::cpu_pressure();

    let ok = shared.ok.load(Relaxed);
    let failed = shared.failed.load(Relaxed);
    let without_offset = shared.without_offset.load(Relaxed);
    let late = shared.late.load(Relaxed);
    let first = shared.first_ns.load(Relaxed);
    let last = shared.last_ack_ns.load(Relaxed);
    let secs = if last > first {
        (last - first) as f64 / 1e9
    } else {
        0.0
    };
    let rate = ok as f64 / secs.max(1e-9);
    let per_s = per_second(&samples);
    let s = stats::summarize(&ack);
    let sc = stats::summarize(&sched);
    let server_cpu_pct = match (server_cpu_before, server_cpu_after) {
        (Some(b), Some(e)) => Some(100.0 * (e - b) / wall.max(1e-9)),
        _ => None,
    };
    let mode = if plan.rate.is_some() {
        "open"
    } else {
        "closed"
    };
    let mut errors = shared.errors.get();
    stats::add_tallies(&mut errors, &connect_errors.get());

    let mut out = report::Human::new();
    out.line(format!(
        "publish: {} loop{}, {} connection(s) ({} opened), {} channel(s) {}0…, {} B data",
        mode,
        plan.rate.map_or(String::new(), |r| format!(" at {r} /s")),
        a.concurrency,
        connected,
        a.channels,
        a.channel_prefix,
        a.payload_size
    ));
    out.line(format!(
        "acknowledged {ok} ({failed} failed) in {secs:.2} s = {rate:.0} publications/s{}{}",
        per_s.map_or(String::new(), |(lo, med, hi)| format!(
            " (whole seconds: min {lo}, median {med}, max {hi})"
        )),
        if plan.rate.is_some() {
            format!("; {late} sent more than {} ms late", LATE_NS / 1_000_000)
        } else {
            String::new()
        }
    ));
    if without_offset > 0 {
        out.line(format!(
            "WARNING: {without_offset} acknowledgements carried no offset: those channels keep no history, so the publications were not durable"
        ));
    }
    out.latency("ack latency (request sent → response received)", &s);
    if plan.rate.is_some() {
        out.latency(
            "latency from the due time (includes waiting for a free connection)",
            &sc,
        );
    }
    if let Some(pid) = server_pid {
        out.line(format!(
            "server pid {pid}: CPU {}, RSS {} → {}",
            server_cpu_pct.map_or("?".into(), |v| format!("{v:.0}% of one core")),
            report::kib(server_rss_before),
            report::kib(server_rss_after),
        ));
    }
    out.line(format!(
        "bench: CPU {bench_cpu_pct:.0}% of one core; load average before the run {}, CPU pressure at the end {}",
        load.map_or("?".into(), |l| format!("{l:.2}")),
        pressure.map_or("?".into(), |p| format!("{p:.0}%"))
    ));
    out.tallies("errors", &errors);
    out.print();
    if let Some(path) = &a.plot {
        let title = format!(
            "publish ack latency: {mode} loop{}, {} connections",
            plan.rate.map_or(String::new(), |r| format!(" {r}/s")),
            a.concurrency
        );
        report::plot(path, &title, &[("ack", &ack)])?;
        eprintln!("plot written to {}", path.display());
    }
    report::json_line(&crate::fields! {
        "scenario": "publish",
        "label": a.label,
        "mode": mode,
        "concurrency": a.concurrency,
        "connections": connected,
        "channels": a.channels,
        "channel_prefix": a.channel_prefix,
        "rate": plan.rate,
        "planned": by_count.then_some(plan.total),
        "payload_size": a.payload_size,
        "duration_s": r3(secs),
        "published": ok,
        "publish_errors": failed,
        "without_offset": without_offset,
        "publish_rate": r3(rate),
        "per_s_min": per_s.map(|p| p.0),
        "per_s_median": per_s.map(|p| p.1),
        "per_s_max": per_s.map(|p| p.2),
        "late": plan.rate.map(|_| late),
        "p50_ms": r3(s.p50_ms),
        "p90_ms": r3(s.p90_ms),
        "p99_ms": r3(s.p99_ms),
        "p999_ms": r3(s.p999_ms),
        "max_ms": r3(s.max_ms),
        "mean_ms": r3(s.mean_ms),
        "due_p99_ms": plan.rate.map(|_| r3(sc.p99_ms)),
        "due_max_ms": plan.rate.map(|_| r3(sc.max_ms)),
        "server_pid": server_pid,
        "server_cpu_pct": server_cpu_pct.map(r3),
        "server_rss_before_kib": server_rss_before,
        "server_rss_after_kib": server_rss_after,
        "bench_cpu_pct": r3(bench_cpu_pct),
        "loadavg": load,
        "cpu_pressure_pct": pressure,
        "errors": errors,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_open_and_closed_loops() {
        let p = plan(None, None, None).unwrap();
        assert_eq!((p.rate, p.total, p.stop_after_s), (None, u64::MAX, 10.0));
        let p = plan(None, Some(5.0), None).unwrap();
        assert_eq!((p.total, p.stop_after_s), (u64::MAX, 5.0));
        let p = plan(None, None, Some(1000)).unwrap();
        assert_eq!((p.total, p.stop_after_s), (1000, 3600.0));
        let p = plan(Some(10_000.0), Some(10.0), None).unwrap();
        assert_eq!(
            (p.rate, p.total, p.stop_after_s),
            (Some(10_000.0), 100_000, 11.0)
        );
        let p = plan(Some(10_000.0), None, None).unwrap();
        assert_eq!(p.total, 100_000);
        let p = plan(Some(100.0), None, Some(50)).unwrap();
        assert_eq!((p.total, p.stop_after_s), (50, 1.5));
        let p = plan(Some(0.5), Some(1.0), None).unwrap();
        assert_eq!(p.total, 1, "at least one publication");
        assert!(plan(None, Some(1.0), Some(1)).is_err());
        assert!(plan(Some(0.0), None, None).is_err());
        assert!(plan(Some(f64::NAN), None, None).is_err());
        assert!(plan(None, Some(0.0), None).is_err());
        assert!(plan(None, Some(4000.0), None).is_err());
        assert!(plan(None, None, Some(0)).is_err());
        assert!(plan(Some(1.0), None, Some(10_000)).is_err(), "over an hour");
    }

    #[test]
    fn names_channels_round_robin() {
        assert_eq!(
            channel_names("bench:", 3),
            vec!["\"bench:0\"", "\"bench:1\"", "\"bench:2\""]
        );
        assert_eq!(channel_names("a\"b", 1), vec![r#""a\"b0""#]);
    }

    #[test]
    fn summarizes_whole_seconds() {
        let s = 1_000_000_000;
        assert_eq!(per_second(&[]), None);
        assert_eq!(per_second(&[(s, 5)]), None);
        assert_eq!(
            per_second(&[(0, 0), (s, 100), (2 * s, 250), (3 * s, 300)]),
            Some((50, 100, 150))
        );
        // A late sample: the window is longer, the rate is per second all the same.
        assert_eq!(
            per_second(&[(0, 0), (s * 3 / 2, 300), (s * 5 / 2, 500)]),
            Some((200, 200, 200))
        );
    }

    /// A scripted API answering every request: the loop publishes `--count` publications over
    /// several connections, round-robin over the channels, and reads the offsets.
    #[tokio::test]
    async fn closed_loop_publishes_the_planned_count() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let seen2 = seen.clone();
        tokio::spawn(async move {
            let counter = Arc::new(AtomicU64::new(0));
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                let seen = seen2.clone();
                let counter = counter.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let n = s.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        // One request per round trip: the whole request is in `buf`.
                        let text = String::from_utf8_lossy(&buf).to_string();
                        let Some(i) = text.find("\r\n\r\n") else {
                            continue;
                        };
                        let len: usize = text
                            .lines()
                            .find_map(|l| l.strip_prefix("Content-Length: "))
                            .unwrap()
                            .trim()
                            .parse()
                            .unwrap();
                        if buf.len() < i + 4 + len {
                            continue;
                        }
                        seen.lock()
                            .unwrap()
                            .push(text[i + 4..i + 4 + len].to_string());
                        buf.drain(..i + 4 + len);
                        let o = counter.fetch_add(1, Relaxed) + 1;
                        let body = format!(r#"{{"result":{{"offset":{o},"epoch":"e"}}}}"#);
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        s.write_all(resp.as_bytes()).await.unwrap();
                    }
                });
            }
        });
        let api = Api::parse(&format!("http://{addr}/api"), "k").unwrap();
        let plan = plan(None, None, Some(30)).unwrap();
        let start_ns = now_ns();
        let run = Arc::new(Run {
            plan,
            channels: channel_names("c:", 3),
            payload_size: 40,
            start_ns,
            stop_ns: start_ns + 10_000_000_000,
        });
        let shared = Arc::new(Shared {
            next: AtomicU64::new(0),
            ok: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            without_offset: AtomicU64::new(0),
            late: AtomicU64::new(0),
            first_ns: AtomicU64::new(u64::MAX),
            last_ack_ns: AtomicU64::new(0),
            errors: Tally::default(),
        });
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..4 {
            set.spawn(connection(
                HttpPublisher::new(api.clone()),
                run.clone(),
                shared.clone(),
            ));
        }
        let mut acks = 0;
        while let Some(r) = set.join_next().await {
            acks += r.unwrap().0.len();
        }
        assert_eq!(acks, 30);
        assert_eq!(shared.ok.load(Relaxed), 30);
        assert_eq!(shared.failed.load(Relaxed), 0);
        assert_eq!(shared.without_offset.load(Relaxed), 0);
        let bodies = seen.lock().unwrap().clone();
        assert_eq!(bodies.len(), 30);
        for ch in ["c:0", "c:1", "c:2"] {
            let n = bodies
                .iter()
                .filter(|b| b.starts_with(&format!(r#"{{"channel":"{ch}","data":{{"#)))
                .count();
            assert_eq!(n, 10, "{ch}: {bodies:?}");
        }
        assert!(shared.last_ack_ns.load(Relaxed) >= shared.first_ns.load(Relaxed));
    }
}
