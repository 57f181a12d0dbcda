//! Tests of token verification, claims and the API key check.

use super::*;
use serde_json::json;

/// Runs a future to completion on a fresh current-thread runtime (the tests are sync).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// Blocking forms of the async verification methods.
trait Blocking {
    fn verify_connection_token_blocking(
        &self,
        token: &str,
        now: SystemTime,
    ) -> Result<ConnectionClaims, TokenError>;
    fn decode_connection_token_blocking(
        &self,
        token: &str,
        now: SystemTime,
    ) -> Result<ConnectionClaims, TokenError>;
}

impl Blocking for TokenVerifier {
    fn verify_connection_token_blocking(
        &self,
        token: &str,
        now: SystemTime,
    ) -> Result<ConnectionClaims, TokenError> {
        block_on(self.verify_connection_token(token, now))
    }
    fn decode_connection_token_blocking(
        &self,
        token: &str,
        now: SystemTime,
    ) -> Result<ConnectionClaims, TokenError> {
        block_on(self.decode_connection_token(token, now))
    }
}

fn blocking_verify_connection_token(
    token: &str,
    cfg: &TokenConfig,
    now: SystemTime,
) -> Result<ConnectionClaims, TokenError> {
    block_on(verify_connection_token(token, cfg, now))
}

fn blocking_verify_subscription_token(
    token: &str,
    cfg: &TokenConfig,
    now: SystemTime,
) -> Result<SubscriptionClaims, TokenError> {
    block_on(verify_subscription_token(token, cfg, now))
}

const SECRET: &str = "test-secret-please-change";

/// Key pairs made for these tests only (`openssl genpkey`); they protect nothing.
const TEST_RSA_PRIVATE: &str = "\
-----BEGIN PRIVATE KEY-----\n\
MIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQCMzUXBHjzvpTI4\n\
4AwcVnYq9w86kfNAv5jgeODhA7Uc5dkEWtF0lKukT2KyN08v1KDGtieJK9vGQVMJ\n\
kiwXVeJEZM4WlqJqqO/Qq50uelfCVlltwKLwS/kUh2qXHsISOddYPzo+cBEBb+GU\n\
PcxtWST9BWj6IOqcuKnr2FTNCHOtLjtqQkRjojjR5qTc6548lrsr3MSSC02YZDok\n\
g2xWhewnNsyzENBqFc+KmA3AFxl/7vFHOyAaumUlL4svQszU3KfJXFPPNOvbXwaz\n\
shEzbzXuRhfC06/0zB7c69gJ4Uqe/rBfPxrTd2W+plbFak2n1fl+ZSN4bUZbqMEb\n\
5JjaeJr3AgMBAAECggEAAkHGFPbhnivFNtEskIW4Ri8IoPU283o+vpZhcGnpTMnI\n\
ZT/5bId3it405EtrqwYa/6Rq1NGNp8tjQ9uCdmtLgbIl9Ym7l78WfP9LOTP/1R8i\n\
NtaoJfbpyrDy/fIhxT4FHCaDTf3o39+Fu6UT8krEA4RDLwM5D4MMQjoI/fJdPFDj\n\
zx/1z0ja9s4HGWSyTXMpdgcoj+WlMNx7DGY3AkBTt9nBHoMyuZkO3qoxgjWmo5rs\n\
nMkfJrQFjl9xHSXQmzmmv+hFdUinoJ26sg9yOdZChky+glu593uB3p/W3nIxVx7N\n\
k3udDXBcY6aPmogEEpEB049/u6A5FYBIhZ/vr8RcAQKBgQDDYwARcbN3OQ91lcC0\n\
ooA5n4lWOiErUmaPOgYeQ6ungCHEmxMkoFWsvyzWOWEoWW9wAdFGwv/lq+zr0GDS\n\
bi0RslSXbtHt8sqnIAjscutj+2+HnsoFyNA1VMYVPjiNM6nN9RG9Pqjwct+KaKpC\n\
OIBKbG1wtd22xEibz3T41+k+9wKBgQC4e1AbAOErr7/vcxUN4GbyVPp2AZi4BX3+\n\
iDeCWqkMroWA5pDN1UHJ6fyo3gkzQDE58I0T/l9qTEyeAiy66MFhzaxiMk0Uv+ru\n\
MFIyc6ISZBcRB5cMseZho//eQ2thl6YbvCJE1WgG5mmGCMTFeYzoE/WtXkqqljB/\n\
fNHB9KiEAQKBgFEuazLUSTr6LGAwzpa/BgPrM4buNCXp4M8VzsD4YPQBmwYzYKrR\n\
K4fRDvIbeTDoqBKjzq5WCzkETDZWqEQGnxdBP0CEPRlezbDO8KY9wWwTZm21Hj91\n\
Bn2CMaNV7O1OT/lRIAO/azYspJC/mC5Xh4Zksrwn9G0h9QE4G2PhYfpVAoGAKlHP\n\
bIJlJRpqE0n5GHfT5d9snUl8eSp5Xrxsz3Bwu0IFyi4aJb24G9ObbDmTLriZEkuG\n\
cYG27bGXGeAx1qayRfdihhw35nyoLf/Tu1MfaMyhJfzxv63HxbpTZe9dYMPjDRW5\n\
XsT92iddKaw1R3+8vThm8WBiDIPrmDNQAwhW6AECgYB49YMETbr/UEroLAlnHJ9j\n\
ryI85tyO1QJvmjKaa+ifF/ySuAcWbHJMDziTBNv/VotM+XhkwcklQd9NwDspdYf2\n\
nZffJ/dDRto1TtUTtk7eV1CyPhbGxLgZKWYcyYJ0BUYSXwV+qMtqeEQHM76gOqEJ\n\
5zjmulh07msaagAcIVaqzA==\n\
-----END PRIVATE KEY-----\n";

