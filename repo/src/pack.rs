//! Pack files: many blobs in one large file, named by the SHA-256 of its bytes.
//!
//! ```text
//! "SSPK" | version (1 byte, = 1) | 3 zero bytes
//! blob 0 | blob 1 | ...                        (sealed blobs, back to back)
//! header                                       (sealed, kind PackHeader)
//! header length (u32 LE) | "SSPE"
//! ```
//! Header plaintext: `count (u32 LE)`, then per blob `kind (u8) ‖ id (32) ‖ offset (u64 LE) ‖
//! length (u32 LE) ‖ raw length (u32 LE)`; offsets are from the start of the file.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use md5::Md5;
use sha2::{Digest, Sha256};

use crate::crypto::{ChunkId, Crypto, Kind};
use crate::error::{RepoError, Result};
use crate::layout;

pub const MAGIC: &[u8; 4] = b"SSPK";
pub const END: &[u8; 4] = b"SSPE";
const ENTRY: usize = 49;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackEntry {
    pub kind: Kind,
    pub id: ChunkId,
    pub offset: u64,
    pub length: u32,
    pub raw_length: u32,
}

/// A pack on disk after `finish`.
#[derive(Debug, Clone)]
pub struct FinishedPack {
    pub id: String,
    pub path: PathBuf,
    pub size: u64,
    pub sha256: String,
    pub md5: String,
    pub entries: Vec<PackEntry>,
}

/// Bytes per I/O block; a multiple of the 4 KiB alignment direct I/O needs.
const IO_BLOCK: usize = 4 << 20;
const ALIGN: usize = 4096;
/// Blocks in flight between the pack writer and its I/O thread.
const BLOCKS: usize = 3;

struct Block {
    raw: Vec<u8>,
    start: usize,
    len: usize,
}

fn aligned_block() -> Block {
    let raw = vec![0u8; IO_BLOCK + ALIGN];
    let start = raw.as_ptr().align_offset(ALIGN);
    Block { raw, start, len: 0 }
}

/// The pack file's output. The caller fills 4 MiB blocks; a dedicated thread hashes each
/// block (SHA-256 and MD5, for the name and the manifest) and writes it, so hashing and disk
/// waits overlap with the caller's work. Blocks go to disk with O_DIRECT where the filesystem
/// allows it, which saves most of the system CPU a large buffered write costs here (see
/// docs/benchmarks.md); filesystems without O_DIRECT (tmpfs) get plain writes. The unaligned
/// tail goes through a normal descriptor, then the file is fsynced.
struct Out {
    cur: Block,
    tx: Option<std::sync::mpsc::SyncSender<Block>>,
    free: std::sync::mpsc::Receiver<Block>,
    io: Option<std::thread::JoinHandle<std::io::Result<(String, String)>>>,
}

impl Out {
    fn create(path: &Path) -> std::io::Result<Out> {
        use std::os::unix::fs::{FileExt, OpenOptionsExt};
        let direct = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(nix::libc::O_DIRECT)
            .open(path);
        let (file, direct) = match direct {
            Ok(f) => (f, true),
            Err(_) => (File::create(path)?, false),
        };
        let (tx, rx) = std::sync::mpsc::sync_channel::<Block>(BLOCKS);
        let (free_tx, free) = std::sync::mpsc::sync_channel::<Block>(BLOCKS + 1);
        for _ in 0..BLOCKS - 1 {
            let _ = free_tx.send(aligned_block());
        }
        let tail_path = path.to_path_buf();
        let io = std::thread::Builder::new().name("pack-io".into()).spawn(move || {
            let (mut sha, mut md5) = (Sha256::new(), Md5::new());
            let mut written = 0u64;
            let mut tail: Option<File> = None;
            for b in rx.iter() {
                let data = &b.raw[b.start..b.start + b.len];
                sha.update(data);
                md5.update(data);
                let whole = if direct { b.len / ALIGN * ALIGN } else { b.len };
                file.write_all_at(&data[..whole], written)?;
                if whole < b.len {
                    // Only the last block of a pack can be partial.
                    let t = std::fs::OpenOptions::new().write(true).open(&tail_path)?;
                    t.write_all_at(&data[whole..], written + whole as u64)?;
                    tail = Some(t);
                }
                written += b.len as u64;
                let _ = free_tx.send(Block { len: 0, ..b });
            }
            if let Some(t) = tail {
                t.sync_all()?;
            }
            file.sync_all()?;
            Ok((hex::encode(sha.finalize()), hex::encode(md5.finalize())))
        })?;
        Ok(Out { cur: aligned_block(), tx: Some(tx), free, io: Some(io) })
    }

