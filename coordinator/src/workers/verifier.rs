//! The import verification: once a seed is imported, every blob of its import container is
//! checked against the seed manifest (presence, size, the blob's MD5, and the data itself:
//! MD5 and SHA-256), and the manifest against the root the source agent registered. What is
//! missing or damaged is asked of the source agent again (repair); the seed reaches the vault
//! only when every file verifies.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use md5::Md5;
use seedship_azure::blob::{BlobError, BlobStore};
use seedship_repo::manifest::{ManifestFile, SeedManifest, root_of};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use super::Backoff;
use crate::azure::AzureSide;
use crate::domain::model::*;
use crate::domain::seed::SeedState;
use crate::service::Coordinator;

/// The seed manifest's own blob name.
pub const MANIFEST_BLOB: &str = "manifest.json";

/// Runs the verifier until `stop`: starts verification of imported seeds and verifies every
/// seed in `verifying` (again after a restart: a verification is idempotent).
pub async fn run(core: Weak<Coordinator>, side: Arc<AzureSide>, stop: watch::Receiver<bool>) {
    let due = Arc::new(tokio::sync::Mutex::new(Backoff::default()));
    super::run_as_leader("verifier", Duration::from_secs(1), core, stop, move |core| {
        let (side, due) = (side.clone(), due.clone());
        async move { round(&core, &side, &mut *due.lock().await).await }
    })
    .await
}

async fn round(core: &Coordinator, side: &AzureSide, due: &mut Backoff) -> crate::error::Result<()> {
    for s in core.list_seeds(Some(SeedState::Imported), 1000).await? {
        // A round of lost files is not verified alone: its parent is, whole, once it is merged.
        if let Some(parent) = &s.round_of {
            match core.merge_round(&s.seed_id).await {
                Ok(_) => {
                    tracing::info!(job = %s.spec.job_name, %parent, "offline round imported; its parent is verified again")
                }
                Err(e) => tracing::warn!(job = %s.spec.job_name, error = %e, "cannot merge the offline round"),
            }
            continue;
        }
        if let Err(e) = core.start_verification(&s.seed_id).await {
            tracing::warn!(job = %s.spec.job_name, error = %e, "cannot start the verification");
        }
    }
    for s in core.list_seeds(Some(SeedState::Verifying), 1000).await? {
        if !due.ready(&s.seed_id, Instant::now()) {
            continue;
        }
        match verify(side, &s).await {
            Ok((files, repair)) => {
                due.done(&s.seed_id, Duration::ZERO, Instant::now());
                match core.finish_verification(&s.seed_id, &files, &repair).await {
                    Ok(after) => tracing::info!(job = %s.spec.job_name, state = %after.state, "{}", after.state_reason),
                    Err(e) => tracing::warn!(job = %s.spec.job_name, error = %e, "cannot record the verification"),
                }
            }
            Err(e) => {
                let (wait, failures) = due.failed(&s.seed_id, Duration::from_secs(64), Instant::now());
                super::report(
                    "verifier",
                    &format!("verifying {} (next try in {} s)", s.spec.job_name, wait.as_secs()),
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

/// Checks one seed's import container. `Err` when storage could not be read (retry);
/// otherwise every manifest file's finding, and the files to ask for again.
pub async fn verify(side: &AzureSide, seed: &Seed) -> Result<(Vec<VerifiedFile>, Vec<RepairFile>), String> {
    let store = side.accounts.store(&seed.spec.storage_account).map_err(|e| e.to_string())?;
    verify_container(&store, seed).await
}

async fn verify_container(store: &BlobStore, seed: &Seed) -> Result<(Vec<VerifiedFile>, Vec<RepairFile>), String> {
    let container = &seed.spec.container;
    let ask = |path: &str, size: u64, sha256: &str, md5: &str, why: &str| RepairFile {
        path: path.into(),
        size,
        sha256: sha256.into(),
        md5: md5.into(),
        state: "requested".into(),
        detail: why.into(),
        updated_ms: 0,
    };
    // The manifest first: it must hash to the root the source agent registered.
    let manifest = match store.download(container, MANIFEST_BLOB).await {
        Ok(bytes) => match SeedManifest::parse(&bytes, MANIFEST_BLOB) {
            Ok(m) if root_of(&m.files) == seed.spec.manifest_root => Ok(m),
            Ok(_) => Err("its root hash is not the one registered".to_string()),
            Err(e) => Err(format!("it is not a seed manifest: {e}")),
        },
        Err(e) if e.is_not_found() => Err("it is missing".to_string()),
        Err(e) => return Err(format!("container {container}: {e}")),
    };
    let manifest = match manifest {
        Ok(m) => m,
        Err(why) => {
            let detail = format!("the seed manifest {why}");
            let f = VerifiedFile {
                path: MANIFEST_BLOB.into(),
                size: 0,
                status: if why == "it is missing" { "missing" } else { "corrupted" }.into(),
                detail: detail.clone(),
            };
            return Ok((vec![f], vec![ask(MANIFEST_BLOB, 0, "", "", &detail)]));
        }
    };
    let listed: BTreeMap<String, seedship_azure::blob::BlobInfo> = match store.list(container).await {
        Ok(l) => l.into_iter().map(|b| (b.name.clone(), b)).collect(),
        Err(BlobError::Service { status: 404, .. }) => BTreeMap::new(),
        Err(e) => return Err(format!("container {container}: {e}")),
    };
    let mut files = Vec::with_capacity(manifest.files.len());
    let mut repair = Vec::new();
    for f in &manifest.files {
        let (status, detail) = check_file(store, container, f, listed.get(&f.path)).await?;
        if status != "verified" {
            repair.push(ask(&f.path, f.size, &f.sha256, &f.md5, &detail));
        }
        files.push(VerifiedFile { path: f.path.clone(), size: f.size, status: status.into(), detail });
    }
    Ok((files, repair))
}

async fn check_file(
    store: &BlobStore,
    container: &str,
    f: &ManifestFile,
    blob: Option<&seedship_azure::blob::BlobInfo>,
) -> Result<(&'static str, String), String> {
    let Some(b) = blob else {
        return Ok(("missing", "not in the import container".into()));
    };
    if b.size != f.size {
        return Ok(("corrupted", format!("{} bytes, the manifest says {}", b.size, f.size)));
    }
    match &b.md5 {
        Some(m) if hex_of(m) != f.md5 => {
            return Ok(("corrupted", format!("its Content-MD5 is {}, the manifest says {}", hex_of(m), f.md5)));
        }
        None => return Ok(("corrupted", "it has no Content-MD5 (the import did not finish it)".into())),
        _ => {}
    }
    // The data is hashed as it streams in, a range at a time: a pack may be gigabytes, and
    // several seeds are verified at once.
    const RANGE: u64 = 8 << 20;
    let (mut md5, mut sha, mut buf, mut off) = (Md5::new(), Sha256::new(), Vec::new(), 0u64);
    while off < f.size {
        let n = RANGE.min(f.size - off);
        match store.download_range(container, &f.path, off, n, &mut buf).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => return Ok(("missing", "not in the import container".into())),
            Err(e) => return Err(format!("{container}/{}: {e}", f.path)),
        }
        md5.update(&buf);
        sha.update(&buf);
        off += n;
    }
    let (md5, sha) = (hex_of(&md5.finalize()), hex_of(&sha.finalize()));
    if md5 != f.md5 || sha != f.sha256 {
        return Ok(("corrupted", "its data does not hash to the manifest's SHA-256 and MD5 (damaged blocks)".into()));
    }
    Ok(("verified", String::new()))
}
