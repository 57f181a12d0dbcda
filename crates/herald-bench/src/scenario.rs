//! The scenarios, run by the parent process: start workers, drive the phases, merge and
//! report.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};

use crate::publisher::{self, Api, ClientPublisher, HttpPublisher, Plan, PubCounters, Publisher};
use crate::report::{self, r3};
use crate::stats;
use crate::sys::{self, now_ns};
use crate::worker::{Auth, Pool, Progress, WorkerResult, WorkerSpec};
use crate::ws::Target;
use crate::{ClientModel, Common, ConnectArgs, FanoutArgs, IdleArgs, PublishVia};

/// Connections one loopback source address is given when the port range is unknown.
const PER_SOURCE: usize = 25_000;
/// Default connections per worker process.
const PER_PROC: usize = 15_000;
/// Descriptors a worker needs besides its connections.
const FD_MARGIN: u64 = 64;

/// The prepared run: workers' specs plus what the parent needs to know.
pub(crate) struct Prepared {
    pub(crate) specs: Vec<WorkerSpec>,
    pub(crate) procs: usize,
    pub(crate) threads: usize,
    pub(crate) sources: Vec<IpAddr>,
    pub(crate) server_pid: Option<u32>,
    pub(crate) setup_timeout: Duration,
    pub(crate) auth: Auth,
}

pub(crate) fn prepare(
    c: &Common,
    subscribe: bool,
    publishers: usize,
    run_secs: f64,
) -> Result<Prepared, String> {
    if c.subs == 0 || c.subs > 1_000_000 {
        return Err("--subs must be 1..1000000".into());
    }
    if c.connect_timeout <= 0.0 || c.connect_timeout > 600.0 {
        return Err("--connect-timeout must be in (0, 600] seconds".into());
    }
    if c.protobuf_share.is_some_and(|f| !(0.0..=1.0).contains(&f)) {
        return Err("--protobuf-share must be a fraction in [0, 1]".into());
    }
    let protobuf_share = p_share(c);
    if c.transport != crate::TransportKind::Websocket
        && (protobuf_share > 0.0 || c.client_model != ClientModel::Fast)
    {
        return Err(
            "--transport http-stream and sse are written for the fast client model and JSON".into(),
        );
    }
    if c.url.is_empty() || c.url.len() > c.subs {
        return Err("--url must be given 1..=--subs times".into());
    }
    for url in &c.url {
        Target::parse(url)?;
    }
    let target = Target::parse(c.first_url())?;
    let nofile =
        sys::raise_nofile_limit().map_err(|e| format!("cannot raise the open-file limit: {e}"))?;
    let procs = c
        .procs
        .unwrap_or(c.subs.div_ceil(PER_PROC).max(c.url.len()))
        .clamp(1, 256)
        .min(c.subs);
    if procs < c.url.len() {
        return Err(format!(
            "{} URLs need at least as many worker processes (each worker connects to one \
             URL); use --procs {} or more",
            c.url.len(),
            c.url.len()
        ));
    }
    let per_proc = c.subs.div_ceil(procs);
    if per_proc as u64 + FD_MARGIN > nofile {
        return Err(format!(
            "{per_proc} connections per worker process exceed the open-file limit ({nofile}); \
             use --procs {} or more",
            (c.subs as u64).div_ceil(nofile.saturating_sub(FD_MARGIN).max(1))
        ));
    }
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let threads = c.threads.unwrap_or((cpus / procs).max(1)).clamp(1, 256);
    let sources = parse_sources(&c.source_ips, &target, c.subs)?;
    let auth = match (&c.token, &c.hmac_secret) {
        (Some(t), _) => Auth::Token(t.clone()),
        (None, Some(s)) => Auth::Hmac {
            secret: s.clone(),
            user_prefix: "bench-".into(),
        },
        (None, None) => Auth::None,
    };
    let server_pid = c.server_pid.or_else(|| {
        if target.addr.ip().is_loopback() {
            sys::find_listener_pid(target.addr.port())
        } else {
            None
        }
    });
    let concurrency = c.concurrency.max(1);
    let waves = c.subs.div_ceil(concurrency) as f64;
    let setup_timeout = Duration::from_secs_f64((waves * c.connect_timeout + 30.0).min(1800.0));
    let max_lifetime_s = (setup_timeout.as_secs_f64() + run_secs + 300.0) as u64;
    let mut specs = Vec::with_capacity(procs);
    let mut first = 0;
    for index in 0..procs {
        let count = c.subs / procs + usize::from(index < c.subs % procs);
        specs.push(WorkerSpec {
            index,
            // Round-robin over the nodes, one URL per worker.
            url: c.url[index % c.url.len()].clone(),
            first,
            count,
            auth: auth.clone(),
            channel: c.channel.clone(),
            subscribe,
            sources: sources.clone(),
            concurrency: concurrency.div_ceil(procs),
            connect_timeout_ms: (c.connect_timeout * 1000.0) as u64,
            read_buf: c.read_buf.clamp(512, 1 << 20),
            threads,
            max_lifetime_s,
            report_ms: 200,
            publishers,
            recover: None,
            client_model: c.client_model,
            delta: false,
            tags_filter: None,
            protobuf_share,
            transport: c.transport,
        });
        first += count;
    }
    Ok(Prepared {
        specs,
        procs,
        threads,
        sources,
        server_pid,
        setup_timeout,
        auth,
    })
}

