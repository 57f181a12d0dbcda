//! Loading: defaults, then the file, then the environment ([`super::env`]), into a typed
//! [`Config`]. Unknown options are refused with their path and a "did you mean", values of the
//! wrong type name their option, and everything wrong is reported at once ([`ConfigReport`]).

use std::path::Path;

use serde_json::{Map, Value};

use super::env::{Origins, apply_env, process_env};
use super::format::parse_tree;
use super::{ChannelNamespace, Config, ConfigError, ConfigFormat};

impl Config {
    /// Loads the config: defaults, then the file at `path` (format from its extension) when
    /// given, then `HERALD_*` environment variables; then [`Config::validate`]s it.
    ///
    /// Command-line flags are applied by the caller afterwards (see `cli::Cli::load_config`),
    /// which validates again.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        Config::load_with_env(path, process_env())
    }

    /// [`Config::read_with_env`] with the process's environment.
    pub fn read(path: Option<&Path>) -> Result<ConfigReport, ConfigError> {
        Config::read_with_env(path, process_env())
    }

    /// [`Config::load`] with the environment given explicitly (tests; embedding).
    pub fn load_with_env<I>(path: Option<&Path>, env: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let mut report = Config::read_with_env(path, env)?;
        if let Some(config) = &report.config {
            if let Err(e) = config.validate() {
                report.problems.extend(e.into_problems());
            }
        }
        report.into_config()
    }

    /// Reads the config like [`Config::load_with_env`] but without validating it, and goes on
    /// after unknown options so that all of them are reported at once. Fails only when the file
    /// or an environment variable cannot be read at all.
    pub fn read_with_env<I>(path: Option<&Path>, env: I) -> Result<ConfigReport, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let mut tree = match path {
            Some(path) => {
                let format =
                    ConfigFormat::from_path(path).ok_or_else(|| ConfigError::UnknownFormat {
                        path: path.to_path_buf(),
                    })?;
                let text = std::fs::read_to_string(path).map_err(|source| {
                    if source.kind() == std::io::ErrorKind::NotFound {
                        ConfigError::NotFound {
                            path: path.to_path_buf(),
                        }
                    } else {
                        ConfigError::Read {
                            path: path.to_path_buf(),
                            source,
                        }
                    }
                })?;
                parse_tree(&text, format, &path.display().to_string())?
            }
            None => Value::Object(Map::new()),
        };
        let (origins, mut warnings) = apply_env(&mut tree, env)?;
        let loaded = from_tree_lenient(tree, &origins);
        warnings.extend(loaded.warnings);
        let config = loaded.config.map(|mut config| {
            config.load_warnings = warnings;
            config
        });
        Ok(ConfigReport {
            config,
            problems: loaded.problems,
        })
    }

    /// Parses config text in the given format (no environment, no validation): for tests and for
    /// checking a file's content.
    pub fn from_str_with_format(text: &str, format: ConfigFormat) -> Result<Config, ConfigError> {
        let tree = parse_tree(text, format, "config")?;
        from_tree(tree, &Origins::default())
    }
}

/// Turns the file/env tree into a typed config: unknown keys are refused with their path, scalar
/// strings are coerced where the option is a number or boolean (as Centrifugo's loader does),
/// then serde checks every value's type, reporting the option's path.
fn from_tree(tree: Value, origins: &Origins) -> Result<Config, ConfigError> {
    let loaded = from_tree_lenient(tree, origins);
    ConfigError::from_problems(loaded.problems)?;
    loaded
        .config
        .ok_or_else(|| ConfigError::Invalid("the configuration could not be read".to_string()))
}

/// What [`Config::read_with_env`] found: the config (when every known option has a value of
/// the right type; its `load_warnings` hold the notes made while reading) and every problem.
#[derive(Debug)]
pub struct ConfigReport {
    /// The config, unless a value had the wrong type.
    pub config: Option<Config>,
    /// Unknown options, values of the wrong type and (once validated) inconsistent or refused
    /// options; empty when the config is usable.
    pub problems: Vec<ConfigError>,
}

