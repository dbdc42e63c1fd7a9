//! The seed manifest: every file of a staging set with size, SHA-256 and MD5, and a root hash.
//!
//! `manifest.json`:
//! ```json
//! {"format":"seedship-seed-manifest","version":1,"root":"<hex>",
//!  "files":[{"path":"config","size":312,"sha256":"<hex>","md5":"<hex>"}, ...]}
//! ```
//! Files are sorted by path (`/`-separated, relative to the staging root). The root is the
//! SHA-256 of the lines `path \t size \t sha256 \t md5 \n`, one per file, in that order.
//! Everything downstream (the copy station, the import verification) checks against it.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use md5::Md5;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{RepoError, Result};
use crate::layout;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    pub path: String,
    pub size: u64,
    pub sha256: String,
    pub md5: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedManifest {
    pub format: String,
    pub version: u32,
    pub root: String,
    pub files: Vec<ManifestFile>,
}

impl SeedManifest {
    pub fn new(mut files: Vec<ManifestFile>) -> SeedManifest {
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let root = root_of(&files);
        SeedManifest { format: "seedship-seed-manifest".into(), version: 1, root, files }
    }

    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    pub fn load(root: &Path) -> Result<SeedManifest> {
        let p = root.join(layout::MANIFEST);
        let b = std::fs::read(&p).map_err(|e| RepoError::io(&p, e))?;
        let m: SeedManifest =
            serde_json::from_slice(&b).map_err(|e| RepoError::corrupt(p.display().to_string(), e.to_string()))?;
        if m.format != "seedship-seed-manifest" || m.version != 1 {
            return Err(RepoError::corrupt(p.display().to_string(), "not a version 1 seed manifest"));
        }
        let recomputed = root_of(&m.files);
        if recomputed != m.root {
            return Err(RepoError::corrupt(
                p.display().to_string(),
                format!("root {} does not match its files ({recomputed})", m.root),
            ));
        }
        Ok(m)
    }

    pub fn write(&self, root: &Path) -> Result<()> {
        layout::write_atomic(&root.join(layout::MANIFEST), &serde_json::to_vec_pretty(self).expect("serializes"))
    }
}

pub fn root_of(files: &[ManifestFile]) -> String {
    let mut h = Sha256::new();
    for f in files {
        h.update(format!("{}\t{}\t{}\t{}\n", f.path, f.size, f.sha256, f.md5).as_bytes());
    }
    hex::encode(h.finalize())
}

/// Reads a file and returns (size, SHA-256 hex, MD5 hex).
pub fn hash_file(path: &Path) -> Result<(u64, String, String)> {
    let mut f = File::open(path).map_err(|e| RepoError::io(path, e))?;
    let (mut sha, mut md5) = (Sha256::new(), Md5::new());
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| RepoError::io(path, e))?;
        if n == 0 {
            break;
        }
        sha.update(&buf[..n]);
        md5.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, hex::encode(sha.finalize()), hex::encode(md5.finalize())))
}

/// Hashes of bytes already in memory.
pub fn hash_bytes(b: &[u8]) -> (String, String) {
    (hex::encode(Sha256::digest(b)), hex::encode(Md5::digest(b)))
}
