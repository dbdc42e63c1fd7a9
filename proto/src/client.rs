//! The mTLS client every seedship program uses to reach the coordinator.
//!
//! A [`ClientConfig`] names the coordinator URL, the CA that signed the coordinator's
//! certificate, and this program's own certificate and key. [`connect`] builds a tonic
//! channel that presents the client certificate, verifies the server against the CA, and
//! carries the W3C trace context of the caller's span in every request.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tonic::metadata::{MetadataKey, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::keyfile::{self, KeyFileError};
use crate::pb;

/// How to reach the coordinator. Embedded as `[coordinator]` in agent configs.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// Coordinator URL, e.g. `https://coordinator.example:7443`.
    pub url: String,
    /// CA certificate (PEM) that signed the coordinator's certificate.
    pub ca_file: PathBuf,
    /// This program's certificate (PEM) with its SPIFFE URI SAN.
    pub cert_file: PathBuf,
    /// This program's private key (PEM); must not be readable by group or others.
    pub key_file: PathBuf,
    /// Name to verify in the coordinator's certificate; defaults to the URL's host.
    #[serde(default)]
    pub server_name: Option<String>,
    /// Per-request deadline; default 30s.
    #[serde(default = "default_timeout", with = "humantime_secs")]
    pub timeout: Duration,
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

mod humantime_secs {
    use std::time::Duration;
    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}s", d.as_secs()))
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s: String = serde::Deserialize::deserialize(d)?;
        let secs = s
            .strip_suffix('s')
            .and_then(|n| n.parse::<u64>().ok())
            .ok_or_else(|| serde::de::Error::custom(format!("expected seconds like \"30s\", got {s:?}")))?;
        Ok(Duration::from_secs(secs))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
    #[error("invalid coordinator url {url:?}: {detail}")]
    Url { url: String, detail: String },
    #[error("cannot connect to the coordinator at {url}: {detail}")]
    Connect { url: String, detail: String },
}

/// Adds the caller's trace context to every outgoing request.
#[derive(Clone, Copy, Debug, Default)]
pub struct TraceContext;

impl tonic::service::Interceptor for TraceContext {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        for (k, v) in seedship_telemetry::inject_headers() {
            if let (Ok(key), Ok(val)) = (MetadataKey::from_bytes(k.as_bytes()), MetadataValue::try_from(v.as_str())) {
                req.metadata_mut().insert(key, val);
            }
        }
        Ok(req)
    }
}

/// A connected channel with trace propagation; clone it freely.
pub type Conn = InterceptedService<Swap, TraceContext>;

/// A channel that can be replaced under every clone of it, as when the program's certificate
/// is renewed: each call goes over the channel that is current when it starts, and a call
/// already under way finishes on the connection it started on.
#[derive(Clone, Debug)]
pub struct Swap {
    current: Arc<RwLock<Channel>>,
    /// The channel `poll_ready` readied, for the `call` that follows it.
    ready: Option<Channel>,
}

impl Swap {
    pub fn new(channel: Channel) -> Self {
        Swap { current: Arc::new(RwLock::new(channel)), ready: None }
    }

    /// Makes `channel` the one every clone's next call uses.
    pub fn replace(&self, channel: Channel) {
        match self.current.write() {
            Ok(mut c) => *c = channel,
            Err(poisoned) => *poisoned.into_inner() = channel,
        }
    }

    fn current(&self) -> Channel {
        match self.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

impl tower::Service<http::Request<tonic::body::Body>> for Swap {
    type Response = <Channel as tower::Service<http::Request<tonic::body::Body>>>::Response;
    type Error = <Channel as tower::Service<http::Request<tonic::body::Body>>>::Error;
    type Future = <Channel as tower::Service<http::Request<tonic::body::Body>>>::Future;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        if self.ready.is_none() {
            self.ready = Some(self.current());
        }
        self.ready.as_mut().map_or(std::task::Poll::Ready(Ok(())), |ch| ch.poll_ready(cx))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        // Tower's contract: `call` follows a `poll_ready` that said ready, so `ready` is set.
        let mut ch = self.ready.take().unwrap_or_else(|| self.current());
        ch.call(req)
    }
}

/// Builds the TLS endpoint for `cfg` (lazy: nothing is dialled yet).
pub fn endpoint(cfg: &ClientConfig) -> Result<Endpoint, ConnectError> {
    crate::enroll::finish_interrupted(cfg);
    let (_, ca_pem) = keyfile::read_certs(&cfg.ca_file)?;
    let (_, cert_pem) = keyfile::read_certs(&cfg.cert_file)?;
    let (_, key_pem) = keyfile::read_key(&cfg.key_file)?;
    let url_err = |detail: String| ConnectError::Url { url: cfg.url.clone(), detail };
    if !cfg.url.starts_with("https://") {
        return Err(url_err("must start with https:// (mTLS is mandatory)".into()));
    }
    let uri: http::Uri = cfg.url.parse().map_err(|e: http::uri::InvalidUri| url_err(e.to_string()))?;
    let host = uri.host().ok_or_else(|| url_err("no host".into()))?.to_string();
    let server_name = cfg.server_name.clone().unwrap_or(host);
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .identity(Identity::from_pem(cert_pem, key_pem))
        .domain_name(server_name);
    Endpoint::from_shared(cfg.url.clone())
        .map_err(|e| url_err(e.to_string()))?
        .tls_config(tls)
        .map_err(|e| url_err(e.to_string()))
        .map(|ep| {
            ep.timeout(cfg.timeout)
                .connect_timeout(Duration::from_secs(10))
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(30))
        })
}

