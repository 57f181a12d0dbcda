//! TLS inside a [`WebSocket`](crate::WebSocket) (`wss://`), kept in the readiness model of
//! plain connections.
//!
//! A plain connection reads with `try_read` and writes with one vectored `sendmsg`, both on
//! the raw socket, and waits for readiness in between. A TLS connection does the same on the
//! same socket, with rustls's sans-I/O [`ServerConnection`] in the middle: [`Tls::read`] is a
//! `try_read` of plaintext (socket bytes → `read_tls` → `process_new_packets` → the
//! plaintext reader), and [`Tls::send`] a `sendmsg` of plaintext (frames → the connection's
//! plaintext writer, which encrypts them into its TLS buffer → `write_tls` to the socket).
//! Both say `WouldBlock` exactly when the socket does, so the connection's waiting, write
//! timeout and backpressure work unchanged.
//!
//! The TLS output buffer is bounded ([`SEND_BUFFER`]): a peer that stops reading makes
//! [`Tls::send`] take nothing more once it is full, as a full socket buffer does, and the
//! frames wait in the connection's queue, within its outbox budget. The state lives in the
//! connection's boxed `Cold` part, so a plain connection pays nothing for it.

use std::io::{self, IoSlice, Read, Write};

use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use rustls::ServerConnection;
use tokio::net::TcpStream;

use crate::connection::SEND_FLAGS;
use crate::error::Error;

/// The most encrypted bytes a connection keeps waiting for the socket: rustls's default, set
/// explicitly since backpressure depends on it. Plaintext is taken only while the buffer has
/// room, so a connection's TLS output never holds more than this plus one record.
pub const SEND_BUFFER: usize = 64 * 1024;

/// The TLS session of one WebSocket connection (see the module documentation).
pub(crate) struct Tls {
    conn: ServerConnection,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("wants_write", &self.conn.wants_write())
            .finish_non_exhaustive()
    }
}

/// The TCP stream of an upgraded hyper connection, its TLS session if it was a TLS one
/// (`TokioIo<tokio_rustls::server::TlsStream<TcpStream>>`), and the bytes hyper read past
/// the request (plaintext).
pub(crate) fn upgraded_stream(
    upgraded: Upgraded,
) -> Result<(TcpStream, Option<Box<Tls>>, bytes::Bytes), Error> {
    let upgraded = match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(parts) => return Ok((parts.io.into_inner(), None, parts.read_buf)),
        Err(upgraded) => upgraded,
    };
    match upgraded.downcast::<TokioIo<tokio_rustls::server::TlsStream<TcpStream>>>() {
        Ok(parts) => {
            let (stream, conn) = parts.io.into_inner().into_inner();
            Ok((stream, Some(Tls::new(conn)), parts.read_buf))
        }
        Err(_) => Err(Error::Io(io::Error::other(
            "WebSocket upgrade on a transport other than TCP or TLS over TCP (tokio-rustls) \
             is not supported",
        ))),
    }
}

impl Tls {
    /// Takes over a session whose handshake is done.
    pub(crate) fn new(mut conn: ServerConnection) -> Box<Tls> {
        conn.set_buffer_limit(Some(SEND_BUFFER));
        Box::new(Tls { conn })
    }

    /// Reads plaintext into `buf`, as `try_read` on the socket would: `Ok(0)` at the end of
    /// the stream (the peer's close_notify, or its FIN), `WouldBlock` when the socket has
    /// nothing more. Plaintext already decrypted is handed out before the socket is read
    /// again, so `WouldBlock` (which clears the socket's readiness) is never returned while
    /// rustls still holds some.
    pub(crate) fn read(&mut self, stream: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.conn.reader().read(buf) {
                Ok(n) => return Ok(n),
                // The peer's FIN without close_notify: for a WebSocket, whose close handshake
                // says whether the end was clean, an end of stream like any other.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            // No plaintext waiting: read records from the socket.
            self.conn.read_tls(&mut Socket(stream))?;
            if let Err(e) = self.conn.process_new_packets() {
                // rustls queued an alert saying why; send it if the socket takes it.
                let _ = self.flush(stream);
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
        }
    }

    /// Writes plaintext from `slices`, as a vectored `sendmsg` on the socket would: returns how
    /// many bytes were taken (encrypted, and sent as far as the socket takes them), or
    /// `WouldBlock` when the TLS buffer is full and the socket takes nothing.
    pub(crate) fn send(&mut self, stream: &TcpStream, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        match self.flush(stream) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        let taken = self.conn.writer().write_vectored(slices)?;
        if taken == 0 && slices.iter().any(|s| !s.is_empty()) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        match self.flush(stream) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        Ok(taken)
    }

    /// Whether encrypted bytes wait for the socket.
    pub(crate) fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// Writes waiting encrypted bytes to the socket. `Ok(())` once none wait; `WouldBlock`
    /// when the socket stops taking them first.
    pub(crate) fn flush(&mut self, stream: &TcpStream) -> io::Result<()> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut Socket(stream)) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Ends the session: queues a close_notify alert and sends what the socket takes now (the
    /// caller half-closes the socket next; a peer that misses the alert sees the FIN).
    pub(crate) fn close_notify(&mut self, stream: &TcpStream) {
        self.conn.send_close_notify();
        let _ = self.flush(stream);
    }
}

/// The socket as blocking-style `Read`/`Write` for rustls, without ever blocking: reads are
/// `try_read`, writes `sendmsg` (no SIGPIPE) through tokio's readiness, so `WouldBlock`
/// clears the readiness the connection then waits for.
struct Socket<'a>(&'a TcpStream);

