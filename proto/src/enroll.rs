//! An agent's enrollment: with a one-time token from an operator and the fingerprint of the
//! coordinator's CA, the agent makes its own key (which never leaves the host), sends a
//! certificate request to the coordinator's console listener (`POST /enroll`) and saves the
//! certificate and the CA where its configuration says.
//!
//! The token is sent only to a coordinator whose certificate chains to the CA with that
//! fingerprint: the TLS handshake checks the chain the coordinator presents against it, so a
//! machine in the middle learns nothing it could use.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};

use crate::client::ClientConfig;
use crate::identity::{Role, SpiffeId};

/// The SHA-256 of a certificate's DER, lowercase hex: what `seedctl enroll create` prints.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// The fingerprint of the first certificate of a PEM file.
pub fn ca_fingerprint_file(path: &Path) -> Result<String, String> {
    let (certs, _) = crate::keyfile::read_certs(path).map_err(|e| e.to_string())?;
    certs.first().map(|c| fingerprint(c.as_ref())).ok_or_else(|| format!("{}: no certificate", path.display()))
}

/// A fingerprint as people paste it ("sha256:AB:CD…", with or without colons), normalized.
pub fn parse_fingerprint(s: &str) -> Result<String, String> {
    let t = s.trim();
    let t = t.strip_prefix("sha256:").or_else(|| t.strip_prefix("SHA256:")).unwrap_or(t);
    let hex: String = t.chars().filter(|c| *c != ':').collect::<String>().to_ascii_lowercase();
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "{s:?} is not a SHA-256 fingerprint (64 hex digits, as `seedctl enroll create` prints it)"
        ));
    }
    Ok(hex)
}

/// Accepts the coordinator only if the chain it presents holds the CA with the pinned
/// fingerprint, and its certificate is valid for the name dialled under that CA.
#[derive(Debug)]
struct Pinned {
    want: String,
    provider: Arc<rustls::crypto::CryptoProvider>,
    seen: Mutex<Option<Vec<u8>>>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates.iter().find(|c| fingerprint(c.as_ref()) == self.want).ok_or_else(|| {
            rustls::Error::General(format!(
                "the coordinator's CA is not the one with fingerprint {}: wrong address, wrong fingerprint, or someone in between; the token was not sent",
                self.want
            ))
        })?;
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone())?;
        let v = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        // The certificates between the coordinator's and the pinned root (an issuing CA).
        let between: Vec<CertificateDer<'_>> =
            intermediates.iter().filter(|c| fingerprint(c.as_ref()) != self.want).cloned().collect();
        v.verify_server_cert(end_entity, &between, server_name, ocsp, now)?;
        *self.seen.lock().map_err(|_| rustls::Error::General("poisoned".into()))? = Some(ca.to_vec());
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// What an agent enrolls with.
#[derive(Debug, Clone)]
pub struct Request {
    /// The console listener: `https://host:port` (`/enroll` is added).
    pub url: String,
    /// SHA-256 of the coordinator's CA certificate.
    pub ca_fingerprint: String,
    /// The one-time token (a secret: never logged).
    pub token: String,
    pub role: Role,
    pub name: String,
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// The identity an agent enrolled as.
#[derive(Debug)]
pub struct Enrolled {
    pub id: SpiffeId,
    pub not_after: String,
}

fn trust_domain_of(ca_der: &[u8]) -> Option<String> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let (_, cert) = X509Certificate::from_der(ca_der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|g| match g {
        GeneralName::URI(u) => u.strip_prefix("spiffe://").filter(|td| !td.contains('/')).map(str::to_string),
        _ => None,
    })
}

