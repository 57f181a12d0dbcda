//! What protects the admin UI's log-in and sessions (one [`AdminGuard`] per node):
//!
//! * **Failed log-ins are rate limited**, per client address and globally, so that the
//!   password cannot be guessed at network speed. An address gets [`FREE_FAILURES`] wrong
//!   passwords; after that it is locked out for 1 s, then 2 s, 4 s… (doubling with each further
//!   failure, up to [`MAX_LOCKOUT`]). All addresses together get [`GLOBAL_FAILURES_PER_SECOND`]
//!   failures a second. A locked-out client (or any client while the global budget is spent)
//!   gets HTTP 429 with `Retry-After`, and its password is not even checked. A right password
//!   clears its address's failures. IPv6 addresses count by their /64 network, which one
//!   client usually holds whole. The table of addresses is capped at [`MAX_ADDRESSES`] (the
//!   oldest is forgotten first), so a spray of addresses cannot grow it.
//! * **Failures are logged as one summary per [`SUMMARY_INTERVAL`]** ("admin login: 312 failed
//!   attempts from 4 addresses in the last 10 s…"), not a line per guess.
//! * **Logged-out sessions are refused** until they expire: their ids are kept in a bounded set
//!   ([`MAX_REVOKED`]); should it ever fill with sessions that have not expired yet, every
//!   session issued until then is refused instead (all admins log in again), so a log-out is
//!   never forgotten while the node runs. The set is in memory: a restart forgets it.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::sync::lock;

/// Wrong passwords an address may send before it is locked out.
pub const FREE_FAILURES: u32 = 5;
/// The first lockout; each further failure doubles it.
pub const FIRST_LOCKOUT: Duration = Duration::from_secs(1);
/// The longest lockout.
pub const MAX_LOCKOUT: Duration = Duration::from_secs(15 * 60);
/// An address's failures are forgotten this long after its last one (when not locked out).
pub const FORGET_AFTER: Duration = Duration::from_secs(60 * 60);
/// Failed log-ins a second from all addresses together (also the burst allowed).
pub const GLOBAL_FAILURES_PER_SECOND: u32 = 20;
/// Most addresses whose failures are remembered.
pub const MAX_ADDRESSES: usize = 10_000;
/// How often failed log-ins are summarised in the log.
pub const SUMMARY_INTERVAL: Duration = Duration::from_secs(10);
/// Most logged-out sessions remembered before all sessions are refused instead.
pub const MAX_REVOKED: usize = 10_000;

/// Who a failure counts against: an IPv4 address, or an IPv6 /64 network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey(u128);

impl ClientKey {
    /// The key of `addr` (IPv4-mapped IPv6 addresses count as their IPv4 address).
    pub fn of(addr: IpAddr) -> ClientKey {
        match addr {
            IpAddr::V4(v4) => ClientKey(u128::from(u32::from(v4))),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientKey(u128::from(u32::from(v4))),
                // The /64 network, tagged so that it cannot equal an IPv4 key.
                None => ClientKey((u128::from(v6) & !0xffff_ffff_ffff_ffff) | 1),
            },
        }
    }
}

/// One address's recent failures.
#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    locked_until: Option<Instant>,
    last: Instant,
}

impl Failures {
    fn forgettable(&self, now: Instant) -> bool {
        self.locked_until.is_none_or(|until| until <= now)
            && now.duration_since(self.last) >= FORGET_AFTER
    }
}

/// What happened to log-ins since the current summary window opened.
#[derive(Debug)]
struct Window {
    started: Instant,
    failed: u64,
    refused: u64,
    addresses: HashSet<ClientKey>,
    summary_claimed: bool,
}

/// The log-in limiter's state (see the module docs).
#[derive(Debug)]
struct Logins {
    by_address: HashMap<ClientKey, Failures>,
    /// Failures the global budget still allows now (refilled continuously).
    budget: f64,
    refilled: Instant,
    window: Option<Window>,
}

/// Sessions logged out before they expired.
#[derive(Debug, Default)]
struct Revoked {
    /// Session id → its `exp` (unix seconds).
    ids: HashMap<String, u64>,
    /// Sessions issued at or before this unix second are refused (0: none).
    issued_until: u64,
}

/// The admin UI's log-in limiter and session revocations, kept by the node.
#[derive(Debug)]
pub struct AdminGuard {
    logins: Mutex<Logins>,
    revoked: Mutex<Revoked>,
}

