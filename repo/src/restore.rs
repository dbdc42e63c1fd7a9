//! Restore a snapshot through the format's own read path: every chunk is opened,
//! authenticated and checked against its id before a byte is written.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use crate::beneath::{self, Beneath};
use crate::blob;
use crate::crypto::{ChunkId, Crypto};
use crate::error::{RepoError, Result};
use crate::index::{Index, Location};
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
    /// Packs read (in part or whole), and the bytes read from them.
    pub packs_read: u64,
    pub bytes_read: u64,
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
    /// Write everything through the page cache (by default long runs of file data are
    /// written with O_DIRECT where the file system allows it).
    pub page_cache: bool,
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

/// Counters a restore advances as it goes; another thread reads them to show progress. The
/// totals are known once the tree is walked.
#[derive(Debug, Default)]
pub struct RestoreProgress {
    pub total_files: AtomicU64,
    pub total_bytes: AtomicU64,
    pub files: AtomicU64,
    pub bytes: AtomicU64,
}

/// Where a restore reads packs from: the repository's own folder ([`LocalPacks`]), or a
/// remote store (the vault). Each read is one range of one pack, so only what the restore
/// needs is fetched.
pub trait PackSource: Sync {
    /// `len` bytes of pack `pack` (its hex id) from `offset`, into `buf` (resized to `len`; a
    /// thread reuses its buffer from pack to pack).
    fn read(&self, pack: &str, offset: u64, len: u64, buf: &mut Vec<u8>) -> Result<()>;
    /// How many packs to read at once (each is decoded and written by the thread that read it).
    fn parallel(&self) -> usize;
}

/// The packs of a repository folder.
pub struct LocalPacks<'a>(pub &'a Path);

impl PackSource for LocalPacks<'_> {
    fn read(&self, pack: &str, offset: u64, len: u64, buf: &mut Vec<u8>) -> Result<()> {
        let path = crate::layout::pack_path(self.0, pack);
        let f = fs::File::open(&path).map_err(|e| RepoError::io(&path, e))?;
        buf.clear();
        buf.resize(len as usize, 0);
        f.read_exact_at(buf, offset).map_err(|e| RepoError::io(&path, e))
    }

    fn parallel(&self) -> usize {
        cores()
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).min(8)
}

/// `f` over `items` on up to `threads` threads, each with its own `state`; results in the
/// items' order.
fn par_map<T: Sync, S, R: Send>(
    items: &[T],
    threads: usize,
    state: impl Fn() -> S + Sync,
    f: impl Fn(&mut S, &T) -> R + Sync,
) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let out: Vec<Mutex<Option<R>>> = items.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..threads.clamp(1, items.len().max(1)) {
            s.spawn(|| {
                let mut st = state();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(t) = items.get(i) else { return };
                    let r = f(&mut st, t);
                    *out[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
                }
            });
        }
    });
    out.into_iter().map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner()).expect("every item mapped")).collect()
}