/// Writes `bytes` to `path` whole or not at all (a temporary file, fsync, rename).
fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let tmp = path.with_extension("enroll-tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Enrolls: a new key, a certificate request for `spiffe://<the CA's trust domain>/<role>/<name>`,
/// the token redeemed; then the key (mode 0600), the certificate and the CA are written to the
/// files `files` names, each replaced whole, the key first. Nothing is written when anything
/// fails, so an agent re-enrolling keeps its old identity until it has a new one.
pub async fn enroll(req: &Request, files: &ClientConfig) -> Result<Enrolled, String> {
    let want = parse_fingerprint(&req.ca_fingerprint)?;
    if !req.url.starts_with("https://") {
        return Err(format!("enrollment URL {:?} must start with https://", req.url));
    }
    crate::identity::validate_label("name", &req.name).map_err(|e| e.to_string())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let pinned = Arc::new(Pinned { want: want.clone(), provider: provider.clone(), seen: Mutex::new(None) });
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(pinned.clone())
        .with_no_client_auth();
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())?;
    let url = format!("{}/enroll", req.url.trim_end_matches('/'));
    let fail = |e: reqwest::Error| format!("cannot reach the coordinator at {url}: {}", crate::client::error_chain(&e));
    // The handshake first: the CA it presents names the trust domain the request is for.
    http.get(&url).send().await.map_err(fail)?;
    let ca = pinned.seen.lock().map_err(|_| "poisoned")?.clone().ok_or("the coordinator presented no CA")?;
    let td = trust_domain_of(&ca).ok_or("the coordinator's CA names no spiffe:// trust domain")?;
    let id = SpiffeId::new(&td, req.role, &req.name).map_err(|e| e.to_string())?;
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = vec![rcgen::SanType::URI(id.uri().try_into().map_err(|e| format!("{e}"))?)];
    let csr = params.serialize_request(&key).and_then(|c| c.pem()).map_err(|e| e.to_string())?;
    let body = serde_json::json!({ "token": req.token.trim(), "csr": csr, "now_unix_ms": now_ms() }).to_string();
    let resp = http.post(&url).header("content-type", "application/json").body(body).send().await.map_err(fail)?;
    let status = resp.status();
    let v: serde_json::Value = serde_json::from_slice(&resp.bytes().await.map_err(fail)?)
        .map_err(|e| format!("the coordinator's answer ({status}) is not JSON: {e}"))?;
    if !status.is_success() {
        return Err(format!(
            "the coordinator refused the enrollment ({status}): {}",
            v["error"].as_str().unwrap_or("no reason given")
        ));
    }
    let (cert_pem, ca_pem) = match (v["certificate"].as_str(), v["ca"].as_str()) {
        (Some(c), Some(a)) => (c.to_string(), a.to_string()),
        _ => return Err("the coordinator's answer has no certificate".into()),
    };
    // What came back must be for this key, this identity, under the pinned CA.
    let cert_der = rustls_pemfile::certs(&mut cert_pem.as_bytes())
        .next()
        .and_then(|r| r.ok())
        .ok_or("the certificate in the answer cannot be read")?;
    {
        use x509_parser::prelude::{FromDer, X509Certificate};
        let (_, c) = X509Certificate::from_der(cert_der.as_ref()).map_err(|e| e.to_string())?;
        if c.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err("the certificate in the answer is not for this host's key".into());
        }
    }
    let ca_der = rustls_pemfile::certs(&mut ca_pem.as_bytes()).next().and_then(|r| r.ok());
    if ca_der.as_ref().map(|d| fingerprint(d.as_ref())) != Some(want) {
        return Err("the CA in the answer is not the one with the fingerprint given".into());
    }
    let _lock = identity_lock(files).await?;
    write_identity(files, &key.serialize_pem(), &cert_pem)?;
    write_atomic(&files.ca_file, ca_pem.as_bytes(), 0o644)?;
    Ok(Enrolled { id, not_after: v["not_after"].as_str().unwrap_or("?").to_string() })
}

/// Where a new certificate waits while its key is written.
fn next_path(cert: &Path) -> std::path::PathBuf {
    let mut p = cert.as_os_str().to_owned();
    p.push(".next");
    p.into()
}

/// Replaces the key and certificate: the certificate to `<cert>.next`, the key, then the
/// certificate into place. A stop in between is finished by [`finish_interrupted`].
fn write_identity(files: &ClientConfig, key_pem: &str, cert_pem: &str) -> Result<(), String> {
    let next = next_path(&files.cert_file);
    write_atomic(&next, cert_pem.as_bytes(), 0o644)?;
    write_atomic(&files.key_file, key_pem.as_bytes(), 0o600)?;
    std::fs::rename(&next, &files.cert_file).map_err(|e| format!("{}: {e}", files.cert_file.display()))
}

fn cert_public_key(pem: &[u8]) -> Option<Vec<u8>> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let der = rustls_pemfile::certs(&mut &pem[..]).next()?.ok()?;
    let (_, c) = X509Certificate::from_der(der.as_ref()).ok()?;
    Some(c.public_key().subject_public_key.data.to_vec())
}