/// `--source-ips`: a count, a list, `none` or `auto`.
pub(crate) fn parse_sources(
    spec: &str,
    target: &Target,
    subs: usize,
) -> Result<Vec<IpAddr>, String> {
    let loopback_v4 = target.addr.is_ipv4() && target.addr.ip().is_loopback();
    let range = |n: usize| -> Result<Vec<IpAddr>, String> {
        if !loopback_v4 {
            return Err("a count of --source-ips means 127.0.0.1..N, which only reaches a server on 127.0.0.0/8; give addresses instead".into());
        }
        if !(1..=254).contains(&n) {
            return Err("--source-ips count must be 1..254".into());
        }
        Ok((1..=n as u8)
            .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i)))
            .collect())
    };
    match spec.trim() {
        "none" | "" => Ok(Vec::new()),
        "auto" => {
            // Leave a tenth of the ephemeral port range for everything else.
            let per_source = sys::local_port_range()
                .map(|(lo, hi)| (hi.saturating_sub(lo) as usize + 1) * 9 / 10)
                .filter(|&n| n >= 1000)
                .unwrap_or(PER_SOURCE);
            let n = subs.div_ceil(per_source);
            if n <= 1 || !loopback_v4 {
                Ok(Vec::new())
            } else {
                range(n)
            }
        }
        s => match s.parse::<usize>() {
            Ok(n) => range(n),
            Err(_) => s
                .split(',')
                .map(|a| {
                    a.trim()
                        .parse::<IpAddr>()
                        .map_err(|e| format!("--source-ips {a}: {e}"))
                })
                .collect(),
        },
    }
}

pub(crate) fn bar(len: u64, prefix: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{prefix:>9} [{bar:36}] {pos}/{len} {elapsed} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    pb.set_prefix(prefix.to_string());
    pb
}

/// The workers after set-up.
pub(crate) struct Started {
    pub(crate) pool: Pool,
    /// Progress when every client was set up or failed.
    pub(crate) ready: Progress,
    /// Wall time of the set-up, s.
    pub(crate) secs: f64,
    /// Connection attempts the kernel dropped because an accept queue was full (machine-wide).
    pub(crate) listen_drops: Option<u64>,
    /// 1-minute load average before the run.
    pub(crate) load: Option<f64>,
}

/// Starts the workers and waits until every connection is set up (or failed).
pub(crate) async fn start_and_connect(p: &Prepared, total: usize) -> Result<Started, String> {
    let load = sys::loadavg();
    let drops_before = sys::listen_drops();
    let mut pool = Pool::spawn(p.specs.clone()).await?;
    let pb = bar(total as u64, "connect");
    let started = Instant::now();
    loop {
        pool.pump(Duration::from_millis(100)).await;
        let t = pool.totals();
        pb.set_position(t.connected + t.failed);
        if t.failed > 0 {
            pb.set_message(format!("{} failed", t.failed));
        }
        if !pool.fatal.is_empty() {
            pb.finish_and_clear();
            return Err(pool.fatal.join("; "));
        }
        if pool.all_ready() {
            break;
        }
        if started.elapsed() > p.setup_timeout {
            pb.finish_and_clear();
            let _ = pool.stop(Duration::from_secs(5)).await;
            return Err(format!(
                "set-up did not finish within {:?}",
                p.setup_timeout
            ));
        }
    }
    pb.finish_and_clear();
    let t = pool.totals();
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "set up {}/{} clients in {:.1} s ({} failed) with {} worker process(es) × {} thread(s){}",
        t.connected,
        total,
        secs,
        t.failed,
        p.procs,
        p.threads,
        if p.sources.is_empty() {
            String::new()
        } else {
            format!(", {} source addresses", p.sources.len())
        }
    );
    if t.connected == 0 {
        let results = pool.stop(Duration::from_secs(5)).await;
        let mut errors = BTreeMap::new();
        for r in &results {
            stats::add_tallies(&mut errors, &r.errors);
        }
        for r in pool.recover_done.iter().flatten() {
            stats::add_tallies(&mut errors, &r.errors);
        }
        return Err(format!(
            "no client could be set up: {}",
            report::tally_line(&errors)
        ));
    }
    let listen_drops = match (drops_before, sys::listen_drops()) {
        (Some(b), Some(a)) => Some(a.saturating_sub(b)),
        _ => None,
    };
    if let Some(d) = listen_drops.filter(|&d| d > 0) {
        eprintln!(
            "note: the kernel dropped {d} connection attempts on a full accept queue (listen \
             backlog) during set-up; those clients retried after ~1 s"
        );
    }
    Ok(Started {
        pool,
        ready: t,
        secs,
        listen_drops,
        load,
    })
}

