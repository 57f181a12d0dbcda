//! Session ids of connections, as Centrifugo gives them (the connect reply's `session`, and
//! the server API's `session` field of `subscribe`, `unsubscribe`, `disconnect` and
//! `refresh`, which targets one connection by it).
//!
//! A session id is not stored: it is the connection id hashed with a key the node draws at
//! start (HMAC-SHA256, cut to a UUID's 16 bytes). So every connection has one for no memory
//! (the client handle has none to spare), it stays the same for the connection's life, and it
//! cannot be worked out from the connection id, which other clients may see (in presence and
//! publication `info`): like Centrifugo's, it is meant for the connection and its backend only.

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac as _};
use rand::RngCore as _;
use sha2::Sha256;
use subtle::ConstantTimeEq as _;

use crate::client_id::ClientId;

/// The node's key for session ids (see the module documentation).
pub struct SessionKey([u8; 64]);

impl SessionKey {
    /// A fresh random key: session ids are valid for this run of the node only, as the
    /// connections they name are.
    pub fn random() -> SessionKey {
        let mut key = [0u8; 64];
        rand::rng().fill_bytes(&mut key);
        SessionKey(key)
    }

    /// The session id of connection `id`, in the form of a UUID.
    pub fn session_of(&self, id: &ClientId) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new(&self.0.into());
        id.with_str(|id| mac.update(id.as_bytes()));
        let digest = mac.finalize().into_bytes();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        uuid::Builder::from_random_bytes(bytes)
            .into_uuid()
            .hyphenated()
            .to_string()
    }

    /// Whether `session` is the session id of connection `id` (compared in constant time).
    pub fn matches(&self, id: &ClientId, session: &str) -> bool {
        self.session_of(id)
            .as_bytes()
            .ct_eq(session.as_bytes())
            .into()
    }
}

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_a_stable_uuid_per_connection_and_per_key() {
        let key = SessionKey::random();
        let a = ClientId::new("2b7e1516-28ae-4d2a-abf7-158809cf4f3c");
        let b = ClientId::new("2b7e1516-28ae-4d2a-abf7-158809cf4f3d");
        let session = key.session_of(&a);
        assert!(uuid::Uuid::parse_str(&session).is_ok(), "{session}");
        assert_eq!(key.session_of(&a), session, "stable");
        assert_ne!(key.session_of(&b), session, "per connection");
        assert_ne!(SessionKey::random().session_of(&a), session, "per key");
        assert!(key.matches(&a, &session));
        assert!(!key.matches(&b, &session));
        assert!(!key.matches(&a, ""));
        assert!(!key.matches(&a, &session.to_uppercase()));
    }
}
