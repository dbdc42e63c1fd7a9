//! This server's vault, through the coordinator: it hands out a short-lived SAS token for the
//! server's own vault container (never the account key), and the agent keeps a local copy
//! (cache) of the vault's files to restore from, checked against each blob's MD5.

use std::path::{Path, PathBuf};

use md5::{Digest, Md5};
use seedship_azure::blob::{BlobAuth, BlobStore};
use seedship_proto::client::Conn;
use seedship_proto::pb;

/// A vault as the coordinator gave it.
pub struct VaultAccess {
    pub store: BlobStore,
    pub container: String,
    pub points: Vec<pb::RecoveryPoint>,
}

/// Asks the coordinator for this server's vault (read and list; with `write`, also create
/// and write).
pub async fn access(conn: &Conn, write: bool) -> Result<VaultAccess, String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let r = seedship_proto::client::seeds(conn.clone())
        .get_vault(pb::GetVaultRequest { write })
        .await
        .map_err(|e| format!("the coordinator gave no vault: {}", e.message()))?
        .into_inner();
    let store = BlobStore::new(&r.blob_endpoint, BlobAuth::Sas(r.sas)).map_err(|e| e.to_string())?;
    Ok(VaultAccess { store, container: r.container, points: r.points })
}

/// The agent's cache folder: `$SEEDSHIP_CACHE`, or `~/.cache/seedship`.
pub fn cache_root() -> PathBuf {
    if let Some(c) = std::env::var_os("SEEDSHIP_CACHE") {
        return PathBuf::from(c);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache/seedship")
}

/// Default cache folder of a vault.
pub fn default_cache(container: &str) -> PathBuf {
    cache_root().join(container)
}

/// What a sync did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncStats {
    pub files: usize,
    pub downloaded: usize,
    pub bytes: u64,
}

/// Which of the vault's files a sync takes: everything (for a restore), or the small ones an
/// incremental needs (config, keys, index, snapshots; not the data packs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncWhat {
    All,
    Metadata,
}

/// An incremental into this server's vault: the vault's small files are synced into `cache`,
/// the backup runs there (unchanged files not read, known chunks not stored), the new packs,
/// index and snapshot are uploaded (the snapshot last), and the recovery point is reported.
pub async fn incremental(
    conn: &Conn,
    cache: Option<PathBuf>,
    unlock: seedship_repo::Unlock,
    sources: Vec<PathBuf>,
    time: String,
    workers: usize,
) -> Result<crate::backup::online::OnlineOutcome, String> {
    let v = access(conn, true).await?;
    let cache = cache.unwrap_or_else(|| default_cache(&v.container));
    sync_what(&v, &cache, SyncWhat::Metadata).await?;
    let c2 = cache.clone();
    let out = tokio::task::spawn_blocking(move || {
        crate::backup::online::backup_into_cache(&c2, &unlock, &sources, time, workers)
    })
    .await
    .map_err(|e| e.to_string())??;
    for rel in &out.upload {
        let path = cache.join(rel);
        let data = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        put(&v, rel, data).await?;
    }
    // The packs are in the vault now; the cache keeps only the small files.
    let _ = std::fs::remove_dir_all(cache.join(seedship_repo::layout::DATA_DIR));
    seedship_proto::client::seeds(conn.clone())
        .report_recovery_point(pb::ReportRecoveryPointRequest {
            request_id: seedship_proto::client::new_request_id(),
            snapshot_id: out.snapshot.clone(),
        })
        .await
        .map_err(|e| {
            format!("the incremental is in the vault, but the coordinator did not record it: {}", e.message())
        })?;
    Ok(out)
}

/// Uploads one file with Put Block and Put Block List, the blob's MD5 set.
async fn put(v: &VaultAccess, name: &str, data: Vec<u8>) -> Result<(), String> {
    const BLOCK: usize = 4 << 20;
    let md5 = Md5::digest(&data).to_vec();
    let mut ids = Vec::new();
    let chunks: Vec<&[u8]> = if data.is_empty() { vec![&[][..]] } else { data.chunks(BLOCK).collect() };
    for (i, c) in chunks.into_iter().enumerate() {
        let id = format!("{:020}", i * BLOCK).into_bytes();
        v.store.stage_block(&v.container, name, &id, c.to_vec()).await.map_err(|e| format!("{name}: {e}"))?;
        ids.push(id);
    }
    v.store.commit(&v.container, name, ids, Some(md5)).await.map_err(|e| format!("{name}: {e}"))
}

