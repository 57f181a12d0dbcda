//! Protection of the HTTP listener against clients that hold its resources without finishing
//! their requests, and against running out of file descriptors:
//!
//! * [`TimedBody`]: a request body with a read deadline (`http_server.body_read_timeout`), so
//!   that a client sending its body a byte a second cannot keep a connection (and its file
//!   descriptor) for as long as it likes; the handlers answer such a request with HTTP 408.
//! * [`RequestGate`]: a cap on the requests whose body is being read before they are
//!   authorized (`http_server.unauthenticated_request_limit`): the admin log-in and the demo
//!   sign-in read a body from anyone; past the cap they get HTTP 503 with `Retry-After`.
//! * [`AcceptBackoff`]: what the accept loop does when `accept()` fails (EMFILE, ENFILE,
//!   ENOMEM): wait 10 ms doubling to 1 s between tries, so that it neither spins a core on a
//!   listener that stays readable nor writes a log line per try.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use http::header::{self, HeaderValue};
use hyper::body::{Body, Frame, SizeHint};

use crate::server::{HttpResponse, json_error};

/// Why reading a [`TimedBody`] failed.
#[derive(Debug)]
pub enum BodyError {
    /// The body did not arrive within the deadline (the configured duration).
    TimedOut(Duration),
    /// The connection failed while reading.
    Read(Box<dyn std::error::Error + Send + Sync>),
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::TimedOut(limit) => write!(
                f,
                "the request body did not arrive within {} (http_server.body_read_timeout)",
                crate::config::format_duration(*limit)
            ),
            BodyError::Read(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for BodyError {}

/// The read deadline of `error` when it (or what it wraps, as [`http_body_util::Limited`] boxes
/// it) is a [`BodyError::TimedOut`].
pub fn timed_out(error: &(dyn std::error::Error + 'static)) -> Option<Duration> {
    match error.downcast_ref::<BodyError>() {
        Some(BodyError::TimedOut(limit)) => Some(*limit),
        _ => None,
    }
}

/// A request body that fails with [`BodyError::TimedOut`] when it is not complete by a
/// deadline set when the request was routed (its headers read).
pub struct TimedBody<B> {
    inner: B,
    deadline: Pin<Box<tokio::time::Sleep>>,
    limit: Duration,
    done: bool,
}

impl<B> TimedBody<B> {
    /// Wraps `inner`, which must be read completely within `limit` from now.
    pub fn new(inner: B, limit: Duration) -> TimedBody<B> {
        TimedBody {
            inner,
            deadline: Box::pin(tokio::time::sleep(limit)),
            limit,
            done: false,
        }
    }
}

impl<B> Body for TimedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(None) => {
                this.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(frame))),
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(BodyError::Read(e.into())))),
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    this.done = true;
                    Poll::Ready(Some(Err(BodyError::TimedOut(this.limit))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// HTTP 408 with a JSON body for a request whose body was too slow; the connection is closed
/// after it (the rest of the body is never read).
pub fn body_timeout_response(limit: Duration) -> HttpResponse {
    let mut response = json_error(
        StatusCode::REQUEST_TIMEOUT,
        &BodyError::TimedOut(limit).to_string(),
    );
    close_after(&mut response);
    response
}

/// Marks `response` to close its connection once sent (hyper then stops reading it).
pub fn close_after(response: &mut HttpResponse) {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
}

/// Counts the requests being read before they are authorized, up to a limit
/// (`http_server.unauthenticated_request_limit`; 0 = no limit).
#[derive(Debug)]
pub struct RequestGate {
    limit: usize,
    inside: AtomicUsize,
}

/// A place in a [`RequestGate`], given back when dropped.
#[derive(Debug)]
pub struct GatePass<'a> {
    gate: &'a RequestGate,
}

impl Drop for GatePass<'_> {
    fn drop(&mut self) {
        self.gate.inside.fetch_sub(1, Ordering::AcqRel);
    }
}

impl RequestGate {
    /// A gate letting `limit` requests in at once (0 = any number).
    pub fn new(limit: usize) -> RequestGate {
        RequestGate {
            limit,
            inside: AtomicUsize::new(0),
        }
    }

    /// A place for one more request, or `None` when the gate is full.
    pub fn try_enter(&self) -> Option<GatePass<'_>> {
        let entered = self
            .inside
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (self.limit == 0 || n < self.limit).then_some(n + 1)
            });
        entered.ok().map(|_| GatePass { gate: self })
    }

    /// How many requests are inside now.
    pub fn inside(&self) -> usize {
        self.inside.load(Ordering::Acquire)
    }

    /// HTTP 503 with `Retry-After` and a JSON body, for a request the full gate turned away.
    pub fn full_response(&self) -> HttpResponse {
        let mut response = json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!(
                "too many unauthenticated requests in progress ({}, \
                 http_server.unauthenticated_request_limit): retry in a second",
                self.limit
            ),
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        close_after(&mut response);
        response
    }
}

/// First wait after a failed `accept()`.
pub const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
/// Longest wait between tries while `accept()` keeps failing.
pub const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// While an episode of failures lasts, a reminder with the count is logged this often.
const ACCEPT_REMINDER: Duration = Duration::from_secs(60);