impl Default for AdminGuard {
    fn default() -> Self {
        AdminGuard::new()
    }
}

impl AdminGuard {
    /// A guard with no failures and no revocations.
    pub fn new() -> AdminGuard {
        AdminGuard {
            logins: Mutex::new(Logins {
                by_address: HashMap::new(),
                budget: f64::from(GLOBAL_FAILURES_PER_SECOND),
                refilled: Instant::now(),
                window: None,
            }),
            revoked: Mutex::new(Revoked::default()),
        }
    }

    /// Whether a log-in from `addr` may have its password checked at `now`: `Err` with how
    /// long it must wait when its address is locked out or the global budget is spent.
    ///
    /// An attempt let through is counted as failed at once (and the address locked out when it
    /// reaches [`FREE_FAILURES`]), so that guesses sent in parallel cannot all pass before the
    /// first is known to be wrong; [`AdminGuard::login_succeeded`] takes it back.
    pub fn begin_login(&self, addr: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut logins = lock(&self.logins);
        logins.refill(now);
        let key = ClientKey::of(addr);
        let wait = match logins.by_address.get(&key).and_then(|f| f.locked_until) {
            Some(until) if until > now => Some(until - now),
            _ if logins.budget < 1.0 => Some(Duration::from_secs_f64(
                (1.0 - logins.budget) / f64::from(GLOBAL_FAILURES_PER_SECOND),
            )),
            _ => None,
        };
        if let Some(wait) = wait {
            let window = logins.window(now);
            window.refused += 1;
            window.note(key);
            return Err(wait);
        }
        logins.budget = (logins.budget - 1.0).max(0.0);
        if !logins.by_address.contains_key(&key) && logins.by_address.len() >= MAX_ADDRESSES {
            logins.make_room(now);
        }
        let failures = logins.by_address.entry(key).or_insert(Failures {
            count: 0,
            locked_until: None,
            last: now,
        });
        failures.count = failures.count.saturating_add(1);
        failures.last = now;
        if failures.count >= FREE_FAILURES {
            failures.locked_until = Some(now + lockout(failures.count));
        }
        let window = logins.window(now);
        window.failed += 1;
        window.note(key);
        Ok(())
    }

    /// Records a right password from `addr` (let through by [`AdminGuard::begin_login`]): its
    /// failures are forgotten.
    pub fn login_succeeded(&self, addr: IpAddr) {
        let mut logins = lock(&self.logins);
        let key = ClientKey::of(addr);
        let only_attempt = logins.by_address.remove(&key).is_some_and(|f| f.count == 1);
        if let Some(window) = &mut logins.window {
            window.failed = window.failed.saturating_sub(1);
            if only_attempt {
                // This attempt was its address's only one: no failure came from there.
                window.addresses.remove(&key);
            }
        }
    }

    /// True once per summary window: the caller then logs [`AdminGuard::take_summary`] after
    /// [`SUMMARY_INTERVAL`].
    pub fn claim_summary(&self) -> bool {
        let mut logins = lock(&self.logins);
        match &mut logins.window {
            Some(window) if !window.summary_claimed => {
                window.summary_claimed = true;
                true
            }
            _ => false,
        }
    }

    /// Closes the summary window open at `now`, if any, and says what happened in it.
    pub fn take_summary(&self, now: Instant) -> Option<String> {
        let window = lock(&self.logins).window.take()?;
        if window.failed == 0 && window.refused == 0 {
            return None; // only right passwords
        }
        let addresses = window.addresses.len();
        let mut text = format!(
            "admin login: {} failed attempt{} from {}{} address{} in the last {} s",
            window.failed,
            if window.failed == 1 { "" } else { "s" },
            if addresses >= MAX_ADDRESSES {
                "at least "
            } else {
                ""
            },
            addresses,
            if addresses == 1 { "" } else { "es" },
            now.duration_since(window.started).as_secs().max(1),
        );
        if window.refused > 0 {
            text.push_str(&format!(
                "; {} more refused with 429 (locked out or over the global limit) without \
                 checking the password",
                window.refused
            ));
        }
        Some(text)
    }

    /// How many addresses have failures remembered.
    pub fn addresses_remembered(&self) -> usize {
        lock(&self.logins).by_address.len()
    }

