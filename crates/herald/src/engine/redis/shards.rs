//! The connection layer of the Redis engine: [`RedisShards`], the shards channels are spread
//! over, and [`Shard`], one Redis deployment (a standalone server, a Sentinel-managed master or
//! a Redis Cluster) with its command connection ([`Shard::conn`]) and fresh PUB/SUB
//! connections ([`Shard::pubsub`]).
//!
//! Every call has a deadline: connecting is bounded by `connect_timeout`, every command by
//! `io_timeout` (the connections' response timeout), so a Redis that is down or slow gives an
//! error, never a hang. A command connection that failed is dropped and made again on the next
//! use; while Redis stays unreachable, attempts are at most one per [`RETRY_AFTER`] and the
//! calls in between fail at once with the last error.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex, MutexGuard};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{
    AsyncConnectionConfig, Client, Cmd, ConnectionAddr, ConnectionInfo, IntoConnectionInfo,
    Pipeline, RedisFuture, Value,
};

use super::tls::TlsSettings;
use crate::config::RedisConfig;
use crate::engine::EngineError;

/// While a shard cannot be reached, how long calls fail with the last error before the next
/// connection attempt (so that a burst of publishes does not queue one connect each).
pub const RETRY_AFTER: Duration = Duration::from_millis(200);

/// The shards of a Redis engine, built from `engine.redis`. Channels are spread over them by
/// a jump consistent hash of the channel name ([`RedisShards::for_key`]), so the same channel
/// lands on the same shard on every node, and adding a shard moves only its share of them.
pub struct RedisShards {
    shards: Vec<Arc<Shard>>,
    prefix: String,
    io_timeout: Duration,
}

