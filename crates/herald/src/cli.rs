//! The `herald` command line: flags, subcommands, and the subcommands that need no running
//! server internals (`genconfig`, `gentoken`, `checktoken`, `checkconfig`, `publish`).
//!
//! `main` parses [`Cli`], runs the server for [`Command::Serve`] (or no command) with
//! [`Cli::load_config`], and hands every other command to [`run_command`]:
//!
//! ```no_run
//! use clap::Parser;
//! let cli = herald::cli::Cli::parse();
//! if cli.is_serve() {
//!     let config = cli.load_config(); // then start the server with it
//! } else if let Err(e) = herald::cli::run_command(&cli) {
//!     eprintln!("herald: {e}");
//!     std::process::exit(e.exit_code());
//! }
//! ```

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use clap::{Parser, Subcommand};
use serde_json::Value;

use crate::auth::{self, TokenError, TokenVerifier};
use crate::config::{
    self, Config, ConfigError, ConfigFormat, ConfigReport, DEFAULT_CONFIG_FILE, LogFormat,
    format_duration,
};
use crate::demo_secrets::{self, DemoSecrets};
use crate::time::unix_now;

/// Lifetime of a token from `herald gentoken` without `--ttl` (and of the one printed at the
/// start of a run without a config): 7 days, long enough for a hand-run client that cannot ask
/// for a new token by itself. The demo chat's tokens are shorter ([`crate::web::demo::TOKEN_TTL`])
/// because the page fetches fresh ones on its own.
pub const DEFAULT_TOKEN_TTL_SECS: u64 = 7 * 24 * 3600;

/// Command-line arguments. Flags given here override the config file and the environment.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "herald",
    version,
    about = "Herald: a real-time push server speaking the Centrifugo protocol and server API",
    long_about = None
)]
pub struct Cli {
    /// Config file (.json, .toml, .yaml/.yml). Default: ./config.json if it exists.
    #[arg(short = 'c', long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Port to listen on (or, for `publish`, to reach); overrides http_server.port.
    #[arg(long, global = true, value_name = "N")]
    pub port: Option<u16>,

    /// Address to bind (or, for `publish`, to reach); overrides http_server.address.
    #[arg(long, global = true, value_name = "ADDR")]
    pub address: Option<String>,

    /// Log format; overrides log.format.
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,

    /// Serve the demo chat app with permissive demo settings.
    #[arg(long, global = true)]
    pub demo: bool,

    /// Directory for durable data (history); overrides data_dir.
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Threads that run client connections (0 = one per CPU core); overrides workers.
    #[arg(long, global = true, value_name = "N")]
    pub workers: Option<usize>,

    /// What to do; without one, Herald serves.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Serve,
    /// Write a new config file with fresh random secrets (never overwrites).
    Genconfig {
        /// File to write. Default: the --config file, else config.json (config.toml/.yaml with
        /// --format).
        output: Option<PathBuf>,
        /// File format. Default: from the file extension, else json.
        #[arg(long, value_enum)]
        format: Option<ConfigFormat>,
    },
    /// Print a connection token signed with client.token.hmac_secret_key.
    Gentoken {
        /// User id the token is for; empty = anonymous.
        #[arg(short, long, default_value = "")]
        user: String,
        /// Lifetime in seconds (default 604800, 7 days); 0 = never expires.
        #[arg(long, value_name = "SECS", default_value_t = DEFAULT_TOKEN_TTL_SECS)]
        ttl: u64,
    },
    /// Check a connection token against the configured keys: user, expiry, or why it is invalid.
    Checktoken {
        /// The JWT.
        token: String,
    },
    /// Load and validate the configuration, and list options Herald ignores.
    Checkconfig,
    /// Publish JSON data to a channel through the server API of a running Herald.
    Publish {
        /// Channel to publish to, e.g. `chat:room1`.
        channel: String,
        /// The data, as JSON, e.g. '{"text":"hello"}'.
        data: String,
    },
}

