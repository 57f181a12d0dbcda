//! Server API authentication (protocol.md §8): the API key is taken from the `X-API-Key`
//! header, else from `Authorization: apikey <key>`, else from the `api_key` query parameter,
//! and compared in constant time with `http_api.key`.

use std::borrow::Cow;

use http::HeaderMap;
use http::header::AUTHORIZATION;

use crate::auth::api_key_matches;
use crate::config::HttpApiConfig;

/// Header carrying the API key.
pub const API_KEY_HEADER: &str = "x-api-key";

/// Query parameter carrying the API key.
pub const API_KEY_PARAM: &str = "api_key";

/// Why a request was refused; the message tells the caller what to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No key is configured and `http_api.insecure` is off: the API is closed.
    NotConfigured,
    /// The request carries no key.
    Missing,
    /// The request carries a key, and it is not the configured one.
    Wrong,
}

impl Refusal {
    /// The message of the 401 response.
    pub fn message(self) -> &'static str {
        match self {
            Refusal::NotConfigured => {
                "unauthorized: the server API has no key configured; set http_api.key and send \
                 it in the X-API-Key header"
            }
            Refusal::Missing => {
                "unauthorized: send the API key in the X-API-Key header (or as \
                 \"Authorization: apikey <key>\", or as the api_key query parameter)"
            }
            Refusal::Wrong => {
                "unauthorized: wrong API key; send http_api.key in the X-API-Key header"
            }
        }
    }
}

/// The API key a request carries: `X-API-Key`, else `Authorization: apikey <key>`, else
/// `?api_key=<key>` (percent-decoded). Empty values count as absent.
pub fn provided_key<'a>(headers: &'a HeaderMap, query: Option<&'a str>) -> Option<Cow<'a, str>> {
    if let Some(key) = headers
        .get(API_KEY_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty())
    {
        return Some(Cow::Borrowed(key));
    }
    if let Some(key) = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("apikey"))
        .map(|(_, key)| key.trim())
        .filter(|k| !k.is_empty())
    {
        return Some(Cow::Borrowed(key));
    }
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(name, _)| *name == API_KEY_PARAM)
        .and_then(|(_, value)| percent_decode(value))
        .filter(|k| !k.is_empty())
}

/// Checks a request's API key against the configuration.
pub fn authorize(
    config: &HttpApiConfig,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<(), Refusal> {
    if config.insecure {
        return Ok(());
    }
    if config.key.is_empty() {
        return Err(Refusal::NotConfigured);
    }
    let provided = provided_key(headers, query).ok_or(Refusal::Missing)?;
    if api_key_matches(&provided, &config.key) {
        Ok(())
    } else {
        Err(Refusal::Wrong)
    }
}

/// Decodes a query-string value (`%XX` escapes, `+` as space); `None` when malformed or not
/// UTF-8.
pub(crate) fn percent_decode(value: &str) -> Option<Cow<'_, str>> {
    if !value.contains(['%', '+']) {
        return Some(Cow::Borrowed(value));
    }
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = value.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.insert(*name, HeaderValue::from_static(value));
        }
        h
    }

    fn config(key: &str, insecure: bool) -> HttpApiConfig {
        HttpApiConfig {
            key: key.into(),
            insecure,
            ..HttpApiConfig::default()
        }
    }

    #[test]
    fn key_sources_in_order() {
        let none = HeaderMap::new();
        assert_eq!(provided_key(&none, None), None);
        assert_eq!(
            provided_key(&headers(&[("x-api-key", "k1")]), None).as_deref(),
            Some("k1")
        );
        assert_eq!(
            provided_key(&headers(&[("authorization", "apikey k2")]), None).as_deref(),
            Some("k2")
        );
        assert_eq!(
            provided_key(&headers(&[("authorization", "ApiKey  k2 ")]), None).as_deref(),
            Some("k2")
        );
        assert_eq!(
            provided_key(&none, Some("a=1&api_key=k3&b=2")).as_deref(),
            Some("k3")
        );
        // The header wins over Authorization, which wins over the query.
        let both = headers(&[("x-api-key", "h"), ("authorization", "apikey a")]);
        assert_eq!(provided_key(&both, Some("api_key=q")).as_deref(), Some("h"));
        let auth = headers(&[("authorization", "apikey a")]);
        assert_eq!(provided_key(&auth, Some("api_key=q")).as_deref(), Some("a"));
        // Another scheme, or empty values, do not count.
        let bearer = headers(&[("authorization", "Bearer t")]);
        assert_eq!(provided_key(&bearer, None), None);
        assert_eq!(
            provided_key(&bearer, Some("api_key=q")).as_deref(),
            Some("q")
        );
        let empty = headers(&[("x-api-key", "")]);
        assert_eq!(provided_key(&empty, Some("api_key=")), None);
        assert_eq!(provided_key(&none, Some("xapi_key=q")), None);
    }

    #[test]
    fn query_values_are_percent_decoded() {
        let none = HeaderMap::new();
        assert_eq!(
            provided_key(&none, Some("api_key=a%2Fb%3D+c")).as_deref(),
            Some("a/b= c")
        );
        assert_eq!(provided_key(&none, Some("api_key=bad%zz")), None);
        assert_eq!(provided_key(&none, Some("api_key=cut%4")), None);
        assert_eq!(provided_key(&none, Some("api_key=%ff")), None);
    }

    #[test]
    fn authorize_checks_the_configured_key() {
        let good = headers(&[("x-api-key", "secret")]);
        let bad = headers(&[("x-api-key", "secreT")]);
        let none = HeaderMap::new();
        assert_eq!(authorize(&config("secret", false), &good, None), Ok(()));
        assert_eq!(
            authorize(&config("secret", false), &bad, None),
            Err(Refusal::Wrong)
        );
        assert_eq!(
            authorize(&config("secret", false), &none, None),
            Err(Refusal::Missing)
        );
        assert_eq!(
            authorize(&config("secret", false), &none, Some("api_key=secret")),
            Ok(())
        );
        // No key configured: closed, whatever is sent.
        assert_eq!(
            authorize(&config("", false), &good, None),
            Err(Refusal::NotConfigured)
        );
        // Insecure: open.
        assert_eq!(authorize(&config("", true), &none, None), Ok(()));
        for r in [Refusal::NotConfigured, Refusal::Missing, Refusal::Wrong] {
            assert!(r.message().contains("X-API-Key"), "{r:?}");
        }
    }
}