    /// Logs out session `id`, which expires at unix second `exp`; `now` in unix seconds.
    pub fn revoke_session(&self, id: &str, exp: u64, now: u64) {
        let mut revoked = lock(&self.revoked);
        if revoked.ids.len() >= MAX_REVOKED {
            revoked.ids.retain(|_, exp| *exp > now);
        }
        if revoked.ids.len() >= MAX_REVOKED {
            // Full of live sessions: refuse every session issued so far (this one included)
            // rather than forget a log-out.
            revoked.ids.clear();
            revoked.issued_until = now;
            tracing::warn!(
                "admin sessions: {MAX_REVOKED} log-outs remembered; every session issued until \
                 now is refused from now on (admins log in again)"
            );
            return;
        }
        revoked.ids.insert(id.to_owned(), exp);
    }

    /// Whether session `id`, issued at unix second `iat`, was logged out.
    pub fn session_revoked(&self, id: &str, iat: u64) -> bool {
        let revoked = lock(&self.revoked);
        (revoked.issued_until > 0 && iat <= revoked.issued_until) || revoked.ids.contains_key(id)
    }
}

/// The lockout after an address's `count`-th failure (`count` ≥ [`FREE_FAILURES`]).
fn lockout(count: u32) -> Duration {
    let doublings = count.saturating_sub(FREE_FAILURES).min(20);
    (FIRST_LOCKOUT * 2u32.pow(doublings)).min(MAX_LOCKOUT)
}

impl Logins {
    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.refilled = self.refilled.max(now);
        let max = f64::from(GLOBAL_FAILURES_PER_SECOND);
        self.budget = (self.budget + elapsed * max).min(max);
    }

    /// Forgets what may be forgotten, and if the table is still full, its oldest entry.
    fn make_room(&mut self, now: Instant) {
        self.by_address.retain(|_, f| !f.forgettable(now));
        if self.by_address.len() >= MAX_ADDRESSES {
            if let Some(oldest) = self
                .by_address
                .iter()
                .min_by_key(|(_, f)| f.last)
                .map(|(key, _)| *key)
            {
                self.by_address.remove(&oldest);
            }
        }
    }

    /// The summary window, opened at `now` if none is.
    fn window(&mut self, now: Instant) -> &mut Window {
        self.window.get_or_insert_with(|| Window {
            started: now,
            failed: 0,
            refused: 0,
            addresses: HashSet::new(),
            summary_claimed: false,
        })
    }
}

