//! `history_remove`: forgets a channel's publications (the stream keeps its epoch and offset,
//! so clients whose position is older learn that they cannot recover).
//!
//! `POST /api/history_remove {"channel": "chat:1"}` → `{"result": {}}`.

use serde::{Deserialize, Serialize};

use super::check_channel;
use crate::node::Node;
use crate::protocol::{self, nullable};

/// Request of `history_remove`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct HistoryRemoveRequest {
    /// Channel whose publications to remove. Required.
    #[serde(deserialize_with = "nullable")]
    pub channel: String,
}

/// Result of `history_remove`: `{}`.
#[derive(Debug, Default, Serialize)]
pub struct HistoryRemoveResult {}

/// Removes the publications of `req.channel`.
///
/// Errors: 107 / 102 as for `history`; 108 when the namespace keeps no history.
pub async fn execute(
    node: &Node,
    req: HistoryRemoveRequest,
) -> Result<HistoryRemoveResult, protocol::Error> {
    check_channel(node, &req.channel)?;
    let (_, options) = node.resolve_channel(&req.channel)?;
    let Some(history) = node.history().filter(|_| options.history_enabled()) else {
        return Err(protocol::Error::new(
            108,
            "not available: the channel's namespace keeps no history",
        ));
    };
    history
        .remove(&req.channel)
        .await
        .map_err(|e| e.to_protocol())?;
    Ok(HistoryRemoveResult {})
}
