//! The coordinator's Azure settings (`[azure]` in its config) and the ARM client built from
//! them. Without `[azure]` the coordinator runs without the Azure side (disk preparation only).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use seedship_azure::client::{ArmClient, ArmOptions};
use seedship_azure::credential::CredentialConfig;
use seedship_azure::databox::{Secret, model};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureConfig {
    /// Azure Resource Manager: Azure's, or the emulator's (https).
    #[serde(default = "default_endpoint")]
    pub arm_endpoint: String,
    /// Extra CA certificates (PEM) to trust for ARM, e.g. the emulator's `ca.crt`.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    pub credential: CredentialConfig,
    /// The resource group the import jobs are created in.
    pub resource_group: String,
    /// The resource group of the seeds' storage accounts; default: `resource_group`.
    #[serde(default)]
    pub storage_resource_group: Option<String>,
    /// The copy logs Azure writes (`logCollectionLevel`): "Error" (a log of what failed) or
    /// "Verbose" (also every file copied).
    #[serde(default = "default_log_level")]
    pub log_level: String,
    /// How often each active job is fetched.
    #[serde(default = "default_poll", with = "humantime_serde")]
    pub poll_interval: Duration,
    /// How long the worker follows one long-running operation (a PUT) before it gives up for
    /// this round: Azure goes on with it, and the next round finds the job and adopts it.
    #[serde(default = "default_operation_timeout", with = "humantime_serde")]
    pub operation_timeout: Duration,
    /// Policy: what new seeds are shipped on. "customer_disk" (the default: the operator's
    /// own disks) or "databox_disk" (Microsoft's disks, ordered at registration; a seed too
    /// large for one order of 5 disks goes on customer disks, and its history says why). An
    /// operator can change it per seed before disk preparation (`seedctl kind`).
    #[serde(default)]
    pub disk_kind: crate::domain::model::DiskKind,
    pub return_address: ReturnAddressConfig,
    pub return_shipping: ReturnShippingConfig,
    /// The storage accounts: where the import containers and the vaults are.
    #[serde(default)]
    pub storage: StorageConfig,
    /// Where each server's vault lives.
    #[serde(default)]
    pub vaults: VaultConfig,
}

/// `[azure.vaults]`: one vault per protected server, or per group of servers, in the storage
/// account of the seed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultConfig {
    /// The vault's container; `{server}` is the source agent's name (made a valid container
    /// name: lowercase letters, digits and '-').
    #[serde(default = "default_vault_container")]
    pub container: String,
    /// Groups of servers that share one vault: group name → server names. Each member's
    /// repository is a folder (its name) of the group's container.
    #[serde(default)]
    pub groups: std::collections::BTreeMap<String, Vec<String>>,
    /// A group vault's container; `{group}` is the group's name.
    #[serde(default = "default_group_container")]
    pub group_container: String,
    /// Policy: delete a seed's data from its import container as soon as the vault holds it
    /// verified (recorded in the seed's history). Default: keep it until `seedctl cleanup-import`.
    #[serde(default)]
    pub cleanup_import: bool,
}

impl Default for VaultConfig {
    fn default() -> Self {
        VaultConfig {
            container: default_vault_container(),
            groups: Default::default(),
            group_container: default_group_container(),
            cleanup_import: false,
        }
    }
}

fn default_vault_container() -> String {
    "vault-{server}".into()
}

fn default_group_container() -> String {
    "vaultgroup-{group}".into()
}

/// Lowercase letters, digits and single '-', 3 to 63 characters: a valid container name (and a
/// safe folder name).
fn container_name(raw: &str) -> String {
    let raw = raw.to_ascii_lowercase();
    let mut out = String::new();
    for ch in raw.chars() {
        let ch = if ch.is_ascii_lowercase() || ch.is_ascii_digit() { ch } else { '-' };
        if !(ch == '-' && (out.is_empty() || out.ends_with('-'))) {
            out.push(ch);
        }
    }
    let mut out = out.trim_end_matches('-').chars().take(63).collect::<String>();
    while out.len() < 3 {
        out.push('0');
    }
    out.trim_end_matches('-').to_string()
}

impl VaultConfig {
    /// The container name for `server`'s own vault.
    pub fn container_for(&self, server: &str) -> String {
        container_name(&self.container.replace("{server}", server))
    }

