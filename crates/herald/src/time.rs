//! Wall-clock time as the protocol and tokens count it: whole Unix seconds (JWT `exp`, the
//! server API's `expire_at`, admin sessions) and Unix milliseconds (what dashboards show).
//!
//! One place, so that every part of the server reads the same clock the same way; a clock set
//! before 1970 reads as 0 rather than failing, which makes every token look expired.

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix time in seconds.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Unix time in milliseconds.
pub fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_and_milliseconds_read_the_same_clock() {
        let (s, ms) = (unix_now(), unix_now_ms());
        // After 2020-01-01, and the two agree to within a second of each other.
        assert!(s > 1_577_836_800, "{s}");
        assert!(ms / 1000 >= s && ms / 1000 <= s + 1, "{s} vs {ms}");
    }
}
