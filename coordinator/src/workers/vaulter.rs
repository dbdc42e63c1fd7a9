//! Seeding the vault: once a seed is verified, every file of it is copied server-side (Copy
//! Blob, within the storage account) from the import container into the server's vault
//! container, checked there (size and MD5), and the seed's snapshots become the vault's first
//! recovery points. Idempotent and resumable: a file already in the vault with the right size
//! and MD5 is not copied again, so a coordinator that stops midway converges when it starts.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use seedship_azure::blob::{BlobInfo, BlobStore};
use seedship_repo::manifest::{ManifestFile, SeedManifest};
use tokio::sync::watch;

use super::Backoff;
use super::verifier::MANIFEST_BLOB;
use crate::azure::AzureSide;
use crate::domain::model::*;
use crate::domain::seed::SeedState;
use crate::service::Coordinator;

pub async fn run(core: Weak<Coordinator>, side: Arc<AzureSide>, stop: watch::Receiver<bool>) {
    let due = Arc::new(tokio::sync::Mutex::new(Backoff::default()));
    super::run_as_leader("vaulter", Duration::from_secs(1), core, stop, move |core| {
        let (side, due) = (side.clone(), due.clone());
        async move { round(&core, &side, &mut *due.lock().await).await }
    })
    .await
}

async fn round(core: &Coordinator, side: &AzureSide, due: &mut Backoff) -> crate::error::Result<()> {
    for s in core.list_seeds(Some(SeedState::SeedingVault), 1000).await? {
        if !due.ready(&s.seed_id, Instant::now()) {
            continue;
        }
        match seed_vault(core, side, &s).await {
            Ok(Err(refusal)) => {
                due.done(&s.seed_id, Duration::ZERO, Instant::now());
                tracing::error!(job = %s.spec.job_name, reason = %refusal, "the seed is not copied into the vault");
                if let Err(e) = core.fail_seed(&s.seed_id, "coordinator/vault", &refusal).await {
                    tracing::warn!(job = %s.spec.job_name, error = %e, "cannot record the refusal; retrying");
                }
            }
            Ok(Ok(after)) => {
                due.done(&s.seed_id, Duration::ZERO, Instant::now());
                tracing::info!(job = %s.spec.job_name, "{}", after.state_reason);
                if side.cfg.vaults.cleanup_import
                    && let Err(e) = core.cleanup_import("coordinator/vault (cleanup_import policy)", &s.seed_id).await
                {
                    tracing::warn!(job = %s.spec.job_name, error = %e, "the import container was not cleaned up; `seedctl cleanup-import` does it");
                }
            }
            Err(e) => {
                let (wait, failures) = due.failed(&s.seed_id, Duration::from_secs(8), Instant::now());
                super::report(
                    "vaulter",
                    &format!("seeding the vault of {} (next try in {} s)", s.spec.job_name, wait.as_secs()),
                    &e,
                    failures,
                    true,
                );
            }
        }
    }
    Ok(())
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Before each write into a vault: this coordinator still holds the workers' lease (checked
/// in the database), or the write does not go out.
async fn fenced(core: &Coordinator) -> Result<(), String> {
    core.check_workers_fence().await.map(|_| ()).map_err(|e| e.to_string())
}

/// Whether `b` is `f` whole: its size and MD5.
fn whole(b: Option<&BlobInfo>, f: &ManifestFile) -> bool {
    b.is_some_and(|b| b.size == f.size && b.md5.as_deref().map(hex_of).as_deref() == Some(f.md5.as_str()))
}

/// Server-side copies from the import container into the vault, each checked after.
struct Copier<'a> {
    core: &'a Coordinator,
    store: &'a BlobStore,
    vault: &'a str,
    import: &'a str,
    sas: &'a str,
    place: &'a seedship_azure::blob::VaultPlace,
}

impl Copier<'_> {
    async fn run(&self, f: &ManifestFile) -> Result<(), String> {
        fenced(self.core).await?;
        let dest = self.place.blob(&f.path);
        let src = format!("{}?{}", self.store.blob_url(self.import, &f.path), self.sas);
        self.store
            .copy_from(self.vault, &dest, &src, Duration::from_secs(600))
            .await
            .map_err(|e| format!("{}: {e}", f.path))?;
        let b = self.store.properties(self.vault, &dest).await.map_err(|e| e.to_string())?;
        if !whole(b.as_ref(), f) {
            return Err(format!("{} in the vault does not have the manifest's size and MD5 after the copy", f.path));
        }
        Ok(())
    }
}

/// A vault's identity: its `config` and key files are written once, by its first seed, and
/// never replaced.
fn is_identity(path: &str) -> bool {
    path == seedship_repo::layout::CONFIG || path.starts_with("keys/")
}

