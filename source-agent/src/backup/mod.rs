//! `source-agent backup --offline`: a full backup of the sources into a staging location, as
//! a repository plus its seed manifest.
//!
//! Crash safety: every file is written to a temporary name, fsynced and renamed; the manifest
//! comes last. A re-run after a crash takes the lock over from the dead process, deletes
//! temporary files, keeps every complete pack (its blobs are not written again), and writes the
//! same staging set an uninterrupted run would have: the same packs, index, snapshot and
//! manifest root.

pub mod chunker;
pub mod online;
pub mod pipeline;
pub mod progress;
pub mod scan;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use seedship_repo::crypto::Kind;
use seedship_repo::keyfile::KdfParams;
use seedship_repo::layout;
use seedship_repo::manifest::{ManifestFile, SeedManifest, hash_file};
use seedship_repo::snapshot::{Snapshot, SnapshotStats};
use seedship_repo::tree::{Extent, Node, NodeKind, Tree};
use seedship_repo::{CreateOptions, RepoError, Repository, Unlock};

use crate::seedfile::{SeedFile, SeedTarget};
use pipeline::{Progress, Sink};
use scan::{Scan, Skipped};

/// What the user asked for.
#[derive(Debug, Clone)]
pub struct BackupRequest {
    pub sources: Vec<PathBuf>,
    pub staging: PathBuf,
    pub target: SeedTarget,
    pub passphrase: String,
    pub compression_level: i32,
    /// Snapshot time (RFC 3339); default now.
    pub time: Option<String>,
    pub workers: usize,
    pub quiet: bool,
    pub kdf: KdfParams,
    pub pack_target_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error(transparent)]
    Scan(#[from] scan::ScanError),
    #[error("another backup (pid {0}) is writing this staging location; wait for it or stop it")]
    Busy(u32),
    #[error("{staging} holds the seed of job {other:?}, not {wanted:?}; use another staging location")]
    OtherSeed { staging: PathBuf, other: String, wanted: String },
    #[error("{staging} holds a backup of other sources ({other}); use another staging location")]
    OtherSources { staging: PathBuf, other: String },
    #[error("{staging} holds a seedship repository that is not a staged seed (no seed.json); use an empty directory")]
    Foreign { staging: PathBuf },
    #[error(
        "the staging location is full while writing {path}; about {needed} more is needed. Free space and run the same command again: it resumes"
    )]
    NoSpace { path: PathBuf, needed: String },
    #[error("{0}")]
    Invalid(String),
}

/// What a backup did.
#[derive(Debug, Clone)]
pub struct BackupOutcome {
    pub manifest: SeedManifest,
    pub snapshot: String,
    /// The paper recovery key, when this run created the repository.
    pub recovery_key: Option<String>,
    pub already_complete: bool,
    pub resumed_packs: usize,
    pub files: u64,
    pub dirs: u64,
    pub source_bytes: u64,
    pub read_bytes: u64,
    pub new_bytes: u64,
    pub stored_bytes: u64,
    pub chunks: u64,
    pub new_chunks: u64,
    pub packs: usize,
    pub elapsed: Duration,
    pub skipped: Vec<Skipped>,
    /// Entries backed up without their extended attributes (ACLs, capabilities, labels).
    pub xattrs_not_kept: Vec<PathBuf>,
}

/// What a summary says of extended attributes not kept: how many, and a few of them.
pub fn xattrs_line(paths: &[PathBuf]) -> Option<String> {
    if paths.is_empty() {
        return None;
    }
    let some: Vec<String> = paths.iter().take(3).map(|p| p.display().to_string()).collect();
    Some(format!(
        "{} entr{} with extended attributes (POSIX ACLs, file capabilities, SELinux labels, user attributes): backed up WITHOUT them; this version does not keep them (e.g. {})",
        paths.len(),
        if paths.len() == 1 { "y" } else { "ies" },
        some.join(", ")
    ))
}

/// Exclusive use of a staging location; a lock left by a dead process is taken over.
struct Lock(PathBuf);

