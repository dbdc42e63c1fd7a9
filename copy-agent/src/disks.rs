//! Finding the shipping disks and telling what each holds.
//!
//! A disk is given to the station in one of two ways:
//! - a block device or an image file (customer disks): the station formats it as NTFS;
//! - a folder where a Data Box Disk is mounted, unlocked, by Microsoft's unlock tool: the
//!   station writes through that mount and reads the volume back from the device behind it
//!   (found in `/proc/self/mountinfo`).

use std::io::Read;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::config::Station;
use crate::media::{self, DiskId};

/// One disk as the station sees it now.
#[derive(Debug, Clone)]
pub struct Disk {
    /// As given: a device, an image, or a mount point.
    pub path: PathBuf,
    /// The raw volume: the device or image (for a mount point, the one mounted there).
    pub device: PathBuf,
    /// Where the volume is mounted already (a Data Box Disk as delivered).
    pub mounted_at: Option<PathBuf>,
    pub capacity: u64,
    /// Hardware serial (block devices), usable as a drive id.
    pub serial: Option<String>,
    pub holds: Holds,
}

#[derive(Debug, Clone)]
pub enum Holds {
    /// Nothing on it (customer disk), or an unlocked Data Box Disk with its `BlockBlob` folder
    /// and no seedship disk on it.
    Blank,
    /// A seedship disk (of any seed).
    Seedship(DiskId),
    /// Cannot be used: why, and what to do.
    Unusable(String),
}

/// Every disk path to consider: the configured ones, the entries of `disk_dir`, and `extra`
/// (typed at the prompt, or remembered from the disk set), each once, in that order.
pub fn candidates(st: &Station, extra: &[PathBuf]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = st.disks.clone();
    if let Some(dir) = &st.disk_dir
        && let Ok(rd) = std::fs::read_dir(dir)
    {
        let mut found: Vec<PathBuf> = rd
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
            .collect();
        found.sort();
        out.extend(found);
    }
    out.extend(extra.iter().cloned());
    let mut seen = std::collections::HashSet::new();
    out.retain(|p| seen.insert(std::fs::canonicalize(p).unwrap_or_else(|_| p.clone())));
    out
}

/// How much of the start of a disk must be zero for it to count as blank.
const BLANK_PROBE: usize = 1 << 20;

/// Looks at one disk: size, serial, and what it holds.
pub fn probe(path: &Path) -> Disk {
    let unusable = |why: String| Disk {
        path: path.to_path_buf(),
        device: path.to_path_buf(),
        mounted_at: None,
        capacity: 0,
        serial: None,
        holds: Holds::Unusable(why),
    };
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => return unusable(format!("cannot be opened: {e}")),
    };
    if meta.is_dir() {
        return probe_mount(path).unwrap_or_else(unusable);
    }
    let (capacity, serial) = match size_and_serial(path) {
        Ok(v) => v,
        Err(e) => return unusable(e),
    };
    if capacity == 0 {
        return unusable("has no capacity (an empty image file? give it a size, e.g. `truncate -s 1T`)".into());
    }
    let holds = match media::probe(path) {
        Some(id) => Holds::Seedship(id),
        None => match start_of(path) {
            Ok(start) if start.iter().all(|b| *b == 0) => Holds::Blank,
            Ok(start) => Holds::Unusable(format!(
                "holds {} that is not a seedship disk; wipe it explicitly (copy-agent wipe) to use it",
                what_is_on(&start)
            )),
            Err(e) => Holds::Unusable(format!("cannot be read: {e}")),
        },
    };
    Disk { path: path.to_path_buf(), device: path.to_path_buf(), mounted_at: None, capacity, serial, holds }
}

