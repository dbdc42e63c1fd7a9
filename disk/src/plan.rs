//! Placement of a staging set over a disk set, before anything is written ([`plan_whole`]).
//!
//! Azure imports each file of a disk as one blob, so a file never spans disks; staging files
//! are packs of at most 32 MiB, so none needs to. Every disk gets a share of the data in
//! proportion to the room its NTFS volume leaves, so disks written in parallel finish
//! together. The plan is a pure function of the files and the disks: the same inputs always
//! give the same placement, which is what lets a resumed preparation continue the same plan.

use serde::{Deserialize, Serialize};

/// Azure Data Box customer disks: at most 10 drives per job (`seedship_azure::databox::MAX_CUSTOMER_DISKS`).
pub const MAX_DRIVES: usize = 10;
/// A file of the staging set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSpec {
    pub path: String,
    pub size: u64,
}

/// A disk offered for the seed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskSpec {
    pub id: String,
    pub capacity: u64,
}

/// A file placed on one disk, whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    pub path: String,
    pub length: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskPlan {
    pub id: String,
    /// 1-based position in the disk set.
    pub position: u32,
    pub capacity: u64,
    pub parts: Vec<Part>,
    /// Bytes of staging files placed here.
    pub bytes: u64,
    /// Disk space those files take, with the file system's overheads.
    pub used: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub disks: Vec<DiskPlan>,
    pub total_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "the disks given hold {have} of the {need} needed; add {more} more disk(s) of {size} bytes (or larger ones)"
    )]
    NeedMoreDisks { have: u64, need: u64, more: usize, size: u64 },
    #[error(
        "this seed needs {need} bytes, more than {MAX_DRIVES} disks of {size} bytes hold (an import job takes at most {MAX_DRIVES} drives); use disks of at least {min_size} bytes"
    )]
    TooManyDrives { need: u64, size: u64, min_size: u64 },
    #[error("{0}")]
    Invalid(String),
}

/// 1 to 10 disks, each given once.
fn check_disks(disks: &[DiskSpec]) -> Result<(), PlanError> {
    if disks.is_empty() {
        return Err(PlanError::Invalid("no disks given".into()));
    }
    if disks.len() > MAX_DRIVES {
        return Err(PlanError::Invalid(format!(
            "{} disks given; an import job takes at most {MAX_DRIVES}",
            disks.len()
        )));
    }
    let mut ids = std::collections::HashSet::new();
    match disks.iter().find(|d| !ids.insert(&d.id)) {
        Some(d) => Err(PlanError::Invalid(format!("disk {} is given twice", d.id))),
        None => Ok(()),
    }
}

/// The NTFS cluster size mkntfs chooses for the disks seedship formats.
pub const NTFS_CLUSTER: u64 = 4096;

/// The end of a disk BitLocker keeps for itself (its three metadata blocks and the backup
/// of the NTFS boot sectors, 256 KiB, aligned to 64 KiB): the NTFS volume stops before it.
pub const BITLOCKER_TAIL: u64 = 320 << 10;

/// Space an NTFS volume of `capacity` bytes keeps for itself once formatted: the boot and
/// metadata files, a log of up to 64 MiB, the cluster bitmap (measured with mkntfs: 2.5 MB
/// of 32 MiB, 44 MB of 8 GiB; this is above both), and BitLocker's tail.
pub fn ntfs_reserve(capacity: u64) -> u64 {
    (4 << 20) + (capacity / 128).min(64 << 20) + capacity / 32_768 + BITLOCKER_TAIL
}

/// Space one file of `size` bytes takes on NTFS: whole clusters, and its file record and
/// directory entry.
pub fn ntfs_cost(size: u64) -> u64 {
    size.div_ceil(NTFS_CLUSTER) * NTFS_CLUSTER + NTFS_CLUSTER
}

/// Space the drive manifest listing `files` takes (about 400 bytes a blob and 90 a block),
/// and the disk's identity file.
pub fn manifest_cost(files: &[&FileSpec]) -> u64 {
    let text: u64 = files.iter().map(|f| 400 + 90 * f.size.div_ceil(4 << 20)).sum::<u64>() + 4096;
    ntfs_cost(text) + ntfs_cost(1024)
}

