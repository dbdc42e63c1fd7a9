//! The shipping-disk format, version 1 (specified in `docs/formats/disk.md`).
//!
//! ```text
//! 0          header block, 4096 bytes: JSON, zero padded (no key material)
//! 4096       journal: 16 checkpoint slots of 256 bytes (written round-robin, MAC'd)
//! 2 MiB      extents, each 4 KiB aligned: 64-byte clear header ‖ nonce ‖ ciphertext ‖ tag
//! ...        the sealed drive manifest (4 KiB aligned), once the disk is sealed
//! ```
//! Extents are written in plan order; a checkpoint records how many are on disk and fsynced,
//! so a resumed preparation continues after the last checkpoint. Nonces are synthetic
//! (keyed BLAKE3 of the extent index and plaintext), so rewriting an extent after a crash
//! writes the same bytes and no nonce ever protects two different plaintexts.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use md5::Md5;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::key::{DriveKeys, RecoveryPassword};

pub const HEADER_LEN: u64 = 4096;
pub const JOURNAL_OFF: u64 = 4096;
pub const SLOT_LEN: u64 = 256;
pub const SLOTS: u64 = 16;
pub const DATA_OFF: u64 = 2 << 20;
/// A checkpoint is written after every this many extents (and at the end of the data), into
/// slot `ceil(extents / CHECKPOINT_EXTENTS) mod SLOTS`: the journal depends only on progress,
/// so a resumed disk ends byte-identical to an uninterrupted one.
pub const CHECKPOINT_EXTENTS: u64 = 8;
pub const ALIGN: u64 = 4096;
const EXTENT_HEAD: usize = 64;
const TAG_LEN: usize = 16;
const MAGIC: &str = "seedship-disk";
const EXTENT_MAGIC: &[u8; 4] = b"SSEX";
/// The drive-list `manifestFile` of every seedship disk: the sealed drive manifest is found
/// through the header (it has no file system), so this names it rather than locating it.
pub const MANIFEST_FILE: &str = "\\seedship\\DriveManifest.json";
/// Largest drive manifest a reader accepts.
const MAX_MANIFEST: u64 = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a seedship disk ({reason})")]
    Foreign { path: PathBuf, reason: String },
    #[error("{path}: the recovery password does not match this disk (key check failed)")]
    WrongKey { path: PathBuf },
    #[error("{path}: {what} is damaged: {detail}")]
    Corrupt { path: PathBuf, what: String, detail: String },
    #[error("{path} is full: {need} more bytes do not fit")]
    Full { path: PathBuf, need: u64 },
    /// Reading the data to write failed (the staging file, not the disk).
    #[error("cannot read staging file {path}: {source}")]
    Source { path: String, source: std::io::Error },
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, DiskError>;

fn io(path: &Path) -> impl Fn(std::io::Error) -> DiskError + '_ {
    move |source| DiskError::Io { path: path.to_path_buf(), source }
}

fn align(n: u64) -> u64 {
    n.div_ceil(ALIGN) * ALIGN
}

/// The clear header of a disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub format: String,
    pub version: u32,
    pub drive_id: String,
    pub seed_id: String,
    pub job_name: String,
    /// 1-based position in the disk set, and the set's size.
    pub position: u32,
    pub set_size: u32,
    pub capacity: u64,
    /// Hex key-check value (see `key`): tells a wrong recovery password from the right one.
    pub key_check: String,
    /// `writing` or `sealed`.
    pub state: String,
    #[serde(default)]
    pub manifest_offset: u64,
    #[serde(default)]
    pub manifest_length: u64,
}

/// What a new disk is for.
#[derive(Debug, Clone)]
pub struct DiskInfo {
    pub drive_id: String,
    pub seed_id: String,
    pub job_name: String,
    pub position: u32,
    pub set_size: u32,
}

/// One piece of a staging file on this disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestPart {
    /// Staging path, which becomes the blob name.
    pub path: String,
    /// Size of the whole file (blob).
    pub blob_size: u64,
    pub file_offset: u64,
    pub length: u64,
    pub part: u32,
    pub parts: u32,
    /// Of this part's bytes.
    pub sha256: String,
    pub md5: String,
    pub first_extent: u64,
    pub extents: u64,
    pub disk_offset: u64,
}

/// The encrypted list of everything on the disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriveManifest {
    pub format: String,
    pub version: u32,
    pub drive_id: String,
    pub seed_id: String,
    pub job_name: String,
    pub position: u32,
    pub set_size: u32,
    /// The blob container the parts' paths go into (the seed's); empty on disks made before
    /// the field existed.
    #[serde(default)]
    pub container: String,
    pub parts: Vec<ManifestPart>,
}

