//! The parallel part of a backup: read and chunk (one thread), hash, compress and seal (N
//! workers), and write packs in the original order (the calling thread).
//!
//! Everything carries a sequence number from the reader; the writer handles results strictly
//! in that order, so which chunk lands in which pack never depends on thread timing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use seedship_repo::crypto::{ChunkId, Kind};
use seedship_repo::pack::{FinishedPack, PackWriter, PendingPack};
use seedship_repo::tree::Extent;
use seedship_repo::{RepoError, Repository, blob};

use super::chunker::Chunker;
use super::scan::{Scan, Skipped};

/// Counters the progress display reads.
#[derive(Debug, Default)]
pub struct Progress {
    pub files: AtomicU64,
    pub bytes: AtomicU64,
    pub stored_bytes: AtomicU64,
}

/// Where sealed blobs go: the current pack, closed at the target size. Trees go into packs of
/// their own, so a restore reads every directory listing without reading file data.
pub struct Sink {
    repo: Arc<Repository>,
    /// The current data pack \[0\] and tree pack \[1\].
    current: [Option<PackWriter>; 2],
    next_pack: u64,
    pending: std::collections::VecDeque<PendingPack>,
    pub packs: Vec<FinishedPack>,
    /// Ids in complete packs or in the current pack.
    pub stored: Arc<RwLock<HashSet<ChunkId>>>,
}

impl Sink {
    pub fn new(repo: Arc<Repository>, stored: HashSet<ChunkId>) -> Sink {
        Sink {
            repo,
            current: [None, None],
            next_pack: 0,
            pending: Default::default(),
            packs: Vec::new(),
            stored: Arc::new(RwLock::new(stored)),
        }
    }

    fn is_stored(&self, id: &ChunkId) -> bool {
        self.stored.read().map(|s| s.contains(id)).unwrap_or(false)
    }

    /// Adds a sealed blob unless it is already stored; returns whether it was added.
    pub fn add(
        &mut self,
        kind: Kind,
        id: ChunkId,
        sealed: &[u8],
        raw_len: usize,
        progress: &Progress,
    ) -> Result<bool, RepoError> {
        if self.is_stored(&id) {
            return Ok(false);
        }
        let slot = usize::from(kind == Kind::Tree);
        if self.current[slot].is_none() {
            self.current[slot] = Some(PackWriter::create(&self.repo.root, self.next_pack)?);
            self.next_pack += 1;
        }
        let pack = self.current[slot].as_mut().expect("just created");
        pack.add(kind, id, sealed, raw_len)?;
        progress.stored_bytes.fetch_add(sealed.len() as u64, Ordering::Relaxed);
        if let Ok(mut s) = self.stored.write() {
            s.insert(id);
        }
        if pack.size() >= self.repo.config.pack_target_bytes {
            self.close_current(slot)?;
        }
        Ok(true)
    }

    /// Encodes and adds a small blob (a tree); returns its id.
    pub fn add_plain(&mut self, kind: Kind, data: &[u8], progress: &Progress) -> Result<ChunkId, RepoError> {
        let crypto = self.repo.crypto();
        let id = crypto.chunk_id(data);
        if !self.is_stored(&id) {
            let sealed = blob::encode_with_id(crypto, kind, data, self.repo.config.compression.level);
            self.add(kind, id, &sealed, data.len(), progress)?;
        }
        Ok(id)
    }

    /// Closes the current pack of `slot`; it completes in the background (at most two at a
    /// time).
    fn close_current(&mut self, slot: usize) -> Result<(), RepoError> {
        if let Some(p) = self.current[slot].take()
            && !p.is_empty()
        {
            self.pending.push_back(p.finish_in_background(self.repo.crypto(), &self.repo.root)?);
        }
        while self.pending.len() > 2 {
            self.collect_one()?;
        }
        Ok(())
    }

    fn collect_one(&mut self) -> Result<(), RepoError> {
        if let Some(p) = self.pending.pop_front() {
            let done = p.wait()?;
            tracing::debug!(pack = %done.id, size = done.size, blobs = done.entries.len(), "pack written");
            self.packs.push(done);
        }
        Ok(())
    }

    /// Closes the current packs and waits until every pack is on disk.
    pub fn finish(&mut self) -> Result<(), RepoError> {
        self.close_current(0)?;
        self.close_current(1)?;
        while !self.pending.is_empty() {
            self.collect_one()?;
        }
        Ok(())
    }
}

enum Work {
    Chunk { seq: u64, file: usize, data: Vec<u8> },
    Hole { seq: u64, file: usize, len: u64 },
    End { seq: u64, file: usize, outcome: Outcome },
}

