//! Where a seed lands in Azure: its import container is the coordinator's choice, never the
//! source's. The rules are pure; the store applies them with what it knows of other seeds and
//! vaults (one transaction, so two registrations cannot take one container).

use serde::{Deserialize, Serialize};

/// `[imports]` in the coordinator's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportConfig {
    /// Each seed's import container; `{seed}` is the seed's id (unique), so no two seeds share
    /// one. A source may suggest a container only when it starts with the text before
    /// `{seed}` (the import prefix), which no vault container may start with.
    #[serde(default = "default_container")]
    pub container: String,
    /// `account=key` lines (base64 keys; mode 0600) that sign the SAS a customer disk's drive
    /// manifest carries (`<ContainerSas>`), for a coordinator without `[azure]` (with it,
    /// `[azure.storage] keys_file` signs, and this is the fallback). Without either, customer
    /// disks cannot be prepared: Azure refuses a drive manifest without access.
    #[serde(default)]
    pub keys_file: Option<std::path::PathBuf>,
}

impl Default for ImportConfig {
    fn default() -> Self {
        ImportConfig { container: default_container(), keys_file: None }
    }
}

fn default_container() -> String {
    "import-{seed}".into()
}

/// The rules of one coordinator: the import pattern, and the prefixes of containers that are
/// vaults (never an import container).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pattern: String,
    vault_prefixes: Vec<String>,
}

impl Default for Placement {
    fn default() -> Self {
        Placement::new(&ImportConfig::default(), &["vault-{server}", "vaultgroup-{group}"]).expect("the defaults agree")
    }
}

/// The text of a container pattern before its first `{`.
fn literal_prefix(pattern: &str) -> &str {
    pattern.split('{').next().unwrap_or_default()
}

impl Placement {
    /// Checks that the import pattern has `{seed}` after a non-empty prefix, and that no vault
    /// pattern (`vault_patterns`, e.g. `vault-{server}`) can make a name the import prefix
    /// allows, or the other way round.
    pub fn new(cfg: &ImportConfig, vault_patterns: &[&str]) -> Result<Placement, String> {
        let p = cfg.container.as_str();
        if !p.contains("{seed}") || p.matches('{').count() != 1 {
            return Err(format!("imports.container must contain {{seed}} (and no other placeholder), got {p:?}"));
        }
        let prefix = literal_prefix(p);
        if prefix.len() < 2
            || !prefix.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            || prefix.starts_with('-')
        {
            return Err(format!(
                "imports.container must start with at least 2 lowercase letters, digits or '-' before {{seed}}, got {p:?}"
            ));
        }
        let mut vault_prefixes = Vec::new();
        for v in vault_patterns {
            let vp = literal_prefix(v).to_ascii_lowercase();
            if vp.is_empty() {
                return Err(format!(
                    "vault container pattern {v:?} must start with a fixed prefix (e.g. \"vault-\"), so that no seed's import container can be a vault"
                ));
            }
            if vp.starts_with(prefix) || prefix.starts_with(vp.as_str()) {
                return Err(format!(
                    "imports.container ({p:?}) and the vault container pattern {v:?} overlap: a seed's import container could be a vault; give them prefixes that do not start one another"
                ));
            }
            vault_prefixes.push(vp);
        }
        Ok(Placement { pattern: p.to_string(), vault_prefixes })
    }

    /// The import prefix: every import container starts with it.
    pub fn prefix(&self) -> &str {
        literal_prefix(&self.pattern)
    }

    /// The container the coordinator chooses for seed `seed_id`.
    pub fn chosen(&self, seed_id: &str) -> String {
        self.pattern.replace("{seed}", &seed_id.to_ascii_lowercase())
    }

    /// Whether `suggested` (already a valid container name) may be a seed's import container,
    /// as far as the configuration goes; the store checks other seeds and the vaults.
    pub fn allows(&self, suggested: &str) -> Result<(), String> {
        if !suggested.starts_with(self.prefix()) || suggested.len() == self.prefix().len() {
            return Err(format!(
                "{suggested:?} is not an import container this coordinator allows: leave it empty (the coordinator chooses), or use a name starting with {:?}",
                self.prefix()
            ));
        }
        if self.vault_prefixes.iter().any(|v| suggested.starts_with(v.as_str())) {
            return Err(format!("{suggested:?} is a vault's name, never an import container"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_coordinator_chooses_and_suggestions_stay_in_the_import_prefix() {
        let p = Placement::default();
        assert_eq!(p.chosen("sd-0a1b2c3d4e5f"), "import-sd-0a1b2c3d4e5f");
        assert!(p.allows("import-mine").is_ok());
        for bad in ["vault-alice", "vaultgroup-g1", "seed-import", "import-", "insights-logs"] {
            assert!(p.allows(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn overlapping_or_open_patterns_are_configuration_errors() {
        let cfg = |c: &str| ImportConfig { container: c.into(), keys_file: None };
        assert!(Placement::new(&cfg("vault-{seed}"), &["vault-{server}"]).is_err());
        assert!(Placement::new(&cfg("v-{seed}"), &["v-vault-{server}"]).is_err());
        assert!(Placement::new(&cfg("import-{seed}"), &["{server}-vault"]).is_err());
        assert!(Placement::new(&cfg("import"), &[]).is_err());
        assert!(Placement::new(&cfg("{seed}"), &[]).is_err());
        assert!(Placement::new(&cfg("in-{seed}"), &["vault-{server}", "vaultgroup-{group}"]).is_ok());
    }
}
