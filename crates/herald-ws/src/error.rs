//! Close codes and errors of the WebSocket layer.

use std::fmt;

/// A WebSocket close status code (RFC 6455 §7.4). Applications (like Herald's protocol layer)
/// use the 3000–4999 range for their own codes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CloseCode(pub u16);

impl CloseCode {
    pub const NORMAL: CloseCode = CloseCode(1000);
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    pub const PROTOCOL: CloseCode = CloseCode(1002);
    pub const UNSUPPORTED: CloseCode = CloseCode(1003);
    /// Never sent on the wire: "the close frame had no status code".
    pub const NO_STATUS: CloseCode = CloseCode(1005);
    /// Never sent on the wire: "the connection closed without a close frame".
    pub const ABNORMAL: CloseCode = CloseCode(1006);
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    pub const POLICY: CloseCode = CloseCode(1008);
    pub const TOO_BIG: CloseCode = CloseCode(1009);
    pub const INTERNAL: CloseCode = CloseCode(1011);

    /// Whether a peer may send this code in a close frame (RFC 6455 §7.4.1 and the IANA
    /// registry): 1000–1003, 1007–1014 and 3000–4999.
    pub fn is_allowed_on_wire(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl fmt::Debug for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A violation of the protocol by the peer, with the close code it is answered with.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason} (close code {code})")]
pub struct ProtocolError {
    pub code: CloseCode,
    pub reason: &'static str,
}

impl ProtocolError {
    pub const fn new(code: CloseCode, reason: &'static str) -> ProtocolError {
        ProtocolError { code, reason }
    }
}

/// Why a connection ended with something other than a clean close handshake.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The peer broke the protocol; a close frame with the code was sent to it.
    #[error("peer broke the WebSocket protocol: {0}")]
    Protocol(#[from] ProtocolError),
    /// The socket failed.
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
    /// The peer did not read what was written within the write timeout.
    #[error("write timed out: the peer stopped reading")]
    WriteTimeout,
    /// The peer started a frame and did not finish it within the read timeout.
    #[error("read timed out: a frame was started and not finished")]
    ReadTimeout,
    /// The peer vanished without a close frame.
    #[error("connection closed without a close frame")]
    ClosedAbnormally,
}