    fn write(&mut self, mut bytes: &[u8]) -> std::io::Result<()> {
        while !bytes.is_empty() {
            let n = (IO_BLOCK - self.cur.len).min(bytes.len());
            let at = self.cur.start + self.cur.len;
            self.cur.raw[at..at + n].copy_from_slice(&bytes[..n]);
            self.cur.len += n;
            bytes = &bytes[n..];
            if self.cur.len == IO_BLOCK {
                self.send()?;
            }
        }
        Ok(())
    }

    fn send(&mut self) -> std::io::Result<()> {
        let next = self.free.recv().unwrap_or_else(|_| aligned_block());
        let full = std::mem::replace(&mut self.cur, next);
        match &self.tx {
            Some(tx) if tx.send(full).is_ok() => Ok(()),
            _ => Err(self.io_error()),
        }
    }

    /// The I/O thread's error, once it has stopped early.
    fn io_error(&mut self) -> std::io::Error {
        self.tx = None;
        match self.io.take().map(|h| h.join()) {
            Some(Ok(Err(e))) => e,
            _ => std::io::Error::other("the pack writer thread stopped"),
        }
    }

    /// Writes everything left, fsyncs, and returns (SHA-256, MD5) of the whole file.
    fn finish(mut self) -> std::io::Result<(String, String)> {
        if self.cur.len > 0 {
            self.send()?;
        }
        self.tx = None;
        match self.io.take().map(|h| h.join()) {
            Some(Ok(r)) => r,
            _ => Err(std::io::Error::other("the pack writer thread panicked")),
        }
    }
}

/// A pack being completed by a background thread.
pub struct PendingPack {
    handle: std::thread::JoinHandle<Result<FinishedPack>>,
}

impl PendingPack {
    /// Waits until the pack is on disk under its final name.
    pub fn wait(self) -> Result<FinishedPack> {
        self.handle.join().unwrap_or_else(|_| Err(RepoError::Invalid("a pack writer thread panicked".into())))
    }
}

/// Writes one pack to a temporary file, hashing as it goes.
pub struct PackWriter {
    out: Out,
    tmp: PathBuf,
    offset: u64,
    entries: Vec<PackEntry>,
}

impl PackWriter {
    /// Starts a pack at `<root>/data/pack-<n>.tmp`.
    pub fn create(root: &Path, n: u64) -> Result<PackWriter> {
        let dir = root.join(layout::DATA_DIR);
        layout::create_dir_all(&dir)?;
        let tmp = dir.join(format!("pack-{n}{}", layout::TMP_SUFFIX));
        let out = Out::create(&tmp).map_err(|e| RepoError::io(&tmp, e))?;
        let mut w = PackWriter { out, tmp, offset: 0, entries: Vec::new() };
        w.put(&[MAGIC.as_slice(), &[1, 0, 0, 0]].concat())?;
        Ok(w)
    }

    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.out.write(bytes).map_err(|e| RepoError::io(&self.tmp, e))?;
        self.offset += bytes.len() as u64;
        Ok(())
    }

    pub fn add(&mut self, kind: Kind, id: ChunkId, sealed: &[u8], raw_length: usize) -> Result<()> {
        let offset = self.offset;
        self.put(sealed)?;
        self.entries.push(PackEntry { kind, id, offset, length: sealed.len() as u32, raw_length: raw_length as u32 });
        Ok(())
    }

    pub fn size(&self) -> u64 {
        self.offset
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Appends the header, fsyncs, and renames the pack to its content name.
    pub fn finish(self, crypto: &Crypto, root: &Path) -> Result<FinishedPack> {
        self.finish_in_background(crypto, root)?.wait()
    }

    /// Appends the header and hands the rest (the last blocks' hashing and writing, fsync,
    /// rename) to a thread, so the caller can go on filling the next pack.
    pub fn finish_in_background(mut self, crypto: &Crypto, root: &Path) -> Result<PendingPack> {
        let header = crypto.seal(Kind::PackHeader, &encode_entries(&self.entries));
        self.put(&header)?;
        self.put(&(header.len() as u32).to_le_bytes())?;
        self.put(END)?;
        let root = root.to_path_buf();
        let tmp = self.tmp.clone();
        let handle = std::thread::Builder::new()
            .name("pack-finish".into())
            .spawn(move || self.complete(&root))
            .map_err(|e| RepoError::io(&tmp, e))?;
        Ok(PendingPack { handle })
    }

    fn complete(self, root: &Path) -> Result<FinishedPack> {
        let (sha256, md5) = self.out.finish().map_err(|e| RepoError::io(&self.tmp, e))?;
        let path = layout::pack_path(root, &sha256);
        let dir = path.parent().expect("pack dir");
        layout::create_dir_all(dir)?;
        fs::rename(&self.tmp, &path).map_err(|e| RepoError::io(&path, e))?;
        layout::fsync_dir(dir)?;
        Ok(FinishedPack { id: sha256.clone(), path, size: self.offset, sha256, md5, entries: self.entries })
    }
}

