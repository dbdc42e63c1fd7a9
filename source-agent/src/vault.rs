//! This server's vault, through the coordinator: it hands out a short-lived SAS token for the
//! server's own vault container (never the account key). The agent keeps a local copy (cache)
//! of the vault's small files, checked against each blob's MD5; a restore reads the packs it
//! needs straight from the vault.

use std::path::{Path, PathBuf};

use md5::{Digest, Md5};
use seedship_azure::blob::{BlobAuth, BlobStore};
use seedship_proto::client::Conn;
use seedship_proto::pb;

/// A vault as the coordinator gave it.
pub struct VaultAccess {
    pub store: BlobStore,
    pub container: String,
    /// This server's folder in a group's container ("" for a vault of its own).
    pub prefix: String,
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
    if !(r.prefix.is_empty() || (r.prefix.ends_with('/') && !r.prefix.contains(".."))) {
        return Err(format!("the coordinator gave an unusable vault folder {:?}", r.prefix));
    }
    Ok(VaultAccess { store, container: r.container, prefix: r.prefix, points: r.points })
}

impl VaultAccess {
    /// `container`, or `container/folder` in a group's vault.
    pub fn name(&self) -> String {
        format!("{}/{}", self.container, self.prefix).trim_end_matches('/').to_string()
    }
}

/// The agent's cache folder: `$SEEDSHIP_CACHE`, or `~/.cache/seedship`.
pub fn cache_root() -> PathBuf {
    if let Some(c) = std::env::var_os("SEEDSHIP_CACHE") {
        return PathBuf::from(c);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache/seedship")
}

/// Default cache folder of a vault (its [`VaultAccess::name`]).
pub fn default_cache(vault: &str) -> PathBuf {
    cache_root().join(vault)
}

/// What a sync did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncStats {
    pub files: usize,
    pub downloaded: usize,
    pub bytes: u64,
    /// Local small files the vault does not hold (left by an interrupted run), removed.
    pub removed: usize,
    /// The vault's packs: hex id → (size, MD5 hex).
    pub packs: std::collections::HashMap<String, (u64, Option<String>)>,
}

/// The packs in this server's vault: hex id → (size, MD5 hex).
async fn pack_listing(v: &VaultAccess) -> Result<std::collections::HashMap<String, (u64, Option<String>)>, String> {
    let dir = format!("{}{}/", v.prefix, seedship_repo::layout::DATA_DIR);
    Ok(v.store
        .list(&v.container)
        .await
        .map_err(|e| format!("listing the vault: {e}"))?
        .into_iter()
        .filter(|b| b.name.starts_with(&dir))
        .filter_map(|b| {
            let id = b.name.rsplit('/').next()?.to_string();
            Some((id, (b.size, b.md5.as_deref().map(hex::encode))))
        })
        .collect())
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
    staging: Option<PathBuf>,
) -> Result<Incremental, String> {
    let v = match access(conn, true).await {
        Ok(v) => v,
        // No vault yet: while the seed travels, the incremental goes to the outbox.
        Err(e) if e.contains("has no vault yet") => {
            return in_transit(conn, unlock, sources, time, workers, staging).await;
        }
        Err(e) => return Err(e),
    };
    let cache = cache.unwrap_or_else(|| default_cache(&v.name()));
    let sent = flush_outbox(conn, &v).await?;
    // What the vault holds comes from the vault: its small files (and none left over from an
    // interrupted run), and the packs it lists.
    let synced = sync(&v, &cache).await?;
    let c2 = cache.clone();
    let out = tokio::task::spawn_blocking(move || {
        let present: std::collections::HashSet<String> = synced.packs.into_keys().collect();
        crate::backup::online::backup_into_cache(&c2, &unlock, &sources, time, workers, Some(&present))
    })
    .await
    .map_err(|e| e.to_string())??;
    crash_point("before-upload");
    upload_and_report(conn, &v, &cache, &out.upload, std::slice::from_ref(&out.snapshot)).await?;
    // The packs are in the vault now; the cache keeps only the small files.
    let _ = std::fs::remove_dir_all(cache.join(seedship_repo::layout::DATA_DIR));
    Ok(Incremental { out, pending: false, sent_from_outbox: sent })
}

/// Tests: failpoint `incremental-<point>` (`SEEDSHIP_FAILPOINTS`, builds with the
/// `failpoints` feature) can end the process at once there, as a crash would (nothing after it
/// runs; what was written before stays).
fn crash_point(point: &str) {
    seedship_telemetry::failpoint::eval(&format!("incremental-{point}"));
}

