//! How the coordinator authenticates to Azure Resource Manager: one of `azure_identity`'s
//! credentials, chosen in config, or a fixed token for the emulator. Secrets come from files
//! (mode 0600 is checked by the caller's config loader), never from the config text itself.

use std::path::PathBuf;
use std::sync::Arc;

use azure_core::credentials::{Secret, TokenCredential};
use azure_core::http::ClientMethodOptions;
use azure_identity::{
    AzureCliCredential, ClientAssertion, ClientAssertionCredential, ClientSecretCredential, ManagedIdentityCredential,
    ManagedIdentityCredentialOptions, UserAssignedId, WorkloadIdentityCredential, WorkloadIdentityCredentialOptions,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use serde::{Deserialize, Serialize};

use crate::client::StaticToken;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum CredentialConfig {
    /// A service principal with a client secret (read from `secret_file`).
    ClientSecret { tenant_id: String, client_id: String, secret_file: PathBuf },
    /// A service principal with a certificate: the certificate (PEM) and its RSA private key
    /// (PEM, PKCS#8). It signs a client assertion (RS256 JWT with the certificate's `x5t`), as
    /// Entra ID's certificate credentials work, without OpenSSL.
    ClientCertificate { tenant_id: String, client_id: String, certificate_file: PathBuf, key_file: PathBuf },
    /// The machine's managed identity; `client_id` picks a user-assigned one.
    ManagedIdentity {
        #[serde(default)]
        client_id: Option<String>,
    },
    /// Kubernetes workload identity (defaults from `AZURE_CLIENT_ID`, `AZURE_TENANT_ID`,
    /// `AZURE_FEDERATED_TOKEN_FILE`).
    WorkloadIdentity {
        #[serde(default)]
        tenant_id: Option<String>,
        #[serde(default)]
        client_id: Option<String>,
        #[serde(default)]
        token_file: Option<PathBuf>,
    },
    /// The signed-in Azure CLI (`az login`).
    AzureCli,
    /// The emulator: any bearer token will do.
    Emulator,
}

impl CredentialConfig {
    /// Builds the credential. Errors name the setting; a secret's value is never in them.
    pub fn build(&self) -> Result<Arc<dyn TokenCredential>, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let read = |what: &str, p: &PathBuf| {
            std::fs::read(p).map_err(|e| format!("azure credential: cannot read {what} {}: {e}", p.display()))
        };
        fn id_err(kind: &'static str) -> impl Fn(azure_core::Error) -> String {
            move |e| format!("azure credential ({kind}): {e}")
        }
        Ok(match self {
            CredentialConfig::ClientSecret { tenant_id, client_id, secret_file } => {
                let secret = String::from_utf8(read("secret_file", secret_file)?)
                    .map_err(|_| format!("azure credential: {} is not text", secret_file.display()))?;
                ClientSecretCredential::new(tenant_id, client_id.clone(), Secret::new(secret.trim().to_string()), None)
                    .map_err(id_err("client_secret"))?
            }
            CredentialConfig::ClientCertificate { tenant_id, client_id, certificate_file, key_file } => {
                let assertion = CertificateAssertion::load(
                    tenant_id,
                    client_id,
                    &read("certificate_file", certificate_file)?,
                    &read("key_file", key_file)?,
                )?;
                ClientAssertionCredential::new(tenant_id.clone(), client_id.clone(), assertion, None)
                    .map_err(id_err("client_certificate"))?
            }
            CredentialConfig::ManagedIdentity { client_id } => {
                ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
                    user_assigned_id: client_id.clone().map(UserAssignedId::ClientId),
                    ..Default::default()
                }))
                .map_err(id_err("managed_identity"))?
            }
            CredentialConfig::WorkloadIdentity { tenant_id, client_id, token_file } => {
                WorkloadIdentityCredential::new(Some(WorkloadIdentityCredentialOptions {
                    tenant_id: tenant_id.clone(),
                    client_id: client_id.clone(),
                    token_file_path: token_file.clone(),
                    ..Default::default()
                }))
                .map_err(id_err("workload_identity"))?
            }
            CredentialConfig::AzureCli => AzureCliCredential::new(None).map_err(id_err("azure_cli"))?,
            CredentialConfig::Emulator => Arc::new(StaticToken("seedship-emulator".into())),
        })
    }
}

/// Signs client assertions with a certificate's key.
struct CertificateAssertion {
    audience: String,
    client_id: String,
    x5t: String,
    key: RsaKeyPair,
}

impl std::fmt::Debug for CertificateAssertion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAssertion")
            .field("client_id", &self.client_id)
            .field("x5t", &self.x5t)
            .finish_non_exhaustive()
    }
}

fn pem_block(pem: &[u8], label: &str) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(pem).ok()?;
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let body = text.split(&begin).nth(1)?.split(&end).next()?;
    let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

