//! A BitLocker volume (the Windows 7 and later layout) made from a plain NTFS volume, in place.
//!
//! Layout of a volume of `size` bytes, 512-byte sectors (`docs/formats/bitlocker.md`):
//!
//! | where | what |
//! |---|---|
//! | sector 0 | the BitLocker volume header (`-FVE-FS-`, the BitLocker GUID, the three metadata offsets) |
//! | sectors 1-15 | zero |
//! | the rest, up to the reserved tail | the NTFS volume's sectors, XTS-AES encrypted, the tweak being the sector number |
//! | the reserved tail ([`RESERVED_TAIL`]) | three FVE metadata blocks of 64 KiB, each followed by its validation, then the first 16 sectors of the NTFS volume, encrypted where they lie |
//!
//! The NTFS volume must end before the reserved tail (format it with
//! [`Layout::ntfs_sectors`] sectors), so nothing NTFS writes can land on the metadata.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;

use aes::{Aes128, Aes256};
use seedship_disk::key::RecoveryPassword;
use xts_mode::{Xts128, get_tweak_default};

use crate::keys::{random, stretch_recovery_key, wrap};

pub const SECTOR: u64 = 512;
/// One metadata block's region.
pub const META_REGION: u64 = 64 << 10;
/// The boot sectors NTFS keeps at the start of its volume, moved to the backup area.
pub const BOOT_SECTORS: u64 = 16;
/// The end of the volume BitLocker keeps: three metadata regions and the boot-sector backup.
pub const RESERVED_TAIL: u64 = 4 * META_REGION;
/// BitLocker's identifier (4967d63b-2e29-4ad8-8399-f6a339e3d001) as stored.
pub const BITLOCKER_GUID: [u8; 16] =
    [0x3b, 0xd6, 0x67, 0x49, 0x29, 0x2e, 0xd8, 0x4a, 0x83, 0x99, 0xf6, 0xa3, 0x39, 0xe3, 0xd0, 0x01];

/// How the sectors are encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Microsoft's Data Box Disks.
    XtsAes128,
    /// Customer disks (the Import/Export tool's choice).
    XtsAes256,
}

impl Method {
    /// The encryption method's value in the metadata.
    pub fn code(self) -> u16 {
        match self {
            Method::XtsAes128 => 0x8004,
            Method::XtsAes256 => 0x8005,
        }
    }

    /// The full volume encryption key's length: both XTS keys.
    fn fvek_len(self) -> usize {
        match self {
            Method::XtsAes128 => 32,
            Method::XtsAes256 => 64,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BitLockerError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{0}")]
    Refused(String),
}

/// Where the metadata blocks and the boot-sector backup are on a volume of `size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub size: u64,
    pub meta: [u64; 3],
    pub backup: u64,
}

impl Layout {
    /// How many 512-byte sectors the NTFS volume on a disk of `size` bytes may have: it must
    /// end where the reserved tail begins (format it with this count).
    pub fn ntfs_sectors(size: u64) -> u64 {
        Layout::at_end(size / SECTOR * SECTOR).meta[0] / SECTOR
    }

    /// The reserved tail of a volume of `size` bytes.
    pub fn at_end(size: u64) -> Layout {
        let tail = (size - RESERVED_TAIL) / META_REGION * META_REGION;
        Layout { size, meta: [tail, tail + META_REGION, tail + 2 * META_REGION], backup: tail + 3 * META_REGION }
    }
}

/// What one volume's metadata is made of. The keys are never written in the clear, never
/// logged.
struct Protected {
    method: Method,
    vmk: [u8; 32],
    fvek: Vec<u8>,
    salt: [u8; 16],
    /// The recovery key, stretched with `salt`: it wraps the VMK.
    stretched: [u8; 32],
    volume_id: [u8; 16],
    vmk_id: [u8; 16],
    /// Creation, as a FILETIME.
    time: u64,
}

fn filetime_now() -> u64 {
    let unix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    (unix.as_secs() + 11_644_473_600) * 10_000_000 + u64::from(unix.subsec_nanos() / 100)
}

/// The date of a FILETIME as Windows writes it in a description (MM/DD/YYYY).
fn filetime_date(ft: u64) -> String {
    let days = (ft / 10_000_000).saturating_sub(11_644_473_600) / 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{m:02}/{d:02}/{y}")
}

/// A datum: size, entry type, value type, version 1, then `data`.
fn datum(entry: u16, value: u16, data: &[u8]) -> Vec<u8> {
    let mut d = Vec::with_capacity(8 + data.len());
    d.extend_from_slice(&((8 + data.len()) as u16).to_le_bytes());
    d.extend_from_slice(&entry.to_le_bytes());
    d.extend_from_slice(&value.to_le_bytes());
    d.extend_from_slice(&1u16.to_le_bytes());
    d.extend_from_slice(data);
    d
}

/// A key datum (value type 1): the method, then the key.
fn key_datum(method: u16, key: &[u8]) -> Vec<u8> {
    let mut data = method.to_le_bytes().to_vec();
    data.extend_from_slice(&0u16.to_le_bytes());
    data.extend_from_slice(key);
    datum(0, 1, &data)
}

/// An AES-CCM datum (value type 5) of `entry` type: the nonce (a FILETIME and a counter),
/// then `plain` wrapped under `key`.
fn ccm_datum(entry: u16, key: &[u8; 32], time: u64, counter: u32, plain: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; 12];
    nonce[..8].copy_from_slice(&time.to_le_bytes());
    nonce[8..].copy_from_slice(&counter.to_le_bytes());
    let mut data = nonce.to_vec();
    data.extend_from_slice(&wrap(key, &nonce, plain));
    datum(entry, 5, &data)
}

