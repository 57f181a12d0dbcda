//! Protocol codes (protocol.md §7): reply error codes, WebSocket disconnect codes and
//! unsubscribe push codes, with the messages and reconnect advice the SDKs expect.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A failed command's reply error: `{"code":…,"message":…,"temporary":…}`.
///
/// Library codes are 100..=113 (consts below); applications (proxies) use 400..=1999.
/// `temporary: true` tells the SDK a retry is sensible. Zero/empty/false fields are omitted on
/// the wire like every other protocol field.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Error {
    /// Numeric error code.
    #[serde(default, skip_serializing_if = "super::is_default")]
    pub code: u32,
    /// Short human-readable message.
    #[serde(default, skip_serializing_if = "str::is_empty")]
    pub message: Cow<'static, str>,
    /// Whether retrying the same command later may succeed.
    #[serde(default, skip_serializing_if = "super::is_default")]
    pub temporary: bool,
}

impl Error {
    /// 100: internal server error (temporary).
    pub const INTERNAL: Error = Error::fixed(100, "internal server error", true);
    /// 101: unauthorized.
    pub const UNAUTHORIZED: Error = Error::fixed(101, "unauthorized", false);
    /// 102: unknown channel (unknown namespace, empty channel).
    pub const UNKNOWN_CHANNEL: Error = Error::fixed(102, "unknown channel", false);
    /// 103: permission denied.
    pub const PERMISSION_DENIED: Error = Error::fixed(103, "permission denied", false);
    /// 104: method not found.
    pub const METHOD_NOT_FOUND: Error = Error::fixed(104, "method not found", false);
    /// 105: already subscribed (one subscription per channel per connection).
    pub const ALREADY_SUBSCRIBED: Error = Error::fixed(105, "already subscribed", false);
    /// 106: limit exceeded (e.g. channel limit per connection).
    pub const LIMIT_EXCEEDED: Error = Error::fixed(106, "limit exceeded", false);
    /// 107: bad request (e.g. invalid channel name).
    pub const BAD_REQUEST: Error = Error::fixed(107, "bad request", false);
    /// 108: not available (feature off for the namespace, no handler configured).
    pub const NOT_AVAILABLE: Error = Error::fixed(108, "not available", false);
    /// 109: token expired (the SDK fetches a fresh token and retries).
    pub const TOKEN_EXPIRED: Error = Error::fixed(109, "token expired", false);
    /// 110: expired.
    pub const EXPIRED: Error = Error::fixed(110, "expired", false);
    /// 111: too many requests (temporary).
    pub const TOO_MANY_REQUESTS: Error = Error::fixed(111, "too many requests", true);
    /// 112: unrecoverable position (wrong epoch or trimmed history range).
    pub const UNRECOVERABLE_POSITION: Error = Error::fixed(112, "unrecoverable position", false);
    /// 113: concurrent pagination (temporary).
    pub const CONCURRENT_PAGINATION: Error = Error::fixed(113, "concurrent pagination", true);

    /// Every library error, in code order.
    pub const ALL: [Error; 14] = [
        Error::INTERNAL,
        Error::UNAUTHORIZED,
        Error::UNKNOWN_CHANNEL,
        Error::PERMISSION_DENIED,
        Error::METHOD_NOT_FOUND,
        Error::ALREADY_SUBSCRIBED,
        Error::LIMIT_EXCEEDED,
        Error::BAD_REQUEST,
        Error::NOT_AVAILABLE,
        Error::TOKEN_EXPIRED,
        Error::EXPIRED,
        Error::TOO_MANY_REQUESTS,
        Error::UNRECOVERABLE_POSITION,
        Error::CONCURRENT_PAGINATION,
    ];

    const fn fixed(code: u32, message: &'static str, temporary: bool) -> Error {
        Error {
            code,
            message: Cow::Borrowed(message),
            temporary,
        }
    }

    /// A non-temporary error with any code and message (e.g. a proxy's custom 400..=1999 error).
    pub fn new(code: u32, message: impl Into<Cow<'static, str>>) -> Error {
        Error {
            code,
            message: message.into(),
            temporary: false,
        }
    }

    /// Sets the `temporary` flag.
    #[must_use]
    pub fn with_temporary(mut self, temporary: bool) -> Error {
        self.temporary = temporary;
        self
    }

