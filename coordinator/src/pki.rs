//! A small PKI for a newcomer: a CA, the coordinator's server certificate, and certificates
//! for agents and operators with SPIFFE identities.
//!
//! Layout of a PKI directory:
//!
//! | file | what |
//! |---|---|
//! | `ca.crt`, `ca.key` | the CA (its URI SAN `spiffe://<trust-domain>` records the trust domain) |
//! | `coordinator.crt`, `coordinator.key` | the coordinator's server certificate |
//! | `master.key` | the master key that seals drive keys at rest (64 hex characters) |
//! | `<name>.crt`, `<name>.key` | issued identities (`pki issue`) |
//!
//! `pki intermediate` makes, from a root kept elsewhere, an issuing CA for the coordinator:
//! `issuing-ca.crt`, `issuing-ca.key` and a copy of the root's `ca.crt`, so the root's key can
//! stay offline ([`Signer`]: what enrollment and the server certificate's renewal sign with).
//!
//! Every private key and the master key are created with mode 0600.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use seedship_proto::identity::{Role, SpiffeId, validate_label};
use time::{Duration, OffsetDateTime};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{0} already exists; refusing to overwrite it (use a new directory or remove it first)")]
    Exists(PathBuf),
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("cannot read {path}: {detail}")]
    Read { path: PathBuf, detail: String },
    #[error("certificate generation failed: {0}")]
    Gen(#[from] rcgen::Error),
    #[error("{0}")]
    Invalid(String),
}

/// Writes `contents` to a new file with `mode`, refusing to overwrite.
pub fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), PkiError> {
    let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            PkiError::Exists(path.to_path_buf())
        } else {
            PkiError::Write { path: path.to_path_buf(), source: e }
        }
    })?;
    f.write_all(contents)
        .and_then(|_| f.sync_all())
        .map_err(|e| PkiError::Write { path: path.to_path_buf(), source: e })
}

fn read_text(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(|e| PkiError::Read { path: path.to_path_buf(), detail: e.to_string() })
}

/// The files `init` wrote.
#[derive(Debug)]
pub struct InitOutput {
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub master_key: PathBuf,
}

fn validity(days: i64) -> (OffsetDateTime, OffsetDateTime) {
    let now = OffsetDateTime::now_utc();
    // Allow for clock skew between machines.
    (now - Duration::minutes(5), now + Duration::days(days))
}

/// Creates `dir` with a CA, the coordinator's certificate for `server_names` (DNS names or IP
/// addresses), and a master key.
pub fn init(dir: &Path, trust_domain: &str, server_names: &[String], days: i64) -> Result<InitOutput, PkiError> {
    validate_label("trust domain", trust_domain).map_err(|e| PkiError::Invalid(e.to_string()))?;
    if server_names.is_empty() {
        return Err(PkiError::Invalid("give at least one --server-name".into()));
    }
    fs::create_dir_all(dir).map_err(|e| PkiError::Write { path: dir.to_path_buf(), source: e })?;
    let ca_key = KeyPair::generate()?;
    // Path length 1: the root may certify one issuing CA under it (`pki intermediate`).
    let ca = ca_params(&format!("seedship CA {trust_domain}"), trust_domain, 1, days.max(3650))?;
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);
    let ca_key_pem = issuer_key_pem(&issuer);

    let id =
        SpiffeId::new(trust_domain, Role::Coordinator, "coordinator").map_err(|e| PkiError::Invalid(e.to_string()))?;
    let (cert_pem, key_pem) = issue_leaf(&issuer, &id, server_names, days, 0)?;

    let out = InitOutput {
        ca_cert: dir.join("ca.crt"),
        server_cert: dir.join("coordinator.crt"),
        server_key: dir.join("coordinator.key"),
        master_key: dir.join("master.key"),
    };
    write_new(&dir.join("ca.key"), ca_key_pem.as_bytes(), 0o600)?;
    write_new(&out.ca_cert, ca_cert.pem().as_bytes(), 0o644)?;
    write_new(&out.server_key, key_pem.as_bytes(), 0o600)?;
    write_new(&out.server_cert, cert_pem.as_bytes(), 0o644)?;
    let mk = crate::keys::MasterKey::generate_hex().map_err(|e| PkiError::Invalid(e.to_string()))?;
    write_new(&out.master_key, format!("{mk}\n").as_bytes(), 0o600)?;
    Ok(out)
}