/// A folder: an unlocked Data Box Disk mounted there.
fn probe_mount(dir: &Path) -> Result<Disk, String> {
    let Some(device) = mounted_device(dir) else {
        return Err("is a folder with nothing mounted there: unlock the Data Box Disk (Microsoft's \
                    DataBoxDiskUnlock tool) and mount it there"
            .into());
    };
    let (capacity, serial) =
        size_and_serial(&device).map_err(|e| format!("is mounted from {}, which {e}", device.display()))?;
    // An image named `<serial>.img` names its disk; else the device's serial; else the folder
    // (a volume the station unlocked itself is mounted at `mnt/<serial>`).
    let serial = serial
        .or_else(|| {
            (device.is_file() && device.file_name().is_none_or(|n| n != seedship_bitlocker::dislocker::FILE))
                .then(|| device.file_stem().and_then(|s| drive_id_from_serial(&s.to_string_lossy())))
                .flatten()
        })
        .or_else(|| dir.file_name().and_then(|s| drive_id_from_serial(&s.to_string_lossy())));
    let id = dir.join(media::ID_FILE.trim_start_matches('\\').replace('\\', "/"));
    let holds = match std::fs::read(&id) {
        Ok(raw) => match serde_json::from_slice::<DiskId>(&raw) {
            Ok(h) => Holds::Seedship(h),
            Err(e) => Holds::Unusable(format!("{} is unreadable ({e}); wipe the disk's seedship folder", id.display())),
        },
        Err(_) if dir.join("BlockBlob").is_dir() => Holds::Blank,
        Err(_) => Holds::Unusable(
            "has no BlockBlob folder: it is not an unlocked Data Box Disk of a storage-account order".into(),
        ),
    };
    Ok(Disk { path: dir.to_path_buf(), device, mounted_at: Some(dir.to_path_buf()), capacity, serial, holds })
}

/// The device or image mounted at `dir`, from `/proc/self/mountinfo`.
pub fn mounted_device(dir: &Path) -> Option<PathBuf> {
    let dir = std::fs::canonicalize(dir).ok()?;
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    // Fields: id parent major:minor root mount-point options [optional...] - fstype source super-options
    info.lines().rev().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        let at = unescape(f.get(4)?);
        let dash = f.iter().position(|x| *x == "-")?;
        let source = unescape(f.get(dash + 2)?);
        (Path::new(&at) == dir && source.starts_with('/')).then(|| PathBuf::from(source))
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The serial of a locked BitLocker disk at `path` (a device or an image, not a folder): its
/// hardware serial, else an image's name (`<serial>.img`, as Data Box Disks are delivered),
/// else the drive its BitLocker description names. `None` when it is not BitLocker.
pub fn locked_serial(path: &Path) -> Option<String> {
    if path.is_dir() || !seedship_bitlocker::dislocker::is_bitlocker(path).unwrap_or(false) {
        return None;
    }
    let (_, serial) = size_and_serial(path).ok()?;
    serial
        .or_else(|| {
            path.is_file().then(|| path.file_stem().and_then(|s| drive_id_from_serial(&s.to_string_lossy()))).flatten()
        })
        .or_else(|| seedship_bitlocker::volume::label(path))
}

/// The first MiB of the disk (boot sector, partition tables), or less on a smaller one.
fn start_of(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut f = std::fs::File::open(path)?;
    let mut b = vec![0u8; BLANK_PROBE];
    let mut n = 0;
    while n < b.len() {
        match f.read(&mut b[n..])? {
            0 => break,
            k => n += k,
        }
    }
    b.truncate(n);
    Ok(b)
}

/// What the start of a disk that is not blank says it holds.
fn what_is_on(start: &[u8]) -> &'static str {
    let at = |range: std::ops::Range<usize>| start.get(range).unwrap_or_default();
    if at(3..11) == b"-FVE-FS-" || at(3..11) == b"MSWIN4.1" && start.windows(8).any(|w| w == b"-FVE-FS-") {
        "a BitLocker volume"
    } else if at(3..11) == b"NTFS    " {
        "an NTFS volume"
    } else if at(512..520) == b"EFI PART" {
        "a GPT partition table"
    } else if at(510..512) == [0x55, 0xaa] {
        "an MBR partition table or a file system"
    } else {
        "data"
    }
}