    /// The library error with this code (100..=113), if any.
    pub fn from_code(code: u32) -> Option<Error> {
        Error::ALL.into_iter().find(|e| e.code == code)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Error {}

/// Why the server closes a connection, in every transport's terms: the one table of close
/// codes. A WebSocket sends it as its close frame's code and reason; a streaming transport
/// (HTTP-streaming, SSE, the unidirectional ones) as a `disconnect` push before it ends the
/// stream (see [`crate::transport`]). The alarm clock, keepalive, the server API and shutdown
/// all close connections with one, never with a transport's own close.
///
/// Ranges (centrifuge `disconnect.go`, protocol.md §7): 3000–3499 and 4000–4499 and ≥ 5000 tell
/// the client to reconnect; 3500–3999 and 4500–4999 are terminal. Reconnect advice is derived
/// from the code ([`Disconnect::reconnect`]) rather than stored beside it, as the SDKs derive it
/// from a close frame: a separate flag could contradict the code. Reasons stay well below the
/// 123-byte limit of a close frame.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Disconnect {
    /// Close code.
    pub code: u16,
    /// Close reason (short, human-readable): one of the table's, or an application's own
    /// (the server API's `disconnect`).
    pub reason: Cow<'static, str>,
}

impl Disconnect {
    /// 3000: connection closed without server advice (never sent by the server).
    pub const CONNECTION_CLOSED: Disconnect = Disconnect::new(3000, "connection closed");
    /// 3001: server shutdown; reconnect.
    pub const SHUTDOWN: Disconnect = Disconnect::new(3001, "shutdown");
    /// 3004: internal server error; reconnect.
    pub const INTERNAL: Disconnect = Disconnect::new(3004, "internal server error");
    /// 3005: connection expired (no refresh in time); reconnect.
    pub const EXPIRED: Disconnect = Disconnect::new(3005, "connection expired");
    /// 3006: subscription expired; reconnect.
    pub const SUBSCRIPTION_EXPIRED: Disconnect = Disconnect::new(3006, "subscription expired");
    /// 3008: client too slow to read (queue over limit); reconnect.
    pub const SLOW: Disconnect = Disconnect::new(3008, "slow");
    /// 3009: error writing to the connection; reconnect.
    pub const WRITE_ERROR: Disconnect = Disconnect::new(3009, "write error");
    /// 3010: insufficient state (position gap detected); reconnect and recover.
    pub const INSUFFICIENT_STATE: Disconnect = Disconnect::new(3010, "insufficient state");
    /// 3011: server forces a reconnect.
    pub const FORCE_RECONNECT: Disconnect = Disconnect::new(3011, "force reconnect");
    /// 3012: no pong received in time; reconnect.
    pub const NO_PONG: Disconnect = Disconnect::new(3012, "no pong");
    /// 3013: too many requests; reconnect (with backoff).
    pub const TOO_MANY_REQUESTS: Disconnect = Disconnect::new(3013, "too many requests");
    /// 3014: state invalidated (client drops token and positions); reconnect.
    pub const STATE_INVALIDATED: Disconnect = Disconnect::new(3014, "state invalidated");
    /// 3500: invalid token; terminal.
    pub const INVALID_TOKEN: Disconnect = Disconnect::new(3500, "invalid token");
    /// 3501: bad request (malformed frame, protocol violation); terminal.
    pub const BAD_REQUEST: Disconnect = Disconnect::new(3501, "bad request");
    /// 3502: stale (no connect command in time); terminal.
    pub const STALE: Disconnect = Disconnect::new(3502, "stale");
    /// 3503: force disconnect (server API `disconnect`); terminal.
    pub const FORCE_DISCONNECT: Disconnect = Disconnect::new(3503, "force disconnect");
    /// 3504: connection limit reached; terminal.
    pub const CONNECTION_LIMIT: Disconnect = Disconnect::new(3504, "connection limit");
    /// 3505: channel limit reached; terminal.
    pub const CHANNEL_LIMIT: Disconnect = Disconnect::new(3505, "channel limit");
    /// 3506: inappropriate protocol (e.g. binary payload on a JSON connection); terminal.
    pub const INAPPROPRIATE_PROTOCOL: Disconnect = Disconnect::new(3506, "inappropriate protocol");
    /// 3507: permission denied; terminal.
    pub const PERMISSION_DENIED: Disconnect = Disconnect::new(3507, "permission denied");
    /// 3508: not available (e.g. `send` without a message handler); terminal.
    pub const NOT_AVAILABLE: Disconnect = Disconnect::new(3508, "not available");
    /// 3509: too many errors; terminal.
    pub const TOO_MANY_ERRORS: Disconnect = Disconnect::new(3509, "too many errors");

    /// Every library disconnect, in code order.
    pub const ALL: [Disconnect; 22] = [
        Disconnect::CONNECTION_CLOSED,
        Disconnect::SHUTDOWN,
        Disconnect::INTERNAL,
        Disconnect::EXPIRED,
        Disconnect::SUBSCRIPTION_EXPIRED,
        Disconnect::SLOW,
        Disconnect::WRITE_ERROR,
        Disconnect::INSUFFICIENT_STATE,
        Disconnect::FORCE_RECONNECT,
        Disconnect::NO_PONG,
        Disconnect::TOO_MANY_REQUESTS,
        Disconnect::STATE_INVALIDATED,
        Disconnect::INVALID_TOKEN,
        Disconnect::BAD_REQUEST,
        Disconnect::STALE,
        Disconnect::FORCE_DISCONNECT,
        Disconnect::CONNECTION_LIMIT,
        Disconnect::CHANNEL_LIMIT,
        Disconnect::INAPPROPRIATE_PROTOCOL,
        Disconnect::PERMISSION_DENIED,
        Disconnect::NOT_AVAILABLE,
        Disconnect::TOO_MANY_ERRORS,
    ];

