//! The demo chat's use of `offline_publication`: Herald is its own receiver. When a private
//! message (a client's publication into `inbox:#bob`) finds bob with no subscription to his
//! inbox, the sender gets a notice in their own inbox, `{"notice": "offline", "user": "bob",
//! "offset": N, "ts": <Unix ms>, "cid": <the message's cid>}`, published by the server (so without publisher info, which no client can
//! forge), and the chat shows "bob is offline — notified". A real deployment's backend would
//! send bob a mobile push notification at this point instead.

use crate::channel;
use crate::config::DEMO_INBOX_NAMESPACE;
use crate::node::{Node, PublishOptions};
use crate::protocol::{Payload, Publication};

/// Tells the publisher of `publication`, a private message of the demo chat to `user`, that
/// `user` is offline. Does nothing for other namespaces and for publications with no client
/// publisher (the notices themselves).
pub async fn notify_sender(node: &Node, namespace: &str, user: &str, publication: &Publication) {
    if namespace != DEMO_INBOX_NAMESPACE {
        return;
    }
    let Some(sender) = publication.info.as_ref().map(|info| info.user.as_str()) else {
        return;
    };
    if sender.is_empty() || sender == user {
        return;
    }
    let inbox =
        channel::personal_channel(DEMO_INBOX_NAMESPACE, sender, node.config().channel.naming());
    // The chat's id of the message (`cid`), so that it shows the notice under it.
    let cid = publication
        .data
        .as_ref()
        .and_then(|data| serde_json::from_slice::<serde_json::Value>(data.as_bytes()).ok())
        .and_then(|data| data.get("cid")?.as_str().map(str::to_owned))
        .filter(|cid| cid.len() <= 64);
    let notice = serde_json::json!({
        "notice": "offline",
        "user": user,
        "offset": publication.offset,
        "ts": crate::time::unix_now_ms(),
        "cid": cid,
    });
    let Ok(data) = Payload::from_json(notice.to_string()) else {
        return;
    };
    if let Err(e) = node.publish(&inbox, data, PublishOptions::default()).await {
        tracing::warn!(
            channel = inbox,
            "demo: cannot publish an offline notice: {e:?}"
        );
    }
}
