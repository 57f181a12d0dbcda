//! `herald genconfig`: a minimal starter config with fresh random secrets, and the random
//! secrets themselves.

use rand::Rng;

use super::format::render_tree;
use super::{ConfigError, ConfigFormat};

/// A random secret of `len` letters and digits (`rand`'s thread RNG, a CSPRNG).
pub fn random_secret(len: usize) -> String {
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// A minimal starter config in `format`, like `centrifugo genconfig`: fresh random
/// `client.token.hmac_secret_key`, `http_api.key`, `admin.password` and `admin.secret`, an empty
/// `client.allowed_origins`, and the admin UI off.
pub fn genconfig(format: ConfigFormat) -> Result<String, ConfigError> {
    let tree = serde_json::json!({
        "client": {
            "allowed_origins": [],
            "token": { "hmac_secret_key": random_secret(48) },
        },
        "http_api": { "key": random_secret(48) },
        "admin": {
            "enabled": false,
            "password": random_secret(24),
            "secret": random_secret(48),
        },
    });
    render_tree(&tree, format)
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::config::*;

    #[test]
    fn genconfig_makes_loadable_configs_with_fresh_secrets() {
        for format in [ConfigFormat::Json, ConfigFormat::Toml, ConfigFormat::Yaml] {
            let text = genconfig(format).unwrap();
            let c = Config::from_str_with_format(&text, format).unwrap();
            c.validate().unwrap();
            assert_eq!(c.client.token.hmac_secret_key.len(), 48);
            assert_eq!(c.http_api.key.len(), 48);
            assert!(!c.admin.password.is_empty() && !c.admin.secret.is_empty());
            assert_ne!(c.client.token.hmac_secret_key, c.http_api.key);
            let again = Config::from_str_with_format(&genconfig(format).unwrap(), format).unwrap();
            assert_ne!(again.http_api.key, c.http_api.key);
        }
    }
}