/// Reads the trees `ids`: those stored near each other in a pack (trees have packs of their
/// own) come in one read.
fn read_trees(crypto: &Crypto, index: &Index, packs: &dyn PackSource, ids: &[&String]) -> Vec<(String, Result<Tree>)> {
    /// Blobs this close are read together (the bytes between are read and dropped).
    const GAP: u64 = 1 << 20;
    type Wanted = (ChunkId, Location, String);
    let mut out = Vec::new();
    let mut by_pack: HashMap<[u8; 32], Vec<Wanted>> = HashMap::new();
    for id in ids {
        let found = parse_id(id).and_then(|c| {
            let l = index.blobs.get(&c).ok_or_else(|| RepoError::corrupt(format!("tree {id}"), "not in the index"))?;
            Ok((c, *l))
        });
        match found {
            Ok((c, l)) => by_pack.entry(l.pack).or_default().push((c, l, id.to_string())),
            Err(e) => out.push((id.to_string(), Err(e))),
        }
    }
    let mut ranges: Vec<([u8; 32], Vec<Wanted>)> = Vec::new();
    for (pack, mut v) in by_pack {
        v.sort_by_key(|w| w.1.offset);
        let mut cur: Vec<Wanted> = Vec::new();
        for w in v {
            if let Some(last) = cur.last()
                && w.1.offset > last.1.offset + last.1.length as u64 + GAP
            {
                ranges.push((pack, std::mem::take(&mut cur)));
            }
            cur.push(w);
        }
        ranges.push((pack, cur));
    }
    let got = par_map(&ranges, packs.parallel().max(4), Vec::new, |buf, (pack, blobs)| {
        let pack = hex::encode(pack);
        let start = blobs.iter().map(|w| w.1.offset).min().unwrap_or(0);
        let end = blobs.iter().map(|w| w.1.offset + w.1.length as u64).max().unwrap_or(0);
        let read = match packs.read(&pack, start, end - start, buf) {
            Ok(()) if buf.len() as u64 == end - start => Ok(()),
            Ok(()) => Err(format!("pack {pack}: {} bytes read of {}", buf.len(), end - start)),
            Err(e) => Err(format!("pack {pack}: {e}")),
        };
        let mut trees = Vec::new();
        for (c, l, id) in blobs {
            let what = format!("tree {id} in pack {pack}");
            let t = match &read {
                Err(e) => Err(RepoError::Invalid(e.clone())),
                Ok(()) => {
                    let at = (l.offset - start) as usize;
                    let sealed = &mut buf[at..at + l.length as usize];
                    blob::decode_in_place(crypto, l.kind, sealed, c, l.raw_length as usize, &what)
                        .and_then(|b| Tree::decode(&b, &format!("tree {id}")))
                }
            };
            trees.push((id.clone(), t));
        }
        trees
    });
    out.extend(got.into_iter().flatten());
    out
}

struct Restorer<'a> {
    opts: &'a RestoreOptions,
    /// The target: every entry is made beneath it, never through a link (see `beneath`).
    root: &'a Beneath,
    /// Every directory listing the restore needs, read beforehand (in parallel).
    trees: HashMap<String, std::result::Result<Tree, String>>,
    links: HashMap<u64, PathBuf>,
    stats: RestoreStats,
    /// Directories' owner, mode and times are set after their contents (writing a file
    /// changes the parent's mtime; a read-only directory must still take its files). Paths
    /// here and below are relative to the target.
    dirs: Vec<(PathBuf, Node)>,
    /// Regular files, written once the tree is walked.
    files: Vec<(PathBuf, Node)>,
    /// Second and later names of hard-linked files: (link, first name).
    later_links: Vec<(PathBuf, PathBuf)>,
}

fn join_rel(rel_dir: &str, name: &str) -> String {
    if rel_dir.is_empty() { name.to_string() } else { format!("{rel_dir}/{name}") }
}

/// Reads every directory listing under `root` that `opts` selects, a level at a time, each
/// level's listings in parallel. A listing that cannot be read is kept as its error.
fn load_trees(
    crypto: &Crypto,
    index: &Index,
    packs: &dyn PackSource,
    root: &str,
    opts: &RestoreOptions,
) -> HashMap<String, std::result::Result<Tree, String>> {
    let mut trees = HashMap::new();
    let mut level = vec![(root.to_string(), String::new())];
    while !level.is_empty() {
        let mut fetch: Vec<&String> = level.iter().map(|(id, _)| id).filter(|id| !trees.contains_key(*id)).collect();
        fetch.sort();
        fetch.dedup();
        let got = read_trees(crypto, index, packs, &fetch);
        for (id, t) in got {
            trees.insert(id, t.map_err(|e| e.to_string()));
        }
        // The same listing may sit at several places; what is wanted under each differs.
        let mut next = Vec::new();
        for (id, rel_dir) in &level {
            let Some(Ok(t)) = trees.get(id) else { continue };
            for n in t.nodes.iter().filter(|n| n.kind == NodeKind::Dir) {
                let rel = join_rel(rel_dir, &n.name_os().to_string_lossy());
                if let Some(sub) = &n.subtree
                    && opts.wants(&rel)
                {
                    next.push((sub.clone(), rel));
                }
            }
        }
        level = next;
    }
    trees
}

