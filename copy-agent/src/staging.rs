//! The staging set as a copy station reads it: checked against the seed as registered.

use std::collections::HashMap;
use std::fs::File;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use seedship_disk::plan::FileSpec;
use seedship_repo::beneath::Beneath;
use seedship_repo::layout::MANIFEST;
use seedship_repo::manifest::SeedManifest;

/// Why a staging set cannot be copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StagingError {
    /// Not reachable now (not mounted, I/O error): the work goes back to the queue.
    Unreachable(String),
    /// Not the set that was registered (a file changed, is missing or was added to): refused.
    Invalid(String),
}

impl std::fmt::Display for StagingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StagingError::Unreachable(w) | StagingError::Invalid(w) => f.write_str(w),
        }
    }
}

#[derive(Debug)]
pub struct Staging {
    pub root: PathBuf,
    /// The root, opened: every staging file is opened beneath it, never through a link or
    /// `..` out of it (see `seedship_repo::beneath`).
    dir: Beneath,
    pub manifest: SeedManifest,
    /// The manifest's bytes as read once: they are shipped too (as `manifest.json`).
    pub manifest_bytes: Arc<Vec<u8>>,
    /// What to ship, in manifest order, then `manifest.json` (a round: only its files).
    pub files: Vec<FileSpec>,
    pub sizes: HashMap<String, u64>,
    expected: HashMap<String, (String, String)>,
}

fn unreachable(root: &std::path::Path, what: &str, e: &std::io::Error) -> StagingError {
    StagingError::Unreachable(format!(
        "staging location {} cannot be read ({what}: {e}); is it mounted on this station?",
        root.display()
    ))
}

/// Whether `location` (a path a seed's owner registered) is one of `roots` or inside one,
/// compared as the file system resolves both. `Err` says why not, naming only what the seed's
/// owner gave.
pub fn allowed(location: &str, roots: &[PathBuf]) -> Result<PathBuf, StagingError> {
    let given = Path::new(location);
    if !given.is_absolute() {
        return Err(StagingError::Invalid(format!(
            "staging location {location:?} is not an absolute path; register the seed with the share path a copy station mounts"
        )));
    }
    if roots.is_empty() {
        return Err(StagingError::Unreachable(format!(
            "this station has no staging_roots configured, so it reads no staging location (not {location}); an operator adds the shares it may read to [station] staging_roots"
        )));
    }
    let real = std::fs::canonicalize(given).map_err(|e| unreachable(given, "the directory", &e))?;
    for r in roots {
        if let Ok(root) = std::fs::canonicalize(r)
            && real.starts_with(&root)
        {
            return Ok(real);
        }
    }
    Err(StagingError::Unreachable(format!(
        "staging location {location} is not under one of this station's staging_roots; another station may read it, or an operator adds its share to [station] staging_roots"
    )))
}

