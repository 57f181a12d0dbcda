//! The hostile-client suite: each test is an attack on the real `herald` binary, with an
//! assertion on what the server does to the attacker (a close code, an HTTP status, a timeout)
//! and on what it costs the server (its resident memory), while a well-behaved client on the
//! same server keeps being served.
//!
//! One module per front (see the `mod` lines below). Shared helpers live
//! here; the server process and the WebSocket clients are the other suites' (`../common`).

#[path = "../common/mod.rs"]
mod common;

mod flood;
mod http;
mod limits;
mod replies;
mod tls;

use std::time::Duration;

/// The resident set size of process `pid`, in KiB (`VmRSS` of `/proc/PID/status`).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

/// The highest RSS (KiB) of `pid` sampled every 50 ms while `work` runs, and `work`'s output.
pub async fn peak_rss_during<F: std::future::Future>(pid: u32, work: F) -> (u64, F::Output) {
    let mut peak = rss_kib(pid);
    tokio::pin!(work);
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tokio::select! {
            out = &mut work => return (peak.max(rss_kib(pid)), out),
            _ = tick.tick() => peak = peak.max(rss_kib(pid)),
        }
    }
}

/// Held by each CPU-heavy attack while it runs: the tests of this suite run in parallel, and
/// on a small machine two floods at once would measure the machine, not the server. What an
/// attack costs the server (its RSS) is measured per server process, so it needs no lock.
static ATTACKS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Waits until no other attack runs, and holds the turn until the guard is dropped.
pub async fn one_attack_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    ATTACKS.lock().await
}