impl Restorer<'_> {
    fn tree(&self, id: &str) -> std::result::Result<&Tree, String> {
        match self.trees.get(id) {
            Some(Ok(t)) => Ok(t),
            Some(Err(e)) => Err(e.clone()),
            None => Err(format!("tree {id} was not read")),
        }
    }

    /// Clears the way for a non-directory entry: an existing file is an error, or replaced
    /// with `overwrite` (a link there is removed itself, never followed).
    fn make_room(&self, path: &Path) -> Result<()> {
        let shown = self.root.display(path);
        match self.root.lstat(path).map_err(|e| RepoError::io(&shown, e))? {
            Some(st) if (st.st_mode & nix::libc::S_IFMT) == nix::libc::S_IFDIR => {
                Err(RepoError::Invalid(format!("{} is a directory in the target", shown.display())))
            }
            Some(_) if self.opts.overwrite => self.root.remove_file(path).map_err(|e| RepoError::io(&shown, e)),
            Some(_) => {
                Err(RepoError::Invalid(format!("{} exists in the target (restore with overwrite)", shown.display())))
            }
            None => Ok(()),
        }
    }

    /// Makes directory `path`; with `overwrite`, a link or file where the snapshot has a
    /// directory is replaced (removed itself, never followed).
    fn make_dir(&self, path: &Path) -> Result<()> {
        let shown = self.root.display(path);
        match self.root.mkdir(path, 0o777) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && self.opts.overwrite => {
                self.root.remove_file(path).map_err(|e| RepoError::io(&shown, e))?;
                self.root.mkdir(path, 0o777).map(|_| ()).map_err(|e| RepoError::io(&shown, e))
            }
            Err(e) => Err(RepoError::io(&shown, e)),
        }
    }

    /// Restores one entry (and what is under it); what cannot be restored is listed, and the
    /// rest goes on: one entry never stops the others.
    fn entry(&mut self, dir: &Path, rel_dir: &str, n: &Node) {
        if let Err(e) = self.node(dir, rel_dir, n) {
            let shown = self.root.display(&dir.join(n.name_os()));
            let what = if n.kind == NodeKind::Dir { " (and everything in it)" } else { "" };
            self.stats.failed.push((shown, format!("{e}{what}")));
        }
    }

    fn node(&mut self, dir: &Path, rel_dir: &str, n: &Node) -> Result<()> {
        let name = n.name_os();
        if name.is_empty() || name == "." || name == ".." || name.to_string_lossy().contains('/') {
            return Err(RepoError::corrupt("snapshot tree", format!("unsafe entry name {name:?}")));
        }
        let path = dir.join(&name);
        let rel = join_rel(rel_dir, &name.to_string_lossy());
        if !self.opts.wants(&rel) {
            return Ok(());
        }
        if n.kind != NodeKind::Dir {
            self.make_room(&path)?;
        }
        let shown = self.root.display(&path);
        match n.kind {
            NodeKind::Dir => {
                self.make_dir(&path)?;
                if let Some(sub) = &n.subtree {
                    match self.tree(sub).cloned() {
                        Ok(t) => {
                            for child in &t.nodes {
                                self.entry(&path, &rel, child);
                            }
                        }
                        // A damaged directory listing: named, and the rest goes on.
                        Err(e) => self.stats.failed.push((shown, format!("directory contents: {e}"))),
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
                self.root.symlink(&target, &path).map_err(|e| RepoError::io(&shown, e))?;
                self.root.set_entry_meta(&path, n.uid, n.gid, n.mtime_ns).map_err(|e| RepoError::io(&shown, e))?;
                self.stats.symlinks += 1;
            }
            NodeKind::Fifo => {
                self.root.mkfifo(&path, n.mode).map_err(|e| RepoError::io(&shown, e))?;
                // mkfifo applies the umask; the mode is the snapshot's, exactly.
                self.root.set_mode(&path, n.mode).map_err(|e| RepoError::io(&shown, e))?;
                self.root.set_entry_meta(&path, n.uid, n.gid, n.mtime_ns).map_err(|e| RepoError::io(&shown, e))?;
            }
        }
        Ok(())
    }
}

/// A regular file being restored: its chunks arrive in pack order, from several threads.
struct FileJob<'a> {
    progress: &'a RestoreProgress,
    root: &'a Beneath,
    /// Relative to the target.
    path: &'a Path,
    node: &'a Node,
    /// Chunks not yet written (or failed); the thread that takes it to 0 finishes the file.
    remaining: AtomicUsize,
    /// Made (empty, at its size) by the first chunk to arrive.
    created: OnceLock<std::result::Result<(), String>>,
    failed: Mutex<Option<String>>,
}

