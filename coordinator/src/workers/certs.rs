//! The coordinator's server certificate renews itself: at half its lifetime a new key and
//! certificate (same names, same CA) are written over `[tls] cert_file` and `key_file` and
//! used at once by every listener (`tls::ServerCert`), with no restart and no dropped
//! connection. The certificate is written to `<cert>.next` first, then the key, then the
//! certificate takes its place: a stop in between is finished at the next start.

use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::Duration;

use seedship_proto::identity::{Role, SpiffeId};
use tokio::sync::watch;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::config::{EnrollConfig, TlsConfig};
use crate::service::Coordinator;
use crate::tls::ServerCert;

pub struct Renewal {
    tls: TlsConfig,
    signer: crate::pki::Signer,
    id: SpiffeId,
    lifetime: Duration,
    cert: Arc<ServerCert>,
}

/// Whether a certificate valid from `not_before` to `not_after` (Unix seconds, the start 5
/// minutes back for clock skew) is renewed at `now` for certificates of `lifetime` seconds:
/// at half its lifetime, or at once when it outlives the lifetime configured (a certificate
/// from `coordinator pki init`, or from before a shorter setting).
pub fn due(now: i64, not_before: i64, not_after: i64, lifetime: i64) -> bool {
    let made = not_before + 300;
    not_after - now > lifetime + 60 || now >= made + (not_after - made) / 2
}

fn validity(der: &[u8]) -> Option<(i64, i64)> {
    let (_, c) = X509Certificate::from_der(der).ok()?;
    Some((c.validity().not_before.timestamp(), c.validity().not_after.timestamp()))
}

/// The DNS names and IP addresses a certificate is for.
fn server_names(der: &[u8]) -> Vec<String> {
    let Ok((_, c)) = X509Certificate::from_der(der) else { return Vec::new() };
    let Ok(Some(san)) = c.subject_alternative_name() else { return Vec::new() };
    san.value
        .general_names
        .iter()
        .filter_map(|g| match g {
            GeneralName::DNSName(d) => Some(d.to_string()),
            GeneralName::IPAddress(b) if b.len() == 4 => {
                Some(std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*b).ok()?).to_string())
            }
            GeneralName::IPAddress(b) if b.len() == 16 => {
                Some(std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*b).ok()?).to_string())
            }
            _ => None,
        })
        .collect()
}

/// Writes `bytes` to `tmp` (mode `mode`, fsynced), then renames it to `path`.
fn replace(tmp: &Path, path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(tmp)
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

impl Renewal {
    pub fn new(
        tls: &TlsConfig,
        enroll: &EnrollConfig,
        trust_domain: &str,
        lifetime: Duration,
        cert: Arc<ServerCert>,
    ) -> Result<Renewal, String> {
        let signer = enroll.signer(tls).map_err(|e| format!("[enroll] server_cert_lifetime: {e}"))?;
        let id = SpiffeId::new(trust_domain, Role::Coordinator, "coordinator").map_err(|e| e.to_string())?;
        Ok(Renewal { tls: tls.clone(), signer, id, lifetime, cert })
    }

    /// Renews the certificate if it is past half its lifetime. True when it did.
    pub fn round(&self, now_s: i64) -> Result<bool, String> {
        let leaf = self.cert.leaf().ok_or("no server certificate")?;
        let (nb, na) = validity(&leaf).ok_or("the server certificate cannot be read")?;
        if !due(now_s, nb, na, self.lifetime.as_secs() as i64) {
            return Ok(false);
        }
        let names = server_names(&leaf);
        let (mut cert_pem, key_pem) = crate::pki::issue_server(&self.signer.issuer, &self.id, &names, self.lifetime)
            .map_err(|e| e.to_string())?;
        cert_pem.push_str(&self.signer.chain_pem);
        let next = crate::tls::next_path(&self.tls.cert_file);
        replace(&next.with_extension("tmp"), &next, cert_pem.as_bytes(), 0o644)?;
        let mut key_tmp = self.tls.key_file.as_os_str().to_owned();
        key_tmp.push(".tmp");
        replace(Path::new(&key_tmp), &self.tls.key_file, key_pem.as_bytes(), 0o600)?;
        std::fs::rename(&next, &self.tls.cert_file).map_err(|e| format!("{}: {e}", self.tls.cert_file.display()))?;
        self.cert.reload(&self.tls.ca_file, &self.tls.cert_file, &self.tls.key_file)?;
        let until = self.cert.leaf().and_then(|l| validity(&l)).map(|(_, na)| na).unwrap_or(0);
        tracing::info!(
            until = %seedship_proto::human::rfc3339(until * 1000),
            names = ?names,
            "server certificate renewed (new key); in use for every new connection"
        );
        Ok(true)
    }
}

/// Checks every second, renews when due; a failure is logged and tried again.
pub async fn run(core: Weak<Coordinator>, r: Arc<Renewal>, stop: watch::Receiver<bool>) {
    super::run_every("server-certificate", Duration::from_secs(1), core, stop, move |core| {
        let r = r.clone();
        async move {
            // Certificates are checked against real time, whatever the coordinator's clock.
            let now_s = crate::clock::Clock::now_ms(&crate::clock::SystemClock) / 1000;
            let _ = &core;
            r.round(now_s)
                .map(|_| ())
                .map_err(|e| crate::error::Error::Internal(format!("renewing the server certificate: {e}")))
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::due;

    #[test]
    fn a_certificate_is_renewed_at_half_its_lifetime_or_when_it_lives_too_long() {
        // Made at 1000 (valid from 700) for 1000 s: renewed from 1500 on.
        assert!(!due(1000, 700, 2000, 1000));
        assert!(!due(1499, 700, 2000, 1000));
        assert!(due(1500, 700, 2000, 1000));
        // A 10-year certificate under a 1-day setting: at once.
        assert!(due(1000, 700, 1000 + 10 * 365 * 86_400, 86_400));
    }
}
