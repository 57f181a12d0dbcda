//! [`PackedInstant`]: an optional point in time in 8 bytes.

use std::sync::OnceLock;
use std::time::Duration;

use tokio::time::Instant;

/// An `Option<tokio::time::Instant>` in 8 bytes instead of 16.
///
/// Every connection keeps several optional timestamps (last write, write hold, stall, expiry),
/// and each of them costs every idle connection; packed, they also keep a connection's task
/// within a smaller allocation. The value is signed nanoseconds from a reference instant taken
/// on first use, so it keeps full precision and covers ±292 years around it: instants taken
/// before the reference (another runtime's paused clock in tests, say) are negative, not
/// clamped. Instants further out than that are clamped to the range's end, which in practice
/// means "never".
///
/// Ordered as `Option<Instant>` is: none first, then by time.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PackedInstant(i64);

/// The reference instant: the first one packed.
fn reference() -> std::time::Instant {
    static REFERENCE: OnceLock<std::time::Instant> = OnceLock::new();
    *REFERENCE.get_or_init(std::time::Instant::now)
}

/// Nanoseconds of `d`, clamped to what an `i64` holds.
fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

impl PackedInstant {
    /// No instant (`None`).
    pub const NONE: PackedInstant = PackedInstant(i64::MIN);

    /// Packs `at`.
    pub fn new(at: Option<Instant>) -> PackedInstant {
        let Some(at) = at else {
            return PackedInstant::NONE;
        };
        let at = at.into_std();
        let reference = reference();
        let offset = match at.checked_duration_since(reference) {
            Some(after) => nanos(after),
            // `i64::MIN` is `NONE`: the earliest instant is one nanosecond later.
            None => nanos(reference.duration_since(at))
                .saturating_neg()
                .max(i64::MIN + 1),
        };
        PackedInstant(offset)
    }

    /// The instant, if any.
    pub fn get(self) -> Option<Instant> {
        if self == PackedInstant::NONE {
            return None;
        }
        let reference = reference();
        let offset = Duration::from_nanos(self.0.unsigned_abs());
        let at = if self.0 >= 0 {
            reference.checked_add(offset)
        } else {
            reference.checked_sub(offset)
        };
        // Out of the platform's range only for instants centuries away, which were clamped
        // when packed; the reference itself is the nearest representable answer.
        Some(Instant::from_std(at.unwrap_or(reference)))
    }

    /// Whether there is an instant.
    pub fn is_some(self) -> bool {
        self != PackedInstant::NONE
    }

    /// Whether there is none.
    pub fn is_none(self) -> bool {
        self == PackedInstant::NONE
    }

    /// Takes the instant, leaving none.
    pub fn take(&mut self) -> Option<Instant> {
        std::mem::replace(self, PackedInstant::NONE).get()
    }
}

impl Default for PackedInstant {
    fn default() -> Self {
        PackedInstant::NONE
    }
}

impl From<Option<Instant>> for PackedInstant {
    fn from(at: Option<Instant>) -> Self {
        PackedInstant::new(at)
    }
}

impl From<Instant> for PackedInstant {
    fn from(at: Instant) -> Self {
        PackedInstant::new(Some(at))
    }
}

impl std::fmt::Debug for PackedInstant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.get().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn none_stays_none() {
        assert_eq!(PackedInstant::new(None).get(), None);
        assert!(PackedInstant::default().is_none());
        assert_eq!(std::mem::size_of::<PackedInstant>(), 8);
    }

    #[test]
    fn instants_come_back_exactly_before_and_after_the_reference() {
        let now = Instant::now();
        for at in [
            now,
            now + Duration::from_nanos(1),
            now + Duration::from_secs(86_400 * 365),
            now - Duration::from_millis(3),
        ] {
            let packed = PackedInstant::from(at);
            assert!(packed.is_some());
            assert_eq!(packed.get(), Some(at));
        }
        // Before the reference, which the first packing above set.
        let earlier = Instant::from_std(reference()) - Duration::from_secs(5);
        assert_eq!(PackedInstant::from(earlier).get(), Some(earlier));
    }

    #[test]
    fn orders_as_options_of_instants_do() {
        let now = Instant::now();
        let later = now + Duration::from_millis(1);
        let earlier = now - Duration::from_millis(1);
        let mut packed = [later, earlier, now].map(PackedInstant::from).to_vec();
        packed.push(PackedInstant::NONE);
        packed.sort();
        let unpacked: Vec<_> = packed.into_iter().map(PackedInstant::get).collect();
        assert_eq!(unpacked, [None, Some(earlier), Some(now), Some(later)]);
    }

    #[test]
    fn take_leaves_none() {
        let now = Instant::now();
        let mut packed = PackedInstant::from(now);
        assert_eq!(packed.take(), Some(now));
        assert!(packed.is_none());
    }
}
