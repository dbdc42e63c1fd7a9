//! Registering a staged seed with the coordinator.
//!
//! Registration only ever describes a complete staging set: the manifest must be there, its
//! root must match its entries, and (unless the backup that just wrote it calls this) every
//! file is re-read and checked against it first.

use std::path::Path;

use seedship_proto::agent::with_retry;
use seedship_proto::client::{self, Conn};
use seedship_proto::pb;
use seedship_repo::manifest::SeedManifest;
use seedship_repo::verify::verify_staging;

use crate::seedfile::SeedFile;

#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("{0}")]
    NotReady(String),
    #[error("the staging set is damaged; not registering it: {0}")]
    Damaged(String),
    #[error("the coordinator refused the seed: {0}")]
    Refused(String),
    #[error(
        "the coordinator could not be reached ({0}); the staged seed is kept: run `source-agent register --staging ...` later"
    )]
    Unreachable(String),
}

/// Registers the seed staged at `staging`. `reverify` re-reads every file first.
pub async fn register(conn: &Conn, staging: &Path, reverify: bool) -> Result<pb::RegisterSeedResponse, RegisterError> {
    let mut sf = SeedFile::load(staging)
        .map_err(RegisterError::NotReady)?
        .ok_or_else(|| RegisterError::NotReady(format!("{} holds no staged seed (no seed.json)", staging.display())))?;
    let manifest =
        SeedManifest::load(staging).map_err(|e| RegisterError::NotReady(format!("the backup is not complete: {e}")))?;
    if sf.completed.as_deref() != Some(manifest.root.as_str()) {
        return Err(RegisterError::NotReady("the backup has not completed; run the backup again to finish it".into()));
    }
    if reverify {
        let report = verify_staging(staging, |_| {}).map_err(|e| RegisterError::Damaged(e.to_string()))?;
        if let Some(f) = report.findings.first() {
            return Err(RegisterError::Damaged(format!("{} {}", f.path, f.problem)));
        }
    }
    // The repository's own id (its config), which the seed.json record must agree with.
    let config = seedship_repo::repo::read_config(staging)
        .map_err(|e| RegisterError::NotReady(format!("the staging set's config cannot be read: {e}")))?;
    if config.id != sf.repository_id {
        return Err(RegisterError::Damaged(format!(
            "seed.json names repository {} but the staging set's config is repository {}",
            sf.repository_id, config.id
        )));
    }
    let t = &sf.target;
    let req = pb::RegisterSeedRequest {
        request_id: String::new(),
        job_name: t.job_name.clone(),
        storage_account: t.storage_account.clone(),
        container: t.container.clone(),
        subscription_id: t.subscription_id.clone(),
        location: t.location.clone(),
        staging_location: t.staging_share.clone(),
        manifest_root: manifest.root.clone(),
        total_bytes: manifest.total_bytes(),
        file_count: manifest.files.len() as u64,
        target_site: t.target_site.clone().unwrap_or_default(),
        target_station: t.target_station.clone().unwrap_or_default(),
        repository_id: config.id,
    };
    let resp = with_retry("RegisterSeed", 5, |request_id| {
        let mut c = client::seeds(conn.clone());
        let mut r = req.clone();
        r.request_id = request_id;
        async move { c.register_seed(r).await.map(|r| r.into_inner()) }
    })
    .await
    .map_err(|s| {
        if seedship_proto::agent::is_transient(&s) {
            RegisterError::Unreachable(s.message().to_string())
        } else {
            RegisterError::Refused(s.message().to_string())
        }
    })?;
    if let Some(seed) = &resp.seed {
        sf.registered = Some(seed.seed_id.clone());
        let _ = sf.save(staging);
    }
    Ok(resp)
}