/// Finishes a key and certificate replacement that a stop interrupted: when `<cert>.next`
/// is for the key in the key file, it takes the certificate's place. Called before every
/// connection is made.
pub fn finish_interrupted(files: &ClientConfig) {
    let next = next_path(&files.cert_file);
    let (Ok(cert), Ok(key)) = (std::fs::read(&next), std::fs::read_to_string(&files.key_file)) else { return };
    let Ok(kp) = rcgen::KeyPair::from_pem(&key) else { return };
    if cert_public_key(&cert).as_deref() == Some(kp.public_key_raw())
        && std::fs::rename(&next, &files.cert_file).is_ok()
    {
        tracing::warn!(cert = %files.cert_file.display(), "finished a certificate renewal that a stop interrupted");
    }
}

/// The identity in the certificate `files` names.
fn own_identity(files: &ClientConfig) -> Result<SpiffeId, String> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let (certs, _) = crate::keyfile::read_certs(&files.cert_file).map_err(|e| e.to_string())?;
    let der = certs.first().ok_or_else(|| format!("{}: no certificate", files.cert_file.display()))?;
    let (_, c) = X509Certificate::from_der(der.as_ref()).map_err(|e| e.to_string())?;
    let san = c.subject_alternative_name().ok().flatten().ok_or("the certificate names no identity")?;
    san.value
        .general_names
        .iter()
        .find_map(|g| match g {
            GeneralName::URI(u) if u.starts_with("spiffe://") => u.parse().ok(),
            _ => None,
        })
        .ok_or_else(|| "the certificate has no spiffe:// identity".to_string())
}

/// Holds `<key>.lock` (created 0600) while this process replaces the key and certificate, so
/// that two processes of one agent (its service and an operator's command) never write a key
/// and a certificate that do not belong together. Waits up to 30 s for another holder.
async fn identity_lock(files: &ClientConfig) -> Result<std::fs::File, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut p = files.key_file.as_os_str().to_owned();
    p.push(".lock");
    let path = std::path::PathBuf::from(p);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match f.try_lock() {
            Ok(()) => return Ok(f),
            Err(std::fs::TryLockError::WouldBlock) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(format!(
                    "{}: another process of this agent has been replacing its certificate for 30 s; try again",
                    path.display()
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(format!("{}: {e}", path.display())),
        }
    }
}

/// Whether [`renew`] renews whatever the certificate's age, or only when it is due (another
/// process of the agent may just have done it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    Now,
    IfDue,
}

/// Renews this agent's certificate over its current one: a new key, a request for the same
/// identity, and the key and certificate replaced (the old ones stay until the new are saved).
/// `None` when `when` is [`When::IfDue`] and the certificate in the files is not due.
pub async fn renew(conn: &crate::client::Conn, files: &ClientConfig, when: When) -> Result<Option<Enrolled>, String> {
    let _lock = identity_lock(files).await?;
    if when == When::IfDue && renewal_plan(files)?.renew_at > SystemTime::now() {
        return Ok(None);
    }
    let id = own_identity(files)?;
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = vec![rcgen::SanType::URI(id.uri().try_into().map_err(|e| format!("{e}"))?)];
    let csr = params.serialize_request(&key).and_then(|c| c.pem()).map_err(|e| e.to_string())?;
    let r = crate::client::agents(conn.clone())
        .renew_certificate(crate::pb::RenewCertificateRequest { csr_pem: csr, client_time_unix_ms: now_ms() })
        .await
        .map_err(|s| crate::client::status_text(&s))?
        .into_inner();
    if cert_public_key(r.certificate_pem.as_bytes()).as_deref() != Some(key.public_key_raw()) {
        return Err("the certificate in the answer is not for the new key".into());
    }
    write_identity(files, &key.serialize_pem(), &r.certificate_pem)?;
    update_bundle(files, &r.ca_pem);
    Ok(Some(Enrolled { id, not_after: crate::human::rfc3339(r.not_after_unix_ms) }))
}

/// Takes the CA bundle the coordinator sent with a renewal when it differs from ours: that is
/// how agents learn a new root while the CA is rotated (docs/operations.md). It came over a
/// connection our current bundle verified; a bundle without a certificate is ignored.
fn update_bundle(files: &ClientConfig, ca_pem: &str) {
    let parsed = rustls_pemfile::certs(&mut ca_pem.as_bytes()).filter_map(|c| c.ok()).count();
    if parsed == 0 || std::fs::read(&files.ca_file).is_ok_and(|old| old == ca_pem.as_bytes()) {
        return;
    }
    match write_atomic(&files.ca_file, ca_pem.as_bytes(), 0o644) {
        Ok(()) => {
            tracing::info!(ca = %files.ca_file.display(), certificates = parsed, "took the coordinator's new CA bundle")
        }
        Err(e) => tracing::warn!(error = %e, "cannot save the coordinator's new CA bundle; keeping the old one"),
    }
}

