//! Refused calls in the audit log. A call that succeeds is audited inside its own transaction
//! (see `store/ops/rows.rs`, `idempotent`); one that is refused wrote nothing, so this layer
//! records it after the answer: who (the certificate's identity), which call, and why. Every
//! refused call that would have changed something is recorded, and any call refused for its
//! caller's identity or role (a compromised station probing reads too). Liveness calls and
//! the health service are not.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

use crate::service::Coordinator;

#[derive(Clone)]
pub struct AuditLayer(pub Arc<Coordinator>);

impl<S> tower::Layer<S> for AuditLayer {
    type Service = Audited<S>;
    fn layer(&self, inner: S) -> Audited<S> {
        Audited { inner, core: self.0.clone() }
    }
}

#[derive(Clone)]
pub struct Audited<S> {
    inner: S,
    core: Arc<Coordinator>,
}

/// Reads: a refusal of one is audited only when it is about who is asking.
fn is_read(method: &str) -> bool {
    method.starts_with("List")
        || matches!(method, "GetSeed" | "GetJob" | "GetVerification" | "GetShipping" | "GetRepairs" | "GetVault")
}

const LIVENESS: &[&str] = &["Heartbeat", "RenewLease", "ReportProgress"];

impl<S> tower::Service<http::Request<Body>> for Audited<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let path = req.uri().path().to_string();
        let actor = req
            .extensions()
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .and_then(|i| i.peer_certs())
            .and_then(|c| c.first().map(|c| crate::auth::spiffe_id_of(c.as_ref())))
            .map(|r| r.map(|id| id.uri()).unwrap_or_else(|e| format!("(unusable certificate: {e})")))
            .unwrap_or_else(|| "(no certificate)".into());
        let fut = self.inner.call(req);
        let core = self.core.clone();
        Box::pin(async move {
            let resp = fut.await?;
            let code = resp.headers().get("grpc-status").and_then(|v| v.to_str().ok()).unwrap_or("0").to_string();
            let (service, method) = path.trim_start_matches('/').split_once('/').unwrap_or(("", ""));
            let identity_refusal = code == "7" || code == "16";
            if code != "0"
                && service.starts_with("seedship.")
                && !LIVENESS.contains(&method)
                && (identity_refusal || !is_read(method))
            {
                let name = crate::observe::outcome(Some(tonic::Code::from(code.parse::<i32>().unwrap_or(2))));
                let message = resp
                    .headers()
                    .get("grpc-message")
                    .and_then(|v| v.to_str().ok())
                    .map(percent_decode)
                    .unwrap_or_default();
                let method = method.to_string();
                tokio::spawn(async move {
                    core.audit_refusal(&actor, &method, &format!("refused: {name}"), &message).await;
                });
            }
            Ok(resp)
        })
    }
}

/// gRPC percent-encodes its message header.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