impl std::fmt::Debug for RedisShards {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisShards")
            .field("shards", &self.shards.len())
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl RedisShards {
    /// The shards `config` describes: one per `address`, or one Redis Cluster
    /// (`cluster_address`), or one Sentinel-managed master (`sentinel_address`). Parses
    /// addresses and TLS material now (an error names the option); connects lazily, on first
    /// use, so that a node starts while Redis is down (as Centrifugo does) and reports it on
    /// `/health`.
    pub fn connect(config: &RedisConfig) -> Result<Arc<RedisShards>, EngineError> {
        let tls = TlsSettings::from_config(&config.tls)?;
        let settings = Settings {
            db: config.db,
            user: config.user.clone(),
            password: config.password.clone(),
            tls,
            connect_timeout: config.connect_timeout,
            io_timeout: config.io_timeout,
        };
        let shards: Vec<Target> = if !config.cluster_address.is_empty() {
            let seeds = config
                .cluster_address
                .iter()
                .map(|a| settings.info("engine.redis.cluster_address", a))
                .collect::<Result<Vec<_>, _>>()?;
            vec![Target::Cluster(seeds)]
        } else if !config.sentinel_address.is_empty() {
            let sentinel_settings = Settings {
                db: 0,
                user: config.sentinel_user.clone(),
                password: config.sentinel_password.clone(),
                tls: TlsSettings::default(),
                ..settings.clone()
            };
            let sentinels = config
                .sentinel_address
                .iter()
                .map(|a| sentinel_settings.info("engine.redis.sentinel_address", a))
                .collect::<Result<Vec<_>, _>>()?;
            vec![Target::Sentinel {
                sentinels,
                master: config.sentinel_master_name.clone(),
            }]
        } else {
            config
                .address
                .iter()
                .map(|a| settings.info("engine.redis.address", a).map(Target::Single))
                .collect::<Result<Vec<_>, _>>()?
        };
        if shards.is_empty() {
            return Err(EngineError::BadRequest(
                "engine.redis.address is empty: give a Redis URL".into(),
            ));
        }
        Ok(Arc::new(RedisShards {
            shards: shards
                .into_iter()
                .enumerate()
                .map(|(index, target)| {
                    Arc::new(Shard {
                        index,
                        target,
                        settings: settings.clone(),
                        lanes: Default::default(),
                        generation: AtomicU64::new(0),
                        last_failure: StdMutex::new(None),
                        following: sentinel::Following::default(),
                    })
                })
                .collect(),
            prefix: config.prefix.clone(),
            io_timeout: config.io_timeout,
        }))
    }

    /// The shard that holds `channel` (its stream, meta and PUB/SUB channel).
    pub fn for_key(&self, channel: &str) -> &Arc<Shard> {
        &self.shards[jump_hash(fnv1a(channel.as_bytes()), self.shards.len())]
    }

    /// Every shard, in `address` order.
    pub fn all(&self) -> &[Arc<Shard>] {
        &self.shards
    }

    /// The key prefix (`engine.redis.prefix`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The deadline of one command (`engine.redis.io_timeout`).
    pub fn io_timeout(&self) -> Duration {
        self.io_timeout
    }
}

/// Connection settings shared by a deployment's connections.
#[derive(Clone)]
struct Settings {
    db: i64,
    user: String,
    password: String,
    tls: TlsSettings,
    connect_timeout: Duration,
    io_timeout: Duration,
}

impl Settings {
    /// The connection info of one address: a URL (`redis://`, `rediss://`, `unix://`,
    /// `redis+unix://`) or `host:port`. What the URL says (user, password, db, TLS) wins over
    /// the separate options, which fill in what it leaves out.
    fn info(&self, option: &str, address: &str) -> Result<ConnectionInfo, EngineError> {
        let bad = |e: &dyn std::fmt::Display| {
            EngineError::BadRequest(format!(
                "{option}: {address:?} is not a Redis address ({e}); write it as \
                 redis://[user:password@]host:port[/db], rediss://… or unix:///path"
            ))
        };
        let url = if address.contains("://") {
            address.to_string()
        } else {
            format!("redis://{address}")
        };
        let info = url.as_str().into_connection_info().map_err(|e| bad(&e))?;
        let mut redis = info.redis_settings().clone();
        let url_db = url::db_in(&url);
        if !url_db {
            redis = redis.set_db(self.db);
        }
        if redis.username().is_none() && !self.user.is_empty() {
            redis = redis.set_username(&self.user);
        }
        if redis.password().is_none() && !self.password.is_empty() {
            redis = redis.set_password(&self.password);
        }
        let addr = match info.addr().clone() {
            ConnectionAddr::Tcp(host, port) if self.tls.enabled => ConnectionAddr::TcpTls {
                host,
                port,
                insecure: self.tls.insecure,
                tls_params: None,
            },
            ConnectionAddr::TcpTls {
                host,
                port,
                insecure,
                tls_params,
            } => ConnectionAddr::TcpTls {
                host,
                port,
                insecure: insecure || self.tls.insecure,
                tls_params,
            },
            other => other,
        };
        Ok(info.set_addr(addr).set_redis_settings(redis))
    }

    /// A client for `info`, with the configured certificates when it speaks TLS.
    fn client(&self, info: ConnectionInfo) -> redis::RedisResult<Client> {
        match (info.addr(), self.tls.certificates()) {
            (ConnectionAddr::TcpTls { .. }, Some(certs)) => Client::build_with_tls(info, certs),
            _ => Client::open(info),
        }
    }

    fn async_config(&self) -> AsyncConnectionConfig {
        AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.io_timeout))
    }
}

/// Minimal URL inspection the connection info does not expose.
mod url {
    /// Whether a `redis://host/N` URL (or `unix://…?db=N`) names its database itself.
    pub(super) fn db_in(url: &str) -> bool {
        let rest = url.split_once("://").map_or(url, |(_, r)| r);
        if url.starts_with("unix") || url.starts_with("redis+unix") {
            return rest.contains("db=");
        }
        let path = rest.split_once('/').map_or("", |(_, p)| p);
        let path = path.split(['?', '#']).next().unwrap_or("");
        !path.is_empty()
    }
}

