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
        SeedManifest::parse(&b, &p.display().to_string())
    }

    /// Parses a manifest from anywhere (a staging set, a blob, another machine) and checks it
    /// as a reader must before using a name in it: the format, the root against its files,
    /// and every path (see [`check_path`]), each once, in order, with sane sizes and hashes.
    pub fn parse(b: &[u8], what: &str) -> Result<SeedManifest> {
        let m: SeedManifest = serde_json::from_slice(b).map_err(|e| RepoError::corrupt(what, e.to_string()))?;
        if m.format != "seedship-seed-manifest" || m.version != 1 {
            return Err(RepoError::corrupt(what, "not a version 1 seed manifest"));
        }
        let recomputed = root_of(&m.files);
        if recomputed != m.root {
            return Err(RepoError::corrupt(what, format!("root {} does not match its files ({recomputed})", m.root)));
        }
        let mut prev: Option<&str> = None;
        for f in &m.files {
            check_path(&f.path).map_err(|e| RepoError::corrupt(what, e))?;
            if prev.is_some_and(|p| p >= f.path.as_str()) {
                return Err(RepoError::corrupt(what, format!("{:?} is listed twice or out of order", f.path)));
            }
            if f.size > MAX_FILE_BYTES {
                return Err(RepoError::corrupt(what, format!("{:?} has an impossible size {}", f.path, f.size)));
            }
            let hex =
                |h: &str, n: usize| h.len() == n && h.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
            if !hex(&f.sha256, 64) || !hex(&f.md5, 32) {
                return Err(RepoError::corrupt(what, format!("{:?} lacks a SHA-256 or MD5 in lowercase hex", f.path)));
            }
            prev = Some(&f.path);
        }
        Ok(m)
    }

    pub fn write(&self, root: &Path) -> Result<()> {
        layout::write_atomic(&root.join(layout::MANIFEST), &serde_json::to_vec_pretty(self).expect("serializes"))
    }
}

/// No file of a staging set is larger than this (1 PiB).
pub const MAX_FILE_BYTES: u64 = 1 << 50;

/// Whether `path` is a name a staging set can hold: the repository's layout only (`config`,
/// `keys/<name>`, `data/<2 hex>/<hex>`, `index/<hex>`, `snapshots/<hex>`), each part plain
/// (letters, digits, `.`, `_`, `-`; not starting with `.`). Such a name cannot climb out of a
/// staging root, name an absolute path, or reach another folder of a blob container.
pub fn check_path(path: &str) -> std::result::Result<(), String> {
    let bad =
        || format!("{path:?} is not a file of a staging set (only config, keys/, data/, index/ and snapshots/ names)");
    let plain = |p: &str| {
        !p.is_empty()
            && p.len() <= 128
            && !p.starts_with('.')
            && p.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    };
    let hexname = |p: &str| (2..=128).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_hexdigit());
    let parts: Vec<&str> = path.split('/').collect();
    let ok = match parts.as_slice() {
        [layout::CONFIG] => true,
        [layout::KEYS_DIR, name] => plain(name),
        [layout::DATA_DIR, two, name] => two.len() == 2 && hexname(two) && hexname(name) && name.starts_with(two),
        [layout::INDEX_DIR | layout::SNAPSHOTS_DIR, name] => hexname(name),
        _ => false,
    };
    if ok { Ok(()) } else { Err(bad()) }
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
    let f = File::open(path).map_err(|e| RepoError::io(path, e))?;
    hash_open(f, path)
}

/// Size, SHA-256 and MD5 of an open file, read from where it stands (`path` names it in
/// errors).
pub fn hash_open(mut f: File, path: &Path) -> Result<(u64, String, String)> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_repository_layout_is_a_staging_path() {
        let id = "ab".repeat(32);
        for ok in [
            "config".to_string(),
            "keys/key.json".into(),
            format!("data/ab/{id}"),
            format!("index/{id}"),
            format!("snapshots/{id}"),
        ] {
            assert!(check_path(&ok).is_ok(), "{ok}");
        }
        for bad in [
            "../pki/station-01.key",
            "/etc/shadow",
            "keys/../../etc/shadow",
            "keys/.hidden",
            "data/ab/../../x",
            "data/cd/abab",
            "config/x",
            "snapshots/zz",
            "",
            "manifest.json",
            "seed.json",
        ] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_manifest_naming_a_path_outside_is_refused_even_with_a_matching_root() {
        let f = |p: &str| ManifestFile { path: p.into(), size: 1, sha256: "a".repeat(64), md5: "b".repeat(32) };
        let m = SeedManifest::new(vec![f("config"), f("../pki/station-01.key")]);
        let e = SeedManifest::parse(&serde_json::to_vec(&m).unwrap(), "m").unwrap_err().to_string();
        assert!(e.contains("station-01.key"), "{e}");
        let m = SeedManifest::new(vec![f("config"), f("config")]);
        assert!(SeedManifest::parse(&serde_json::to_vec(&m).unwrap(), "m").unwrap_err().to_string().contains("twice"));
        let ok = SeedManifest::new(vec![f("config"), f("keys/key.json")]);
        assert!(SeedManifest::parse(&serde_json::to_vec(&ok).unwrap(), "m").is_ok());
    }
}
