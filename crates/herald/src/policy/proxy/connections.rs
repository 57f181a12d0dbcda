//! [`Connections`]: what the proxies remember of each connection between its events — the
//! transport, the HTTP headers of the request that opened it (`http_headers`), the emulated
//! headers of its connect command (`emulated_headers`) and the `meta` the connect proxy gave
//! it (`include_connection_meta`).
//!
//! Kept here, by the connection's outbox, rather than on the connection: only a server with
//! proxies pays for it, and every idle connection's own structures stay as small as they are
//! (see the size tests in `client.rs` and `hub`). An entry holds its outbox weakly: entries of
//! connections that ended are dropped as the table grows (amortised, see
//! [`Connections::insert`]) and are never returned, since a new connection whose outbox has
//! the same address is told apart by the pointer check.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use http::{HeaderName, HeaderValue};
use serde_json::value::RawValue;

use crate::sync::lock;
use crate::ws::Outbox;

/// What is known of one connection.
#[derive(Clone, Default)]
pub struct ConnectionInfo {
    /// Its transport's name.
    pub transport: &'static str,
    /// Forwarded headers of the request that opened it.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Emulated headers from its connect command (lower-case names).
    pub emulated: Vec<(String, String)>,
    /// The connect proxy's `meta`, sent back with `include_connection_meta`.
    pub meta: Option<Arc<RawValue>>,
}

struct Entry {
    outbox: Weak<Outbox>,
    info: Arc<ConnectionInfo>,
}

/// The table of [`ConnectionInfo`] by outbox (see the module documentation).
#[derive(Default)]
pub struct Connections {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    map: HashMap<usize, Entry>,
    /// Prune ended connections when the map reaches this size.
    prune_at: usize,
}

fn key(outbox: &Arc<Outbox>) -> usize {
    Arc::as_ptr(outbox) as usize
}

impl Connections {
    /// The info of the connection of `outbox`, if any.
    pub fn get(&self, outbox: &Arc<Outbox>) -> Option<Arc<ConnectionInfo>> {
        let inner = lock(&self.inner);
        let entry = inner.map.get(&key(outbox))?;
        (entry.outbox.as_ptr() == Arc::as_ptr(outbox) && entry.outbox.strong_count() > 0)
            .then(|| entry.info.clone())
    }

    /// Sets the info of the connection of `outbox`. Every time the table doubles, the entries
    /// of ended connections are dropped, so it stays within twice the live ones.
    pub fn insert(&self, outbox: &Arc<Outbox>, info: ConnectionInfo) {
        let mut inner = lock(&self.inner);
        if inner.map.len() >= inner.prune_at {
            inner.map.retain(|_, e| e.outbox.strong_count() > 0);
            inner.prune_at = (inner.map.len() * 2).max(64);
        }
        inner.map.insert(
            key(outbox),
            Entry {
                outbox: Arc::downgrade(outbox),
                info: Arc::new(info),
            },
        );
    }

    /// Changes the info of the connection of `outbox` (a refresh's new `meta`).
    pub fn update(&self, outbox: &Arc<Outbox>, change: impl FnOnce(&mut ConnectionInfo)) {
        let mut inner = lock(&self.inner);
        if let Some(entry) = inner.map.get_mut(&key(outbox))
            && entry.outbox.as_ptr() == Arc::as_ptr(outbox)
        {
            change(Arc::make_mut(&mut entry.info));
        }
    }

    /// The number of entries (live or not yet pruned), for tests.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        lock(&self.inner).map.len()
    }
}