/// Progress recorded in the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Checkpoint {
    /// Extents written and fsynced.
    pub extents: u64,
    /// Where the next extent goes.
    pub offset: u64,
}

/// What sealing a disk gives: the fields of the Azure job's drive list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// Hex MD5 of the sealed manifest bytes (Azure's `manifestHash`).
    pub manifest_md5: String,
    /// Hex SHA-256 of the final header block (our `driveHeaderHash`).
    pub header_sha256: String,
    pub bytes: u64,
}

struct Crypt {
    aead: LessSafeKey,
    nonce_key: [u8; 32],
    mac_key: [u8; 32],
}

impl Crypt {
    fn new(k: &DriveKeys) -> Crypt {
        Crypt {
            aead: LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &k.encryption).expect("32-byte key")),
            nonce_key: k.nonce,
            mac_key: blake3::derive_key("seedship drive v1 journal", &k.nonce),
        }
    }

    fn nonce(&self, domain: &[u8], index: u64, plain: &[u8]) -> [u8; NONCE_LEN] {
        let mut h = blake3::Hasher::new_keyed(&self.nonce_key);
        h.update(domain);
        h.update(&index.to_le_bytes());
        h.update(plain);
        h.finalize().as_bytes()[..NONCE_LEN].try_into().expect("12 bytes")
    }

    fn seal(&self, nonce: [u8; NONCE_LEN], aad: &[u8], plain: &[u8]) -> Vec<u8> {
        let mut buf = plain.to_vec();
        self.aead
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut buf)
            .expect("in-range length");
        buf
    }

    fn open(&self, nonce: &[u8], aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        let mut buf = sealed.to_vec();
        let n = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let plain = self.aead.open_in_place(n, Aad::from(aad), &mut buf).ok()?;
        Some(plain.to_vec())
    }
}

/// What a disk holds: `None` when blank (its header block is all zeros), the header when it is
/// a seedship disk, and [`DiskError::Foreign`] when it holds anything else (a file system, a
/// partition table, another tool's data), which only an explicit wipe may overwrite.
pub fn probe(path: &Path) -> Result<Option<Header>> {
    let file = File::open(path).map_err(io(path))?;
    probe_file(&file, path)
}

fn probe_file(file: &File, path: &Path) -> Result<Option<Header>> {
    let mut b = vec![0u8; HEADER_LEN as usize];
    let n = file.read_at(&mut b, 0).map_err(io(path))?;
    if b[..n].iter().all(|c| *c == 0) {
        return Ok(None);
    }
    match read_header(file, path) {
        Ok(h) => Ok(Some(h)),
        Err(DiskError::Foreign { .. }) if !b.starts_with(b"{\"format\":\"seedship-disk\"") => Err(DiskError::Foreign {
            path: path.to_path_buf(),
            reason: "it holds other data (no seedship header); wipe it explicitly to use it".into(),
        }),
        Err(e) => Err(e),
    }
}

fn read_header(f: &File, path: &Path) -> Result<Header> {
    let mut b = vec![0u8; HEADER_LEN as usize];
    f.read_exact_at(&mut b, 0).map_err(io(path))?;
    let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
    let h: Header = serde_json::from_slice(&b[..end])
        .map_err(|_| DiskError::Foreign { path: path.to_path_buf(), reason: "no seedship header".into() })?;
    if h.format != MAGIC {
        return Err(DiskError::Foreign { path: path.to_path_buf(), reason: format!("header format {:?}", h.format) });
    }
    if h.version != 1 {
        return Err(DiskError::Foreign {
            path: path.to_path_buf(),
            reason: format!("disk format version {}", h.version),
        });
    }
    Ok(h)
}

/// Reads the header, checks the password against its key-check value and the disk's state.
fn unlock(
    file: &File,
    path: &Path,
    password: &RecoveryPassword,
    state: &str,
    otherwise: &str,
) -> Result<(Header, Crypt)> {
    let header = read_header(file, path)?;
    let keys = password.keys();
    if keys.check != header.key_check {
        return Err(DiskError::WrongKey { path: path.to_path_buf() });
    }
    if header.state != state {
        return Err(DiskError::Invalid(format!("{} {otherwise}", path.display())));
    }
    Ok((header, Crypt::new(&keys)))
}

fn header_block(h: &Header) -> Vec<u8> {
    let mut b = serde_json::to_vec(h).expect("serializes");
    b.resize(HEADER_LEN as usize, 0);
    b
}

