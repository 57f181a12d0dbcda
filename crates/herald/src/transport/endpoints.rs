//! [`Endpoints`]: which transport serves which HTTP path, registered once from the config.
//!
//! The server routes a request to a transport by looking its path up here; a transport that
//! is disabled is simply not registered. Adding one (`/connection/http_stream`,
//! `/connection/sse`, `/connection/uni_http_stream`…) is a variant of [`Endpoint`], one
//! registration in [`Endpoints::from_config`] and the handler the server calls for it (the
//! compiler points at the `match` that needs it).

use crate::config::Config;
use crate::server::endpoint_path;

/// A transport's entry point: what accepts the HTTP request that opens a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// The bidirectional WebSocket (`websocket.handler_prefix`, default
    /// `/connection/websocket`), served by [`super::WebSocketTransport`].
    WebSocket,
    /// HTTP-streaming (`http_stream.handler_prefix`, default `/connection/http_stream`),
    /// served by [`super::HttpStreamTransport`].
    HttpStream,
    /// Bidirectional SSE (`sse.handler_prefix`, default `/connection/sse`), served by
    /// [`super::HttpStreamTransport`] with SSE framing.
    Sse,
    /// Unidirectional HTTP-streaming (`uni_http_stream.handler_prefix`, default
    /// `/connection/uni_http_stream`), served by [`super::HttpStreamTransport`] with
    /// unidirectional framing.
    UniHttpStream,
    /// Unidirectional SSE (`uni_sse.handler_prefix`, default `/connection/uni_sse`).
    UniSse,
    /// The unidirectional WebSocket (`uni_websocket.handler_prefix`, default
    /// `/connection/uni_websocket`), served by [`super::UniWebSocketTransport`].
    UniWebSocket,
    /// Where the streaming transports' clients POST their commands
    /// (`emulation.handler_prefix`, default `/emulation`; see [`super::emulation`]). Not a
    /// transport of its own, but the other half of the streaming ones.
    Emulation,
}

impl Endpoint {
    /// The transport's name, as Centrifugo names it.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::WebSocket => super::websocket::NAME,
            Endpoint::HttpStream => super::http_stream::NAME,
            Endpoint::Sse => super::http_stream::SSE_NAME,
            Endpoint::UniHttpStream => super::http_stream::UNI_NAME,
            Endpoint::UniSse => super::http_stream::UNI_SSE_NAME,
            Endpoint::UniWebSocket => super::uni_websocket::NAME,
            Endpoint::Emulation => "emulation",
        }
    }
}

/// The connection endpoints of a server, by path.
#[derive(Debug, Default)]
pub struct Endpoints {
    /// A short list (one entry per enabled transport): a scan beats a map.
    routes: Vec<(String, Endpoint)>,
}

impl Endpoints {
    /// The endpoints the config enables.
    pub fn from_config(config: &Config) -> Endpoints {
        let mut endpoints = Endpoints::default();
        if !config.websocket.disabled {
            endpoints.register(
                endpoint_path(&config.websocket.handler_prefix),
                Endpoint::WebSocket,
            );
        }
        if config.http_stream.enabled {
            endpoints.register(
                endpoint_path(&config.http_stream.handler_prefix),
                Endpoint::HttpStream,
            );
        }
        if config.sse.enabled {
            endpoints.register(endpoint_path(&config.sse.handler_prefix), Endpoint::Sse);
        }
        if config.uni_http_stream.enabled {
            endpoints.register(
                endpoint_path(&config.uni_http_stream.handler_prefix),
                Endpoint::UniHttpStream,
            );
        }
        if config.uni_sse.enabled {
            endpoints.register(
                endpoint_path(&config.uni_sse.handler_prefix),
                Endpoint::UniSse,
            );
        }
        if config.uni_websocket.enabled {
            endpoints.register(
                endpoint_path(&config.uni_websocket.handler_prefix),
                Endpoint::UniWebSocket,
            );
        }
        if config.http_stream.enabled || config.sse.enabled {
            endpoints.register(
                endpoint_path(&config.emulation.handler_prefix),
                Endpoint::Emulation,
            );
        }
        endpoints
    }