impl Read for Socket<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl Write for Socket<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_io(tokio::io::Interest::WRITABLE, || {
            socket2::SockRef::from(self.0).send_vectored_with_flags(bufs, SEND_FLAGS)
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
    use rustls::{DigitallySignedStruct, SignatureScheme};
    use tokio::io::AsyncReadExt as _;

    use super::*;

    /// A server config with a self-signed certificate that `openssl` makes for the test.
    fn server_config() -> Arc<rustls::ServerConfig> {
        let dir = std::env::temp_dir().join(format!("herald-ws-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let out = std::process::Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
            .args(["-subj", "/CN=localhost", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("run openssl (the TLS tests make their certificate with it)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let chain = vec![CertificateDer::from_pem_file(&cert).expect("the certificate")];
        let key = PrivateKeyDer::from_pem_file(&key).expect("the key");
        let _ = std::fs::remove_dir_all(&dir);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Arc::new(
            rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("TLS versions")
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .expect("a usable certificate"),
        )
    }

    /// The test's client trusts whatever the server presents: what is tested is the
    /// connection's buffering, not certificate checks.
    #[derive(Debug)]
    struct TrustAnything(Arc<rustls::crypto::CryptoProvider>);

    impl ServerCertVerifier for TrustAnything {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }

        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    /// Sets a socket's buffer sizes small, so that the kernel holds little of what is sent.
    fn small_buffers(stream: &TcpStream) {
        let socket = socket2::SockRef::from(stream);
        socket.set_send_buffer_size(4096).expect("SO_SNDBUF");
        socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    }

    /// Output to a peer that does not read: [`Tls::send`] takes no more than the TLS buffer's
    /// limit beyond what the kernel holds, then says `WouldBlock` (the backpressure the
    /// connection's write timeout and queue budget build on); and once the peer reads, what
    /// was taken arrives whole.
    #[tokio::test]
    async fn output_to_a_peer_that_does_not_read_stays_within_the_buffer() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client_config = Arc::new(
            rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .expect("TLS versions")
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(TrustAnything(provider)))
                .with_no_client_auth(),
        );
        let client = async {
            let tcp = TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("connect");
            small_buffers(&tcp);
            let name = ServerName::try_from("localhost").expect("a name");
            tokio_rustls::TlsConnector::from(client_config)
                .connect(name, tcp)
                .await
                .expect("client handshake")
        };
        let server = async {
            let (tcp, _) = listener.accept().await.expect("accept");
            small_buffers(&tcp);
            tokio_rustls::TlsAcceptor::from(server_config())
                .accept(tcp)
                .await
                .expect("server handshake")
        };
        let (mut client, server) =
            tokio::time::timeout(std::time::Duration::from_secs(10), async {
                tokio::join!(client, server)
            })
            .await
            .expect("handshake in time");
        let (stream, conn) = server.into_inner();
        let mut tls = Tls::new(conn);

        let chunk = vec![7u8; 1 << 20];
        let mut taken = 0;
        let mut blocked = false;
        for _ in 0..16 {
            match tls.send(&stream, &[IoSlice::new(&chunk)]) {
                Ok(n) => taken += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    blocked = true;
                    break;
                }
                Err(e) => panic!("send: {e}"),
            }
        }
        assert!(blocked, "16 MiB taken for a peer that reads nothing");
        // The kernel's buffers (asked small; Linux doubles and rounds them) and rustls's.
        assert!(
            taken <= SEND_BUFFER + 256 * 1024,
            "{taken} bytes taken for a peer that reads nothing (TLS buffer {SEND_BUFFER})"
        );
        assert!(
            tls.wants_write(),
            "nothing waits although the socket is full"
        );

        // The peer reads: what was taken arrives, whole.
        let read = async {
            let mut got = vec![0u8; taken];
            client.read_exact(&mut got).await.expect("read");
            got
        };
        let write = async {
            while tls.wants_write() {
                stream.writable().await.expect("writable");
                match tls.flush(&stream) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => panic!("flush: {e}"),
                }
            }
        };
        let (got, ()) = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            tokio::join!(read, write)
        })
        .await
        .expect("the taken bytes arrive in time");
        assert!(got.iter().all(|&b| b == 7), "the bytes arrived altered");
    }
}
