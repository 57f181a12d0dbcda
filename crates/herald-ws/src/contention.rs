//! [`sample`]: how much of its runnable time the calling thread spent waiting for a core.
//!
//! Why: write pacing ([`crate::Pacer`]) trades latency for fewer write system calls. Whether
//! that trade pays depends on who else wants the machine's cores. On a server of its own, each
//! write costs only the server's time and the budget alone decides. When the cores are
//! overcommitted — the server's readers share its machine, or the server is overloaded — every
//! write also wakes a reader that has to wait for a core, and fewer, fuller writes lower
//! everyone's latency (bench/RESULTS.md, issue 25: at 10,000 × 100/s with co-located typical
//! clients on two cores, a p99 of 278 ms instead of 898).
//!
//! The kernel keeps, per thread, the time it ran and the time it waited runnable on a run queue
//! (`/proc/thread-self/schedstat`, the scheduler statistics every Linux kernel with
//! `CONFIG_SCHED_INFO` has). Unlike the machine-wide CPU pressure (`/proc/pressure/cpu`),
//! which counts any task that waits, this counts only the server's own waits: a background job
//! at nice 19 barely delays a nice-0 server thread, and does not count.

use std::cell::Cell;

/// Shorter spans than this (run + wait) since the last sample say too little to act on.
const MIN_SPAN_NS: u64 = 5_000_000;

thread_local! {
    /// This thread's (run, wait) ns at its previous sample; (0, 0) before the first.
    static LAST: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

/// The share (0 to 1) of the time the calling thread was runnable since its previous sample
/// that it spent waiting for a core. `None` on the first sample of a thread, after less than
/// 5 ms of runnable time, or where the kernel does not say (not Linux, no schedstat).
pub fn sample() -> Option<f64> {
    let (run, wait) = read()?;
    let (run0, wait0) = LAST.with(|last| last.replace((run, wait)));
    if run0 == 0 && wait0 == 0 {
        return None;
    }
    let ran = run.saturating_sub(run0);
    let waited = wait.saturating_sub(wait0);
    let span = ran + waited;
    (span >= MIN_SPAN_NS).then(|| waited as f64 / span as f64)
}

#[cfg(target_os = "linux")]
fn read() -> Option<(u64, u64)> {
    // A few dozen bytes from procfs, read at most once per pacing period (250 ms): no buffer
    // worth keeping.
    parse(&std::fs::read_to_string("/proc/thread-self/schedstat").ok()?)
}

#[cfg(not(target_os = "linux"))]
fn read() -> Option<(u64, u64)> {
    None
}

/// `schedstat`'s first two fields: ns on a core, ns waiting on a run queue.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn parse(text: &str) -> Option<(u64, u64)> {
    let mut fields = text.split_ascii_whitespace();
    let run = fields.next()?.parse().ok()?;
    let wait = fields.next()?.parse().ok()?;
    Some((run, wait))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_run_and_wait_time() {
        assert_eq!(parse("123456 7890 42\n"), Some((123_456, 7_890)));
        assert_eq!(parse("123456\n"), None);
        assert_eq!(parse("x y z"), None);
    }

    /// A thread that burns 30 ms of CPU gets a share between 0 and 1 on its second sample
    /// (none on its first, which only sets the baseline).
    #[cfg(target_os = "linux")]
    #[test]
    fn a_busy_thread_gets_a_share_on_its_second_sample() {
        std::thread::spawn(|| {
            assert_eq!(sample(), None, "the first sample is the baseline");
            let start = std::time::Instant::now();
            let mut x = 0u64;
            while start.elapsed() < std::time::Duration::from_millis(30) {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
            let share = sample().expect("30 ms of running is enough to say");
            assert!((0.0..=1.0).contains(&share), "{share}");
        })
        .join()
        .expect("the sampling thread");
    }
}
