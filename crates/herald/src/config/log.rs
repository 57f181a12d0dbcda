//! `log`: how much Herald logs, where, and in which format.

use serde::{Deserialize, Serialize};

/// Minimum level of log records that are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// No logs at all.
    None,
    /// Everything, very verbose.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation (default).
    #[default]
    Info,
    /// Something looks wrong.
    Warn,
    /// Something failed.
    Error,
}

impl LogLevel {
    /// The level as a `tracing` filter directive (`"off"` for [`LogLevel::None`]).
    pub fn as_filter(self) -> &'static str {
        match self {
            LogLevel::None => "off",
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// How log records are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (default).
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// `log`: logging settings.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// Minimum level: none, trace, debug, info (default), warn, error.
    pub level: LogLevel,
    /// Write logs to this file instead of stdout; empty = stdout.
    pub file: String,
    /// Herald: `text` (default) or `json`. Also `--log-format`.
    pub format: LogFormat,
}
