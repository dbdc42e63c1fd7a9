//! Reading a shipped disk the way the datacenter does: the first data volume of the disk (a
//! whole-disk NTFS volume, or the first partition of an MBR or GPT table), which must be NTFS,
//! read straight from the image or device with the `ntfs` crate. It shares nothing with the
//! mount (ntfs-3g) that wrote the files, so the read-back checks the bytes that travel.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use ntfs::indexes::NtfsFileNameIndex;
use ntfs::{Ntfs, NtfsFile, NtfsReadSeek};

const SECTOR: u64 = 512;
/// GPT's "Microsoft basic data" partition type.
const BASIC_DATA: [u8; 16] =
    [0xA2, 0xA0, 0xD0, 0xEB, 0xE5, 0xB9, 0x33, 0x44, 0x87, 0xC0, 0x68, 0xB6, 0xB7, 0x26, 0x99, 0xC7];

/// Why a disk cannot be read, with the datacenter's code where it has one.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("{0}: cannot be read: {1}")]
    Io(String, std::io::Error),
    /// `VolumeNotNtfs`: the first data volume is not NTFS (or there is none).
    #[error("VolumeNotNtfs: {0}")]
    NotNtfs(String),
    /// The NTFS structures are damaged.
    #[error("the NTFS volume is damaged: {0}")]
    Damaged(String),
    #[error("{0} is not on the volume")]
    NotFound(String),
}

/// A file on the volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// From the volume's root, with `\` separators and a leading `\`.
    pub path: String,
    pub size: u64,
}

/// The byte offset of the disk's first data volume, if it is NTFS.
pub fn first_volume(f: &mut File) -> Result<u64, VolumeError> {
    let io = |e| VolumeError::Io("the disk".into(), e);
    let mut s0 = [0u8; 512];
    f.seek(SeekFrom::Start(0)).map_err(io)?;
    f.read_exact(&mut s0).map_err(|_| VolumeError::NotNtfs("the disk is smaller than one sector".into()))?;
    if &s0[3..11] == b"NTFS    " {
        return Ok(0);
    }
    if s0[510..512] != [0x55, 0xAA] {
        return Err(VolumeError::NotNtfs("the disk holds neither an NTFS volume nor a partition table".into()));
    }
    let entries: Vec<(u8, u64)> = (0..4)
        .map(|i| {
            let e = &s0[446 + 16 * i..446 + 16 * (i + 1)];
            (e[4], u32::from_le_bytes([e[8], e[9], e[10], e[11]]) as u64)
        })
        .filter(|(t, _)| *t != 0)
        .collect();
    let start = match entries.first() {
        None => return Err(VolumeError::NotNtfs("the partition table is empty".into())),
        Some((0xEE, _)) => gpt_first(f)?,
        Some((0x05 | 0x0F, _)) => {
            return Err(VolumeError::NotNtfs("the first partition is an extended partition".into()));
        }
        Some((_, lba)) => lba * SECTOR,
    };
    let mut boot = [0u8; 11];
    f.seek(SeekFrom::Start(start)).map_err(io)?;
    f.read_exact(&mut boot).map_err(|_| VolumeError::NotNtfs("the first partition lies past the disk's end".into()))?;
    if &boot[3..11] != b"NTFS    " {
        return Err(VolumeError::NotNtfs(format!("the first data volume (at byte {start}) is not NTFS")));
    }
    Ok(start)
}

/// The start of the first used GPT entry.
fn gpt_first(f: &mut File) -> Result<u64, VolumeError> {
    let io = |e| VolumeError::Io("the disk".into(), e);
    let mut h = [0u8; 92];
    f.seek(SeekFrom::Start(SECTOR)).map_err(io)?;
    f.read_exact(&mut h).map_err(io)?;
    if &h[0..8] != b"EFI PART" {
        return Err(VolumeError::NotNtfs("a protective MBR without a GPT header".into()));
    }
    let le64 = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
    let le32 = |b: &[u8]| u32::from_le_bytes(b.try_into().expect("4 bytes")) as u64;
    let (table, count, size) = (le64(&h[72..80]), le32(&h[80..84]).min(128), le32(&h[84..88]));
    if !(128..=4096).contains(&size) {
        return Err(VolumeError::NotNtfs("a GPT with an impossible entry size".into()));
    }
    for i in 0..count {
        let mut e = vec![0u8; size as usize];
        f.seek(SeekFrom::Start(table * SECTOR + i * size)).map_err(io)?;
        f.read_exact(&mut e).map_err(io)?;
        if e[0..16].iter().all(|b| *b == 0) {
            continue;
        }
        if e[0..16] != BASIC_DATA {
            return Err(VolumeError::NotNtfs("the first GPT partition is not a basic data partition".into()));
        }
        return Ok(le64(&e[32..40]) * SECTOR);
    }
    Err(VolumeError::NotNtfs("the GPT has no partition".into()))
}

/// The disk seen from its first volume's start.
struct At {
    f: File,
    base: u64,
}

impl Read for At {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.f.read(buf)
    }
}

impl Seek for At {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        let p = match pos {
            SeekFrom::Start(n) => self.f.seek(SeekFrom::Start(self.base + n))?,
            other => self.f.seek(other)?,
        };
        Ok(p.saturating_sub(self.base))
    }
}

