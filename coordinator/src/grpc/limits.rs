//! Fair shares of the coordinator: no one caller can hold what the others need.
//!
//! In front of everything else (before the global concurrency limit), each request is counted
//! against its caller's identity (the client certificate): at most `per_identity` requests of
//! one identity are in the coordinator at once, and all source agents together at most
//! `sources` (backup servers are the many, and any one may be compromised). A request over
//! either share is answered RESOURCE_EXHAUSTED at once, without waiting. Then the request's
//! body must arrive within `body_timeout`; only a whole body goes on to the handlers and takes
//! a slot of the global limit, so headers sent without a body hold nothing but the sender's
//! own share. HTTP/2 streams per connection are bounded by the server (see `server.rs`).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::BodyExt;
use seedship_proto::identity::Role;
use sha2::{Digest, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;
use tonic::body::Body;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

/// The shares, from `[server]` in the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub per_identity: usize,
    pub sources: usize,
    pub body_timeout: Duration,
    pub max_body: usize,
}

/// Forgotten identities are dropped once this many are known (only idle ones).
const KNOWN_MAX: usize = 20_000;

/// A caller's role (from its certificate) and its share.
type Share = (Option<Role>, Arc<Semaphore>);

struct Shared {
    limits: Limits,
    /// Certificate (SHA-256 of its DER) → its role and its share.
    known: Mutex<HashMap<[u8; 32], Share>>,
    sources: Arc<Semaphore>,
}

#[derive(Clone)]
pub struct LimitLayer(Arc<Shared>);

impl LimitLayer {
    pub fn new(limits: Limits) -> Self {
        LimitLayer(Arc::new(Shared {
            limits,
            known: Mutex::new(HashMap::new()),
            sources: Arc::new(Semaphore::new(limits.sources)),
        }))
    }
}

impl<S> tower::Layer<S> for LimitLayer {
    type Service = Limit<S>;
    fn layer(&self, inner: S) -> Limit<S> {
        Limit { inner, shared: self.0.clone() }
    }
}

#[derive(Clone)]
pub struct Limit<S> {
    inner: S,
    shared: Arc<Shared>,
}

fn refuse(status: Status) -> http::Response<Body> {
    status.into_http()
}

impl Shared {
    /// The caller's permits, or the refusal to send.
    fn admit(&self, req: &http::Request<Body>) -> Result<Vec<OwnedSemaphorePermit>, Status> {
        let Some(der) = req
            .extensions()
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .and_then(|i| i.peer_certs())
            .and_then(|c| c.first().map(|c| c.as_ref().to_vec()))
        else {
            // No client certificate: the handlers refuse it (UNAUTHENTICATED).
            return Ok(Vec::new());
        };
        let key: [u8; 32] = Sha256::digest(&der).into();
        let (role, mine) = {
            let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
            if known.len() >= KNOWN_MAX && !known.contains_key(&key) {
                let full = self.limits.per_identity;
                known.retain(|_, (_, s)| s.available_permits() < full);
            }
            known
                .entry(key)
                .or_insert_with(|| {
                    let role = crate::auth::spiffe_id_of(&der).ok().map(|id| id.role);
                    (role, Arc::new(Semaphore::new(self.limits.per_identity)))
                })
                .clone()
        };
        let busy = |what: &str| {
            Status::resource_exhausted(format!(
                "too many requests in flight from {what}; wait for answers before sending more, then retry"
            ))
        };
        let mut permits = vec![mine.try_acquire_owned().map_err(|_| busy("this client certificate"))?];
        if role == Some(Role::Source) {
            permits.push(self.sources.clone().try_acquire_owned().map_err(|_| busy("backup servers"))?);
        }
        Ok(permits)
    }
}

impl<S> tower::Service<http::Request<Body>> for Limit<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Readiness is the inner service's business once a request is admitted (the global
        // limit waits there); admission itself never waits.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let shared = self.shared.clone();
        // The clone is the one made ready below; `self.inner` stays for the next call.
        let mut inner = self.inner.clone();
        Box::pin(async move {
            let permits = match shared.admit(&req) {
                Ok(p) => p,
                Err(status) => {
                    tracing::warn!(path = %req.uri().path(), reason = %status.message(), "request refused: the caller's share is in use");
                    return Ok(refuse(status));
                }
            };
            let (parts, body) = req.into_parts();
            let limited = http_body_util::Limited::new(body, shared.limits.max_body + 5);
            let bytes = match tokio::time::timeout(shared.limits.body_timeout, limited.collect()).await {
                Ok(Ok(c)) => c.to_bytes(),
                Ok(Err(e)) => {
                    let status = if e.to_string().contains("length limit") {
                        Status::resource_exhausted("the request is larger than the coordinator accepts")
                    } else {
                        Status::invalid_argument(format!("the request body could not be read: {e}"))
                    };
                    return Ok(refuse(status));
                }
                Err(_) => {
                    tracing::warn!(path = %parts.uri.path(), "request refused: its body did not arrive in time");
                    return Ok(refuse(Status::deadline_exceeded(format!(
                        "the request body did not arrive within {:?}",
                        shared.limits.body_timeout
                    ))));
                }
            };
            let req = http::Request::from_parts(parts, Body::new(http_body_util::Full::new(bytes)));
            std::future::poll_fn(|cx| inner.poll_ready(cx)).await?;
            let out = inner.call(req).await;
            drop(permits);
            out
        })
    }
}
