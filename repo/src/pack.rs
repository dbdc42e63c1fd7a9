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
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
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

/// Writes one pack to a temporary file, hashing as it goes.
pub struct PackWriter {
    out: BufWriter<File>,
    tmp: PathBuf,
    sha: Sha256,
    md5: Md5,
    offset: u64,
    entries: Vec<PackEntry>,
}

impl PackWriter {
    /// Starts a pack at `<root>/data/pack-<n>.tmp`.
    pub fn create(root: &Path, n: u64) -> Result<PackWriter> {
        let dir = root.join(layout::DATA_DIR);
        layout::create_dir_all(&dir)?;
        let tmp = dir.join(format!("pack-{n}{}", layout::TMP_SUFFIX));
        let f = File::create(&tmp).map_err(|e| RepoError::io(&tmp, e))?;
        let mut w = PackWriter {
            out: BufWriter::with_capacity(1 << 20, f),
            tmp,
            sha: Sha256::new(),
            md5: Md5::new(),
            offset: 0,
            entries: Vec::new(),
        };
        w.put(&[MAGIC.as_slice(), &[1, 0, 0, 0]].concat())?;
        Ok(w)
    }

    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.out.write_all(bytes).map_err(|e| RepoError::io(&self.tmp, e))?;
        self.sha.update(bytes);
        self.md5.update(bytes);
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
    pub fn finish(mut self, crypto: &Crypto, root: &Path) -> Result<FinishedPack> {
        let header = crypto.seal(Kind::PackHeader, &encode_entries(&self.entries));
        self.put(&header)?;
        self.put(&(header.len() as u32).to_le_bytes())?;
        self.put(END)?;
        let f = self.out.into_inner().map_err(|e| RepoError::io(&self.tmp, e.into_error()))?;
        f.sync_all().map_err(|e| RepoError::io(&self.tmp, e))?;
        drop(f);
        let sha256 = hex::encode(self.sha.finalize());
        let path = layout::pack_path(root, &sha256);
        let dir = path.parent().expect("pack dir");
        layout::create_dir_all(dir)?;
        fs::rename(&self.tmp, &path).map_err(|e| RepoError::io(&path, e))?;
        layout::fsync_dir(dir)?;
        Ok(FinishedPack {
            id: sha256.clone(),
            path,
            size: self.offset,
            sha256,
            md5: hex::encode(self.md5.finalize()),
            entries: self.entries,
        })
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
