//! The disk set of the work in hand: which drive is at which position, with what capacity,
//! and which turned out bad. Kept in `state_dir/sets/<work>.json` (written atomically before
//! any disk is formatted), so a restarted station puts every disk back at its place and a replacement
//! disk gets exactly the share of the one it replaces.

use std::path::{Path, PathBuf};

use seedship_disk::plan::DiskSpec;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetDisk {
    pub position: u32,
    pub drive_id: String,
    /// The capacity the plan uses (for a replacement: that of the disk it replaces).
    pub capacity: u64,
    /// Why the drive is bad; it will not be shipped.
    #[serde(default)]
    pub bad: Option<String>,
    /// Bad drives this position had before.
    #[serde(default)]
    pub replaced: Vec<String>,
    /// The raw volume it was last found at: a Data Box Disk the station unmounted after
    /// writing is found there again after a restart.
    #[serde(default)]
    pub device: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetRecord {
    pub work_id: String,
    pub seed_id: String,
    pub job_name: String,
    pub disks: Vec<SetDisk>,
}

impl SetRecord {
    pub fn path(state_dir: &Path, work_id: &str) -> PathBuf {
        state_dir.join("sets").join(format!("{work_id}.json"))
    }

    pub fn load(state_dir: &Path, work_id: &str) -> Option<SetRecord> {
        let b = std::fs::read(Self::path(state_dir, work_id)).ok()?;
        serde_json::from_slice(&b).ok()
    }

    pub fn save(&self, state_dir: &Path) -> std::io::Result<()> {
        let p = Self::path(state_dir, &self.work_id);
        std::fs::create_dir_all(p.parent().expect("has a parent"))?;
        seedship_repo::layout::write_atomic(&p, &serde_json::to_vec_pretty(self).expect("serializes"))
            .map_err(std::io::Error::other)
    }

    pub fn set_size(&self) -> u32 {
        self.disks.len() as u32
    }

    /// The planner's view: the same capacities in the same order give the same plan.
    pub fn specs(&self) -> Vec<DiskSpec> {
        self.disks.iter().map(|d| DiskSpec { id: d.drive_id.clone(), capacity: d.capacity }).collect()
    }

    pub fn at(&mut self, position: u32) -> &mut SetDisk {
        &mut self.disks[position as usize - 1]
    }

    /// The raw volumes of the set's disks, as last seen.
    pub fn devices(&self) -> Vec<PathBuf> {
        self.disks.iter().filter_map(|d| d.device.clone()).collect()
    }

    /// Whether `drive_id` was this set's drive once and turned bad.
    pub fn is_bad(&self, drive_id: &str) -> bool {
        self.disks
            .iter()
            .any(|d| (d.drive_id == drive_id && d.bad.is_some()) || d.replaced.iter().any(|r| r == drive_id))
    }
}
