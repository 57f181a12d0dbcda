//! `herald-bench`: a load generator for Herald (or any server speaking the Centrifugo client
//! protocol v2 JSON and the Centrifugo HTTP API).
//!
//! Scenarios:
//! * `fanout` — N subscribers on one channel, publications at a fixed rate through the HTTP
//!   API; delivery latency percentiles, deliveries/s and loss. The latency is also given up
//!   to the kernel's receive timestamp of the bytes: the difference is the time they waited
//!   in the client's socket for the bench itself, which shares the machine.
//! * `idle` — N connected, subscribed clients held for a while; server memory per connection.
//! * `connect` — how fast N clients can connect and subscribe, with latency percentiles.
//! * `publish` — durable publications/s through the HTTP API at a given concurrency (closed
//!   loop) or rate (open loop), with the acknowledgement latency.
//! * `recover` — N clients disconnect while M publications are made, then all reconnect at
//!   once and recover them from history; time until every client has recovered.
//!
//! Connections live in worker processes (`--procs`), each a re-execution of this binary with
//! the hidden `worker` subcommand, so more sockets can be held than one process may open.

mod pb;
mod proto;
mod publish;
mod publisher;
mod recover;
mod report;
mod scenario;
mod stats;
mod stream;
mod sys;
mod token;
mod typical;
mod worker;
mod ws;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Command line.
#[derive(Debug, Parser)]
#[command(
    name = "herald-bench",
    version,
    about = "Load generator for Herald and other Centrifugo-protocol servers: fan-out latency, \
             idle connection memory, connect rate, durable publish rate, recovery",
    after_help = "Examples:\n  herald-bench fanout --hmac-secret S --api-key K --subs 1000 --rate 1000 --duration 10\n  \
                  herald-bench idle --hmac-secret S --subs 15000 --hold 15 --server-pid $(pidof herald)\n  \
                  herald-bench connect --hmac-secret S --subs 5000 --concurrency 200\n  \
                  herald-bench publish --api-key K --channels 100 --concurrency 1024 --duration 10\n  \
                  herald-bench recover --hmac-secret S --api-key K --channel bench:recover --subs 15000 --procs 3 --messages 100"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Subscribers on one channel receive publications sent at a fixed rate: latency and loss.
    Fanout(FanoutArgs),
    /// Hold connected, subscribed clients: server memory per connection.
    Idle(IdleArgs),
    /// Connect (and subscribe) clients as fast as allowed: rate and latency.
    Connect(ConnectArgs),
    /// Publish through the HTTP API: publications/s and acknowledgement latency.
    Publish(PublishArgs),
    /// Disconnect clients, publish while they are away, reconnect all at once: recovery time.
    Recover(RecoverArgs),
    /// Print Markdown tables of the JSON result lines in FILE (output of earlier runs).
    Table {
        /// A file holding result lines (other lines are skipped); `-` for stdin.
        file: PathBuf,
    },
    /// Internal: one worker process (started by the others).
    #[command(hide = true)]
    Worker,
}

