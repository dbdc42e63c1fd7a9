//! The emulator process: its state (persisted atomically after every change, so it survives a
//! kill -9), the faults a test injects, TLS, and the HTTP server.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::Router;

use crate::ingest::{IngestJob, Storage};
use crate::service::{ApiError, ServiceState};

/// What the emulator keeps: the service's state, the datacenter clock's offset, the disk
/// images in the packages that arrived, and each job's import so far.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Persisted {
    pub service: ServiceState,
    /// Added to the wall clock (datacenter command "advance the clock").
    #[serde(default)]
    pub clock_offset_ms: i64,
    /// Job key → disk serial → the disk image that arrived for it.
    #[serde(default)]
    pub images: BTreeMap<String, BTreeMap<String, PathBuf>>,
    /// Job name → what the datacenter has imported of it.
    #[serde(default)]
    pub ingest: BTreeMap<String, IngestJob>,
}

pub struct Emulator {
    pub state: Mutex<Persisted>,
    pub file: PathBuf,
    /// Injected failures for the next ARM requests (throttling, server errors).
    pub faults: Mutex<Faults>,
    /// How the ARM face answers (page size, LRO headers), and where it records exchanges.
    pub options: Options,
    pub record: Option<Mutex<std::fs::File>>,
    /// The storage accounts the datacenter copies into (Azurite); `None`: "copy" refuses.
    pub storage: Option<Storage>,
    /// One copy at a time (the datacenter's copy station).
    pub copying: tokio::sync::Mutex<()>,
}

/// How the ARM face answers.
#[derive(Debug, Clone)]
pub struct Options {
    /// Jobs in one page of a list (then `nextLink` with `$skipToken`).
    pub page_size: usize,
    /// Polls an operation answers 202 before it is done.
    pub lro_polls: u32,
    /// Sent as `Retry-After` on every 202 (Azure sent none in the recorded traffic).
    pub retry_after_secs: Option<u64>,
    /// Also send `Azure-AsyncOperation` (Azure sent none in the recorded traffic).
    pub async_operation: bool,
    /// "SUBSCRIPTION/RESOURCE-GROUP" that exist.
    pub resource_groups: Vec<String>,
    /// Every ARM exchange is appended here as a JSON line (for `tests/py/armcheck.py`).
    pub record: Option<PathBuf>,
    /// Served without TLS (raw tests): monitor URLs say http.
    pub plain_http: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            page_size: 20,
            lro_polls: 2,
            retry_after_secs: None,
            async_operation: false,
            resource_groups: Vec::new(),
            record: None,
            plain_http: false,
        }
    }
}

/// The next `count` ARM requests answer `status` (429 with `Retry-After`, or a 5xx).
#[derive(Debug, Default, Clone, serde::Deserialize)]
pub struct Faults {
    pub status: u16,
    pub count: u32,
    #[serde(default)]
    pub retry_after_secs: u64,
    /// Only requests with this method (e.g. "PUT"); others pass.
    #[serde(default)]
    pub method: Option<String>,
    /// The request is carried out, and only its answer is lost (replaced by the fault): what a
    /// client sees when a connection drops after the service acted.
    #[serde(default)]
    pub after_apply: bool,
    /// The request hangs this long before its (injected) answer: Azure not answering.
    #[serde(default)]
    pub hang_secs: u64,
}

impl Emulator {
    pub fn open(file: &Path) -> Result<Emulator, String> {
        let state = match std::fs::read(file) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| format!("{}: not an emulator state file: {e}", file.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Persisted::default(),
            Err(e) => return Err(format!("{}: {e}", file.display())),
        };
        Ok(Emulator {
            state: Mutex::new(state),
            file: file.to_path_buf(),
            faults: Mutex::new(Faults::default()),
            options: Options::default(),
            record: None,
            storage: None,
            copying: tokio::sync::Mutex::new(()),
        })
    }