fn utf16z(s: &str) -> Vec<u8> {
    s.encode_utf16().chain(std::iter::once(0)).flat_map(|c| c.to_le_bytes()).collect()
}

/// One FVE metadata block (block header, metadata header, entries) and its validation.
fn metadata_block(layout: &Layout, p: &Protected) -> Vec<u8> {
    let (method, time) = (p.method, p.time);
    // The recovery-password protector: the VMK under the stretched recovery key.
    let mut vmk = p.vmk_id.to_vec();
    vmk.extend_from_slice(&time.to_le_bytes());
    vmk.extend_from_slice(&0u16.to_le_bytes());
    vmk.extend_from_slice(&0x0800u16.to_le_bytes());
    vmk.extend(datum(0, 2, &utf16z("DiskPassword")));
    let mut stretch = 0x1000u16.to_le_bytes().to_vec();
    stretch.extend_from_slice(&0u16.to_le_bytes());
    stretch.extend_from_slice(&p.salt);
    vmk.extend(datum(0, 3, &stretch));
    vmk.extend(ccm_datum(0, &p.stretched, time, 1, &key_datum(0x2000, &p.vmk)));
    // A description, as Windows writes one (computer, volume, date); libbde shows it.
    let mut entries = datum(7, 2, &utf16z(&format!("seedship {}", filetime_date(time))));
    entries.extend(datum(2, 8, &vmk));
    // The full volume encryption key under the VMK.
    entries.extend(ccm_datum(3, &p.vmk, time, 2, &key_datum(method.code(), &p.fvek)));
    // Where the NTFS boot sectors are kept, and how many bytes.
    let mut virt = layout.backup.to_le_bytes().to_vec();
    virt.extend_from_slice(&(BOOT_SECTORS * SECTOR).to_le_bytes());
    entries.extend(datum(0x000f, 0x000f, &virt));

    let dataset_len = 0x30 + entries.len();
    let mut dataset = Vec::with_capacity(dataset_len);
    dataset.extend_from_slice(&(dataset_len as u32).to_le_bytes());
    dataset.extend_from_slice(&1u32.to_le_bytes());
    dataset.extend_from_slice(&0x30u32.to_le_bytes());
    dataset.extend_from_slice(&(dataset_len as u32).to_le_bytes());
    dataset.extend_from_slice(&p.volume_id);
    dataset.extend_from_slice(&3u32.to_le_bytes()); // the next nonce counter
    dataset.extend_from_slice(&u32::from(method.code()).to_le_bytes());
    dataset.extend_from_slice(&time.to_le_bytes());
    dataset.extend(entries);

    let total = (64 + dataset.len()).div_ceil(16) * 16;
    let mut block = Vec::with_capacity(total);
    block.extend_from_slice(b"-FVE-FS-");
    block.extend_from_slice(&((total / 16) as u16).to_le_bytes());
    block.extend_from_slice(&2u16.to_le_bytes()); // version: Windows 7 and later
    block.extend_from_slice(&4u16.to_le_bytes()); // state: encrypted
    block.extend_from_slice(&4u16.to_le_bytes());
    block.extend_from_slice(&layout.size.to_le_bytes()); // encrypted volume size: all of it
    block.extend_from_slice(&0u32.to_le_bytes());
    block.extend_from_slice(&(BOOT_SECTORS as u32).to_le_bytes());
    for m in layout.meta {
        block.extend_from_slice(&m.to_le_bytes());
    }
    block.extend_from_slice(&layout.backup.to_le_bytes());
    block.extend(dataset);
    block.resize(total, 0);

    // The validation: a CRC32 of the block, and its SHA-256 under the VMK.
    use sha2::Digest;
    let sha = sha2::Sha256::digest(&block);
    let proof = ccm_datum(0, &p.vmk, time, 3, &key_datum(0x2000, &sha));
    let mut out = block.clone();
    out.extend_from_slice(&((8 + proof.len()) as u16).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&block).to_le_bytes());
    out.extend(proof);
    out
}