impl ConfigReport {
    /// The config when there are no problems; all the problems otherwise.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        ConfigError::from_problems(self.problems)?;
        self.config
            .ok_or_else(|| ConfigError::Invalid("the configuration could not be read".to_string()))
    }
}

/// What [`from_tree_lenient`] made of a tree.
struct Loaded {
    /// The config, when the known options all have values of the right type.
    config: Option<Config>,
    /// Unknown options (each removed from the tree so that the rest could be read) and the
    /// first value of the wrong type.
    problems: Vec<ConfigError>,
    /// Options that Centrifugo knows and Herald does not (ignored, with a warning).
    warnings: Vec<String>,
}

/// [`from_tree`] that goes on after unknown options, so that all of them are reported at once.
fn from_tree_lenient(mut tree: Value, origins: &Origins) -> Loaded {
    let template = default_tree();
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    check_and_coerce(
        &mut tree,
        &template,
        "",
        origins,
        &mut problems,
        &mut warnings,
    );
    let config = match serde_path_to_error::deserialize::<_, Config>(tree) {
        Ok(config) => Some(config),
        Err(err) => {
            let path = err.path().to_string();
            problems.push(ConfigError::InvalidValue {
                origin: origins.for_path(&path),
                message: err.into_inner().to_string(),
                path,
            });
            None
        }
    };
    Loaded {
        config,
        problems,
        warnings,
    }
}

/// The default config as a JSON tree: the set of known option paths and their value kinds.
pub(super) fn default_tree() -> Value {
    // Serializing plain data structs to a `Value` cannot fail (all keys are strings).
    serde_json::to_value(Config::default()).unwrap_or(Value::Null)
}

/// Element templates of lists whose elements are option objects.
pub(super) fn element_template(path: &str) -> Option<Value> {
    match path {
        "channel.namespaces" => serde_json::to_value(ChannelNamespace::default()).ok(),
        "proxies" => serde_json::to_value(super::ProxyConfig::default()).ok(),
        "rpc.namespaces" => serde_json::to_value(super::RpcNamespace::default()).ok(),
        _ => None,
    }
}

pub(super) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn check_and_coerce(
    input: &mut Value,
    template: &Value,
    path: &str,
    origins: &Origins,
    problems: &mut Vec<ConfigError>,
    warnings: &mut Vec<String>,
) {
    match (input, template) {
        // A map whose keys are the user's (a proxy's `http.static_headers`): its default is
        // empty, and no key of it is an option.
        (Value::Object(_), Value::Object(known)) if known.is_empty() => {}
        (Value::Object(map), Value::Object(known)) => {
            map.retain(|key, _| {
                if known.contains_key(key) {
                    return true;
                }
                let child = join(path, key);
                if crate::config::audit::is_centrifugo_option(&child) {
                    warnings.push(format!(
                        "{child}: a Centrifugo option that Herald does not implement; ignored"
                    ));
                } else {
                    problems.push(ConfigError::UnknownOption {
                        suggestion: closest(key, known.keys()).map(|k| join(path, k)),
                        origin: origins.for_path(&child),
                        path: child,
                    });
                }
                false
            });
            for (key, value) in map.iter_mut() {
                if let Some(t) = known.get(key) {
                    check_and_coerce(value, t, &join(path, key), origins, problems, warnings);
                }
            }
        }
        (Value::Array(items), Value::Array(_)) => {
            if let Some(t) = element_template(path) {
                for (i, item) in items.iter_mut().enumerate() {
                    let at = format!("{path}[{i}]");
                    check_and_coerce(item, &t, &at, origins, problems, warnings);
                }
            }
        }
        (value @ Value::String(_), Value::Number(_)) => {
            if let Some(n) = value.as_str().and_then(parse_number) {
                *value = n;
            }
        }
        (value @ Value::String(_), Value::Bool(_)) => {
            if let Some(b) = value.as_str().and_then(parse_bool) {
                *value = Value::Bool(b);
            }
        }
        _ => {}
    }
}