    /// Answers with these options; the resource groups and storage accounts in them exist.
    pub fn with_options(mut self, options: Options) -> Result<Emulator, String> {
        {
            let mut s = self.state.lock().expect("lock");
            s.service.lro_polls = options.lro_polls;
            for rg in &options.resource_groups {
                let (sub, name) = rg
                    .split_once('/')
                    .ok_or_else(|| format!("--resource-group {rg:?}: give SUBSCRIPTION/RESOURCE-GROUP"))?;
                s.service.add_resource_group(sub, name);
            }
            self.save(&s).map_err(|e| e.message)?;
        }
        if let Some(path) = &options.record {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|f| {
                    use std::os::unix::fs::PermissionsExt;
                    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
                    Ok(f)
                })
                .map_err(|e| format!("--record {}: {e}", path.display()))?;
            self.record = Some(Mutex::new(f));
        }
        self.options = options;
        Ok(self)
    }

    /// The datacenter copies into these storage accounts (and only they exist).
    pub fn with_storage(mut self, storage: Storage) -> Emulator {
        {
            let mut s = self.state.lock().expect("lock");
            s.service.storage_accounts = storage.accounts.keys.keys().cloned().collect();
        }
        self.storage = Some(storage);
        self
    }

    /// Saves the state after `f` changed the parts beside the service.
    pub(crate) fn update(&self, f: impl FnOnce(&mut Persisted)) -> Result<(), ApiError> {
        let mut s = self.state.lock().expect("lock");
        f(&mut s);
        self.save(&s)
    }

    pub fn now_ms(&self) -> i64 {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        wall + self.state.lock().expect("lock").clock_offset_ms
    }

    fn save(&self, s: &Persisted) -> Result<(), ApiError> {
        let tmp = self.file.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            // The state holds the jobs' drive keys: the emulator's alone.
            let mut f = private_file(&tmp)?;
            std::io::Write::write_all(&mut f, &serde_json::to_vec_pretty(s).expect("serializes"))?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.file)?;
            // A bare file name's parent is "": the current directory.
            let dir = match self.file.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            std::fs::File::open(dir)?.sync_all()?;
            Ok(())
        };
        write().map_err(|e| ApiError {
            status: 500,
            code: "InternalServerError",
            message: format!("state not saved: {e}"),
        })
    }

    /// Runs `f` on the state and saves it when `f` succeeds.
    pub(crate) fn mutate<T>(
        &self,
        f: impl FnOnce(&mut ServiceState, i64) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let now = self.now_ms();
        let mut s = self.state.lock().expect("lock");
        let mut copy = s.service.clone();
        let out = f(&mut copy, now)?;
        let before = std::mem::replace(&mut s.service, copy);
        if let Err(e) = self.save(&s) {
            s.service = before;
            return Err(e);
        }
        Ok(out)
    }
}

/// The emulator's TLS: a CA of its own (`ca.crt` in `dir`, for clients to trust) and a
/// certificate for 127.0.0.1 and localhost, made on first start and kept.
pub fn tls(dir: &Path) -> Result<tokio_rustls::TlsAcceptor, String> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
    let err = |e: &dyn std::fmt::Display| format!("emulator TLS in {}: {e}", dir.display());
    let (cert_p, key_p, ca_p) = (dir.join("server.crt"), dir.join("server.key"), dir.join("ca.crt"));
    if !cert_p.exists() {
        std::fs::create_dir_all(dir).map_err(|e| err(&e))?;
        let ca_key = KeyPair::generate().map_err(|e| err(&e))?;
        let mut ca = CertificateParams::default();
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.distinguished_name.push(DnType::CommonName, "seedship Azure emulator CA");
        let ca_cert = ca.self_signed(&ca_key).map_err(|e| err(&e))?;
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().map_err(|e| err(&e))?;
        let mut p = CertificateParams::new(vec!["localhost".to_string()]).map_err(|e| err(&e))?;
        p.subject_alt_names.push(SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])));
        p.distinguished_name.push(DnType::CommonName, "seedship Azure emulator");
        let cert = p.signed_by(&key, &issuer).map_err(|e| err(&e))?;
        std::fs::write(&ca_p, ca_cert.pem()).map_err(|e| err(&e))?;
        std::io::Write::write_all(&mut private_file(&key_p).map_err(|e| err(&e))?, key.serialize_pem().as_bytes())
            .map_err(|e| err(&e))?;
        std::fs::write(&cert_p, cert.pem()).map_err(|e| err(&e))?;
    }
    let certs: Vec<_> =
        rustls_pemfile::certs(&mut std::io::BufReader::new(std::fs::File::open(&cert_p).map_err(|e| err(&e))?))
            .collect::<Result<_, _>>()
            .map_err(|e| err(&e))?;
    let key =
        rustls_pemfile::private_key(&mut std::io::BufReader::new(std::fs::File::open(&key_p).map_err(|e| err(&e))?))
            .map_err(|e| err(&e))?
            .ok_or_else(|| err(&"no private key"))?;
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| err(&e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| err(&e))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}

/// Serves `router` over TLS on `listener` until `stop` resolves.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    router: Router,
    stop: impl std::future::Future<Output = ()>,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::service::TowerToHyperService;
    tokio::pin!(stop);
    loop {
        let (tcp, _) = tokio::select! {
            _ = &mut stop => return,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
        };
        let (acceptor, router) = (acceptor.clone(), router.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else { return };
            let svc = TowerToHyperService::new(router);
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), svc)
                .await;
        });
    }
}

/// Creates (or truncates) `path` readable by its owner only (mode 0600, also when it existed).
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(f)
}