impl FileJob<'_> {
    fn fail(&self, why: String) {
        self.failed.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(why);
    }

    fn has_failed(&self) -> bool {
        self.failed.lock().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    fn shown(&self) -> PathBuf {
        self.root.display(self.path)
    }

    fn create(&self) -> std::result::Result<fs::File, String> {
        let f = self
            .root
            .open_file(self.path, OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL, 0o600)
            .map_err(|e| io_text(&self.shown(), e))?;
        f.set_len(self.node.size).map_err(|e| io_text(&self.shown(), e))?;
        Ok(f)
    }

    fn open(&self, extra: OFlag) -> std::io::Result<fs::File> {
        self.root.open_file(self.path, OFlag::O_WRONLY | extra, 0)
    }

    /// Writes `data` (the next `chunks` chunks of the file, back to back) at `off`, creating
    /// the file first if no chunk has yet.
    fn write(&self, data: &[u8], off: u64, chunks: usize, w: &mut Writer) {
        if !self.has_failed() {
            let mut mine = None;
            let created = self.created.get_or_init(|| self.create().map(|f| mine = Some(f)));
            let r = match (mine, created) {
                (Some(f), _) => Ok(f),
                (None, Ok(())) => self.open(OFlag::empty()).map_err(|e| io_text(&self.shown(), e)),
                (None, Err(e)) => Err(e.clone()),
            }
            .and_then(|f| w.put(self, &f, data, off).map_err(|e| io_text(&self.shown(), e)));
            match r {
                Ok(()) => {
                    self.progress.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
                }
                Err(e) => self.fail(e),
            }
        }
        self.done_n(chunks);
    }

    /// One chunk fewer to wait for; after the last, the owner, mode and time.
    fn done(&self) {
        self.done_n(1);
    }

    fn done_n(&self, n: usize) {
        if n > 0 && self.remaining.fetch_sub(n, Ordering::AcqRel) == n {
            self.finish();
        }
    }

    fn finish(&self) {
        if self.has_failed() {
            return;
        }
        let f = match self.created.get() {
            None => self.create(),
            Some(_) => self.open(OFlag::empty()).map_err(|e| io_text(&self.shown(), e)),
        };
        let n = self.node;
        let r = f.and_then(|f| {
            beneath::set_meta(&f, n.uid, n.gid, n.mode, n.mtime_ns).map_err(|e| io_text(&self.shown(), e))
        });
        match r {
            Ok(()) => {
                self.progress.files.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => self.fail(e),
        }
    }
}

/// Block size O_DIRECT writes are aligned to (offset, length and memory); 4096 suits 512- and
/// 4096-byte devices alike.
const ALIGN: u64 = 4096;
/// A run whose aligned middle is at least this long is written with O_DIRECT: below it, the
/// cost of each direct write outweighs what it saves.
const DIRECT_MIN: u64 = 256 << 10;

/// How a restore thread writes file data. Long runs of a file's bytes go to the disk directly
/// (O_DIRECT), not through the page cache: a restore writes far more than anyone will read
/// back soon, and on a VM each new page-cache page can cost more than the copy into it. The
/// unaligned ends of a run, short runs, and everything on a file system that refuses O_DIRECT
/// go through the page cache. The two never share a block: each byte of a file is written
/// once, and a direct write covers only whole blocks inside its own run.
struct Writer<'a> {
    /// Cleared (for the whole restore) the first time the file system refuses O_DIRECT.
    direct: &'a AtomicBool,
    /// Aligned copy of a run's middle.
    scratch: Vec<u8>,
}

impl Writer<'_> {
    fn put(&mut self, job: &FileJob, f: &fs::File, data: &[u8], off: u64) -> std::io::Result<()> {
        let end = off + data.len() as u64;
        let (a, b) = (off.div_ceil(ALIGN) * ALIGN, end / ALIGN * ALIGN);
        if self.direct.load(Ordering::Relaxed) && b > a && b - a >= DIRECT_MIN {
            let (head, rest) = data.split_at((a - off) as usize);
            let (middle, tail) = rest.split_at((b - a) as usize);
            match self.put_direct(job, middle, a) {
                Ok(()) => {
                    f.write_all_at(head, off)?;
                    return f.write_all_at(tail, b);
                }
                // Not supported here (tmpfs, some network file systems): the page cache.
                Err(e) if e.raw_os_error() == Some(nix::libc::EINVAL) => {
                    tracing::debug!(error = %e, "O_DIRECT refused; writing through the page cache");
                    self.direct.store(false, Ordering::Relaxed);
                }
                Err(e) => return Err(e),
            }
        }
        f.write_all_at(data, off)
    }

    fn put_direct(&mut self, job: &FileJob, middle: &[u8], at: u64) -> std::io::Result<()> {
        let d = job.open(OFlag::O_DIRECT)?;
        let need = middle.len() + ALIGN as usize;
        if self.scratch.len() < need {
            self.scratch.resize(need, 0);
        }
        let base = self.scratch.as_ptr().align_offset(ALIGN as usize);
        let buf = &mut self.scratch[base..base + middle.len()];
        buf.copy_from_slice(middle);
        d.write_all_at(buf, at)
    }
}