/// Options every scenario has.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// WebSocket endpoint. Give it several times to spread the connections over several
    /// nodes (e.g. Herald nodes sharing a Redis engine): worker process i connects to the
    /// (i mod N)-th URL, and --procs defaults to at least one worker per URL.
    #[arg(long, default_value = "ws://127.0.0.1:8000/connection/websocket")]
    pub url: Vec<String>,
    /// Connection token used by every client.
    #[arg(long, env = "HERALD_BENCH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// HMAC secret (client.token.hmac_secret_key): sign an HS256 token per client, user
    /// `bench-<n>`.
    #[arg(long, env = "HERALD_BENCH_HMAC_SECRET", hide_env_values = true)]
    pub hmac_secret: Option<String>,
    /// Channel to subscribe to (and publish to).
    #[arg(long, default_value = "bench")]
    pub channel: String,
    /// Number of client connections.
    #[arg(long, default_value_t = 1000)]
    pub subs: usize,
    /// Worker processes holding the connections (default: one per 15,000 connections).
    #[arg(long)]
    pub procs: Option<usize>,
    /// Runtime threads per worker process (default: CPUs / procs, at least 1).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Local source addresses: a count N (127.0.0.1 … 127.0.0.N), a comma list, `none`, or
    /// `auto` (one loopback address per 25,000 connections to a loopback server).
    #[arg(long, default_value = "auto")]
    pub source_ips: String,
    /// Connections being set up at once (over all workers).
    #[arg(long, default_value_t = 200)]
    pub concurrency: usize,
    /// Seconds allowed for one client's handshake + connect + subscribe.
    #[arg(long, default_value_t = 10.0)]
    pub connect_timeout: f64,
    /// Read buffer per connection, bytes.
    #[arg(long, default_value_t = 4096)]
    pub read_buf: usize,
    /// PID of the server, for its memory and CPU use (default: found by the URL's port when
    /// the server is local).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Write a latency percentile plot (SVG).
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// A label copied into the JSON result (e.g. the server name).
    #[arg(long)]
    pub label: Option<String>,
    /// How the subscribers are written: `fast` (the bench's own client: one `recv` per
    /// wake-up, no JSON values built) or `tungstenite` (a typical client: a tokio-tungstenite
    /// connection and task per subscriber, one message at a time, serde parsing).
    #[arg(long, value_enum, default_value_t = ClientModel::Fast)]
    pub client_model: ClientModel,
    /// The subscribers' wire format: `json`, or `protobuf` (WebSocket subprotocol
    /// `centrifuge-protobuf`, binary frames of varint-delimited messages).
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub format: Format,
    /// This fraction (0..1) of the connections speak Protobuf and the rest JSON, spread evenly
    /// over the connection numbers, in one channel (overrides --format).
    #[arg(long, value_name = "FRACTION")]
    pub protobuf_share: Option<f64>,
    /// The subscribers' transport: `websocket`, or the SDKs' fallbacks `http-stream` (POST
    /// `--url http://…/connection/http_stream`) and `sse` (GET `--url http://…/connection/sse`),
    /// whose later commands go to the server's `/emulation` endpoint (`fast` model, JSON).
    #[arg(long, value_enum, default_value_t = TransportKind::Websocket)]
    pub transport: TransportKind,
}

impl Common {
    /// The first `--url`: the node whose port identifies the server process, and the one a
    /// client publisher connects to.
    pub fn first_url(&self) -> &str {
        self.url.first().map_or("", String::as_str)
    }
}

/// The subscribers' client implementation (see `typical.rs` for why there are two).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ClientModel {
    /// The hand-written client of `ws.rs`: reads whatever a wake-up finds in one `recv` and
    /// scans it for `ts` without building JSON; as cheap as a client can be.
    #[default]
    Fast,
    /// A typical client: tokio-tungstenite with its default configuration, one task per
    /// connection taking one message at a time, every line parsed with serde.
    Tungstenite,
}

/// A connection's wire format (`--format`, `--protobuf-share`).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// The JSON format (`centrifuge-json`, text frames of newline-delimited JSON).
    #[default]
    Json,
    /// The Protobuf format (`centrifuge-protobuf`; see `pb.rs`).
    Protobuf,
}

/// The subscribers' transport (`--transport`).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum TransportKind {
    /// A WebSocket (`ws.rs`, or tokio-tungstenite for the `tungstenite` model).
    #[default]
    Websocket,
    /// HTTP-streaming with the emulation endpoint (`stream.rs`).
    HttpStream,
    /// Server-sent events with the emulation endpoint (`stream.rs`).
    Sse,
}

/// How the publisher publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PublishVia {
    /// `POST <api>/publish` with `X-API-Key`.
    Api,
    /// A client connection's `publish` command (namespace needs `allow_publish_for_client`).
    Client,
}

/// `fanout` options.
#[derive(Debug, Clone, Args)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub common: Common,
    /// Server HTTP API prefix.
    #[arg(long, default_value = "http://127.0.0.1:8000/api")]
    pub api: String,
    /// Server API key (http_api.key).
    #[arg(long, env = "HERALD_BENCH_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Publications per second.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Seconds of publishing (a publisher behind schedule stops 1 s after this).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Size of each publication's data object, bytes.
    #[arg(long, default_value_t = 64)]
    pub payload_size: usize,
    /// Concurrent publisher connections, each with one request in flight (default: enough for
    /// --rate if a publish takes 2 ms + 2 µs per subscriber; 1..32).
    #[arg(long)]
    pub publishers: Option<usize>,
    /// Publish through the HTTP API or through a client connection.
    #[arg(long, value_enum, default_value_t = PublishVia::Api)]
    pub publish_via: PublishVia,
    /// Seconds to wait for the last deliveries after publishing ends.
    #[arg(long, default_value_t = 10.0)]
    pub drain_timeout: f64,
    /// Subscribers negotiate `delta: "fossil"` and the publications ask for deltas
    /// (`"delta": true`); subscribers apply each delta to the previous payload before reading
    /// `ts`. Needs `--client-model tungstenite`, `--publish-via api` and a namespace with
    /// `allowed_delta_types: ["fossil"]`.
    #[arg(long)]
    pub delta: bool,
    /// Publications carry the tag `bench=on`; every subscriber subscribes with a tags filter,
    /// and this fraction (0..1) of them filter on `bench == on` (the others on a value never
    /// sent). Needs `--client-model tungstenite`, `--publish-via api` and `allow_tags_filter`.
    #[arg(long, value_name = "FRACTION")]
    pub tags_filter: Option<f64>,
}