/// What `backup` did online.
pub struct Incremental {
    pub out: crate::backup::online::OnlineOutcome,
    /// Written to the outbox (the seed is still in transit), not to the vault.
    pub pending: bool,
    /// Recovery points from the outbox sent first (written while the seed travelled).
    pub sent_from_outbox: Vec<String>,
}

/// Uploads `files` (relative to `dir`) into the vault, then reports each of `snapshots` as a
/// recovery point. The packs go first and are checked in the vault (size and MD5, from a
/// fresh listing; one that did not arrive whole is sent again once) before the index and then
/// the snapshots are written: a snapshot in the vault never names a pack that is not there.
async fn upload_and_report(
    conn: &Conn,
    v: &VaultAccess,
    dir: &Path,
    files: &[String],
    snapshots: &[String],
) -> Result<(), String> {
    let data_dir = format!("{}/", seedship_repo::layout::DATA_DIR);
    let (packs, rest): (Vec<&String>, Vec<&String>) = files.iter().partition(|f| f.starts_with(&data_dir));
    let (snaps, rest): (Vec<&String>, Vec<&String>) = rest.into_iter().partition(|f| f.starts_with("snapshots/"));
    let read = |rel: &str| {
        let path = dir.join(rel);
        std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))
    };
    let mut sent = Vec::with_capacity(packs.len());
    for rel in &packs {
        let data = read(rel)?;
        let (size, md5) = (data.len() as u64, Md5::digest(&data).to_vec());
        put(v, rel, data).await?;
        sent.push(pb::PackRef { name: rel.to_string(), size, md5: hex::encode(&md5) });
    }
    for attempt in 0..2 {
        let listed = pack_listing(v).await?;
        let short: Vec<&pb::PackRef> = sent
            .iter()
            .filter(|p| {
                let id = p.name.rsplit('/').next().unwrap_or_default();
                listed.get(id).is_none_or(|(size, md5)| *size != p.size || md5.as_deref() != Some(p.md5.as_str()))
            })
            .collect();
        if short.is_empty() {
            break;
        }
        if attempt == 1 {
            return Err(format!(
                "{} of {} new pack(s) did not arrive in the vault whole (first: {}); nothing was recorded: run the backup again",
                short.len(),
                sent.len(),
                short[0].name
            ));
        }
        tracing::warn!(packs = short.len(), "packs missing or different in the vault after upload; sending them again");
        for p in short {
            put(v, &p.name, read(&p.name)?).await?;
        }
    }
    crash_point("after-packs");
    for rel in rest.into_iter().chain(snaps) {
        put(v, rel, read(rel)?).await?;
    }
    crash_point("before-report");
    // The index now in the vault supersedes the older index files: the last report names it.
    let index: Vec<String> = files
        .iter()
        .filter_map(|f| f.strip_prefix(&format!("{}/", seedship_repo::layout::INDEX_DIR)))
        .map(str::to_string)
        .collect();
    for (i, id) in snapshots.iter().enumerate() {
        seedship_proto::client::seeds(conn.clone())
            .report_recovery_point(pb::ReportRecoveryPointRequest {
                request_id: seedship_proto::client::new_request_id(),
                snapshot_id: id.clone(),
                index_files: if i + 1 == snapshots.len() { index.clone() } else { Vec::new() },
                packs: sent.clone(),
            })
            .await
            .map_err(|e| {
                format!("snapshot {id} is in the vault, but the coordinator did not record it: {}", e.message())
            })?;
    }
    Ok(())
}