    /// A disconnect with any code and a fixed reason (applications use 4000..=4999).
    pub const fn new(code: u16, reason: &'static str) -> Disconnect {
        Disconnect {
            code,
            reason: Cow::Borrowed(reason),
        }
    }

    /// A disconnect with any code and a reason made at run time (the server API's
    /// `disconnect`, whose caller chooses both).
    pub fn custom(code: u16, reason: impl Into<Cow<'static, str>>) -> Disconnect {
        Disconnect {
            code,
            reason: reason.into(),
        }
    }

    /// Whether the client is advised to reconnect after this close code.
    ///
    /// Codes below 3000 are transport-level: reconnect, except 1009 (message too big), after
    /// which centrifuge-js stops.
    pub const fn reconnect(&self) -> bool {
        match self.code {
            1009 => false,
            0..=2999 => true,
            3000..=3499 | 4000..=4499 => true,
            3500..=3999 | 4500..=4999 => false,
            _ => true,
        }
    }

    /// The `disconnect` push body for unidirectional transports.
    pub fn to_push(&self) -> super::DisconnectPush {
        super::DisconnectPush {
            code: u32::from(self.code),
            reason: self.reason.clone().into_owned(),
            reconnect: self.reconnect(),
        }
    }

    /// The reason, when it is one of the table's (fixed for the life of the program): what
    /// a queue's overflow close, set once per server, needs.
    pub fn fixed_reason(&self) -> Option<&'static str> {
        match self.reason {
            Cow::Borrowed(reason) => Some(reason),
            Cow::Owned(_) => None,
        }
    }

    /// The library disconnect with this code, if any.
    pub fn from_code(code: u16) -> Option<Disconnect> {
        Disconnect::ALL.into_iter().find(|d| d.code == code)
    }
}

impl fmt::Display for Disconnect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "code: {}, reason: {}", self.code, self.reason)
    }
}

/// Why the server removed a client from a channel: the body of an `unsubscribe` push.
///
/// Codes ≥ 2500 make the SDK resubscribe; 2000 is terminal. Codes 0 (client unsubscribed) and
/// 1 (client disconnected) exist only locally and are never sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Unsubscribe {
    /// Unsubscribe code (2000..=2999 on the wire).
    pub code: u32,
    /// Short human-readable reason.
    pub reason: &'static str,
}

impl Unsubscribe {
    /// 0: the client unsubscribed itself (local only, never sent).
    pub const CLIENT: Unsubscribe = Unsubscribe::new(0, "client unsubscribed");
    /// 1: the client disconnected (local only, never sent).
    pub const DISCONNECT: Unsubscribe = Unsubscribe::new(1, "client disconnected");
    /// 2000: server unsubscribed the client (terminal, no resubscribe).
    pub const SERVER: Unsubscribe = Unsubscribe::new(2000, "server unsubscribe");
    /// 2500: insufficient state (position gap); resubscribe and recover.
    pub const INSUFFICIENT_STATE: Unsubscribe = Unsubscribe::new(2500, "insufficient state");
    /// 2501: subscription expired; resubscribe with a new token.
    pub const EXPIRED: Unsubscribe = Unsubscribe::new(2501, "subscription expired");
    /// 2502: state invalidated; drop cached token/state and resubscribe.
    pub const STATE_INVALIDATED: Unsubscribe = Unsubscribe::new(2502, "state invalidated");

    /// An unsubscribe with any code and reason.
    pub const fn new(code: u32, reason: &'static str) -> Unsubscribe {
        Unsubscribe { code, reason }
    }

    /// Whether the SDK will resubscribe after receiving this code (code ≥ 2500).
    pub const fn resubscribe(&self) -> bool {
        self.code >= 2500
    }

    /// The `unsubscribe` push body.
    pub fn to_push(&self) -> super::UnsubscribePush {
        super::UnsubscribePush {
            code: self.code,
            reason: self.reason.to_owned(),
        }
    }
}