/// A run is written once it holds this much (bounding each thread's memory).
const RUN_MAX: usize = 4 << 20;

/// Consecutive chunks of one file, gathered to be written at once.
struct Run {
    file: usize,
    start: u64,
    data: Vec<u8>,
    chunks: usize,
}

fn io_text(path: &Path, e: std::io::Error) -> String {
    RepoError::io(path, e).to_string()
}

/// Where one chunk goes: (file, offset in it).
type Target = (usize, u64);

/// One blob of a pack that the restore needs, and where its data goes.
struct BlobUse {
    id: ChunkId,
    loc: Location,
    targets: Vec<Target>,
}

/// Writes every file's contents: the packs the files need are read (only the ranges that hold
/// needed blobs), [`PackSource::parallel`] at a time; each thread decodes the pack it read
/// and writes its chunks wherever they belong. Returns (files, bytes, failed): a file that
/// fails (a chunk that fails its check, a pack that cannot be read) is removed and listed,
/// not left half-written.
fn write_files(
    root: &Beneath,
    crypto: &Crypto,
    index: &Index,
    packs: &dyn PackSource,
    files: &[(PathBuf, Node)],
    progress: &RestoreProgress,
    direct_io: bool,
) -> (u64, u64, Vec<(PathBuf, String)>, ReadStats) {
    let jobs: Vec<FileJob> = files
        .iter()
        .map(|(path, node)| FileJob {
            progress,
            root,
            path,
            node,
            remaining: AtomicUsize::new(0),
            created: OnceLock::new(),
            failed: Mutex::new(None),
        })
        .collect();
    // The plan: pack → the blobs needed from it → where each one's data goes.
    let mut by_pack: HashMap<[u8; 32], Vec<BlobUse>> = HashMap::new();
    let mut slot: HashMap<ChunkId, usize> = HashMap::new();
    for (i, j) in jobs.iter().enumerate() {
        let mut mine = Vec::new();
        let mut off = 0u64;
        let plan = j.node.content.iter().try_for_each(|e| {
            match e {
                Extent::Data { chunk, len } => {
                    let id = parse_id(chunk)?;
                    let loc = *index.blobs.get(&id).ok_or_else(|| {
                        RepoError::corrupt(format!("chunk {chunk}"), "not in the index (the repository is incomplete)")
                    })?;
                    if loc.raw_length as u64 != *len {
                        return Err(RepoError::corrupt(format!("chunk {chunk}"), "length differs from the tree"));
                    }
                    mine.push((id, loc, off));
                    off += len;
                }
                Extent::Hole { hole } => off += hole,
            }
            Ok(())
        });
        let plan = plan.and_then(|_| {
            if off == j.node.size {
                Ok(())
            } else {
                Err(RepoError::corrupt(format!("file {}", j.shown().display()), "extents do not add up to its size"))
            }
        });
        if let Err(e) = plan {
            j.fail(e.to_string());
            continue;
        }
        j.remaining.store(mine.len(), Ordering::Relaxed);
        for (id, loc, off) in mine {
            let uses = by_pack.entry(loc.pack).or_default();
            let k = *slot.entry(id).or_insert_with(|| {
                uses.push(BlobUse { id, loc, targets: Vec::new() });
                uses.len() - 1
            });
            uses[k].targets.push((i, off));
        }
    }
    progress.total_files.store(jobs.len() as u64, Ordering::Relaxed);
    let total: u64 = plan_bytes(&by_pack);
    progress.total_bytes.store(total, Ordering::Relaxed);
    // Files without data (empty, or all holes) are made now.
    for j in jobs.iter().filter(|j| j.remaining.load(Ordering::Relaxed) == 0) {
        j.finish();
    }
    let mut plan: Vec<([u8; 32], Vec<BlobUse>)> = by_pack.into_iter().collect();
    plan.sort_by_key(|(p, _)| *p);
    for (_, uses) in &mut plan {
        uses.sort_by_key(|u| u.loc.offset);
    }
    let read = ReadStats { packs: plan.len() as u64, bytes: AtomicU64::new(0) };
    let direct = AtomicBool::new(direct_io);
    let state = || (Vec::new(), Writer { direct: &direct, scratch: Vec::new() }, Vec::new());
    par_map(&plan, packs.parallel(), state, |(buf, w, run_buf), (pack, uses)| {
        let pack = hex::encode(pack);
        let start = uses.iter().map(|u| u.loc.offset).min().unwrap_or(0);
        let end = uses.iter().map(|u| u.loc.offset + u.loc.length as u64).max().unwrap_or(0);
        // The range as a whole cannot be read (a pack cut short, an unreadable block): each
        // blob is read on its own, so only the chunks that are really gone cost their files.
        let one_by_one = |why: String, buf: &mut Vec<u8>, w: &mut Writer| {
            tracing::warn!(%pack, reason = %why, "pack not readable as a whole; reading its chunks one by one");
            for u in uses {
                let what = format!("chunk {} in pack {pack}", hex::encode(u.id));
                let got = match packs.read(&pack, u.loc.offset, u.loc.length as u64, buf) {
                    Ok(()) if buf.len() == u.loc.length as usize => {
                        read.bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
                        blob::decode_in_place(crypto, u.loc.kind, buf, &u.id, u.loc.raw_length as usize, &what)
                            .map(|d| d.to_vec())
                    }
                    Ok(()) => Err(RepoError::corrupt(
                        &what,
                        format!("{} bytes of {} could be read ({why})", buf.len(), u.loc.length),
                    )),
                    Err(e) => Err(RepoError::corrupt(&what, format!("cannot be read: {e} ({why})"))),
                };
                for &(f, off) in &u.targets {
                    match &got {
                        Ok(data) => jobs[f].write(data, off, 1, w),
                        Err(e) => {
                            jobs[f].fail(e.to_string());
                            jobs[f].done();
                        }
                    }
                }
            }
        };
        match packs.read(&pack, start, end - start, buf) {
            Ok(()) if buf.len() as u64 == end - start => {}
            Ok(()) => return one_by_one(format!("{} bytes read of {}", buf.len(), end - start), buf, w),
            Err(e) => return one_by_one(e.to_string(), buf, w),
        }
        read.bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
        // A pack holds a file's chunks mostly in order: consecutive ones are written as one run.
        let mut run: Option<Run> = None;
        let flush = |run: &mut Option<Run>, w: &mut Writer, run_buf: &mut Vec<u8>| {
            if let Some(r) = run.take() {
                jobs[r.file].write(&r.data, r.start, r.chunks, w);
                *run_buf = r.data;
            }
        };
        for u in uses {
            let at = (u.loc.offset - start) as usize;
            let what = format!("chunk {} in pack {pack}", hex::encode(u.id));
            let sealed = &mut buf[at..at + u.loc.length as usize];
            match blob::decode_in_place(crypto, u.loc.kind, sealed, &u.id, u.loc.raw_length as usize, &what) {
                Ok(data) => {
                    for &(f, off) in &u.targets {
                        match &mut run {
                            Some(r)
                                if r.file == f && r.start + r.data.len() as u64 == off && r.data.len() < RUN_MAX =>
                            {
                                r.data.extend_from_slice(&data);
                                r.chunks += 1;
                            }
                            _ => {
                                flush(&mut run, w, run_buf);
                                let mut d = std::mem::take(run_buf);
                                d.clear();
                                d.extend_from_slice(&data);
                                run = Some(Run { file: f, start: off, data: d, chunks: 1 });
                            }
                        }
                    }
                }
                Err(e) => {
                    for &(f, _) in &u.targets {
                        jobs[f].fail(e.to_string());
                        jobs[f].done();
                    }
                }
            }
        }
        flush(&mut run, w, run_buf);
    });
    let (mut n, mut bytes, mut failed) = (0u64, 0u64, Vec::new());
    for j in jobs {
        let shown = j.shown();
        match j.failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
            Some(why) => {
                let _ = root.remove_file(j.path);
                failed.push((shown, why));
            }
            None => {
                n += 1;
                bytes +=
                    j.node.content.iter().map(|e| if let Extent::Data { len, .. } = e { *len } else { 0 }).sum::<u64>();
            }
        }
    }
    failed.sort();
    (n, bytes, failed, read)
}