/// Writes one disk: create or resume, extents in order, checkpoints, then seal.
///
/// Extents go to the disk from an I/O thread, so encrypting the next extent overlaps writing
/// the last one (at most two queued). A checkpoint waits until everything queued is on the disk
/// and fsynced before it records progress; a write error surfaces there, or at the seal.
pub struct DiskWriter {
    path: PathBuf,
    file: File,
    crypt: Crypt,
    header: Header,
    next: u64,
    offset: u64,
    io: Option<IoThread>,
    gate: Gate,
}

/// Asked by the I/O thread before every write: false drops the write (and fails the next sync).
type Gate = std::sync::Arc<std::sync::OnceLock<Box<dyn Fn() -> bool + Send + Sync>>>;

/// A zeroed buffer whose usable window starts on a 4 KiB boundary.
struct AlignedRec {
    buf: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedRec {
    fn zeroed(len: usize) -> AlignedRec {
        let buf = vec![0u8; len + ALIGN as usize];
        let start = (ALIGN as usize - (buf.as_ptr() as usize % ALIGN as usize)) % ALIGN as usize;
        AlignedRec { buf, start, len }
    }

    /// A buffer from the pool (its old contents are overwritten by the caller, except
    /// `zero_from..`, zeroed here), or a new one.
    fn reuse(pool: &std::sync::mpsc::Receiver<AlignedRec>, len: usize, zero_from: usize) -> AlignedRec {
        match pool.try_recv() {
            Ok(mut r) if r.buf.len() >= len + ALIGN as usize => {
                r.len = len;
                r.as_mut()[zero_from..].fill(0);
                r
            }
            _ => AlignedRec::zeroed(len),
        }
    }
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.start + self.len]
    }
    fn as_ref(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.len]
    }
}

enum IoMsg {
    Write(u64, AlignedRec),
    Sync(std::sync::mpsc::SyncSender<std::result::Result<(), std::io::Error>>),
}

struct IoThread {
    tx: std::sync::mpsc::SyncSender<IoMsg>,
    /// Written buffers come back for the next extents.
    pool: std::sync::mpsc::Receiver<AlignedRec>,
    handle: std::thread::JoinHandle<()>,
}

impl IoThread {
    fn start(file: &File, path: &Path, gate: Gate) -> Result<IoThread> {
        // Extents bypass the page cache (as `dd oflag=direct` does) where the file system
        // allows it; elsewhere (tmpfs) they go through it.
        use std::os::unix::fs::OpenOptionsExt;
        let f = match OpenOptions::new()
            .write(true)
            .custom_flags(nix::fcntl::OFlag::O_DIRECT.bits())
            .open(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(file)))
        {
            Ok(f) => f,
            Err(_) => file.try_clone().map_err(io(path))?,
        };
        let (tx, rx) = std::sync::mpsc::sync_channel::<IoMsg>(2);
        let (back, pool) = std::sync::mpsc::sync_channel::<AlignedRec>(4);
        let handle = std::thread::Builder::new()
            .name("disk-io".into())
            .spawn(move || {
                // After the first error nothing more is written; the next sync reports it.
                let mut failed: Option<std::io::Error> = None;
                for m in rx {
                    match m {
                        IoMsg::Write(at, rec) => {
                            if failed.is_some() {
                                continue;
                            }
                            if gate.get().is_some_and(|g| !g()) {
                                failed = Some(std::io::Error::other("writing stopped: the gate closed"));
                            } else if let Err(e) = f.write_all_at(rec.as_ref(), at) {
                                failed = Some(e);
                            }
                            let _ = back.try_send(rec);
                        }
                        IoMsg::Sync(ack) => {
                            let r = match failed.take() {
                                Some(e) => Err(e),
                                None => f.sync_data(),
                            };
                            let _ = ack.send(r);
                        }
                    }
                }
            })
            .map_err(io(path))?;
        Ok(IoThread { tx, pool, handle })
    }
}

impl Drop for DiskWriter {
    fn drop(&mut self) {
        if let Some(t) = self.io.take() {
            drop(t.tx);
            let _ = t.handle.join();
        }
    }
}