/// A CA of `trust_domain` (its URI SAN `spiffe://<trust_domain>` names it), named `name`,
/// allowing `path_len` CAs under it, valid `days` from 5 minutes back.
fn ca_params(name: &str, trust_domain: &str, path_len: u8, days: i64) -> Result<CertificateParams, PkiError> {
    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    ca.distinguished_name = dn;
    ca.subject_alt_names = vec![SanType::URI(format!("spiffe://{trust_domain}").try_into()?)];
    (ca.not_before, ca.not_after) = validity(days);
    Ok(ca)
}

fn issuer_key_pem(issuer: &Issuer<'_, KeyPair>) -> String {
    issuer.key().serialize_pem()
}

/// Loads the CA of a PKI directory: the issuer and the trust domain recorded in it.
pub fn load_ca(dir: &Path) -> Result<(Issuer<'static, KeyPair>, String), PkiError> {
    load_ca_files(&dir.join("ca.crt"), &dir.join("ca.key"))
}

/// Loads a CA from its certificate and key files: the issuer and its trust domain.
pub fn load_ca_files(cert_path: &Path, key_path: &Path) -> Result<(Issuer<'static, KeyPair>, String), PkiError> {
    let (cert_path, key_path) = (cert_path.to_path_buf(), key_path.to_path_buf());
    let cert_pem = read_text(&cert_path)?;
    seedship_proto::keyfile::check_private(&key_path).map_err(|e| PkiError::Invalid(e.to_string()))?;
    let key = KeyPair::from_pem(&read_text(&key_path)?)
        .map_err(|e| PkiError::Read { path: key_path.clone(), detail: e.to_string() })?;
    let der = pem_der(&cert_pem)
        .ok_or_else(|| PkiError::Read { path: cert_path.clone(), detail: "no PEM certificate".into() })?;
    let td = ca_trust_domain(&der).ok_or_else(|| PkiError::Read {
        path: cert_path.clone(),
        detail: "the CA certificate has no spiffe://<trust-domain> URI SAN; was it made by `coordinator pki init`?"
            .into(),
    })?;
    let issuer = Issuer::from_ca_cert_pem(&cert_pem, key)?;
    Ok((issuer, td))
}

/// The CA that signs enrolled agents' and the coordinator's certificates: the root itself, or
/// an issuing CA under it (`pki intermediate`) while the root's key stays offline.
pub struct Signer {
    pub issuer: Issuer<'static, KeyPair>,
    pub trust_domain: String,
    /// PEM appended to every certificate signed, so that the other side can build the chain
    /// to a root it trusts: the issuing CA's certificate, or nothing when the root signs.
    pub chain_pem: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("trust_domain", &self.trust_domain).finish_non_exhaustive()
    }
}

/// Loads the signing CA from `ca_cert` and `ca_key` and checks it against `bundle` (the roots
/// the coordinator trusts, `[tls] ca_file`): it is one of them, or an issuing CA whose
/// certificates chain to one of them for the same trust domain. Refused otherwise, saying why,
/// so that a coordinator never hands out certificates nobody accepts.
pub fn load_signer(ca_cert: &Path, ca_key: &Path, bundle: &Path) -> Result<Signer, PkiError> {
    let (issuer, trust_domain) = load_ca_files(ca_cert, ca_key)?;
    let cert_pem = read_text(ca_cert)?;
    let der = pem_der(&cert_pem)
        .ok_or_else(|| PkiError::Read { path: ca_cert.to_path_buf(), detail: "no PEM certificate".into() })?;
    let roots: Vec<Vec<u8>> =
        rustls_pemfile::certs(&mut read_text(bundle)?.as_bytes()).filter_map(|c| c.ok()).map(|c| c.to_vec()).collect();
    if roots.contains(&der) {
        return Ok(Signer { issuer, trust_domain, chain_pem: String::new() });
    }
    if !roots.iter().any(|r| ca_trust_domain(r).as_deref() == Some(trust_domain.as_str())) {
        return Err(PkiError::Invalid(format!(
            "{} is a CA for trust domain {trust_domain}, but no CA in {} is",
            ca_cert.display(),
            bundle.display()
        )));
    }
    // What the coordinator's listeners will do with a certificate it signs: verify it against
    // the bundle with the issuing CA as the intermediate.
    let id = SpiffeId::new(&trust_domain, Role::Source, "chain-check").map_err(|e| PkiError::Invalid(e.to_string()))?;
    let (leaf_pem, _) = issue_leaf(&issuer, &id, &[], 1, 0)?;
    let leaf = pem_der(&leaf_pem).ok_or_else(|| PkiError::Invalid("cannot read a test certificate".into()))?;
    let mut store = rustls::RootCertStore::empty();
    for r in &roots {
        let _ = store.add(rustls::pki_types::CertificateDer::from(r.clone()));
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(std::sync::Arc::new(store), provider)
        .build()
        .map_err(|e| PkiError::Invalid(format!("{}: {e}", bundle.display())))?;
    verifier
        .verify_client_cert(
            &rustls::pki_types::CertificateDer::from(leaf),
            &[rustls::pki_types::CertificateDer::from(der.clone())],
            rustls::pki_types::UnixTime::now(),
        )
        .map_err(|e| {
            PkiError::Invalid(format!(
                "{} does not chain to a CA in {} ({e}): make the issuing CA with `coordinator pki intermediate --root-dir <the root's folder>`, or put its root in the bundle",
                ca_cert.display(),
                bundle.display()
            ))
        })?;
    let chain_pem = pem::encode_cert(&der);
    Ok(Signer { issuer, trust_domain, chain_pem })
}

mod pem {
    /// A certificate as PEM text.
    pub fn encode_cert(der: &[u8]) -> String {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(line).unwrap_or_default());
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
        out
    }
}