fn encode_entries(entries: &[PackEntry]) -> Vec<u8> {
    let mut b = Vec::with_capacity(4 + entries.len() * ENTRY);
    b.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for e in entries {
        b.push(e.kind as u8);
        b.extend_from_slice(&e.id);
        b.extend_from_slice(&e.offset.to_le_bytes());
        b.extend_from_slice(&e.length.to_le_bytes());
        b.extend_from_slice(&e.raw_length.to_le_bytes());
    }
    b
}

fn decode_entries(b: &[u8], what: &str) -> Result<Vec<PackEntry>> {
    let bad = |d: &str| RepoError::corrupt(what, d.to_string());
    let n = u32::from_le_bytes(b.get(..4).ok_or_else(|| bad("short header"))?.try_into().expect("4")) as usize;
    if b.len() != 4 + n * ENTRY {
        return Err(bad("header length does not match its entry count"));
    }
    (0..n)
        .map(|i| {
            let e = &b[4 + i * ENTRY..4 + (i + 1) * ENTRY];
            Ok(PackEntry {
                kind: Kind::from_u8(e[0]).ok_or_else(|| bad("unknown blob kind"))?,
                id: e[1..33].try_into().expect("32"),
                offset: u64::from_le_bytes(e[33..41].try_into().expect("8")),
                length: u32::from_le_bytes(e[41..45].try_into().expect("4")),
                raw_length: u32::from_le_bytes(e[45..49].try_into().expect("4")),
            })
        })
        .collect()
}

/// Reads and opens a pack's header.
pub fn read_header(crypto: &Crypto, path: &Path) -> Result<Vec<PackEntry>> {
    let what = format!("pack {}", path.display());
    let mut f = File::open(path).map_err(|e| RepoError::io(path, e))?;
    let size = f.metadata().map_err(|e| RepoError::io(path, e))?.len();
    if size < 16 {
        return Err(RepoError::corrupt(&what, "too short"));
    }
    let mut tail = [0u8; 8];
    f.seek(SeekFrom::End(-8)).and_then(|_| f.read_exact(&mut tail)).map_err(|e| RepoError::io(path, e))?;
    if &tail[4..] != END {
        return Err(RepoError::corrupt(&what, "no end marker (an incomplete pack)"));
    }
    let hlen = u32::from_le_bytes(tail[..4].try_into().expect("4")) as u64;
    if hlen + 16 > size {
        return Err(RepoError::corrupt(&what, "header length out of range"));
    }
    let mut header = vec![0u8; hlen as usize];
    f.seek(SeekFrom::End(-8 - hlen as i64))
        .and_then(|_| f.read_exact(&mut header))
        .map_err(|e| RepoError::io(path, e))?;
    let plain = crypto.open(Kind::PackHeader, &header, &what)?;
    let entries = decode_entries(&plain, &what)?;
    if entries.iter().any(|e| e.offset + e.length as u64 > size - 8 - hlen) {
        return Err(RepoError::corrupt(&what, "an entry points past the blobs"));
    }
    Ok(entries)
}

/// Reads the sealed bytes of one blob.
pub fn read_blob(path: &Path, offset: u64, length: u32) -> Result<Vec<u8>> {
    let mut f = File::open(path).map_err(|e| RepoError::io(path, e))?;
    let mut buf = vec![0u8; length as usize];
    f.seek(SeekFrom::Start(offset)).and_then(|_| f.read_exact(&mut buf)).map_err(|e| RepoError::io(path, e))?;
    Ok(buf)
}
