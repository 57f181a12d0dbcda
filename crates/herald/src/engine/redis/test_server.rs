//! A throwaway `redis-server` for the engine's unit tests: on a free port, in a temp dir, no
//! persistence, killed when dropped. Never the machine's shared Redis.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `redis-server`, killed on drop.
pub(crate) struct TestRedis {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl TestRedis {
    /// Starts one and waits until it answers (panics when it cannot: a test fixture).
    pub(crate) fn start() -> TestRedis {
        let dir = tempfile::tempdir().expect("temp dir");
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let child = Command::new(redis_server())
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server (apt-get install redis-server)");
            let mut child = child;
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    break; // the port was taken meanwhile: try another
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return TestRedis {
                        child,
                        port,
                        _dir: dir,
                    };
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("redis-server did not start");
    }

    /// `redis://127.0.0.1:<port>`.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The engine's connection layer on it (short timeouts, so a test of a dead Redis is
    /// quick).
    pub(crate) fn shards(&self) -> std::sync::Arc<super::RedisShards> {
        let config = crate::config::RedisConfig {
            address: vec![self.url()],
            connect_timeout: Duration::from_secs(1),
            io_timeout: Duration::from_secs(1),
            ..crate::config::RedisConfig::default()
        };
        super::RedisShards::connect(&config).expect("the test redis address")
    }

    /// A client for it.
    pub(crate) fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).expect("redis url")
    }

    /// A connection manager (reconnecting, multiplexed) to it.
    pub(crate) async fn manager(&self) -> redis::aio::ConnectionManager {
        self.client()
            .get_connection_manager()
            .await
            .expect("connect to the test redis")
    }
}

fn redis_server() -> &'static str {
    if std::path::Path::new("/usr/bin/redis-server").exists() {
        "/usr/bin/redis-server"
    } else {
        "redis-server"
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