    /// Where `server`'s repository goes: its own container, or its folder of its group's.
    pub fn place_for(&self, server: &str) -> seedship_azure::blob::VaultPlace {
        match self.groups.iter().find(|(_, members)| members.iter().any(|m| m == server)) {
            Some((group, _)) => seedship_azure::blob::VaultPlace {
                container: container_name(&self.group_container.replace("{group}", group)),
                prefix: format!("{}/", container_name(server)),
            },
            None => seedship_azure::blob::VaultPlace { container: self.container_for(server), prefix: String::new() },
        }
    }

    /// A server in two groups, or a group without members, is a configuration error.
    pub fn validate(&self) -> Result<(), String> {
        let mut seen = std::collections::BTreeMap::new();
        for (g, members) in &self.groups {
            if members.is_empty() {
                return Err(format!("azure.vaults.groups.{g} has no servers"));
            }
            for m in members {
                if let Some(other) = seen.insert(m.as_str(), g.as_str()) {
                    return Err(format!(
                        "server {m:?} is in two vault groups ({other} and {g}); a server has one vault"
                    ));
                }
            }
        }
        if !self.groups.is_empty() && !self.group_container.contains("{group}") {
            return Err("azure.vaults.group_container must contain {group}".into());
        }
        Ok(())
    }
}

/// How the coordinator reaches blob storage (`[azure.storage]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// The blob endpoint of an account, `{account}` replaced by its name. Azure:
    /// `https://{account}.blob.core.windows.net`; Azurite: `http://127.0.0.1:10000/{account}`.
    #[serde(default = "default_blob_endpoint")]
    pub endpoint: String,
    /// `account=key` lines (base64 keys; mode 0600). Accounts without a key here are reached
    /// with the `[azure]` credential (Entra ID). Agents' SAS tokens are signed with these keys.
    #[serde(default)]
    pub keys_file: Option<PathBuf>,
    /// How long an agent's SAS token is valid.
    #[serde(default = "default_sas_ttl", with = "humantime_serde")]
    pub sas_ttl: Duration,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig { endpoint: default_blob_endpoint(), keys_file: None, sas_ttl: default_sas_ttl() }
    }
}

fn default_blob_endpoint() -> String {
    "https://{account}.blob.core.windows.net".into()
}
fn default_sas_ttl() -> Duration {
    Duration::from_secs(3600)
}

/// Who Azure contacts about a job, and where it sends the disks back (customer disks) or
/// delivers its own (Data Box Disk): the job's `contactDetails` and `shippingAddress`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReturnAddressConfig {
    pub recipient_name: String,
    #[serde(default)]
    pub company_name: Option<String>,
    pub street_address1: String,
    #[serde(default)]
    pub street_address2: Option<String>,
    pub city: String,
    #[serde(default)]
    pub state_or_province: Option<String>,
    pub postal_code: String,
    /// The country as ISO 3166-1 alpha-2 (e.g. "NL", "US"), as Azure takes it.
    pub country: String,
    pub phone: String,
    pub email: String,
}

/// The carrier Azure ships the drives back with, on this account.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReturnShippingConfig {
    pub carrier_name: String,
    pub carrier_account_number: String,
}

fn default_endpoint() -> String {
    "https://management.azure.com".into()
}
fn default_log_level() -> String {
    "Error".into()
}
fn default_operation_timeout() -> Duration {
    Duration::from_secs(60)
}

fn default_poll() -> Duration {
    Duration::from_secs(300)
}

impl ReturnAddressConfig {
    /// The job's `contactDetails`.
    pub fn contact(&self) -> model::ContactDetails {
        model::ContactDetails {
            contact_name: Some(self.recipient_name.clone()),
            phone: Some(self.phone.clone()),
            email_list: Some(vec![self.email.clone()]),
            ..Default::default()
        }
    }

    /// The job's `shippingAddress`.
    pub fn address(&self) -> model::ShippingAddress {
        model::ShippingAddress {
            street_address1: Some(self.street_address1.clone()),
            street_address2: self.street_address2.clone(),
            city: Some(self.city.clone()),
            state_or_province: self.state_or_province.clone(),
            country: Some(self.country.clone()),
            postal_code: Some(self.postal_code.clone()),
            company_name: self.company_name.clone(),
            ..Default::default()
        }
    }
}

impl ReturnShippingConfig {
    /// The job's `returnToCustomerPackageDetails` (customer disks).
    pub fn package(&self) -> model::PackageCarrierDetails {
        model::PackageCarrierDetails {
            carrier_name: Some(self.carrier_name.clone()),
            carrier_account_number: Some(Secret(self.carrier_account_number.clone())),
            ..Default::default()
        }
    }
}

