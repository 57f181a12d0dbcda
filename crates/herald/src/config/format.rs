//! Config file formats (JSON, TOML, YAML): reading a text into a tree of values and rendering
//! a tree or a whole [`Config`] back.

use std::path::Path;

use serde_json::{Map, Value};

use super::{Config, ConfigError};

/// The text format of a config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ConfigFormat {
    /// JSON (Centrifugo's usual format).
    Json,
    /// TOML.
    Toml,
    /// YAML.
    Yaml,
}

impl ConfigFormat {
    /// The format a file name says: `.json`, `.toml`, `.yaml`/`.yml` (any case); `None` otherwise.
    pub fn from_path(path: &Path) -> Option<ConfigFormat> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "json" => Some(ConfigFormat::Json),
            "toml" => Some(ConfigFormat::Toml),
            "yaml" | "yml" => Some(ConfigFormat::Yaml),
            _ => None,
        }
    }

    /// The format's name for messages: "JSON", "TOML", "YAML".
    pub fn name(self) -> &'static str {
        match self {
            ConfigFormat::Json => "JSON",
            ConfigFormat::Toml => "TOML",
            ConfigFormat::Yaml => "YAML",
        }
    }
}

pub(super) fn parse_tree(
    text: &str,
    format: ConfigFormat,
    origin: &str,
) -> Result<Value, ConfigError> {
    let syntax = |message: String| ConfigError::Syntax {
        origin: origin.to_string(),
        format: format.name(),
        message,
    };
    let tree: Value = match format {
        ConfigFormat::Json => serde_json::from_str(text).map_err(|e| syntax(e.to_string()))?,
        ConfigFormat::Toml => toml::from_str(text).map_err(|e| syntax(e.to_string()))?,
        ConfigFormat::Yaml => {
            if text.trim().is_empty() {
                Value::Object(Map::new())
            } else {
                serde_yaml_ng::from_str(text).map_err(|e| syntax(e.to_string()))?
            }
        }
    };
    match tree {
        Value::Object(_) => Ok(tree),
        Value::Null => Ok(Value::Object(Map::new())),
        other => Err(syntax(format!(
            "the top level must be an object of options, found {}",
            kind_name(&other)
        ))),
    }
}

pub(super) fn kind_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

impl Config {
    /// Renders the whole config (every option, defaults included) in `format`.
    pub fn render(&self, format: ConfigFormat) -> Result<String, ConfigError> {
        let tree = serde_json::to_value(self).map_err(|e| ConfigError::Render {
            format: format.name(),
            message: e.to_string(),
        })?;
        render_tree(&drop_nulls(tree), format)
    }
}

pub(super) fn drop_nulls(v: Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, drop_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(drop_nulls).collect()),
        other => other,
    }
}

pub(super) fn render_tree(tree: &Value, format: ConfigFormat) -> Result<String, ConfigError> {
    let render = |message: String| ConfigError::Render {
        format: format.name(),
        message,
    };
    let mut text = match format {
        ConfigFormat::Json => {
            serde_json::to_string_pretty(tree).map_err(|e| render(e.to_string()))?
        }
        ConfigFormat::Toml => toml::to_string_pretty(tree).map_err(|e| render(e.to_string()))?,
        ConfigFormat::Yaml => serde_yaml_ng::to_string(tree).map_err(|e| render(e.to_string()))?,
    };
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;

    use super::*;
    use crate::config::*;

    #[test]
    fn render_round_trips() {
        let c = json(FULL_JSON).unwrap();
        for format in [ConfigFormat::Json, ConfigFormat::Toml, ConfigFormat::Yaml] {
            let text = c.render(format).unwrap();
            let back = Config::from_str_with_format(&text, format)
                .unwrap_or_else(|e| panic!("{format:?}: {e}\n{text}"));
            assert_eq!(back, c, "{format:?}");
        }
    }
}
