//! Snapshots: the root tree of one backup and what it covered.
//!
//! Sealed JSON (kind Snapshot) in `snapshots/<SHA-256 of the file>`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub version: u32,
    /// When the backup started (RFC 3339, UTC); `--time` can set it.
    pub time: String,
    pub hostname: String,
    /// The source paths as given, each the name of one top-level node of `tree`.
    pub paths: Vec<String>,
    /// Id of the root tree: one node per source path.
    pub tree: String,
    /// The snapshot this one was taken on top of (incrementals).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    pub stats: SnapshotStats,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotStats {
    pub files: u64,
    pub dirs: u64,
    /// Bytes of file content in the source (holes excluded).
    pub bytes: u64,
    pub skipped: u64,
}