/// Connects to the coordinator now, so a wrong address or certificate shows up at once.
pub async fn connect(cfg: &ClientConfig) -> Result<Conn, ConnectError> {
    Ok(connect_swap(cfg).await?.0)
}

async fn connect_swap(cfg: &ClientConfig) -> Result<(Conn, Swap), ConnectError> {
    let channel = endpoint(cfg)?
        .connect()
        .await
        .map_err(|e| ConnectError::Connect { url: cfg.url.clone(), detail: error_chain(&e) })?;
    let swap = Swap::new(channel);
    Ok((InterceptedService::new(swap.clone(), TraceContext), swap))
}

/// [`connect`] for an agent: a certificate past about half its lifetime is renewed first, and
/// while the runtime lives it is renewed again at half its lifetime and calls move to a
/// connection made with the new one ([`crate::enroll::keep_renewed`]), with no restart and no
/// call dropped.
pub async fn connect_renewing(cfg: &ClientConfig) -> Result<Conn, ConnectError> {
    let (conn, swap) = connect_swap(cfg).await?;
    crate::enroll::renew_if_due(&conn, &swap, cfg).await;
    tokio::spawn(crate::enroll::keep_renewed(conn.clone(), swap, cfg.clone()));
    Ok(conn)
}

/// What a failed call means, in words for a person, said once: the gRPC code by name and the
/// coordinator's message; or, when the connection itself failed (the coordinator refused this
/// program's certificate after the handshake, or went away), what happened and what to check.
pub fn status_text(s: &tonic::Status) -> String {
    use tonic::Code::*;
    let chain = std::error::Error::source(s).map(error_chain).unwrap_or_default();
    let lost = matches!(s.code(), Unknown | Cancelled | Unavailable)
        && (!chain.is_empty() || s.message().contains("operation was canceled") || s.message() == "transport error");
    if !lost {
        return format!("{}: {}", code_name(s.code()), s.message());
    }
    const CHECK: &str = "check that your certificate and key were issued by the coordinator's CA \
                         (coordinator pki issue), have not expired and were not revoked; the \
                         coordinator's log names the reason";
    // tonic's and hyper's wrappers ("transport error: connection error: ...") say nothing.
    let said = if chain.is_empty() { s.message().to_string() } else { chain };
    let said = said.trim_start_matches("transport error: ").trim_start_matches("connection error: ").to_string();
    match said.split("received fatal alert: ").nth(1) {
        Some(alert) => format!("the coordinator refused this program's certificate (TLS alert {alert}): {CHECK}"),
        None => format!(
            "the connection to the coordinator closed before it answered ({said}); if this repeats, the \
             coordinator may not accept this program's certificate: {CHECK}"
        ),
    }
}

/// An error for a person: a failed call as [`status_text`] says it, anything else as itself.
pub fn error_text(e: &(dyn std::error::Error + 'static)) -> String {
    match e.downcast_ref::<tonic::Status>() {
        Some(s) => status_text(s),
        None => e.to_string(),
    }
}

/// A gRPC code as a person says it.
pub fn code_name(c: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match c {
        InvalidArgument => "invalid argument",
        NotFound => "not found",
        AlreadyExists => "already exists",
        PermissionDenied => "permission denied",
        FailedPrecondition => "failed precondition",
        Unavailable => "unavailable",
        Unauthenticated => "unauthenticated",
        ResourceExhausted => "resource exhausted",
        DeadlineExceeded => "deadline exceeded",
        Aborted => "aborted",
        OutOfRange => "out of range",
        Unimplemented => "not implemented by this coordinator",
        Internal => "internal error",
        DataLoss => "data loss",
        Cancelled => "cancelled",
        Ok | Unknown => "failed",
    }
}

/// The whole `source()` chain of an error on one line: transport errors hide the real cause.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let msg = s.to_string();
        if !out.contains(&msg) {
            out.push_str(": ");
            out.push_str(&msg);
        }
        cur = s.source();
    }
    out
}

macro_rules! client_ctor {
    ($fn:ident, $client:ty) => {
        pub fn $fn(conn: Conn) -> $client {
            <$client>::new(conn)
                .max_decoding_message_size(crate::MAX_MESSAGE_BYTES)
                .max_encoding_message_size(crate::MAX_MESSAGE_BYTES)
        }
    };
}

client_ctor!(agents, pb::agent_service_client::AgentServiceClient<Conn>);
client_ctor!(seeds, pb::seed_service_client::SeedServiceClient<Conn>);
client_ctor!(diskprep, pb::disk_prep_service_client::DiskPrepServiceClient<Conn>);
client_ctor!(shipping, pb::shipping_service_client::ShippingServiceClient<Conn>);
client_ctor!(operator, pb::operator_service_client::OperatorServiceClient<Conn>);

/// A fresh request id: unique per process run (time, pid and a counter), so retries of one
/// logical call must reuse the id they got, and new calls get new ones.
pub fn new_request_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{nanos:x}-{:x}-{n:x}", std::process::id())
}