impl Staging {
    /// Opens the staging set at `location` (which must lie under one of `roots`) and checks it
    /// is the one registered with `manifest_root`: the manifest's root and names (the
    /// repository's layout only: nothing outside the staging root is ever opened), and every
    /// file's presence and size (the content is checked while copying).
    ///
    /// `only` (a round of lost files) names the staging paths to ship, each of which must be
    /// in the seed manifest; only those are checked and opened. Empty: the whole set, and
    /// `manifest.json` with it.
    pub fn open(
        location: &str,
        manifest_root: &str,
        roots: &[PathBuf],
        only: &[String],
    ) -> Result<Staging, StagingError> {
        let root = allowed(location, roots)?;
        let dir = Beneath::open(&root).map_err(|e| unreachable(&root, "the directory", &e))?;
        let mpath = root.join(MANIFEST);
        let bytes = match dir.read(Path::new(MANIFEST)).and_then(|mut f| {
            let mut b = Vec::new();
            std::io::Read::read_to_end(&mut f, &mut b).map(|_| b)
        }) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(StagingError::Invalid(format!(
                    "staging location {} has no {MANIFEST}: it is not a complete staging set",
                    root.display()
                )));
            }
            Err(e) => return Err(unreachable(&root, MANIFEST, &e)),
        };
        // Every name is checked before any file is opened.
        let manifest = SeedManifest::parse(&bytes, &mpath.display().to_string())
            .map_err(|e| StagingError::Invalid(format!("the seed manifest is refused: {e}")))?;
        if manifest.root != manifest_root {
            return Err(StagingError::Invalid(format!(
                "the staging set at {} has manifest root {}, but the seed was registered with {manifest_root}: it changed since registration",
                root.display(),
                manifest.root
            )));
        }
        let wanted: std::collections::HashSet<&str> = only.iter().map(String::as_str).collect();
        if let Some(stray) =
            only.iter().find(|p| p.as_str() != MANIFEST && !manifest.files.iter().any(|f| &f.path == *p))
        {
            return Err(StagingError::Invalid(format!(
                "the round names {stray:?}, which is not in the seed manifest of the staging set at {}",
                root.display()
            )));
        }
        let mut files = Vec::with_capacity(manifest.files.len() + 1);
        let mut expected = HashMap::new();
        for f in manifest.files.iter().filter(|f| wanted.is_empty() || wanted.contains(f.path.as_str())) {
            match dir.read(Path::new(&f.path)).and_then(|h| h.metadata()) {
                Ok(m) if !m.is_file() => {
                    return Err(StagingError::Invalid(format!("staging file {} is not a regular file", f.path)));
                }
                Ok(m) if m.len() != f.size => {
                    return Err(StagingError::Invalid(format!(
                        "staging file {} is {} bytes, but the seed manifest says {}: it changed since registration",
                        f.path,
                        m.len(),
                        f.size
                    )));
                }
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    return Err(StagingError::Invalid(format!(
                        "staging file {} is missing (it is in the seed manifest)",
                        f.path
                    )));
                }
                Err(e) if e.kind() == ErrorKind::InvalidInput => {
                    return Err(StagingError::Invalid(format!("staging file {} is refused: {e}", f.path)));
                }
                Err(e) => return Err(unreachable(&root, &f.path, &e)),
            }
            files.push(FileSpec { path: f.path.clone(), size: f.size });
            expected.insert(f.path.clone(), (f.sha256.clone(), f.md5.clone()));
        }
        if wanted.is_empty() || wanted.contains(MANIFEST) {
            let (sha, md5) = seedship_repo::manifest::hash_bytes(&bytes);
            files.push(FileSpec { path: MANIFEST.into(), size: bytes.len() as u64 });
            expected.insert(MANIFEST.into(), (sha, md5));
        }
        let sizes = files.iter().map(|f| (f.path.clone(), f.size)).collect();
        Ok(Staging { root, dir, manifest, manifest_bytes: Arc::new(bytes), files, sizes, expected })
    }

    /// Checks a whole file's size and SHA-256 against the seed manifest, and gives its MD5 from
    /// there (the source agent computed both from the same bytes); `Invalid` names the file.
    pub fn check(&self, path: &str, size: u64, sha256: &str) -> Result<String, StagingError> {
        let (want_sha, want_md5) = self
            .expected
            .get(path)
            .ok_or_else(|| StagingError::Invalid(format!("{path} is not in the seed manifest")))?;
        let want_size = self.sizes.get(path).copied().unwrap_or(0);
        if size != want_size || sha256 != want_sha {
            return Err(StagingError::Invalid(format!(
                "staging file {path} does not match the seed manifest (SHA-256 {sha256}, the manifest says {want_sha}): it changed since registration"
            )));
        }
        Ok(want_md5.clone())
    }

    /// The seed manifest's MD5 of a file (valid for the bytes once their SHA-256 matches).
    pub fn md5_of(&self, path: &str) -> Option<String> {
        self.expected.get(path).map(|(_, md5)| md5.clone())
    }

    /// Opens a staging file beneath the root; only names of the seed manifest are opened.
    fn open_file(&self, path: &str) -> Result<File, StagingError> {
        if !self.expected.contains_key(path) {
            return Err(StagingError::Invalid(format!("{path} is not in the seed manifest")));
        }
        self.dir.read(Path::new(path)).map_err(|e| match e.kind() {
            ErrorKind::NotFound => StagingError::Invalid(format!("staging file {path} is missing")),
            ErrorKind::InvalidInput => StagingError::Invalid(format!("staging file {path} is refused: {e}")),
            _ => unreachable(&self.root, path, &e),
        })
    }
}

