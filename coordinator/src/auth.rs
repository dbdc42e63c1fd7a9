//! Who is calling, and may they: identity from the client certificate, roles per RPC.
//!
//! rustls has already verified the certificate chain against our CA during the handshake;
//! here we read the SPIFFE URI SAN of the leaf, check its trust domain, that it has not
//! expired since (connections outlive short-lived certificates) nor been revoked, and check
//! the role against the RPC's allowed roles. Every refusal is logged with the caller's identity.

use seedship_proto::identity::{Role, SpiffeId};
use tonic::{Request, Status};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

#[derive(Debug, Clone)]
pub struct Auth {
    trust_domain: String,
    revoked: std::sync::Arc<Revoked>,
}

/// The revoked identities as this coordinator last read them: from the database at start,
/// every 5 seconds after (the sweeper), and at once for a revocation made here. Checked on
/// every call, so connections already open are refused too.
#[derive(Debug, Default)]
pub struct Revoked(std::sync::RwLock<std::collections::HashSet<String>>);

impl Revoked {
    pub fn contains(&self, identity: &str) -> bool {
        self.0.read().map(|s| s.contains(identity)).unwrap_or(true)
    }

    pub fn insert(&self, identity: &str) {
        if let Ok(mut s) = self.0.write() {
            s.insert(identity.to_string());
        }
    }

    pub fn replace(&self, all: impl IntoIterator<Item = String>) {
        if let Ok(mut s) = self.0.write() {
            *s = all.into_iter().collect();
        }
    }
}

/// The SPIFFE id in a client certificate's URI SANs, if it has exactly one, and if the
/// certificate is for client authentication: the extended key usage extension must be there
/// and name clientAuth (webpki accepts a certificate without the extension for any use).
pub fn spiffe_id_of(der: &[u8]) -> Result<SpiffeId, String> {
    client_cert(der).map(|(id, _)| id)
}

/// [`spiffe_id_of`] and the certificate's end of validity (Unix seconds).
fn client_cert(der: &[u8]) -> Result<(SpiffeId, i64), String> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| format!("unreadable client certificate: {e}"))?;
    let not_after = cert.validity().not_after.timestamp();
    match cert.extended_key_usage().map_err(|e| format!("bad extendedKeyUsage: {e}"))? {
        Some(eku) if eku.value.client_auth => {}
        _ => {
            return Err("client certificate lacks the clientAuth extended key usage; issue client certificates with `coordinator pki issue`".into());
        }
    }
    let san = cert
        .subject_alternative_name()
        .map_err(|e| format!("bad subjectAltName: {e}"))?
        .ok_or("client certificate has no subjectAltName; it needs a spiffe:// URI")?;
    let uris: Vec<&str> = san
        .value
        .general_names
        .iter()
        .filter_map(|g| match g {
            GeneralName::URI(u) if u.starts_with("spiffe://") => Some(*u),
            _ => None,
        })
        .collect();
    match uris.as_slice() {
        [one] => one.parse().map(|id| (id, not_after)).map_err(|e| format!("{e}")),
        [] => Err("client certificate has no spiffe:// URI SAN".into()),
        _ => Err("client certificate has more than one spiffe:// URI SAN".into()),
    }
}

impl Auth {
    pub fn new(trust_domain: &str, revoked: std::sync::Arc<Revoked>) -> Self {
        Auth { trust_domain: trust_domain.to_string(), revoked }
    }

    /// The caller's identity; UNAUTHENTICATED without a usable client certificate.
    pub fn caller<T>(&self, req: &Request<T>) -> Result<SpiffeId, Status> {
        let certs = req.peer_certs().ok_or_else(|| Status::unauthenticated("no client certificate"))?;
        let leaf = certs.first().ok_or_else(|| Status::unauthenticated("no client certificate"))?;
        let (id, not_after) = client_cert(leaf.as_ref()).map_err(|e| {
            tracing::warn!(error = %e, "refused a client certificate without a usable identity");
            Status::unauthenticated(e)
        })?;
        // The handshake checked the certificate's dates when the connection opened; a
        // connection outlives a short-lived certificate, so every call checks again.
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64);
        if now.is_ok_and(|now| now > not_after) {
            let until = seedship_proto::human::rfc3339(not_after * 1000);
            tracing::warn!(caller = %id, %until, "refused a call over a connection whose certificate has expired");
            return Err(Status::unauthenticated(format!(
                "the certificate of {id} expired at {until}; reconnect with a renewed one (the agent renews its own \
                 at half its lifetime; one that was offline too long enrolls again with a new token)"
            )));
        }
        if id.trust_domain != self.trust_domain {
            tracing::warn!(caller = %id, expected = %self.trust_domain, "refused a caller from another trust domain");
            return Err(Status::permission_denied(format!(
                "identity {id} is not in trust domain {}",
                self.trust_domain
            )));
        }
        if self.revoked.contains(&id.uri()) {
            tracing::warn!(caller = %id, "refused a revoked identity");
            return Err(Status::permission_denied(format!(
                "identity {id} is revoked (seedctl agents revoked); it is refused everything"
            )));
        }
        Ok(id)
    }

    /// The caller's identity if its role may call `rpc`; PERMISSION_DENIED (logged) otherwise.
    pub fn require<T>(&self, req: &Request<T>, rpc: &'static str, allowed: &[Role]) -> Result<SpiffeId, Status> {
        let id = self.caller(req)?;
        if allowed.contains(&id.role) {
            return Ok(id);
        }
        let names: Vec<&str> = allowed.iter().map(|r| r.as_str()).collect();
        tracing::warn!(caller = %id, rpc, allowed = ?names, "permission denied: role may not call this rpc");
        Err(Status::permission_denied(format!("{id} has role {}; {rpc} is for role {}", id.role, names.join(" or "))))
    }
}
