//! Admission of new client connections: `client.connection_limit` (how many WebSocket
//! connections this node holds at once) and `client.connection_rate_limit` (how many new ones
//! it accepts per second).
//!
//! Both are checked on the WebSocket endpoint before the upgrade, as Centrifugo's `ConnLimit`
//! middleware does, and a refused request gets what Centrifugo answers: HTTP 503 Service
//! Unavailable (the SDKs treat a failed handshake as a transport error and reconnect with
//! back-off). Both limits count per node. The connection limit counts every open WebSocket
//! connection, including those that have not sent `connect` yet (Centrifugo counts only
//! connected clients; counting sockets also bounds the ones an attacker opens and never
//! authenticates). Refusals are counted in `herald_node_client_connection_limit_total`
//! (Centrifugo's `centrifugo_node_client_connection_limit`) and
//! `herald_node_client_connection_rate_limit_total` (Herald's own; Centrifugo does not count
//! them), and logged as one WARN line at most every 3 s.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Why a new connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `client.connection_limit` connections are open on this node.
    ConnectionLimit,
    /// More than `client.connection_rate_limit` connections arrived within the last second.
    RateLimit,
}

impl Refusal {
    /// The message sent in the 503 response's body and logged.
    pub fn message(self) -> &'static str {
        match self {
            Refusal::ConnectionLimit => {
                "node connection limit reached (client.connection_limit): try again later"
            }
            Refusal::RateLimit => {
                "too many new connections (client.connection_rate_limit): try again later"
            }
        }
    }
}

/// A token bucket: `rate` tokens a second, holding at most `burst`; one token per connection.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    refilled: Instant,
}

impl Bucket {
    fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// How often a refusal is logged at most (as Centrifugo throttles its warning).
const LOG_EVERY: Duration = Duration::from_secs(3);

/// The node's admission check for new connections; see the module documentation.
#[derive(Debug)]
pub struct ConnectionLimiter {
    /// Most open connections; 0 = no limit.
    limit: usize,
    /// New connections per second (burst: one second's worth); `None` = no limit.
    rate: Option<Mutex<Bucket>>,
    /// When a refusal was last logged (nanoseconds since `started`; 0 = never).
    logged_at: AtomicU64,
    started: Instant,
}

impl ConnectionLimiter {
    /// A limiter for at most `limit` open connections (0 = unlimited) and `rate` new ones a
    /// second (0 = unlimited), with a burst of `rate`: after a quiet second, `rate`
    /// connections are admitted at once, then one every `1/rate` seconds.
    pub fn new(limit: usize, rate: usize) -> ConnectionLimiter {
        let started = Instant::now();
        ConnectionLimiter {
            limit,
            rate: (rate > 0).then(|| {
                Mutex::new(Bucket {
                    tokens: rate as f64,
                    rate: rate as f64,
                    burst: rate as f64,
                    refilled: started,
                })
            }),
            logged_at: AtomicU64::new(0),
            started,
        }
    }

    /// Whether a new connection may be admitted while `open` connections are open. Takes a
    /// token from the rate limit when the connection limit allows it (so connections refused
    /// for the limit do not use up the rate).
    pub fn admit(&self, open: usize) -> Result<(), Refusal> {
        if self.limit > 0 && open >= self.limit {
            return Err(Refusal::ConnectionLimit);
        }
        if let Some(bucket) = &self.rate {
            if !crate::sync::lock(bucket).take(Instant::now()) {
                return Err(Refusal::RateLimit);
            }
        }
        Ok(())
    }

    /// Whether a refusal should be logged now: true at most once every 3 s.
    pub fn should_log(&self) -> bool {
        let now = u64::try_from(self.started.elapsed().as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        let last = self.logged_at.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= LOG_EVERY.as_nanos() as u64;
        due && self
            .logged_at
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_limits_admit_everything() {
        let l = ConnectionLimiter::new(0, 0);
        for open in [0, 1, 1_000_000] {
            assert_eq!(l.admit(open), Ok(()));
        }
    }

    #[test]
    fn the_connection_limit_counts_open_connections() {
        let l = ConnectionLimiter::new(50, 0);
        assert_eq!(l.admit(49), Ok(()));
        assert_eq!(l.admit(50), Err(Refusal::ConnectionLimit));
        assert_eq!(l.admit(51), Err(Refusal::ConnectionLimit));
        assert_eq!(l.admit(49), Ok(()));
    }

    #[test]
    fn the_rate_limit_admits_a_burst_then_refills_at_the_rate() {
        let start = Instant::now();
        let mut b = Bucket {
            tokens: 5.0,
            rate: 5.0,
            burst: 5.0,
            refilled: start,
        };
        let admitted = (0..60).filter(|_| b.take(start)).count();
        assert_eq!(admitted, 5);
        // 0.2 s later one more token; a whole second later five, never more than the burst.
        assert!(b.take(start + Duration::from_millis(200)));
        assert!(!b.take(start + Duration::from_millis(200)));
        let later = start + Duration::from_secs(10);
        assert_eq!((0..60).filter(|_| b.take(later)).count(), 5);
    }

    #[test]
    fn refusals_for_the_limit_do_not_use_up_the_rate() {
        let l = ConnectionLimiter::new(1, 2);
        for _ in 0..10 {
            assert_eq!(l.admit(1), Err(Refusal::ConnectionLimit));
        }
        assert_eq!(l.admit(0), Ok(()));
        assert_eq!(l.admit(0), Ok(()));
        assert_eq!(l.admit(0), Err(Refusal::RateLimit));
    }

    #[test]
    fn refusals_are_logged_at_most_every_three_seconds() {
        let l = ConnectionLimiter::new(1, 0);
        assert!(l.should_log());
        assert!(!l.should_log());
        assert!(!l.should_log());
    }
}