impl DiskWriter {
    /// Starts a new disk at `path` (an image file or block device of `capacity` bytes).
    /// A device that already holds a seedship header is refused: wiping it is an explicit act.
    pub fn create(path: &Path, capacity: u64, info: &DiskInfo, password: &RecoveryPassword) -> Result<DiskWriter> {
        if capacity < DATA_OFF + 2 * ALIGN {
            return Err(DiskError::Invalid(format!("{} is too small for a seedship disk", path.display())));
        }
        let file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path).map_err(io(path))?;
        if let Some(h) = probe_file(&file, path)? {
            return Err(DiskError::Foreign {
                path: path.to_path_buf(),
                reason: format!(
                    "it already holds drive {} of seed {} (job {}); wipe it explicitly first",
                    h.drive_id, h.seed_id, h.job_name
                ),
            });
        }
        let keys = password.keys();
        let header = Header {
            format: MAGIC.into(),
            version: 1,
            drive_id: info.drive_id.clone(),
            seed_id: info.seed_id.clone(),
            job_name: info.job_name.clone(),
            position: info.position,
            set_size: info.set_size,
            capacity,
            key_check: keys.check.clone(),
            state: "writing".into(),
            manifest_offset: 0,
            manifest_length: 0,
        };
        file.write_all_at(&vec![0u8; (DATA_OFF - JOURNAL_OFF) as usize], JOURNAL_OFF).map_err(io(path))?;
        file.write_all_at(&header_block(&header), 0).map_err(io(path))?;
        file.sync_all().map_err(io(path))?;
        let gate = Gate::default();
        let io = Some(IoThread::start(&file, path, gate.clone())?);
        Ok(DiskWriter {
            path: path.to_path_buf(),
            file,
            crypt: Crypt::new(&keys),
            header,
            next: 0,
            offset: DATA_OFF,
            io,
            gate,
        })
    }

    /// Reopens a disk being prepared, with its own key; continues after the last checkpoint.
    pub fn resume(path: &Path, password: &RecoveryPassword) -> Result<(DiskWriter, Checkpoint)> {
        let file = OpenOptions::new().read(true).write(true).open(path).map_err(io(path))?;
        let (header, crypt) = unlock(&file, path, password, "writing", "is already sealed")?;
        let cp = read_journal(&file, path, &crypt)?;
        let gate = Gate::default();
        let io = Some(IoThread::start(&file, path, gate.clone())?);
        let w = DiskWriter {
            path: path.to_path_buf(),
            file,
            crypt,
            header,
            next: cp.extents,
            offset: cp.offset.max(DATA_OFF),
            io,
            gate,
        };
        Ok((w, cp))
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Installs a check asked right before every extent reaches the disk (e.g. "is the lease
    /// still held?"). Once it says no, nothing more is written and the next checkpoint fails.
    pub fn set_gate(&self, gate: impl Fn() -> bool + Send + Sync + 'static) {
        let _ = self.gate.set(Box::new(gate));
    }

    /// Index of the next extent and where it goes.
    pub fn position(&self) -> (u64, u64) {
        (self.next, self.offset)
    }

    /// Encrypts and writes the next extent (a piece of part `part_no` at `part_offset`).
    pub fn write_extent(&mut self, part_no: u32, part_offset: u64, data: &[u8]) -> Result<u64> {
        let index = self.next;
        let head = extent_head(index, part_no, part_offset, data.len() as u32);
        let nonce = self.crypt.nonce(b"extent", index, data);
        // One copy of the data: head ‖ nonce ‖ data, sealed in place, tag, zero padding.
        let body = EXTENT_HEAD + NONCE_LEN;
        let n = align((body + data.len() + TAG_LEN) as u64);
        if self.offset + n + ALIGN > self.header.capacity {
            return Err(DiskError::Full { path: self.path.clone(), need: n });
        }
        // The record in a 4 KiB-aligned window of its buffer, as direct I/O wants it.
        let io = self.io.as_ref().expect("the I/O thread runs until the seal");
        let mut rec = AlignedRec::reuse(&io.pool, n as usize, body + data.len() + TAG_LEN);
        let r = rec.as_mut();
        r[..EXTENT_HEAD].copy_from_slice(&head);
        r[EXTENT_HEAD..body].copy_from_slice(&nonce);
        r[body..body + data.len()].copy_from_slice(data);
        let tag = self
            .crypt
            .aead
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&head),
                &mut r[body..body + data.len()],
            )
            .expect("in-range length");
        r[body + data.len()..body + data.len() + TAG_LEN].copy_from_slice(tag.as_ref());
        let at = self.offset;
        self.io
            .as_ref()
            .expect("the I/O thread runs until the seal")
            .tx
            .send(IoMsg::Write(at, rec))
            .map_err(|_| DiskError::Invalid("the disk I/O thread stopped".into()))?;
        self.offset += n;
        self.next += 1;
        Ok(at)
    }

    /// Makes everything written so far durable and records it in the journal.
    pub fn checkpoint(&mut self) -> Result<Checkpoint> {
        self.flush()?;
        let cp = Checkpoint { extents: self.next, offset: self.offset };
        let slot = self.next.div_ceil(CHECKPOINT_EXTENTS) % SLOTS;
        self.file
            .write_all_at(&encode_slot(&self.crypt, &cp), JOURNAL_OFF + slot * SLOT_LEN)
            .map_err(io(&self.path))?;
        self.file.sync_data().map_err(io(&self.path))?;
        Ok(cp)
    }

    /// Waits until every queued extent is written and fsynced.
    fn flush(&mut self) -> Result<()> {
        let (ack, done) = std::sync::mpsc::sync_channel(1);
        let t = self.io.as_ref().expect("the I/O thread runs until the seal");
        t.tx.send(IoMsg::Sync(ack)).map_err(|_| DiskError::Invalid("the disk I/O thread stopped".into()))?;
        done.recv().map_err(|_| DiskError::Invalid("the disk I/O thread stopped".into()))?.map_err(io(&self.path))
    }

    /// Writes the drive manifest and the final header; the disk is then complete.
    pub fn seal(mut self, manifest: &DriveManifest) -> Result<Sealed> {
        self.flush()?;
        let plain = serde_json::to_vec(manifest).expect("serializes");
        let nonce = self.crypt.nonce(b"manifest", 0, &plain);
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&self.crypt.seal(nonce, b"seedship drive manifest v1", &plain));
        if self.offset + bytes.len() as u64 > self.header.capacity {
            return Err(DiskError::Full { path: self.path.clone(), need: bytes.len() as u64 });
        }
        self.file.write_all_at(&bytes, self.offset).map_err(io(&self.path))?;
        self.header.state = "sealed".into();
        self.header.manifest_offset = self.offset;
        self.header.manifest_length = bytes.len() as u64;
        let block = header_block(&self.header);
        self.file.write_all_at(&block, 0).map_err(io(&self.path))?;
        self.file.sync_all().map_err(io(&self.path))?;
        Ok(Sealed {
            manifest_md5: hex::encode(Md5::digest(&bytes)),
            header_sha256: hex::encode(Sha256::digest(&block)),
            bytes: self.offset + bytes.len() as u64,
        })
    }
}

