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

use crate::keys::{random, stretch_recovery_key, stretch_user_password, wrap};

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
    /// The caller stopped a conversion (it resumes where it stopped).
    #[error("stopped: {0}")]
    Stopped(String),
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
pub(crate) struct Protected {
    pub(crate) method: Method,
    vmk: [u8; 32],
    pub(crate) fvek: Vec<u8>,
    /// The recovery-password protector: its salt and the recovery key stretched with it,
    /// which wraps the VMK. Every volume seedship makes has one; only a test of a volume
    /// without one (Azure's `BitLockerProtectorNotFound`) leaves it out.
    recovery: Option<([u8; 16], [u8; 32])>,
    /// A user password's protector (a Data Box passkey): its salt and stretched key.
    user: Option<([u8; 16], [u8; 32])>,
    volume_id: [u8; 16],
    vmk_id: [u8; 16],
    /// Creation, as a FILETIME.
    time: u64,
    /// What the description names the volume (the drive id), before "seedship" and the date.
    label: String,
}

/// The AES-CCM nonce counters of the wrapped keys in one volume's metadata.
const NONCE_RECOVERY_VMK: u32 = 1;
const NONCE_USER_VMK: u32 = 2;
const NONCE_FVEK: u32 = 3;
const NONCE_VALIDATION: u32 = 4;
/// The description datum's entry and value types.
const DESCRIPTION: (u16, u16) = (7, 2);
/// Protection types of a VMK.
const PROTECTION_RECOVERY_PASSWORD: u16 = 0x0800;
const PROTECTION_PASSWORD: u16 = 0x2000;

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

/// A VMK datum (value type 8) of `protection`: its identifier, time, and the VMK under
/// `key` (stretched with `salt`), after `name` when given.
fn vmk_datum(
    p: &Protected,
    protection: u16,
    name: Option<&str>,
    salt: &[u8; 16],
    key: &[u8; 32],
    nonce: u32,
) -> Vec<u8> {
    let mut vmk = p.vmk_id.to_vec();
    if protection == PROTECTION_PASSWORD {
        // Its own identifier: the last byte differs from the recovery protector's.
        let last = vmk.len() - 1;
        vmk[last] ^= 0x5a;
    }
    vmk.extend_from_slice(&p.time.to_le_bytes());
    vmk.extend_from_slice(&0u16.to_le_bytes());
    vmk.extend_from_slice(&protection.to_le_bytes());
    if let Some(name) = name {
        vmk.extend(datum(0, 2, &utf16z(name)));
    }
    let mut stretch = 0x1000u16.to_le_bytes().to_vec();
    stretch.extend_from_slice(&0u16.to_le_bytes());
    stretch.extend_from_slice(salt);
    vmk.extend(datum(0, 3, &stretch));
    vmk.extend(ccm_datum(0, key, p.time, nonce, &key_datum(0x2000, &p.vmk)));
    datum(2, 8, &vmk)
}

