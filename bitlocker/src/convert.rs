//! Turning a written plain NTFS volume into a BitLocker volume in place, in steps that a crash
//! (kill -9, a power cut) cannot spoil, so that a station resumes where it stopped.
//!
//! 1. **Begin.** Fresh random keys; the three metadata blocks, which hold the full volume
//!    encryption key (FVEK) under the volume master key under the stretched recovery
//!    password, are written into the reserved tail (outside the NTFS volume) and synced.
//! 2. **Encrypt** the NTFS volume past its boot sectors, [`CHUNK`] at a time. Before a chunk
//!    is overwritten, an intent goes to a log kept elsewhere (the station's state folder):
//!    the chunk's offset and the CRC32 of each of its plain sectors, synced. After a crash,
//!    the chunk the log names is finished sector by sector: a sector with its plain CRC32 is
//!    encrypted, one that decrypts to it is left as it is, and any other is reported as
//!    damage. Every chunk before it is encrypted already.
//! 3. **Finish.** The NTFS boot sectors go, encrypted, into the backup area, then the volume
//!    header replaces them in sector 0.
//!
//! [`convert`] does whichever step is next, so calling it again after any crash completes
//! the volume. Resuming needs the recovery password only (the keys come from the metadata);
//! the log holds no key and no data.

use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use seedship_disk::key::RecoveryPassword;

use crate::volume::{
    BOOT_SECTORS, BitLockerError, Layout, Method, SECTOR, Sectors, io_err, open_volume, protect, read_keys,
    write_header, write_metadata,
};

/// How much is encrypted between two intents.
pub const CHUNK: u64 = 8 << 20;
const LOG_MAGIC: &[u8; 8] = b"SSBL-LOG";

/// Where a conversion stands, for progress: bytes of the NTFS volume encrypted, of `total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub done: u64,
    pub total: u64,
}

/// Encrypts the plain NTFS volume on `path` (a device or an image whose NTFS volume ends
/// before the reserved tail: [`Layout::ntfs_sectors`]) in place, protected by `password`,
/// with `method`; or completes a conversion that a crash interrupted (its intent is in
/// `log`); or does nothing if the volume is converted already and `password` opens it.
/// `progress` is told after each chunk; an error from it stops the conversion (resumable).
/// The volume's description names it `label` (the drive id), readable without the key.
/// The log is removed at the end.
pub fn convert(
    path: &Path,
    password: &RecoveryPassword,
    method: Method,
    label: &str,
    log: &Path,
    mut progress: impl FnMut(Progress) -> Result<(), String>,
) -> Result<Layout, BitLockerError> {
    let io = io_err(path);
    let (f, layout) = open_volume(path)?;
    let mut head = vec![0u8; (BOOT_SECTORS * SECTOR) as usize];
    f.read_exact_at(&mut head, 0).map_err(&io)?;
    let intent = read_intent(log)?;
    let total = layout.meta[0] - BOOT_SECTORS * SECTOR;
    let (sectors, start) = match (&head[3..11], intent) {
        (b"-FVE-FS-", None) => {
            // Converted before the log was removed (or long ago): it must open.
            read_keys(&f, path, &layout, password)?;
            return Ok(layout);
        }
        (_, Some(intent)) => {
            let (m, fvek) = read_keys(&f, path, &layout, password)?;
            if m != method {
                return Err(BitLockerError::Refused(format!(
                    "{} is being encrypted with {m:?}, not {method:?}",
                    path.display()
                )));
            }
            let sectors = Sectors::new(m, &fvek);
            if intent.offset < layout.meta[0] {
                finish_chunk(&f, path, &sectors, &intent)?;
            }
            (sectors, intent.offset + intent.crcs.len() as u64 * SECTOR)
        }
        (b"NTFS    ", None) => {
            let ntfs_sectors = u64::from_le_bytes(head[40..48].try_into().expect("8 bytes")) + 1;
            if ntfs_sectors * SECTOR > layout.meta[0] {
                return Err(BitLockerError::Refused(format!(
                    "the NTFS volume on {} reaches into the last {} bytes, which BitLocker keeps for itself",
                    path.display(),
                    layout.size - layout.meta[0]
                )));
            }
            let p = protect(Some(password), None, method, label);
            write_metadata(&f, path, &layout, &p)?;
            (Sectors::new(method, &p.fvek), BOOT_SECTORS * SECTOR)
        }
        _ => {
            return Err(BitLockerError::Refused(format!(
                "{} holds neither an NTFS volume nor a BitLocker volume being made",
                path.display()
            )));
        }
    };
    let mut at = start.min(layout.meta[0]);
    progress(Progress { done: at - BOOT_SECTORS * SECTOR, total }).map_err(BitLockerError::Stopped)?;
    let mut buf = vec![0u8; CHUNK as usize];
    while at < layout.meta[0] {
        let n = (layout.meta[0] - at).min(CHUNK) as usize;
        let chunk = &mut buf[..n];
        f.read_exact_at(chunk, at).map_err(&io)?;
        let crcs: Vec<u32> = chunk.chunks(SECTOR as usize).map(crc32fast::hash).collect();
        write_intent(log, &Intent { offset: at, crcs })?;
        sectors.encrypt(chunk, at / SECTOR);
        f.write_all_at(chunk, at).map_err(&io)?;
        f.sync_data().map_err(&io)?;
        at += n as u64;
        progress(Progress { done: at - BOOT_SECTORS * SECTOR, total }).map_err(BitLockerError::Stopped)?;
    }
    // Every chunk is encrypted: the log says so before the header is written.
    write_intent(log, &Intent { offset: layout.meta[0], crcs: Vec::new() })?;
    let mut boot = vec![0u8; (BOOT_SECTORS * SECTOR) as usize];
    if &head[3..11] == b"-FVE-FS-" {
        // The header was written before a crash; the boot sectors are in the backup.
        f.read_exact_at(&mut boot, layout.backup).map_err(&io)?;
        sectors.decrypt(&mut boot, layout.backup / SECTOR);
    } else {
        boot.copy_from_slice(&head);
    }
    if &boot[3..11] != b"NTFS    " {
        return Err(BitLockerError::Refused(format!("{}: the NTFS boot sectors are lost", path.display())));
    }
    write_header(&f, path, &layout, &sectors, &boot)?;
    match std::fs::remove_file(log) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_err(log)(e)),
        _ => {}
    }
    Ok(layout)
}