/// Why a command failed; the message says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The configuration could not be loaded or is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `genconfig` would overwrite a file.
    #[error("{} already exists: not overwriting it (remove it or name another file)", .0.display())]
    AlreadyExists(PathBuf),
    /// A file could not be written.
    #[error("cannot write {}: {source}", .path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// No HMAC secret to sign or check tokens with.
    #[error(
        "no client.token.hmac_secret_key is configured: run `herald genconfig` to make a config \
         with one (or set HERALD_CLIENT_TOKEN_HMAC_SECRET_KEY)"
    )]
    NoSecret,
    /// `checktoken`: the token is not valid.
    #[error("invalid token: {0}")]
    InvalidToken(String),
    /// `checktoken`: the token is genuine but expired.
    #[error("token for user \"{user}\" expired at {expired_at}")]
    ExpiredToken {
        /// The token's user.
        user: String,
        /// When it expired, readable.
        expired_at: String,
    },
    /// `publish`: the data is not JSON.
    #[error("DATA must be JSON, e.g. '{{\"text\":\"hello\"}}' ({0})")]
    BadData(String),
    /// `publish`: no API key to send.
    #[error(
        "http_api.key is not set: run `herald genconfig` (or set HERALD_HTTP_API_KEY) so the \
         server API can be used"
    )]
    NoApiKey,
    /// `publish`: nothing answered.
    #[error(
        "cannot reach Herald at {url} ({reason}): is the server running? Start it with `herald`"
    )]
    Unreachable {
        /// The URL tried.
        url: String,
        /// The transport error.
        reason: String,
    },
    /// `publish`: the server refused the API key.
    #[error("the server at {url} refused the API key (HTTP 401): check http_api.key")]
    Unauthorized {
        /// The URL tried.
        url: String,
    },
    /// `publish`: an HTTP error status.
    #[error("the server at {url} answered HTTP {status}: {body}")]
    Http {
        /// The URL tried.
        url: String,
        /// The status code.
        status: u16,
        /// The response body (possibly empty).
        body: String,
    },
    /// `publish`: the server API returned an error object.
    #[error("publish failed: {message} (error {code})")]
    Api {
        /// Server API error code (protocol.md §8).
        code: i64,
        /// Its message.
        message: String,
    },
    /// Anything else, already worded for the user.
    #[error("{0}")]
    Other(String),
}

impl CliError {
    /// The process exit code for this error (1; `main` may use it as is).
    pub fn exit_code(&self) -> i32 {
        1
    }
}

impl Cli {
    /// Whether the server should run: no subcommand, or `serve`.
    pub fn is_serve(&self) -> bool {
        matches!(self.command, None | Some(Command::Serve))
    }

    /// The config file to read: `--config`, else `./config.json` when it exists (as Centrifugo
    /// does), else none (defaults + environment).
    pub fn config_path(&self) -> Option<PathBuf> {
        match &self.config {
            Some(path) => Some(path.clone()),
            None => {
                let default = Path::new(DEFAULT_CONFIG_FILE);
                default.is_file().then(|| default.to_path_buf())
            }
        }
    }

    /// Applies the flags that override config options (`--port`, `--address`, `--log-format`,
    /// `--demo`, `--data-dir`, `--workers`).
    pub fn apply_overrides(&self, config: &mut Config) {
        if let Some(port) = self.port {
            config.http_server.port = port;
        }
        if let Some(address) = &self.address {
            config.http_server.address = address.clone();
        }
        if let Some(format) = self.log_format {
            config.log.format = format;
        }
        if self.demo {
            config.demo = true;
        }
        if let Some(dir) = &self.data_dir {
            config.data_dir = dir.clone();
        }
        if let Some(workers) = self.workers {
            config.workers = workers;
        }
    }

    /// The effective configuration: file, then environment, then flags; validated. In demo
    /// mode, the secrets the config leaves empty come from the demo's secrets file when one
    /// exists (see [`crate::demo_secrets`]), so that `herald --demo gentoken`/`publish` work
    /// with what a running demo server uses.
    pub fn load_config(&self) -> Result<Config, ConfigError> {
        self.load(false).map(|(config, _)| config)
    }