const TEST_RSA_PUBLIC: &str = "\
-----BEGIN PUBLIC KEY-----\n\
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAjM1FwR4876UyOOAMHFZ2\n\
KvcPOpHzQL+Y4Hjg4QO1HOXZBFrRdJSrpE9isjdPL9SgxrYniSvbxkFTCZIsF1Xi\n\
RGTOFpaiaqjv0KudLnpXwlZZbcCi8Ev5FIdqlx7CEjnXWD86PnARAW/hlD3MbVkk\n\
/QVo+iDqnLip69hUzQhzrS47akJEY6I40eak3OuePJa7K9zEkgtNmGQ6JINsVoXs\n\
JzbMsxDQahXPipgNwBcZf+7xRzsgGrplJS+LL0LM1NynyVxTzzTr218Gs7IRM281\n\
7kYXwtOv9Mwe3OvYCeFKnv6wXz8a03dlvqZWxWpNp9X5fmUjeG1GW6jBG+SY2nia\n\
9wIDAQAB\n\
-----END PUBLIC KEY-----\n";

const TEST_EC_PRIVATE: &str = "\
-----BEGIN PRIVATE KEY-----\n\
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQggrF1ri1VsQL/YS/B\n\
+LU/U8Z3sZoSOt846bnFj3FI7mahRANCAATqy/NU4LVVQq/jzD1apdOcnfgn3mj5\n\
HxF4Mr/SxD1+XjvIdVuEg/xeLTbTv8ETzifOcGjVhk+w8MZRttyyKFFd\n\
-----END PRIVATE KEY-----\n";

const TEST_EC_PUBLIC: &str = "\
-----BEGIN PUBLIC KEY-----\n\
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE6svzVOC1VUKv48w9WqXTnJ34J95o\n\
+R8ReDK/0sQ9fl47yHVbhIP8Xi0207/BE84nznBo1YZPsPDGUbbcsihRXQ==\n\
-----END PUBLIC KEY-----\n";

fn hmac_config() -> TokenConfig {
    TokenConfig {
        hmac_secret_key: SECRET.into(),
        ..TokenConfig::default()
    }
}

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn at(offset: i64) -> i64 {
    1_700_000_000 + offset
}

