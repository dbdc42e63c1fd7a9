//! `source-agent backup --online`: an incremental into this server's vault, once its seed is
//! there. The vault's small files (config, keys, index, snapshots) are kept in a local cache;
//! files whose size, time and mode match the file cache of the last backup are not read again
//! (as restic does); chunks the vault's index has are not stored again; new packs, the index
//! and the snapshot (chained to the last one) are uploaded, the snapshot last, and the new
//! recovery point is reported to the coordinator.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use seedship_repo::snapshot::{Snapshot, SnapshotStats};
use seedship_repo::tree::Extent;
use seedship_repo::{Repository, Unlock, layout};
use serde::{Deserialize, Serialize};

use super::pipeline::{self, Progress, Sink};
use super::scan::Scan;

/// What the file cache remembers of one file: enough to tell it has not changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedFile {
    pub size: u64,
    pub mtime_ns: i64,
    pub mode: u32,
    pub extents: Vec<Extent>,
}

/// Path (as scanned) → what was stored for it by the last backup of this repository.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct FileCache {
    pub repository_id: String,
    pub snapshot: String,
    pub files: HashMap<String, CachedFile>,
}

/// `$SEEDSHIP_CACHE/files-<repository id>.json` (default `~/.cache/seedship`).
pub fn file_cache_path(repository_id: &str) -> PathBuf {
    crate::vault::cache_root().join(format!("files-{repository_id}.json"))
}

impl FileCache {
    pub fn load(repository_id: &str) -> FileCache {
        std::fs::read(file_cache_path(repository_id))
            .ok()
            .and_then(|b| serde_json::from_slice::<FileCache>(&b).ok())
            .filter(|c| c.repository_id == repository_id)
            .unwrap_or_default()
    }

    /// Records what `out` stored for each file of `scan` (after a backup).
    pub fn save(repository_id: &str, snapshot: &str, scan: &Scan, out: &pipeline::Output) -> std::io::Result<()> {
        let mut files = HashMap::new();
        for (i, &e) in scan.files.iter().enumerate() {
            let entry = &scan.entries[e];
            if let Some(ext) = out.extents.get(i).cloned().flatten() {
                files.insert(
                    entry.path.to_string_lossy().to_string(),
                    CachedFile {
                        size: entry.meta.size,
                        mtime_ns: entry.meta.mtime_ns,
                        mode: entry.meta.mode,
                        extents: ext,
                    },
                );
            }
        }
        let c = FileCache { repository_id: repository_id.into(), snapshot: snapshot.into(), files };
        let p = file_cache_path(repository_id);
        layout::write_atomic(&p, &serde_json::to_vec(&c).map_err(std::io::Error::other)?)
            .map_err(|e| std::io::Error::other(e.to_string()))
    }
}

/// What an incremental did.
#[derive(Debug, Clone, Default)]
pub struct OnlineOutcome {
    pub snapshot: String,
    pub parent: Option<String>,
    pub files: u64,
    /// Files not read again: unchanged since the last backup.
    pub unchanged_files: u64,
    pub read_bytes: u64,
    pub new_chunks: u64,
    pub new_bytes: u64,
    /// What goes to the vault: new packs, the index, the snapshot.
    pub upload: Vec<String>,
    pub upload_bytes: u64,
    pub elapsed: Duration,
    pub skipped: Vec<super::scan::Skipped>,
    /// Entries backed up without their extended attributes.
    pub xattrs_not_kept: Vec<PathBuf>,
}