/// One FVE metadata block (block header, metadata header, entries) and its validation.
pub(crate) fn metadata_block(layout: &Layout, p: &Protected) -> Vec<u8> {
    let (method, time) = (p.method, p.time);
    // A description, as Windows writes one ("<computer> <volume> <date>"; here the drive id,
    // "seedship", the date): libbde shows it, and it names the disk without the key.
    let mut entries =
        datum(DESCRIPTION.0, DESCRIPTION.1, &utf16z(&format!("{} seedship {}", p.label, filetime_date(time))));
    // The recovery-password protector: the VMK under the stretched recovery key.
    if let Some((salt, key)) = &p.recovery {
        entries.extend(vmk_datum(p, PROTECTION_RECOVERY_PASSWORD, Some("DiskPassword"), salt, key, NONCE_RECOVERY_VMK));
    }
    // A password protector (Data Box Disks: the order's passkey).
    if let Some((salt, key)) = &p.user {
        entries.extend(vmk_datum(p, PROTECTION_PASSWORD, None, salt, key, NONCE_USER_VMK));
    }
    // The full volume encryption key under the VMK.
    entries.extend(ccm_datum(3, &p.vmk, time, NONCE_FVEK, &key_datum(method.code(), &p.fvek)));
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
    dataset.extend_from_slice(&(NONCE_VALIDATION + 1).to_le_bytes()); // the next nonce counter
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
    let proof = ccm_datum(0, &p.vmk, time, NONCE_VALIDATION, &key_datum(0x2000, &sha));
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
pub(crate) enum Sectors {
    A128(Box<Xts128<Aes128>>),
    A256(Box<Xts128<Aes256>>),
}

impl Sectors {
    pub(crate) fn new(method: Method, fvek: &[u8]) -> Sectors {
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
    pub(crate) fn encrypt(&self, buf: &mut [u8], first: u64) {
        match self {
            Sectors::A128(x) => x.encrypt_area(buf, SECTOR as usize, u128::from(first), get_tweak_default),
            Sectors::A256(x) => x.encrypt_area(buf, SECTOR as usize, u128::from(first), get_tweak_default),
        }
    }

    /// Decrypts whole sectors in place, the first being sector `first`.
    pub(crate) fn decrypt(&self, buf: &mut [u8], first: u64) {
        match self {
            Sectors::A128(x) => x.decrypt_area(buf, SECTOR as usize, u128::from(first), get_tweak_default),
            Sectors::A256(x) => x.decrypt_area(buf, SECTOR as usize, u128::from(first), get_tweak_default),
        }
    }
}

pub(crate) fn io_err(path: &Path) -> impl Fn(std::io::Error) -> BitLockerError + '_ {
    move |source| BitLockerError::Io { path: path.display().to_string(), source }
}

/// The disk or image at `path` opened for writing, and the layout of a volume on all of it
/// (a block device's size is where its end is, not its metadata's length).
pub(crate) fn open_volume(path: &Path) -> Result<(std::fs::File, Layout), BitLockerError> {
    use std::io::{Seek, SeekFrom};
    let io = io_err(path);
    let mut f = OpenOptions::new().read(true).write(true).open(path).map_err(&io)?;
    let size = f.seek(SeekFrom::End(0)).map_err(&io)? / SECTOR * SECTOR;
    if size < 2 * RESERVED_TAIL {
        return Err(BitLockerError::Refused(format!("{} is too small for a BitLocker volume", path.display())));
    }
    Ok((f, Layout::at_end(size)))
}

/// Fresh random keys for a volume protected by `password` (a recovery password) and, when
/// given, by the user password `passkey` as well.
pub(crate) fn protect(
    password: Option<&RecoveryPassword>,
    passkey: Option<&str>,
    method: Method,
    label: &str,
) -> Protected {
    let mut fvek = random::<64>().to_vec();
    fvek.truncate(method.fvek_len());
    Protected {
        method,
        vmk: random::<32>(),
        fvek,
        recovery: password.map(|pw| {
            let salt = random::<16>();
            (salt, stretch_recovery_key(&pw.bytes(), &salt))
        }),
        user: passkey.map(|pk| {
            let salt = random::<16>();
            (salt, stretch_user_password(pk, &salt))
        }),
        volume_id: random::<16>(),
        vmk_id: random::<16>(),
        time: filetime_now(),
        label: label.split_whitespace().collect::<Vec<_>>().join("_"),
    }
}

/// Writes the three metadata blocks into the reserved tail, then syncs.
pub(crate) fn write_metadata(
    f: &std::fs::File,
    path: &Path,
    layout: &Layout,
    p: &Protected,
) -> Result<(), BitLockerError> {
    let io = io_err(path);
    let block = metadata_block(layout, p);
    for m in layout.meta {
        let mut region = vec![0u8; META_REGION as usize];
        region[..block.len()].copy_from_slice(&block);
        f.write_all_at(&region, m).map_err(&io)?;
    }
    f.sync_all().map_err(&io)
}

/// Writes the boot sectors `boot` (what a reader shows as the first 16 sectors), encrypted,
/// into the backup area, syncs, then the volume header over them, and syncs: once the header
/// is there, the boot sectors are in the backup.
pub(crate) fn write_header(
    f: &std::fs::File,
    path: &Path,
    layout: &Layout,
    sectors: &Sectors,
    boot: &[u8],
) -> Result<(), BitLockerError> {
    let io = io_err(path);
    let mut backup = boot.to_vec();
    sectors.encrypt(&mut backup, layout.backup / SECTOR);
    f.write_all_at(&backup, layout.backup).map_err(&io)?;
    f.sync_all().map_err(&io)?;
    let mut head = vec![0u8; (BOOT_SECTORS * SECTOR) as usize];
    head[..512].copy_from_slice(&volume_header(layout, boot));
    f.write_all_at(&head, 0).map_err(&io)?;
    f.sync_all().map_err(&io)
}

/// The datums of `buf`, one after another: (entry type, value type, data after the header).
fn datums(mut buf: &[u8]) -> Vec<(u16, u16, &[u8])> {
    let mut out = Vec::new();
    while buf.len() >= 8 {
        let size = usize::from(u16::from_le_bytes([buf[0], buf[1]]));
        if size < 8 || size > buf.len() {
            break;
        }
        let entry = u16::from_le_bytes([buf[2], buf[3]]);
        let value = u16::from_le_bytes([buf[4], buf[5]]);
        out.push((entry, value, &buf[8..size]));
        buf = &buf[size..];
    }
    out
}

/// An AES-CCM datum's contents unwrapped under `key`: the key datum's method and key.
fn unwrap_key(ccm: &[u8], key: &[u8; 32]) -> Option<(u16, Vec<u8>)> {
    let nonce: [u8; 12] = ccm.get(..12)?.try_into().ok()?;
    let plain = crate::keys::unwrap(key, &nonce, &ccm[12..])?;
    let (_, value, data) = *datums(&plain).first()?;
    (value == 1 && data.len() > 4).then(|| (u16::from_le_bytes([data[0], data[1]]), data[4..].to_vec()))
}

/// The first metadata block in `layout`'s tail that passes its CRC32: its dataset's bytes.
fn metadata_dataset(f: &std::fs::File, path: &Path, layout: &Layout) -> Result<Vec<u8>, BitLockerError> {
    let mut why = String::from("no BitLocker metadata block");
    for m in layout.meta {
        let mut region = vec![0u8; META_REGION as usize];
        f.read_exact_at(&mut region, m).map_err(io_err(path))?;
        if &region[..8] != b"-FVE-FS-" {
            continue;
        }
        let total = usize::from(u16::from_le_bytes([region[8], region[9]])) * 16;
        let (Some(block), Some(crc)) = (region.get(..total), region.get(total + 4..total + 8)) else { continue };
        if total < 64 + 0x30 || crc32fast::hash(block) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
            why = "every metadata block fails its CRC32".into();
            continue;
        }
        let dataset = &block[64..];
        let len = (u32::from_le_bytes(dataset[..4].try_into().expect("4 bytes")) as usize).clamp(0x30, dataset.len());
        return Ok(dataset[..len].to_vec());
    }
    Err(BitLockerError::Refused(format!("{}: {why}", path.display())))
}