    /// [`Cli::load_config`] for the server: in demo mode the secrets file is made on the first
    /// start, and what was taken from it is returned for the start-up banner.
    pub fn load_config_for_serve(
        &self,
    ) -> Result<(Config, Option<demo_secrets::Used>), ConfigError> {
        self.load(true)
    }

    fn load(&self, create: bool) -> Result<(Config, Option<demo_secrets::Used>), ConfigError> {
        let (report, used) = self.report(create)?;
        Ok((report.into_config()?, used))
    }

    /// [`Cli::load_config`] that keeps going: the config (when it parses, with the flags
    /// applied) and every problem found in it, for `checkconfig` to report them all at once.
    pub fn check_config(&self) -> Result<ConfigReport, ConfigError> {
        self.report(false).map(|(report, _)| report)
    }

    /// The config with the flags and, in demo mode, the demo's secrets applied (the secrets
    /// file is made when `create` and missing), and every problem found in it.
    fn report(
        &self,
        create: bool,
    ) -> Result<(ConfigReport, Option<demo_secrets::Used>), ConfigError> {
        let mut report = Config::read(self.config_path().as_deref())?;
        let mut used = None;
        if let Some(config) = &mut report.config {
            self.apply_overrides(config);
            if config.demo && DemoSecrets::needed(config) {
                let secrets = if create {
                    Some(DemoSecrets::load_or_create(&config.data_dir)?)
                } else {
                    DemoSecrets::load(&config.data_dir)?.map(|s| (s, false))
                };
                if let Some((secrets, created)) = secrets {
                    let filled = secrets.fill(config);
                    used = Some(demo_secrets::Used {
                        path: DemoSecrets::path(&config.data_dir),
                        created,
                        filled,
                    });
                }
            }
            config.apply_demo();
            if let Err(e) = config.validate() {
                report.problems.extend(e.into_problems());
            }
        }
        Ok((report, used))
    }
}

/// Runs a non-serve command, printing its result to stdout (and notes to stderr).
pub fn run_command(cli: &Cli) -> Result<(), CliError> {
    let stdout = io::stdout();
    let stderr = io::stderr();
    run_command_to(cli, &mut stdout.lock(), &mut stderr.lock())
}

/// [`run_command`] writing to the given streams (tests).
pub fn run_command_to(
    cli: &Cli,
    out: &mut dyn Write,
    notes: &mut dyn Write,
) -> Result<(), CliError> {
    let result = match &cli.command {
        None | Some(Command::Serve) => Err(CliError::Other(
            "`serve` is run by main, not by run_command".into(),
        )),
        Some(Command::Genconfig { output, format }) => {
            genconfig(cli, output.as_deref(), *format, out)
        }
        Some(Command::Gentoken { user, ttl }) => gentoken(cli, user, *ttl, out, notes),
        Some(Command::Checktoken { token }) => checktoken(cli, token, out),
        Some(Command::Checkconfig) => checkconfig(cli, out),
        Some(Command::Publish { channel, data }) => publish(cli, channel, data, out),
    };
    // A closed stdout (e.g. `| head`) is not worth an error of its own.
    let _ = out.flush();
    result
}

fn print(out: &mut dyn Write, text: &str) {
    // Write errors on stdout (closed pipe) must not turn a successful command into a failure.
    let _ = writeln!(out, "{text}");
}

fn genconfig(
    cli: &Cli,
    output: Option<&Path>,
    format: Option<ConfigFormat>,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let path = match (output, cli.config.as_deref(), format) {
        (Some(p), _, _) | (None, Some(p), _) => p.to_path_buf(),
        (None, None, Some(ConfigFormat::Toml)) => PathBuf::from("config.toml"),
        (None, None, Some(ConfigFormat::Yaml)) => PathBuf::from("config.yaml"),
        (None, None, _) => PathBuf::from(DEFAULT_CONFIG_FILE),
    };
    let format = match format {
        Some(f) => f,
        None => match ConfigFormat::from_path(&path) {
            Some(f) => f,
            None if path.extension().is_none() => ConfigFormat::Json,
            None => return Err(ConfigError::UnknownFormat { path }.into()),
        },
    };
    let text = config::genconfig(format)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        // The file holds secrets: readable by its owner only.
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&path).map_err(|source| {
        if source.kind() == io::ErrorKind::AlreadyExists {
            CliError::AlreadyExists(path.clone())
        } else {
            CliError::Write {
                path: path.clone(),
                source,
            }
        }
    })?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|source| CliError::Write {
            path: path.clone(),
            source,
        })?;
    print(
        out,
        &format!(
            "wrote {} with new random secrets (client.token.hmac_secret_key, http_api.key, \
             admin.password, admin.secret)",
            path.display()
        ),
    );
    Ok(())
}