fn sign_with(alg: Algorithm, key: &EncodingKey, claims: &serde_json::Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, key).unwrap()
}

fn hs(claims: serde_json::Value) -> String {
    sign_hs256(&claims, SECRET).unwrap()
}

fn verify(token: &str) -> Result<ConnectionClaims, TokenError> {
    blocking_verify_connection_token(token, &hmac_config(), now())
}

fn b64url(s: &str) -> String {
    URL_SAFE_NO_PAD.encode(s)
}

#[test]
fn hs256_token_is_valid() {
    let token = generate_token(
        "42",
        Some(Duration::from_secs(3600)),
        SECRET,
        Some(&json!({"name": "Alice"})),
    )
    .unwrap();
    let claims =
        blocking_verify_connection_token(&token, &hmac_config(), SystemTime::now()).unwrap();
    assert_eq!(claims.sub, "42");
    assert_eq!(claims.info.as_ref().unwrap().get(), r#"{"name":"Alice"}"#);
    assert_eq!(claims.info_bytes().unwrap(), br#"{"name":"Alice"}"#);
    let exp = claims.exp.unwrap();
    assert_eq!(claims.expires_at(), Some(exp as u64));
    assert!(claims.iat.is_some());

    // Anonymous, no expiry.
    let token = generate_token("", None, SECRET, None).unwrap();
    let claims = verify(&token).unwrap();
    assert_eq!(claims.sub, "");
    assert_eq!(claims.expires_at(), None);
}

#[test]
fn hs384_and_hs512_are_accepted() {
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    for alg in [Algorithm::HS384, Algorithm::HS512] {
        let token = sign_with(alg, &key, &json!({"sub": "u", "exp": at(60)}));
        assert_eq!(verify(&token).unwrap().sub, "u", "{alg:?}");
    }
}

#[test]
fn expired_and_not_yet_valid_tokens_are_expired() {
    assert_eq!(
        verify(&hs(json!({"sub": "u", "exp": at(-10)}))).unwrap_err(),
        TokenError::Expired
    );
    // exp == now is already expired.
    assert_eq!(
        verify(&hs(json!({"sub": "u", "exp": at(0)}))).unwrap_err(),
        TokenError::Expired
    );
    assert!(verify(&hs(json!({"sub": "u", "exp": at(1)}))).is_ok());
    assert_eq!(
        verify(&hs(json!({"sub": "u", "exp": -5}))).unwrap_err(),
        TokenError::Expired
    );
    assert_eq!(
        verify(&hs(json!({"sub": "u", "nbf": at(30)}))).unwrap_err(),
        TokenError::Expired
    );
    assert!(verify(&hs(json!({"sub": "u", "nbf": at(0)}))).is_ok());
    // Fractional NumericDate.
    assert!(verify(&hs(json!({"sub": "u", "exp": 1_700_000_100.5}))).is_ok());
    // decode_* skips only the time checks.
    let v = TokenVerifier::new(&hmac_config()).unwrap();
    let expired = hs(json!({"sub": "old", "exp": at(-10)}));
    assert_eq!(
        v.decode_connection_token_blocking(&expired, now())
            .unwrap()
            .sub,
        "old"
    );
}

#[test]
fn forged_tokens_are_invalid() {
    let forged = sign_hs256(&json!({"sub": "admin"}), "another-secret").unwrap();
    let err = verify(&forged).unwrap_err();
    assert_eq!(err, TokenError::Invalid("signature does not match".into()));

    // Payload swapped under a genuine signature.
    let genuine = hs(json!({"sub": "bob"}));
    let parts: Vec<&str> = genuine.split('.').collect();
    let tampered = format!("{}.{}.{}", parts[0], b64url(r#"{"sub":"admin"}"#), parts[2]);
    assert!(matches!(verify(&tampered), Err(TokenError::Invalid(_))));

    for garbage in ["", "abc", "a.b", "a.b.c.d", "!!.e30.x", "e30.e30.e30"] {
        assert!(
            matches!(verify(garbage), Err(TokenError::Invalid(_))),
            "{garbage:?}"
        );
    }
    // A valid signature over claims that are not an object.
    assert!(matches!(
        verify(&hs(json!([1, 2]))),
        Err(TokenError::Invalid(_))
    ));
    assert!(matches!(
        verify(&hs(json!({"sub": 5}))),
        Err(TokenError::Invalid(_))
    ));
}

#[test]
fn alg_none_is_refused() {
    for alg in ["none", "None", "NONE"] {
        let header = b64url(&format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#));
        let token = format!("{header}.{}.", b64url(r#"{"sub":"admin"}"#));
        let err = verify(&token).unwrap_err();
        assert!(
            matches!(&err, TokenError::Invalid(r) if r.contains("none")),
            "{err}"
        );
    }
    let header = b64url(r#"{"typ":"JWT"}"#);
    let token = format!("{header}.{}.sig", b64url(r#"{"sub":"a"}"#));
    assert!(matches!(verify(&token), Err(TokenError::Invalid(_))));
}

#[test]
fn algorithm_must_match_a_configured_key() {
    // RS256 token, only an HMAC secret configured.
    let rsa_key = EncodingKey::from_rsa_pem(TEST_RSA_PRIVATE.as_bytes()).unwrap();
    let token = sign_with(Algorithm::RS256, &rsa_key, &json!({"sub": "u"}));
    let err = verify(&token).unwrap_err();
    assert!(
        matches!(&err, TokenError::Invalid(r) if r.contains("rsa_public_key")),
        "{err}"
    );

    // Classic confusion attack: HS256 signed with the RSA *public* key as the secret, sent
    // to a server configured with only that RSA public key.
    let rsa_only = TokenConfig {
        rsa_public_key: TEST_RSA_PUBLIC.into(),
        ..TokenConfig::default()
    };
    let forged = sign_hs256(&json!({"sub": "admin"}), TEST_RSA_PUBLIC).unwrap();
    let err = blocking_verify_connection_token(&forged, &rsa_only, now()).unwrap_err();
    assert!(
        matches!(&err, TokenError::Invalid(r) if r.contains("hmac_secret_key")),
        "{err}"
    );

    // PS256 is not a Centrifugo algorithm.
    let token = sign_with(Algorithm::PS256, &rsa_key, &json!({"sub": "u"}));
    assert!(matches!(
        blocking_verify_connection_token(&token, &rsa_only, now()),
        Err(TokenError::Invalid(_))
    ));
}

#[test]
fn rs256_and_es256_tokens_verify_with_public_keys() {
    let cfg = TokenConfig {
        rsa_public_key: TEST_RSA_PUBLIC.into(),
        ecdsa_public_key: TEST_EC_PUBLIC.into(),
        ..TokenConfig::default()
    };
    let v = TokenVerifier::new(&cfg).unwrap();
    let rsa_key = EncodingKey::from_rsa_pem(TEST_RSA_PRIVATE.as_bytes()).unwrap();
    let ec_key = EncodingKey::from_ec_pem(TEST_EC_PRIVATE.as_bytes()).unwrap();
    let claims = json!({"sub": "u", "exp": at(60)});
    for alg in [Algorithm::RS256, Algorithm::RS384, Algorithm::RS512] {
        let token = sign_with(alg, &rsa_key, &claims);
        assert_eq!(
            v.verify_connection_token_blocking(&token, now())
                .unwrap()
                .sub,
            "u"
        );
    }
    let token = sign_with(Algorithm::ES256, &ec_key, &claims);
    assert_eq!(
        v.verify_connection_token_blocking(&token, now())
            .unwrap()
            .sub,
        "u"
    );
    // ES256 signature presented as RS256 fails.
    let parts: Vec<&str> = token.split('.').collect();
    let relabeled = format!("{}.{}.{}", b64url(r#"{"alg":"RS256"}"#), parts[1], parts[2]);
    assert!(matches!(
        v.verify_connection_token_blocking(&relabeled, now()),
        Err(TokenError::Invalid(_))
    ));
}

#[test]
fn connection_token_with_channel_is_invalid() {
    let err = verify(&hs(json!({"sub": "u", "channel": "news"}))).unwrap_err();
    assert!(
        matches!(&err, TokenError::Invalid(r) if r.contains("channel")),
        "{err}"
    );
    // Centrifugo only refuses a non-empty channel.
    assert!(verify(&hs(json!({"sub": "u", "channel": ""}))).is_ok());
}

#[test]
fn expire_at_semantics() {
    let c = |exp: Option<i64>, expire_at: Option<i64>| ConnectionClaims {
        exp,
        expire_at,
        ..ConnectionClaims::default()
    };
    assert_eq!(c(Some(100), None).expires_at(), Some(100));
    assert_eq!(c(Some(100), Some(0)).expires_at(), None);
    assert_eq!(c(Some(100), Some(250)).expires_at(), Some(250));
    assert_eq!(c(None, Some(200)).expires_at(), Some(200));
    assert_eq!(c(None, Some(-5)).expires_at(), None);
    assert_eq!(c(None, None).expires_at(), None);
    assert_eq!(c(Some(0), None).expires_at(), None);

    // Through verification: the token is valid (exp in future), the connection never expires.
    let claims = verify(&hs(json!({"sub": "u", "exp": at(60), "expire_at": 0}))).unwrap();
    assert_eq!(claims.expire_at, Some(0));
    assert_eq!(claims.expires_at(), None);
    // expire_at does not stop a token whose exp passed from being expired.
    assert_eq!(
        verify(&hs(json!({"sub": "u", "exp": at(-1), "expire_at": 0}))).unwrap_err(),
        TokenError::Expired
    );
}

#[test]
fn all_connection_claims_parse() {
    let token = hs(json!({
        "sub": "u1", "exp": at(60), "iat": at(-5), "nbf": at(-5), "jti": "t-1",
        "iss": "me", "aud": ["a", "b"],
        "info": {"name": "U"}, "b64info": "aGk=",
        "channels": ["news", "chat:1"],
        "subs": {"chat:2": {"info": {"r": 1}, "b64data": "eA==",
                            "override": {"presence": {"value": true}}}},
        "meta": {"plan": "pro"},
    }));
    let c = verify(&token).unwrap();
    assert_eq!(c.channels, vec!["news", "chat:1"]);
    assert_eq!(c.info_bytes().unwrap(), b"hi"); // b64info wins
    assert_eq!(c.meta.as_ref().unwrap().get(), r#"{"plan":"pro"}"#);
    let sub = &c.subs["chat:2"];
    assert_eq!(sub.info.as_ref().unwrap().get(), r#"{"r":1}"#);
    assert_eq!(
        sub.override_.as_ref().unwrap().presence,
        Some(BoolValue { value: true })
    );
    assert_eq!(c.aud, Some(Audience::Many(vec!["a".into(), "b".into()])));
    assert_eq!(c.jti.as_deref(), Some("t-1"));

    let err = verify(&hs(json!({"sub": "u", "b64info": "%%%"}))).unwrap_err();
    assert!(
        matches!(&err, TokenError::Invalid(r) if r.contains("b64info")),
        "{err}"
    );
    let err = verify(&hs(json!({"sub": "u", "subs": {"c": {"b64data": "%"}}}))).unwrap_err();
    assert!(
        matches!(&err, TokenError::Invalid(r) if r.contains("b64data")),
        "{err}"
    );
}

#[test]
fn audience_and_issuer_are_checked_when_configured() {
    let cfg = TokenConfig {
        audience: "herald".into(),
        issuer: "backend".into(),
        ..hmac_config()
    };
    let check = |claims| blocking_verify_connection_token(&hs(claims), &cfg, now());
    assert!(check(json!({"sub": "u", "aud": "herald", "iss": "backend"})).is_ok());
    assert!(check(json!({"sub": "u", "aud": ["x", "herald"], "iss": "backend"})).is_ok());
    assert!(matches!(
        check(json!({"sub": "u", "iss": "backend"})),
        Err(TokenError::Invalid(_))
    ));
    assert!(matches!(
        check(json!({"sub": "u", "aud": "other", "iss": "backend"})),
        Err(TokenError::Invalid(_))
    ));
    assert!(matches!(
        check(json!({"sub": "u", "aud": "herald", "iss": "evil"})),
        Err(TokenError::Invalid(_))
    ));
    // Not configured: aud/iss are ignored.
    assert!(verify(&hs(json!({"sub": "u", "aud": "whatever", "iss": "x"}))).is_ok());
}

#[test]
fn previous_hmac_key_works_until_its_deadline() {
    let old = sign_hs256(&json!({"sub": "u"}), "old-secret").unwrap();
    let mut cfg = TokenConfig {
        hmac_previous_secret_key: "old-secret".into(),
        hmac_previous_secret_key_valid_until: at(100),
        ..hmac_config()
    };
    assert!(blocking_verify_connection_token(&old, &cfg, now()).is_ok());
    assert!(blocking_verify_connection_token(&hs(json!({"sub": "u"})), &cfg, now()).is_ok());
    cfg.hmac_previous_secret_key_valid_until = at(-1);
    assert!(matches!(
        blocking_verify_connection_token(&old, &cfg, now()),
        Err(TokenError::Invalid(_))
    ));
}

#[test]
fn user_id_claim_reads_another_claim() {
    let cfg = TokenConfig {
        user_id_claim: "user.id".into(),
        ..hmac_config()
    };
    let token = hs(json!({"sub": "ignored", "user": {"id": 77}}));
    assert_eq!(
        blocking_verify_connection_token(&token, &cfg, now())
            .unwrap()
            .sub,
        "77"
    );
}

#[test]
fn subscription_tokens() {
    let cfg = hmac_config();
    let token = hs(json!({
        "sub": "u", "channel": "chat:1", "client": "c1", "exp": at(60),
        "info": {"role": "mod"}, "data": {"welcome": true},
        "override": {"join_leave": {"value": false}},
    }));
    let claims = blocking_verify_subscription_token(&token, &cfg, now()).unwrap();
    assert_eq!(claims.channel, "chat:1");
    assert_eq!(claims.expires_at(), Some(at(60) as u64));
    assert_eq!(claims.data.as_ref().unwrap().get(), r#"{"welcome":true}"#);
    assert_eq!(claims.info_bytes().unwrap(), br#"{"role":"mod"}"#);
    claims.check_for("u", "chat:1", "c1").unwrap();
    assert!(claims.check_for("u", "chat:2", "c1").is_err());
    assert!(claims.check_for("v", "chat:1", "c1").is_err());
    assert!(claims.check_for("u", "chat:1", "c2").is_err());

    let no_channel = hs(json!({"sub": "u"}));
    assert!(matches!(
        blocking_verify_subscription_token(&no_channel, &cfg, now()),
        Err(TokenError::Invalid(_))
    ));
    let expired = hs(json!({"sub": "u", "channel": "c", "exp": at(-1)}));
    assert_eq!(
        blocking_verify_subscription_token(&expired, &cfg, now()).unwrap_err(),
        TokenError::Expired
    );
    let never = hs(json!({"sub": "u", "channel": "c", "exp": at(60), "expire_at": 0}));
    assert_eq!(
        blocking_verify_subscription_token(&never, &cfg, now())
            .unwrap()
            .expires_at(),
        None
    );
}

#[test]
fn verifier_refuses_unusable_settings() {
    let bad_pem = TokenConfig {
        rsa_public_key: "not a key".into(),
        ..TokenConfig::default()
    };
    let err = TokenVerifier::new(&bad_pem).unwrap_err();
    assert_eq!(err.option, "rsa_public_key");
    let jwks = TokenConfig {
        jwks_public_endpoint: "ftp://example.com/jwks".into(),
        ..TokenConfig::default()
    };
    assert_eq!(
        TokenVerifier::new(&jwks).unwrap_err().option,
        "jwks_public_endpoint"
    );
    // A JWKS endpoint alone is a key; nothing is fetched when the verifier is built.
    let jwks = TokenConfig {
        jwks_public_endpoint: "https://example.com/jwks".into(),
        ..TokenConfig::default()
    };
    assert!(TokenVerifier::new(&jwks).unwrap().has_key());
    let both = TokenConfig {
        audience: "a".into(),
        audience_regex: "^a$".into(),
        ..hmac_config()
    };
    let err = TokenVerifier::new(&both).unwrap_err();
    assert_eq!(err.option, "audience_regex");
    assert!(err.message.contains("not both"), "{err}");
    let both = TokenConfig {
        issuer: "a".into(),
        issuer_regex: "^a$".into(),
        ..hmac_config()
    };
    assert_eq!(
        TokenVerifier::new(&both).unwrap_err().option,
        "issuer_regex"
    );
    let bad = TokenConfig {
        issuer_regex: "(unclosed".into(),
        ..hmac_config()
    };
    let err = TokenVerifier::new(&bad).unwrap_err();
    assert_eq!(err.option, "issuer_regex");
    assert!(err.message.contains("regular expression"), "{err}");
    let none = TokenVerifier::new(&TokenConfig::default()).unwrap();
    assert!(!none.has_key());
    let err = none
        .verify_connection_token_blocking(&hs(json!({"sub": "u"})), now())
        .unwrap_err();
    assert!(
        matches!(&err, TokenError::Invalid(r) if r.contains("hmac_secret_key")),
        "{err}"
    );
    // Debug output never shows secrets.
    let shown = format!("{:?}", TokenVerifier::new(&hmac_config()).unwrap());
    assert!(!shown.contains(SECRET), "{shown}");
}

#[test]
fn hmac_and_rsa_together_each_alg_uses_its_own_key_type() {
    let cfg = TokenConfig {
        rsa_public_key: TEST_RSA_PUBLIC.into(),
        ..hmac_config()
    };
    let v = TokenVerifier::new(&cfg).unwrap();
    let rsa_key = EncodingKey::from_rsa_pem(TEST_RSA_PRIVATE.as_bytes()).unwrap();
    let rs = sign_with(Algorithm::RS256, &rsa_key, &json!({"sub": "r"}));
    assert_eq!(
        v.verify_connection_token_blocking(&rs, now()).unwrap().sub,
        "r"
    );
    assert_eq!(
        v.verify_connection_token_blocking(&hs(json!({"sub": "h"})), now())
            .unwrap()
            .sub,
        "h"
    );
    // HS256 with the RSA public key as the secret: checked against the HMAC secret only.
    for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
        let forged = sign_with(
            alg,
            &EncodingKey::from_secret(TEST_RSA_PUBLIC.as_bytes()),
            &json!({"sub": "admin"}),
        );
        assert_eq!(
            v.verify_connection_token_blocking(&forged, now())
                .unwrap_err(),
            TokenError::Invalid("signature does not match".into()),
            "{alg:?}"
        );
    }
    // An RS256 signature relabelled HS256 is not accepted either.
    let parts: Vec<&str> = rs.split('.').collect();
    let relabeled = format!("{}.{}.{}", b64url(r#"{"alg":"HS256"}"#), parts[1], parts[2]);
    assert!(matches!(
        v.verify_connection_token_blocking(&relabeled, now()),
        Err(TokenError::Invalid(_))
    ));
}

#[test]
fn audience_and_issuer_regexes() {
    let cfg = TokenConfig {
        audience_regex: r"^https://app\.example\.(com|org)$".into(),
        issuer_regex: r"^tenant-[0-9]+$".into(),
        ..hmac_config()
    };
    let check = |claims| blocking_verify_connection_token(&hs(claims), &cfg, now());
    let good = json!({"sub": "u", "aud": "https://app.example.org", "iss": "tenant-7"});
    assert!(check(good).is_ok());
    assert!(
        check(json!({"sub": "u", "aud": ["x", "https://app.example.com"], "iss": "tenant-1"}))
            .is_ok()
    );
    for bad in [
        json!({"sub": "u", "aud": "https://app.example.net", "iss": "tenant-7"}),
        json!({"sub": "u", "iss": "tenant-7"}),
        json!({"sub": "u", "aud": "https://app.example.com", "iss": "tenant-x"}),
        json!({"sub": "u", "aud": "https://app.example.com"}),
    ] {
        let err = check(bad.clone()).unwrap_err();
        assert!(
            matches!(&err, TokenError::Invalid(r) if r.contains("regex")),
            "{bad}: {err}"
        );
    }
}

#[test]
fn jwks_key_selection() {
    // Nothing listens on this port: every JWKS lookup fails to fetch.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let cfg = TokenConfig {
        jwks_public_endpoint: format!("http://127.0.0.1:{port}/jwks"),
        ..hmac_config()
    };
    let v = TokenVerifier::new(&cfg).unwrap();
    let rsa_key = EncodingKey::from_rsa_pem(TEST_RSA_PRIVATE.as_bytes()).unwrap();
    let with_kid = |alg, kid: &str| {
        let mut header = Header::new(alg);
        header.kid = Some(kid.into());
        jsonwebtoken::encode(&header, &json!({"sub": "u"}), &rsa_key).unwrap()
    };
    // RS256 with a kid goes to the JWKS, which cannot be fetched.
    let err = v
        .verify_connection_token_blocking(&with_kid(Algorithm::RS256, "k1"), now())
        .unwrap_err();
    assert!(
        matches!(&err, TokenError::Invalid(r) if r.contains("k1") && r.contains("cannot be fetched")),
        "{err}"
    );
    // Without a kid (and no PEM key) the token can not name its key.
    let no_kid = sign_with(Algorithm::RS256, &rsa_key, &json!({"sub": "u"}));
    let err = v
        .verify_connection_token_blocking(&no_kid, now())
        .unwrap_err();
    assert!(
        matches!(&err, TokenError::Invalid(r) if r.contains("no kid")),
        "{err}"
    );
    // HS256 tokens never use the JWKS, kid or not.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("k1".into());
    let hs_kid = jsonwebtoken::encode(
        &header,
        &json!({"sub": "h"}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    assert_eq!(
        v.verify_connection_token_blocking(&hs_kid, now())
            .unwrap()
            .sub,
        "h"
    );
    // With a PEM key too, a token without kid uses the PEM key.
    let cfg = TokenConfig {
        rsa_public_key: TEST_RSA_PUBLIC.into(),
        ..cfg
    };
    let v = TokenVerifier::new(&cfg).unwrap();
    assert_eq!(
        v.verify_connection_token_blocking(&no_kid, now())
            .unwrap()
            .sub,
        "u"
    );
    // EdDSA needs a JWKS.
    let ed = format!(
        "{}.{}.c2ln",
        b64url(r#"{"alg":"EdDSA"}"#),
        b64url(r#"{"sub":"u"}"#)
    );
    let err = blocking_verify_connection_token(&ed, &hmac_config(), now()).unwrap_err();
    assert!(
        matches!(&err, TokenError::Invalid(r) if r.contains("jwks_public_endpoint")),
        "{err}"
    );
}

#[test]
fn signing_needs_a_secret() {
    assert!(generate_token("u", None, "", None).is_err());
    assert!(generate_token("u", Some(Duration::from_secs(u64::MAX)), SECRET, None).is_err());
}

#[test]
fn api_key_comparison() {
    assert!(api_key_matches("k3y", "k3y"));
    assert!(!api_key_matches("k3y", "k3z"));
    assert!(!api_key_matches("k3", "k3y"));
    assert!(!api_key_matches("", ""));
    assert!(!api_key_matches("anything", ""));
}
