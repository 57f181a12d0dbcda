//! [`ConfigError`]: why a configuration could not be loaded, parsed or accepted, in messages
//! that name the file, option or environment variable at fault.

use std::path::PathBuf;

/// Why a configuration could not be loaded, parsed or accepted.
///
/// Every message names the file, option path or environment variable at fault so that a user can
/// fix it without reading Herald's source.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// An explicitly named config file does not exist.
    #[error("config file {} not found (create one with `herald genconfig`)", .path.display())]
    NotFound {
        /// The path that was asked for.
        path: PathBuf,
    },
    /// The config file exists but could not be read.
    #[error("cannot read config file {}: {source}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file name does not say which format the file is in.
    #[error(
        "cannot tell the format of config file {}: name it *.json, *.toml, *.yaml or *.yml",
        .path.display()
    )]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
    /// The text is not valid JSON/TOML/YAML.
    #[error("{origin} is not valid {format}: {message}")]
    Syntax {
        /// Where the text came from (a file path, or "config").
        origin: String,
        /// "JSON", "TOML" or "YAML".
        format: &'static str,
        /// The parser's message, with line and column where the parser gives them.
        message: String,
    },
    /// An option Herald (and Centrifugo) does not know: usually a typo.
    #[error("unknown option \"{path}\"{}", unknown_hint(.suggestion.as_deref(), .origin.as_deref()))]
    UnknownOption {
        /// Full dotted path, e.g. `client.pingg_interval` or `channel.namespaces[0].presense`.
        path: String,
        /// The closest known option at the same level, if one is close.
        suggestion: Option<String>,
        /// The environment variable the option came from, if it came from one.
        origin: Option<String>,
    },
    /// An option has a value of the wrong type or an unusable value.
    #[error("{path}{}: {message}", origin_suffix(.origin.as_deref()))]
    InvalidValue {
        /// Full dotted path of the option.
        path: String,
        /// What was expected and what was found.
        message: String,
        /// The environment variable the value came from, if it came from one.
        origin: Option<String>,
    },
    /// An environment variable could not be applied.
    #[error("environment variable {var}: {source}")]
    Env {
        /// The variable's name.
        var: String,
        /// What is wrong with its value.
        #[source]
        source: super::env::EnvValueError,
    },
    /// The options parse but do not make sense together (see [`Config::validate`](super::Config::validate)).
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// The TLS certificate or key cannot be used (checked by `herald checkconfig` as the server
    /// would at start-up).
    #[error("invalid configuration: {0}")]
    Tls(#[from] crate::tls::TlsError),
    /// Several problems, all reported at once (each names its option).
    #[error("{} problems in the configuration:{}", .0.len(), list_problems(.0))]
    Problems(Vec<ConfigError>),
    /// A config could not be rendered (genconfig).
    #[error("cannot render the config as {format}: {message}")]
    Render {
        /// The target format.
        format: &'static str,
        /// The serializer's message.
        message: String,
    },
}

fn list_problems(problems: &[ConfigError]) -> String {
    problems.iter().map(|p| format!("\n  - {p}")).collect()
}

impl ConfigError {
    /// `Ok` for no problems, the problem itself for one, [`ConfigError::Problems`] for more.
    pub fn from_problems(mut problems: Vec<ConfigError>) -> Result<(), ConfigError> {
        match problems.len() {
            0 => Ok(()),
            1 => Err(problems.remove(0)),
            _ => Err(ConfigError::Problems(problems)),
        }
    }

    /// The individual problems: this one, or each of [`ConfigError::Problems`].
    pub fn into_problems(self) -> Vec<ConfigError> {
        match self {
            ConfigError::Problems(all) => all,
            one => vec![one],
        }
    }
}

fn unknown_hint(suggestion: Option<&str>, origin: Option<&str>) -> String {
    let mut s = String::new();
    if let Some(origin) = origin {
        s.push_str(&format!(" (from {origin})"));
    }
    if let Some(suggestion) = suggestion {
        s.push_str(&format!(" (did you mean \"{suggestion}\"?)"));
    }
    s
}

fn origin_suffix(origin: Option<&str>) -> String {
    origin.map(|o| format!(" (from {o})")).unwrap_or_default()
}
