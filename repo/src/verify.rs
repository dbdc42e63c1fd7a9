//! Checking a staging set: every file against the seed manifest, every pack against its
//! name, and (with the key) every blob against its id.

use std::collections::BTreeSet;
use std::path::Path;

use crate::blob;
use crate::error::Result;
use crate::layout;
use crate::manifest::{SeedManifest, hash_file};
use crate::pack;
use crate::repo::Repository;

/// One problem, naming the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub path: String,
    pub problem: String,
}

#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    pub root: String,
    pub files: usize,
    pub bytes: u64,
    pub blobs: usize,
    pub findings: Vec<Finding>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.findings.is_empty()
    }
    fn bad(&mut self, path: &str, problem: impl Into<String>) {
        self.findings.push(Finding { path: path.to_string(), problem: problem.into() });
    }
}

/// Re-reads every file of the staging set at `root` and checks it against the manifest: present,
/// same size, same SHA-256 and MD5; packs also against their own names. Files that are not in
/// the manifest are reported too.
pub fn verify_staging(root: &Path, mut progress: impl FnMut(u64)) -> Result<VerifyReport> {
    let manifest = SeedManifest::load(root)?;
    let mut r = VerifyReport { root: manifest.root.clone(), ..Default::default() };
    let listed: BTreeSet<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
    for f in &manifest.files {
        let p = root.join(&f.path);
        r.files += 1;
        match hash_file(&p) {
            Err(e) => r.bad(&f.path, format!("cannot be read: {e}")),
            Ok((size, sha, md5)) => {
                r.bytes += size;
                progress(size);
                // One finding per file: the first difference found.
                if size != f.size {
                    r.bad(&f.path, format!("size is {size}, the manifest says {}", f.size));
                } else if sha != f.sha256 {
                    r.bad(&f.path, format!("SHA-256 is {sha}, the manifest says {}", f.sha256));
                } else if md5 != f.md5 {
                    r.bad(&f.path, format!("MD5 is {md5}, the manifest says {}", f.md5));
                } else if f.path.starts_with("data/") && !f.path.ends_with(&sha) {
                    r.bad(&f.path, format!("pack content hashes to {sha}, not to its name"));
                }
            }
        }
    }
    for rel in layout::list_files(root)? {
        if layout::is_staging_file(&rel) && !listed.contains(rel.as_str()) {
            r.bad(&rel, "is not in the manifest (added after the backup?)");
        }
    }
    Ok(r)
}

/// With the key: opens every pack header and every blob, and checks each blob against its id.
pub fn verify_data(repo: &Repository, r: &mut VerifyReport) -> Result<()> {
    for (id, path) in repo.packs()? {
        let rel = path.strip_prefix(&repo.root).unwrap_or(&path).to_string_lossy().to_string();
        let entries = match pack::read_header(repo.crypto(), &path) {
            Ok(e) => e,
            Err(e) => {
                r.bad(&rel, e.to_string());
                continue;
            }
        };
        for e in entries {
            r.blobs += 1;
            let what = format!("blob {} in pack {id}", hex::encode(e.id));
            let res = pack::read_blob(&path, e.offset, e.length)
                .and_then(|sealed| blob::decode(repo.crypto(), e.kind, &sealed, &e.id, e.raw_length as usize, &what));
            if let Err(err) = res {
                r.bad(&rel, err.to_string());
                break;
            }
        }
    }
    Ok(())
}
