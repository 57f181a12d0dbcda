//! The `herald` command: runs the server, or one of the helper subcommands (`genconfig`,
//! `gentoken`, `checktoken`, `publish`…).

use std::io::IsTerminal;
use std::time::Duration;

use clap::Parser;

use herald::cli::Cli;
use herald::config::{Config, LogFormat};
use herald::node::Node;
use herald::server::Server;

/// jemalloc rather than the system allocator: the per-connection allocations tokio makes are
/// 128-byte aligned (its task cell and I/O registration), which glibc serves by carving an
/// aligned chunk out of a larger one, and the scraps stay behind. With 15,000 idle
/// connections jemalloc holds 1.45 KiB per connection against glibc's 1.59–1.63 KiB, with
/// fan-out latency and CPU within the noise (`bench/RESULTS.md`). mimalloc was measured too:
/// +0.2 KiB. jemalloc's background thread is on (Cargo feature `background_threads`, as Redis
/// runs it): without it, pages freed after a burst (the handshakes of a mass reconnect, say)
/// are returned to the system only when the process next allocates, which an idle server may
/// not do for a long time; with it they go after the decay time (10 s) whatever the load.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    let cli = Cli::parse();
    if !cli.is_serve() {
        if let Err(e) = herald::cli::run_command(&cli) {
            eprintln!("herald: {e}");
            std::process::exit(e.exit_code());
        }
        return;
    }
    let (config, demo_secrets) = match cli.load_config_for_serve() {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("herald: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = init_logging(&config) {
        eprintln!("herald: {e}");
        std::process::exit(1);
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if config.workers > 0 {
        builder.worker_threads(config.workers);
    }
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("herald: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(serve(config, cli.config_path(), demo_secrets)) {
        tracing::error!("{e}");
        eprintln!("herald: {e}");
        std::process::exit(1);
    }
}

/// Why the server could not start or stopped serving; `main` prints it and exits with 1.
#[derive(Debug, thiserror::Error)]
enum StartError {
    /// `log.file` cannot be opened.
    #[error(
        "cannot open log.file {path}: {source} (fix the path or remove log.file to log to stderr)"
    )]
    LogFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// `pid_file` cannot be written.
    #[error("cannot write pid_file {path}: {source}")]
    PidFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The node could not be built (its message names the option or file at fault).
    #[error("{0}")]
    Node(String),
    /// SIGTERM/SIGINT cannot be caught.
    #[error("cannot install signal handlers: {0}")]
    Signals(#[source] std::io::Error),
    /// The listener cannot be bound (the message names the address).
    #[error("{0}")]
    Bind(#[source] std::io::Error),
    /// The demo token cannot be signed.
    #[error("{0}")]
    Token(#[source] herald::auth::SignError),
    /// The HTTP server stopped with an error.
    #[error("HTTP server: {0}")]
    Server(#[source] std::io::Error),
}

/// Logs to stderr, or to the file `log.file` names (appended to, created if missing).
fn init_logging(config: &Config) -> Result<(), StartError> {
    use tracing_subscriber::fmt::writer::BoxMakeWriter;
    // RUST_LOG (the ecosystem's convention) refines `log.level` per module when set.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(config.log.level.as_filter()));
    let (writer, ansi) = if config.log.file.is_empty() {
        let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        (BoxMakeWriter::new(std::io::stderr), ansi)
    } else {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&config.log.file)
            .map_err(|source| StartError::LogFile {
                path: config.log.file.clone(),
                source,
            })?;
        (BoxMakeWriter::new(std::sync::Mutex::new(file)), false)
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        // A closed stderr must not turn a log line into a panic (which would kill, e.g., the
        // task that handles SIGTERM).
        .log_internal_errors(false)
        .with_writer(writer);
    match config.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    Ok(())
}

/// Writes this process's id to `pid_file` (when set), as Centrifugo does; removed on drop.
struct PidFile(Option<std::path::PathBuf>);

impl PidFile {
    fn write(path: &str) -> Result<PidFile, StartError> {
        if path.is_empty() {
            return Ok(PidFile(None));
        }
        std::fs::write(path, format!("{}\n", std::process::id())).map_err(|source| {
            StartError::PidFile {
                path: path.to_owned(),
                source,
            }
        })?;
        Ok(PidFile(Some(path.into())))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        if let Some(path) = &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

async fn serve(
    mut config: Config,
    config_path: Option<std::path::PathBuf>,
    demo_secrets: Option<herald::demo_secrets::Used>,
) -> Result<(), StartError> {
    for warning in config.load_warnings.iter().chain(config.warnings().iter()) {
        tracing::warn!("{warning}");
    }
    // Without a config file and without a token key, make this run usable at once: a random
    // token secret and API key that live as long as the process (a config from `herald
    // genconfig` keeps them).
    let ephemeral = config_path.is_none() && !config.client.token.has_key();
    if ephemeral {
        config.client.token.hmac_secret_key = herald::config::random_secret(32);
        if config.http_api.key.is_empty() {
            config.http_api.key = herald::config::random_secret(32);
        }
    }
    if config.client.insecure {
        tracing::warn!(
            "INSECURE client mode (client.insecure): clients connect without a token, as \
             anonymous users, and may subscribe (all but private channels), publish, and read \
             presence and history in every channel; connections never expire. For development \
             only: never use it in production"
        );
    }
    let secret = config.client.token.hmac_secret_key.clone();
    let api_key = config.http_api.key.clone();
    let anonymous = config.client.allow_anonymous_connect_without_token;
    let has_key = config.client.token.has_key();
    let _pid_file = PidFile::write(&config.pid_file)?;
    let node = Node::new(config).map_err(StartError::Node)?;
    let shutdown = node.shutdown().clone();
    let signals = signal_handlers().map_err(StartError::Signals)?;
    tokio::spawn(async move {
        signals.await;
        tracing::info!("shutting down: closing clients with 3001");
        shutdown.cancel();
    });
    let server = Server::bind(node.clone()).await.map_err(StartError::Bind)?;
    let addr = server.local_addr().map_err(StartError::Bind)?;
    let (http, ws) = if server.is_tls() {
        ("https", "wss")
    } else {
        ("http", "ws")
    };
    tracing::info!(
        "herald {} listening on {http}://{addr} (WebSocket: {ws}://{addr}{})",
        env!("CARGO_PKG_VERSION"),
        herald::server::websocket_path(node.config())
    );
    match &config_path {
        Some(path) => tracing::info!("config: {}", path.display()),
        None => tracing::info!(
            "no config file: running on embedded defaults (herald genconfig writes one)"
        ),
    }
    if node.config().demo {
        // One banner with everything a demo user needs, and the warning they must not miss.
        let host = if addr.ip().is_unspecified() {
            "127.0.0.1".to_owned()
        } else {
            addr.ip().to_string()
        };
        let base = match addr {
            std::net::SocketAddr::V6(_) if !addr.ip().is_unspecified() => {
                format!("http://[{host}]:{}", addr.port())
            }
            _ => format!("http://{host}:{}", addr.port()),
        };
        tracing::warn!(
            "{}",
            herald::web::demo::banner(
                &base,
                node.config(),
                demo_secrets.as_ref(),
                config_path.as_deref()
            )
        );
    } else if ephemeral {
        let ttl = Duration::from_secs(herald::cli::DEFAULT_TOKEN_TTL_SECS);
        let token = herald::auth::generate_token("demo", Some(ttl), &secret, None)
            .map_err(StartError::Token)?;
        tracing::info!("no token secret configured: generated one for this run only");
        tracing::info!(
            "a connection token for user \"demo\" (valid {}): {token}",
            herald::config::format_duration(ttl)
        );
        tracing::info!(
            "more tokens: HERALD_CLIENT_TOKEN_HMAC_SECRET_KEY={secret} herald gentoken -u USER"
        );
        tracing::info!("server API key for this run: {api_key} (header X-API-Key)");
    } else if has_key {
        tracing::info!("get a connection token with: herald -c CONFIG gentoken -u USER");
    } else if anonymous {
        tracing::info!("anonymous connections allowed without a token");
    } else {
        tracing::warn!(
            "no client.token.hmac_secret_key: clients cannot connect. Run `herald genconfig` \
             and start with `herald -c config.json`, then `herald gentoken -u USER`"
        );
    }
    server.run().await.map_err(StartError::Server)
}

/// Registers SIGTERM and SIGINT now and returns a future that completes on the first of them.
fn signal_handlers() -> std::io::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = interrupt.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
