//! The operations console's HTTPS listener, on its own port beside the gRPC API: the web
//! dashboard ([`dashboard`]) and `/metrics` (OpenMetrics, for Prometheus).
//!
//! TLS 1.3 with the coordinator's certificate. A client certificate from our CA is asked for
//! and optional: an operator's certificate is one way in; `/metrics` also takes the bearer
//! token of `[web] metrics_token_file`, which is how Prometheus scrapes (its
//! `authorization.credentials_file`). Role checks are those of the gRPC API: `/metrics` is
//! for operators.

pub mod dashboard;
pub mod enroll;
pub mod metrics;
pub mod openmetrics;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use seedship_proto::identity::{Role, SpiffeId};
use tokio::net::TcpListener;

use crate::config::{TlsConfig, WebConfig};
use crate::service::Coordinator;

/// Reads the metrics token (mode 0600, at least 32 characters), if one is configured.
pub fn load_token(cfg: &WebConfig) -> Result<Option<String>, String> {
    let Some(p) = &cfg.metrics_token_file else { return Ok(None) };
    seedship_proto::keyfile::check_private(p).map_err(|e| format!("web.metrics_token_file: {e}"))?;
    let t = std::fs::read_to_string(p).map_err(|e| format!("web.metrics_token_file {}: {e}", p.display()))?;
    let t = t.trim().to_string();
    if t.len() < 32 || !t.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "web.metrics_token_file {}: the token must be at least 32 printable characters (e.g. `openssl rand -hex 32`)",
            p.display()
        ));
    }
    Ok(Some(t))
}

/// The TLS side: TLS 1.3, our certificate (`cert`, renewed in place), a client certificate
/// from our CA optional.
fn tls_config(tls: &TlsConfig, cert: Arc<crate::tls::ServerCert>) -> Result<rustls::ServerConfig, String> {
    let (ca_certs, _) = seedship_proto::keyfile::read_certs(&tls.ca_file).map_err(|e| e.to_string())?;
    let mut roots = RootCertStore::empty();
    for c in ca_certs {
        roots.add(c).map_err(|e| format!("CA certificate {} is unusable: {e}", tls.ca_file.display()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| format!("cannot build the client verifier: {e}"))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(cert);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Who is asking, from the connection's client certificate (if any).
#[derive(Debug, Clone)]
pub struct Peer(pub Option<Result<SpiffeId, String>>);

#[derive(Clone)]
pub struct Web {
    pub core: Arc<Coordinator>,
    pub trust_domain: String,
    pub token: Option<String>,
    /// The stations' throughput over the last hour, for the dashboard's chart.
    pub samples: Arc<dashboard::Samples>,
    /// `[enroll]`: the CA that signs enrolling agents' certificates.
    pub enroll: Option<Arc<crate::service::enroll::Enroller>>,
}

/// Why a request was refused, as an HTTP answer (no detail that helps a stranger).
pub struct Refused(StatusCode, String);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let mut r = (self.0, format!("{}\n", self.1)).into_response();
        if self.0 == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, "Bearer realm=\"seedship\"".parse().expect("header"));
        }
        r
    }
}

fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Web {
    /// The operator asking, by certificate; or the scraper, by the metrics token (`scrape`).
    pub fn operator(&self, peer: &Peer, headers: &HeaderMap, scrape: bool) -> Result<String, Refused> {
        match &peer.0 {
            Some(Ok(id)) if self.core.is_revoked(&id.uri()) => {
                tracing::warn!(caller = %id, "web: refused a revoked identity");
                return Err(Refused(StatusCode::FORBIDDEN, format!("{id} is revoked")));
            }
            Some(Ok(id)) if id.trust_domain == self.trust_domain && id.role == Role::Operator => {
                return Ok(id.uri());
            }
            Some(Ok(id)) => {
                tracing::warn!(caller = %id, "web: refused a certificate that is not an operator's");
                return Err(Refused(StatusCode::FORBIDDEN, format!("{id} is not an operator")));
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "web: refused a client certificate without a usable identity");
                return Err(Refused(StatusCode::FORBIDDEN, e.clone()));
            }
            None => {}
        }
        if scrape
            && let Some(want) = &self.token
            && let Some(got) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())
            && let Some(got) = got.strip_prefix("Bearer ")
        {
            if same(got.trim().as_bytes(), want.as_bytes()) {
                return Ok("metrics-token".into());
            }
            tracing::warn!("web: refused a wrong metrics token");
        }
        Err(Refused(
            StatusCode::UNAUTHORIZED,
            "log in: an operator certificate, or the metrics token for /metrics".into(),
        ))
    }
}

async fn metrics_page(State(web): State<Web>, Extension(peer): Extension<Peer>, headers: HeaderMap) -> Response {
    if let Err(r) = web.operator(&peer, &headers, true) {
        return r.into_response();
    }
    match metrics::render(&web.core).await {
        Ok(text) => ([(header::CONTENT_TYPE, openmetrics::CONTENT_TYPE)], text).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "web: /metrics could not read the database");
            (StatusCode::SERVICE_UNAVAILABLE, "the coordinator's database did not answer; try again\n").into_response()
        }
    }
}

pub fn router(web: Web) -> Router {
    Router::new()
        .route("/metrics", get(metrics_page))
        .route("/", get(dashboard::index))
        .route("/app.js", get(dashboard::app_js))
        .route("/app.css", get(dashboard::app_css))
        .route("/login", get(dashboard::login))
        .route("/api/overview", get(dashboard::overview))
        .route("/api/seeds/{job}", get(dashboard::seed))
        .route("/api/seeds/{job}/actions", axum::routing::post(dashboard::seed_action))
        .route("/api/notifications/{id}/ack", axum::routing::post(dashboard::ack))
        .route("/api/agents", get(dashboard::agents))
        .route("/api/charts", get(dashboard::charts))
        .route("/api/events", get(dashboard::events))
        .route("/enroll", axum::routing::post(enroll::enroll))
        .with_state(web)
}

/// Serves the console on `listener` until `stop` turns true.
pub async fn serve(
    web: Web,
    tls: &TlsConfig,
    cert: Arc<crate::tls::ServerCert>,
    listener: TcpListener,
    handshake_timeout: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), String> {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::service::TowerToHyperService;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls_config(tls, cert)?));
    tokio::spawn(dashboard::sample(web.clone(), stop.clone()));
    let router = router(web);
    loop {
        let (tcp, peer): (_, SocketAddr) = tokio::select! {
            _ = stop.changed() => return Ok(()),
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "web: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (acceptor, router) = (acceptor.clone(), router.clone());
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(t)) => t,
                Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "web: TLS handshake refused"),
                Err(_) => return tracing::debug!(%peer, "web: TLS handshake timed out"),
            };
            let who = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|leaf| crate::auth::spiffe_id_of(leaf.as_ref()));
            let svc = TowerToHyperService::new(
                router.layer(axum::Extension(Peer(who))).layer(axum::Extension(enroll::Remote(peer))),
            );
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(tls), svc)
                .await;
        });
    }
}