enum Done {
    Chunk { seq: u64, file: usize, id: ChunkId, len: usize, sealed: Option<Vec<u8>> },
    Hole { seq: u64, file: usize, len: u64 },
    End { seq: u64, file: usize, outcome: Outcome },
}

impl Done {
    fn seq(&self) -> u64 {
        match self {
            Done::Chunk { seq, .. } | Done::Hole { seq, .. } | Done::End { seq, .. } => *seq,
        }
    }
}

enum Outcome {
    Ok,
    /// The file changed while it was read; this attempt's chunks are dropped.
    Retry,
    Skip(String),
}

/// What the pipeline produced: per file its extents (`None` if skipped).
pub struct Output {
    pub extents: Vec<Option<Vec<Extent>>>,
    pub skipped: Vec<Skipped>,
    pub chunks: u64,
    pub new_chunks: u64,
    /// Plaintext bytes of the chunks this run stored (after dedup, before compression).
    pub new_bytes: u64,
}

/// A `Read` over one byte range of a file, by positioned reads.
struct Range<'a> {
    f: &'a File,
    pos: u64,
    end: u64,
}

impl Read for Range<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = (self.end - self.pos).min(buf.len() as u64) as usize;
        if want == 0 {
            return Ok(0);
        }
        let n = self.f.read_at(&mut buf[..want], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// The data ranges of a file (holes excluded), via SEEK_DATA / SEEK_HOLE where supported.
fn data_ranges(f: &File, size: u64) -> Vec<(u64, u64)> {
    use nix::errno::Errno;
    use nix::unistd::{Whence, lseek};
    let mut out = Vec::new();
    let mut pos: i64 = 0;
    while (pos as u64) < size {
        let start = match lseek(f, pos, Whence::SeekData) {
            Ok(s) => s,
            Err(Errno::ENXIO) => break,
            Err(_) => return vec![(0, size)],
        };
        let end = lseek(f, start, Whence::SeekHole).unwrap_or(size as i64).min(size as i64);
        if end <= start {
            break;
        }
        out.push((start as u64, end as u64));
        pos = end;
    }
    out
}

fn stamp(m: &std::fs::Metadata) -> (u64, i64, i64, i64, i64) {
    (m.len(), m.mtime(), m.mtime_nsec(), m.ctime(), m.ctime_nsec())
}

struct Reader<'a> {
    tx: crossbeam_channel::Sender<Work>,
    seq: u64,
    chunker: Chunker,
    progress: &'a Progress,
}

impl Reader<'_> {
    fn send(&mut self, w: impl FnOnce(u64) -> Work) -> bool {
        let s = self.seq;
        self.seq += 1;
        self.tx.send(w(s)).is_ok()
    }

    /// Reads one file; false when the writer has stopped.
    fn file(&mut self, path: &Path, file: usize) -> bool {
        for attempt in 0..2 {
            let outcome = match self.attempt(path, file) {
                Ok(true) => Outcome::Ok,
                Ok(false) if attempt == 0 => Outcome::Retry,
                Ok(false) => Outcome::Skip("changed twice while being read; not stored".into()),
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return false,
                Err(e) => Outcome::Skip(format!("cannot be read: {e}")),
            };
            let retry = matches!(outcome, Outcome::Retry);
            if !self.send(|seq| Work::End { seq, file, outcome }) {
                return false;
            }
            if !retry {
                break;
            }
        }
        self.progress.files.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// One read of a file; `Ok(false)` if it changed while being read.
    fn attempt(&mut self, path: &Path, file: usize) -> std::io::Result<bool> {
        let f = File::open(path)?;
        let before = f.metadata()?;
        let size = before.len();
        let mut pos = 0u64;
        for (start, end) in data_ranges(&f, size) {
            if start > pos && !self.send(|seq| Work::Hole { seq, file, len: start - pos }) {
                return Err(std::io::ErrorKind::BrokenPipe.into());
            }
            self.chunker.reset();
            let mut r = Range { f: &f, pos: start, end };
            while let Some(data) = self.chunker.next(&mut r)? {
                self.progress.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
                if !self.send(|seq| Work::Chunk { seq, file, data }) {
                    return Err(std::io::ErrorKind::BrokenPipe.into());
                }
            }
            pos = end;
        }
        if pos < size && !self.send(|seq| Work::Hole { seq, file, len: size - pos }) {
            return Err(std::io::ErrorKind::BrokenPipe.into());
        }
        let after = std::fs::metadata(path)?;
        Ok(stamp(&before) == stamp(&after))
    }
}