/// Writes every part of `plan` to `w` as extents of at most `EXTENT_MAX` bytes, in order,
/// skipping the extents a resumed writer already has, checkpointing every
/// [`CHECKPOINT_EXTENTS`] extents. `read(path, offset, len)` gives the staging bytes (an error
/// from it stops the writing before that extent); `progress(bytes, written)` is told of every
/// extent, `written` false for one already on the disk, and returning false stops the writing
/// there (before the checkpoint). Returns the drive manifest's parts.
pub fn write_plan(
    w: &mut DiskWriter,
    plan: &crate::plan::DiskPlan,
    blob_sizes: &std::collections::HashMap<String, u64>,
    read: impl FnMut(&str, u64, usize) -> std::io::Result<Vec<u8>>,
    progress: impl FnMut(u64, bool) -> bool,
) -> Result<Vec<ManifestPart>> {
    write_plan_with(w, plan, blob_sizes, &|_: &str| None, read, progress)
}

/// [`write_plan`], where `known_md5(path)` may give the MD5 of a whole file (a part that is
/// not split) so it is not computed again: a copy station takes it from the seed manifest once
/// the file's SHA-256, always computed here, matches the manifest's.
pub fn write_plan_with(
    w: &mut DiskWriter,
    plan: &crate::plan::DiskPlan,
    blob_sizes: &std::collections::HashMap<String, u64>,
    known_md5: &(dyn Fn(&str) -> Option<String> + Sync),
    mut read: impl FnMut(&str, u64, usize) -> std::io::Result<Vec<u8>>,
    mut progress: impl FnMut(u64, bool) -> bool,
) -> Result<Vec<ManifestPart>> {
    use std::sync::Arc;
    use std::sync::mpsc::{Receiver, sync_channel};
    enum Msg {
        /// The next part: whether to compute its MD5.
        Start(bool),
        Data(Arc<Vec<u8>>),
        End,
    }
    // SHA-256 (and MD5 where needed) of every part run on their own thread, beside
    // encryption and writing.
    fn hasher(rx: Receiver<Msg>, out: std::sync::mpsc::SyncSender<(String, Option<String>)>) {
        let (mut sha, mut md5, mut with_md5) = (Sha256::new(), Md5::new(), true);
        for m in rx {
            match m {
                Msg::Start(m) => with_md5 = m,
                Msg::Data(d) => {
                    sha.update(&d[..]);
                    if with_md5 {
                        md5.update(&d[..]);
                    }
                }
                Msg::End => {
                    let m = with_md5.then(|| hex::encode(md5.finalize_reset()));
                    if out.send((hex::encode(sha.finalize_reset()), m)).is_err() {
                        return;
                    }
                }
            }
        }
    }
    let done = w.next;
    std::thread::scope(|s| {
        let (tx, rx) = sync_channel::<Msg>(2);
        let (htx, hrx) = sync_channel::<(String, Option<String>)>(1);
        std::thread::Builder::new()
            .name("part-hash".into())
            .spawn_scoped(s, move || hasher(rx, htx))
            .expect("spawn the hashing thread");
        let mut index = 0u64;
        let mut offset = DATA_OFF;
        let mut parts = Vec::with_capacity(plan.parts.len());
        for (part_no, p) in plan.parts.iter().enumerate() {
            let first = index;
            let start = offset;
            let mut at = 0u64;
            let known = if p.parts == 1 { known_md5(&p.path) } else { None };
            let _ = tx.send(Msg::Start(known.is_none()));
            loop {
                let len = (p.length - at).min(crate::plan::EXTENT_MAX) as usize;
                let data = Arc::new(
                    read(&p.path, p.file_offset + at, len)
                        .map_err(|source| DiskError::Source { path: p.path.clone(), source })?,
                );
                if data.len() != len {
                    return Err(DiskError::Invalid(format!("staging file {} is shorter than planned", p.path)));
                }
                let _ = tx.send(Msg::Data(data.clone()));
                let rec = align((EXTENT_HEAD + NONCE_LEN + len + TAG_LEN) as u64);
                if index >= done {
                    debug_assert_eq!(w.offset, offset);
                    w.write_extent(part_no as u32, at, &data)?;
                    if !progress(len as u64, true) {
                        return Err(DiskError::Source {
                            path: p.path.clone(),
                            source: std::io::Error::other("stopped"),
                        });
                    }
                    if w.next.is_multiple_of(CHECKPOINT_EXTENTS) {
                        w.checkpoint()?;
                    }
                } else if !progress(len as u64, false) {
                    return Err(DiskError::Source { path: p.path.clone(), source: std::io::Error::other("stopped") });
                }
                index += 1;
                offset += rec;
                at += len as u64;
                if at >= p.length {
                    break;
                }
            }
            let _ = tx.send(Msg::End);
            let (sha256, md5) = hrx.recv().map_err(|_| DiskError::Invalid("the hashing thread stopped".into()))?;
            let md5 = md5.or(known).expect("computed unless known");
            parts.push(ManifestPart {
                path: p.path.clone(),
                blob_size: blob_sizes.get(&p.path).copied().unwrap_or(p.length),
                file_offset: p.file_offset,
                length: p.length,
                part: p.part,
                parts: p.parts,
                sha256,
                md5,
                first_extent: first,
                extents: index - first,
                disk_offset: start,
            });
        }
        drop(tx);
        w.checkpoint()?;
        Ok(parts)
    })
}

