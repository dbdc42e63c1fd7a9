//! Finding the shipping disks and telling what each holds.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use seedship_disk::format::{self, Header};

use crate::config::Station;

/// One disk as the station sees it now.
#[derive(Debug, Clone)]
pub struct Disk {
    pub path: PathBuf,
    pub capacity: u64,
    /// Hardware serial (block devices), usable as a drive id.
    pub serial: Option<String>,
    pub holds: Holds,
}

#[derive(Debug, Clone)]
pub enum Holds {
    Blank,
    /// A seedship disk (of any seed).
    Seedship(Header),
    /// Cannot be used: why, and what to do.
    Unusable(String),
}

/// Every disk path to consider: the configured ones, the entries of `disk_dir`, and `extra`
/// (typed at the prompt), each once, in that order.
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

/// Looks at one disk: size, serial, and what it holds.
pub fn probe(path: &Path) -> Disk {
    let unusable =
        |why: String| Disk { path: path.to_path_buf(), capacity: 0, serial: None, holds: Holds::Unusable(why) };
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => return unusable(format!("cannot be opened: {e}")),
    };
    let (capacity, serial) = if meta.is_file() {
        (meta.len(), None)
    } else if meta.file_type().is_block_device() {
        match block_device(path, meta.rdev()) {
            Ok(v) => v,
            Err(e) => return unusable(e),
        }
    } else {
        return unusable("is neither a block device nor an image file".into());
    };
    if capacity == 0 {
        return unusable("has no capacity (an empty image file? give it a size, e.g. `truncate -s 1T`)".into());
    }
    let holds = match format::probe(path) {
        Ok(None) => Holds::Blank,
        Ok(Some(h)) => Holds::Seedship(h),
        Err(e) => Holds::Unusable(e.to_string()),
    };
    Disk { path: path.to_path_buf(), capacity, serial, holds }
}

/// Size and hardware serial of a block device, from sysfs and udev.
fn block_device(path: &Path, rdev: u64) -> Result<(u64, Option<String>), String> {
    let real = std::fs::canonicalize(path).map_err(|e| format!("cannot be resolved: {e}"))?;
    let name = real.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let sys = PathBuf::from("/sys/class/block").join(&name);
    let sectors = std::fs::read_to_string(sys.join("size"))
        .map_err(|e| format!("cannot tell its size from {}: {e}", sys.display()))?;
    let capacity = sectors.trim().parse::<u64>().map_err(|_| "has an unreadable size in sysfs".to_string())? * 512;
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
/// kept in the disk's header.
pub fn generated_id() -> String {
    use ring::rand::SecureRandom;
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let mut b = [0u8; 12];
    ring::rand::SystemRandom::new().fill(&mut b).expect("system randomness");
    let s: String = b.iter().map(|x| ALPHABET[(*x & 31) as usize] as char).collect();
    format!("SS-{s}")
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
    fn probe_tells_blank_seedship_and_other_disks_apart() {
        let d = tempfile::tempdir().unwrap();
        let blank = d.path().join("a.img");
        std::fs::File::create(&blank).unwrap().set_len(8 << 20).unwrap();
        assert!(matches!(probe(&blank).holds, Holds::Blank));
        assert_eq!(probe(&blank).capacity, 8 << 20);
        let empty = d.path().join("b.img");
        std::fs::File::create(&empty).unwrap();
        assert!(matches!(probe(&empty).holds, Holds::Unusable(ref w) if w.contains("truncate")));
        let junk = d.path().join("c.img");
        std::fs::write(&junk, vec![7u8; 8192]).unwrap();
        assert!(matches!(probe(&junk).holds, Holds::Unusable(ref w) if w.contains("wipe")));
        assert!(matches!(probe(&d.path().join("none")).holds, Holds::Unusable(_)));
    }
}