/// What a shard connects to.
enum Target {
    /// One server.
    Single(ConnectionInfo),
    /// The master the sentinels name `master`, resolved on every (re)connection so that a
    /// failover is followed.
    Sentinel {
        sentinels: Vec<ConnectionInfo>,
        master: String,
    },
    /// A Redis Cluster, from its seed nodes.
    Cluster(Vec<ConnectionInfo>),
}

/// What a command connection of a shard is for. Each lane is a connection of its own, so that
/// a flood on one (15,000 recovering clients' history reads) cannot hold the others' commands
/// past their deadline: above all not the PUB/SUB link's liveness probe, whose lateness would
/// tear the link down, nor publishes and control messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    /// Publishes, presence, control: everything not below.
    Commands = 0,
    /// History reads (`history`, recovery, a subscriber's top, gap repair).
    Reads = 1,
    /// The PUB/SUB links' liveness probes.
    Probe = 2,
    /// What [`Lane::Commands`] carries when called from the server API's runtime (the
    /// `herald-http` threads, see `server::HTTP_THREAD`). A connection's driver task runs on
    /// the runtime that made it; the API's publishes on a connection driven by the clients'
    /// runtime waited for its reply behind every subscriber's writes there (publish round
    /// trip p50 100–150 ms at 10,000 subscribers × 100 msg/s) and crossed runtimes twice.
    Http = 3,
}

/// One lane's connection, with its generation (see [`Shard::broken`]).
#[derive(Default)]
struct LaneSlot {
    slot: StdMutex<Option<(u64, Link)>>,
    /// Held while connecting, so that concurrent callers wait for one attempt.
    connecting: tokio::sync::Mutex<()>,
}

/// One shard: a Redis deployment and this node's command connections to it (one per [`Lane`]).
pub struct Shard {
    index: usize,
    target: Target,
    settings: Settings,
    /// The connections, indexed by [`Lane`].
    lanes: [LaneSlot; 4],
    /// Numbers connections across lanes, so that a generation names one connection.
    generation: AtomicU64,
    /// The last failed connection attempt and its error (see [`RETRY_AFTER`]).
    last_failure: StdMutex<Option<(Instant, String)>>,
    /// For a Sentinel-managed master: how this node follows it through failovers.
    following: sentinel::Following,
}

impl std::fmt::Debug for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Shard({})", self.describe())
    }
}

/// A command connection of one kind or the other.
#[derive(Clone)]
enum Link {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl Shard {
    /// Its position in `engine.redis.address` (0 for a Cluster or Sentinel).
    pub fn index(&self) -> usize {
        self.index
    }

    /// A short description for logs and `/health`: the address(es) without credentials.
    pub fn describe(&self) -> String {
        let addr = |i: &ConnectionInfo| match i.addr() {
            ConnectionAddr::Tcp(h, p) => format!("{h}:{p}"),
            ConnectionAddr::TcpTls { host, port, .. } => format!("{host}:{port} (TLS)"),
            ConnectionAddr::Unix(path) => format!("unix:{}", path.display()),
            other => format!("{other:?}"),
        };
        match &self.target {
            Target::Single(i) => format!("shard {} at {}", self.index, addr(i)),
            Target::Sentinel { sentinels, master } => format!(
                "master {master:?} of sentinels {}",
                sentinels.iter().map(addr).collect::<Vec<_>>().join(", ")
            ),
            Target::Cluster(seeds) => format!(
                "cluster of {}",
                seeds.iter().map(addr).collect::<Vec<_>>().join(", ")
            ),
        }
    }

    /// Whether this shard is a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.target, Target::Cluster(_))
    }

    /// The command connection: cheap to clone, multiplexed, every command bounded by
    /// `io_timeout`. Connects on first use (bounded by `connect_timeout`); a connection that
    /// failed is replaced on the next call.
    pub async fn conn(self: &Arc<Self>) -> Result<ShardConn, EngineError> {
        self.lane(self.command_lane()).await
    }

