//! [`Broker`]: delivery of publications (and join/leave events) to every node that has
//! subscribers of a channel. The embedded [`LocalBroker`] has one node: it hands everything
//! straight back to this node's handler.

use std::sync::{Arc, RwLock};

use super::{BoxFuture, EngineError};
use crate::protocol::{ClientInfo, Publication};

/// What a node does with what the broker delivers (implemented by the node: encode the push
/// once and hand it to the hub).
pub trait BrokerHandler: Send + Sync + 'static {
    /// A publication in `channel` (with its offset when the channel keeps history).
    fn handle_publication(&self, channel: &str, publication: &Publication);
    /// A client subscribed to `channel`.
    fn handle_join(&self, channel: &str, info: &ClientInfo);
    /// A client unsubscribed from `channel`.
    fn handle_leave(&self, channel: &str, info: &ClientInfo);
}

/// Cross-node fan-out.
pub trait Broker: Send + Sync + 'static {
    /// Sets where deliveries go. Called once by the node before anything is published.
    fn set_handler(&self, handler: Arc<dyn BrokerHandler>);
    /// Delivers `publication` to every node's subscribers of `channel`, this node's included.
    fn publish<'a>(
        &'a self,
        channel: &'a str,
        publication: &'a Publication,
    ) -> BoxFuture<'a, Result<(), EngineError>>;
    /// Delivers a join event to every node.
    fn publish_join<'a>(
        &'a self,
        channel: &'a str,
        info: &'a ClientInfo,
    ) -> BoxFuture<'a, Result<(), EngineError>>;
    /// Delivers a leave event to every node.
    fn publish_leave<'a>(
        &'a self,
        channel: &'a str,
        info: &'a ClientInfo,
    ) -> BoxFuture<'a, Result<(), EngineError>>;
    /// This node has its first subscriber of `channel`: start receiving its deliveries.
    fn subscribe<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<(), EngineError>>;
    /// This node has no subscriber of `channel` left.
    fn unsubscribe<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<(), EngineError>>;
}

/// The embedded engine's broker: a single node, so every delivery goes straight to the local
/// handler, synchronously, inside `publish`.
#[derive(Default)]
pub struct LocalBroker {
    handler: RwLock<Option<Arc<dyn BrokerHandler>>>,
}

impl std::fmt::Debug for LocalBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalBroker").finish_non_exhaustive()
    }
}

impl LocalBroker {
    /// A broker with no handler yet (deliveries are dropped until one is set).
    pub fn new() -> Self {
        LocalBroker::default()
    }

    fn handler(&self) -> Option<Arc<dyn BrokerHandler>> {
        self.handler
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Broker for LocalBroker {
    fn set_handler(&self, handler: Arc<dyn BrokerHandler>) {
        *self.handler.write().unwrap_or_else(|e| e.into_inner()) = Some(handler);
    }

    fn publish<'a>(
        &'a self,
        channel: &'a str,
        publication: &'a Publication,
    ) -> BoxFuture<'a, Result<(), EngineError>> {
        if let Some(h) = self.handler() {
            h.handle_publication(channel, publication);
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn publish_join<'a>(
        &'a self,
        channel: &'a str,
        info: &'a ClientInfo,
    ) -> BoxFuture<'a, Result<(), EngineError>> {
        if let Some(h) = self.handler() {
            h.handle_join(channel, info);
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn publish_leave<'a>(
        &'a self,
        channel: &'a str,
        info: &'a ClientInfo,
    ) -> BoxFuture<'a, Result<(), EngineError>> {
        if let Some(h) = self.handler() {
            h.handle_leave(channel, info);
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn subscribe<'a>(&'a self, _channel: &'a str) -> BoxFuture<'a, Result<(), EngineError>> {
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

    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl BrokerHandler for Recorder {
        fn handle_publication(&self, channel: &str, publication: &Publication) {
            self.0
                .lock()
                .unwrap()
                .push(format!("pub {channel} {}", publication.offset));
        }
        fn handle_join(&self, channel: &str, info: &ClientInfo) {
            self.0
                .lock()
                .unwrap()
                .push(format!("join {channel} {}", info.client));
        }
        fn handle_leave(&self, channel: &str, info: &ClientInfo) {
            self.0
                .lock()
                .unwrap()
                .push(format!("leave {channel} {}", info.client));
        }
    }

    #[tokio::test]
    async fn local_broker_delivers_to_the_handler() {
        let broker: Arc<dyn Broker> = Arc::new(LocalBroker::new());
        let publication = Publication {
            offset: 7,
            ..Publication::default()
        };
        // No handler yet: dropped, not an error.
        broker.publish("a", &publication).await.unwrap();
        let recorder = Arc::new(Recorder::default());
        broker.set_handler(recorder.clone());
        broker.subscribe("a").await.unwrap();
        broker.publish("a", &publication).await.unwrap();
        let info = ClientInfo {
            client: "c1".into(),
            ..ClientInfo::default()
        };
        broker.publish_join("a", &info).await.unwrap();
        broker.publish_leave("a", &info).await.unwrap();
        broker.unsubscribe("a").await.unwrap();
        assert_eq!(
            *recorder.0.lock().unwrap(),
            vec!["pub a 7", "join a c1", "leave a c1"]
        );
    }
}
