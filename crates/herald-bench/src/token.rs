//! HS256 connection tokens (JWT), signed here so a run can give every connection its own user.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Signs `claims` (a JSON object, given as text) with HS256.
pub fn sign_hs256(claims_json: &str, secret: &[u8]) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = URL_SAFE_NO_PAD.encode(claims_json.as_bytes());
    let signing_input = format!("{header}.{claims}");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(signing_input.as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{sig}")
}

/// A connection token for `user`, valid until `exp` (unix seconds).
pub fn connection_token(user: &str, exp: u64, secret: &[u8]) -> String {
    let claims = serde_json::json!({ "sub": user, "exp": exp });
    sign_hs256(&claims.to_string(), secret)
}

/// Unix time in seconds (for token expiry only).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_rfc7519_style_reference_token() {
        // The widely published HS256 example token (header, payload and secret as below).
        let t = sign_hs256(
            r#"{"sub":"1234567890","name":"John Doe","iat":1516239022}"#,
            b"your-256-bit-secret",
        );
        assert_eq!(
            t,
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.\
             eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.\
             SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
        );
    }

    #[test]
    fn connection_token_has_sub_and_exp() {
        let t = connection_token("u1", 2_000_000_000, b"k");
        let claims = t.split('.').nth(1).unwrap();
        let json: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
        assert_eq!(json["sub"], "u1");
        assert_eq!(json["exp"], 2_000_000_000u64);
    }
}