    /// The lane [`Shard::conn`] uses from the calling thread: [`Lane::Http`] on the server
    /// API's runtime, [`Lane::Commands`] elsewhere.
    pub fn command_lane(&self) -> Lane {
        let on_http = std::thread::current().name() == Some(crate::server::HTTP_THREAD);
        if on_http { Lane::Http } else { Lane::Commands }
    }

    /// The connection of `lane`, as [`Shard::conn`] is the one of [`Lane::Commands`].
    pub async fn lane(self: &Arc<Self>, lane: Lane) -> Result<ShardConn, EngineError> {
        if let Some(conn) = self.current(lane) {
            return Ok(conn);
        }
        let _connecting = self.lanes[lane as usize].connecting.lock().await;
        // Made by another caller while this one waited.
        if let Some(conn) = self.current(lane) {
            return Ok(conn);
        }
        if let Some((at, error)) = lock(&self.last_failure).as_ref()
            && at.elapsed() < RETRY_AFTER
        {
            return Err(EngineError::Unavailable(error.clone()));
        }
        match self.open().await {
            Ok(link) => {
                let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
                *lock(&self.lanes[lane as usize].slot) = Some((generation, link));
                *lock(&self.last_failure) = None;
                self.current(lane)
                    .ok_or_else(|| EngineError::Unavailable("connection lost".into()))
            }
            Err(error) => {
                let message = format!("cannot connect to Redis ({}): {error}", self.describe());
                *lock(&self.last_failure) = Some((Instant::now(), message.clone()));
                Err(EngineError::Unavailable(message))
            }
        }
    }

    fn current(self: &Arc<Self>, lane: Lane) -> Option<ShardConn> {
        lock(&self.lanes[lane as usize].slot)
            .as_ref()
            .map(|(generation, link)| ShardConn {
                link: link.clone(),
                generation: *generation,
                shard: self.clone(),
            })
    }

    /// Forgets the last failed connection attempt (the shard answered on another connection):
    /// the next call connects at once instead of repeating the old error.
    pub fn reachable(&self) {
        *lock(&self.last_failure) = None;
    }

    /// Drops every command connection, whatever its state, so that the next call connects
    /// anew (after the shard's PUB/SUB link was lost).
    pub fn reset(&self) {
        for lane in &self.lanes {
            *lock(&lane.slot) = None;
        }
    }

    /// Drops the command connection of `generation` after it failed, so that the next call
    /// reconnects (a connection made since is kept).
    fn broken(&self, generation: u64) {
        for lane in &self.lanes {
            let mut slot = lock(&lane.slot);
            if slot.as_ref().is_some_and(|(g, _)| *g == generation) {
                *slot = None;
            }
        }
    }

    async fn open(&self) -> Result<Link, String> {
        let deadline = self.settings.connect_timeout;
        match &self.target {
            Target::Single(info) => self.open_single(info.clone()).await.map(Link::Single),
            Target::Sentinel { .. } => {
                let info = self.resolve_master().await?;
                self.open_single(info).await.map(Link::Single)
            }
            Target::Cluster(seeds) => {
                let mut builder = ClusterClientBuilder::new(seeds.clone())
                    .connection_timeout(deadline)
                    .response_timeout(self.settings.io_timeout);
                if let Some(first) = seeds.first() {
                    let redis = first.redis_settings();
                    if let Some(user) = redis.username() {
                        builder = builder.username(user);
                    }
                    if let Some(password) = redis.password() {
                        builder = builder.password(password);
                    }
                    if let ConnectionAddr::TcpTls { insecure, .. } = first.addr() {
                        builder = builder.tls(if *insecure {
                            redis::TlsMode::Insecure
                        } else {
                            redis::TlsMode::Secure
                        });
                        if let Some(certs) = self.settings.tls.certificates() {
                            builder = builder.certs(certs);
                        }
                    }
                }
                let client = builder.build().map_err(|e| e.to_string())?;
                // The cluster client bounds each node's connect; the whole discovery too.
                match tokio::time::timeout(deadline * 3, client.get_async_connection()).await {
                    Ok(Ok(conn)) => Ok(Link::Cluster(conn)),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err(format!("no answer within {deadline:?}")),
                }
            }
        }
    }

