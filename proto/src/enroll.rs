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
        v.verify_server_cert(end_entity, &[], server_name, ocsp, now)?;
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
        .timeout(std::time::Duration::from_secs(30))
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
    let body = serde_json::json!({ "token": req.token.trim(), "csr": csr }).to_string();
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

/// Renews this agent's certificate over its current one: a new key, a request for the same
/// identity, and the key and certificate replaced (the old ones stay until the new are saved).
pub async fn renew(conn: &crate::client::Conn, files: &ClientConfig) -> Result<Enrolled, String> {
    let id = own_identity(files)?;
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = vec![rcgen::SanType::URI(id.uri().try_into().map_err(|e| format!("{e}"))?)];
    let csr = params.serialize_request(&key).and_then(|c| c.pem()).map_err(|e| e.to_string())?;
    let r = crate::client::agents(conn.clone())
        .renew_certificate(crate::pb::RenewCertificateRequest { csr_pem: csr })
        .await
        .map_err(|s| crate::client::status_text(&s))?
        .into_inner();
    if cert_public_key(r.certificate_pem.as_bytes()).as_deref() != Some(key.public_key_raw()) {
        return Err("the certificate in the answer is not for the new key".into());
    }
    write_identity(files, &key.serialize_pem(), &r.certificate_pem)?;
    Ok(Enrolled { id, not_after: crate::human::rfc3339(r.not_after_unix_ms) })
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
        renew(&conn, files).await
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