/// The drive id the description of the BitLocker volume on `path` names (its first word),
/// read without a key; `None` when it is not a BitLocker volume of ours.
pub fn label(path: &Path) -> Option<String> {
    use std::io::{Seek, SeekFrom};
    let mut f = std::fs::File::open(path).ok()?;
    let mut head = [0u8; 11];
    f.read_exact_at(&mut head, 0).ok()?;
    if &head[3..11] != b"-FVE-FS-" {
        return None;
    }
    let size = f.seek(SeekFrom::End(0)).ok()? / SECTOR * SECTOR;
    if size < 2 * RESERVED_TAIL {
        return None;
    }
    let dataset = metadata_dataset(&f, path, &Layout::at_end(size)).ok()?;
    let entries = datums(&dataset[0x30..]);
    let (_, _, text) = entries.iter().find(|d| (d.0, d.1) == DESCRIPTION)?;
    let units: Vec<u16> =
        text.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).take_while(|u| *u != 0).collect();
    let s = String::from_utf16(&units).ok()?;
    let mut words = s.split_whitespace();
    let first = words.next()?.to_string();
    (words.next() == Some("seedship")).then_some(first)
}

/// The method and FVEK of the volume whose metadata is in `layout`'s tail, unlocked with
/// the recovery password: how a conversion interrupted by a crash finds its keys again.
/// Reads our own metadata only (the readers in the tests are what proves it is BitLocker).
pub(crate) fn read_keys(
    f: &std::fs::File,
    path: &Path,
    layout: &Layout,
    password: &RecoveryPassword,
) -> Result<(Method, Vec<u8>), BitLockerError> {
    let dataset = metadata_dataset(f, path, layout)?;
    let entries = datums(&dataset[0x30..]);
    let mut vmk = None;
    for (entry, value, data) in &entries {
        if (*entry, *value) != (2, 8) || data.len() < 28 {
            continue;
        }
        if u16::from_le_bytes([data[26], data[27]]) != PROTECTION_RECOVERY_PASSWORD {
            continue;
        }
        let nested = datums(&data[28..]);
        let salt = nested.iter().find(|d| d.1 == 3).and_then(|d| d.2.get(4..20));
        let ccm = nested.iter().find(|d| d.1 == 5).map(|d| d.2);
        if let (Some(salt), Some(ccm)) = (salt, ccm) {
            let key = stretch_recovery_key(&password.bytes(), salt.try_into().expect("16 bytes"));
            vmk = unwrap_key(ccm, &key).map(|(_, k)| k);
        }
    }
    let Some(vmk) = vmk.and_then(|v| <[u8; 32]>::try_from(v.as_slice()).ok()) else {
        return Err(BitLockerError::Refused(format!(
            "the recovery password does not open the BitLocker metadata on {}",
            path.display()
        )));
    };
    match entries.iter().find(|d| (d.0, d.1) == (3, 5)).and_then(|d| unwrap_key(d.2, &vmk)) {
        Some((0x8004, fvek)) if fvek.len() == 32 => Ok((Method::XtsAes128, fvek)),
        Some((0x8005, fvek)) if fvek.len() == 64 => Ok((Method::XtsAes256, fvek)),
        _ => Err(BitLockerError::Refused(format!("{}: the metadata holds no XTS-AES key", path.display()))),
    }
}