/// An NTFS volume opened for reading.
pub struct Volume {
    fs: BufReader<At>,
    ntfs: Ntfs,
}

fn damaged(e: ntfs::NtfsError) -> VolumeError {
    VolumeError::Damaged(e.to_string())
}

impl Volume {
    /// Opens the first data volume of the disk or image at `path`.
    pub fn open(path: &Path) -> Result<Volume, VolumeError> {
        let mut f = File::open(path).map_err(|e| VolumeError::Io(path.display().to_string(), e))?;
        let base = first_volume(&mut f)?;
        let mut fs = BufReader::with_capacity(1 << 20, At { f, base });
        fs.seek(SeekFrom::Start(0)).map_err(|e| VolumeError::Io(path.display().to_string(), e))?;
        let mut ntfs =
            Ntfs::new(&mut fs).map_err(|e| VolumeError::NotNtfs(format!("the NTFS boot sector is unusable: {e}")))?;
        ntfs.read_upcase_table(&mut fs).map_err(damaged)?;
        Ok(Volume { fs, ntfs })
    }

    /// Every file (not directory) on the volume, depth first, without NTFS's own `$` files.
    pub fn files(&mut self) -> Result<Vec<Entry>, VolumeError> {
        let Volume { fs, ntfs } = self;
        let root = ntfs.root_directory(fs).map_err(damaged)?;
        let mut out = Vec::new();
        walk(ntfs, fs, &root, String::new(), 0, &mut out)?;
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// Streams the file at `path` (`\`-separated from the root) to `sink`; its length.
    pub fn read(&mut self, path: &str, mut sink: impl FnMut(&[u8])) -> Result<u64, VolumeError> {
        let Volume { fs, ntfs } = self;
        let mut dir = ntfs.root_directory(fs).map_err(damaged)?;
        let parts: Vec<&str> = path.split('\\').filter(|p| !p.is_empty()).collect();
        for (i, part) in parts.iter().enumerate() {
            let index = dir.directory_index(fs).map_err(damaged)?;
            let mut finder = index.finder();
            let entry = NtfsFileNameIndex::find(&mut finder, ntfs, fs, part)
                .ok_or_else(|| VolumeError::NotFound(path.to_string()))?
                .map_err(damaged)?;
            let file = entry.to_file(ntfs, fs).map_err(damaged)?;
            if i + 1 < parts.len() && !file.is_directory() {
                return Err(VolumeError::NotFound(path.to_string()));
            }
            dir = file;
        }
        if dir.is_directory() {
            return Err(VolumeError::NotFound(path.to_string()));
        }
        let item = dir.data(fs, "").ok_or_else(|| VolumeError::NotFound(path.to_string()))?.map_err(damaged)?;
        let attr = item.to_attribute().map_err(damaged)?;
        let mut value = attr.value(fs).map_err(damaged)?;
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            let n = value.read(fs, &mut buf).map_err(damaged)?;
            if n == 0 {
                break;
            }
            sink(&buf[..n]);
            total += n as u64;
        }
        Ok(total)
    }

    /// The whole file at `path`, up to `max` bytes.
    pub fn read_all(&mut self, path: &str, max: usize) -> Result<Vec<u8>, VolumeError> {
        let mut out = Vec::new();
        let mut over = false;
        self.read(path, |b| {
            if out.len() + b.len() > max {
                over = true;
            } else {
                out.extend_from_slice(b);
            }
        })?;
        if over {
            return Err(VolumeError::Damaged(format!("{path} is larger than the {max} bytes expected")));
        }
        Ok(out)
    }
}

fn walk<T: Read + Seek>(
    ntfs: &Ntfs,
    fs: &mut T,
    dir: &NtfsFile<'_>,
    prefix: String,
    depth: usize,
    out: &mut Vec<Entry>,
) -> Result<(), VolumeError> {
    if depth > 64 {
        return Err(VolumeError::Damaged(format!("directories nest deeper than 64 at {prefix}")));
    }
    let index = dir.directory_index(fs).map_err(damaged)?;
    let mut iter = index.entries();
    let mut subdirs = Vec::new();
    while let Some(entry) = iter.next(fs) {
        let entry = entry.map_err(damaged)?;
        let Some(key) = entry.key() else { continue };
        let name = key.map_err(damaged)?;
        if name.namespace() == ntfs::structured_values::NtfsFileNamespace::Dos {
            continue;
        }
        let text = name.name().to_string_lossy();
        if depth == 0 && (text.starts_with('$') || text == ".") {
            continue;
        }
        let path = format!("{prefix}\\{text}");
        subdirs.push((entry.file_reference().file_record_number(), path, name.is_directory()));
    }
    for (record, path, is_dir) in subdirs {
        let file = ntfs.file(fs, record).map_err(damaged)?;
        if is_dir {
            walk(ntfs, fs, &file, path, depth + 1, out)?;
        } else {
            // The size from the file's own $DATA, not the index entry's copy (which may lag).
            let size = match file.data(fs, "") {
                None => 0,
                Some(item) => item.map_err(damaged)?.to_attribute().map_err(damaged)?.value(fs).map_err(damaged)?.len(),
            };
            out.push(Entry { path, size });
        }
    }
    Ok(())
}
