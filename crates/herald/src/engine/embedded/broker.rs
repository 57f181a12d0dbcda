//! [`EmbeddedBroker`]: the embedded engine's [`Broker`]. One node, so "every node subscribed to
//! the channel" is this one: each publication, join and leave goes straight to the node's
//! handler. Publications to channels with history go through the SQLite history first, whose
//! writer hands each durable publication to the handler in offset order (before its
//! publisher's append resolves); that hook is what makes offsets reach subscribers in order
//! however many publishers race.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use super::EmbeddedHistory;
use crate::engine::{
    AppendRequest, AppendResult, BoxFuture, Broker, BrokerEventHandler, EngineError, RecentKeys,
    StoredHistory, StreamPosition,
};
use crate::protocol::{ClientInfo, Publication};

/// How long an `idempotency_key` of a publication without history is remembered (Centrifugo's
/// window; publications with history keep theirs in the stream).
const IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(300);

/// Where the node's handler is, once installed: shared with the history's delivery hook,
/// which runs on the history's writer thread.
type HandlerSlot = Arc<OnceLock<Arc<dyn BrokerEventHandler>>>;

/// The embedded broker: this node's handler, the SQLite history when some namespace keeps
/// history, and the idempotency keys of publications without history.
pub struct EmbeddedBroker {
    history: Option<EmbeddedHistory>,
    handler: HandlerSlot,
    recent_keys: RecentKeys,
}

impl std::fmt::Debug for EmbeddedBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBroker")
            .field("history", &self.history)
            .finish_non_exhaustive()
    }
}

impl EmbeddedBroker {
    /// A broker over `history` (`None`: no namespace keeps history, nothing is stored and no
    /// data directory is touched).
    pub fn new(history: Option<EmbeddedHistory>) -> Self {
        let handler: HandlerSlot = Arc::default();
        if let Some(history) = &history {
            let slot = handler.clone();
            history.set_delivery(Arc::new(move |channel, publication, delta| {
                if let Some(handler) = slot.get() {
                    handler.handle_publication(channel, &publication.to_publication(), delta);
                }
            }));
        }
        EmbeddedBroker {
            history,
            handler,
            recent_keys: RecentKeys::new(IDEMPOTENCY_WINDOW),
        }
    }

    /// The SQLite history, if one is open.
    pub fn history(&self) -> Option<&EmbeddedHistory> {
        self.history.as_ref()
    }

    fn storage(&self) -> Result<&EmbeddedHistory, EngineError> {
        self.history.as_ref().ok_or_else(|| {
            EngineError::BadRequest(
                "no history is kept: set history_size and history_ttl in the namespace".into(),
            )
        })
    }

    /// Delivers a publication kept nowhere (its channel has no history).
    fn deliver_now(&self, request: AppendRequest) -> AppendResult {
        let duplicate = request
            .idempotency_key
            .as_deref()
            .is_some_and(|key| !self.recent_keys.insert(&request.channel, key));
        if !duplicate && let Some(handler) = self.handler.get() {
            let publication = Publication {
                data: Some(request.data),
                info: request.info,
                tags: request.tags,
                ..Publication::default()
            };
            handler.handle_publication(&request.channel, &publication, request.delta);
        }
        AppendResult {
            position: StreamPosition::default(),
            duplicate,
            suppressed: false,
            // Nothing stored: the publication went to the handler directly.
            publication: None,
        }
    }
}

impl StoredHistory for EmbeddedBroker {
    type Store = EmbeddedHistory;

    fn store(&self) -> Result<&EmbeddedHistory, EngineError> {
        self.storage()
    }
}

impl Broker for EmbeddedBroker {
    fn set_handler(&self, handler: Arc<dyn BrokerEventHandler>) {
        if self.handler.set(handler).is_err() {
            tracing::warn!("broker: the event handler was already set; keeping the first");
        }
    }