/// The local part of an incremental: backs `sources` up into the cache repository at
/// `cache` (which holds the vault's config, keys, index and snapshots), storing only chunks the
/// index does not have. Returns what to upload (paths relative to `cache`).
/// `in_vault` is the set of packs (hex ids) the vault holds, as listed just before: index
/// entries of any other pack are dropped, so their chunks are stored again rather than taken
/// as there. `None` (the in-transit outbox) keeps the packs already in the folder: they are
/// not in the vault yet, and are uploaded with it.
pub fn backup_into_cache(
    cache: &Path,
    unlock: &Unlock,
    sources: &[PathBuf],
    time: String,
    workers: usize,
    in_vault: Option<&HashSet<String>>,
) -> Result<OnlineOutcome, String> {
    let started = Instant::now();
    let repo = Arc::new(Repository::open(cache, unlock).map_err(|e| e.to_string())?);
    if in_vault.is_some() {
        // Leftovers of an interrupted run are not ours to keep: packs are re-made from the sources.
        let _ = std::fs::remove_dir_all(cache.join(layout::DATA_DIR));
    }
    let (mut index, _) = repo.load_index().map_err(|e| e.to_string())?;
    if let Some(present) = in_vault {
        let before = index.blobs.len();
        index.blobs.retain(|_, loc| present.contains(&hex::encode(loc.pack)));
        if index.blobs.len() < before {
            tracing::warn!(
                dropped = before - index.blobs.len(),
                "the vault's index names blobs in packs the vault does not hold; they are stored again"
            );
        }
    }
    let parent = repo.snapshots().map_err(|e| e.to_string())?.into_iter().last().map(|(id, _)| id);
    let stored: HashSet<_> = index.blobs.keys().copied().collect();
    let scan = Scan::run(sources).map_err(|e| e.to_string())?;
    let fc = FileCache::load(&repo.config.id);
    let have = |ext: &[Extent]| {
        ext.iter().all(|x| match x {
            Extent::Data { chunk, .. } => seedship_repo::repo::parse_id(chunk).is_ok_and(|id| stored.contains(&id)),
            Extent::Hole { .. } => true,
        })
    };
    let known: Vec<Option<Vec<Extent>>> = scan
        .files
        .iter()
        .map(|&e| {
            let entry = &scan.entries[e];
            fc.files.get(&entry.path.to_string_lossy().to_string()).and_then(|c| {
                (c.size == entry.meta.size
                    && c.mtime_ns == entry.meta.mtime_ns
                    && c.mode == entry.meta.mode
                    && have(&c.extents))
                .then(|| c.extents.clone())
            })
        })
        .collect();
    let unchanged = known.iter().filter(|k| k.is_some()).count() as u64;
    let progress = Arc::new(Progress::default());
    let mut sink = Sink::new(repo.clone(), stored.clone());
    let out =
        pipeline::run_with(&scan, &repo, &mut sink, &progress, workers.max(1), &known).map_err(|e| e.to_string())?;
    let (root, stats) = super::build_trees(&scan, &out, &mut sink, &progress).map_err(|e| e.to_string())?;
    sink.finish().map_err(|e| e.to_string())?;
    let mut upload = Vec::new();
    for p in &sink.packs {
        index.add_pack(&p.id, &p.entries).map_err(|e| e.to_string())?;
        upload.push(p.path.strip_prefix(cache).unwrap_or(&p.path).to_string_lossy().to_string());
    }
    for name in repo.write_index(&index).map_err(|e| e.to_string())? {
        upload.push(format!("{}/{name}", layout::INDEX_DIR));
    }
    let snap = Snapshot {
        version: 1,
        time,
        hostname: seedship_proto::agent::hostname(),
        paths: sources.iter().map(|p| p.display().to_string()).collect(),
        tree: hex::encode(root),
        parent: parent.clone(),
        stats: SnapshotStats { skipped: (scan.skipped.len() + out.skipped.len()) as u64, ..stats },
    };
    let snapshot = repo.write_snapshot(&snap).map_err(|e| e.to_string())?;
    upload.push(format!("{}/{snapshot}", layout::SNAPSHOTS_DIR));
    let upload_bytes = upload.iter().filter_map(|f| std::fs::metadata(cache.join(f)).ok()).map(|m| m.len()).sum();
    if let Err(e) = FileCache::save(&repo.config.id, &snapshot, &scan, &out) {
        tracing::warn!(error = %e, "the file cache was not saved; the next backup reads every file");
    }
    use std::sync::atomic::Ordering;
    let mut skipped = scan.skipped.clone();
    skipped.extend(out.skipped.iter().cloned());
    Ok(OnlineOutcome {
        snapshot,
        parent,
        files: scan.files.len() as u64,
        unchanged_files: unchanged,
        read_bytes: progress.bytes.load(Ordering::Relaxed),
        new_chunks: out.new_chunks,
        new_bytes: out.new_bytes,
        upload,
        upload_bytes,
        elapsed: started.elapsed(),
        skipped,
        xattrs_not_kept: scan.xattrs_not_kept.clone(),
    })
}