impl fmt::Display for Unsubscribe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "code: {}, reason: {}", self.code, self.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_table_matches_protocol() {
        let expected: [(u32, &str, bool); 14] = [
            (100, "internal server error", true),
            (101, "unauthorized", false),
            (102, "unknown channel", false),
            (103, "permission denied", false),
            (104, "method not found", false),
            (105, "already subscribed", false),
            (106, "limit exceeded", false),
            (107, "bad request", false),
            (108, "not available", false),
            (109, "token expired", false),
            (110, "expired", false),
            (111, "too many requests", true),
            (112, "unrecoverable position", false),
            (113, "concurrent pagination", true),
        ];
        for (e, (code, message, temporary)) in Error::ALL.iter().zip(expected) {
            assert_eq!(
                (e.code, &*e.message, e.temporary),
                (code, message, temporary)
            );
            assert_eq!(Error::from_code(code).as_ref(), Some(e));
        }
        assert_eq!(Error::from_code(114), None);
        assert_eq!(Error::from_code(0), None);
    }

    #[test]
    fn error_json_omits_false_temporary() {
        let json = serde_json::to_string(&Error::UNKNOWN_CHANNEL).unwrap();
        assert_eq!(json, r#"{"code":102,"message":"unknown channel"}"#);
        let json = serde_json::to_string(&Error::INTERNAL).unwrap();
        assert_eq!(
            json,
            r#"{"code":100,"message":"internal server error","temporary":true}"#
        );
        let custom = Error::new(4001, String::from("custom")).with_temporary(true);
        assert_eq!(
            serde_json::to_string(&custom).unwrap(),
            r#"{"code":4001,"message":"custom","temporary":true}"#
        );
        let back: Error =
            serde_json::from_str(r#"{"code":102,"message":"unknown channel"}"#).unwrap();
        assert_eq!(back, Error::UNKNOWN_CHANNEL);
        assert_eq!(Error::BAD_REQUEST.to_string(), "107: bad request");
    }

    #[test]
    fn disconnect_codes_and_reconnect_advice() {
        let reconnect = [
            3000, 3001, 3004, 3005, 3006, 3008, 3009, 3010, 3011, 3012, 3013, 3014,
        ];
        let terminal = [3500, 3501, 3502, 3503, 3504, 3505, 3506, 3507, 3508, 3509];
        assert_eq!(Disconnect::ALL.len(), reconnect.len() + terminal.len());
        for code in reconnect {
            let d = Disconnect::from_code(code).unwrap();
            assert!(d.reconnect(), "{d}");
        }
        for code in terminal {
            let d = Disconnect::from_code(code).unwrap();
            assert!(!d.reconnect(), "{d}");
        }
        for d in Disconnect::ALL {
            assert!(d.reason.len() < 123);
            assert!(!d.reason.is_empty());
        }
        assert_eq!(Disconnect::SHUTDOWN.code, 3001);
        assert_eq!(Disconnect::SLOW.code, 3008);
        assert_eq!(Disconnect::NO_PONG, Disconnect::new(3012, "no pong"));
        assert_eq!(Disconnect::EXPIRED.code, 3005);
        assert_eq!(Disconnect::INVALID_TOKEN.code, 3500);
        assert_eq!(Disconnect::BAD_REQUEST.reason, "bad request");
        assert_eq!(Disconnect::INTERNAL.code, 3004);
        assert_eq!(Disconnect::TOO_MANY_ERRORS.code, 3509);
        assert!(Disconnect::new(4000, "app").reconnect());
        assert!(!Disconnect::new(4500, "app").reconnect());
        assert!(Disconnect::new(5000, "x").reconnect());
        assert!(Disconnect::new(1001, "going away").reconnect());
        assert!(!Disconnect::new(1009, "message too big").reconnect());
    }

    #[test]
    fn disconnect_push_body() {
        let push = Disconnect::FORCE_DISCONNECT.to_push();
        assert_eq!(
            serde_json::to_string(&push).unwrap(),
            r#"{"code":3503,"reason":"force disconnect"}"#
        );
        let push = Disconnect::SHUTDOWN.to_push();
        assert_eq!(
            serde_json::to_string(&push).unwrap(),
            r#"{"code":3001,"reason":"shutdown","reconnect":true}"#
        );
    }

    #[test]
    fn unsubscribe_codes() {
        assert_eq!(Unsubscribe::SERVER.code, 2000);
        assert!(!Unsubscribe::SERVER.resubscribe());
        for u in [
            Unsubscribe::INSUFFICIENT_STATE,
            Unsubscribe::EXPIRED,
            Unsubscribe::STATE_INVALIDATED,
        ] {
            assert!(u.resubscribe());
        }
        assert_eq!(
            (
                Unsubscribe::INSUFFICIENT_STATE.code,
                Unsubscribe::EXPIRED.code
            ),
            (2500, 2501)
        );
        assert_eq!(Unsubscribe::STATE_INVALIDATED.code, 2502);
        assert_eq!(
            serde_json::to_string(&Unsubscribe::EXPIRED.to_push()).unwrap(),
            r#"{"code":2501,"reason":"subscription expired"}"#
        );
    }
}