/// Merged worker results.
struct Merged {
    delivery: Histogram<u64>,
    arrival: Histogram<u64>,
    handshake: Histogram<u64>,
    connect: Histogram<u64>,
    subscribe: Histogram<u64>,
    setup: Histogram<u64>,
    progress: Progress,
    out_of_order: u64,
    pings: u64,
    errors: BTreeMap<String, u64>,
    closes: BTreeMap<String, u64>,
    setup_start_ns: u64,
    setup_end_ns: u64,
    last_recv_ns: u64,
    rss_kib: u64,
    deltas: u64,
}

fn merge(results: &[WorkerResult]) -> Result<Merged, String> {
    let mut m = Merged {
        delivery: stats::new_hist(),
        arrival: stats::new_hist(),
        handshake: stats::new_hist(),
        connect: stats::new_hist(),
        subscribe: stats::new_hist(),
        setup: stats::new_hist(),
        progress: Progress::default(),
        out_of_order: 0,
        pings: 0,
        errors: BTreeMap::new(),
        closes: BTreeMap::new(),
        setup_start_ns: u64::MAX,
        setup_end_ns: 0,
        last_recv_ns: 0,
        rss_kib: 0,
        deltas: 0,
    };
    for r in results {
        stats::merge(&mut m.delivery, &stats::decode(&r.delivery)?);
        stats::merge(&mut m.arrival, &stats::decode(&r.arrival)?);
        stats::merge(&mut m.handshake, &stats::decode(&r.handshake)?);
        stats::merge(&mut m.connect, &stats::decode(&r.connect)?);
        stats::merge(&mut m.subscribe, &stats::decode(&r.subscribe)?);
        stats::merge(&mut m.setup, &stats::decode(&r.setup)?);
        m.progress.connected += r.progress.connected;
        m.progress.failed += r.progress.failed;
        m.progress.closed += r.progress.closed;
        m.progress.received += r.progress.received;
        m.out_of_order += r.out_of_order;
        m.pings += r.pings;
        stats::add_tallies(&mut m.errors, &r.errors);
        stats::add_tallies(&mut m.closes, &r.closes);
        m.setup_start_ns = m.setup_start_ns.min(r.setup_start_ns);
        m.setup_end_ns = m.setup_end_ns.max(r.setup_end_ns);
        m.last_recv_ns = m.last_recv_ns.max(r.last_recv_ns);
        m.rss_kib += r.rss_kib;
        m.deltas += r.deltas;
    }
    Ok(m)
}

/// Enough publisher connections (one request in flight each) for `rate` when a publish takes
/// about 2 ms plus 2 µs per subscriber (the server fans out before it answers).
fn default_publishers(rate: f64, subs: usize) -> usize {
    (rate * (0.002 + subs as f64 * 2e-6))
        .ceil()
        .clamp(1.0, 32.0) as usize
}