/// The outbox of incrementals written while the seed travels: a repository of the staging
/// set's small files plus the new packs, under the agent's cache.
fn outbox_dir() -> PathBuf {
    cache_root().join("outbox")
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Outbox {
    /// Files to upload (relative to the outbox), in order.
    files: Vec<String>,
    /// Snapshots to report, oldest first.
    snapshots: Vec<String>,
}

fn load_outbox(dir: &Path) -> Outbox {
    std::fs::read(dir.join("outbox.json")).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
}

/// An incremental while the seed is in transit: chained to the seed's snapshot in the staging
/// set, written to the outbox, uploaded once the vault is seeded.
async fn in_transit(
    conn: &Conn,
    unlock: seedship_repo::Unlock,
    sources: Vec<PathBuf>,
    time: String,
    workers: usize,
    staging: Option<PathBuf>,
) -> Result<Incremental, String> {
    let seeds = crate::status(conn).await.map_err(|e| e.message().to_string())?;
    let live = |st: i32| {
        ![pb::SeedState::Seeded, pb::SeedState::Failed, pb::SeedState::Cancelled].iter().any(|s| *s as i32 == st)
    };
    let seed = seeds
        .iter()
        .find(|s| live(s.state))
        .ok_or("this server has no vault and no seed on its way to one; stage a seed with `backup --offline`")?;
    let staging = staging.unwrap_or_else(|| PathBuf::from(&seed.staging_location));
    let dir = outbox_dir();
    if !dir.join(seedship_repo::layout::CONFIG).exists() {
        // The staging set's small files start the outbox repository (the staging set itself
        // stays as it was shipped).
        for rel in seedship_repo::layout::list_files(&staging).map_err(|e| e.to_string())? {
            let small = rel == seedship_repo::layout::CONFIG
                || rel.starts_with("keys/")
                || rel.starts_with("index/")
                || rel.starts_with("snapshots/");
            if small {
                let src = staging.join(&rel);
                let data = std::fs::read(&src).map_err(|e| format!("{}: {e}", src.display()))?;
                write_small(&dir.join(&rel), &data)?;
            }
        }
        if !dir.join(seedship_repo::layout::CONFIG).exists() {
            return Err(format!(
                "the staging location {} of seed {} is not here; give --staging",
                staging.display(),
                seed.job_name
            ));
        }
    }
    let d2 = dir.clone();
    let out = tokio::task::spawn_blocking(move || {
        crate::backup::online::backup_into_cache(&d2, &unlock, &sources, time, workers, None)
    })
    .await
    .map_err(|e| e.to_string())??;
    let mut ob = load_outbox(&dir);
    for f in &out.upload {
        if !ob.files.contains(f) {
            ob.files.push(f.clone());
        }
    }
    ob.snapshots.push(out.snapshot.clone());
    let json = serde_json::to_vec(&ob).map_err(|e| e.to_string())?;
    seedship_repo::layout::write_atomic(&dir.join("outbox.json"), &json).map_err(|e| e.to_string())?;
    Ok(Incremental { out, pending: true, sent_from_outbox: Vec::new() })
}

/// Sends what the outbox holds (if anything) into the vault, then empties it.
async fn flush_outbox(conn: &Conn, v: &VaultAccess) -> Result<Vec<String>, String> {
    let dir = outbox_dir();
    let ob = load_outbox(&dir);
    if ob.snapshots.is_empty() {
        return Ok(Vec::new());
    }
    // Everything the outbox holds goes, not only what its record lists: a run interrupted
    // before it updated the record left packs that later snapshots of the outbox use.
    let files: Vec<String> = seedship_repo::layout::list_files(&dir)
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|f| ["data/", "index/", "snapshots/"].iter().any(|d| f.starts_with(d)))
        .collect();
    upload_and_report(conn, v, &dir, &files, &ob.snapshots).await?;
    std::fs::remove_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(ob.snapshots)
}