/// Brings `cache` up to date with the vault's repository files: each blob missing locally, or
/// with another size or MD5, is downloaded, checked against the blob's MD5 and written
/// atomically. The seed's own records (`seeds/`) are left out.
pub async fn sync(v: &VaultAccess, cache: &Path) -> Result<SyncStats, String> {
    sync_what(v, cache, SyncWhat::All).await
}

pub async fn sync_what(v: &VaultAccess, cache: &Path, what: SyncWhat) -> Result<SyncStats, String> {
    let blobs = v.store.list(&v.container).await.map_err(|e| format!("listing the vault: {e}"))?;
    let mut st = SyncStats::default();
    let wanted = |name: &str| !name.starts_with("seeds/") && (what == SyncWhat::All || !name.starts_with("data/"));
    for b in blobs.iter().filter(|b| wanted(&b.name)) {
        if b.name.contains("..") || b.name.starts_with('/') {
            return Err(format!("the vault holds an unsafe name {:?}", b.name));
        }
        st.files += 1;
        let local = cache.join(&b.name);
        if let Ok(data) = std::fs::read(&local)
            && data.len() as u64 == b.size
            && b.md5.as_deref().is_none_or(|m| Md5::digest(&data).as_slice() == m)
        {
            continue;
        }
        let data = v.store.download(&v.container, &b.name).await.map_err(|e| format!("{}: {e}", b.name))?;
        if let Some(m) = &b.md5
            && Md5::digest(&data).as_slice() != m.as_slice()
        {
            return Err(format!("{} from the vault does not match its MD5 (damaged in storage or in transit)", b.name));
        }
        seedship_repo::layout::write_atomic(&local, &data).map_err(|e| e.to_string())?;
        st.downloaded += 1;
        st.bytes += data.len() as u64;
    }
    Ok(st)
}

/// Deletes a staging location whose seed is in the vault (the coordinator says "seeded"),
/// and has the deletion recorded. Refused before, naming the seed's state.
pub async fn delete_staging(conn: &Conn, staging: &Path) -> Result<(String, u64), String> {
    let sf = crate::seedfile::SeedFile::load(staging)?
        .ok_or_else(|| format!("{} is not a staging location (no seed.json)", staging.display()))?;
    let root =
        sf.completed.clone().ok_or_else(|| format!("the staging set in {} was never completed", staging.display()))?;
    let seeds = crate::status(conn).await.map_err(|e| e.message().to_string())?;
    let seed = seeds.iter().find(|s| s.job_name == sf.target.job_name && s.manifest_root == root).ok_or_else(|| {
        format!("the coordinator has no seed {} from this server with this staging set", sf.target.job_name)
    })?;
    if seed.state != pb::SeedState::Seeded as i32 {
        return Err(format!(
            "seed {} is not in the vault yet ({}); the staging location is kept until it is",
            seed.job_name, seed.state_reason
        ));
    }
    let bytes: u64 = seedship_repo::layout::list_files(staging)
        .map_err(|e| e.to_string())?
        .iter()
        .filter_map(|f| std::fs::metadata(staging.join(f)).ok())
        .map(|m| m.len())
        .sum();
    std::fs::remove_dir_all(staging).map_err(|e| format!("{}: {e}", staging.display()))?;
    seedship_proto::client::seeds(conn.clone())
        .report_staging_deleted(pb::ReportStagingDeletedRequest {
            request_id: seedship_proto::client::new_request_id(),
            seed_id: seed.seed_id.clone(),
            bytes,
        })
        .await
        .map_err(|e| format!("deleted, but the coordinator did not record it: {}", e.message()))?;
    Ok((seed.job_name.clone(), bytes))
}
