//! The coordinator's TLS listener: TLS 1.3 only, client certificate from our CA mandatory.
//!
//! tonic's own `ServerTlsConfig` cannot pin the protocol version, so we build the rustls
//! config ourselves and hand tonic a stream of finished handshakes. Each handshake runs in its
//! own task with a deadline, so a slow or hostile client cannot hold up the accept loop.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;

use seedship_proto::keyfile;

/// Builds the rustls server config from PEM files.
pub fn server_config(ca: &Path, cert: &Path, key: &Path) -> Result<rustls::ServerConfig, String> {
    let (ca_certs, _) = keyfile::read_certs(ca).map_err(|e| e.to_string())?;
    let (chain, _) = keyfile::read_certs(cert).map_err(|e| e.to_string())?;
    let (key, _) = keyfile::read_key(key).map_err(|e| e.to_string())?;
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
        .with_single_cert(chain, key)
        .map_err(|e| format!("certificate {} does not match its key: {e}", cert.display()))?;
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
