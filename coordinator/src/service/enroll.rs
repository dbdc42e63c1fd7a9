//! Enrollment: operators make one-time tokens; agents redeem one with a certificate request
//! and get a certificate for the identity the token allows (`domain/enroll.rs` decides).

use super::seeds::{random_secret, secret_hash};
use super::*;
use crate::domain::enroll::{EnrollToken, skew_problem, token_problem};

/// A token's secret starts with this, so a person can tell it from other secrets.
pub const TOKEN_PREFIX: &str = "seedship-enroll-";

/// What an operator asks a token for.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub role: Role,
    pub name: String,
    pub site: Option<String>,
    pub ttl_ms: i64,
    pub reason: String,
}

/// The CA that signs enrolled agents' certificates.
pub struct Enroller {
    pub signer: crate::pki::Signer,
    /// The roots agents trust (`[tls] ca_file`), sent with every certificate.
    pub ca_pem: String,
    pub lifetime: std::time::Duration,
}

impl Enroller {
    pub fn load(
        tls: &crate::config::TlsConfig,
        cfg: &crate::config::EnrollConfig,
    ) -> std::result::Result<Self, String> {
        let signer = cfg.signer(tls).map_err(|e| format!("[enroll]: {e}"))?;
        let ca_pem = std::fs::read_to_string(&tls.ca_file).map_err(|e| format!("{}: {e}", tls.ca_file.display()))?;
        Ok(Enroller { signer, ca_pem, lifetime: cfg.cert_lifetime })
    }

    /// Signs `csr_pem` ([`crate::pki::sign_csr`]); the certificate comes with the issuing CA's
    /// when that is not a root.
    fn sign(&self, csr_pem: &str, field: &'static str) -> Result<crate::pki::Signed> {
        let mut s = crate::pki::sign_csr(&self.signer.issuer, csr_pem, &self.signer.trust_domain, self.lifetime)
            .map_err(|why| Error::invalid(field, why))?;
        s.cert_pem.push_str(&self.signer.chain_pem);
        Ok(s)
    }
}

/// Refuses an agent whose clock is too far from this host's. The wall clock, not the
/// coordinator's business clock: certificates are signed with the wall clock.
fn check_clock(agent_ms: i64, field: &'static str) -> Result<()> {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    match skew_problem(agent_ms, now) {
        Some(why) => Err(Error::invalid(field, why)),
        None => Ok(()),
    }
}

/// A certificate an agent enrolled for.
#[derive(Debug)]
pub struct Enrolled {
    pub identity: SpiffeId,
    pub cert_pem: String,
    pub ca_pem: String,
    pub not_after_ms: UnixMs,
    pub site: Option<String>,
}

impl Coordinator {
    /// A new one-time token; its secret is returned once, only its hash is kept. Audited.
    pub async fn create_enroll_token(&self, operator: &SpiffeId, t: NewToken) -> Result<(String, EnrollToken)> {
        if let Some(why) = token_problem(t.role, &t.name, t.ttl_ms) {
            return Err(Error::invalid("token", why));
        }
        let secret = format!("{TOKEN_PREFIX}{}", random_secret());
        let hash = secret_hash(&secret);
        let now = self.now();
        let token = EnrollToken {
            id: hash[..12].to_string(),
            role: t.role,
            name: t.name,
            site: t.site,
            created_by: operator.uri(),
            reason: t.reason,
            created_ms: now,
            expires_ms: now + t.ttl_ms,
            used_ms: None,
            used_by: None,
        };
        self.store.enroll_create(&hash, &token, now).await?;
        tracing::info!(operator = %operator, token = %token.id, role = %token.role, name = %token.name, "enrollment token created");
        Ok((secret, token))
    }

    pub async fn enroll_tokens(&self) -> Result<Vec<EnrollToken>> {
        self.store.enroll_list().await
    }

    /// Redeems `token` for the certificate request `csr_pem`. PERMISSION_DENIED for a token
    /// that cannot be used, INVALID_ARGUMENT for a request that is not acceptable; both say
    /// why, and the caller audits them.
    pub async fn enroll(&self, ca: &Enroller, token: &str, csr_pem: &str, agent_ms: i64) -> Result<Enrolled> {
        let token = token.trim();
        check_clock(agent_ms, "client_time_unix_ms")?;
        if !token.starts_with(TOKEN_PREFIX) || token.len() > 200 {
            return Err(Error::PermissionDenied(format!(
                "that is not an enrollment token (they start with {TOKEN_PREFIX}); ask an operator for one (seedctl enroll create)"
            )));
        }
        if csr_pem.len() > 16 << 10 {
            return Err(Error::invalid("csr", "a certificate request is a few hundred bytes, not this"));
        }
        let signed = ca.sign(csr_pem, "csr")?;
        if self.is_revoked(&signed.id.uri()) {
            return Err(Error::PermissionDenied(format!(
                "{} is revoked; it cannot enroll again under that name (enroll it under a new name)",
                signed.id
            )));
        }
        let t = self
            .store
            .enroll_redeem(&secret_hash(token), &signed.id, &ca.signer.trust_domain, signed.not_after_ms, self.now())
            .await?;
        tracing::info!(identity = %signed.id, token = %t.id, created_by = %t.created_by, "agent enrolled");
        Ok(Enrolled {
            identity: signed.id,
            cert_pem: signed.cert_pem,
            ca_pem: ca.ca_pem.clone(),
            not_after_ms: signed.not_after_ms,
            site: t.site,
        })
    }
}

impl Coordinator {
    /// Renews `who`'s own certificate for the key of `csr_pem` (a request for `who` only).
    /// Audited; a refusal is audited by the gRPC layer.
    pub async fn renew_certificate(
        &self,
        ca: &Enroller,
        who: &SpiffeId,
        csr_pem: &str,
        agent_ms: i64,
    ) -> Result<Enrolled> {
        check_clock(agent_ms, "client_time_unix_ms")?;
        if csr_pem.len() > 16 << 10 {
            return Err(Error::invalid("csr_pem", "a certificate request is a few hundred bytes, not this"));
        }
        let signed = ca.sign(csr_pem, "csr_pem")?;
        if signed.id != *who {
            return Err(Error::PermissionDenied(format!(
                "{who} may renew only its own certificate, not one for {}",
                signed.id
            )));
        }
        let now = self.now();
        let record = AuditRecord {
            actor: who.uri(),
            action: "RenewCertificate".into(),
            target: who.name.clone(),
            outcome: "ok".into(),
            detail: format!("a new key; certificate until {}", seedship_proto::human::rfc3339(signed.not_after_ms)),
        };
        self.store.audit(record, now).await?;
        tracing::info!(identity = %who, until = %seedship_proto::human::rfc3339(signed.not_after_ms), "certificate renewed");
        Ok(Enrolled {
            identity: signed.id,
            cert_pem: signed.cert_pem,
            ca_pem: ca.ca_pem.clone(),
            not_after_ms: signed.not_after_ms,
            site: None,
        })
    }
}
