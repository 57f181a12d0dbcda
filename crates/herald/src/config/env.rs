//! The environment overlay: `HERALD_*` variables set options over the file
//! (`HERALD_CLIENT_TOKEN_HMAC_SECRET_KEY` sets `client.token.hmac_secret_key`), including
//! Centrifugo's per-namespace form, and remember which variable set what for error messages.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::format::kind_name;
use super::load::{default_tree, element_template, join};
use super::{ConfigError, ENV_PREFIX};

/// The process's environment variables with names and values as strings.
pub(super) fn process_env() -> impl Iterator<Item = (String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.to_string_lossy().into_owned())))
}

/// Which option paths were set from which environment variable (for error messages).
#[derive(Default)]
pub(super) struct Origins(pub(super) Vec<(String, String)>);

impl Origins {
    /// The environment variable that set `path` or one of its parents.
    pub(super) fn for_path(&self, path: &str) -> Option<String> {
        self.0
            .iter()
            .filter(|(p, _)| {
                path == p
                    || path
                        .strip_prefix(p.as_str())
                        .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
            })
            .max_by_key(|(p, _)| p.len())
            .map(|(_, var)| var.clone())
    }
}

/// The environment variable for an option path: `client.token.hmac_secret_key` →
/// `HERALD_CLIENT_TOKEN_HMAC_SECRET_KEY`.
pub fn env_var_name(path: &str) -> String {
    format!(
        "{ENV_PREFIX}{}",
        path.replace('.', "_").to_ascii_uppercase()
    )
}

/// Every option path (objects included, parents before children) that an environment variable
/// can set, with the default value that tells its kind.
fn env_paths(template: &Value, path: &str, out: &mut Vec<(String, Value)>) {
    if let Value::Object(map) = template {
        for (key, value) in map {
            let child = join(path, key);
            out.push((child.clone(), value.clone()));
            env_paths(value, &child, out);
        }
    }
}

/// Applies `HERALD_*` variables onto the tree. Scalars are set as strings (coerced to numbers or
/// booleans later, by option kind); objects and opaque sections take JSON; lists take JSON or a
/// comma/space-separated list of strings. Returns where each path came from, and warnings for
/// `HERALD_*` variables that name no option.
///
/// Named namespaces also take Centrifugo's environment form (see [`apply_namespace_env`]):
/// `HERALD_CHANNEL_NAMESPACES=chat news` plus `HERALD_CHANNEL_NAMESPACES_CHAT_PRESENCE=true`.
pub(super) fn apply_env<I>(tree: &mut Value, env: I) -> Result<(Origins, Vec<String>), ConfigError>
where
    I: IntoIterator<Item = (String, String)>,
{
    let vars: BTreeMap<String, String> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX))
        .collect();
    let mut origins = Origins::default();
    let mut warnings = Vec::new();
    if vars.is_empty() {
        return Ok((origins, warnings));
    }
    let mut paths = Vec::new();
    env_paths(&default_tree(), "", &mut paths);
    let mut known = BTreeSet::new();
    for (path, kind) in &paths {
        let var = env_var_name(path);
        known.insert(var.clone());
        let Some(raw) = vars.get(&var) else { continue };
        let env_err = |source: EnvValueError| ConfigError::Env {
            var: var.clone(),
            source,
        };
        let value = env_value(path, kind, raw).map_err(env_err)?;
        set_path(tree, path, value).map_err(env_err)?;
        origins.0.push((path.clone(), var.clone()));
    }
    apply_namespace_env(tree, &vars, &mut origins, &mut known)?;
    for var in vars.keys().filter(|v| !known.contains(*v)) {
        warnings.push(format!(
            "environment variable {var} does not name a Herald option and was ignored"
        ));
    }
    Ok((origins, warnings))
}