/// The accept loop's state across failures of `accept()`. An *episode* runs from the first
/// failure to the next success: it logs one warning when it starts (with the cause and what to
/// do), a reminder with the count every [`ACCEPT_REMINDER`] while it lasts, and one line with
/// the count when it ends.
#[derive(Debug, Default)]
pub struct AcceptBackoff {
    /// Failures in the current episode (0: none is going on).
    failures: u64,
    delay: Duration,
    started: Option<Instant>,
    last_log: Option<Instant>,
}

/// What the accept loop should log after a failure or success (kept apart from the logging
/// itself so that tests can check how often it logs).
#[derive(Debug, PartialEq, Eq)]
pub enum AcceptLog {
    /// Nothing.
    Quiet,
    /// An episode starts.
    Started,
    /// An episode is still going on: this many failures so far.
    StillFailing(u64),
    /// An episode ended after this many failures.
    Recovered(u64),
}

impl AcceptBackoff {
    /// Records a failure at `now`: how long to wait before the next try, and what to log.
    pub fn failed(&mut self, now: Instant) -> (Duration, AcceptLog) {
        self.failures += 1;
        self.delay = if self.failures == 1 {
            ACCEPT_BACKOFF_MIN
        } else {
            (self.delay * 2).min(ACCEPT_BACKOFF_MAX)
        };
        let log = match self.last_log {
            None => {
                self.started = Some(now);
                self.last_log = Some(now);
                AcceptLog::Started
            }
            Some(at) if now.duration_since(at) >= ACCEPT_REMINDER => {
                self.last_log = Some(now);
                AcceptLog::StillFailing(self.failures)
            }
            Some(_) => AcceptLog::Quiet,
        };
        (self.delay, log)
    }

    /// Records a success: ends the episode, if one was going on.
    pub fn succeeded(&mut self) -> AcceptLog {
        if self.failures == 0 {
            return AcceptLog::Quiet;
        }
        let failures = std::mem::take(&mut self.failures);
        *self = AcceptBackoff::default();
        AcceptLog::Recovered(failures)
    }

    /// When the current episode started.
    pub fn episode_started(&self) -> Option<Instant> {
        self.started
    }
}

/// Whether an `accept()` error means the process or system is out of a resource (file
/// descriptors, memory, buffers), rather than a failure of the one connection being accepted.
pub fn out_of_resources(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::ENOBUFS)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn accept_backoff_doubles_to_a_second_and_logs_once_per_episode() {
        let mut b = AcceptBackoff::default();
        let t0 = Instant::now();
        let mut delays = Vec::new();
        let mut logs = Vec::new();
        for i in 0..1000u32 {
            let (delay, log) = b.failed(t0 + Duration::from_millis(u64::from(i)));
            delays.push(delay);
            if log != AcceptLog::Quiet {
                logs.push(log);
            }
        }
        assert_eq!(delays[0], Duration::from_millis(10));
        assert_eq!(delays[1], Duration::from_millis(20));
        assert_eq!(delays[6], Duration::from_millis(640));
        assert!(delays[7..].iter().all(|d| *d == ACCEPT_BACKOFF_MAX));
        assert_eq!(logs, vec![AcceptLog::Started]);
        // A minute later, a reminder with the count.
        let (_, log) = b.failed(t0 + Duration::from_secs(61));
        assert_eq!(log, AcceptLog::StillFailing(1001));
        assert_eq!(b.succeeded(), AcceptLog::Recovered(1001));
        assert_eq!(b.succeeded(), AcceptLog::Quiet);
        // A new episode starts from the shortest wait and logs again.
        assert_eq!(
            b.failed(t0 + Duration::from_secs(62)),
            (ACCEPT_BACKOFF_MIN, AcceptLog::Started)
        );
    }

    #[test]
    fn the_gate_lets_in_up_to_its_limit() {
        let gate = RequestGate::new(2);
        let a = gate.try_enter().expect("first");
        let b = gate.try_enter().expect("second");
        assert!(gate.try_enter().is_none());
        drop(a);
        assert_eq!(gate.inside(), 1);
        let c = gate.try_enter().expect("a freed place");
        drop((b, c));
        assert_eq!(gate.inside(), 0);
        let open = RequestGate::new(0);
        let passes: Vec<_> = (0..1000)
            .map(|_| open.try_enter().expect("no limit"))
            .collect();
        assert_eq!(open.inside(), 1000);
        drop(passes);
        let response = gate.full_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    }

    /// A body that never ends.
    struct Endless;

    impl Body for Endless {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Pending
        }
    }

    #[tokio::test]
    async fn a_body_that_does_not_end_in_time_fails_with_the_timeout() {
        let limit = Duration::from_millis(200);
        let started = Instant::now();
        let body = http_body_util::Limited::new(TimedBody::new(Endless, limit), 1024);
        let error = tokio::time::timeout(Duration::from_secs(5), body.collect())
            .await
            .expect("the deadline ends the read")
            .expect_err("a timeout");
        assert_eq!(timed_out(error.as_ref()), Some(limit));
        assert!(started.elapsed() >= limit, "{:?}", started.elapsed());
        // A complete body is read as it is.
        let full = TimedBody::new(http_body_util::Full::new(Bytes::from("{}")), limit);
        assert_eq!(full.collect().await.expect("read").to_bytes(), "{}");
    }
}
