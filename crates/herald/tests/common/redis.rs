//! Real Redis processes for the Redis engine's tests: a standalone server on a free port
//! ([`RedisServer`], which can be stopped and started again on the same port), a three-master
//! Redis Cluster ([`RedisCluster`]) and a master watched by one sentinel ([`RedisSentinel`]).
//! Each runs in a temporary directory without persistence and is killed when dropped; the
//! machine's own Redis is never touched.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `redis-server`: Debian's path, or whatever is on `PATH`.
fn redis_server_bin() -> String {
    ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
        .iter()
        .find(|p| Path::new(p).exists())
        .map_or_else(|| "redis-server".to_string(), |p| p.to_string())
}

fn redis_cli_bin() -> String {
    ["/usr/bin/redis-cli", "/usr/local/bin/redis-cli"]
        .iter()
        .find(|p| Path::new(p).exists())
        .map_or_else(|| "redis-cli".to_string(), |p| p.to_string())
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Waits until `port` answers PING (bounded).
fn wait_ready(port: u16, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("redis-server on port {port} exited at start: {status}");
        }
        if cli(port, &["PING"]).is_some_and(|o| o.trim() == "PONG") {
            return;
        }
        std::thread::sleep(Duration::from_millis(30));
    }
    panic!("redis-server on port {port} did not answer PING within 10 s");
}