/// The `fanout` scenario.
pub async fn fanout(a: FanoutArgs) -> Result<(), String> {
    let c = &a.common;
    if !(a.rate > 0.0 && a.rate <= 1_000_000.0) {
        return Err("--rate must be in (0, 1000000]".into());
    }
    if !(a.duration > 0.0 && a.duration <= 3600.0) {
        return Err("--duration must be in (0, 3600] seconds".into());
    }
    if !(0.0..=300.0).contains(&a.drain_timeout) {
        return Err("--drain-timeout must be 0..300 seconds".into());
    }
    if a.payload_size > 1 << 20 {
        return Err("--payload-size must be at most 1 MiB".into());
    }
    if a.tags_filter.is_some_and(|f| !(0.0..=1.0).contains(&f)) {
        return Err("--tags-filter must be a fraction in [0, 1]".into());
    }
    let features = a.delta || a.tags_filter.is_some();
    if features && c.client_model != ClientModel::Tungstenite {
        return Err(
            "--delta and --tags-filter need --client-model tungstenite (a client that \
                    decodes publications as a client library does)"
                .into(),
        );
    }
    if features && a.publish_via != PublishVia::Api {
        return Err(
            "--delta and --tags-filter need --publish-via api (the publish sets `delta` \
                    and `tags`)"
                .into(),
        );
    }
    if features && p_share(c) > 0.0 {
        return Err("--delta and --tags-filter are measured with JSON subscribers only".into());
    }
    if a.delta && a.tags_filter.is_some() {
        return Err(
            "use --delta or --tags-filter, not both: a filtered subscriber's delta \
                    base would be a publication it never received"
                .into(),
        );
    }
    // What each API publish adds to its body for the channel-feature modes.
    let mut extra_fields = String::new();
    if a.delta {
        extra_fields.push_str(r#","delta":true"#);
    }
    if a.tags_filter.is_some() {
        extra_fields.push_str(&format!(
            r#","tags":{{"{}":"{}"}}"#,
            crate::typical::TAG_KEY,
            crate::typical::TAG_VALUE
        ));
    }
    let api = if a.publish_via == PublishVia::Api {
        let key =
            a.api_key.as_deref().filter(|k| !k.is_empty()).ok_or(
                "--api-key (or HERALD_BENCH_API_KEY) is needed to publish through the API",
            )?;
        Some(Api::parse(&a.api, key)?)
    } else {
        None
    };
    let total = (a.rate * a.duration).round().max(1.0) as u64;
    let publishers = a
        .publishers
        .unwrap_or(default_publishers(a.rate, c.subs))
        .clamp(1, 32)
        .min(total as usize);
    let mut p = prepare(
        c,
        true,
        publishers,
        a.duration * 2.0 + a.drain_timeout + 10.0,
    )?;
    for s in &mut p.specs {
        s.delta = a.delta;
        s.tags_filter = a.tags_filter;
    }
    let server_rss_start = p.server_pid.and_then(sys::rss_kib);
    let Started {
        mut pool,
        ready,
        secs: setup_secs,
        listen_drops,
        load,
    } = start_and_connect(&p, c.subs).await?;
    let subscribed = ready.connected - ready.closed;

    // Publishers.
    let channel_json = serde_json::to_string(&c.channel).expect("string");
    let mut pubs = Vec::with_capacity(publishers);
    for i in 0..publishers {
        pubs.push(match &api {
            Some(api) => Publisher::Http(Box::new(
                HttpPublisher::new(api.clone()).with_fields(&extra_fields),
            )),
            None => Publisher::Client(Box::new(
                ClientPublisher::connect(c.first_url(), &p.auth, i).await?,
            )),
        });
    }
    let server_rss_before = p.server_pid.and_then(sys::rss_kib);
    let server_cpu_before = p.server_pid.and_then(sys::cpu_seconds);
    let own_cpu = || sys::cpu_seconds(std::process::id()).unwrap_or(0.0);
    let bench_cpu_before = pool.cpu_seconds() + own_cpu();
    let cpu_clock = Instant::now();
    let start_ns = now_ns() + 50_000_000;
    let plan = Arc::new(Plan {
        channel_json,
        total,
        rate: a.rate,
        payload_size: a.payload_size,
        start_ns,
        hard_stop_ns: start_ns + ((a.duration + 1.0) * 1e9) as u64,
    });
    let counters = Arc::new(PubCounters {
        first_ns: u64::MAX.into(),
        ..Default::default()
    });
    let mut tasks = tokio::task::JoinSet::new();
    for (i, pb) in pubs.into_iter().enumerate() {
        tasks.spawn(publisher::run_one(
            pb,
            i as u64,
            publishers as u64,
            plan.clone(),
            counters.clone(),
        ));
    }
    let pb = bar(total, "publish");
    let mut rtt = stats::new_hist();
    let mut last = (Instant::now(), 0u64);
    let mut rate_msg = String::new();
    while !tasks.is_empty() {
        tokio::select! {
            r = tasks.join_next() => {
                if let Some(Ok(h)) = r {
                    stats::merge(&mut rtt, &h);
                }
            }
            _ = pool.pump(Duration::from_millis(200)) => {
                let t = pool.totals();
                let done = counters.ok.load(Relaxed) + counters.failed.load(Relaxed);
                pb.set_position(done);
                if last.0.elapsed() >= Duration::from_secs(1) {
                    let per_s = (t.received - last.1) as f64 / last.0.elapsed().as_secs_f64();
                    rate_msg = format!("{:.0} deliveries/s", per_s);
                    last = (Instant::now(), t.received);
                }
                pb.set_message(format!("{} delivered, {rate_msg}{}", t.received,
                    if t.closed > 0 { format!(", {} disconnected", t.closed) } else { String::new() }));
            }
        }
    }
    pb.finish_and_clear();
    let publish_end_ns = now_ns();
    let pressure = sys::cpu_pressure();
    let ok = counters.ok.load(Relaxed);
    let failed = counters.failed.load(Relaxed);
    let late = counters.late.load(Relaxed);
    let max_late_ns = counters.max_late_ns.load(Relaxed);
    // With a tags filter only the matching subscribers are sent the publications.
    let receiving = if a.tags_filter.is_some() {
        ready.receiving.saturating_sub(ready.closed)
    } else {
        subscribed
    };
    let expected = ok * receiving;
    eprintln!("published {ok}/{total} ({failed} failed); waiting for the last deliveries");

    // Drain: until everything arrived, nothing arrived for 2 s, or the drain timeout.
    let drain_start = Instant::now();
    let mut last_seen = (Instant::now(), pool.totals().received);
    loop {
        let t = pool.totals();
        if t.received >= expected
            || drain_start.elapsed().as_secs_f64() >= a.drain_timeout
            || pool.lost_worker()
        {
            break;
        }
        if t.received != last_seen.1 {
            last_seen = (Instant::now(), t.received);
        } else if last_seen.0.elapsed() >= Duration::from_secs(2) {
            break;
        }
        pool.pump(Duration::from_millis(100)).await;
    }
    let drain_secs = drain_start.elapsed().as_secs_f64();
    let server_cpu_after = p.server_pid.and_then(sys::cpu_seconds);
    let cpu_wall = cpu_clock.elapsed().as_secs_f64();
    let bench_cpu_pct =
        100.0 * (pool.cpu_seconds() + own_cpu() - bench_cpu_before) / cpu_wall.max(1e-9);
    let server_rss_after = p.server_pid.and_then(sys::rss_kib);
    let results = pool.stop(Duration::from_secs(15)).await;
    if results.len() != p.procs {
        return Err(format!(
            "only {} of {} workers reported",
            results.len(),
            p.procs
        ));
    }
    let m = merge(&results)?;
    let first_ns = counters.first_ns.load(Relaxed).min(publish_end_ns);
    let publish_secs = (publish_end_ns - first_ns) as f64 / 1e9;
    let delivery_secs = (m.last_recv_ns.max(first_ns) - first_ns) as f64 / 1e9;
    let received = m.progress.received;
    let lost = expected.saturating_sub(received);
    let s = stats::summarize(&m.delivery);
    let arrival = stats::summarize(&m.arrival);
    let rtt_s = stats::summarize(&rtt);
    let server_cpu_pct = match (server_cpu_before, server_cpu_after) {
        (Some(b), Some(e)) => Some(100.0 * (e - b) / cpu_wall.max(1e-9)),
        _ => None,
    };
    let mut errors = m.errors.clone();
    stats::add_tallies(&mut errors, &counters.errors.get());

    let mut out = report::Human::new();
    out.line(format!(
        "fanout: {} subscribers ({} subscribed, {:?} client model, {:?}, Protobuf share {}{}), {} msg/s for {} s, {} B data, {} worker(s) × {} thread(s), {} publisher(s) via {:?}",
        c.subs, subscribed, c.client_model, c.transport, p.specs.first().map_or(0.0, |s| s.protobuf_share), mode_note(&a, receiving), a.rate, a.duration, a.payload_size, p.procs, p.threads, publishers, a.publish_via
    ));
    out.line(format!(
        "published {ok}/{total} ({failed} failed) at {:.1} msg/s, {late} sent more than {} ms late (at most {:.1} ms); publish round trip p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        ok as f64 / publish_secs.max(1e-9), crate::publisher::LATE_NS / 1_000_000, max_late_ns as f64 / 1e6, rtt_s.p50_ms, rtt_s.p99_ms, rtt_s.max_ms
    ));
    out.line(format!(
        "received {received} of {expected} expected (missing {lost} = {:.4}% after waiting {drain_secs:.1} s), {:.0} deliveries/s, {} out of order, {} disconnects",
        100.0 * lost as f64 / expected.max(1) as f64,
        received as f64 / delivery_secs.max(1e-9),
        m.out_of_order,
        m.progress.closed
    ));
    if a.delta {
        out.line(format!(
            "{} of the {received} publications received came as Fossil deltas",
            m.deltas
        ));
    }
    out.latency("delivery latency", &s);
    out.latency(
        "  of which until the bytes reached the client's socket (kernel receive timestamp)",
        &arrival,
    );
    if let Some(pid) = p.server_pid {
        out.line(format!(
            "server pid {pid}: RSS {} → {} (before set-up {}), CPU {} (publishing + drain)",
            report::kib(server_rss_before),
            report::kib(server_rss_after),
            report::kib(server_rss_start),
            server_cpu_pct.map_or("?".into(), |v| format!("{v:.0}% of one core")),
        ));
    }
    out.line(format!(
        "bench (publisher + workers): CPU {bench_cpu_pct:.0}% of one core, worker RSS {}; machine load average before the run {}, CPU pressure while publishing {}",
        report::kib(Some(m.rss_kib)),
        load.map_or("?".into(), |l| format!("{l:.2}")),
        pressure.map_or("?".into(), |p| format!("{p:.0}% (time some task waited for a CPU)"))
    ));
    out.tallies("set-up errors", &errors);
    out.tallies("connection closes", &m.closes);
    out.print();

    if let Some(path) = &c.plot {
        report::plot(
            path,
            &format!(
                "fan-out delivery latency: {} subs × {} msg/s",
                subscribed, a.rate
            ),
            &[("delivery", &m.delivery), ("arrival", &m.arrival)],
        )?;
        eprintln!("plot written to {}", path.display());
    }
    report::json_line(&crate::fields! {
        "scenario": "fanout",
        "label": c.label,
        "client_model": format!("{:?}", c.client_model).to_lowercase(),
        "transport": format!("{:?}", c.transport).to_lowercase(),
        "protobuf_share": p.specs.first().map(|s| s.protobuf_share),
        "mode": mode(&a),
        "subs": c.subs,
        "subscribed": subscribed,
        "receiving": receiving,
        "connect_failed": m.progress.failed,
        "rate": a.rate,
        "duration_s": a.duration,
        "payload_size": a.payload_size,
        "procs": p.procs,
        "threads": p.threads,
        "publishers": publishers,
        "publish_via": format!("{:?}", a.publish_via).to_lowercase(),
        "setup_s": r3(setup_secs),
        "planned": total,
        "published": ok,
        "publish_errors": failed,
        "publish_rate": r3(ok as f64 / publish_secs.max(1e-9)),
        "late": late,
        "max_late_ms": r3(max_late_ns as f64 / 1e6),
        "publish_rtt_p50_ms": r3(rtt_s.p50_ms),
        "publish_rtt_p99_ms": r3(rtt_s.p99_ms),
        "publish_rtt_max_ms": r3(rtt_s.max_ms),
        "expected": expected,
        "received": received,
        "lost": lost,
        "loss_pct": r3(100.0 * lost as f64 / expected.max(1) as f64),
        "drain_s": r3(drain_secs),
        "deliveries_per_s": r3(received as f64 / delivery_secs.max(1e-9)),
        "out_of_order": m.out_of_order,
        "deltas_received": m.deltas,
        "disconnects": m.progress.closed,
        "p50_ms": r3(s.p50_ms),
        "p90_ms": r3(s.p90_ms),
        "p99_ms": r3(s.p99_ms),
        "p999_ms": r3(s.p999_ms),
        "max_ms": r3(s.max_ms),
        "mean_ms": r3(s.mean_ms),
        // None (a dash in tables) when the client model has no kernel receive timestamps.
        "arrival_p50_ms": (arrival.count > 0).then(|| r3(arrival.p50_ms)),
        "arrival_p99_ms": (arrival.count > 0).then(|| r3(arrival.p99_ms)),
        "arrival_max_ms": (arrival.count > 0).then(|| r3(arrival.max_ms)),
        "server_pid": p.server_pid,
        "server_rss_before_kib": server_rss_before,
        "server_rss_after_kib": server_rss_after,
        "server_cpu_pct": server_cpu_pct.map(r3),
        "bench_rss_kib": m.rss_kib,
        "bench_cpu_pct": r3(bench_cpu_pct),
        "listen_drops": listen_drops,
        "loadavg": load,
        "cpu_pressure_pct": pressure,
        "errors": errors,
        "closes": m.closes,
    });
    Ok(())
}

/// The fraction of Protobuf connections asked for (`--protobuf-share`, else `--format`).
fn p_share(c: &Common) -> f64 {
    c.protobuf_share.unwrap_or(match c.format {
        crate::Format::Json => 0.0,
        crate::Format::Protobuf => 1.0,
    })
}

/// The fan-out mode's name in results: `plain`, `delta` or `tags-<fraction>`.
fn mode(a: &FanoutArgs) -> String {
    match (a.delta, a.tags_filter) {
        (true, _) => "delta".into(),
        (false, Some(f)) => format!("tags-{f}"),
        (false, None) => "plain".into(),
    }
}

fn mode_note(a: &FanoutArgs, receiving: u64) -> String {
    match (a.delta, a.tags_filter) {
        (true, _) => ", fossil deltas".into(),
        (false, Some(f)) => format!(", tags filter matching {f} of them: {receiving} receive"),
        (false, None) => String::new(),
    }
}

/// The `idle` scenario.
pub async fn idle(a: IdleArgs) -> Result<(), String> {
    let c = &a.common;
    if !(a.hold >= 0.0 && a.hold <= 3600.0) {
        return Err("--hold must be 0..3600 seconds".into());
    }
    let p = prepare(c, true, 0, a.hold + 5.0)?;
    let Some(pid) = p.server_pid else {
        return Err("idle needs the server's PID to read its memory: pass --server-pid".into());
    };
    let rss_start = sys::rss_kib(pid).ok_or_else(|| format!("cannot read /proc/{pid}/status"))?;
    let threads_start = sys::threads(pid);
    let Started {
        mut pool,
        ready,
        secs: setup_secs,
        listen_drops,
        load,
    } = start_and_connect(&p, c.subs).await?;
    // Let the server settle (allocations of the last set-ups, first timers).
    pool.pump(Duration::from_secs(1)).await;
    let rss_connected = sys::rss_kib(pid).unwrap_or(0);
    let cpu_before = sys::cpu_seconds(pid);
    let hold_start = Instant::now();
    let pb = bar((a.hold * 1000.0) as u64, "hold ms");
    let mut rss_max = rss_connected;
    while hold_start.elapsed().as_secs_f64() < a.hold {
        pool.pump(Duration::from_millis(250)).await;
        rss_max = rss_max.max(sys::rss_kib(pid).unwrap_or(0));
        let t = pool.totals();
        pb.set_position(hold_start.elapsed().as_millis() as u64);
        pb.set_message(format!(
            "{} connected, server RSS {}",
            t.connected - t.closed,
            report::kib(sys::rss_kib(pid))
        ));
        if pool.lost_worker() {
            break;
        }
    }
    pb.finish_and_clear();
    let hold_secs = hold_start.elapsed().as_secs_f64();
    let cpu_after = sys::cpu_seconds(pid);
    let pressure = sys::cpu_pressure();
    let rss_end = sys::rss_kib(pid).unwrap_or(0);
    let peak = sys::peak_rss_kib(pid);
    let threads_end = sys::threads(pid);
    let results = pool.stop(Duration::from_secs(15)).await;
    let m = merge(&results)?;
    let held = ready.connected.saturating_sub(m.progress.closed);
    let conns = ready.connected.max(1) as f64;
    let per_conn = rss_connected.saturating_sub(rss_start) as f64 / conns;
    let per_conn_end = rss_end.saturating_sub(rss_start) as f64 / conns;
    let bench_per_conn = m.rss_kib as f64 / conns;
    let cpu_pct = match (cpu_before, cpu_after) {
        (Some(b), Some(e)) => Some(100.0 * (e - b) / hold_secs.max(1e-9)),
        _ => None,
    };
    let setup = stats::summarize(&m.setup);
    let mut out = report::Human::new();
    out.line(format!(
        "idle: {} clients ({} set up, {} failed, {} still connected at the end) held {:.1} s; {} worker(s)",
        c.subs, ready.connected, m.progress.failed, held, hold_secs, p.procs
    ));
    out.line(format!(
        "server pid {pid}: RSS {} before, {} connected, {} at the end, peak {}",
        report::kib(Some(rss_start)),
        report::kib(Some(rss_connected)),
        report::kib(Some(rss_end)),
        report::kib(peak)
    ));
    out.line(format!(
        "server memory per connection: {per_conn:.2} KiB (at the end {per_conn_end:.2} KiB); threads {} → {}; CPU while idle {}",
        threads_start.map_or("?".into(), |t| t.to_string()),
        threads_end.map_or("?".into(), |t| t.to_string()),
        cpu_pct.map_or("?".into(), |v| format!("{v:.1}% of one core"))
    ));
    out.line(format!(
        "bench memory per connection: {bench_per_conn:.2} KiB (all workers {})",
        report::kib(Some(m.rss_kib))
    ));
    out.latency("set-up latency (handshake+connect+subscribe)", &setup);
    out.tallies("set-up errors", &m.errors);
    out.tallies("connection closes", &m.closes);
    out.print();
    if let Some(path) = &c.plot {
        report::plot(
            path,
            &format!("set-up latency: {} clients", c.subs),
            &[("setup", &m.setup)],
        )?;
    }
    report::json_line(&crate::fields! {
        "scenario": "idle",
        "label": c.label,
        "transport": format!("{:?}", c.transport).to_lowercase(),
        "protobuf_share": p.specs.first().map(|s| s.protobuf_share),
        "subs": c.subs,
        "connected": ready.connected,
        "connect_failed": m.progress.failed,
        "held": held,
        "hold_s": r3(hold_secs),
        "setup_s": r3(setup_secs),
        "procs": p.procs,
        "server_pid": pid,
        "server_rss_start_kib": rss_start,
        "server_rss_connected_kib": rss_connected,
        "server_rss_end_kib": rss_end,
        "server_rss_max_kib": rss_max,
        "server_rss_per_conn_kib": r3(per_conn),
        "server_rss_per_conn_end_kib": r3(per_conn_end),
        "server_cpu_pct_idle": cpu_pct.map(r3),
        "server_threads": threads_end,
        "bench_rss_kib": m.rss_kib,
        "bench_rss_per_conn_kib": r3(bench_per_conn),
        "pings": m.pings,
        "disconnects": m.progress.closed,
        "setup_p50_ms": r3(setup.p50_ms),
        "setup_p99_ms": r3(setup.p99_ms),
        "listen_drops": listen_drops,
        "loadavg": load,
        "cpu_pressure_pct": pressure,
        "errors": m.errors,
        "closes": m.closes,
    });
    Ok(())
}

/// The `connect` scenario.
pub async fn connect(a: ConnectArgs) -> Result<(), String> {
    let c = &a.common;
    let p = prepare(c, !a.no_subscribe, 0, 5.0)?;
    let Started {
        mut pool,
        ready,
        secs: wall_secs,
        listen_drops,
        load,
    } = start_and_connect(&p, c.subs).await?;
    let pressure = sys::cpu_pressure();
    let results = pool.stop(Duration::from_secs(15)).await;
    let m = merge(&results)?;
    let secs = if m.setup_end_ns > m.setup_start_ns {
        (m.setup_end_ns - m.setup_start_ns) as f64 / 1e9
    } else {
        wall_secs
    };
    let rate = ready.connected as f64 / secs.max(1e-9);
    let hs = stats::summarize(&m.handshake);
    let cn = stats::summarize(&m.connect);
    let sb = stats::summarize(&m.subscribe);
    let su = stats::summarize(&m.setup);
    let mut out = report::Human::new();
    out.line(format!(
        "connect: {} clients ({} ok, {} failed) in {:.2} s = {:.0} clients/s, concurrency {}, {} worker(s)",
        c.subs, ready.connected, m.progress.failed, secs, rate, c.concurrency, p.procs
    ));
    out.latency("websocket handshake", &hs);
    out.latency("connect command", &cn);
    if !a.no_subscribe {
        out.latency("subscribe command", &sb);
    }
    out.latency("whole set-up", &su);
    out.tallies("set-up errors", &m.errors);
    out.print();
    if let Some(path) = &c.plot {
        let mut series: Vec<(&str, &Histogram<u64>)> =
            vec![("handshake", &m.handshake), ("connect", &m.connect)];
        if !a.no_subscribe {
            series.push(("subscribe", &m.subscribe));
        }
        series.push(("whole set-up", &m.setup));
        report::plot(
            path,
            &format!(
                "connect latency: {} clients, concurrency {}",
                c.subs, c.concurrency
            ),
            &series,
        )?;
    }
    report::json_line(&crate::fields! {
        "scenario": "connect",
        "label": c.label,
        "subs": c.subs,
        "connected": ready.connected,
        "connect_failed": m.progress.failed,
        "concurrency": c.concurrency,
        "subscribe": !a.no_subscribe,
        "procs": p.procs,
        "elapsed_s": r3(secs),
        "connects_per_s": r3(rate),
        "handshake_p50_ms": r3(hs.p50_ms),
        "handshake_p99_ms": r3(hs.p99_ms),
        "connect_p50_ms": r3(cn.p50_ms),
        "connect_p99_ms": r3(cn.p99_ms),
        "subscribe_p50_ms": r3(sb.p50_ms),
        "subscribe_p99_ms": r3(sb.p99_ms),
        "p50_ms": r3(su.p50_ms),
        "p90_ms": r3(su.p90_ms),
        "p99_ms": r3(su.p99_ms),
        "p999_ms": r3(su.p999_ms),
        "max_ms": r3(su.max_ms),
        "listen_drops": listen_drops,
        "loadavg": load,
        "cpu_pressure_pct": pressure,
        "errors": m.errors,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_addresses() {
        let lo = Target::parse("ws://127.0.0.1:8000/connection/websocket").unwrap();
        assert!(parse_sources("auto", &lo, 19_000).unwrap().is_empty());
        assert_eq!(parse_sources("auto", &lo, 60_000).unwrap().len(), 3);
        let three = parse_sources("3", &lo, 1).unwrap();
        assert_eq!(three[2], "127.0.0.3".parse::<IpAddr>().unwrap());
        assert_eq!(
            parse_sources("127.0.0.5, 127.0.0.9", &lo, 1).unwrap().len(),
            2
        );
        assert!(parse_sources("none", &lo, 1_000_000).unwrap().is_empty());
        assert!(parse_sources("0", &lo, 1).is_err());
        assert!(parse_sources("300", &lo, 1).is_err());
        assert!(parse_sources("x.y", &lo, 1).is_err());
        let remote = Target::parse("ws://[::1]:8000/").unwrap();
        assert!(parse_sources("2", &remote, 1).is_err());
    }

    #[test]
    fn publisher_defaults_grow_with_rate_and_subscribers() {
        assert_eq!(default_publishers(100.0, 100), 1);
        assert_eq!(default_publishers(1000.0, 1000), 4);
        assert_eq!(default_publishers(5000.0, 1000), 20);
        assert_eq!(default_publishers(100.0, 10_000), 3);
        assert_eq!(default_publishers(1e6, 1), 32);
    }

    #[test]
    fn splits_connections_over_workers() {
        let c = Common {
            url: vec!["ws://127.0.0.1:1/connection/websocket".into()],
            token: None,
            hmac_secret: Some("s".into()),
            channel: "bench".into(),
            subs: 10_001,
            procs: Some(3),
            threads: Some(1),
            source_ips: "none".into(),
            concurrency: 100,
            connect_timeout: 1.0,
            read_buf: 4096,
            server_pid: Some(1),
            plot: None,
            label: None,
            client_model: crate::ClientModel::Fast,
            format: crate::Format::Json,
            protobuf_share: None,
            transport: crate::TransportKind::Websocket,
        };
        let p = prepare(&c, true, 1, 1.0).unwrap();
        let counts: Vec<usize> = p.specs.iter().map(|s| s.count).collect();
        assert_eq!(counts, vec![3334, 3334, 3333]);
        let firsts: Vec<usize> = p.specs.iter().map(|s| s.first).collect();
        assert_eq!(firsts, vec![0, 3334, 6668]);
        assert!(p.specs.iter().all(|s| s.concurrency == 34));

        // Several URLs: one worker per URL by default, the URLs round-robin over the workers.
        let nodes: Vec<String> = (1..=3)
            .map(|n| format!("ws://127.0.0.1:{n}/connection/websocket"))
            .collect();
        let multi = Common {
            url: nodes.clone(),
            procs: None,
            subs: 1000,
            ..c.clone()
        };
        let p = prepare(&multi, true, 1, 1.0).unwrap();
        let urls: Vec<&str> = p.specs.iter().map(|s| s.url.as_str()).collect();
        assert_eq!(urls, nodes.iter().map(String::as_str).collect::<Vec<_>>());
        let six = Common {
            procs: Some(6),
            ..multi.clone()
        };
        let p = prepare(&six, true, 1, 1.0).unwrap();
        assert_eq!(p.specs[4].url, nodes[1]);
        let too_few = Common {
            procs: Some(2),
            ..multi
        };
        assert!(prepare(&too_few, true, 1, 1.0).is_err());
    }
}