fn gentoken(
    cli: &Cli,
    user: &str,
    ttl: u64,
    out: &mut dyn Write,
    notes: &mut dyn Write,
) -> Result<(), CliError> {
    let config = cli.load_config()?;
    let secret = &config.client.token.hmac_secret_key;
    if secret.is_empty() {
        return Err(CliError::NoSecret);
    }
    let ttl = (ttl > 0).then(|| Duration::from_secs(ttl));
    let token = auth::generate_token(user, ttl, secret, None)
        .map_err(|e| CliError::Other(e.to_string()))?;
    let who = if user.is_empty() {
        "an anonymous user".to_string()
    } else {
        format!("user \"{user}\"")
    };
    let lifetime = match ttl {
        Some(ttl) => format!("expires in {}", format_duration(ttl)),
        None => "never expires".to_string(),
    };
    let _ = writeln!(notes, "HS256 connection token for {who}, {lifetime}:");
    print(out, &token);
    Ok(())
}

fn checktoken(cli: &Cli, token: &str, out: &mut dyn Write) -> Result<(), CliError> {
    let config = cli.load_config()?;
    let verifier = TokenVerifier::new(&config.client.token)
        .map_err(|e| CliError::Other(format!("client.token: {e}")))?;
    if !verifier.has_key() {
        return Err(CliError::NoSecret);
    }
    let now = SystemTime::now();
    // Verification is async (a JWKS may have to be fetched): a small runtime for this one call.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Other(format!("cannot start the async runtime: {e}")))?;
    let (decoded, verified) = runtime.block_on(async {
        let decoded = verifier.decode_connection_token(token.trim(), now).await;
        let verified = verifier.verify_connection_token(token.trim(), now).await;
        (decoded, verified)
    });
    let claims = decoded.map_err(|e| match e {
        TokenError::Invalid(reason) => CliError::InvalidToken(reason),
        TokenError::Expired => CliError::InvalidToken("expired".into()),
    })?;
    match verified {
        Ok(_) => {}
        Err(TokenError::Expired) => {
            return Err(CliError::ExpiredToken {
                user: claims.sub.clone(),
                expired_at: claims
                    .exp
                    .map(describe_time)
                    .unwrap_or_else(|| "a time not yet reached (nbf)".into()),
            });
        }
        Err(TokenError::Invalid(reason)) => return Err(CliError::InvalidToken(reason)),
    }
    let user = if claims.sub.is_empty() {
        "(anonymous)".to_string()
    } else {
        format!("\"{}\"", claims.sub)
    };
    print(out, &format!("valid token for user {user}"));
    let token_expiry = match claims.exp {
        Some(exp) => describe_time(exp),
        None => "never".into(),
    };
    print(out, &format!("token expires: {token_expiry}"));
    if claims.expire_at.is_some() {
        let conn = match claims.expires_at() {
            Some(at) => describe_time(i64::try_from(at).unwrap_or(i64::MAX)),
            None => "never".into(),
        };
        print(out, &format!("connection expires: {conn}"));
    }
    if let Some(info) = &claims.info {
        print(out, &format!("info: {}", info.get()));
    }
    if !claims.channels.is_empty() {
        print(out, &format!("channels: {}", claims.channels.join(", ")));
    }
    Ok(())
}