/// The bytes the plan writes (each blob once per place it goes).
fn plan_bytes(by_pack: &HashMap<[u8; 32], Vec<BlobUse>>) -> u64 {
    by_pack.values().flatten().map(|u| u.loc.raw_length as u64 * u.targets.len() as u64).sum()
}

/// What a restore read from its pack source.
struct ReadStats {
    packs: u64,
    bytes: AtomicU64,
}

/// Restores `snap` into `target` (created if missing); each source path becomes a directory
/// entry of `target` named after its last component.
pub fn restore(repo: &Repository, index: &Index, snap: &Snapshot, target: &Path) -> Result<RestoreStats> {
    restore_with(repo, index, snap, target, &RestoreOptions::default())
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
    restore_from(repo.crypto(), index, &LocalPacks(&repo.root), snap, target, opts, &RestoreProgress::default())
}

/// [`restore_with`] reading the packs from `packs` (the vault, say): only the packs, and the
/// ranges of them, that the selection needs are read, and files are written while they are.
pub fn restore_from(
    crypto: &Crypto,
    index: &Index,
    packs: &dyn PackSource,
    snap: &Snapshot,
    target: &Path,
    opts: &RestoreOptions,
    progress: &RestoreProgress,
) -> Result<RestoreStats> {
    fs::create_dir_all(target).map_err(|e| RepoError::io(target, e))?;
    let target_dir = Beneath::open(target).map_err(|e| RepoError::io(target, e))?;
    let root = &target_dir;
    let t0 = std::time::Instant::now();
    let trees = load_trees(crypto, index, packs, &snap.tree, opts);
    tracing::debug!(trees = trees.len(), ms = t0.elapsed().as_millis() as u64, "directory listings read");
    let mut r = Restorer {
        opts,
        root,
        trees,
        links: HashMap::new(),
        stats: RestoreStats::default(),
        dirs: Vec::new(),
        files: Vec::new(),
        later_links: Vec::new(),
    };
    let top = r.tree(&snap.tree).map_err(|e| RepoError::corrupt("the snapshot's root directory", e))?.clone();
    for n in &top.nodes {
        r.entry(Path::new(""), "", n);
    }
    tracing::debug!(files = r.files.len(), ms = t0.elapsed().as_millis() as u64, "tree walked");
    let (files, bytes, failed, read) = write_files(root, crypto, index, packs, &r.files, progress, !opts.page_cache);
    tracing::debug!(packs = read.packs, ms = t0.elapsed().as_millis() as u64, "file contents written");
    r.stats.files += files;
    r.stats.bytes += bytes;
    r.stats.packs_read = read.packs;
    r.stats.bytes_read = read.bytes.into_inner();
    let lost: std::collections::HashSet<PathBuf> = failed.iter().map(|(p, _)| p.clone()).collect();
    r.stats.failed.extend(failed);
    for (link, first) in std::mem::take(&mut r.later_links) {
        let (shown_link, shown_first) = (root.display(&link), root.display(&first));
        if lost.contains(&shown_first) {
            r.stats
                .failed
                .push((shown_link, format!("a hard link to {}, which could not be restored", shown_first.display())));
            continue;
        }
        match root.hard_link(&first, &link) {
            Ok(()) => r.stats.hardlinks += 1,
            Err(e) => r.stats.failed.push((shown_link, format!("hard link to {}: {e}", shown_first.display()))),
        }
    }
    // Directories last, innermost first: owner, mode, then times (their contents are in).
    for (p, n) in &r.dirs {
        let shown = root.display(p);
        let set = root
            .open_file(p, OFlag::O_RDONLY | OFlag::O_DIRECTORY, 0)
            .and_then(|d| beneath::set_meta(&d, n.uid, n.gid, n.mode, n.mtime_ns));
        if let Err(e) = set {
            r.stats.failed.push((shown, format!("owner, mode or time not set: {e}")));
        }
    }
    Ok(r.stats)
}