impl AzureConfig {
    /// Makes file paths relative to the config file's directory.
    pub fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let Some(p) = &mut self.ca_file {
            fix(p);
        }
        if let Some(p) = &mut self.storage.keys_file {
            fix(p);
        }
        match &mut self.credential {
            CredentialConfig::ClientSecret { secret_file, .. } => fix(secret_file),
            CredentialConfig::ClientCertificate { certificate_file, key_file, .. } => {
                fix(certificate_file);
                fix(key_file);
            }
            CredentialConfig::WorkloadIdentity { token_file: Some(t), .. } => fix(t),
            _ => {}
        }
    }

    /// Checks every setting; the message names it (`azure.<field>`).
    pub fn validate(&self) -> Result<(), String> {
        if !self.arm_endpoint.starts_with("https://") {
            return Err(format!("azure.arm_endpoint must be an https URL, got {:?}", self.arm_endpoint));
        }
        let rg_ok = |rg: &str| {
            (1..=90).contains(&rg.len())
                && rg.chars().all(|c| c.is_alphanumeric() || "-_.()".contains(c))
                && !rg.ends_with('.')
        };
        for (field, rg) in [
            ("resource_group", Some(&self.resource_group)),
            ("storage_resource_group", self.storage_resource_group.as_ref()),
        ] {
            if let Some(rg) = rg
                && !rg_ok(rg)
            {
                return Err(format!(
                    "azure.{field} {rg:?} is not a resource group name (1-90 letters, digits, '-', '_', '.', '(', ')', not ending in '.')"
                ));
            }
        }
        if !matches!(self.log_level.as_str(), "Error" | "Verbose") {
            return Err(format!("azure.log_level must be Error or Verbose, got {:?}", self.log_level));
        }
        if self.poll_interval < Duration::from_secs(1) {
            return Err("azure.poll_interval must be at least 1s".into());
        }
        if self.operation_timeout < Duration::from_secs(1) || self.operation_timeout > Duration::from_secs(3600) {
            return Err("azure.operation_timeout must be between 1s and 1h".into());
        }
        let a = &self.return_address;
        for (field, v) in [
            ("recipient_name", &a.recipient_name),
            ("street_address1", &a.street_address1),
            ("city", &a.city),
            ("postal_code", &a.postal_code),
            ("country", &a.country),
            ("phone", &a.phone),
            ("email", &a.email),
        ] {
            if v.trim().is_empty() {
                return Err(format!("azure.return_address.{field} is required (Azure ships the drives back there)"));
            }
        }
        if a.country.len() != 2 || !a.country.chars().all(|c| c.is_ascii_uppercase()) {
            return Err(format!(
                "azure.return_address.country must be a two-letter ISO 3166 code such as \"NL\" or \"US\", got {:?}",
                a.country
            ));
        }
        if !a.email.contains('@') {
            return Err(format!("azure.return_address.email {:?} is not an email address", a.email));
        }
        let s = &self.return_shipping;
        if s.carrier_name.trim().is_empty() || s.carrier_account_number.trim().is_empty() {
            return Err("azure.return_shipping needs carrier_name and carrier_account_number".into());
        }
        if let Some(ca) = &self.ca_file {
            std::fs::read(ca).map_err(|e| format!("azure.ca_file {}: {e}", ca.display()))?;
        }
        self.vaults.validate()?;
        if !self.storage.endpoint.contains("{account}") {
            return Err(format!(
                "azure.storage.endpoint {:?} must contain {{account}} (e.g. https://{{account}}.blob.core.windows.net)",
                self.storage.endpoint
            ));
        }
        if let Some(k) = &self.storage.keys_file {
            seedship_azure::blob::Accounts::load_keys(k).map_err(|e| format!("azure.storage.keys_file: {e}"))?;
        }
        if self.storage.sas_ttl < Duration::from_secs(60) || self.storage.sas_ttl > Duration::from_secs(7 * 86400) {
            return Err("azure.storage.sas_ttl must be between 1m and 7d".into());
        }
        Ok(())
    }

    /// The ARM client these settings describe (the credential is built here: a missing secret
    /// file fails now, not at the first call).
    pub fn client(&self) -> Result<ArmClient, String> {
        self.client_with(ArmOptions::default())
    }

    /// The storage accounts these settings reach (keys from `storage.keys_file`, the rest with
    /// the credential).
    pub fn accounts(&self) -> Result<seedship_azure::blob::Accounts, String> {
        let keys = match &self.storage.keys_file {
            Some(k) => {
                seedship_azure::blob::Accounts::load_keys(k).map_err(|e| format!("azure.storage.keys_file: {e}"))?
            }
            None => Default::default(),
        };
        Ok(seedship_azure::blob::Accounts {
            endpoint_template: self.storage.endpoint.clone(),
            keys,
            token: Some(self.credential.build()?),
        })
    }

    /// The resource group holding the storage accounts.
    pub fn storage_resource_group(&self) -> &str {
        self.storage_resource_group.as_deref().unwrap_or(&self.resource_group)
    }

    /// A client with these settings and `options` (retries, timeout); the CA comes from here.
    pub fn client_with(&self, options: ArmOptions) -> Result<ArmClient, String> {
        let credential = self.credential.build()?;
        let ca_pem = match &self.ca_file {
            Some(p) => Some(std::fs::read(p).map_err(|e| format!("azure.ca_file {}: {e}", p.display()))?),
            None => None,
        };
        ArmClient::new(&self.arm_endpoint, credential, ArmOptions { ca_pem, ..options })
            .map_err(|e| format!("azure: {e}"))
    }
}