/// The certificate in an agent's files, and when to renew it.
struct Plan {
    /// The certificate file as read: another process of the agent may replace it.
    cert: Vec<u8>,
    renew_at: SystemTime,
    not_after: SystemTime,
}

/// When to renew the certificate in `files`: at 45 to 55 % of the time between when it was
/// saved here (or its start, if later) and its end; about half, with jitter so that a fleet
/// enrolled together does not renew together.
fn renewal_plan(files: &ClientConfig) -> Result<Plan, String> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let cert = std::fs::read(&files.cert_file).map_err(|e| format!("{}: {e}", files.cert_file.display()))?;
    let der = rustls_pemfile::certs(&mut cert.as_slice())
        .next()
        .and_then(|c| c.ok())
        .ok_or_else(|| format!("{}: no certificate", files.cert_file.display()))?;
    let (_, c) = X509Certificate::from_der(der.as_ref()).map_err(|e| e.to_string())?;
    let at = |t: i64| UNIX_EPOCH + Duration::from_secs(t.max(0) as u64);
    let (not_before, not_after) = (at(c.validity().not_before.timestamp()), at(c.validity().not_after.timestamp()));
    let saved = std::fs::metadata(&files.cert_file).and_then(|m| m.modified()).unwrap_or(not_before);
    let start = saved.max(not_before).min(not_after);
    let life = not_after.duration_since(start).unwrap_or_default();
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let jitter = (nanos ^ std::process::id().wrapping_mul(2_654_435_761)) % 1001;
    Ok(Plan { renew_at: start + life.mul_f64(0.45 + f64::from(jitter) / 10_000.0), not_after, cert })
}

/// A fresh connection with the key and certificate in the files, for every later call.
fn reload(swap: &crate::client::Swap, files: &ClientConfig) -> Result<(), String> {
    swap.replace_all(crate::client::lazy_channels(files).map_err(|e| e.to_string())?);
    Ok(())
}

/// Renews now if the certificate is due (a command that starts late in its lifetime), and
/// moves `swap` to the new one. A failure is logged: the current certificate still works.
pub async fn renew_if_due(conn: &crate::client::Conn, swap: &crate::client::Swap, files: &ClientConfig) {
    let due = renewal_plan(files).is_ok_and(|p| p.renew_at <= SystemTime::now() && SystemTime::now() < p.not_after);
    if !due {
        return;
    }
    match renew(conn, files, When::IfDue).await {
        Ok(Some(e)) => match reload(swap, files) {
            Ok(()) => tracing::info!(identity = %e.id, until = %e.not_after, "renewed this agent's certificate"),
            Err(err) => tracing::warn!(error = %err, "renewed this agent's certificate but cannot load it"),
        },
        Ok(None) => {
            let _ = reload(swap, files);
        }
        Err(e) => tracing::warn!(error = %e, "cannot renew this agent's certificate yet; the current one still works"),
    }
}

/// Keeps this agent's certificate fresh for as long as the runtime runs: renews it over the
/// current connection when [`renewal_plan`] says, then moves every later call onto a
/// connection made with the new certificate (`swap`); calls under way finish where they
/// started. A certificate another process of the agent renewed is taken up the same way. A
/// failed renewal is retried (every tenth of the time left, from 1 s to 5 min) while the old
/// certificate lasts; once it has expired only a new enrollment helps, and the log says so.
pub async fn keep_renewed(conn: crate::client::Conn, swap: crate::client::Swap, files: ClientConfig) {
    let mut loaded = std::fs::read(&files.cert_file).unwrap_or_default();
    let mut not_before_retry: Option<SystemTime> = None;
    loop {
        let plan = match renewal_plan(&files) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read this agent's certificate to plan its renewal; trying again in a minute");
                tokio::time::sleep(Duration::from_secs(60)).await;
                continue;
            }
        };
        if plan.cert != loaded {
            match reload(&swap, &files) {
                Ok(()) => {
                    tracing::info!(cert = %files.cert_file.display(), "took up the certificate another process of this agent saved")
                }
                Err(e) => tracing::warn!(error = %e, "cannot load the certificate another process of this agent saved"),
            }
            loaded = plan.cert.clone();
        }
        let now = SystemTime::now();
        let at = not_before_retry.map_or(plan.renew_at, |r| r.max(plan.renew_at));
        if at > now {
            // Awake now and then: another process of the agent may renew first.
            tokio::time::sleep(at.duration_since(now).unwrap_or_default().min(Duration::from_secs(30))).await;
            continue;
        }
        if now >= plan.not_after {
            tracing::error!(
                cert = %files.cert_file.display(),
                "this agent's certificate has expired, so it cannot be renewed over it: enroll again with a new token \
                 (seedctl enroll create, then `enroll` on this host; docs/operations.md)"
            );
            tokio::time::sleep(Duration::from_secs(300)).await;
            continue;
        }
        match renew(&conn, &files, When::IfDue).await {
            Ok(Some(e)) => {
                not_before_retry = None;
                loaded = std::fs::read(&files.cert_file).unwrap_or_default();
                match reload(&swap, &files) {
                    Ok(()) => {
                        tracing::info!(identity = %e.id, until = %e.not_after, "renewed this agent's certificate; new calls use it")
                    }
                    Err(err) => {
                        tracing::warn!(identity = %e.id, error = %err, "renewed this agent's certificate but cannot load it; calls keep the old one")
                    }
                }
            }
            Ok(None) => not_before_retry = None,
            Err(e) => {
                let left = plan.not_after.duration_since(now).unwrap_or_default();
                let again = (left / 10).clamp(Duration::from_secs(1), Duration::from_secs(300));
                let expires = crate::human::rfc3339(
                    plan.not_after.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0),
                );
                tracing::warn!(error = %e, retry_in_s = again.as_secs(), %expires, "cannot renew this agent's certificate yet; the current one still works");
                not_before_retry = Some(now + again);
            }
        }
    }
}

