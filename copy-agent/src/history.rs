//! The station's record of its work, for `copy-agent status`: `history.jsonl`, one JSON object
//! per line (claimed, completed, released, refused, lost, stopped), appended and fsynced.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub at_unix_ms: i64,
    pub event: String,
    pub job_name: String,
    pub seed_id: String,
    pub work_id: String,
    pub generation: u64,
    #[serde(default)]
    pub detail: String,
    /// Drives prepared: "position/set_size drive_id".
    #[serde(default)]
    pub drives: Vec<String>,
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

pub fn append(state_dir: &Path, e: &Entry) {
    let p = state_dir.join("history.jsonl");
    let r = std::fs::create_dir_all(state_dir).and_then(|_| {
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&p)?;
        let mut line = serde_json::to_vec(e).expect("serializes");
        line.push(b'\n');
        f.write_all(&line)?;
        f.sync_data()
    });
    if let Err(err) = r {
        tracing::warn!(path = %p.display(), error = %err, "cannot record the station's history");
    }
}

/// Every entry; lines that do not parse (a torn last line after a crash) are skipped.
pub fn read(state_dir: &Path) -> Vec<Entry> {
    std::fs::read_to_string(state_dir.join("history.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}