    fn publish(&self, request: AppendRequest) -> BoxFuture<'_, Result<AppendResult, EngineError>> {
        match &self.history {
            // The writer hands the durable publication to the handler, in offset order.
            Some(history) if request.options.enabled() => history.append(request),
            _ => Box::pin(std::future::ready(Ok(self.deliver_now(request)))),
        }
    }

    fn publish_join<'a>(
        &'a self,
        channel: &'a str,
        info: &'a ClientInfo,
    ) -> BoxFuture<'a, Result<(), EngineError>> {
        if let Some(handler) = self.handler.get() {
            handler.handle_join(channel, info);
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn publish_leave<'a>(
        &'a self,
        channel: &'a str,
        info: &'a ClientInfo,
    ) -> BoxFuture<'a, Result<(), EngineError>> {
        if let Some(handler) = self.handler.get() {
            handler.handle_leave(channel, info);
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn subscribe<'a>(&'a self, _channel: &'a str) -> BoxFuture<'a, Result<(), EngineError>> {
        // One node: every event already reaches it.
        Box::pin(std::future::ready(Ok(())))
    }

    fn unsubscribe<'a>(&'a self, _channel: &'a str) -> BoxFuture<'a, Result<(), EngineError>> {
        Box::pin(std::future::ready(Ok(())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    use crate::engine::{History, HistoryFilter, HistoryOptions, StoredPublication};
    use crate::protocol::raw;

    /// Records what the broker hands to the node, as "pub <channel> <offset> <data>",
    /// "join …", "leave …".
    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl BrokerEventHandler for Recorder {
        fn handle_publication(&self, channel: &str, publication: &Publication, _delta: bool) {
            let data = publication.data.as_ref().map_or("", |d| d.get());
            let line = format!("pub {channel} {} {data}", publication.offset);
            self.0.lock().unwrap().push(line);
        }
        fn handle_join(&self, channel: &str, info: &ClientInfo) {
            let line = format!("join {channel} {}", info.client);
            self.0.lock().unwrap().push(line);
        }
        fn handle_leave(&self, channel: &str, info: &ClientInfo) {
            let line = format!("leave {channel} {}", info.client);
            self.0.lock().unwrap().push(line);
        }
    }

    #[tokio::test]
    async fn without_history_everything_goes_to_the_handler_once() {
        let broker = EmbeddedBroker::new(None);
        let request = || AppendRequest::new("a", raw("1").unwrap(), HistoryOptions::default());
        // No handler yet: dropped, not an error.
        broker.publish(request()).await.unwrap();
        let recorder = Arc::new(Recorder::default());
        broker.set_handler(recorder.clone());
        broker.subscribe("a").await.unwrap();
        broker.publish(request()).await.unwrap();
        let keyed = || AppendRequest {
            idempotency_key: Some("k".into()),
            ..request()
        };
        assert!(!broker.publish(keyed()).await.unwrap().duplicate);
        assert!(broker.publish(keyed()).await.unwrap().duplicate);
        let info = ClientInfo {
            client: "c1".into(),
            ..ClientInfo::default()
        };
        broker.publish_join("a", &info).await.unwrap();
        broker.publish_leave("a", &info).await.unwrap();
        broker.unsubscribe("a").await.unwrap();
        assert_eq!(
            *recorder.0.lock().unwrap(),
            ["pub a 0 1", "pub a 0 1", "join a c1", "leave a c1"]
        );
        let no_history = broker.top("a", HistoryOptions::default()).await;
        assert!(matches!(no_history, Err(EngineError::BadRequest(_))));
    }

    #[tokio::test]
    async fn racing_publishers_reach_the_handler_in_offset_order() {
        let dir = tempfile::tempdir().unwrap();
        let config = super::super::EmbeddedConfig::new(dir.path());
        let broker = Arc::new(EmbeddedBroker::new(Some(
            EmbeddedHistory::open(config).unwrap(),
        )));
        let recorder = Arc::new(Recorder::default());
        broker.set_handler(recorder.clone());
        let options = HistoryOptions {
            size: 1000,
            ttl: Duration::from_secs(60),
            meta_ttl: Duration::ZERO,
        };
        const TASKS: u64 = 8;
        const EACH: u64 = 25;
        let tasks: Vec<_> = (0..TASKS)
            .map(|t| {
                let broker = broker.clone();
                tokio::spawn(async move {
                    for i in 0..EACH {
                        let data = raw(format!("{}", t * 1000 + i)).unwrap();
                        broker
                            .publish(AppendRequest::new("race", data, options))
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let seen = recorder.0.lock().unwrap().clone();
        let offsets: Vec<u64> = seen
            .iter()
            .map(|line| line.split(' ').nth(2).unwrap().parse().unwrap())
            .collect();
        assert_eq!(offsets, (1..=TASKS * EACH).collect::<Vec<_>>());
        // Each stored publication is the one the handler saw at that offset.
        let stored: Vec<Arc<StoredPublication>> = broker
            .read("race", HistoryFilter::default(), options)
            .await
            .unwrap()
            .publications;
        for (line, publication) in seen.iter().zip(&stored) {
            let data = line.split(' ').nth(3).unwrap();
            assert_eq!(data, publication.data.get());
        }
    }
}
