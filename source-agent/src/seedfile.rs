//! `seed.json`: the local record of a staged seed (a control file, never shipped).
//!
//! It says which job the staging location belongs to, which sources it was started for and
//! when (so a re-run resumes the same backup), and whether it completed and was registered.

use std::path::{Path, PathBuf};

use seedship_repo::layout;
use serde::{Deserialize, Serialize};

/// Where the seed goes in Azure, as the user gave it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedTarget {
    pub job_name: String,
    pub storage_account: String,
    pub container: String,
    pub subscription_id: String,
    pub location: String,
    /// The staging location as a copy station sees it (a share path); default: the local path.
    pub staging_share: String,
    #[serde(default)]
    pub target_site: Option<String>,
    #[serde(default)]
    pub target_station: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedFile {
    pub version: u32,
    pub target: SeedTarget,
    pub sources: Vec<PathBuf>,
    /// Snapshot time of this backup (RFC 3339); kept across resumes.
    pub time: String,
    pub repository_id: String,
    /// Manifest root once the staging set is complete.
    #[serde(default)]
    pub completed: Option<String>,
    /// Seed id the coordinator gave at registration.
    #[serde(default)]
    pub registered: Option<String>,
}

impl SeedFile {
    pub fn path(staging: &Path) -> PathBuf {
        staging.join(layout::SEED_FILE)
    }

    pub fn load(staging: &Path) -> Result<Option<SeedFile>, String> {
        let p = Self::path(staging);
        match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| format!("{} is damaged: {e}", p.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot read {}: {e}", p.display())),
        }
    }

    pub fn save(&self, staging: &Path) -> Result<(), seedship_repo::RepoError> {
        layout::write_atomic(&Self::path(staging), &serde_json::to_vec_pretty(self).expect("serializes"))
    }
}
