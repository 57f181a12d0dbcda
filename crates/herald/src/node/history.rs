//! The node's `history` operation: reading a page of a channel's stream, the one read that
//! the client protocol's `history` and the server API's `history` both make, so that the two
//! cannot drift (limits, the epoch check, the "you missed some" error). Who may read is not
//! decided here: the client asks its [`Policy`](crate::policy::Policy) first, the server API
//! is trusted.

use std::sync::Arc;

use super::Node;
use crate::config::NamespaceOptions;
use crate::engine::{HistoryFilter, HistoryResult, StoredPublication, StreamPosition};
use crate::protocol::{self, Publication};

/// What a history read asks for, in the protocol's terms.
#[derive(Clone, Debug, Default)]
pub struct HistoryQuery {
    /// Publications after this position (before it with `reverse`).
    pub since: Option<StreamPosition>,
    /// At most this many publications: 0 only the position, negative as many as
    /// `client.history_max_publication_limit` allows (which also caps any other value).
    pub limit: i64,
    /// Newest first.
    pub reverse: bool,
}

impl Node {
    /// The namespace of `channel` when its history can be read: the channel's error (102,
    /// 107) when it is not a valid channel, 108 when its namespace keeps no history.
    pub fn history_namespace<'a>(
        &'a self,
        channel: &'a str,
    ) -> Result<&'a NamespaceOptions, protocol::Error> {
        let (_, options) = self.resolve_channel(channel)?;
        if self.history.is_none() || !options.history_enabled() {
            return Err(protocol::Error::NOT_AVAILABLE);
        }
        Ok(options)
    }

    /// Reads a page of `channel`'s stream (`options`: its namespace, from
    /// [`Node::history_namespace`]). Errors: 108 when the channel keeps no history, 112 when
    /// `since` names another epoch or a position trimmed away, the engine's error otherwise.
    pub async fn read_history(
        &self,
        channel: &str,
        options: &NamespaceOptions,
        query: HistoryQuery,
    ) -> Result<HistoryResult, protocol::Error> {
        let Some(history) = self.history.as_ref().filter(|_| options.history_enabled()) else {
            return Err(protocol::Error::NOT_AVAILABLE);
        };
        let cap = self.config.client.history_max_publication_limit as i64;
        let filter = HistoryFilter {
            since: query.since,
            limit: if query.limit < 0 {
                cap
            } else {
                query.limit.min(cap)
            },
            reverse: query.reverse,
        };
        history
            .read(channel, filter.clone(), self.history_options(options))
            .await
            .and_then(|page| page.continuing(&filter))
            .map_err(|e| e.to_protocol())
    }
}

/// Stored publications as the protocol sends them (`history` results, recovered
/// publications).
pub fn to_publications(stored: &[Arc<StoredPublication>]) -> Vec<Publication> {
    stored.iter().map(|p| p.to_publication()).collect()
}
