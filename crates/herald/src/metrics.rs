//! Prometheus metrics of a node. (Stub: counters are recorded, rendering comes with the
//! metrics implementation.)

use std::time::Duration;

use crate::hub::Hub;

/// The node's metrics, recorded on the hot path with atomic increments only.
#[derive(Debug, Default)]
pub struct Metrics {}

impl Metrics {
    /// Fresh metrics.
    pub fn new() -> Metrics {
        Metrics::default()
    }
    /// A client connection was accepted (WebSocket upgraded).
    pub fn connection_opened(&self) {}
    /// A client connection ended with `code` (WebSocket close code).
    pub fn connection_closed(&self, _code: u16) {}
    /// A frame with `commands` commands arrived from a client.
    pub fn commands_in(&self, _commands: u64) {}
    /// `n` messages were queued to clients.
    pub fn messages_out(&self, _n: u64) {}
    /// A publication was made; `source` is "api" or "client".
    pub fn publication(&self, _source: &'static str) {}
    /// A client command of `method` took `elapsed`.
    pub fn command(&self, _method: &'static str, _elapsed: Duration) {}
    /// `n` clients were disconnected as slow consumers.
    pub fn slow_consumers(&self, _n: u64) {}
    /// An API call of `method` took `elapsed`.
    pub fn api_call(&self, _method: &'static str, _elapsed: Duration) {}
    /// The Prometheus text exposition, with gauges read from the hub.
    pub fn render(&self, _hub: &Hub) -> String {
        String::new()
    }
}