    /// Serves `endpoint` on `path`. The first registration of a path wins: two transports
    /// configured on one path is a configuration mistake, and the earlier (WebSocket first)
    /// keeps working.
    pub fn register(&mut self, path: &str, endpoint: Endpoint) {
        if self.find(path).is_some() {
            tracing::warn!(
                path,
                transport = endpoint.name(),
                "two transports on one path: change one's handler_prefix"
            );
            return;
        }
        self.routes.push((path.to_owned(), endpoint));
    }

    /// The endpoint served on `path`, if any.
    pub fn find(&self, path: &str) -> Option<Endpoint> {
        self.routes
            .iter()
            .find(|(p, _)| p == path)
            .map(|&(_, endpoint)| endpoint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_websocket_is_served_on_its_handler_prefix_unless_disabled() {
        let mut config = Config::default();
        let endpoints = Endpoints::from_config(&config);
        assert_eq!(
            endpoints.find("/connection/websocket"),
            Some(Endpoint::WebSocket)
        );
        assert_eq!(endpoints.find("/connection/http_stream"), None);

        config.websocket.handler_prefix = "/ws/".into();
        let endpoints = Endpoints::from_config(&config);
        assert_eq!(endpoints.find("/ws"), Some(Endpoint::WebSocket));
        assert_eq!(endpoints.find("/connection/websocket"), None);

        config.websocket.disabled = true;
        assert_eq!(Endpoints::from_config(&config).find("/ws"), None);
    }

    #[test]
    fn http_streaming_and_its_emulation_endpoint_are_served_when_enabled() {
        let mut config = Config::default();
        assert_eq!(Endpoints::from_config(&config).find("/emulation"), None);
        config.http_stream.enabled = true;
        let endpoints = Endpoints::from_config(&config);
        assert_eq!(
            endpoints.find("/connection/http_stream"),
            Some(Endpoint::HttpStream)
        );
        assert_eq!(endpoints.find("/emulation"), Some(Endpoint::Emulation));
        assert_eq!(endpoints.find("/connection/sse"), None);

        config.http_stream.enabled = false;
        config.sse.enabled = true;
        let endpoints = Endpoints::from_config(&config);
        assert_eq!(endpoints.find("/connection/sse"), Some(Endpoint::Sse));
        assert_eq!(endpoints.find("/emulation"), Some(Endpoint::Emulation));
        assert_eq!(endpoints.find("/connection/http_stream"), None);
    }

    #[test]
    fn the_unidirectional_transports_are_served_when_enabled_without_the_emulation_endpoint() {
        let mut config = Config::default();
        assert_eq!(
            Endpoints::from_config(&config).find("/connection/uni_http_stream"),
            None
        );
        config.uni_http_stream.enabled = true;
        config.uni_sse.enabled = true;
        config.uni_websocket.enabled = true;
        let endpoints = Endpoints::from_config(&config);
        assert_eq!(
            endpoints.find("/connection/uni_websocket"),
            Some(Endpoint::UniWebSocket)
        );
        assert_eq!(
            endpoints.find("/connection/uni_http_stream"),
            Some(Endpoint::UniHttpStream)
        );
        assert_eq!(
            endpoints.find("/connection/uni_sse"),
            Some(Endpoint::UniSse)
        );
        assert_eq!(endpoints.find("/emulation"), None);
    }

    #[test]
    fn the_first_registration_of_a_path_wins() {
        let mut endpoints = Endpoints::default();
        endpoints.register("/a", Endpoint::WebSocket);
        endpoints.register("/a", Endpoint::WebSocket);
        assert_eq!(endpoints.routes.len(), 1);
    }
}