/// The BitLocker volume header (sector 0), from the NTFS boot sector it replaces.
fn volume_header(layout: &Layout, ntfs_boot: &[u8]) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..3].copy_from_slice(&[0xeb, 0x58, 0x90]);
    h[3..11].copy_from_slice(b"-FVE-FS-");
    h[11..13].copy_from_slice(&(SECTOR as u16).to_le_bytes());
    h[13] = if ntfs_boot[13] == 0 { 8 } else { ntfs_boot[13] }; // sectors per cluster, as NTFS had it (4 KiB clusters on an empty volume)
    h[21] = 0xf8;
    h[24..26].copy_from_slice(&0x3fu16.to_le_bytes());
    h[26..28].copy_from_slice(&0xffu16.to_le_bytes());
    h[36..40].copy_from_slice(&0x1fe0u32.to_le_bytes());
    h[48..50].copy_from_slice(&1u16.to_le_bytes());
    h[50..52].copy_from_slice(&6u16.to_le_bytes());
    h[64] = 0x80;
    h[66] = 0x29;
    h[67..71].copy_from_slice(&ntfs_boot[72..76]); // the NTFS serial's low half
    h[71..82].copy_from_slice(b"NO NAME    ");
    h[82..90].copy_from_slice(b"FAT32   ");
    h[160..176].copy_from_slice(&BITLOCKER_GUID);
    for (i, m) in layout.meta.iter().enumerate() {
        h[176 + 8 * i..184 + 8 * i].copy_from_slice(&m.to_le_bytes());
    }
    h[510] = 0x55;
    h[511] = 0xaa;
    h
}

/// The sector cipher of `method` over `fvek`.
enum Sectors {
    A128(Box<Xts128<Aes128>>),
    A256(Box<Xts128<Aes256>>),
}

impl Sectors {
    fn new(method: Method, fvek: &[u8]) -> Sectors {
        use aes::cipher::KeyInit;
        match method {
            Method::XtsAes128 => Sectors::A128(Box::new(Xts128::new(
                Aes128::new_from_slice(&fvek[..16]).expect("16 bytes"),
                Aes128::new_from_slice(&fvek[16..32]).expect("16 bytes"),
            ))),
            Method::XtsAes256 => Sectors::A256(Box::new(Xts128::new(
                Aes256::new_from_slice(&fvek[..32]).expect("32 bytes"),
                Aes256::new_from_slice(&fvek[32..64]).expect("32 bytes"),
            ))),
        }
    }

    /// Encrypts whole sectors in place, the first being sector `first`.
    fn encrypt(&self, buf: &mut [u8], first: u64) {
        match self {
            Sectors::A128(x) => x.encrypt_area(buf, SECTOR as usize, u128::from(first), get_tweak_default),
            Sectors::A256(x) => x.encrypt_area(buf, SECTOR as usize, u128::from(first), get_tweak_default),
        }
    }
}

/// The disk or image at `path`, its size in whole sectors, and the layout of a volume on it.
fn open_volume(path: &Path) -> Result<(std::fs::File, Layout), BitLockerError> {
    let io = |source| BitLockerError::Io { path: path.display().to_string(), source };
    let f = OpenOptions::new().read(true).write(true).open(path).map_err(io)?;
    let size = f.metadata().map_err(io)?.len() / SECTOR * SECTOR;
    if size < 2 * RESERVED_TAIL {
        return Err(BitLockerError::Refused(format!("{} is too small for a BitLocker volume", path.display())));
    }
    Ok((f, Layout::at_end(size)))
}

/// Fresh random keys for a volume protected by `password`.
fn protect(password: &RecoveryPassword, method: Method) -> Protected {
    let mut fvek = random::<64>().to_vec();
    fvek.truncate(method.fvek_len());
    let salt = random::<16>();
    Protected {
        method,
        vmk: random::<32>(),
        fvek,
        salt,
        stretched: stretch_recovery_key(&password.bytes(), &salt),
        volume_id: random::<16>(),
        vmk_id: random::<16>(),
        time: filetime_now(),
    }
}