/// Reports every problem of the configuration in one run: the warnings on `out`, then the
/// errors (all of them, in one [`ConfigError::Problems`]) as the command's error.
fn checkconfig(cli: &Cli, out: &mut dyn Write) -> Result<(), CliError> {
    let mut report = cli.check_config()?;
    // The TLS certificate and key are read as the server would read them at start-up (once
    // the TLS options themselves are consistent).
    if let Some(config) = &report.config {
        let tls = &config.http_server.tls;
        if tls.problems().is_empty() {
            if let Err(e) = crate::tls::Terminator::from_config(tls) {
                report.problems.push(e.into());
            }
        }
    }
    let source = match cli.config_path() {
        Some(path) => path.display().to_string(),
        None => "defaults and environment (no config file)".into(),
    };
    if report.problems.is_empty() {
        print(out, &format!("configuration is valid: {source}"));
    }
    if let Some(config) = &report.config {
        for warning in config.load_warnings.iter().chain(config.warnings().iter()) {
            print(out, &format!("warning: {warning}"));
        }
    }
    report.into_config()?;
    Ok(())
}

/// The host to reach a server bound to `address` (wildcards become loopback; IPv6 bracketed).
fn connect_host(address: &str) -> String {
    match address.trim() {
        "" | "0.0.0.0" => "127.0.0.1".into(),
        "::" | "[::]" => "[::1]".into(),
        a if a.contains(':') && !a.starts_with('[') => format!("[{a}]"),
        a => a.into(),
    }
}

fn publish(cli: &Cli, channel: &str, data: &str, out: &mut dyn Write) -> Result<(), CliError> {
    let data: Value = serde_json::from_str(data).map_err(|e| CliError::BadData(e.to_string()))?;
    let config = cli.load_config()?;
    let api = &config.http_api;
    if api.key.is_empty() && !api.insecure {
        return Err(CliError::NoApiKey);
    }
    if config.http_server.tls.enabled {
        return Err(CliError::Other(format!(
            "`herald publish` speaks plain HTTP, and this server has http_server.tls enabled: \
             publish with an HTTPS client instead, e.g. curl -X POST -H \"X-API-Key: KEY\" \
             -d '{{\"channel\": \"{channel}\", \"data\": …}}' \
             https://HOST:{}{}/publish",
            config.http_server.port,
            api.handler_prefix.trim_end_matches('/')
        )));
    }
    let url = format!(
        "http://{}:{}{}/publish",
        connect_host(&config.http_server.address),
        config.http_server.port,
        api.handler_prefix.trim_end_matches('/')
    );
    let body = serde_json::json!({ "channel": channel, "data": data }).to_string();

    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let mut request = agent.post(&url).header("Content-Type", "application/json");
    if !api.key.is_empty() {
        request = request.header("X-API-Key", &api.key);
    }
    let mut response = request.send(body).map_err(|e| CliError::Unreachable {
        url: url.clone(),
        reason: e.to_string(),
    })?;
    let status = response.status().as_u16();
    let text = response
        .body_mut()
        .read_to_string()
        .map_err(|e| CliError::Unreachable {
            url: url.clone(),
            reason: format!("reading the answer failed: {e}"),
        })?;
    match status {
        200..=299 => {}
        401 => return Err(CliError::Unauthorized { url }),
        _ => {
            return Err(CliError::Http {
                url,
                status,
                body: text.trim().chars().take(500).collect(),
            });
        }
    }
    let reply: Value = serde_json::from_str(&text).map_err(|e| {
        CliError::Other(format!(
            "the server at {url} answered something that is not JSON ({e})"
        ))
    })?;
    if let Some(error) = reply.get("error") {
        return Err(CliError::Api {
            code: error.get("code").and_then(Value::as_i64).unwrap_or(0),
            message: error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("unknown error")
                .to_string(),
        });
    }
    let result = reply
        .get("result")
        .cloned()
        .unwrap_or(Value::Object(Default::default()));
    let pretty = serde_json::to_string_pretty(&result).unwrap_or_else(|_| result.to_string());
    print(out, &pretty);
    Ok(())
}

