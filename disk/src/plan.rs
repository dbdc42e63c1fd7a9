//! Placement of a staging set over a disk set, before anything is written.
//!
//! Every disk gets a share of the data in proportion to its usable capacity, so disks written
//! in parallel finish together. Files are placed whole, in manifest order; a file is split
//! only where it crosses a disk's share, so a set of n disks splits at most n − 1 files. The
//! plan is a pure function of the files and the disks: the same inputs always give the same
//! placement, which is what lets a resumed preparation continue the same plan.
//!
//! What a disk can hold is its capacity less a fixed reserve (header, journal, drive manifest)
//! and, per extent of at most [`EXTENT_MAX`] bytes, the extent's header, tag and alignment.

use serde::{Deserialize, Serialize};

/// Azure Data Box customer disks: at most 10 drives per job (`seedship_azure::databox::MAX_CUSTOMER_DISKS`).
pub const MAX_DRIVES: usize = 10;
/// Largest plaintext extent.
pub const EXTENT_MAX: u64 = 8 << 20;
/// Per-extent space beyond its plaintext, at most: header, GCM tag, padding to 4 KiB.
pub const EXTENT_OVERHEAD: u64 = 2 * 4096;
/// Per-disk space for the header, the journal and the drive manifest.
pub const DISK_RESERVE: u64 = 16 << 20;

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