impl Lock {
    fn take(staging: &Path) -> Result<Lock, BackupError> {
        let p = staging.join(layout::LOCK_FILE);
        for _ in 0..2 {
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&p) {
                Ok(mut f) => {
                    use std::io::Write;
                    let _ = write!(f, "{}", std::process::id());
                    return Ok(Lock(p));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let pid: u32 = std::fs::read_to_string(&p).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
                    if pid != 0 && pid != std::process::id() && Path::new(&format!("/proc/{pid}")).exists() {
                        return Err(BackupError::Busy(pid));
                    }
                    tracing::info!(pid, "taking over the lock of a backup that is no longer running");
                    std::fs::remove_file(&p).map_err(|e| RepoError::io(&p, e))?;
                }
                Err(e) => return Err(RepoError::io(&p, e).into()),
            }
        }
        Err(BackupError::Invalid(format!("cannot take the lock {}", p.display())))
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

pub fn now_rfc3339() -> String {
    let t = time_now();
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

fn time_now() -> time::OffsetDateTime {
    let t = time::OffsetDateTime::now_utc();
    t.replace_nanosecond(0).unwrap_or(t)
}

/// Opens or creates the repository in the staging location, checking it belongs to this seed.
fn prepare(req: &BackupRequest) -> Result<(Repository, SeedFile, Option<String>), BackupError> {
    let staging = &req.staging;
    let existing = SeedFile::load(staging).map_err(BackupError::Invalid)?;
    if let Some(sf) = &existing {
        if sf.target.job_name != req.target.job_name {
            return Err(BackupError::OtherSeed {
                staging: staging.clone(),
                other: sf.target.job_name.clone(),
                wanted: req.target.job_name.clone(),
            });
        }
        if sf.sources != req.sources {
            let other = sf.sources.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
            return Err(BackupError::OtherSources { staging: staging.clone(), other });
        }
    }
    let unlock = Unlock::Passphrase(req.passphrase.clone());
    let (repo, paper) = if seedship_repo::repo::exists(staging) {
        if existing.is_none() {
            return Err(BackupError::Foreign { staging: staging.clone() });
        }
        (Repository::open(staging, &unlock)?, None)
    } else {
        let opts = CreateOptions {
            compression_level: req.compression_level,
            kdf: req.kdf,
            pack_target_bytes: req.pack_target_bytes,
        };
        let (r, p) = Repository::create(staging, &req.passphrase, &opts)?;
        (r, Some(p))
    };
    let sf = match existing {
        Some(mut sf) => {
            if sf.repository_id != repo.config.id {
                return Err(BackupError::Foreign { staging: staging.clone() });
            }
            sf.target = req.target.clone();
            sf
        }
        None => SeedFile {
            version: 1,
            target: req.target.clone(),
            sources: req.sources.clone(),
            time: req.time.clone().unwrap_or_else(now_rfc3339),
            repository_id: repo.config.id.clone(),
            completed: None,
            registered: None,
        },
    };
    sf.save(staging)?;
    Ok((repo, sf, paper))
}

/// Runs (or resumes, or confirms) the offline backup.
pub fn run(req: &BackupRequest) -> Result<BackupOutcome, BackupError> {
    let started = Instant::now();
    layout::create_dir_all(&req.staging)?;
    let _lock = Lock::take(&req.staging)?;
    let (repo, mut sf, recovery_key) = prepare(req)?;
    let repo = Arc::new(repo);

    if let (Some(done), Ok(m)) = (&sf.completed, SeedManifest::load(&req.staging))
        && &m.root == done
    {
        return Ok(BackupOutcome {
            snapshot: String::new(),
            recovery_key,
            already_complete: true,
            resumed_packs: 0,
            files: 0,
            dirs: 0,
            source_bytes: 0,
            read_bytes: 0,
            new_bytes: 0,
            stored_bytes: m.total_bytes(),
            chunks: 0,
            new_chunks: 0,
            packs: m.files.iter().filter(|f| f.path.starts_with("data/")).count(),
            elapsed: started.elapsed(),
            skipped: Vec::new(),
            xattrs_not_kept: Vec::new(),
            manifest: m,
        });
    }

    let removed = layout::remove_tmp_files(&req.staging)?;
    let (mut index, resumed) = repo.load_index()?;
    if removed > 0 || !resumed.is_empty() {
        tracing::info!(
            temporary_files_removed = removed,
            complete_packs_kept = resumed.len(),
            "resuming an interrupted backup"
        );
    }
    let stored: HashSet<_> = index.blobs.keys().copied().collect();

    tracing::debug!(ms = started.elapsed().as_millis() as u64, "phase: repository open, index loaded");
    let scan = Scan::run(&req.sources)?;
    tracing::debug!(ms = started.elapsed().as_millis() as u64, files = scan.files.len(), "phase: scan done");
    let progress = Arc::new(Progress::default());
    let display = progress::Display::start(progress.clone(), scan.files.len() as u64, scan.total_bytes, req.quiet);
    let mut sink = Sink::new(repo.clone(), stored);
    let result = pipeline::run(&scan, &repo, &mut sink, &progress, req.workers.max(1));
    let out = match result {
        Ok(o) => o,
        Err(e) => {
            display.stop();
            return Err(no_space(e, &scan, &progress, req.pack_target_bytes));
        }
    };
    tracing::debug!(ms = started.elapsed().as_millis() as u64, "phase: data written");
    let room = |e| no_space(e, &scan, &progress, req.pack_target_bytes);
    let (root, stats) = build_trees(&scan, &out, &mut sink, &progress).map_err(room)?;
    sink.finish().map_err(room)?;
    display.stop();

    tracing::debug!(ms = started.elapsed().as_millis() as u64, "phase: trees written, packs closed");
    for p in &sink.packs {
        index.add_pack(&p.id, &p.entries)?;
    }
    repo.write_index(&index)?;
    let snap = Snapshot {
        version: 1,
        time: sf.time.clone(),
        hostname: seedship_proto::agent::hostname(),
        paths: req.sources.iter().map(|p| p.display().to_string()).collect(),
        tree: hex::encode(root),
        parent: None,
        stats: SnapshotStats { skipped: (scan.skipped.len() + out.skipped.len()) as u64, ..stats.clone() },
    };
    let snapshot = repo.write_snapshot(&snap)?;
    // The next backup (an incremental into the vault) does not read unchanged files again.
    if let Err(e) = online::FileCache::save(&repo.config.id, &snapshot, &scan, &out) {
        tracing::warn!(error = %e, "the file cache was not saved; the first incremental reads every file");
    }

    let known: HashMap<String, (u64, String, String)> = sink
        .packs
        .iter()
        .map(|p| {
            let rel = p.path.strip_prefix(&req.staging).unwrap_or(&p.path).to_string_lossy().to_string();
            (rel, (p.size, p.sha256.clone(), p.md5.clone()))
        })
        .collect();
    let mut files = Vec::new();
    for rel in layout::list_files(&req.staging)? {
        if !layout::is_staging_file(&rel) {
            continue;
        }
        let (size, sha256, md5) = match known.get(&rel) {
            Some(k) => k.clone(),
            None => hash_file(&req.staging.join(&rel))?,
        };
        files.push(ManifestFile { path: rel, size, sha256, md5 });
    }
    tracing::info!(
        ms = started.elapsed().as_millis() as u64,
        "phase: index and snapshot written, staging files hashed"
    );
    let manifest = SeedManifest::new(files);
    manifest.write(&req.staging)?;
    sf.completed = Some(manifest.root.clone());
    sf.save(&req.staging)?;

    let mut skipped = scan.skipped.clone();
    skipped.extend(out.skipped.iter().cloned());
    use std::sync::atomic::Ordering;
    Ok(BackupOutcome {
        snapshot,
        recovery_key,
        already_complete: false,
        resumed_packs: resumed.len(),
        files: stats.files,
        dirs: stats.dirs,
        source_bytes: stats.bytes,
        read_bytes: progress.bytes.load(Ordering::Relaxed),
        new_bytes: out.new_bytes,
        stored_bytes: manifest.total_bytes(),
        chunks: out.chunks,
        new_chunks: out.new_chunks,
        packs: manifest.files.iter().filter(|f| f.path.starts_with("data/")).count(),
        elapsed: started.elapsed(),
        skipped,
        xattrs_not_kept: scan.xattrs_not_kept.clone(),
        manifest,
    })
}

/// Turns "disk full" into an error that says how much more is needed: what is left to read,
/// at the ratio stored so far, plus the pack that was being written when the space ran out
/// (it is written again) and a little for the trees, index and manifest.
fn no_space(e: RepoError, scan: &Scan, p: &Progress, pack_target: u64) -> BackupError {
    use std::sync::atomic::Ordering;
    match e {
        RepoError::NoSpace { path, .. } => {
            let read = p.bytes.load(Ordering::Relaxed).max(1);
            let stored = p.stored_bytes.load(Ordering::Relaxed);
            let left = scan.total_bytes.saturating_sub(read);
            let ratio = (stored as f64 / read as f64).clamp(0.05, 1.1);
            let needed = (left as f64 * ratio) as u64 + pack_target + (1 << 20);
            BackupError::NoSpace { path, needed: progress::human_bytes(needed) }
        }
        other => BackupError::Repo(other),
    }
}

/// Writes one tree blob per directory, bottom-up; returns the root tree id and the counts.
pub(crate) fn build_trees(
    scan: &Scan,
    out: &pipeline::Output,
    sink: &mut Sink,
    p: &Progress,
) -> Result<([u8; 32], SnapshotStats), RepoError> {
    let mut stats = SnapshotStats::default();
    let mut nodes = Vec::new();
    for &r in &scan.roots {
        if let Some(n) = node(scan, out, sink, p, r, &mut stats)? {
            nodes.push(n);
        }
    }
    let root = sink.add_plain(Kind::Tree, &Tree { nodes }.encode(), p)?;
    Ok((root, stats))
}

fn node(
    scan: &Scan,
    out: &pipeline::Output,
    sink: &mut Sink,
    p: &Progress,
    i: usize,
    stats: &mut SnapshotStats,
) -> Result<Option<Node>, RepoError> {
    let e = &scan.entries[i];
    let mut n = Node::new(&e.name, e.kind);
    n.mode = e.meta.mode;
    n.uid = e.meta.uid;
    n.gid = e.meta.gid;
    n.mtime_ns = e.meta.mtime_ns;
    match e.kind {
        NodeKind::File => {
            // The second name of a hard link shares the content read for the first.
            let source_file = match e.link_first {
                Some(first) => scan.entries[first].file.expect("a file"),
                None => e.file.expect("a file"),
            };
            let Some(ext) = &out.extents[source_file] else { return Ok(None) };
            n.content = ext.clone();
            n.size = ext
                .iter()
                .map(|x| match x {
                    Extent::Data { len, .. } => *len,
                    Extent::Hole { hole } => *hole,
                })
                .sum();
            n.link_group = e.link_group;
            stats.files += 1;
            if e.link_first.is_none() {
                stats.bytes += ext.iter().map(|x| if let Extent::Data { len, .. } = x { *len } else { 0 }).sum::<u64>();
            }
        }
        NodeKind::Dir => {
            let mut kids = Vec::with_capacity(e.children.len());
            for &c in &e.children {
                if let Some(k) = node(scan, out, sink, p, c, stats)? {
                    kids.push(k);
                }
            }
            let id = sink.add_plain(Kind::Tree, &Tree { nodes: kids }.encode(), p)?;
            n.subtree = Some(hex::encode(id));
            stats.dirs += 1;
        }
        NodeKind::Symlink => {
            if let Some(t) = &e.target {
                n.set_target(t);
            }
            n.size = 0;
        }
        NodeKind::Fifo => {}
    }
    Ok(Some(n))
}