/// The plain-NTFS-to-BitLocker conversion of [`convert`] in one go, with its log beside
/// nothing that matters (tests, benchmarks).
pub fn encrypt_in_place(
    path: &Path,
    password: &RecoveryPassword,
    method: Method,
    label: &str,
    log: &Path,
) -> Result<Layout, BitLockerError> {
    convert(path, password, method, label, log, |_| Ok(()))
}

/// A chunk about to be encrypted: where, and each plain sector's CRC32.
struct Intent {
    offset: u64,
    crcs: Vec<u32>,
}

fn read_intent(log: &Path) -> Result<Option<Intent>, BitLockerError> {
    let raw = match std::fs::read(log) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(log)(e)),
    };
    let bad = || BitLockerError::Refused(format!("{}: not a BitLocker conversion log", log.display()));
    if raw.len() < 24 || &raw[..8] != LOG_MAGIC {
        return Err(bad());
    }
    let (body, sum) = raw.split_at(raw.len() - 4);
    if crc32fast::hash(body) != u32::from_le_bytes(sum.try_into().expect("4 bytes")) {
        return Err(bad());
    }
    let offset = u64::from_le_bytes(body[8..16].try_into().expect("8 bytes"));
    let n = u32::from_le_bytes(body[16..20].try_into().expect("4 bytes")) as usize;
    if body.len() != 20 + 4 * n || offset % SECTOR != 0 {
        return Err(bad());
    }
    let crcs = body[20..].chunks(4).map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes"))).collect();
    Ok(Some(Intent { offset, crcs }))
}

/// Writes the intent durably: a new file, synced, renamed over the old, the folder synced.
fn write_intent(log: &Path, intent: &Intent) -> Result<(), BitLockerError> {
    let mut body = LOG_MAGIC.to_vec();
    body.extend_from_slice(&intent.offset.to_le_bytes());
    body.extend_from_slice(&(intent.crcs.len() as u32).to_le_bytes());
    for c in &intent.crcs {
        body.extend_from_slice(&c.to_le_bytes());
    }
    body.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    let tmp = log.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    f.write_all(&body).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, log).map_err(io_err(log))?;
    let dir = log.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))
}

/// Completes the chunk a crash interrupted: each sector is plain (encrypt it) or encrypted
/// (its decryption has the plain CRC32); anything else is damage.
fn finish_chunk(f: &std::fs::File, path: &Path, sectors: &Sectors, intent: &Intent) -> Result<(), BitLockerError> {
    let io = io_err(path);
    let mut chunk = vec![0u8; intent.crcs.len() * SECTOR as usize];
    f.read_exact_at(&mut chunk, intent.offset).map_err(&io)?;
    let first = intent.offset / SECTOR;
    for (i, (s, want)) in chunk.chunks_mut(SECTOR as usize).zip(&intent.crcs).enumerate() {
        let n = first + i as u64;
        if crc32fast::hash(s) == *want {
            sectors.encrypt(s, n);
            continue;
        }
        let mut plain = s.to_vec();
        sectors.decrypt(&mut plain, n);
        if crc32fast::hash(&plain) != *want {
            return Err(BitLockerError::Refused(format!(
                "{}: sector {n} changed while it was being encrypted (neither its plain nor its encrypted form); the disk must be written again",
                path.display()
            )));
        }
    }
    f.write_all_at(&chunk, intent.offset).map_err(&io)?;
    f.sync_data().map_err(&io)
}