impl CertificateAssertion {
    fn load(tenant: &str, client_id: &str, cert_pem: &[u8], key_pem: &[u8]) -> Result<CertificateAssertion, String> {
        let der =
            pem_block(cert_pem, "CERTIFICATE").ok_or("azure credential: certificate_file holds no PEM certificate")?;
        let key = pem_block(key_pem, "PRIVATE KEY")
            .ok_or("azure credential: key_file holds no PEM PKCS#8 private key (BEGIN PRIVATE KEY)")?;
        let key = RsaKeyPair::from_pkcs8(&key)
            .map_err(|_| "azure credential: key_file is not an RSA PKCS#8 key".to_string())?;
        let x5t = URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &der));
        Ok(CertificateAssertion {
            audience: format!("https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"),
            client_id: client_id.into(),
            x5t,
            key,
        })
    }

    /// The JWT: RS256, `x5t` of the certificate, audience the tenant's token endpoint.
    fn jwt(&self, now: i64) -> Result<String, String> {
        let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "x5t": self.x5t});
        let mut jti = [0u8; 16];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut jti).map_err(|_| "no randomness")?;
        let claims = serde_json::json!({
            "aud": self.audience, "iss": self.client_id, "sub": self.client_id,
            "jti": URL_SAFE_NO_PAD.encode(jti), "nbf": now, "iat": now, "exp": now + 600,
        });
        let signing_input =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let mut sig = vec![0u8; self.key.public().modulus_len()];
        self.key
            .sign(&RSA_PKCS1_SHA256, &ring::rand::SystemRandom::new(), signing_input.as_bytes(), &mut sig)
            .map_err(|_| "signing the client assertion failed".to_string())?;
        Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig)))
    }
}

#[async_trait::async_trait]
impl ClientAssertion for CertificateAssertion {
    async fn secret(&self, _options: Option<ClientMethodOptions<'_>>) -> azure_core::Result<String> {
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        self.jwt(now).map_err(|e| azure_core::Error::with_message(azure_core::error::ErrorKind::Credential, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

    fn parse(s: &str) -> CredentialConfig {
        serde_json::from_str(s).unwrap_or_else(|e| panic!("{e}: {s}"))
    }

    #[test]
    fn every_kind_is_configured_and_built_without_reaching_azure() {
        let d = std::env::temp_dir().join(format!("seedship-cred-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let secret = d.join("secret");
        std::fs::write(&secret, "s3cret-value\n").unwrap();
        let c = parse(&format!(
            r#"{{"kind":"client_secret","tenant_id":"{TENANT}","client_id":"app","secret_file":{:?}}}"#,
            secret
        ));
        c.build().unwrap();
        parse(r#"{"kind":"managed_identity"}"#).build().unwrap();
        parse(r#"{"kind":"managed_identity","client_id":"00000000-0000-0000-0000-000000000001"}"#).build().unwrap();
        parse(r#"{"kind":"azure_cli"}"#).build().unwrap();
        parse(r#"{"kind":"emulator"}"#).build().unwrap();
        // A certificate credential (a throwaway RSA key and certificate in testdata/).
        let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata");
        let (cf, kf) = (data.join("app.crt"), data.join("app.key"));
        let c = parse(&format!(
            r#"{{"kind":"client_certificate","tenant_id":"{TENANT}","client_id":"app","certificate_file":{cf:?},"key_file":{kf:?}}}"#
        ));
        c.build().unwrap();
        let a = CertificateAssertion::load(TENANT, "app", &std::fs::read(&cf).unwrap(), &std::fs::read(&kf).unwrap())
            .unwrap();
        let jwt = a.jwt(1_800_000_000).unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!((header["alg"].as_str(), header["x5t"].as_str().map(str::len)), (Some("RS256"), Some(27)));
        let claims: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["aud"], format!("https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/token"));
        assert_eq!((claims["iss"].as_str(), claims["exp"].as_i64()), (Some("app"), Some(1_800_000_600)));
        // The signature verifies with the key's public half.
        let public = ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            a.key.public().as_ref().to_vec(),
        );
        public
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &URL_SAFE_NO_PAD.decode(parts[2]).unwrap())
            .unwrap();
        // A key that is not RSA PKCS#8 is refused with the setting's name.
        let e = CertificateAssertion::load(TENANT, "app", &std::fs::read(&cf).unwrap(), b"nope").unwrap_err();
        assert!(e.contains("key_file"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn bad_settings_are_named_and_secrets_never_shown() {
        let e =
            parse(r#"{"kind":"client_secret","tenant_id":"t","client_id":"app","secret_file":"/nonexistent/secret"}"#)
                .build()
                .err()
                .unwrap();
        assert!(e.contains("secret_file") && e.contains("/nonexistent/secret"), "{e}");
        let d = std::env::temp_dir().join(format!("seedship-cred2-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let secret = d.join("secret");
        std::fs::write(&secret, "do-not-print-me").unwrap();
        let e = parse(&format!(
            r#"{{"kind":"client_secret","tenant_id":"not a tenant!","client_id":"app","secret_file":{secret:?}}}"#
        ))
        .build()
        .err()
        .unwrap();
        assert!(e.contains("client_secret") && !e.contains("do-not-print-me"), "{e}");
        assert!(serde_json::from_str::<CredentialConfig>(r#"{"kind":"password"}"#).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