/// Runs `renew` for an agent; prints what it did.
pub fn renew_main(files: &ClientConfig) -> std::process::ExitCode {
    use std::process::ExitCode;
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let r = rt.block_on(async {
        let conn = crate::client::connect(files).await.map_err(|e| crate::client::error_text(&e))?;
        renew(&conn, files, When::Now).await?.ok_or_else(|| "nothing renewed".to_string())
    });
    match r {
        Ok(e) => {
            println!(
                "renewed {} (a new key; certificate until {}): {}, {}",
                e.id,
                e.not_after,
                files.key_file.display(),
                files.cert_file.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_read_as_people_paste_them() {
        let hex = "ab".repeat(32);
        assert_eq!(parse_fingerprint(&hex).unwrap(), hex);
        let colons = (0..32).map(|_| "AB").collect::<Vec<_>>().join(":");
        assert_eq!(parse_fingerprint(&format!("sha256:{colons}")).unwrap(), hex);
        assert!(parse_fingerprint("abc").unwrap_err().contains("not a SHA-256 fingerprint"));
        assert!(parse_fingerprint(&"zz".repeat(32)).is_err());
    }
}

/// `enroll`'s arguments, shared by both agents.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The coordinator's console address (its [web] listener), e.g. https://coordinator:7444.
    #[arg(long)]
    pub url: String,
    /// The SHA-256 fingerprint of the coordinator's CA, as `seedctl enroll create` printed it.
    #[arg(long)]
    pub ca_fingerprint: String,
    /// A file holding the one-time token (or set SEEDSHIP_ENROLL_TOKEN); never on the command
    /// line, where other users of the host could read it.
    #[arg(long)]
    pub token_file: Option<std::path::PathBuf>,
    /// The name to enroll as (the token allows it, or a pattern it matches); default: the
    /// host's name.
    #[arg(long)]
    pub name: Option<String>,
}

/// Runs `enroll` for an agent of `role`, writing the files `files` names; prints what it did.
pub fn main(args: Args, role: Role, files: &ClientConfig) -> std::process::ExitCode {
    use std::process::ExitCode;
    let token = match (&args.token_file, std::env::var("SEEDSHIP_ENROLL_TOKEN")) {
        (Some(p), _) => match std::fs::read_to_string(p) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: --token-file {}: {e}", p.display());
                return ExitCode::from(crate::EXIT_USAGE);
            }
        },
        (None, Ok(t)) => t,
        (None, Err(_)) => {
            eprintln!("error: give the enrollment token in a file (--token-file) or in SEEDSHIP_ENROLL_TOKEN");
            return ExitCode::from(crate::EXIT_USAGE);
        }
    };
    let name = args.name.clone().unwrap_or_else(crate::agent::hostname);
    let req = Request { url: args.url, ca_fingerprint: args.ca_fingerprint, token, role, name };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(enroll(&req, files)) {
        Ok(e) => {
            println!(
                "enrolled as {} (certificate until {}); key {} (0600, made here), certificate {}, CA {}",
                e.id,
                e.not_after,
                files.key_file.display(),
                files.cert_file.display(),
                files.ca_file.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