/// Why an environment variable's value cannot be applied to its option; the message names the
/// option and says what value it takes.
#[derive(Debug, thiserror::Error)]
pub enum EnvValueError {
    /// A group of options given something other than a JSON object.
    #[error("{path} is a group of options: expected a JSON object, got {found}")]
    NotAnObject {
        /// The option path.
        path: String,
        /// What the value is ("a list", "a string", …).
        found: &'static str,
    },
    /// A group of options given text that is not JSON.
    #[error("{path} is a group of options: expected a JSON object ({source})")]
    ObjectSyntax {
        /// The option path.
        path: String,
        /// The JSON parser's complaint.
        #[source]
        source: serde_json::Error,
    },
    /// A list given as `[...]` that is not valid JSON.
    #[error("{path}: not a valid JSON list ({source})")]
    ListSyntax {
        /// The option path.
        path: String,
        /// The JSON parser's complaint.
        #[source]
        source: serde_json::Error,
    },
    /// The config file has a value where the variable's option needs a group of options.
    #[error("cannot set {path}: {walked} in the config file is not a group of options")]
    NotAGroup {
        /// The option path the variable sets.
        path: String,
        /// The part of it that the file gives a plain value.
        walked: String,
    },
}

/// The value of option `path` (whose default is `kind`) from the environment string `raw`.
fn env_value(path: &str, kind: &Value, raw: &str) -> Result<Value, EnvValueError> {
    Ok(match kind {
        Value::Object(_) => match serde_json::from_str::<Value>(raw) {
            Ok(v @ Value::Object(_)) => v,
            Ok(other) => {
                return Err(EnvValueError::NotAnObject {
                    path: path.to_owned(),
                    found: kind_name(&other),
                });
            }
            Err(source) => {
                return Err(EnvValueError::ObjectSyntax {
                    path: path.to_owned(),
                    source,
                });
            }
        },
        Value::Array(_) => {
            if raw.trim_start().starts_with('[') {
                serde_json::from_str(raw).map_err(|source| EnvValueError::ListSyntax {
                    path: path.to_owned(),
                    source,
                })?
            } else if element_template(path).is_some() {
                // A list of named option groups (namespaces): Centrifugo's environment form
                // is their names, separated by spaces; their options come from variables of
                // their own (see `apply_namespace_env`).
                Value::Array(
                    raw.split_whitespace()
                        .map(|name| serde_json::json!({ "name": name }))
                        .collect(),
                )
            } else {
                Value::Array(
                    raw.split(|c: char| c == ',' || c.is_whitespace())
                        .filter(|s| !s.is_empty())
                        .map(|s| Value::String(s.to_string()))
                        .collect(),
                )
            }
        }
        Value::Null => serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_owned())),
        _ => Value::String(raw.to_owned()),
    })
}

/// Centrifugo's per-namespace environment variables: for each namespace in
/// `channel.namespaces` (from the file or from `HERALD_CHANNEL_NAMESPACES`, in either form),
/// `HERALD_CHANNEL_NAMESPACES_<NAME>_<OPTION>` sets that option of it. `<NAME>` is the
/// namespace's name in capitals with `.` and `-` as `_`, as Centrifugo spells it; the
/// variables it reads are added to `known`.
fn apply_namespace_env(
    tree: &mut Value,
    vars: &BTreeMap<String, String>,
    origins: &mut Origins,
    known: &mut BTreeSet<String>,
) -> Result<(), ConfigError> {
    const LIST: &str = "channel.namespaces";
    let Some(template) = element_template(LIST) else {
        return Ok(());
    };
    let mut options = Vec::new();
    env_paths(&template, "", &mut options);
    let list_var = env_var_name(LIST);
    let Some(Value::Array(namespaces)) = tree.pointer_mut("/channel/namespaces") else {
        return Ok(());
    };
    for (i, namespace) in namespaces.iter_mut().enumerate() {
        let Some(name) = namespace.get("name").and_then(Value::as_str) else {
            continue;
        };
        let prefix = format!(
            "{list_var}_{}_",
            name.replace(['.', '-'], "_").to_ascii_uppercase()
        );
        for (option, kind) in options.iter().filter(|(o, _)| o != "name") {
            let var = format!("{prefix}{}", option.replace('.', "_").to_ascii_uppercase());
            let Some(raw) = vars.get(&var) else { continue };
            known.insert(var.clone());
            let path = format!("{LIST}[{i}].{option}");
            let env_err = |source: EnvValueError| ConfigError::Env {
                var: var.clone(),
                source,
            };
            let value = env_value(&path, kind, raw).map_err(env_err)?;
            set_path(namespace, option, value).map_err(env_err)?;
            origins.0.push((path, var.clone()));
        }
    }
    Ok(())
}