/// The logical sector size of the block device whose sysfs folder is `sys` (a partition's
/// is its disk's).
fn logical_sector_size(sys: &Path) -> Result<u64, String> {
    let read = |p: PathBuf| std::fs::read_to_string(p).ok().and_then(|t| t.trim().parse::<u64>().ok());
    read(sys.join("queue/logical_block_size"))
        .or_else(|| read(sys.join("../queue/logical_block_size")))
        .ok_or_else(|| format!("cannot tell its sector size from {}", sys.display()))
}

/// Size and hardware serial of an image file or a block device.
fn size_and_serial(path: &Path) -> Result<(u64, Option<String>), String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot be opened: {e}"))?;
    if meta.is_file() {
        Ok((meta.len(), None))
    } else if meta.file_type().is_block_device() {
        block_device(path, meta.rdev())
    } else {
        Err("is neither a block device nor an image file".into())
    }
}

/// Size and hardware serial of a block device, from sysfs and udev.
fn block_device(path: &Path, rdev: u64) -> Result<(u64, Option<String>), String> {
    let real = std::fs::canonicalize(path).map_err(|e| format!("cannot be resolved: {e}"))?;
    let name = real.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let sys = PathBuf::from("/sys/class/block").join(&name);
    let sectors = std::fs::read_to_string(sys.join("size"))
        .map_err(|e| format!("cannot tell its size from {}: {e}", sys.display()))?;
    let capacity = sectors.trim().parse::<u64>().map_err(|_| "has an unreadable size in sysfs".to_string())? * 512;
    let sector = logical_sector_size(&sys)?;
    if sector != 512 {
        return Err(format!(
            "has {sector}-byte logical sectors: Azure imports only disks with 512-byte logical sectors \
             (512n or 512e; not 4Kn)"
        ));
    }
    let (major, minor) = ((rdev >> 8) & 0xfff | ((rdev >> 32) & !0xfff), (rdev & 0xff) | ((rdev >> 12) & !0xff));
    let udev = std::fs::read_to_string(format!("/run/udev/data/b{major}:{minor}")).unwrap_or_default();
    let from_udev = |key: &str| udev.lines().find_map(|l| l.strip_prefix(&format!("E:{key}=")).map(str::to_string));
    let serial = from_udev("ID_SERIAL_SHORT")
        .or_else(|| from_udev("ID_SERIAL"))
        .or_else(|| std::fs::read_to_string(sys.join("device/serial")).ok())
        .or_else(|| std::fs::read_to_string(sys.join("serial")).ok())
        .and_then(|s| drive_id_from_serial(&s));
    Ok((capacity, serial))
}

/// A hardware serial as a drive id (letters, digits, '-', '_', '.'; at most 64).
pub fn drive_id_from_serial(s: &str) -> Option<String> {
    let id: String = s
        .trim()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' })
        .take(64)
        .collect();
    let id = id.trim_matches('_').to_string();
    (!id.is_empty()).then_some(id)
}

/// A drive id for a disk without a serial: `SS-` and 12 random Crockford base32 characters,
/// kept in the disk's identity file.
pub fn generated_id() -> String {
    use ring::rand::SecureRandom;
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let mut b = [0u8; 12];
    ring::rand::SystemRandom::new().fill(&mut b).expect("system randomness");
    let s: String = b.iter().map(|x| ALPHABET[(*x & 31) as usize] as char).collect();
    format!("SS-{s}")
}

/// What [`wipe`] found and did.
#[derive(Debug)]
pub struct Wiped {
    /// The seedship disk it held, if any.
    pub previous: Option<DiskId>,
    pub bytes_zeroed: u64,
}