/// One piece of a file on one disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    pub path: String,
    pub file_offset: u64,
    pub length: u64,
    /// 0-based part number of this file, and how many parts it has (1 when whole).
    pub part: u32,
    pub parts: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskPlan {
    pub id: String,
    /// 1-based position in the disk set.
    pub position: u32,
    pub capacity: u64,
    pub parts: Vec<Part>,
    /// Plaintext bytes placed here.
    pub bytes: u64,
    /// Disk space those bytes take, with overheads.
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

/// Disk space `len` plaintext bytes take.
pub fn cost(len: u64) -> u64 {
    len + len.div_ceil(EXTENT_MAX).max(1) * EXTENT_OVERHEAD
}

fn usable(capacity: u64) -> u64 {
    capacity.saturating_sub(DISK_RESERVE)
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

/// Places `files` over `disks` (see the module doc).
pub fn plan(files: &[FileSpec], disks: &[DiskSpec]) -> Result<Plan, PlanError> {
    check_disks(disks)?;
    let need: u64 = files.iter().map(|f| cost(f.size)).sum();
    let total_bytes: u64 = files.iter().map(|f| f.size).sum();
    let have: u64 = disks.iter().map(|d| usable(d.capacity)).sum();
    let largest = disks.iter().map(|d| d.capacity).max().unwrap_or(0);
    // Splitting adds at most one extent's overhead per split.
    let need_with_splits = need + (disks.len() as u64) * EXTENT_OVERHEAD;
    if have < need_with_splits {
        let per = usable(largest).max(1);
        let disks_needed = need_with_splits.div_ceil(per) as usize;
        if disks_needed > MAX_DRIVES {
            let min_size = need_with_splits.div_ceil(MAX_DRIVES as u64) + DISK_RESERVE;
            return Err(PlanError::TooManyDrives { need: need_with_splits, size: largest, min_size });
        }
        let more = (need_with_splits - have).div_ceil(per) as usize;
        return Err(PlanError::NeedMoreDisks { have, need: need_with_splits, more, size: largest });
    }

    // Each disk's share of the data, in proportion to its usable space.
    let mut shares: Vec<u64> = disks
        .iter()
        .map(|d| ((total_bytes as u128 * usable(d.capacity) as u128) / have.max(1) as u128) as u64)
        .collect();
    let assigned: u64 = shares.iter().sum();
    if let Some(last) = shares.last_mut() {
        *last += total_bytes - assigned;
    }

    let mut out: Vec<DiskPlan> = disks
        .iter()
        .enumerate()
        .map(|(i, d)| DiskPlan {
            id: d.id.clone(),
            position: i as u32 + 1,
            capacity: d.capacity,
            parts: Vec::new(),
            bytes: 0,
            used: 0,
        })
        .collect();
    let mut disk = 0usize;
    for f in files {
        let mut offset = 0u64;
        let mut pieces: Vec<(usize, u64, u64)> = Vec::new();
        loop {
            let left = f.size - offset;
            let room = shares[disk].saturating_sub(out[disk].bytes);
            let last_disk = disk + 1 == out.len();
            let take = if last_disk || left <= room { left } else { room };
            if take > 0 || (left == 0 && pieces.is_empty()) {
                pieces.push((disk, offset, take));
                out[disk].bytes += take;
                offset += take;
            }
            if offset >= f.size {
                break;
            }
            disk += 1;
        }
        let parts = pieces.len() as u32;
        for (n, (d, off, len)) in pieces.into_iter().enumerate() {
            out[d].used += cost(len);
            out[d].parts.push(Part { path: f.path.clone(), file_offset: off, length: len, part: n as u32, parts });
        }
    }
    for d in &out {
        if d.used > usable(d.capacity) {
            return Err(PlanError::NeedMoreDisks { have, need: need_with_splits, more: 1, size: largest });
        }
    }
    Ok(Plan { disks: out, total_bytes })
}

/// The NTFS cluster size mkntfs chooses for the disks seedship formats.
pub const NTFS_CLUSTER: u64 = 4096;

/// Space an NTFS volume of `capacity` bytes keeps for itself once formatted: the boot and
/// metadata files, a log of up to 64 MiB, the cluster bitmap (measured with mkntfs: 2.5 MB
/// of 32 MiB, 44 MB of 8 GiB; this is above both).
pub fn ntfs_reserve(capacity: u64) -> u64 {
    (4 << 20) + (capacity / 128).min(64 << 20) + capacity / 32_768
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
            parts: mine
                .iter()
                .map(|f| Part { path: f.path.clone(), file_offset: 0, length: f.size, part: 0, parts: 1 })
                .collect(),
        });
    }
    Ok(Plan { disks: out, total_bytes: files.iter().map(|f| f.size).sum() })
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

    /// Every byte of every file is placed exactly once, in order.
    fn covers(files: &[FileSpec], p: &Plan) {
        for f in files {
            let mut parts: Vec<&Part> = p.disks.iter().flat_map(|d| &d.parts).filter(|x| x.path == f.path).collect();
            parts.sort_by_key(|x| x.file_offset);
            let mut at = 0;
            for (i, x) in parts.iter().enumerate() {
                assert_eq!((x.file_offset, x.part, x.parts), (at, i as u32, parts.len() as u32), "{}", f.path);
                at += x.length;
            }
            assert_eq!(at, f.size, "{}", f.path);
        }
    }

    #[test]
    fn one_disk_takes_everything_whole() {
        let f = files(&[32 * MIB, 10, 0, 5 * MIB]);
        let p = plan(&f, &disks(&[1 << 30])).unwrap();
        covers(&f, &p);
        assert!(p.disks[0].parts.iter().all(|x| x.parts == 1));
        assert_eq!(p.total_bytes, 37 * MIB + 10);
    }

    #[test]
    fn three_disks_share_the_data_and_split_at_most_two_files() {
        let f = files(&[32 * MIB; 9]);
        let d = disks(&[120 * MIB, 120 * MIB, 120 * MIB]);
        let p = plan(&f, &d).unwrap();
        covers(&f, &p);
        for x in &p.disks {
            assert!(x.used <= usable(x.capacity));
            assert!(x.bytes.abs_diff(96 * MIB) <= 32 * MIB, "balanced: {} on {}", x.bytes, x.id);
        }
        let split = f
            .iter()
            .filter(|ff| p.disks.iter().flat_map(|d| &d.parts).any(|x| x.path == ff.path && x.parts > 1))
            .count();
        assert!(split <= 2, "{split} files split");
        assert_eq!(p, plan(&f, &d).unwrap(), "the plan is deterministic");
    }

    #[test]
    fn uneven_disks_get_proportional_shares() {
        let f = files(&[10 * MIB; 30]);
        let p = plan(&f, &disks(&[416 * MIB, 116 * MIB])).unwrap();
        covers(&f, &p);
        assert!(
            p.disks[0].bytes > 3 * p.disks[1].bytes - 20 * MIB,
            "{:?}",
            p.disks.iter().map(|d| d.bytes).collect::<Vec<_>>()
        );
    }

    #[test]
    fn too_small_says_how_many_more_and_too_big_says_what_size() {
        let f = files(&[100 * MIB; 5]);
        match plan(&f, &disks(&[216 * MIB])) {
            Err(PlanError::NeedMoreDisks { more, size, .. }) => {
                assert_eq!(size, 216 * MIB);
                assert_eq!(more, 2);
            }
            other => panic!("{other:?}"),
        }
        let e = plan(&files(&[1000 * MIB; 3]), &disks(&[100 * MIB])).unwrap_err();
        match &e {
            PlanError::TooManyDrives { min_size, .. } => assert!(*min_size > 300 * MIB),
            other => panic!("{other:?}"),
        }
        assert!(e.to_string().contains("at most 10 drives"), "{e}");
        assert!(matches!(plan(&f, &disks(&[1 << 40; 11])), Err(PlanError::Invalid(_))));
        let dup = vec![DiskSpec { id: "A".into(), capacity: 1 << 30 }, DiskSpec { id: "A".into(), capacity: 1 << 30 }];
        assert!(matches!(plan(&f, &dup), Err(PlanError::Invalid(_))));
    }

    #[test]
    fn whole_files_are_balanced_over_ntfs_disks_and_never_split() {
        let fs = files(&[32 * MIB, 32 * MIB, 32 * MIB, 20 * MIB, 3 * MIB, 1, 0]);
        let p = plan_whole(&fs, &disks(&[100 * MIB, 100 * MIB])).unwrap();
        assert_eq!(p.total_bytes, fs.iter().map(|f| f.size).sum::<u64>());
        for f in &fs {
            let on: Vec<&Part> = p.disks.iter().flat_map(|d| &d.parts).filter(|x| x.path == f.path).collect();
            assert_eq!(on.len(), 1, "{} is placed once, whole", f.path);
            assert_eq!((on[0].file_offset, on[0].length, on[0].parts), (0, f.size, 1));
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