fn extent_head(index: u64, part_no: u32, part_offset: u64, len: u32) -> [u8; EXTENT_HEAD] {
    let mut h = [0u8; EXTENT_HEAD];
    h[..4].copy_from_slice(EXTENT_MAGIC);
    h[4] = 1;
    h[8..16].copy_from_slice(&index.to_le_bytes());
    h[16..20].copy_from_slice(&part_no.to_le_bytes());
    h[24..32].copy_from_slice(&part_offset.to_le_bytes());
    h[32..36].copy_from_slice(&len.to_le_bytes());
    h
}

fn encode_slot(c: &Crypt, cp: &Checkpoint) -> Vec<u8> {
    let mut b = vec![0u8; SLOT_LEN as usize];
    b[..8].copy_from_slice(b"SSJOURNL");
    b[8..16].copy_from_slice(&cp.extents.to_le_bytes());
    b[16..24].copy_from_slice(&cp.offset.to_le_bytes());
    let mac = blake3::keyed_hash(&c.mac_key, &b[..24]);
    b[24..56].copy_from_slice(mac.as_bytes());
    b
}

fn read_journal(f: &File, path: &Path, c: &Crypt) -> Result<Checkpoint> {
    let mut best = Checkpoint { extents: 0, offset: DATA_OFF };
    let mut b = vec![0u8; (SLOTS * SLOT_LEN) as usize];
    f.read_exact_at(&mut b, JOURNAL_OFF).map_err(io(path))?;
    for s in b.chunks(SLOT_LEN as usize) {
        let mac = blake3::keyed_hash(&c.mac_key, &s[..24]);
        if mac.as_bytes() != &s[24..56] {
            continue; // empty, torn, or foreign: ignored
        }
        let cp = Checkpoint {
            extents: u64::from_le_bytes(s[8..16].try_into().expect("8")),
            offset: u64::from_le_bytes(s[16..24].try_into().expect("8")),
        };
        if cp.extents > best.extents {
            best = cp;
        }
    }
    Ok(best)
}