/// Runs `redis-cli -p PORT ARGS` (bounded by its own timeout); its output, if it ran.
pub fn cli(port: u16, args: &[&str]) -> Option<String> {
    let output = Command::new("timeout")
        .arg("5")
        .arg(redis_cli_bin())
        .arg("-p")
        .arg(port.to_string())
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

fn spawn(args: &[String], dir: &Path) -> Child {
    Command::new(redis_server_bin())
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn redis-server (install Debian's redis-server)")
}

fn kill(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// A standalone `redis-server --port P --save '' --appendonly no` in a temporary directory.
pub struct RedisServer {
    /// Its port.
    pub port: u16,
    dir: tempfile::TempDir,
    extra: Vec<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts one on a free port and waits until it answers.
    pub fn start() -> RedisServer {
        RedisServer::start_with(&[])
    }

    /// Starts one on `port`.
    pub fn start_on(port: u16) -> RedisServer {
        let mut server = RedisServer {
            port,
            dir: tempfile::tempdir().expect("tempdir"),
            extra: Vec::new(),
            child: None,
        };
        server.restart();
        server
    }

    /// Starts one with extra `redis-server` arguments.
    pub fn start_with(extra: &[&str]) -> RedisServer {
        let mut server = RedisServer {
            port: free_port(),
            dir: tempfile::tempdir().expect("tempdir"),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        server.restart();
        server
    }

    /// Its URL, `redis://127.0.0.1:P`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills it (SIGKILL): everything in it is lost, as the server keeps nothing on disk.
    pub fn stop(&mut self) {
        kill(&mut self.child);
    }

    /// Starts it again on the same port (empty), after [`RedisServer::stop`].
    pub fn restart(&mut self) {
        self.stop();
        let mut args: Vec<String> = [
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            &self.dir.path().display().to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(self.extra.iter().cloned());
        let mut child = spawn(&args, self.dir.path());
        wait_ready(self.port, &mut child);
        self.child = Some(child);
    }

    /// `redis-cli` against it.
    pub fn cli(&self, args: &[&str]) -> Option<String> {
        cli(self.port, args)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Three cluster-enabled masters joined with `redis-cli --cluster create`, no replicas.
pub struct RedisCluster {
    /// The masters' ports.
    pub ports: Vec<u16>,
    _dirs: Vec<tempfile::TempDir>,
    children: Vec<Option<Child>>,
}

impl RedisCluster {
    /// Starts the three masters, creates the cluster and waits until it is `ok`.
    pub fn start() -> RedisCluster {
        let mut ports = Vec::new();
        let mut dirs = Vec::new();
        let mut children = Vec::new();
        for _ in 0..3 {
            let port = free_port();
            let dir = tempfile::tempdir().expect("tempdir");
            let args: Vec<String> = [
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                &dir.path().join("nodes.conf").display().to_string(),
                "--cluster-node-timeout",
                "2000",
                "--dir",
                &dir.path().display().to_string(),
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            let mut child = spawn(&args, dir.path());
            wait_ready(port, &mut child);
            ports.push(port);
            dirs.push(dir);
            children.push(Some(child));
        }
        let cluster = RedisCluster {
            ports,
            _dirs: dirs,
            children,
        };
        let nodes: Vec<String> = cluster
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let mut args = vec!["--cluster".to_string(), "create".to_string()];
        args.extend(nodes);
        args.extend(["--cluster-replicas", "0", "--cluster-yes"].map(String::from));
        let status = Command::new("timeout")
            .arg("30")
            .arg(redis_cli_bin())
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli --cluster create");
        assert!(status.success(), "redis-cli --cluster create failed");
        let deadline = Instant::now() + Duration::from_secs(15);
        while !cluster
            .ports
            .iter()
            .all(|p| cli(*p, &["CLUSTER", "INFO"]).is_some_and(|i| i.contains("cluster_state:ok")))
        {
            assert!(Instant::now() < deadline, "the cluster did not become ok");
            std::thread::sleep(Duration::from_millis(100));
        }
        cluster
    }

    /// The seed URLs.
    pub fn urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            kill(child);
        }
    }
}

/// A master and one `redis-server --sentinel` watching it under the name `mymaster`.
pub struct RedisSentinel {
    /// The master.
    pub master: RedisServer,
    /// The sentinel's port.
    pub sentinel_port: u16,
    _dir: tempfile::TempDir,
    child: Option<Child>,
}

/// The master name the sentinel knows.
pub const SENTINEL_MASTER: &str = "mymaster";

impl RedisSentinel {
    /// Starts the master and the sentinel, and waits until the sentinel names the master.
    pub fn start() -> RedisSentinel {
        let master = RedisServer::start();
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let conf: PathBuf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor {SENTINEL_MASTER} 127.0.0.1 {} 1\n\
                 sentinel down-after-milliseconds {SENTINEL_MASTER} 5000\n",
                dir.path().display(),
                master.port
            ),
        )
        .expect("write sentinel.conf");
        let mut child = spawn(
            &[conf.display().to_string(), "--sentinel".to_string()],
            dir.path(),
        );
        wait_ready(port, &mut child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cli(
            port,
            &["SENTINEL", "get-master-addr-by-name", SENTINEL_MASTER],
        )
        .is_some_and(|o| o.contains(&master.port.to_string()))
        {
            assert!(
                Instant::now() < deadline,
                "the sentinel does not know the master"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        RedisSentinel {
            master,
            sentinel_port: port,
            _dir: dir,
            child: Some(child),
        }
    }
}

impl Drop for RedisSentinel {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// A master, one replica of it and one sentinel watching them (quorum 1, the master taken
/// for down after 1 s): what a Sentinel failover needs. Both servers keep nothing on disk.
pub struct SentinelGroup {
    /// The master at start.
    pub master: RedisServer,
    /// Its replica, which a failover promotes.
    pub replica: RedisServer,
    /// The sentinel's port.
    pub sentinel_port: u16,
    _dir: tempfile::TempDir,
    child: Option<Child>,
}

impl SentinelGroup {
    /// Starts the master, the replica (waiting until it is in sync) and the sentinel, and
    /// waits until the sentinel knows both.
    pub fn start() -> SentinelGroup {
        let master = RedisServer::start();
        let master_port = master.port.to_string();
        let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &master_port]);
        let deadline = Instant::now() + Duration::from_secs(15);
        while !replica
            .cli(&["INFO", "replication"])
            .is_some_and(|i| i.contains("master_link_status:up"))
        {
            assert!(Instant::now() < deadline, "the replica did not sync");
            std::thread::sleep(Duration::from_millis(50));
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let conf: PathBuf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\n\
                 sentinel monitor {SENTINEL_MASTER} 127.0.0.1 {master_port} 1\n\
                 sentinel down-after-milliseconds {SENTINEL_MASTER} 1000\n\
                 sentinel failover-timeout {SENTINEL_MASTER} 10000\n",
                dir.path().display(),
            ),
        )
        .expect("write sentinel.conf");
        let mut child = spawn(
            &[conf.display().to_string(), "--sentinel".to_string()],
            dir.path(),
        );
        wait_ready(port, &mut child);
        let group = SentinelGroup {
            master,
            replica,
            sentinel_port: port,
            _dir: dir,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !group
            .sentinel(&["SENTINEL", "replicas", SENTINEL_MASTER])
            .is_some_and(|o| o.contains(&group.replica.port.to_string()))
        {
            assert!(
                Instant::now() < deadline,
                "the sentinel did not find the replica"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        group
    }

    /// `redis-cli` against the sentinel.
    pub fn sentinel(&self, args: &[&str]) -> Option<String> {
        cli(self.sentinel_port, args)
    }

    /// The port of the master the sentinel names now.
    pub fn named_master_port(&self) -> Option<u16> {
        self.sentinel(&["SENTINEL", "get-master-addr-by-name", SENTINEL_MASTER])?
            .lines()
            .nth(1)?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for SentinelGroup {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}