/// Reads staging bytes for the disk writers, keeping files open.
pub struct Reader<'a> {
    staging: &'a Staging,
    open: HashMap<String, File>,
}

impl<'a> Reader<'a> {
    pub fn new(staging: &'a Staging) -> Reader<'a> {
        Reader { staging, open: HashMap::new() }
    }

    pub fn read(&mut self, path: &str, offset: u64, len: usize) -> Result<Vec<u8>, StagingError> {
        if path == MANIFEST {
            let b = &self.staging.manifest_bytes;
            let end = (offset as usize).saturating_add(len).min(b.len());
            return Ok(b[(offset as usize).min(end)..end].to_vec());
        }
        if !self.open.contains_key(path) {
            let f = self.staging.open_file(path)?;
            self.open.insert(path.to_string(), f);
        }
        // Read into spare capacity (no zeroing of 8 MiB buffers first).
        use std::io::{Read, Seek, SeekFrom};
        let mut f = &self.open[path];
        let mut buf = Vec::with_capacity(len);
        f.seek(SeekFrom::Start(offset))
            .and_then(|_| f.take(len as u64).read_to_end(&mut buf))
            .map_err(|e| unreachable(&self.staging.root, path, &e))?;
        if buf.len() < len {
            return Err(StagingError::Invalid(format!(
                "staging file {path} is shorter than the seed manifest says: it changed since registration"
            )));
        }
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use seedship_repo::manifest::{ManifestFile, hash_bytes};

    /// A staging set of `config` and two packs, registered under the temporary root.
    fn set() -> (tempfile::TempDir, PathBuf, String) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("staging");
        std::fs::create_dir_all(root.join("data/ab")).unwrap();
        let mut files = Vec::new();
        for (path, body) in [("config", "cfg"), ("data/ab/ab01", "first pack"), ("data/ab/ab02", "second")] {
            std::fs::write(root.join(path), body).unwrap();
            let (sha256, md5) = hash_bytes(body.as_bytes());
            files.push(ManifestFile { path: path.into(), size: body.len() as u64, sha256, md5 });
        }
        let m = seedship_repo::manifest::SeedManifest::new(files);
        m.write(&root).unwrap();
        (dir, root, m.root)
    }

    #[test]
    fn a_round_opens_only_its_files() {
        let (_d, root, mroot) = set();
        let loc = root.display().to_string();
        let roots = [root.clone()];
        let all = Staging::open(&loc, &mroot, &roots, &[]).unwrap();
        let names: Vec<&str> = all.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(names, ["config", "data/ab/ab01", "data/ab/ab02", MANIFEST]);
        // Another file of the set may be gone: a round only checks its own.
        std::fs::remove_file(root.join("data/ab/ab01")).unwrap();
        let round = Staging::open(&loc, &mroot, &roots, &["data/ab/ab02".to_string()]).unwrap();
        let names: Vec<&str> = round.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(names, ["data/ab/ab02"]);
        assert!(round.check("data/ab/ab02", 6, &hash_bytes(b"second").0).is_ok());
        assert!(matches!(round.check("config", 3, &hash_bytes(b"cfg").0), Err(StagingError::Invalid(_))));
        assert!(matches!(round.open_file("config"), Err(StagingError::Invalid(_))), "only the round's files open");
        // A name the manifest does not hold is refused, saying which.
        let e = Staging::open(&loc, &mroot, &roots, &["data/ab/ab03".to_string()]).unwrap_err();
        assert!(matches!(&e, StagingError::Invalid(w) if w.contains("\"data/ab/ab03\"")), "{e}");
        // The files it does hold are checked as ever.
        let e = Staging::open(&loc, &mroot, &roots, &["data/ab/ab01".to_string()]).unwrap_err();
        assert!(matches!(&e, StagingError::Invalid(w) if w.contains("is missing")), "{e}");
    }
}