    async fn open_single(&self, info: ConnectionInfo) -> Result<MultiplexedConnection, String> {
        let client = self.settings.client(info).map_err(|e| e.to_string())?;
        let deadline = self.settings.connect_timeout;
        match tokio::time::timeout(
            deadline + self.settings.io_timeout,
            client.get_multiplexed_async_connection_with_config(&self.settings.async_config()),
        )
        .await
        {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {deadline:?}")),
        }
    }

    /// Asks the sentinels where the master is (see `sentinel.rs`), and remembers the answer.
    async fn resolve_master(&self) -> Result<ConnectionInfo, String> {
        let (host, port) = self.ask_sentinels().await?;
        self.connecting_to(&host, port);
        let template = self.master_template();
        self.settings
            .info("engine.redis.sentinel_address", &format!("{host}:{port}"))
            .map(|i| i.set_redis_settings(template))
            .map_err(|e| e.to_string())
    }

    /// The master's credentials and database (from `engine.redis.user`, `password`, `db`).
    fn master_template(&self) -> redis::RedisConnectionInfo {
        let mut r = redis::RedisConnectionInfo::default().set_db(self.settings.db);
        if !self.settings.user.is_empty() {
            r = r.set_username(&self.settings.user);
        }
        if !self.settings.password.is_empty() {
            r = r.set_password(&self.settings.password);
        }
        r
    }

    /// A new PUB/SUB connection to this shard (for a Cluster: to the first seed node that
    /// answers; PUBLISH reaches every node of a cluster). Bounded by `connect_timeout`.
    pub async fn pubsub(&self) -> Result<redis::aio::PubSub, EngineError> {
        let infos = match &self.target {
            Target::Single(info) => vec![info.clone()],
            Target::Sentinel { .. } => vec![
                self.resolve_master()
                    .await
                    .map_err(|e| self.unavailable(&e))?,
            ],
            Target::Cluster(seeds) => seeds.clone(),
        };
        let deadline = self.settings.connect_timeout + self.settings.io_timeout;
        let mut errors = Vec::new();
        for info in infos {
            let client = self
                .settings
                .client(info)
                .map_err(|e| self.unavailable(&e))?;
            match tokio::time::timeout(deadline, client.get_async_pubsub()).await {
                Ok(Ok(pubsub)) => return Ok(pubsub),
                Ok(Err(e)) => errors.push(e.to_string()),
                Err(_) => errors.push(format!("no answer within {deadline:?}")),
            }
        }
        Err(self.unavailable(&errors.join("; ")))
    }

    fn unavailable(&self, error: &dyn std::fmt::Display) -> EngineError {
        EngineError::Unavailable(format!(
            "cannot connect to Redis ({}): {error}",
            self.describe()
        ))
    }
}

/// This node's command connection to a shard (from [`Shard::conn`]): implements
/// [`ConnectionLike`], so `redis::cmd(..).query_async(&mut conn)`, pipelines and
/// `Script::invoke_async` work on it. A call that fails because the connection broke makes
/// the shard reconnect on its next use.
#[derive(Clone)]
pub struct ShardConn {
    link: Link,
    generation: u64,
    shard: Arc<Shard>,
}

impl ShardConn {
    fn check<T>(&self, result: redis::RedisResult<T>) -> redis::RedisResult<T> {
        // READONLY: the server became a replica (a Sentinel failover demoted it) while this
        // connection lived; the next call asks the sentinels for the master again.
        if let Err(e) = &result
            && (e.is_io_error()
                || e.is_connection_dropped()
                || e.is_timeout()
                || e.code() == Some("READONLY")
                || e.to_string().contains("READONLY"))
        {
            self.shard.broken(self.generation);
        }
        result
    }
}

