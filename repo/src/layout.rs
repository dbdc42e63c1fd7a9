//! Where things live in a repository directory, and crash-safe writes.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{RepoError, Result};

pub const CONFIG: &str = "config";
pub const KEYS_DIR: &str = "keys";
pub const DATA_DIR: &str = "data";
pub const INDEX_DIR: &str = "index";
pub const SNAPSHOTS_DIR: &str = "snapshots";
/// The seed manifest; written last, so its presence means the staging set is complete.
pub const MANIFEST: &str = "manifest.json";
/// Local control files: not part of the staging set, never shipped.
pub const SEED_FILE: &str = "seed.json";
pub const LOCK_FILE: &str = "lock";
pub const TMP_SUFFIX: &str = ".tmp";

pub fn pack_path(root: &Path, id_hex: &str) -> PathBuf {
    root.join(DATA_DIR).join(&id_hex[..2]).join(id_hex)
}

/// Whether a path (relative to the root, `/`-separated) belongs to the staging set.
pub fn is_staging_file(rel: &str) -> bool {
    !(rel == MANIFEST || rel == SEED_FILE || rel == LOCK_FILE || rel.ends_with(TMP_SUFFIX))
}

pub fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| RepoError::io(dir, e))
}

pub fn create_dir_all(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| RepoError::io(dir, e))
}

/// Writes `bytes` to `path` so that a crash leaves either the old file, no file, or the whole
/// new file: a temporary file, fsync, rename, fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_mode(path, bytes, 0o644)
}

/// [`write_atomic`] for a file only its owner may read (mode 0600 from the start): the key
/// file, which holds the sealed master keys.
pub fn write_atomic_private(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_mode(path, bytes, 0o600)
}

fn write_atomic_mode(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().ok_or_else(|| RepoError::Invalid(format!("{} has no parent", path.display())))?;
    create_dir_all(dir)?;
    let tmp = tmp_path(path);
    {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .map_err(|e| RepoError::io(&tmp, e))?;
        // A leftover temporary file keeps its old mode; this one gets `mode`.
        f.set_permissions(<fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(mode))
            .map_err(|e| RepoError::io(&tmp, e))?;
        f.write_all(bytes).map_err(|e| RepoError::io(&tmp, e))?;
        f.sync_all().map_err(|e| RepoError::io(&tmp, e))?;
    }
    fs::rename(&tmp, path).map_err(|e| RepoError::io(path, e))?;
    fsync_dir(dir)
}

pub fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(TMP_SUFFIX);
    path.with_file_name(name)
}

/// Every regular file under `root`, as sorted `/`-separated relative paths.
pub fn list_files(root: &Path) -> Result<Vec<String>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
        let rd = match fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(RepoError::io(dir, e)),
        };
        for entry in rd {
            let entry = entry.map_err(|e| RepoError::io(dir, e))?;
            let ft = entry.file_type().map_err(|e| RepoError::io(entry.path(), e))?;
            if ft.is_dir() {
                walk(root, &entry.path(), out)?;
            } else if ft.is_file() {
                let rel = entry.path().strip_prefix(root).expect("under root").to_string_lossy().replace('\\', "/");
                out.push(rel);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(root, root, &mut out)?;
    out.sort();
    Ok(out)
}

/// Removes leftover temporary files (from a run that was killed) under `root`.
pub fn remove_tmp_files(root: &Path) -> Result<usize> {
    let mut n = 0;
    for rel in list_files(root)? {
        if rel.ends_with(TMP_SUFFIX) {
            let p = root.join(&rel);
            fs::remove_file(&p).map_err(|e| RepoError::io(&p, e))?;
            n += 1;
        }
    }
    Ok(n)
}