/// The files `intermediate` wrote.
#[derive(Debug)]
pub struct IntermediateOutput {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub root: PathBuf,
    pub trust_domain: String,
}

/// Makes an issuing CA in `dir` signed by the root in `root_dir` (`ca.crt`, `ca.key`): its
/// certificate and key, and a copy of the root's certificate. The root's key is needed only
/// here; afterwards it can go offline.
pub fn intermediate(root_dir: &Path, dir: &Path, days: i64) -> Result<IntermediateOutput, PkiError> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    if !(1..=3650).contains(&days) {
        return Err(PkiError::Invalid(format!("--days {days}: from 1 to 3650")));
    }
    let (root, trust_domain) = load_ca(root_dir)?;
    let root_pem = read_text(&root_dir.join("ca.crt"))?;
    let root_der = pem_der(&root_pem)
        .ok_or_else(|| PkiError::Read { path: root_dir.join("ca.crt"), detail: "no PEM certificate".into() })?;
    let (_, rc) = X509Certificate::from_der(&root_der)
        .map_err(|e| PkiError::Read { path: root_dir.join("ca.crt"), detail: e.to_string() })?;
    if let Ok(Some(bc)) = rc.basic_constraints()
        && bc.value.path_len_constraint == Some(0)
    {
        return Err(PkiError::Invalid(format!(
            "the root in {} allows no CA under it (path length 0; roots made before intermediates were supported); make a new root with `coordinator pki init` and rotate to it (docs/operations.md, \"Rotating the CA\")",
            root_dir.display()
        )));
    }
    fs::create_dir_all(dir).map_err(|e| PkiError::Write { path: dir.to_path_buf(), source: e })?;
    let key = KeyPair::generate()?;
    let mut p = ca_params(&format!("seedship issuing CA {trust_domain}"), &trust_domain, 0, days)?;
    p.use_authority_key_identifier_extension = true;
    let root_end = rc.validity().not_after.to_datetime();
    if p.not_after > root_end {
        p.not_after = root_end;
    }
    let cert = p.signed_by(&key, &root)?;
    let out = IntermediateOutput {
        cert: dir.join("issuing-ca.crt"),
        key: dir.join("issuing-ca.key"),
        root: dir.join("ca.crt"),
        trust_domain,
    };
    if out.root.exists() && fs::read(&out.root).ok().as_deref() != Some(root_pem.as_bytes()) {
        return Err(PkiError::Exists(out.root));
    }
    write_new(&out.key, key.serialize_pem().as_bytes(), 0o600)?;
    write_new(&out.cert, cert.pem().as_bytes(), 0o644)?;
    if !out.root.exists() {
        write_new(&out.root, root_pem.as_bytes(), 0o644)?;
    }
    Ok(out)
}

fn pem_der(pem: &str) -> Option<Vec<u8>> {
    rustls_pemfile::certs(&mut pem.as_bytes()).next().and_then(|r| r.ok()).map(|c| c.to_vec())
}

