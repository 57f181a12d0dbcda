//! The secrets demo mode makes for itself, kept in `<data_dir>/demo-secrets.json`.
//!
//! `--demo` without a config (or with one that leaves them empty) needs a token secret, a
//! server API key, an admin password and an admin session secret. Made anew at each start,
//! every restart would end the admin's session and invalidate every chat user's token, so the
//! first start writes them to this file (readable by its owner only, mode 0600) and later
//! starts with the same `data_dir` read them back. Options the config sets always win: the
//! file only fills what the config leaves empty (see [`DemoSecrets::fill`]).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{Config, ConfigError, random_secret};

/// Name of the file in `data_dir`.
pub const FILE_NAME: &str = "demo-secrets.json";

/// The demo's generated secrets (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DemoSecrets {
    /// Signs the chat's connection tokens (`client.token.hmac_secret_key`).
    pub token_hmac_secret_key: String,
    /// The server API key (`http_api.key`).
    pub http_api_key: String,
    /// The admin UI's password (`admin.password`).
    pub admin_password: String,
    /// Signs admin session tokens (`admin.secret`).
    pub admin_secret: String,
}

/// Which options [`DemoSecrets::fill`] took from the file (for the start-up banner).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Filled {
    /// `client.token.hmac_secret_key`.
    pub token_key: bool,
    /// `http_api.key`.
    pub api_key: bool,
    /// `admin.password`.
    pub admin_password: bool,
}

/// What demo mode took from its secrets file: said in the start-up banner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Used {
    /// The file.
    pub path: PathBuf,
    /// Whether this start made it.
    pub created: bool,
    /// Which options came from it.
    pub filled: Filled,
}

impl DemoSecrets {
    /// Fresh random secrets.
    pub fn generate() -> DemoSecrets {
        DemoSecrets {
            token_hmac_secret_key: random_secret(48),
            http_api_key: random_secret(32),
            admin_password: random_secret(16),
            admin_secret: random_secret(48),
        }
    }

    /// Where the file is for `data_dir`.
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(FILE_NAME)
    }

    /// Reads the file of `data_dir`; `Ok(None)` when there is none yet.
    pub fn load(data_dir: &Path) -> Result<Option<DemoSecrets>, ConfigError> {
        let path = Self::path(data_dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(ConfigError::Read { path, source }),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| ConfigError::Syntax {
                origin: format!("{} (delete it to make new demo secrets)", path.display()),
                format: "JSON",
                message: e.to_string(),
            })
    }

    /// Reads the file of `data_dir`, or makes new secrets and writes them there (creating the
    /// directory, the file with mode 0600). Returns the secrets and whether they are new.
    pub fn load_or_create(data_dir: &Path) -> Result<(DemoSecrets, bool), ConfigError> {
        if let Some(secrets) = Self::load(data_dir)? {
            return Ok((secrets, false));
        }
        let secrets = Self::generate();
        let path = Self::path(data_dir);
        let write_err = |source| ConfigError::Read {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(data_dir).map_err(write_err)?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let text = serde_json::to_string_pretty(&secrets).unwrap_or_default();
        let mut file = options.open(&path).map_err(write_err)?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.write_all(b"\n"))
            .and_then(|()| file.sync_all())
            .map_err(write_err)?;
        Ok((secrets, true))
    }

    /// Whether `config` leaves any of the options [`DemoSecrets::fill`] fills empty (if not,
    /// the demo needs no secrets file).
    pub fn needed(config: &Config) -> bool {
        config.client.token.hmac_secret_key.is_empty()
            || (config.http_api.key.is_empty() && !config.http_api.insecure)
            || (config.admin.password.is_empty() && !config.admin.insecure)
            || config.admin.secret.is_empty()
    }

    /// Fills the options `config` leaves empty with these secrets: the token secret, the API
    /// key (unless `http_api.insecure`), the admin password (unless `admin.insecure`) and the
    /// admin session secret.
    pub fn fill(&self, config: &mut Config) -> Filled {
        let mut filled = Filled::default();
        if config.client.token.hmac_secret_key.is_empty() {
            config.client.token.hmac_secret_key = self.token_hmac_secret_key.clone();
            filled.token_key = true;
        }
        if config.http_api.key.is_empty() && !config.http_api.insecure {
            config.http_api.key = self.http_api_key.clone();
            filled.api_key = true;
        }
        if config.admin.password.is_empty() && !config.admin.insecure {
            config.admin.password = self.admin_password.clone();
            filled.admin_password = true;
        }
        if config.admin.secret.is_empty() {
            config.admin.secret = self.admin_secret.clone();
        }
        filled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_then_read_back_with_owner_only_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let (first, created) = DemoSecrets::load_or_create(&data).unwrap();
        assert!(created);
        let (again, created) = DemoSecrets::load_or_create(&data).unwrap();
        assert!(!created);
        assert_eq!(first, again);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(DemoSecrets::path(&data))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(DemoSecrets::path(&data), "{").unwrap();
        let err = DemoSecrets::load(&data).unwrap_err().to_string();
        assert!(err.contains("delete it"), "{err}");
    }

    #[test]
    fn fills_only_what_the_config_leaves_empty() {
        let secrets = DemoSecrets::generate();
        let mut config = Config::default();
        config.admin.password = "mine".into();
        let filled = secrets.fill(&mut config);
        assert_eq!(
            filled,
            Filled {
                token_key: true,
                api_key: true,
                admin_password: false
            }
        );
        assert_eq!(config.admin.password, "mine");
        assert_eq!(config.admin.secret, secrets.admin_secret);
        assert_eq!(
            config.client.token.hmac_secret_key,
            secrets.token_hmac_secret_key
        );
        assert!(!DemoSecrets::needed(&config));
        assert!(DemoSecrets::needed(&Config::default()));
    }
}