/// Shared by the coordinator's Azure tasks.
pub type Arm = Arc<ArmClient>;

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
arm_endpoint = "https://127.0.0.1:9443"
resource_group = "seedship-rg"
log_level = "Verbose"
poll_interval = "30s"
[credential]
kind = "emulator"
[return_address]
recipient_name = "Backup team"
street_address1 = "1 Main St"
city = "Utrecht"
postal_code = "3511"
country = "NL"
phone = "+31 30 000 0000"
email = "backup@example.org"
[return_shipping]
carrier_name = "DHL"
carrier_account_number = "123456"
"#;

    #[test]
    fn a_full_table_parses_validates_and_builds_a_client() {
        let c: AzureConfig = toml::from_str(FULL).unwrap();
        c.validate().unwrap();
        assert_eq!((c.log_level.as_str(), c.poll_interval), ("Verbose", Duration::from_secs(30)));
        assert_eq!(c.return_address.address().city.as_deref(), Some("Utrecht"));
        assert_eq!(c.return_address.contact().email_list, Some(vec!["backup@example.org".to_string()]));
        c.client().unwrap();
    }

    #[test]
    fn vault_containers_are_valid_names() {
        let v = VaultConfig::default();
        assert_eq!(v.container_for("fileserver-01"), "vault-fileserver-01");
        assert_eq!(v.container_for("FS_01.corp"), "vault-fs-01-corp");
        let mut g = VaultConfig::default();
        g.groups.insert("Finance".into(), vec!["fs-01".into(), "FS_02".into()]);
        assert!(g.validate().is_ok());
        let p = g.place_for("FS_02");
        assert_eq!((p.container.as_str(), p.prefix.as_str()), ("vaultgroup-finance", "fs-02/"));
        assert_eq!(p.path(), "vaultgroup-finance/fs-02");
        assert_eq!(seedship_azure::blob::VaultPlace::parse(&p.path()), p);
        let own = g.place_for("fs-03");
        assert_eq!(
            (own.container.as_str(), own.prefix.as_str(), own.path().as_str()),
            ("vault-fs-03", "", "vault-fs-03")
        );
        g.groups.insert("ops".into(), vec!["fs-01".into()]);
        assert!(g.validate().unwrap_err().contains("two vault groups"));
        let long = "x".repeat(100);
        assert_eq!(v.container_for(&long).len(), 63);
    }

    #[test]
    fn bad_settings_are_named() {
        let with = |from: &str, to: &str| {
            let c: AzureConfig = toml::from_str(&FULL.replace(from, to)).unwrap();
            c.validate().unwrap_err()
        };
        assert!(with("https://127.0.0.1:9443", "http://127.0.0.1:9443").contains("azure.arm_endpoint"));
        assert!(with("seedship-rg", "bad rg!").contains("azure.resource_group"));
        assert!(with("Verbose", "Chatty").contains("azure.log_level"));
        assert!(with("backup@example.org", "nobody").contains("azure.return_address.email"));
        assert!(with("\"Utrecht\"", "\"  \"").contains("azure.return_address.city"));
        assert!(with("\"NL\"", "\"Netherlands\"").contains("two-letter ISO 3166"));
        let e = toml::from_str::<AzureConfig>(&FULL.replace("phone = \"+31 30 000 0000\"\n", "")).unwrap_err();
        assert!(e.to_string().contains("phone"), "{e}");
        let mut c: AzureConfig = toml::from_str(FULL).unwrap();
        c.ca_file = Some("/nonexistent/ca.crt".into());
        assert!(c.validate().unwrap_err().contains("azure.ca_file"));
    }
}