fn ca_trust_domain(der: &[u8]) -> Option<String> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|g| match g {
        GeneralName::URI(u) => u.strip_prefix("spiffe://").filter(|td| !td.contains('/')).map(str::to_string),
        _ => None,
    })
}

/// Signs a leaf certificate for `id`. `dns_or_ip` adds server names (for the coordinator);
/// `offset_days` shifts the validity window (negative makes an already-expired certificate,
/// which tests use). Returns (certificate PEM, key PEM).
pub fn issue_leaf(
    issuer: &Issuer<'_, KeyPair>,
    id: &SpiffeId,
    dns_or_ip: &[String],
    days: i64,
    offset_days: i64,
) -> Result<(String, String), PkiError> {
    let eku = if id.role == Role::Coordinator {
        vec![ExtendedKeyUsagePurpose::ServerAuth]
    } else {
        vec![ExtendedKeyUsagePurpose::ClientAuth]
    };
    issue_leaf_with(issuer, id, dns_or_ip, days, offset_days, eku)
}

/// [`issue_leaf`] with the extended key usages given (tests make certificates the coordinator
/// must refuse, e.g. without clientAuth).
pub fn issue_leaf_with(
    issuer: &Issuer<'_, KeyPair>,
    id: &SpiffeId,
    dns_or_ip: &[String],
    days: i64,
    offset_days: i64,
    extended_key_usages: Vec<ExtendedKeyUsagePurpose>,
) -> Result<(String, String), PkiError> {
    let key = KeyPair::generate()?;
    let (nb, na) = validity(days);
    let window = (nb + Duration::days(offset_days), na + Duration::days(offset_days));
    let p = leaf_params(id, dns_or_ip, extended_key_usages, window)?;
    let cert = p.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// What every leaf certificate we sign holds: `id` as subject and URI SAN, the DNS names and
/// IP addresses `dns_or_ip`, digital signature with `extended_key_usages`, valid in `window`.
fn leaf_params(
    id: &SpiffeId,
    dns_or_ip: &[String],
    extended_key_usages: Vec<ExtendedKeyUsagePurpose>,
    window: (OffsetDateTime, OffsetDateTime),
) -> Result<CertificateParams, PkiError> {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, id.name.clone());
    dn.push(DnType::OrganizationalUnitName, id.role.as_str());
    p.distinguished_name = dn;
    p.subject_alt_names = vec![SanType::URI(id.uri().try_into()?)];
    for n in dns_or_ip {
        match n.parse::<std::net::IpAddr>() {
            Ok(ip) => p.subject_alt_names.push(SanType::IpAddress(ip)),
            Err(_) => p.subject_alt_names.push(SanType::DnsName(n.clone().try_into()?)),
        }
    }
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = extended_key_usages;
    p.use_authority_key_identifier_extension = true;
    (p.not_before, p.not_after) = window;
    Ok(p)
}

/// From 5 minutes back (clocks that are behind still accept it) for `lifetime`.
fn window_for(lifetime: std::time::Duration) -> (OffsetDateTime, OffsetDateTime) {
    let now = OffsetDateTime::now_utc();
    (now - Duration::minutes(5), now + Duration::seconds(lifetime.as_secs() as i64))
}

/// A certificate issued for an enrolling agent's request.
#[derive(Debug)]
pub struct Signed {
    pub id: SpiffeId,
    pub cert_pem: String,
    pub not_after_ms: i64,
}

/// Signs an enrolling agent's certificate signing request. The request must carry the
/// signature of the key it names (proof of possession) and exactly one name, the agent's
/// `spiffe://` identity in `trust_domain`; the certificate's other contents (usage, lifetime,
/// subject) are ours, never the request's. `Err` says what is wrong with the request.
pub fn sign_csr(
    issuer: &Issuer<'_, KeyPair>,
    csr_pem: &str,
    trust_domain: &str,
    lifetime: std::time::Duration,
) -> Result<Signed, String> {
    let csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| match e {
        rcgen::Error::InvalidCertificationRequestSignature => {
            "the certificate request is not signed by the key it names".to_string()
        }
        rcgen::Error::UnsupportedExtension => {
            "the certificate request asks for an extension seedship does not issue".into()
        }
        other => format!("the certificate request cannot be read ({other})"),
    })?;
    let uris: Vec<String> = csr
        .params
        .subject_alt_names
        .iter()
        .filter_map(|n| match n {
            SanType::URI(u) => Some(u.as_str().to_string()),
            _ => None,
        })
        .collect();
    if uris.len() != 1 || csr.params.subject_alt_names.len() != 1 {
        return Err("the certificate request must name exactly one identity: one spiffe:// URI, nothing else".into());
    }
    let id: SpiffeId = uris[0].parse().map_err(|e| format!("the certificate request names {:?}: {e}", uris[0]))?;
    if id.trust_domain != trust_domain {
        return Err(format!("the certificate request is for trust domain {}, not {trust_domain}", id.trust_domain));
    }
    if !matches!(id.role, Role::Source | Role::Copy) {
        return Err(format!("{id}: only agents (source, copy) enroll"));
    }
    let p = leaf_params(&id, &[], vec![ExtendedKeyUsagePurpose::ClientAuth], window_for(lifetime))
        .map_err(|e| e.to_string())?;
    let cert = p.signed_by(&csr.public_key, issuer).map_err(|e| format!("cannot sign the certificate: {e}"))?;
    let not_after_ms = (p.not_after.unix_timestamp_nanos() / 1_000_000) as i64;
    Ok(Signed { id, cert_pem: cert.pem(), not_after_ms })
}