/// `idle` options.
#[derive(Debug, Clone, Args)]
pub struct IdleArgs {
    #[command(flatten)]
    pub common: Common,
    /// Seconds to hold the connections.
    #[arg(long, default_value_t = 15.0)]
    pub hold: f64,
}

/// `connect` options.
#[derive(Debug, Clone, Args)]
pub struct ConnectArgs {
    #[command(flatten)]
    pub common: Common,
    /// Only connect; do not subscribe.
    #[arg(long)]
    pub no_subscribe: bool,
}

/// `publish` options.
#[derive(Debug, Clone, Args)]
pub struct PublishArgs {
    /// Server HTTP API prefix.
    #[arg(long, default_value = "http://127.0.0.1:8000/api")]
    pub api: String,
    /// Server API key (http_api.key).
    #[arg(long, env = "HERALD_BENCH_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Channels published to round-robin: `<prefix>0` … `<prefix>N-1`.
    #[arg(long, default_value_t = 1)]
    pub channels: usize,
    /// Channel name prefix (the `bench` namespace of bench/config-history.json keeps history).
    #[arg(long, default_value = "bench:")]
    pub channel_prefix: String,
    /// Keep-alive HTTP/1.1 connections, one request in flight each.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Open loop: publications per second (default: closed loop, each connection publishes as
    /// soon as its previous publication is acknowledged).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Seconds of publishing (default 10 unless --count is given).
    #[arg(long, conflicts_with = "count")]
    pub duration: Option<f64>,
    /// Publications to make.
    #[arg(long)]
    pub count: Option<u64>,
    /// Size of each publication's data object, bytes.
    #[arg(long, default_value_t = 64)]
    pub payload_size: usize,
    /// PID of the server, for its CPU and memory use (default: found by the API port when the
    /// server is local).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Write an ack latency percentile plot (SVG).
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// A label copied into the JSON result.
    #[arg(long)]
    pub label: Option<String>,
}

/// `recover` options (`--channel` must be in a namespace with history and force_recovery,
/// e.g. `bench:recover` with bench/config-history.json).
#[derive(Debug, Clone, Args)]
pub struct RecoverArgs {
    #[command(flatten)]
    pub common: Common,
    /// Server HTTP API prefix.
    #[arg(long, default_value = "http://127.0.0.1:8000/api")]
    pub api: String,
    /// Server API key (http_api.key).
    #[arg(long, env = "HERALD_BENCH_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Publications made while the clients are away (each client must recover all of them).
    #[arg(long, default_value_t = 100)]
    pub messages: u64,
    /// Size of each publication's data object, bytes.
    #[arg(long, default_value_t = 64)]
    pub payload_size: usize,
    /// Seconds to wait after publishing before the clients come back.
    #[arg(long, default_value_t = 1.0)]
    pub settle: f64,
    /// Clients reconnecting at a time (over all workers); 0 = all at the same moment.
    #[arg(long, default_value_t = 0)]
    pub reconnect_concurrency: usize,
    /// Seconds allowed for one client's reconnect + recovering subscribe.
    #[arg(long, default_value_t = 30.0)]
    pub recover_timeout: f64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.cmd {
        Cmd::Worker => return worker::main(),
        Cmd::Table { file } => {
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())
            } else {
                std::fs::read_to_string(file)
            };
            return match text {
                Ok(t) => {
                    print!("{}", report::markdown_tables(&t));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("herald-bench: {}: {e}", file.display());
                    ExitCode::FAILURE
                }
            };
        }
        _ => {}
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("herald-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let res = rt.block_on(async {
        match cli.cmd {
            Cmd::Fanout(a) => scenario::fanout(a).await,
            Cmd::Idle(a) => scenario::idle(a).await,
            Cmd::Connect(a) => scenario::connect(a).await,
            Cmd::Publish(a) => publish::publish(a).await,
            Cmd::Recover(a) => recover::recover(a).await,
            Cmd::Worker | Cmd::Table { .. } => unreachable!("handled above"),
        }
    });
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("herald-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
