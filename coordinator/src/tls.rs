//! The coordinator's TLS listener: TLS 1.3 only, client certificate from our CA mandatory.
//!
//! tonic's own `ServerTlsConfig` cannot pin the protocol version, so we build the rustls
//! config ourselves and hand tonic a stream of finished handshakes. Each handshake runs in its
//! own task with a deadline, so a slow or hostile client cannot hold up the accept loop.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use std::sync::RwLock;

use rustls::RootCertStore;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;

use seedship_proto::keyfile;

/// The coordinator's server certificate with its key, swapped in place when it is renewed
/// (`workers/certs.rs`): every listener resolves it at each handshake, so a new certificate
/// takes effect without a restart and without dropping a connection.
#[derive(Debug)]
pub struct ServerCert(RwLock<Arc<CertifiedKey>>);

impl ServerCert {
    /// Loads `cert` and `key`; the CA goes with the certificate (an enrolling agent checks the
    /// chain against the CA's fingerprint). A renewal a crash interrupted between writing the
    /// key and the certificate is finished first (`<cert>.next` holds the new certificate).
    pub fn load(ca: &Path, cert: &Path, key: &Path) -> Result<Arc<ServerCert>, String> {
        let ck = match certified(ca, cert, key) {
            Ok(ck) => ck,
            Err(e) => {
                let next = next_path(cert);
                if !next.exists() {
                    return Err(e);
                }
                let ck = certified(ca, &next, key).map_err(|_| e)?;
                std::fs::rename(&next, cert).map_err(|e| format!("{}: {e}", cert.display()))?;
                tracing::warn!(cert = %cert.display(), "finished a server certificate renewal that a stop interrupted");
                ck
            }
        };
        Ok(Arc::new(ServerCert(RwLock::new(Arc::new(ck)))))
    }

    /// Reads the files again (after a renewal wrote them).
    pub fn reload(&self, ca: &Path, cert: &Path, key: &Path) -> Result<(), String> {
        let ck = certified(ca, cert, key)?;
        *self.0.write().map_err(|_| "poisoned".to_string())? = Arc::new(ck);
        Ok(())
    }

    /// The certificate (DER) presented now.
    pub fn leaf(&self) -> Option<Vec<u8>> {
        self.0.read().ok().and_then(|c| c.cert.first().map(|d| d.to_vec()))
    }
}

impl ResolvesServerCert for ServerCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.read().ok().map(|c| c.clone())
    }
}

/// Where a renewal writes the new certificate before it takes the certificate file's place.
pub fn next_path(cert: &Path) -> std::path::PathBuf {
    let mut p = cert.as_os_str().to_owned();
    p.push(".next");
    p.into()
}

fn certified(ca: &Path, cert: &Path, key: &Path) -> Result<CertifiedKey, String> {
    let (ca_certs, _) = keyfile::read_certs(ca).map_err(|e| e.to_string())?;
    let (mut chain, _) = keyfile::read_certs(cert).map_err(|e| e.to_string())?;
    let (key, _) = keyfile::read_key(key).map_err(|e| e.to_string())?;
    chain.extend(ca_certs.iter().filter(|c| !chain.contains(c)).cloned().collect::<Vec<_>>());
    let signing = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("{}: unusable key: {e}", cert.display()))?;
    let ck = CertifiedKey::new(chain, signing);
    ck.keys_match().map_err(|e| format!("certificate {} does not match its key: {e}", cert.display()))?;
    Ok(ck)
}

/// Builds the rustls server config: TLS 1.3, a client certificate from the CA `ca`
/// mandatory, our certificate from `cert`.
pub fn server_config(ca: &Path, cert: Arc<ServerCert>) -> Result<rustls::ServerConfig, String> {
    let (ca_certs, _) = keyfile::read_certs(ca).map_err(|e| e.to_string())?;
    let mut roots = RootCertStore::empty();
    for c in ca_certs {
        roots.add(c).map_err(|e| format!("CA certificate {} is unusable: {e}", ca.display()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| format!("cannot build the client verifier from {}: {e}", ca.display()))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(cert);
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(cfg)
}

pub type Incoming = ReceiverStream<Result<TlsStream<TcpStream>, std::io::Error>>;

/// Accepts TCP connections on `listener` and yields those whose TLS handshake succeeded.
pub fn incoming(listener: TcpListener, cfg: rustls::ServerConfig, handshake_timeout: Duration) -> Incoming {
    let acceptor = TlsAcceptor::from(Arc::new(cfg));
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = tokio::select! {
                _ = tx.closed() => return,
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(tls)).await;
                    }
                    Ok(Err(e)) => log_refused(peer, &e.to_string()),
                    Err(_) => log_refused(peer, "handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

fn log_refused(peer: SocketAddr, why: &str) {
    tracing::warn!(%peer, reason = %why, "TLS handshake refused");
}
