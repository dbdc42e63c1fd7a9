//! Restore a snapshot through the format's own read path: every chunk is opened,
//! authenticated and checked against its id before a byte is written.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use crate::error::{RepoError, Result};
use crate::index::Index;
use crate::repo::{Repository, parse_id};
use crate::snapshot::Snapshot;
use crate::tree::{Extent, Node, NodeKind, Tree};

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RestoreStats {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    pub bytes: u64,
    /// What could not be restored (a chunk or tree that fails its check, an unreadable pack),
    /// with why. A file in this list is not left in the target: nothing half-written is
    /// mistaken for complete.
    pub failed: Vec<(PathBuf, String)>,
}

/// What to restore, and how.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RestoreOptions {
    /// Only these paths of the snapshot (`/`-separated, as `source-name/dir/file`), and what
    /// is under them; empty: everything.
    pub include: Vec<String>,
    /// Replace files that already exist in the target (directories are merged).
    pub overwrite: bool,
}

impl RestoreOptions {
    /// Whether `rel` is to be restored, or lies on the way to something that is.
    fn wants(&self, rel: &str) -> bool {
        self.include.is_empty()
            || self.include.iter().any(|i| {
                let i = i.trim_matches('/');
                rel == i || rel.starts_with(&format!("{i}/")) || i.starts_with(&format!("{rel}/"))
            })
    }
}

struct Restorer<'a> {
    repo: &'a Repository,
    index: &'a Index,
    opts: &'a RestoreOptions,
    links: HashMap<u64, PathBuf>,
    stats: RestoreStats,
    /// Directories' owner, mode and times are set after their contents (writing a file
    /// changes the parent's mtime; a read-only directory must still take its files).
    dirs: Vec<(PathBuf, Node)>,
    /// Regular files, written by several threads once the tree is walked.
    files: Vec<(PathBuf, Node)>,
    /// Second and later names of hard-linked files: (link, first name).
    later_links: Vec<(PathBuf, PathBuf)>,
}

fn time_of(ns: i64) -> std::time::SystemTime {
    if ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(ns as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs())
    }
}

fn set_times(path: &Path, ns: i64, follow: bool) -> Result<()> {
    use nix::sys::stat::{UtimensatFlags, utimensat};
    use nix::sys::time::TimeSpec;
    let ts = TimeSpec::new(ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000));
    let flag = if follow { UtimensatFlags::FollowSymlink } else { UtimensatFlags::NoFollowSymlink };
    utimensat(nix::fcntl::AT_FDCWD, path, &ts, &ts, flag).map_err(|e| RepoError::io(path, std::io::Error::from(e)))
}

fn set_owner(path: &Path, n: &Node) {
    // Only root can give files away; as anyone else, the restoring user owns them.
    let _ = nix::unistd::fchownat(
        nix::fcntl::AT_FDCWD,
        path,
        Some(nix::unistd::Uid::from_raw(n.uid)),
        Some(nix::unistd::Gid::from_raw(n.gid)),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    );
}

impl Restorer<'_> {
    fn tree(&self, id: &str) -> Result<Tree> {
        let b = self.repo.read_blob(self.index, &parse_id(id)?)?;
        Tree::decode(&b, &format!("tree {id}"))
    }

    /// Clears the way for a non-directory entry: an existing file is an error, or replaced
    /// with `overwrite`.
    fn make_room(&self, path: &Path) -> Result<()> {
        match fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() => Err(RepoError::Invalid(format!("{} is a directory in the target", path.display()))),
            Ok(_) if self.opts.overwrite => fs::remove_file(path).map_err(|e| RepoError::io(path, e)),
            Ok(_) => {
                Err(RepoError::Invalid(format!("{} exists in the target (restore with overwrite)", path.display())))
            }
            Err(_) => Ok(()),
        }
    }

    fn node(&mut self, dir: &Path, rel_dir: &str, n: &Node) -> Result<()> {
        let name = n.name_os();
        if name.is_empty() || name == "." || name == ".." || name.to_string_lossy().contains('/') {
            return Err(RepoError::corrupt("snapshot tree", format!("unsafe entry name {name:?}")));
        }
        let path = dir.join(&name);
        let rel = if rel_dir.is_empty() {
            name.to_string_lossy().to_string()
        } else {
            format!("{rel_dir}/{}", name.to_string_lossy())
        };
        if !self.opts.wants(&rel) {
            return Ok(());
        }
        if n.kind != NodeKind::Dir {
            self.make_room(&path)?;
        }
        match n.kind {
            NodeKind::Dir => {
                fs::create_dir_all(&path).map_err(|e| RepoError::io(&path, e))?;
                if let Some(sub) = &n.subtree {
                    match self.tree(sub) {
                        Ok(t) => {
                            for child in &t.nodes {
                                self.node(&path, &rel, child)?;
                            }
                        }
                        // A damaged directory listing: named, and the rest goes on.
                        Err(e) => self.stats.failed.push((path.clone(), format!("directory contents: {e}"))),
                    }
                }
                self.dirs.push((path, n.clone()));
                self.stats.dirs += 1;
            }
            NodeKind::File => {
                if let Some(g) = n.link_group {
                    if let Some(first) = self.links.get(&g) {
                        self.later_links.push((path, first.clone()));
                        return Ok(());
                    }
                    self.links.insert(g, path.clone());
                }
                self.files.push((path, n.clone()));
            }
            NodeKind::Symlink => {
                let target =
                    n.target_os().ok_or_else(|| RepoError::corrupt("snapshot tree", "symlink without a target"))?;
                std::os::unix::fs::symlink(&target, &path).map_err(|e| RepoError::io(&path, e))?;
                set_owner(&path, n);
                set_times(&path, n.mtime_ns, false)?;
                self.stats.symlinks += 1;
            }
            NodeKind::Fifo => {
                nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(n.mode))
                    .map_err(|e| RepoError::io(&path, std::io::Error::from(e)))?;
                set_owner(&path, n);
                set_times(&path, n.mtime_ns, false)?;
            }
        }
        Ok(())
    }
}