/// Seeds the vault: `Err` to retry (storage unreachable), `Ok(Err(why))` when the seed must
/// not go into this vault at all (the seed fails with why), `Ok(Ok(seed))` when done.
async fn seed_vault(core: &Coordinator, side: &AzureSide, seed: &Seed) -> Result<Result<Seed, String>, String> {
    let account = &seed.spec.storage_account;
    let import = &seed.spec.container;
    let place = side.cfg.vaults.place_for(&seed.owner);
    let vault = &place.container;
    let store = side.accounts.store(account).map_err(|e| e.to_string())?;
    let manifest_bytes =
        store.download(import, MANIFEST_BLOB).await.map_err(|e| format!("{import}/{MANIFEST_BLOB}: {e}"))?;
    let manifest = SeedManifest::parse(&manifest_bytes, MANIFEST_BLOB).map_err(|e| e.to_string())?;
    if seedship_repo::manifest::root_of(&manifest.files) != seed.spec.manifest_root {
        return Err("the seed manifest in the import container does not match the registered root".into());
    }
    fenced(core).await?;
    store.ensure_container(vault).await.map_err(|e| format!("vault container {vault}: {e}"))?;
    // The source blobs are read through a short read-only SAS of the import container.
    let wall = crate::clock::Clock::now_ms(&crate::clock::SystemClock) / 1000;
    let sas = side.accounts.container_sas(account, import, "r", wall + 3600).map_err(|e| e.to_string())?;
    // A vault that already holds a repository keeps it: a seed of another one (other keys)
    // would make every restore fail. Registration refuses such seeds; this is the last guard.
    for f in manifest.files.iter().filter(|f| is_identity(&f.path)) {
        let dest = place.blob(&f.path);
        if let Some(b) = store.properties(vault, &dest).await.map_err(|e| e.to_string())?
            && !(b.size == f.size && b.md5.as_deref().map(hex_of).as_deref() == Some(f.md5.as_str()))
        {
            return Ok(Err(format!(
                "vault {} already holds another repository ({} differs from this seed's); the vault's config and keys are never replaced, so this seed is not copied in. \
                 Back up online into the vault instead, or have an operator retire the vault first",
                place.path(),
                f.path
            )));
        }
    }
    let copier = Copier { core, store: &store, vault, import, sas: &sas, place: &place };
    let (mut copied, mut kept) = (0usize, 0usize);
    for f in &manifest.files {
        let dest = place.blob(&f.path);
        if whole(store.properties(vault, &dest).await.map_err(|e| e.to_string())?.as_ref(), f) {
            kept += 1;
            continue;
        }
        copier.run(f).await?;
        copied += 1;
        // Tests: a pause between copies, so a test can stop the coordinator mid-copy.
        seedship_telemetry::failpoint::eval_async("vault-copy").await;
    }
    // Before `seeded`, the whole vault as listed now: storage can lose a write it acknowledged
    // (a failover, an emulator restarted before it saved), so each file was checked when it
    // was copied, and every one is checked again here; what is missing is copied again.
    let mut round = 0;
    loop {
        let listed: std::collections::HashMap<String, seedship_azure::blob::BlobInfo> =
            store.list(vault).await.map_err(|e| e.to_string())?.into_iter().map(|b| (b.name.clone(), b)).collect();
        let missing: Vec<_> = manifest.files.iter().filter(|f| !whole(listed.get(&place.blob(&f.path)), f)).collect();
        if missing.is_empty() {
            break;
        }
        round += 1;
        if round > 3 {
            return Err(format!(
                "{} file(s) of the seed (first: {}) are still not in the vault after copying them again; retrying",
                missing.len(),
                missing[0].path
            ));
        }
        tracing::warn!(job = %seed.spec.job_name, files = missing.len(), first = %missing[0].path, "files the vault had confirmed are gone; copying them again");
        for f in missing {
            copier.run(f).await?;
            copied += 1;
        }
    }
    // The seed's provenance travels with the vault.
    let record = place.blob(&format!("seeds/{}.manifest.json", seed.spec.job_name));
    fenced(core).await?;
    store.put_small(vault, &record, manifest_bytes).await.map_err(|e| format!("{record}: {e}"))?;
    let snapshots: Vec<String> =
        manifest.files.iter().filter_map(|f| f.path.strip_prefix("snapshots/").map(str::to_string)).collect();
    if snapshots.is_empty() {
        return Err("the seed has no snapshot: nothing to restore from".into());
    }
    let vault = place.path();
    tracing::info!(job = %seed.spec.job_name, %vault, copied, kept, "vault copy complete");
    core.vault_seeded(&seed.seed_id, account, &vault, &snapshots).await.map(Ok).map_err(|e| e.to_string())
}