fn parse_number(s: &str) -> Option<Value> {
    let s = s.trim();
    if let Ok(n) = s.parse::<u64>() {
        return Some(Value::from(n));
    }
    if let Ok(n) = s.parse::<i64>() {
        return Some(Value::from(n));
    }
    s.parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map(Value::Number)
}

/// Go's `strconv.ParseBool`, which Centrifugo uses for environment variables.
fn parse_bool(s: &str) -> Option<bool> {
    match s.trim() {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// The known key closest to `key` (typo suggestions), if it is close enough to be useful.
fn closest<'a>(key: &str, known: impl Iterator<Item = &'a String>) -> Option<&'a str> {
    known
        .map(|k| (edit_distance(key, k), k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.as_str())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;
    use crate::config::*;

    #[test]
    fn defaults_match_centrifugo() {
        let c = Config::default();
        assert_eq!(c.http_server.address, "127.0.0.1");
        assert_eq!(c.http_server.port, 8000);
        assert_eq!(c.client.ping_interval, Duration::from_secs(25));
        assert_eq!(c.client.pong_timeout, Duration::from_secs(8));
        assert_eq!(c.client.queue_max_size, 1_048_576);
        assert_eq!(c.client.channel_limit, 128);
        assert_eq!(c.client.stale_close_delay, Duration::from_secs(10));
        assert_eq!(c.client.expired_close_delay, Duration::from_secs(25));
        assert_eq!(c.client.history_max_publication_limit, 300);
        assert_eq!(c.client.recovery_max_publication_limit, 300);
        assert_eq!(c.websocket.message_size_limit, 65_536);
        assert_eq!(c.websocket.write_timeout, Duration::from_secs(1));
        assert_eq!(c.http_api.handler_prefix, "/api");
        assert_eq!(c.http_server.body_read_timeout, Duration::from_secs(10));
        assert_eq!(c.http_server.unauthenticated_request_limit, 128);
        assert_eq!(c.channel.max_length, 255);
        assert_eq!(c.data_dir, PathBuf::from("./herald-data"));
        assert_eq!(c.history.durability, Durability::Fsync);
        assert!(c.client.allowed_origins.is_empty());
        assert!(!c.client.allow_anonymous_connect_without_token);
        c.validate().unwrap();
        // An empty file is the defaults.
        assert_eq!(json("{}").unwrap(), c);
        assert_eq!(
            Config::from_str_with_format("", ConfigFormat::Toml).unwrap(),
            c
        );
        assert_eq!(
            Config::from_str_with_format("", ConfigFormat::Yaml).unwrap(),
            c
        );
    }

    #[test]
    fn full_centrifugo_json_config_loads() {
        let c = json(FULL_JSON).unwrap();
        // Parsed whole; what Herald does not implement is refused (all of it at once) or
        // warned about, each by its path.
        let refused: Vec<String> = c
            .validate()
            .expect_err("an internal port is refused")
            .into_problems()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert!(refused[0].contains("http_server.internal_port: not implemented"));
        assert_eq!(c.http_server.address, "0.0.0.0");
        assert_eq!(c.http_server.port, 9000);
        assert_eq!(c.http_server.internal_port, "9001");
        assert_eq!(c.log.level, LogLevel::Debug);
        assert_eq!(c.engine.kind, EngineType::Redis);
        assert_eq!(c.engine.redis.address, ["redis:6379"]);
        assert_eq!(c.engine.redis.presence_ttl, Duration::from_secs(30));
        assert_eq!(c.client.token.hmac_secret_key, "s3cret");
        assert_eq!(c.client.token.audience, "herald");
        assert!(c.client.allow_anonymous_connect_without_token);
        assert_eq!(c.client.ping_interval, Duration::from_secs(12));
        assert_eq!(c.client.pong_timeout, Duration::from_secs(5));
        assert_eq!(c.client.stale_close_delay, Duration::from_secs(90));
        assert_eq!(c.client.expired_close_delay, Duration::from_millis(500));
        assert_eq!(c.client.queue_max_size, 2_097_152);
        assert_eq!(c.client.channel_limit, 64);
        assert_eq!(c.client.user_connection_limit, 3);
        assert!(c.client.origin_allowed("https://EXAMPLE.com"));
        assert!(!c.client.origin_allowed("https://evil.com"));
        let mut client = ClientConfig::default();
        assert!(!client.origin_allowed("https://a.com"));
        client.allowed_origins = vec!["https://*.example.com".into()];
        assert!(client.origin_allowed("https://chat.Example.com"));
        assert!(!client.origin_allowed("https://example.com"));
        assert!(!client.origin_allowed("https://chat.example.com.evil.net"));
        client.allowed_origins = vec!["*".into()];
        assert!(client.origin_allowed("http://anything:8080"));
        assert_eq!(c.channel.max_length, 128);
        assert_eq!(c.channel.history_meta_ttl, Duration::from_secs(168 * 3600));
        let chat = c.namespace("chat").unwrap();
        assert!(chat.presence && chat.join_leave && chat.force_push_join_leave);
        assert_eq!(chat.history_size, 100);
        assert_eq!(chat.history_ttl, Duration::from_secs(720 * 3600));
        assert_eq!(chat.force_recovery_mode, RecoveryMode::Cache);
        assert!(chat.history_enabled());
        let personal = c.namespace("personal").unwrap();
        assert_eq!(personal.force_recovery_mode, RecoveryMode::Stream);
        assert!(c.namespace("").unwrap().presence);
        assert!(c.namespace("nope").is_none());
        assert!(c.websocket.compression);
        assert_eq!(c.websocket.write_timeout, Duration::from_secs(2));
        assert_eq!(c.http_api.key, "api-key");
        assert_eq!(c.http_api.handler_prefix, "/herald/api");
        assert!(c.admin.enabled && c.prometheus.enabled && c.health.enabled);
        assert_eq!(c.history.durability, Durability::Os);
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/herald"));
        assert!(c.demo);
        let warned: Vec<String> = c
            .warnings()
            .iter()
            .map(|w| w.split(':').next().unwrap_or_default().to_string())
            .collect();
        // `allow_tags_filter` is implemented; only the gRPC API is not.
        assert_eq!(warned, ["grpc_api"]);
    }

    #[test]
    fn toml_and_yaml_equal_json() {
        let from_json = json(FULL_JSON).unwrap();
        let from_toml = Config::from_str_with_format(FULL_TOML, ConfigFormat::Toml).unwrap();
        assert_eq!(from_toml, from_json);
        let yaml =
            serde_yaml_ng::to_string(&serde_json::from_str::<Value>(FULL_JSON).unwrap()).unwrap();
        let from_yaml = Config::from_str_with_format(&yaml, ConfigFormat::Yaml).unwrap();
        assert_eq!(from_yaml, from_json);
    }

    #[test]
    fn load_picks_format_from_extension() {
        // The full configs set options Herald refuses: both formats are read alike, and
        // refused alike.
        let path = write_temp("herald.toml", FULL_TOML);
        let from_toml = Config::load_with_env(Some(&path), no_env()).unwrap_err();
        assert!(
            from_toml.to_string().contains("http_server.internal_port"),
            "{from_toml}"
        );
        let path = write_temp("herald.json", FULL_JSON);
        let from_json = Config::load_with_env(Some(&path), no_env()).unwrap_err();
        assert_eq!(from_json.to_string(), from_toml.to_string());
        let path = write_temp("herald.toml", "[http_server]\nport = 9000\n");
        let c = Config::load_with_env(Some(&path), no_env()).unwrap();
        assert_eq!(c.http_server.port, 9000);
        let path = write_temp("herald.json", r#"{"http_server": {"port": 9000}}"#);
        assert_eq!(Config::load_with_env(Some(&path), no_env()).unwrap(), c);

        let path = write_temp("herald.ini", "x=1");
        let err = Config::load_with_env(Some(&path), no_env()).unwrap_err();
        assert!(matches!(err, ConfigError::UnknownFormat { .. }), "{err}");
        let err =
            Config::load_with_env(Some(Path::new("/nonexistent/h.json")), no_env()).unwrap_err();
        assert!(err.to_string().contains("not found"), "{err}");
    }

    #[test]
    fn unknown_key_names_its_path() {
        let err = json(r#"{"client": {"pingg_interval": "25s"}}"#).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(r#"unknown option "client.pingg_interval""#),
            "{msg}"
        );
        assert!(
            msg.contains(r#"did you mean "client.ping_interval""#),
            "{msg}"
        );

        let err = json(r#"{"totally_unrelated": 1}"#).unwrap_err();
        assert_eq!(err.to_string(), r#"unknown option "totally_unrelated""#);

        let err = json(
            r#"{"channel": {"namespaces": [{"name": "a"}, {"name": "b", "presense": true}]}}"#,
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(r#"unknown option "channel.namespaces[1].presense""#),
            "{msg}"
        );
        assert!(
            msg.contains(r#"did you mean "channel.namespaces[1].presence""#),
            "{msg}"
        );

        let err = Config::from_str_with_format(
            "[client.token]\nhmac_secret = \"x\"\n",
            ConfigFormat::Toml,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains(r#"unknown option "client.token.hmac_secret""#),
            "{err}"
        );
    }

    #[test]
    fn bad_values_name_the_key_and_type() {
        let err = json(r#"{"client": {"ping_interval": 25}}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"client.ping_interval: expected a duration like "25s", got 25"#
        );
        let err = json(r#"{"client": {"ping_interval": "25 seconds"}}"#).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with(
                r#"client.ping_interval: expected a duration like "25s", got "25 seconds""#
            ),
            "{msg}"
        );
        let err = json(r#"{"channel": {"namespaces": [{"name": "a", "history_ttl": true}]}}"#)
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("channel.namespaces[0].history_ttl: "),
            "{err}"
        );
        let err = json(r#"{"http_server": {"port": "eighty"}}"#).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("http_server.port: ") && msg.contains("u16"),
            "{msg}"
        );
        let err = json(r#"{"http_server": {"port": 70000}}"#).unwrap_err();
        assert!(err.to_string().starts_with("http_server.port: "), "{err}");
        let err = json(r#"{"engine": {"type": "postgres"}}"#).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("engine.type: ") && msg.contains("redis"),
            "{msg}"
        );
        let err = json(r#"{"client": {"allowed_origins": "*"}}"#).unwrap_err();
        assert!(
            err.to_string().starts_with("client.allowed_origins: "),
            "{err}"
        );
        let err = json(r#"{"client": 5}"#).unwrap_err();
        assert!(err.to_string().starts_with("client: "), "{err}");
        let err = json(r#"{"client": "#).unwrap_err();
        assert!(matches!(err, ConfigError::Syntax { .. }), "{err}");
        let err = json("[1]").unwrap_err();
        assert!(
            err.to_string().contains("top level must be an object"),
            "{err}"
        );
    }

    #[test]
    fn quoted_numbers_and_booleans_are_accepted_like_centrifugo() {
        let c =
            json(r#"{"http_server": {"port": "9000"}, "client": {"insecure": "true"}}"#).unwrap();
        assert_eq!(c.http_server.port, 9000);
        assert!(c.client.insecure);
    }
}