/// Writes what makes the volume BitLocker: the boot sectors `boot` (what a reader shows as
/// the first 16 sectors), encrypted, in the backup area; the three metadata blocks; the
/// volume header. Then syncs.
fn seal(f: &std::fs::File, path: &Path, layout: &Layout, p: &Protected, boot: &[u8]) -> Result<(), BitLockerError> {
    let io = |source| BitLockerError::Io { path: path.display().to_string(), source };
    let mut backup = boot.to_vec();
    Sectors::new(p.method, &p.fvek).encrypt(&mut backup, layout.backup / SECTOR);
    f.write_all_at(&backup, layout.backup).map_err(io)?;
    let block = metadata_block(layout, p);
    for m in layout.meta {
        let mut region = vec![0u8; META_REGION as usize];
        region[..block.len()].copy_from_slice(&block);
        f.write_all_at(&region, m).map_err(io)?;
    }
    let mut head = vec![0u8; (BOOT_SECTORS * SECTOR) as usize];
    head[..512].copy_from_slice(&volume_header(layout, boot));
    f.write_all_at(&head, 0).map_err(io)?;
    f.sync_all().map_err(io)
}

/// Turns the plain NTFS volume on `path` (a device or an image, its NTFS volume ending
/// before the reserved tail: [`Layout::ntfs_sectors`]) into a BitLocker volume in place,
/// protected by `password`, with fresh random keys. Every sector of the NTFS volume is
/// encrypted.
pub fn encrypt_in_place(path: &Path, password: &RecoveryPassword, method: Method) -> Result<Layout, BitLockerError> {
    let io = |source| BitLockerError::Io { path: path.display().to_string(), source };
    let (f, layout) = open_volume(path)?;
    let mut boot = vec![0u8; (BOOT_SECTORS * SECTOR) as usize];
    f.read_exact_at(&mut boot, 0).map_err(io)?;
    if &boot[3..11] != b"NTFS    " {
        return Err(BitLockerError::Refused(format!("{} does not start with an NTFS volume", path.display())));
    }
    let ntfs_sectors = u64::from_le_bytes(boot[40..48].try_into().expect("8 bytes")) + 1;
    if ntfs_sectors * SECTOR > layout.meta[0] {
        return Err(BitLockerError::Refused(format!(
            "the NTFS volume on {} reaches into the last {} bytes, which BitLocker keeps for itself",
            path.display(),
            layout.size - layout.meta[0]
        )));
    }
    let p = protect(password, method);
    // The NTFS volume past its boot sectors is encrypted where it is, 1 MiB at a time.
    let sectors = Sectors::new(method, &p.fvek);
    let mut buf = vec![0u8; 1 << 20];
    let mut at = BOOT_SECTORS * SECTOR;
    while at < layout.meta[0] {
        let n = (layout.meta[0] - at).min(buf.len() as u64) as usize;
        let chunk = &mut buf[..n];
        f.read_exact_at(chunk, at).map_err(io)?;
        sectors.encrypt(chunk, at / SECTOR);
        f.write_all_at(chunk, at).map_err(io)?;
        at += n as u64;
    }
    seal(&f, path, &layout, &p, &boot)?;
    Ok(layout)
}

/// Makes an empty BitLocker volume on `path`, protected by `password`, without touching its
/// data area: only the volume header, the metadata and the (zero) boot sectors are written.
/// Unlocked read-write (dislocker-fuse), it is a blank volume to format as NTFS with
/// [`Layout::ntfs_sectors`] sectors; what it held before reads as noise.
pub fn create_empty(path: &Path, password: &RecoveryPassword, method: Method) -> Result<Layout, BitLockerError> {
    let (f, layout) = open_volume(path)?;
    let p = protect(password, method);
    seal(&f, path, &layout, &p, &vec![0u8; (BOOT_SECTORS * SECTOR) as usize])?;
    Ok(layout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_is_aligned_and_ntfs_ends_before_it_on_any_disk_size() {
        for size in [32u64 << 20, (32 << 20) + 12_345, 8_001_563_222_016] {
            let l = Layout::at_end(size / SECTOR * SECTOR);
            assert_eq!(l.meta[0] % META_REGION, 0);
            assert!(l.backup + BOOT_SECTORS * SECTOR <= size, "{size}: {l:?}");
            assert!(size - l.meta[0] < RESERVED_TAIL + META_REGION, "{size}: at most 64 KiB more is kept");
            assert_eq!(Layout::ntfs_sectors(size) * SECTOR, l.meta[0]);
        }
    }
}