/// `1767225600` → `2026-01-01 00:00:00 UTC (in 3h0m0s)` / `(4m0s ago)`.
fn describe_time(unix: i64) -> String {
    let now = i64::try_from(unix_now()).unwrap_or(i64::MAX);
    let delta = unix.saturating_sub(now);
    let relative = if delta >= 0 {
        format!(
            "in {}",
            format_duration(Duration::from_secs(delta.unsigned_abs()))
        )
    } else {
        format!(
            "{} ago",
            format_duration(Duration::from_secs(delta.unsigned_abs()))
        )
    };
    format!("{} ({relative})", format_utc(unix))
}

/// Formats unix seconds as `YYYY-MM-DD HH:MM:SS UTC` (proleptic Gregorian calendar).
fn format_utc(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read};
    use std::net::TcpListener;

    fn parse(args: &[&str]) -> Cli {
        let mut all = vec!["herald"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).unwrap()
    }

    fn temp_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "herald-cli-test-{}-{}",
            std::process::id(),
            config::random_secret(8)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn run(cli: &Cli) -> (Result<(), CliError>, String, String) {
        let mut out = Vec::new();
        let mut notes = Vec::new();
        let result = run_command_to(cli, &mut out, &mut notes);
        (
            result,
            String::from_utf8(out).unwrap(),
            String::from_utf8(notes).unwrap(),
        )
    }

    /// Writes a config with a known secret and API key; returns its path.
    fn config_file(dir: &Path, extra: &str) -> PathBuf {
        let path = dir.join("herald.json");
        std::fs::write(
            &path,
            format!(
                r#"{{"client": {{"token": {{"hmac_secret_key": "sekret"}}}},
                    "http_api": {{"key": "apikey"}}{extra}}}"#
            ),
        )
        .unwrap();
        path
    }

    #[test]
    fn parses_flags_and_subcommands() {
        let cli = parse(&[]);
        assert!(cli.is_serve() && cli.command.is_none());
        let cli = parse(&[
            "-c",
            "x.toml",
            "--port",
            "9001",
            "--address",
            "0.0.0.0",
            "--log-format",
            "json",
            "--demo",
            "--data-dir",
            "/tmp/d",
            "--workers",
            "1",
        ]);
        assert_eq!(cli.config, Some(PathBuf::from("x.toml")));
        let mut config = Config::default();
        cli.apply_overrides(&mut config);
        assert_eq!(config.http_server.port, 9001);
        assert_eq!(config.http_server.address, "0.0.0.0");
        assert_eq!(config.log.format, LogFormat::Json);
        assert!(config.demo);
        assert_eq!(config.data_dir, PathBuf::from("/tmp/d"));
        assert_eq!(config.workers, 1);

        assert!(parse(&["serve", "--port", "1"]).is_serve());
        assert_eq!(
            parse(&["gentoken", "-u", "bob", "--ttl", "60"]).command,
            Some(Command::Gentoken {
                user: "bob".into(),
                ttl: 60
            })
        );
        assert_eq!(
            parse(&["gentoken"]).command,
            Some(Command::Gentoken {
                user: String::new(),
                ttl: 604_800
            })
        );
        assert_eq!(
            parse(&["genconfig", "--format", "toml"]).command,
            Some(Command::Genconfig {
                output: None,
                format: Some(ConfigFormat::Toml)
            })
        );
        assert_eq!(
            parse(&["publish", "news", r#"{"a":1}"#]).command,
            Some(Command::Publish {
                channel: "news".into(),
                data: r#"{"a":1}"#.into()
            })
        );
        assert!(Cli::try_parse_from(["herald", "--port", "nope"]).is_err());
        assert!(Cli::try_parse_from(["herald", "frobnicate"]).is_err());
    }

    #[test]
    fn genconfig_writes_once_and_never_overwrites() {
        let dir = temp_dir();
        let path = dir.join("config.json");
        let cli = parse(&["genconfig", path.to_str().unwrap()]);
        let (result, out, _) = run(&cli);
        result.unwrap();
        assert!(out.contains("wrote"), "{out}");
        let text = std::fs::read_to_string(&path).unwrap();
        let config = Config::from_str_with_format(&text, ConfigFormat::Json).unwrap();
        assert_eq!(config.client.token.hmac_secret_key.len(), 48);

        let (result, _, _) = run(&cli);
        let err = result.unwrap_err();
        assert!(matches!(err, CliError::AlreadyExists(_)), "{err}");
        assert!(err.to_string().contains("already exists"), "{err}");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            text,
            "file untouched"
        );

        // -c names the output too; the format follows the extension.
        let toml = dir.join("h.toml");
        run(&parse(&["-c", toml.to_str().unwrap(), "genconfig"]))
            .0
            .unwrap();
        let text = std::fs::read_to_string(&toml).unwrap();
        Config::from_str_with_format(&text, ConfigFormat::Toml).unwrap();
    }

    #[test]
    fn gentoken_then_checktoken() {
        let dir = temp_dir();
        let cfg = config_file(&dir, "");
        let cfg = cfg.to_str().unwrap();
        let (result, out, notes) = run(&parse(&["-c", cfg, "gentoken", "-u", "alice"]));
        result.unwrap();
        let token = out.trim().to_string();
        assert_eq!(token.split('.').count(), 3, "{out}");
        assert!(
            notes.contains("user \"alice\"") && notes.contains("168h"),
            "{notes}"
        );

        let (result, out, _) = run(&parse(&["-c", cfg, "checktoken", &token]));
        result.unwrap();
        assert!(out.contains("valid token for user \"alice\""), "{out}");
        assert!(
            out.contains("token expires: ") && out.contains("UTC (in "),
            "{out}"
        );

        let forged = auth::generate_token("alice", None, "wrong", None).unwrap();
        let (result, _, _) = run(&parse(&["-c", cfg, "checktoken", &forged]));
        let err = result.unwrap_err();
        assert!(err.to_string().starts_with("invalid token: "), "{err}");

        let expired =
            auth::sign_hs256(&serde_json::json!({"sub": "old", "exp": 1000}), "sekret").unwrap();
        let (result, _, _) = run(&parse(&["-c", cfg, "checktoken", &expired]));
        let err = result.unwrap_err().to_string();
        assert!(
            err.contains("\"old\" expired at 1970-01-01 00:16:40 UTC"),
            "{err}"
        );

        let (result, out, _) = run(&parse(&["-c", cfg, "gentoken", "--ttl", "0"]));
        result.unwrap();
        let (result, out2, _) = run(&parse(&["-c", cfg, "checktoken", out.trim()]));
        result.unwrap();
        assert!(
            out2.contains("(anonymous)") && out2.contains("token expires: never"),
            "{out2}"
        );
    }

    #[test]
    fn gentoken_without_secret_says_run_genconfig() {
        let dir = temp_dir();
        let path = dir.join("empty.json");
        std::fs::write(&path, "{}").unwrap();
        let (result, _, _) = run(&parse(&["-c", path.to_str().unwrap(), "gentoken"]));
        let err = result.unwrap_err();
        assert!(matches!(err, CliError::NoSecret));
        assert!(err.to_string().contains("herald genconfig"), "{err}");
    }

    #[test]
    fn checkconfig_reports_ignored_options() {
        let dir = temp_dir();
        let cfg = config_file(&dir, r#", "grpc_api": {"enabled": true}"#);
        let (result, out, _) = run(&parse(&["-c", cfg.to_str().unwrap(), "checkconfig"]));
        result.unwrap();
        assert!(out.contains("configuration is valid"), "{out}");
        assert!(out.contains("warning: grpc_api: not implemented"), "{out}");

        let bad = dir.join("bad.json");
        std::fs::write(&bad, r#"{"client": {"pingg_interval": "1s"}}"#).unwrap();
        let (result, _, _) = run(&parse(&["-c", bad.to_str().unwrap(), "checkconfig"]));
        assert!(
            result
                .unwrap_err()
                .to_string()
                .contains("client.pingg_interval")
        );
    }

    /// A one-shot HTTP server answering `response`; returns its port and the request it saw.
    fn one_shot_server(response: &'static str) -> (u16, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let handle = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            let mut content_length = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    content_length = v.trim().parse().unwrap();
                }
                head.push_str(&line);
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; content_length];
            reader.read_exact(&mut body).unwrap();
            let mut stream = stream;
            stream.write_all(response.as_bytes()).unwrap();
            head + &String::from_utf8(body).unwrap()
        });
        (port, handle)
    }

    #[test]
    fn publish_posts_to_the_server_api() {
        let (port, server) = one_shot_server(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 43\r\n\
             Connection: close\r\n\r\n{\"result\":{\"offset\":7,\"epoch\":\"abcd12345\"}}",
        );
        let dir = temp_dir();
        let cfg = config_file(&dir, "");
        let port = port.to_string();
        let cli = parse(&[
            "-c",
            cfg.to_str().unwrap(),
            "--port",
            &port,
            "publish",
            "chat:1",
            r#"{"text":"hi"}"#,
        ]);
        let (result, out, _) = run(&cli);
        result.unwrap();
        assert!(out.contains("\"offset\": 7"), "{out}");
        let request = server.join().unwrap();
        assert!(
            request.starts_with("POST /api/publish HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(
            request
                .to_ascii_lowercase()
                .contains("x-api-key: apikey\r\n"),
            "{request}"
        );
        assert!(
            request.ends_with(r#"{"channel":"chat:1","data":{"text":"hi"}}"#),
            "{request}"
        );
    }

    #[test]
    fn publish_reports_api_errors_and_bad_keys() {
        let dir = temp_dir();
        let cfg = config_file(&dir, "");
        let (port, server) = one_shot_server(
            "HTTP/1.1 200 OK\r\nContent-Length: 50\r\nConnection: close\r\n\r\n\
             {\"error\":{\"code\":102,\"message\":\"unknown channel\"}}",
        );
        let port_s = port.to_string();
        let (result, _, _) = run(&parse(&[
            "-c",
            cfg.to_str().unwrap(),
            "--port",
            &port_s,
            "publish",
            "x:1",
            "{}",
        ]));
        server.join().unwrap();
        let err = result.unwrap_err();
        assert!(matches!(&err, CliError::Api { code: 102, .. }), "{err}");

        let (port, server) = one_shot_server(
            "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        let port_s = port.to_string();
        let (result, _, _) = run(&parse(&[
            "-c",
            cfg.to_str().unwrap(),
            "--port",
            &port_s,
            "publish",
            "x:1",
            "{}",
        ]));
        server.join().unwrap();
        assert!(matches!(result.unwrap_err(), CliError::Unauthorized { .. }));
    }

    #[test]
    fn publish_explains_what_is_wrong() {
        let dir = temp_dir();
        let cfg = config_file(&dir, "");
        let cfg = cfg.to_str().unwrap();
        // Nothing listens on a port we just released.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let port = port.to_string();
        let (result, _, _) = run(&parse(&["-c", cfg, "--port", &port, "publish", "c", "{}"]));
        let err = result.unwrap_err();
        assert!(matches!(err, CliError::Unreachable { .. }), "{err}");
        assert!(err.to_string().contains("is the server running?"), "{err}");

        let (result, _, _) = run(&parse(&["-c", cfg, "publish", "c", "not json"]));
        assert!(matches!(result.unwrap_err(), CliError::BadData(_)));

        let empty = Path::new(cfg).with_file_name("nokey.json");
        std::fs::write(&empty, "{}").unwrap();
        let (result, _, _) = run(&parse(&[
            "-c",
            empty.to_str().unwrap(),
            "publish",
            "c",
            "{}",
        ]));
        assert!(matches!(result.unwrap_err(), CliError::NoApiKey));
    }

    #[test]
    fn helpers() {
        assert_eq!(connect_host(""), "127.0.0.1");
        assert_eq!(connect_host("0.0.0.0"), "127.0.0.1");
        assert_eq!(connect_host("::"), "[::1]");
        assert_eq!(connect_host("::1"), "[::1]");
        assert_eq!(connect_host("example.com"), "example.com");
        assert_eq!(format_utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_utc(1_700_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(format_utc(-86_400), "1969-12-31 00:00:00 UTC");
    }
}