/// What [`wipe`] found on the disk before wiping it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wiped {
    /// The header that was there, if it was a seedship disk.
    pub previous: Option<Header>,
    pub bytes_zeroed: u64,
}

/// Makes a disk blank for a new seed: an explicit, operator-driven act. The quick wipe zeroes
/// the header and the journal, so the disk no longer claims to hold anything. The old
/// extents stay, encrypted under a key the new seed never has. `full` zeroes every byte of the
/// first `capacity` bytes.
pub fn wipe(path: &Path, capacity: u64, full: bool) -> Result<Wiped> {
    let file = OpenOptions::new().read(true).write(true).open(path).map_err(io(path))?;
    let previous = read_header(&file, path).ok();
    let end = if full { capacity } else { DATA_OFF.min(capacity) };
    let zeros = vec![0u8; 4 << 20];
    let mut at = 0u64;
    while at < end {
        let n = (end - at).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], at).map_err(io(path))?;
        at += n as u64;
    }
    file.sync_all().map_err(io(path))?;
    Ok(Wiped { previous, bytes_zeroed: end })
}

/// Makes sure the next reads of `path` come from the device, not from the page cache: the
/// read-back pass must check what the disk holds, not what was just written to memory.
pub fn evict(path: &Path) -> Result<()> {
    let file = File::open(path).map_err(io(path))?;
    file.sync_data().map_err(io(path))?;
    nix::fcntl::posix_fadvise(&file, 0, 0, nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED)
        .map_err(|e| DiskError::Io { path: path.to_path_buf(), source: e.into() })
}

/// Reads a sealed disk with its recovery password: the format's own decoder.
pub struct DiskReader {
    path: PathBuf,
    file: File,
    /// The same disk opened for direct I/O (reads from the device, as `dd iflag=direct`),
    /// where the file system allows it.
    direct: Option<File>,
    crypt: Crypt,
    pub header: Header,
    pub manifest: DriveManifest,
}

impl DiskReader {
    pub fn open(path: &Path, password: &RecoveryPassword) -> Result<DiskReader> {
        let file = File::open(path).map_err(io(path))?;
        let (header, crypt) = unlock(&file, path, password, "sealed", "was not sealed (preparation incomplete)")?;
        let corrupt =
            |d: &str| DiskError::Corrupt { path: path.to_path_buf(), what: "drive manifest".into(), detail: d.into() };
        // The header is not authenticated: bound what it makes us read before trusting it.
        let size = file.metadata().map_err(io(path))?.len();
        if header.manifest_length > MAX_MANIFEST || header.manifest_offset.saturating_add(header.manifest_length) > size
        {
            return Err(corrupt("its location in the header is out of range"));
        }
        let mut b = vec![0u8; header.manifest_length as usize];
        file.read_exact_at(&mut b, header.manifest_offset).map_err(io(path))?;
        if b.len() < NONCE_LEN + TAG_LEN {
            return Err(corrupt("too short"));
        }
        let plain = crypt
            .open(&b[..NONCE_LEN], b"seedship drive manifest v1", &b[NONCE_LEN..])
            .ok_or_else(|| corrupt("authentication failed"))?;
        let manifest: DriveManifest = serde_json::from_slice(&plain).map_err(|e| corrupt(&e.to_string()))?;
        let direct = {
            use std::os::unix::fs::OpenOptionsExt;
            OpenOptions::new().read(true).custom_flags(nix::fcntl::OFlag::O_DIRECT.bits()).open(path).ok()
        };
        Ok(DiskReader { path: path.to_path_buf(), file, direct, crypt, header, manifest })
    }

    /// The drive-list fields of this sealed disk, as [`DiskWriter::seal`] gave them.
    pub fn sealed(&self) -> Result<Sealed> {
        let mut m = vec![0u8; self.header.manifest_length as usize];
        self.file.read_exact_at(&mut m, self.header.manifest_offset).map_err(io(&self.path))?;
        let mut block = vec![0u8; HEADER_LEN as usize];
        self.file.read_exact_at(&mut block, 0).map_err(io(&self.path))?;
        Ok(Sealed {
            manifest_md5: hex::encode(Md5::digest(&m)),
            header_sha256: hex::encode(Sha256::digest(&block)),
            bytes: self.header.manifest_offset + self.header.manifest_length,
        })
    }

