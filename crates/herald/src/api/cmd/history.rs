//! `history`: a page of a channel's stream, for backends that rebuild state or show what was
//! said before.
//!
//! `POST /api/history {"channel": "chat:1", "limit": 10, "since": {"offset": 5, "epoch": "…"},
//! "reverse": false}` → `{"result": {"publications": [...], "epoch": "…", "offset": 42}}`.

use serde::{Deserialize, Serialize};

use super::check_channel;
use crate::engine::StreamPosition;
use crate::node::{HistoryQuery, Node, to_publications};
use crate::protocol::{self, Publication, nullable};

/// Request of `history`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct HistoryRequest {
    /// Channel whose stream to read. Required.
    #[serde(deserialize_with = "nullable")]
    pub channel: String,
    /// Most publications to return: 0 only the stream position, −1 as many as allowed.
    #[serde(deserialize_with = "nullable")]
    pub limit: i64,
    /// Return the publications after this position (before it with `reverse`).
    pub since: Option<Position>,
    /// Newest first.
    #[serde(deserialize_with = "nullable")]
    pub reverse: bool,
}

/// A stream position in a request.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Position {
    /// Offset of a publication.
    #[serde(deserialize_with = "nullable")]
    pub offset: u64,
    /// Epoch of the stream the offset belongs to.
    #[serde(deserialize_with = "nullable")]
    pub epoch: String,
}

/// Result of `history`; the three fields are always present.
#[derive(Debug, Default, Serialize)]
pub struct HistoryResult {
    /// The publications, oldest first (newest first with `reverse`).
    pub publications: Vec<Publication>,
    /// The stream's epoch.
    pub epoch: String,
    /// The stream's top offset.
    pub offset: u64,
}

/// Reads the history of `req.channel`.
///
/// Errors: 107 for a missing or malformed channel; 102 for an unknown namespace; 108 when the
/// namespace keeps no history; 112 when `since` names another epoch.
pub async fn execute(node: &Node, req: HistoryRequest) -> Result<HistoryResult, protocol::Error> {
    check_channel(node, &req.channel)?;
    let options = node.history_namespace(&req.channel).map_err(explain)?;
    let query = HistoryQuery {
        since: req.since.map(|p| StreamPosition::new(p.offset, p.epoch)),
        limit: req.limit,
        reverse: req.reverse,
    };
    let page = node
        .read_history(&req.channel, options, query)
        .await
        .map_err(explain)?;
    Ok(HistoryResult {
        publications: to_publications(&page.publications),
        epoch: page.position.epoch,
        offset: page.position.offset,
    })
}

/// The node's 108 with what the backend's operator can do about it.
fn explain(error: protocol::Error) -> protocol::Error {
    if error.code == protocol::Error::NOT_AVAILABLE.code {
        protocol::Error::new(
            108,
            "not available: the channel's namespace keeps no history (set history_size and \
             history_ttl)",
        )
    } else {
        error
    }
}
