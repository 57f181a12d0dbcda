//! A `nats-server -js` of the test's own, on a free port with its JetStream store in a
//! temporary directory, killed when dropped; [`Nats::restart`] stops and starts it on the same
//! port and store (what a NATS upgrade or crash looks like to Herald). Never the machine's
//! shared NATS.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian puts nats-server; `NATS_SERVER` overrides.
fn nats_server_bin() -> String {
    std::env::var("NATS_SERVER").unwrap_or_else(|_| {
        ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap_or("nats-server")
            .to_owned()
    })
}

/// A free TCP port on 127.0.0.1 (bound and released: good enough for a test's server).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A running nats-server with JetStream.
pub struct Nats {
    child: Option<Child>,
    /// Extra `nats-server` arguments (TLS).
    args: Vec<String>,
    /// Its client port.
    pub port: u16,
    store: tempfile::TempDir,
}

impl Nats {
    /// Starts one and waits until it accepts connections.
    pub fn start() -> Nats {
        Nats::start_with(&[])
    }

    /// Starts one with extra arguments (e.g. `--tls --tlscert FILE --tlskey FILE`).
    pub fn start_with(args: &[&str]) -> Nats {
        let store = tempfile::tempdir().expect("a JetStream store directory");
        let mut nats = Nats {
            child: None,
            args: args.iter().map(|a| a.to_string()).collect(),
            port: free_port(),
            store,
        };
        nats.spawn();
        nats
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let child = Command::new(nats_server_bin())
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(self.store.path())
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nats-server (apt-get install nats-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not listen within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops it: SIGTERM (JetStream flushes its store) and waits.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on the child we spawned.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().ok().flatten().is_none() {
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and store.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "nats-server is running");
        self.spawn();
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