    /// The read-back check of one part: every extent is read from the disk and authenticated
    /// (AES-GCM over its data and its header, so a flipped bit or a misplaced extent fails),
    /// and the extents must add up to the part. The plaintext is not kept or hashed again:
    /// authentication proves it is what was encrypted, whose hashes the manifest holds.
    /// Returns the part's length.
    pub fn verify_part(&self, part_no: usize) -> Result<u64> {
        let p = self.manifest.parts.get(part_no).ok_or_else(|| DiskError::Invalid(format!("no part {part_no}")))?;
        let f = self.direct.as_ref().unwrap_or(&self.file);
        let read = |buf: &mut [u8], at: u64| -> Result<()> { f.read_exact_at(buf, at).map_err(io(&self.path)) };
        let mut off = p.disk_offset;
        let mut total = 0u64;
        // One buffer for the part's extents (the largest fits), one for their headers.
        let most = align((EXTENT_HEAD + NONCE_LEN + TAG_LEN) as u64 + p.length.min(crate::plan::EXTENT_MAX));
        let mut rec = AlignedRec::zeroed(most as usize);
        let mut first = AlignedRec::zeroed(ALIGN as usize);
        for i in 0..p.extents {
            let index = p.first_extent + i;
            let corrupt = |d: &str| DiskError::Corrupt {
                path: self.path.clone(),
                what: format!("extent {index} of {}", p.path),
                detail: d.into(),
            };
            read(first.as_mut(), off)?;
            let head: [u8; EXTENT_HEAD] = first.as_ref()[..EXTENT_HEAD].try_into().expect("64");
            let len = u32::from_le_bytes(head[32..36].try_into().expect("4")) as usize;
            if &head[..4] != EXTENT_MAGIC
                || u64::from_le_bytes(head[8..16].try_into().expect("8")) != index
                || u64::from_le_bytes(head[24..32].try_into().expect("8")) != total
                || len as u64 > crate::plan::EXTENT_MAX
            {
                return Err(corrupt("bad extent header"));
            }
            let n = align((EXTENT_HEAD + NONCE_LEN + len + TAG_LEN) as u64);
            if n > most {
                return Err(corrupt("extent longer than its part"));
            }
            rec.len = n as usize;
            read(rec.as_mut(), off)?;
            let r = rec.as_mut();
            let (nonce, sealed) = r[EXTENT_HEAD..EXTENT_HEAD + NONCE_LEN + len + TAG_LEN].split_at_mut(NONCE_LEN);
            let nn = Nonce::try_assume_unique_for_key(nonce).map_err(|_| corrupt("bad nonce"))?;
            self.crypt
                .aead
                .open_in_place(nn, Aad::from(&head), sealed)
                .map_err(|_| corrupt("authentication failed"))?;
            total += len as u64;
            off += n;
        }
        if total != p.length {
            return Err(DiskError::Corrupt {
                path: self.path.clone(),
                what: format!("part {} of {}", p.part, p.path),
                detail: format!("its extents hold {total} bytes, the drive manifest says {}", p.length),
            });
        }
        Ok(total)
    }

    /// Reads, decrypts and checks one part (against its SHA-256 and MD5).
    pub fn read_part(&self, part_no: usize) -> Result<Vec<u8>> {
        let p = self.manifest.parts.get(part_no).ok_or_else(|| DiskError::Invalid(format!("no part {part_no}")))?;
        let mut out = Vec::with_capacity(p.length as usize);
        let mut off = p.disk_offset;
        for i in 0..p.extents {
            let index = p.first_extent + i;
            let what = format!("extent {index} of {}", p.path);
            let corrupt =
                |d: &str| DiskError::Corrupt { path: self.path.clone(), what: what.clone(), detail: d.into() };
            let mut head = [0u8; EXTENT_HEAD];
            self.file.read_exact_at(&mut head, off).map_err(io(&self.path))?;
            if &head[..4] != EXTENT_MAGIC || u64::from_le_bytes(head[8..16].try_into().expect("8")) != index {
                return Err(corrupt("bad extent header"));
            }
            let len = u32::from_le_bytes(head[32..36].try_into().expect("4")) as usize;
            if len as u64 > crate::plan::EXTENT_MAX {
                return Err(corrupt("extent length out of range"));
            }
            let mut body = vec![0u8; NONCE_LEN + len + TAG_LEN];
            self.file.read_exact_at(&mut body, off + EXTENT_HEAD as u64).map_err(io(&self.path))?;
            let plain = self
                .crypt
                .open(&body[..NONCE_LEN], &head, &body[NONCE_LEN..])
                .ok_or_else(|| corrupt("authentication failed"))?;
            out.extend_from_slice(&plain);
            off += align((EXTENT_HEAD + body.len()) as u64);
        }
        if out.len() as u64 != p.length
            || hex::encode(Sha256::digest(&out)) != p.sha256
            || hex::encode(Md5::digest(&out)) != p.md5
        {
            return Err(DiskError::Corrupt {
                path: self.path.clone(),
                what: format!("part {} of {}", p.part, p.path),
                detail: "content does not match the drive manifest".into(),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