/// A new server certificate and key for the coordinator (`id`, with the DNS names and IP
/// addresses `names`), living `lifetime` from 5 minutes back. Returns (certificate PEM, key PEM).
pub fn issue_server(
    issuer: &Issuer<'_, KeyPair>,
    id: &SpiffeId,
    names: &[String],
    lifetime: std::time::Duration,
) -> Result<(String, String), PkiError> {
    let key = KeyPair::generate()?;
    let p = leaf_params(id, names, vec![ExtendedKeyUsagePurpose::ServerAuth], window_for(lifetime))?;
    let cert = p.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Issues `<out>/<name>.crt` and `<out>/<name>.key` for an agent or operator.
pub fn issue(dir: &Path, role: Role, name: &str, out: &Path, days: i64) -> Result<(PathBuf, PathBuf), PkiError> {
    if role == Role::Coordinator {
        return Err(PkiError::Invalid("role must be source, copy or operator".into()));
    }
    let (issuer, td) = load_ca(dir)?;
    let id = SpiffeId::new(&td, role, name).map_err(|e| PkiError::Invalid(e.to_string()))?;
    let (cert_pem, key_pem) = issue_leaf(&issuer, &id, &[], days, 0)?;
    fs::create_dir_all(out).map_err(|e| PkiError::Write { path: out.to_path_buf(), source: e })?;
    let cert_path = out.join(format!("{name}.crt"));
    let key_path = out.join(format!("{name}.key"));
    write_new(&key_path, key_pem.as_bytes(), 0o600)?;
    write_new(&cert_path, cert_pem.as_bytes(), 0o644)?;
    Ok((cert_path, key_path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn init_and_issue_write_private_keys_0600_and_spiffe_ids() {
        let d = tempfile::tempdir().unwrap();
        let out = init(d.path(), "test.local", &["localhost".into(), "127.0.0.1".into()], 30).unwrap();
        for k in ["ca.key", "coordinator.key", "master.key"] {
            let mode = fs::metadata(d.path().join(k)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{k}");
        }
        let (crt, key) = issue(d.path(), Role::Copy, "station-01", d.path(), 30).unwrap();
        assert_eq!(fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
        let der = pem_der(&fs::read_to_string(&crt).unwrap()).unwrap();
        let id = crate::auth::spiffe_id_of(&der).unwrap();
        assert_eq!(id.to_string(), "spiffe://test.local/copy/station-01");
        assert!(matches!(init(d.path(), "test.local", &["x".into()], 30), Err(PkiError::Exists(_))));
        assert!(out.server_cert.exists());
        assert!(matches!(issue(d.path(), Role::Copy, "Bad Name", d.path(), 30), Err(PkiError::Invalid(_))));
    }

    #[test]
    fn an_issuing_ca_under_an_offline_root_signs_what_the_root_accepts() {
        let root = tempfile::tempdir().unwrap();
        init(root.path(), "test.local", &["localhost".into()], 30).unwrap();
        let d = tempfile::tempdir().unwrap();
        let issuing = d.path().join("issuing");
        let out = intermediate(root.path(), &issuing, 90).unwrap();
        assert_eq!(fs::metadata(&out.key).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::read(&out.root).unwrap(), fs::read(root.path().join("ca.crt")).unwrap());
        // The root's key goes offline; the issuing CA signs, its certificate with every leaf.
        fs::remove_file(root.path().join("ca.key")).unwrap();
        let s = load_signer(&out.cert, &out.key, &out.root).unwrap();
        assert_eq!(s.trust_domain, "test.local");
        assert_eq!(pem_der(&s.chain_pem), pem_der(&fs::read_to_string(&out.cert).unwrap()));
        // The root signing for itself sends nothing more.
        let again = tempfile::tempdir().unwrap();
        init(again.path(), "test.local", &["localhost".into()], 30).unwrap();
        let own = load_signer(&again.path().join("ca.crt"), &again.path().join("ca.key"), &again.path().join("ca.crt"));
        assert!(own.unwrap().chain_pem.is_empty());
        // An issuing CA of another root is refused, saying so.
        let e = load_signer(&out.cert, &out.key, &again.path().join("ca.crt")).unwrap_err().to_string();
        assert!(e.contains("does not chain to a CA in"), "{e}");
        // Nothing is overwritten.
        assert!(matches!(intermediate(again.path(), &issuing, 90), Err(PkiError::Exists(_))));
        // A root that allows no CA under it (path length 0) says what to do.
        let old = tempfile::tempdir().unwrap();
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::default();
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        p.subject_alt_names = vec![SanType::URI("spiffe://test.local".try_into().unwrap())];
        fs::write(old.path().join("ca.crt"), p.self_signed(&key).unwrap().pem()).unwrap();
        write_new(&old.path().join("ca.key"), key.serialize_pem().as_bytes(), 0o600).unwrap();
        let e = intermediate(old.path(), &old.path().join("i"), 90).unwrap_err().to_string();
        assert!(e.contains("path length 0") && e.contains("Rotating the CA"), "{e}");
    }

    fn csr(id: &str, extra: Option<SanType>) -> (String, KeyPair) {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::default();
        p.subject_alt_names = vec![SanType::URI(id.try_into().unwrap())];
        p.subject_alt_names.extend(extra);
        (p.serialize_request(&key).unwrap().pem().unwrap(), key)
    }

    #[test]
    fn an_enrolling_agents_request_gets_our_certificate_for_its_key_and_one_name() {
        let d = tempfile::tempdir().unwrap();
        init(d.path(), "test.local", &["localhost".into()], 30).unwrap();
        let (issuer, td) = load_ca(d.path()).unwrap();
        let life = std::time::Duration::from_secs(3600);
        let (pem, key) = csr("spiffe://test.local/source/dpm-01", None);
        let s = sign_csr(&issuer, &pem, &td, life).unwrap();
        assert_eq!(s.id.to_string(), "spiffe://test.local/source/dpm-01");
        let der = pem_der(&s.cert_pem).unwrap();
        assert_eq!(crate::auth::spiffe_id_of(&der).unwrap(), s.id);
        use x509_parser::prelude::FromDer;
        let (_, cert) = x509_parser::prelude::X509Certificate::from_der(&der).unwrap();
        assert_eq!(cert.public_key().subject_public_key.data.as_ref(), key.public_key_raw(), "the agent's own key");
        let life_s = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
        assert_eq!(life_s, 3600 + 300, "its lifetime, from 5 minutes back");
        // Refused: another trust domain, an operator, more than one name, a bad signature.
        let (pem, _) = csr("spiffe://other/source/dpm-01", None);
        assert!(sign_csr(&issuer, &pem, &td, life).unwrap_err().contains("trust domain other"));
        let (pem, _) = csr("spiffe://test.local/operator/eve", None);
        assert!(sign_csr(&issuer, &pem, &td, life).unwrap_err().contains("only agents"));
        let (pem, _) = csr("spiffe://test.local/copy/st1", Some(SanType::DnsName("evil.example".try_into().unwrap())));
        assert!(sign_csr(&issuer, &pem, &td, life).unwrap_err().contains("exactly one identity"));
        let (pem, _) = csr("spiffe://test.local/copy/st1", None);
        let der = rustls_pemfile::csr(&mut pem.as_bytes()).unwrap().unwrap();
        let mut bytes = der.as_ref().to_vec();
        let n = bytes.len();
        bytes[n - 5] ^= 1;
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
        let bad = format!("-----BEGIN CERTIFICATE REQUEST-----\n{b64}\n-----END CERTIFICATE REQUEST-----\n");
        assert!(sign_csr(&issuer, &bad, &td, life).unwrap_err().contains("not signed by the key"), "a forged request");
    }
}
