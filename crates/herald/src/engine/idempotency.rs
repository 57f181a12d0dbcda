//! [`RecentKeys`]: `idempotency_key` deduplication for publications that do not go through a
//! history (the embedded history deduplicates its own appends, durably).

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Remembers `(channel, key)` pairs for a window, in memory. For one node (the embedded
/// engine): a publish to a channel without history whose key was seen within the window is a
/// duplicate, answered with an empty result and not delivered.
#[derive(Debug)]
pub struct RecentKeys {
    window: Duration,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    seen: HashSet<(String, String)>,
    /// Insertion order, for expiry (the window is the same for all).
    order: VecDeque<(Instant, String, String)>,
}

impl RecentKeys {
    /// Keys are remembered for `window` (Centrifugo: 5 minutes).
    pub fn new(window: Duration) -> Self {
        RecentKeys {
            window,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Records `key` for `channel`; `false` when it was already recorded within the window
    /// (a duplicate).
    pub fn insert(&self, channel: &str, key: &str) -> bool {
        let now = Instant::now();
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        while inner
            .order
            .front()
            .is_some_and(|(at, _, _)| now.duration_since(*at) >= self.window)
        {
            if let Some((_, c, k)) = inner.order.pop_front() {
                inner.seen.remove(&(c, k));
            }
        }
        let entry = (channel.to_string(), key.to_string());
        if inner.seen.contains(&entry) {
            return false;
        }
        inner
            .order
            .push_back((now, entry.0.clone(), entry.1.clone()));
        inner.seen.insert(entry);
        true
    }

    /// Keys currently remembered.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .seen
            .len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_a_duplicate_within_the_window_only() {
        let keys = RecentKeys::new(Duration::from_millis(100));
        assert!(keys.insert("a", "k"));
        assert!(!keys.insert("a", "k"));
        assert!(keys.insert("b", "k"), "keys are per channel");
        assert!(keys.insert("a", "k2"));
        assert_eq!(keys.len(), 3);
        std::thread::sleep(Duration::from_millis(150));
        assert!(keys.insert("a", "k"), "expired");
        assert_eq!(keys.len(), 1);
    }
}