/// Places whole `files` over `disks` formatted as NTFS (Azure's layouts: a file never spans
/// disks), balanced: the largest files first, each on the disk that is least full for its
/// size. The operator is told how many more disks, of which size, the seed needs when the
/// disks given are too few or too small.
pub fn plan_whole(files: &[FileSpec], disks: &[DiskSpec]) -> Result<Plan, PlanError> {
    check_disks(disks)?;
    let room = |c: u64| c.saturating_sub(ntfs_reserve(c));
    let largest = disks.iter().map(|d| d.capacity).max().unwrap_or(0);
    let need: u64 =
        files.iter().map(|f| ntfs_cost(f.size)).sum::<u64>() + manifest_cost(&files.iter().collect::<Vec<_>>());
    let too_few = |have: u64| {
        // How many disks of the largest size given would hold it, with a tenth to spare for
        // whole files not filling each disk.
        let per = room(largest).max(1);
        let want = need + need / 10;
        let disks_needed = want.div_ceil(per) as usize;
        if disks_needed > MAX_DRIVES {
            let size = (want.div_ceil(MAX_DRIVES as u64) * 129).div_ceil(128) + (68 << 20);
            PlanError::TooManyDrives { need: want, size: largest, min_size: size }
        } else {
            PlanError::NeedMoreDisks {
                have,
                need: want,
                more: disks_needed.saturating_sub(disks.len()).max(1),
                size: largest,
            }
        }
    };
    let have: u64 = disks.iter().map(|d| room(d.capacity)).sum();
    let mut order: Vec<&FileSpec> = files.iter().collect();
    order.sort_by(|a, b| b.size.cmp(&a.size).then(a.path.cmp(&b.path)));
    let mut placed: Vec<Vec<&FileSpec>> = vec![Vec::new(); disks.len()];
    let mut used: Vec<u64> = vec![0; disks.len()];
    for f in order {
        let c = ntfs_cost(f.size);
        let mut best: Option<(usize, f64)> = None;
        for (i, d) in disks.iter().enumerate() {
            let mut with = placed[i].clone();
            with.push(f);
            let total = used[i] + c;
            if total + manifest_cost(&with) > room(d.capacity) {
                continue;
            }
            let fill = total as f64 / room(d.capacity).max(1) as f64;
            if best.is_none_or(|(_, b)| fill < b) {
                best = Some((i, fill));
            }
        }
        let Some((i, _)) = best else { return Err(too_few(have)) };
        placed[i].push(f);
        used[i] += c;
    }
    let mut out = Vec::new();
    for (i, d) in disks.iter().enumerate() {
        let mut mine = placed[i].clone();
        mine.sort_by(|a, b| a.path.cmp(&b.path));
        out.push(DiskPlan {
            id: d.id.clone(),
            position: i as u32 + 1,
            capacity: d.capacity,
            bytes: mine.iter().map(|f| f.size).sum(),
            used: used[i] + manifest_cost(&mine) + ntfs_reserve(d.capacity),
            parts: mine.iter().map(|f| Part { path: f.path.clone(), length: f.size }).collect(),
        });
    }
    Ok(Plan { disks: out, total_bytes: files.iter().map(|f| f.size).sum() })
}

/// The smallest capacity (a whole number of MiB, up to 64 TiB) of which `n` disks hold `files`
/// as NTFS volumes; `None` when no such size is in range or `n` is not 1 to [`MAX_DRIVES`].
pub fn size_for(files: &[FileSpec], n: usize) -> Option<u64> {
    const MIB: u64 = 1 << 20;
    let fits = |mib: u64| {
        let disks: Vec<DiskSpec> = (0..n).map(|i| DiskSpec { id: format!("d{i}"), capacity: mib * MIB }).collect();
        plan_whole(files, &disks).is_ok()
    };
    let (mut lo, mut hi) = (1u64, 64u64 << 20);
    if !(1..=MAX_DRIVES).contains(&n) || !fits(hi) {
        return None;
    }
    // Whether a size fits grows with the size: bisect for the smallest.
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if fits(mid) { hi = mid } else { lo = mid + 1 }
    }
    Some(lo * MIB)
}