/// Uploads one file with Put Block and Put Block List, the blob's MD5 set.
async fn put(v: &VaultAccess, name: &str, data: Vec<u8>) -> Result<(), String> {
    const BLOCK: usize = 4 << 20;
    let name = &format!("{}{name}", v.prefix);
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

/// Writes one of a repository's small files; the key file only its owner may read.
fn write_small(path: &Path, data: &[u8]) -> Result<(), String> {
    let in_keys = path.parent().and_then(|p| p.file_name()).is_some_and(|n| n == seedship_repo::layout::KEYS_DIR);
    if in_keys {
        seedship_repo::layout::write_atomic_private(path, data)
    } else {
        seedship_repo::layout::write_atomic(path, data)
    }
    .map_err(|e| e.to_string())
}

/// Brings `cache` up to date with the vault's small files (config, keys, index, snapshots):
/// each one missing locally, or with another size or MD5, is downloaded, checked against the
/// blob's MD5 and written atomically. The data packs stay in the vault (a restore reads what
/// it needs of them, [`VaultPacks`]); the seed's own records (`seeds/`) are left out.
pub async fn sync(v: &VaultAccess, cache: &Path) -> Result<SyncStats, String> {
    /// Downloads at once (the storage service serves them in parallel; MD5 checks and writes
    /// run on the blocking pool).
    const PARALLEL: usize = 4;
    let blobs = v.store.list(&v.container).await.map_err(|e| format!("listing the vault: {e}"))?;
    let mut st = SyncStats::default();
    let wanted = |name: &str| !name.starts_with("seeds/") && !name.starts_with("data/");
    let mut todo = Vec::new();
    let mut in_vault = std::collections::HashSet::new();
    // In a group's vault, only this server's folder.
    let mine: Vec<(String, seedship_azure::blob::BlobInfo)> = blobs
        .into_iter()
        .filter_map(|b| b.name.strip_prefix(&v.prefix).map(str::to_string).map(|rel| (rel, b)))
        .collect();
    for (rel, b) in &mine {
        if let Some(id) = rel.strip_prefix("data/").and_then(|r| r.rsplit('/').next()) {
            st.packs.insert(id.to_string(), (b.size, b.md5.as_deref().map(hex::encode)));
        }
    }
    for (rel, b) in mine.into_iter().filter(|(rel, _)| wanted(rel)) {
        in_vault.insert(rel.clone());
        if let Err(why) = seedship_repo::manifest::check_path(&rel) {
            return Err(format!("the vault holds an unsafe name {:?}: {why}", b.name));
        }
        st.files += 1;
        let local = cache.join(&rel);
        let same = std::fs::metadata(&local).is_ok_and(|m| m.len() == b.size)
            && std::fs::read(&local).is_ok_and(|d| b.md5.as_deref().is_none_or(|m| Md5::digest(&d).as_slice() == m));
        if !same {
            todo.push((b, local));
        }
    }
    let mut running = tokio::task::JoinSet::new();
    let mut todo = todo.into_iter();
    loop {
        while running.len() < PARALLEL {
            let Some((b, local)) = todo.next() else { break };
            let (store, container) = (v.store.clone(), v.container.clone());
            running.spawn(async move {
                let data = store.download(&container, &b.name).await.map_err(|e| format!("{}: {e}", b.name))?;
                tokio::task::spawn_blocking(move || {
                    if let Some(m) = &b.md5
                        && Md5::digest(&data).as_slice() != m.as_slice()
                    {
                        return Err(format!(
                            "{} from the vault does not match its MD5 (damaged in storage or in transit)",
                            b.name
                        ));
                    }
                    write_small(&local, &data)?;
                    Ok(data.len() as u64)
                })
                .await
                .map_err(|e| e.to_string())?
            });
        }
        let Some(done) = running.join_next().await else { break };
        let n = done.map_err(|e| e.to_string())??;
        st.downloaded += 1;
        st.bytes += n;
    }
    // The cache mirrors the vault: an index or snapshot the vault does not hold (written by a
    // run that was interrupted before its upload finished) would make the next backup take
    // chunks as stored that are not, and chain to a snapshot nobody can restore.
    for dir in [seedship_repo::layout::INDEX_DIR, seedship_repo::layout::SNAPSHOTS_DIR] {
        let Ok(rd) = std::fs::read_dir(cache.join(dir)) else { continue };
        for e in rd.flatten() {
            let rel = format!("{dir}/{}", e.file_name().to_string_lossy());
            if !in_vault.contains(&rel) {
                std::fs::remove_file(e.path()).map_err(|err| format!("{}: {err}", e.path().display()))?;
                st.removed += 1;
            }
        }
    }
    if st.removed > 0 {
        tracing::warn!(
            removed = st.removed,
            "the cache held index or snapshot files the vault does not (an interrupted backup); removed"
        );
    }
    Ok(st)
}

/// The vault's packs, for a restore: each read is one ranged download (split into parallel
/// requests when large), made from the restore's own threads.
pub struct VaultPacks {
    pub store: BlobStore,
    pub container: String,
    /// The server's folder in a group's container ("" for a vault of its own).
    pub prefix: String,
    pub rt: tokio::runtime::Handle,
    /// Packs read at once.
    pub parallel: usize,
}

impl seedship_repo::restore::PackSource for VaultPacks {
    fn read(&self, pack: &str, offset: u64, len: u64, buf: &mut Vec<u8>) -> seedship_repo::Result<()> {
        let name =
            format!("{}{}/{}/{pack}", self.prefix, seedship_repo::layout::DATA_DIR, pack.get(..2).unwrap_or(pack));
        self.rt
            .block_on(self.store.download_range(&self.container, &name, offset, len, buf))
            .map_err(|e| seedship_repo::RepoError::Invalid(format!("reading {name} from the vault: {e}")))
    }

    fn parallel(&self) -> usize {
        self.parallel
    }
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