/// Sets option `path` (dotted) in `tree`, creating the groups on the way.
fn set_path(tree: &mut Value, path: &str, value: Value) -> Result<(), EnvValueError> {
    let mut node = tree;
    let mut walked = String::new();
    let mut keys = path.split('.').peekable();
    while let Some(key) = keys.next() {
        let Value::Object(map) = node else {
            return Err(EnvValueError::NotAGroup {
                path: path.to_owned(),
                walked,
            });
        };
        if keys.peek().is_none() {
            map.insert(key.to_string(), value);
            return Ok(());
        }
        walked = join(&walked, key);
        node = map
            .entry(key.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use std::collections::BTreeSet;
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;
    use crate::config::*;

    #[test]
    fn env_overrides_file() {
        let path = write_temp(
            "c.json",
            r#"{"http_server": {"port": 9000}, "http_api": {"key": "file"}}"#,
        );
        let c = Config::load_with_env(
            Some(&path),
            env(&[
                ("HERALD_HTTP_API_KEY", "from-env"),
                ("HERALD_CLIENT_TOKEN_HMAC_SECRET_KEY", "env-secret"),
                ("HERALD_HTTP_SERVER_PORT", "8123"),
                ("HERALD_CLIENT_PING_INTERVAL", "40s"),
                (
                    "HERALD_CLIENT_ALLOW_ANONYMOUS_CONNECT_WITHOUT_TOKEN",
                    "true",
                ),
                (
                    "HERALD_CLIENT_ALLOWED_ORIGINS",
                    "http://a.test, http://b.test",
                ),
                (
                    "HERALD_CHANNEL_NAMESPACES",
                    r#"[{"name":"chat","presence":true}]"#,
                ),
                ("HERALD_CHANNEL_WITHOUT_NAMESPACE_HISTORY_SIZE", "10"),
                ("HERALD_CHANNEL_WITHOUT_NAMESPACE_HISTORY_TTL", "1h"),
                ("HERALD_DATA_DIR", "/tmp/hd"),
                ("HERALD_HISTORY_DURABILITY", "os"),
                ("HERALD_LOG_LEVEL", "warn"),
                ("HERALD_HTTP_SERVER_BODY_READ_TIMEOUT", "2500ms"),
                ("HERALD_HTTP_SERVER_UNAUTHENTICATED_REQUEST_LIMIT", "7"),
                ("HERALD_NOT_AN_OPTION", "x"),
                ("PATH", "/bin"),
            ]),
        )
        .unwrap();
        assert_eq!(c.http_api.key, "from-env");
        assert_eq!(c.client.token.hmac_secret_key, "env-secret");
        assert_eq!(c.http_server.port, 8123);
        assert_eq!(c.client.ping_interval, Duration::from_secs(40));
        assert!(c.client.allow_anonymous_connect_without_token);
        assert_eq!(
            c.client.allowed_origins,
            vec!["http://a.test", "http://b.test"]
        );
        assert!(c.namespace("chat").unwrap().presence);
        assert!(c.namespace("").unwrap().history_enabled());
        assert_eq!(c.data_dir, PathBuf::from("/tmp/hd"));
        assert_eq!(c.history.durability, Durability::Os);
        assert_eq!(c.log.level, LogLevel::Warn);
        assert_eq!(c.http_server.body_read_timeout, Duration::from_millis(2500));
        assert_eq!(c.http_server.unauthenticated_request_limit, 7);
        assert_eq!(c.load_warnings.len(), 1);
        assert!(c.load_warnings[0].contains("HERALD_NOT_AN_OPTION"));
    }

    #[test]
    fn bad_env_values_name_the_variable() {
        let err = Config::load_with_env(None, env(&[("HERALD_CLIENT_PING_INTERVAL", "soon")]))
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with(
                "client.ping_interval (from HERALD_CLIENT_PING_INTERVAL): expected a duration"
            ),
            "{msg}"
        );
        let err =
            Config::load_with_env(None, env(&[("HERALD_HTTP_SERVER_PORT", "x")])).unwrap_err();
        assert!(err.to_string().contains("HERALD_HTTP_SERVER_PORT"), "{err}");
        let err = Config::load_with_env(None, env(&[("HERALD_CLIENT", "nope")])).unwrap_err();
        assert!(err.to_string().contains("HERALD_CLIENT"), "{err}");
        let err = Config::load_with_env(
            None,
            env(&[("HERALD_CHANNEL_NAMESPACES", r#"[{"name":"a","bogus":1}]"#)]),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(
                r#"unknown option "channel.namespaces[0].bogus" (from HERALD_CHANNEL_NAMESPACES)"#
            ),
            "{msg}"
        );
    }

    #[test]
    fn named_namespaces_take_centrifugos_environment_form() {
        // Centrifugo v6: the list as space-separated names, each namespace's options from
        // PREFIX_CHANNEL_NAMESPACES_<NAME>_<OPTION>.
        let c = Config::load_with_env(
            None,
            env(&[
                ("HERALD_CHANNEL_NAMESPACES", "smallhistory live-feed"),
                ("HERALD_CHANNEL_NAMESPACES_SMALLHISTORY_HISTORY_SIZE", "10"),
                ("HERALD_CHANNEL_NAMESPACES_SMALLHISTORY_HISTORY_TTL", "300s"),
                (
                    "HERALD_CHANNEL_NAMESPACES_SMALLHISTORY_FORCE_RECOVERY",
                    "true",
                ),
                (
                    "HERALD_CHANNEL_NAMESPACES_LIVE_FEED_ALLOW_SUBSCRIBE_FOR_CLIENT",
                    "true",
                ),
            ]),
        )
        .unwrap();
        let small = c.namespace("smallhistory").unwrap();
        assert_eq!(small.history_size, 10);
        assert_eq!(small.history_ttl, Duration::from_secs(300));
        assert!(small.force_recovery && !small.allow_subscribe_for_client);
        let feed = c.namespace("live-feed").unwrap();
        assert!(feed.allow_subscribe_for_client && !feed.history_enabled());
        assert!(c.load_warnings.is_empty(), "{:?}", c.load_warnings);

        // The per-namespace variables also reach namespaces of the file (and of the JSON form).
        let path = write_temp(
            "ns.json",
            r#"{"channel": {"namespaces": [{"name": "chat", "presence": false}]}}"#,
        );
        let c = Config::load_with_env(
            Some(&path),
            env(&[
                ("HERALD_CHANNEL_NAMESPACES_CHAT_PRESENCE", "true"),
                ("HERALD_CHANNEL_NAMESPACES_CHAT_BOGUS", "1"),
            ]),
        )
        .unwrap();
        assert!(c.namespace("chat").unwrap().presence);
        assert_eq!(c.load_warnings.len(), 1, "{:?}", c.load_warnings);
        assert!(c.load_warnings[0].contains("HERALD_CHANNEL_NAMESPACES_CHAT_BOGUS"));

        // A bad value names the variable and the option.
        let err = Config::load_with_env(
            None,
            env(&[
                ("HERALD_CHANNEL_NAMESPACES", "chat"),
                ("HERALD_CHANNEL_NAMESPACES_CHAT_HISTORY_TTL", "soon"),
            ]),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("channel.namespaces[0].history_ttl")
                && msg.contains("HERALD_CHANNEL_NAMESPACES_CHAT_HISTORY_TTL"),
            "{msg}"
        );
    }

    #[test]
    fn env_names_are_unique() {
        let mut paths = Vec::new();
        env_paths(&default_tree(), "", &mut paths);
        let mut names = BTreeSet::new();
        for (path, _) in &paths {
            assert!(
                names.insert(env_var_name(path)),
                "two options map to {}",
                env_var_name(path)
            );
        }
        assert!(names.contains("HERALD_HTTP_API_KEY"));
        assert!(names.contains("HERALD_CLIENT_TOKEN_HMAC_SECRET_KEY"));
        assert!(names.contains("HERALD_HTTP_SERVER_PORT"));
    }
}