fn spawn_named<'scope, F>(s: &'scope std::thread::Scope<'scope, '_>, name: String, f: F) -> Result<(), RepoError>
where
    F: FnOnce() + Send + 'scope,
{
    std::thread::Builder::new()
        .name(name)
        .spawn_scoped(s, f)
        .map(|_| ())
        .map_err(|e| RepoError::Invalid(format!("cannot start a thread: {e}")))
}

/// Runs the pipeline over every file of `scan` that is read (not the second names of hard
/// links), writing new blobs through `sink`.
pub fn run(
    scan: &Scan,
    repo: &Arc<Repository>,
    sink: &mut Sink,
    progress: &Progress,
    workers: usize,
) -> Result<Output, RepoError> {
    run_with(scan, repo, sink, progress, workers, &[])
}

/// [`run`], except that files whose contents are already known (`known[file]`, from the file
/// cache of an earlier backup: same size, time and mode) are not read at all.
pub fn run_with(
    scan: &Scan,
    repo: &Arc<Repository>,
    sink: &mut Sink,
    progress: &Progress,
    workers: usize,
    known: &[Option<Vec<Extent>>],
) -> Result<Output, RepoError> {
    let (work_tx, work_rx) = crossbeam_channel::bounded::<Work>(workers * 2);
    let (done_tx, done_rx) = crossbeam_channel::bounded::<Done>(workers * 4);
    let level = repo.config.compression.level;
    let mut out =
        Output { extents: vec![None; scan.files.len()], skipped: Vec::new(), chunks: 0, new_chunks: 0, new_bytes: 0 };

    std::thread::scope(|s| -> Result<(), RepoError> {
        let params = repo.config.chunker.clone();
        spawn_named(s, "reader".into(), move || {
            let mut r = Reader { tx: work_tx, seq: 0, chunker: Chunker::new(&params), progress };
            for (file, &e) in scan.files.iter().enumerate() {
                let entry = &scan.entries[e];
                if entry.link_first.is_some() || known.get(file).is_some_and(Option::is_some) {
                    continue;
                }
                if !r.file(&entry.path, file) {
                    return;
                }
            }
        })?;
        for n in 0..workers {
            let (rx, tx) = (work_rx.clone(), done_tx.clone());
            let repo = repo.clone();
            let stored = sink.stored.clone();
            spawn_named(s, format!("worker-{n}"), move || {
                let mut enc = blob::Encoder::new(level);
                for w in rx.iter() {
                    let d = match w {
                        Work::Chunk { seq, file, data } => {
                            let id = repo.crypto().chunk_id(&data);
                            let known = stored.read().map(|s| s.contains(&id)).unwrap_or(false);
                            let sealed = (!known).then(|| enc.seal(repo.crypto(), Kind::Data, &data));
                            Done::Chunk { seq, file, id, len: data.len(), sealed }
                        }
                        Work::Hole { seq, file, len } => Done::Hole { seq, file, len },
                        Work::End { seq, file, outcome } => Done::End { seq, file, outcome },
                    };
                    if tx.send(d).is_err() {
                        return;
                    }
                }
            })?;
        }
        drop(work_rx);
        drop(done_tx);
        // Owned here, so an early error drops it before the scope joins: blocked workers then
        // see a closed channel and stop, instead of waiting forever.
        let done_rx = done_rx;

        let mut next = 0u64;
        let mut pending: BTreeMap<u64, Done> = BTreeMap::new();
        let mut open: HashMap<usize, Vec<Extent>> = HashMap::new();
        for d in done_rx.iter() {
            pending.insert(d.seq(), d);
            while let Some(d) = pending.remove(&next) {
                next += 1;
                match d {
                    Done::Chunk { file, id, len, sealed, .. } => {
                        out.chunks += 1;
                        if let Some(sealed) = sealed
                            && sink.add(Kind::Data, id, &sealed, len, progress)?
                        {
                            out.new_chunks += 1;
                            out.new_bytes += len as u64;
                        }
                        open.entry(file).or_default().push(Extent::Data { chunk: hex::encode(id), len: len as u64 });
                    }
                    Done::Hole { file, len, .. } => open.entry(file).or_default().push(Extent::Hole { hole: len }),
                    Done::End { file, outcome, .. } => {
                        let ext = open.remove(&file).unwrap_or_default();
                        match outcome {
                            Outcome::Ok => out.extents[file] = Some(ext),
                            Outcome::Retry => {}
                            Outcome::Skip(reason) => {
                                out.skipped.push(Skipped { path: scan.entries[scan.files[file]].path.clone(), reason })
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    })?;
    for (file, k) in known.iter().enumerate() {
        if let Some(ext) = k {
            out.extents[file] = Some(ext.clone());
        }
    }
    Ok(out)
}