/// Makes a disk blank again: zeroes its first and last MiB (boot sectors, partition tables and
/// their backups), or every byte with `full`.
pub fn wipe(path: &Path, full: bool) -> Result<Wiped, String> {
    let (capacity, _) = size_and_serial(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let previous = media::probe(path);
    let f = std::fs::OpenOptions::new().write(true).open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let zeros = vec![0u8; 4 << 20];
    let ranges: Vec<(u64, u64)> = if full || capacity <= 2 * BLANK_PROBE as u64 {
        vec![(0, capacity)]
    } else {
        vec![(0, BLANK_PROBE as u64), (capacity - BLANK_PROBE as u64, capacity)]
    };
    let mut zeroed = 0;
    for (mut at, end) in ranges {
        while at < end {
            let n = (end - at).min(zeros.len() as u64) as usize;
            f.write_all_at(&zeros[..n], at).map_err(|e| format!("{}: {e}", path.display()))?;
            at += n as u64;
            zeroed += n as u64;
        }
    }
    f.sync_all().map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Wiped { previous, bytes_zeroed: zeroed })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_become_drive_ids() {
        assert_eq!(drive_id_from_serial("  WD-WCC4E1234567\n").as_deref(), Some("WD-WCC4E1234567"));
        assert_eq!(drive_id_from_serial("Samsung SSD 870/ab").as_deref(), Some("Samsung_SSD_870_ab"));
        assert_eq!(drive_id_from_serial(" \n"), None);
        let g = generated_id();
        assert!(g.len() == 15 && g.starts_with("SS-"), "{g}");
        assert_ne!(g, generated_id());
    }

    #[test]
    fn a_4kn_disk_is_told_apart_by_its_logical_sector_size() {
        let d = tempfile::tempdir().unwrap();
        let disk = d.path().join("sdb");
        std::fs::create_dir_all(disk.join("queue")).unwrap();
        std::fs::create_dir_all(disk.join("sdb1")).unwrap();
        std::fs::write(disk.join("queue/logical_block_size"), "4096\n").unwrap();
        assert_eq!(logical_sector_size(&disk), Ok(4096));
        assert_eq!(logical_sector_size(&disk.join("sdb1")), Ok(4096), "a partition has its disk's");
        std::fs::write(disk.join("queue/logical_block_size"), "512\n").unwrap();
        assert_eq!(logical_sector_size(&disk), Ok(512));
        assert!(logical_sector_size(d.path()).is_err());
    }

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape("/mnt/data\\040box"), "/mnt/data box");
        assert_eq!(unescape("/a\\134b"), "/a\\b");
        assert_eq!(unescape("/plain"), "/plain");
    }

    #[test]
    fn probe_tells_blank_and_other_disks_apart_and_wipe_makes_them_blank() {
        let d = tempfile::tempdir().unwrap();
        let blank = d.path().join("a.img");
        std::fs::File::create(&blank).unwrap().set_len(8 << 20).unwrap();
        assert!(matches!(probe(&blank).holds, Holds::Blank));
        assert_eq!(probe(&blank).capacity, 8 << 20);
        let empty = d.path().join("b.img");
        std::fs::File::create(&empty).unwrap();
        assert!(matches!(probe(&empty).holds, Holds::Unusable(ref w) if w.contains("truncate")));
        let junk = d.path().join("c.img");
        std::fs::write(&junk, vec![7u8; 3 << 20]).unwrap();
        assert!(matches!(probe(&junk).holds, Holds::Unusable(ref w) if w.contains("holds data") && w.contains("wipe")));
        let mut bl = vec![0u8; 2 << 20];
        bl[3..11].copy_from_slice(b"-FVE-FS-");
        let locked = d.path().join("bl.img");
        std::fs::write(&locked, &bl).unwrap();
        assert!(matches!(probe(&locked).holds, Holds::Unusable(ref w) if w.contains("holds a BitLocker volume")));
        // The first and the last MiB (where NTFS and GPT keep their backups) are zeroed.
        let w = wipe(&junk, false).unwrap();
        assert_eq!((w.bytes_zeroed, w.previous), (2 << 20, None));
        let after = std::fs::read(&junk).unwrap();
        assert!(after[..1 << 20].iter().chain(&after[2 << 20..]).all(|b| *b == 0) && after[1 << 20] == 7);
        assert!(matches!(probe(&junk).holds, Holds::Blank));
        assert!(matches!(probe(&d.path().join("none")).holds, Holds::Unusable(_)));
        let folder = d.path().join("mnt");
        std::fs::create_dir(&folder).unwrap();
        assert!(matches!(probe(&folder).holds, Holds::Unusable(ref w) if w.contains("nothing mounted")));
    }
}