/// Makes an empty BitLocker volume on `path`, protected by `password` (and by the user
/// password `passkey` when given), without touching its data area: only the metadata, the
/// (zero) boot sectors and the volume header are written. Unlocked read-write
/// (dislocker-fuse), it is a blank volume to format as NTFS with [`Layout::ntfs_sectors`]
/// sectors; what it held before reads as noise.
pub fn create_empty(
    path: &Path,
    password: &RecoveryPassword,
    passkey: Option<&str>,
    method: Method,
    label: &str,
) -> Result<Layout, BitLockerError> {
    create(path, Some(password), passkey, method, label)
}

/// An empty BitLocker volume that only a user password (`passkey`) opens, without the
/// numerical-password protector Azure's import needs: what a customer who turned BitLocker on
/// with a password only would send (`BitLockerProtectorNotFound`). For tests of that refusal.
pub fn create_empty_password_only(
    path: &Path,
    passkey: &str,
    method: Method,
    label: &str,
) -> Result<Layout, BitLockerError> {
    create(path, None, Some(passkey), method, label)
}

fn create(
    path: &Path,
    password: Option<&RecoveryPassword>,
    passkey: Option<&str>,
    method: Method,
    label: &str,
) -> Result<Layout, BitLockerError> {
    let (f, layout) = open_volume(path)?;
    let p = protect(password, passkey, method, label);
    write_metadata(&f, path, &layout, &p)?;
    let sectors = Sectors::new(method, &p.fvek);
    write_header(&f, path, &layout, &sectors, &vec![0u8; (BOOT_SECTORS * SECTOR) as usize])?;
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
