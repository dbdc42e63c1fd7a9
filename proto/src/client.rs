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
    /// Coordinator URL, e.g. `https://coordinator.example:7443`; several coordinators as
    /// `https://a.example:7443,https://b.example:7443` (calls move on when one cannot be
    /// reached), or one DNS name with several addresses.
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

/// The channels to the coordinators, replaceable under every clone of it, as when the
/// program's certificate is renewed: each call goes over the channel that is current when it
/// starts, and a call already under way finishes on the connection it started on. With
/// several coordinators (a `url` listing several), calls go to one until it cannot be reached
/// (the call fails at the transport: refused, reset, timed out), then to the next: that call
/// fails (UNAVAILABLE; the caller retries it) and the following ones go on elsewhere.
#[derive(Clone, Debug)]
pub struct Swap {
    current: Arc<RwLock<Vec<Channel>>>,
    /// Which of them calls go to.
    at: Arc<std::sync::atomic::AtomicUsize>,
    /// The channel `poll_ready` readied (and its place), for the `call` that follows it.
    ready: Option<(usize, Channel)>,
}

impl Swap {
    pub fn new(channel: Channel) -> Self {
        Swap::several(vec![channel], 0)
    }

    /// Over `channels` (one per coordinator, none empty), starting with the one at `first`.
    pub fn several(channels: Vec<Channel>, first: usize) -> Self {
        Swap {
            current: Arc::new(RwLock::new(channels)),
            at: Arc::new(std::sync::atomic::AtomicUsize::new(first)),
            ready: None,
        }
    }

    /// Makes `channel` the one every clone's next call uses.
    pub fn replace(&self, channel: Channel) {
        self.replace_all(vec![channel]);
    }

    /// Makes `channels` the ones every clone's next call uses.
    pub fn replace_all(&self, channels: Vec<Channel>) {
        match self.current.write() {
            Ok(mut c) => *c = channels,
            Err(poisoned) => *poisoned.into_inner() = channels,
        }
    }

    /// The channel calls go to now, with its place and how many there are.
    fn current(&self) -> (usize, Channel, usize) {
        let all = match self.current.read() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        let n = all.len().max(1);
        let i = self.at.load(Ordering::Relaxed) % n;
        (i, all[i].clone(), n)
    }
}

type SwapResponse = <Channel as tower::Service<http::Request<tonic::body::Body>>>::Response;
type SwapError = <Channel as tower::Service<http::Request<tonic::body::Body>>>::Error;

impl tower::Service<http::Request<tonic::body::Body>> for Swap {
    type Response = SwapResponse;
    type Error = SwapError;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<SwapResponse, SwapError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        if self.ready.is_none() {
            let (i, ch, _) = self.current();
            self.ready = Some((i, ch));
        }
        self.ready.as_mut().map_or(std::task::Poll::Ready(Ok(())), |(_, ch)| ch.poll_ready(cx))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        // Tower's contract: `call` follows a `poll_ready` that said ready, so `ready` is set.
        let (i, mut ch) = self.ready.take().unwrap_or_else(|| {
            let (i, ch, _) = self.current();
            (i, ch)
        });
        let n = self.current.read().map(|c| c.len()).unwrap_or(1);
        let at = self.at.clone();
        let fut = ch.call(req);
        Box::pin(async move {
            let r = fut.await;
            if r.is_err() && n > 1 {
                // This coordinator cannot be reached: the next calls go to the next one (unless
                // another call moved on already).
                let _ = at.compare_exchange(i, (i + 1) % n, Ordering::Relaxed, Ordering::Relaxed);
            }
            r
        })
    }
}

/// Builds the TLS endpoint for `cfg`'s first coordinator (lazy: nothing is dialled yet).
pub fn endpoint(cfg: &ClientConfig) -> Result<Endpoint, ConnectError> {
    Ok(endpoints(cfg)?.remove(0))
}

/// The TLS endpoint of each coordinator `cfg.url` lists (`https://a:7443,https://b:7443`; one
/// DNS name with several addresses is one URL, whose addresses are tried in turn).
pub fn endpoints(cfg: &ClientConfig) -> Result<Vec<Endpoint>, ConnectError> {
    crate::enroll::finish_interrupted(cfg);
    let (_, ca_pem) = keyfile::read_certs(&cfg.ca_file)?;
    let (_, cert_pem) = keyfile::read_certs(&cfg.cert_file)?;
    let (_, key_pem) = keyfile::read_key(&cfg.key_file)?;
    let urls: Vec<&str> = cfg.url.split(',').map(str::trim).filter(|u| !u.is_empty()).collect();
    if urls.is_empty() {
        return Err(ConnectError::Url { url: cfg.url.clone(), detail: "no coordinator URL".into() });
    }
    urls.into_iter()
        .map(|url| {
            let url_err = |detail: String| ConnectError::Url { url: url.to_string(), detail };
            if !url.starts_with("https://") {
                return Err(url_err("must start with https:// (mTLS is mandatory)".into()));
            }
            let uri: http::Uri = url.parse().map_err(|e: http::uri::InvalidUri| url_err(e.to_string()))?;
            let host = uri.host().ok_or_else(|| url_err("no host".into()))?.to_string();
            let server_name = cfg.server_name.clone().unwrap_or(host);
            let tls = ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(&ca_pem))
                .identity(Identity::from_pem(&cert_pem, &key_pem))
                .domain_name(server_name);
            Endpoint::from_shared(url.to_string())
                .map_err(|e| url_err(e.to_string()))?
                .tls_config(tls)
                .map_err(|e| url_err(e.to_string()))
                .map(|ep| {
                    ep.timeout(cfg.timeout)
                        .connect_timeout(Duration::from_secs(10))
                        .tcp_nodelay(true)
                        .http2_keep_alive_interval(Duration::from_secs(30))
                })
        })
        .collect()
}

/// A lazy channel to each coordinator `cfg` lists, for [`Swap::replace_all`].
pub fn lazy_channels(cfg: &ClientConfig) -> Result<Vec<Channel>, ConnectError> {
    Ok(endpoints(cfg)?.into_iter().map(|e| e.connect_lazy()).collect())
}

/// Connects to the coordinator now, so a wrong address or certificate shows up at once.
pub async fn connect(cfg: &ClientConfig) -> Result<Conn, ConnectError> {
    Ok(connect_swap(cfg).await?.0)
}

async fn connect_swap(cfg: &ClientConfig) -> Result<(Conn, Swap), ConnectError> {
    // The first coordinator that answers now (so a wrong address or certificate shows up at
    // once); the others are dialled when calls move to them.
    let eps = endpoints(cfg)?;
    let mut failed = Vec::new();
    let mut channels = Vec::with_capacity(eps.len());
    let mut first = None;
    for ep in eps {
        if first.is_none() {
            match ep.connect().await {
                Ok(ch) => {
                    first = Some(channels.len());
                    channels.push(ch);
                    continue;
                }
                Err(e) => failed.push(format!("{}: {}", ep.uri(), error_chain(&e))),
            }
        }
        channels.push(ep.connect_lazy());
    }
    let Some(first) = first else {
        return Err(ConnectError::Connect { url: cfg.url.clone(), detail: failed.join("; ") });
    };
    let swap = Swap::several(channels, first);
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