/// Writes one regular file (created new, its holes left holes) and sets its owner, mode and
/// time; returns the bytes written.
fn write_file(repo: &Repository, index: &Index, path: &Path, n: &Node) -> Result<u64> {
    let f = OpenOptions::new().write(true).create_new(true).open(path).map_err(|e| RepoError::io(path, e))?;
    f.set_len(n.size).map_err(|e| RepoError::io(path, e))?;
    let (mut off, mut bytes) = (0u64, 0u64);
    for e in &n.content {
        match e {
            Extent::Data { chunk, len } => {
                let data = repo.read_blob(index, &parse_id(chunk)?)?;
                if data.len() as u64 != *len {
                    return Err(RepoError::corrupt(format!("chunk {chunk}"), "length differs from the tree"));
                }
                f.write_all_at(&data, off).map_err(|e| RepoError::io(path, e))?;
                off += len;
                bytes += len;
            }
            Extent::Hole { hole } => off += hole,
        }
    }
    if off != n.size {
        return Err(RepoError::corrupt(format!("file {}", path.display()), "extents do not add up to its size"));
    }
    set_owner(path, n);
    fs::set_permissions(path, fs::Permissions::from_mode(n.mode)).map_err(|e| RepoError::io(path, e))?;
    f.set_modified(time_of(n.mtime_ns)).map_err(|e| RepoError::io(path, e))?;
    Ok(bytes)
}

/// Writes `files` on up to `threads` threads. A file that fails (a chunk that fails its check)
/// is removed and listed, not left half-written.
fn write_files(
    repo: &Repository,
    index: &Index,
    files: &[(PathBuf, Node)],
    threads: usize,
) -> (u64, u64, Vec<(PathBuf, String)>) {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let out = Mutex::new((0u64, 0u64, Vec::new()));
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((path, n)) = files.get(i) else { return };
                    let r = write_file(repo, index, path, n);
                    let mut o = out.lock().unwrap_or_else(|p| p.into_inner());
                    match r {
                        Ok(b) => {
                            o.0 += 1;
                            o.1 += b;
                        }
                        Err(e) => {
                            let _ = fs::remove_file(path);
                            o.2.push((path.clone(), e.to_string()));
                        }
                    }
                }
            });
        }
    });
    let (n, b, mut failed) = out.into_inner().unwrap_or_else(|p| p.into_inner());
    failed.sort();
    (n, b, failed)
}

/// Restores `snap` into `target` (created if missing); each source path becomes a directory
/// entry of `target` named after its last component.
pub fn restore(repo: &Repository, index: &Index, snap: &Snapshot, target: &Path) -> Result<RestoreStats> {
    restore_with(repo, index, snap, target, &RestoreOptions { include: Vec::new(), overwrite: false })
}

/// [`restore`] with a selection and overwrite: what cannot be restored is listed in
/// [`RestoreStats::failed`] while the rest is restored.
pub fn restore_with(
    repo: &Repository,
    index: &Index,
    snap: &Snapshot,
    target: &Path,
    opts: &RestoreOptions,
) -> Result<RestoreStats> {
    fs::create_dir_all(target).map_err(|e| RepoError::io(target, e))?;
    let mut r = Restorer {
        repo,
        index,
        opts,
        links: HashMap::new(),
        stats: RestoreStats::default(),
        dirs: Vec::new(),
        files: Vec::new(),
        later_links: Vec::new(),
    };
    let root = r.tree(&snap.tree)?;
    for n in &root.nodes {
        r.node(target, "", n)?;
    }
    // File contents: decoding and writing on every core.
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).min(8);
    let (files, bytes, failed) = write_files(repo, index, &r.files, threads);
    r.stats.files += files;
    r.stats.bytes += bytes;
    let lost: std::collections::HashSet<PathBuf> = failed.iter().map(|(p, _)| p.clone()).collect();
    r.stats.failed.extend(failed);
    for (link, first) in std::mem::take(&mut r.later_links) {
        if lost.contains(&first) {
            r.stats.failed.push((link, format!("a hard link to {}, which could not be restored", first.display())));
            continue;
        }
        fs::hard_link(&first, &link).map_err(|e| RepoError::io(&link, e))?;
        r.stats.hardlinks += 1;
    }
    // Directories last, innermost first: owner, mode, then times (their contents are in).
    for (p, n) in &r.dirs {
        set_owner(p, n);
        fs::set_permissions(p, fs::Permissions::from_mode(n.mode)).map_err(|e| RepoError::io(p, e))?;
        set_times(p, n.mtime_ns, true)?;
    }
    Ok(r.stats)
}