impl ConnectionLike for ShardConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let result = match &mut self.link {
                Link::Single(c) => c.req_packed_command(cmd).await,
                Link::Cluster(c) => c.req_packed_command(cmd).await,
            };
            self.check(result)
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let result = match &mut self.link {
                Link::Single(c) => c.req_packed_commands(pipeline, offset, count).await,
                Link::Cluster(c) => c.req_packed_commands(pipeline, offset, count).await,
            };
            self.check(result)
        })
    }

    fn get_db(&self) -> i64 {
        match &self.link {
            Link::Single(c) => c.get_db(),
            Link::Cluster(c) => c.get_db(),
        }
    }
}

mod sentinel;

/// Locks a mutex whose holder cannot leave it inconsistent (plain assignments).
fn lock<T>(m: &StdMutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// FNV-1a, 64 bits: a stable hash of channel names (the same on every node and version, which
/// `std`'s hasher does not promise).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Jump consistent hash (Lamping & Veach): the bucket of `key` among `buckets`; growing the
/// buckets from n to n+1 moves only 1/(n+1) of the keys.
fn jump_hash(mut key: u64, buckets: usize) -> usize {
    let (mut b, mut j): (i64, i64) = (-1, 0);
    while j < buckets as i64 {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b.max(0) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_spread_over_shards_and_stay_put_when_one_is_added() {
        let mut counts = [0usize; 3];
        let mut moved = 0;
        for i in 0..3000 {
            let key = fnv1a(format!("chat:{i}").as_bytes());
            let three = jump_hash(key, 3);
            counts[three] += 1;
            let four = jump_hash(key, 4);
            if four != three {
                assert_eq!(four, 3, "a key only ever moves to the new shard");
                moved += 1;
            }
        }
        assert!(counts.iter().all(|c| *c > 800), "{counts:?}");
        assert!((500..1000).contains(&moved), "{moved}");
        assert_eq!(jump_hash(fnv1a(b"x"), 1), 0);
    }

    #[test]
    fn addresses_parse_as_centrifugo_writes_them() {
        let config = RedisConfig {
            address: vec![
                "redis://u:p@h1:7000/3".into(),
                "h2:7001".into(),
                "unix:///tmp/r.sock?db=2".into(),
                "rediss://h3:7002".into(),
            ],
            db: 5,
            password: "fallback".into(),
            ..RedisConfig::default()
        };
        let shards = RedisShards::connect(&config).unwrap();
        let infos: Vec<&ConnectionInfo> = shards
            .all()
            .iter()
            .map(|s| match &s.target {
                Target::Single(i) => i,
                _ => panic!("single"),
            })
            .collect();
        assert_eq!(infos[0].redis_settings().db(), 3);
        assert_eq!(infos[0].redis_settings().username(), Some("u"));
        assert_eq!(infos[0].redis_settings().password(), Some("p"));
        assert_eq!(infos[1].redis_settings().db(), 5, "the option fills in");
        assert_eq!(infos[1].redis_settings().password(), Some("fallback"));
        assert_eq!(infos[2].redis_settings().db(), 2);
        assert!(matches!(infos[2].addr(), ConnectionAddr::Unix(_)));
        assert!(matches!(infos[3].addr(), ConnectionAddr::TcpTls { .. }));
        let bad = RedisShards::connect(&RedisConfig {
            address: vec!["redis://h:notaport".into()],
            ..RedisConfig::default()
        })
        .unwrap_err()
        .to_string();
        assert!(bad.contains("engine.redis.address"), "{bad}");
    }

    #[tokio::test]
    async fn an_unreachable_redis_fails_fast_with_a_clear_error() {
        // A port nothing listens on (bound then released).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let shards = RedisShards::connect(&RedisConfig {
            address: vec![format!("redis://127.0.0.1:{port}")],
            ..RedisConfig::default()
        })
        .unwrap();
        let started = Instant::now();
        let error = shards.all()[0].conn().await.err().unwrap().to_string();
        assert!(error.contains("cannot connect to Redis"), "{error}");
        assert!(error.contains(&port.to_string()), "{error}");
        // Within the retry window the last error comes back at once.
        let again = shards.all()[0].conn().await.err().unwrap().to_string();
        assert_eq!(again, error);
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