/// How many disks of `capacity` bytes hold `files` as NTFS volumes; `None` above [`MAX_DRIVES`].
pub fn disks_for(files: &[FileSpec], capacity: u64) -> Option<usize> {
    (1..=MAX_DRIVES).find(|n| {
        let disks: Vec<DiskSpec> = (0..*n).map(|i| DiskSpec { id: format!("d{i}"), capacity }).collect();
        plan_whole(files, &disks).is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn files(sizes: &[u64]) -> Vec<FileSpec> {
        sizes.iter().enumerate().map(|(i, s)| FileSpec { path: format!("data/{i:03}"), size: *s }).collect()
    }

    fn disks(caps: &[u64]) -> Vec<DiskSpec> {
        caps.iter().enumerate().map(|(i, c)| DiskSpec { id: format!("D{i}"), capacity: *c }).collect()
    }

    #[test]
    fn whole_files_are_balanced_over_ntfs_disks_and_never_split() {
        let fs = files(&[32 * MIB, 32 * MIB, 32 * MIB, 20 * MIB, 3 * MIB, 1, 0]);
        let p = plan_whole(&fs, &disks(&[100 * MIB, 100 * MIB])).unwrap();
        assert_eq!(p.total_bytes, fs.iter().map(|f| f.size).sum::<u64>());
        for f in &fs {
            let on: Vec<&Part> = p.disks.iter().flat_map(|d| &d.parts).filter(|x| x.path == f.path).collect();
            assert_eq!(on.len(), 1, "{} is placed once, whole", f.path);
            assert_eq!(on[0].length, f.size);
        }
        let (a, b) = (p.disks[0].bytes, p.disks[1].bytes);
        assert!(a.abs_diff(b) <= 32 * MIB, "balanced: {a} / {b}");
        for d in &p.disks {
            assert!(d.used <= d.capacity, "{d:?}");
        }
        // Uneven disks get shares in proportion.
        let p = plan_whole(&files(&[10 * MIB; 12]), &disks(&[200 * MIB, 60 * MIB])).unwrap();
        assert!(p.disks[0].bytes > p.disks[1].bytes * 2, "{} / {}", p.disks[0].bytes, p.disks[1].bytes);
    }

    #[test]
    fn the_size_for_n_disks_is_the_smallest_that_fits_and_the_count_for_a_size_too() {
        let fs = files(&[32 * MIB; 10]);
        let size = size_for(&fs, 3).unwrap();
        let d = |n: usize, c: u64| disks(&vec![c; n]);
        assert!(plan_whole(&fs, &d(3, size)).is_ok() && plan_whole(&fs, &d(3, size - MIB)).is_err(), "{size}");
        assert_eq!(disks_for(&fs, size), Some(3));
        assert_eq!(disks_for(&fs, 2 * size), Some(2));
        assert_eq!(disks_for(&fs, 36 * MIB), None, "no 32 MiB file fits a 36 MiB NTFS disk");
        assert_eq!(size_for(&fs, 11), None);
        assert_eq!(size_for(&fs, 0), None);
    }

    #[test]
    fn too_few_or_too_small_ntfs_disks_say_what_is_needed() {
        let fs = files(&[32 * MIB; 10]);
        match plan_whole(&fs, &disks(&[100 * MIB])) {
            Err(PlanError::NeedMoreDisks { more, size, .. }) => assert_eq!((more, size), (3, 100 * MIB)),
            other => panic!("{other:?}"),
        }
        match plan_whole(&files(&[32 * MIB; 100]), &disks(&[100 * MIB])) {
            Err(PlanError::TooManyDrives { min_size, .. }) => assert!(min_size > 320 * MIB, "{min_size}"),
            other => panic!("{other:?}"),
        }
        // A file larger than any one disk cannot be placed whole.
        assert!(plan_whole(&files(&[90 * MIB]), &disks(&[80 * MIB, 80 * MIB])).is_err());
        assert!(plan_whole(&fs, &[]).is_err());
        assert!(plan_whole(&fs, &disks(&[MIB; 11])).is_err());
        assert!(ntfs_reserve(8 << 30) >= 44_000_000 && ntfs_reserve(32 * MIB) >= 2_560_000, "above what mkntfs used");
    }
}