impl Window {
    fn note(&mut self, key: ClientKey) {
        if self.addresses.len() < MAX_ADDRESSES {
            self.addresses.insert(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn v4(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))
    }

    #[test]
    fn an_address_is_locked_out_after_five_failures_for_doubling_times() {
        let guard = AdminGuard::new();
        let t0 = Instant::now();
        let a = v4(1);
        for _ in 0..FREE_FAILURES {
            assert_eq!(guard.begin_login(a, t0), Ok(()));
        }
        // Locked for 1 s; another address is not.
        assert_eq!(guard.begin_login(a, t0), Err(Duration::from_secs(1)));
        assert_eq!(guard.begin_login(v4(2), t0), Ok(()));
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(guard.begin_login(a, t1), Ok(()));
        assert_eq!(guard.begin_login(a, t1), Err(Duration::from_secs(2)));
        let t2 = t1 + Duration::from_secs(2);
        assert_eq!(guard.begin_login(a, t2), Ok(()));
        assert_eq!(guard.begin_login(a, t2), Err(Duration::from_secs(4)));
        // A right password clears it.
        guard.login_succeeded(a);
        assert_eq!(guard.begin_login(a, t2), Ok(()));
        // A right password before the lockout clears the failures before it.
        let b = v4(3);
        for _ in 0..FREE_FAILURES - 1 {
            assert_eq!(guard.begin_login(b, t2), Ok(()));
        }
        assert_eq!(guard.begin_login(b, t2), Ok(()));
        guard.login_succeeded(b);
        assert_eq!(guard.begin_login(b, t2), Ok(()));
        assert_eq!(lockout(100), MAX_LOCKOUT);
    }

    #[test]
    fn the_global_budget_limits_failures_from_all_addresses() {
        let guard = AdminGuard::new();
        let t0 = Instant::now() + Duration::from_secs(1);
        for n in 0..GLOBAL_FAILURES_PER_SECOND {
            assert_eq!(guard.begin_login(v4(n), t0), Ok(()), "{n}");
        }
        let wait = guard.begin_login(v4(1000), t0).expect_err("budget spent");
        assert!(wait <= Duration::from_millis(50), "{wait:?}");
        // It refills at the budget's rate.
        assert_eq!(
            guard.begin_login(v4(1000), t0 + Duration::from_millis(60)),
            Ok(())
        );
    }

    #[test]
    fn the_address_table_is_capped() {
        let guard = AdminGuard::new();
        let mut now = Instant::now();
        for n in 0..(MAX_ADDRESSES as u32 + 500) {
            now += Duration::from_millis(60); // within the global budget
            assert_eq!(guard.begin_login(v4(n), now), Ok(()));
        }
        assert_eq!(guard.addresses_remembered(), MAX_ADDRESSES);
        // The oldest went first: the newest are still counted.
        let newest = v4(MAX_ADDRESSES as u32 + 499);
        for _ in 1..FREE_FAILURES {
            assert_eq!(guard.begin_login(newest, now), Ok(()));
        }
        assert!(guard.begin_login(newest, now).is_err());
    }

    #[test]
    fn ipv6_counts_by_its_64_network() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(ClientKey::of(a), ClientKey::of(b));
        assert_ne!(ClientKey::of(a), ClientKey::of(c));
        let mapped = IpAddr::V6(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped());
        assert_eq!(ClientKey::of(mapped), ClientKey::of(v4(1)));
        assert_ne!(
            ClientKey::of(IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
            ClientKey::of(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
        );
    }

    #[test]
    fn failures_are_summarised_once_per_window() {
        let guard = AdminGuard::new();
        let t0 = Instant::now();
        assert!(!guard.claim_summary());
        for n in 0..12 {
            assert_eq!(guard.begin_login(v4(n % 4), t0), Ok(()));
        }
        assert!(guard.claim_summary());
        assert!(!guard.claim_summary());
        let text = guard
            .take_summary(t0 + SUMMARY_INTERVAL)
            .expect("a summary");
        assert_eq!(
            text,
            "admin login: 12 failed attempts from 4 addresses in the last 10 s"
        );
        assert_eq!(guard.take_summary(t0 + SUMMARY_INTERVAL), None);
        // A window with only right passwords says nothing.
        assert_eq!(guard.begin_login(v4(20), t0), Ok(()));
        guard.login_succeeded(v4(20));
        assert!(guard.claim_summary());
        assert_eq!(guard.take_summary(t0 + SUMMARY_INTERVAL), None);
        // Refusals are counted too.
        let a = v4(9);
        for _ in 0..FREE_FAILURES + 3 {
            let _ = guard.begin_login(a, t0);
        }
        // A right password is no failure.
        assert_eq!(guard.begin_login(v4(10), t0), Ok(()));
        guard.login_succeeded(v4(10));
        let text = guard
            .take_summary(t0 + SUMMARY_INTERVAL)
            .expect("a summary");
        assert!(
            text.starts_with("admin login: 5 failed attempts from 1 address in the last")
                && text.contains("; 3 more refused with 429"),
            "{text}"
        );
    }

    #[test]
    fn logged_out_sessions_stay_refused_even_when_the_set_is_full() {
        let guard = AdminGuard::new();
        guard.revoke_session("a", 2_000, 1_000);
        assert!(guard.session_revoked("a", 900));
        assert!(!guard.session_revoked("b", 900));
        assert!(!guard.session_revoked("b", 0), "no iat is not a log-out");
        for n in 0..MAX_REVOKED {
            guard.revoke_session(&format!("s{n}"), 5_000, 1_000);
        }
        // Full of live sessions: everything issued until now is refused, later ones are not.
        assert!(guard.session_revoked("a", 900));
        assert!(guard.session_revoked("unrelated", 1_000));
        assert!(!guard.session_revoked("new", 1_001));
        // Expired entries make room first.
        let guard = AdminGuard::new();
        for n in 0..MAX_REVOKED {
            guard.revoke_session(&format!("s{n}"), 1_500, 1_000);
        }
        guard.revoke_session("late", 9_000, 2_000);
        assert!(guard.session_revoked("late", 1_900));
        assert!(!guard.session_revoked("other", 1_900));
    }
}
