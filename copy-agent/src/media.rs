//! Shipping disks in the layouts an Azure datacenter reads: an NTFS volume (made with `mkntfs`,
//! 512-byte sectors), written through an `ntfs-3g` mount, then unmounted and read back raw
//! with an NTFS reader that shares nothing with the mount (`seedship_disk::ntfs`).
//!
//! | layout | a staging file `p` of container `c` goes to | and |
//! |---|---|---|
//! | customer disk | `\seedship\p` | `\DriveManifest.xml` lists it as blob `c/p`, with its blocks' MD5s |
//! | Data Box Disk | `\BlockBlob\c\p` | the folder names the container |
//!
//! Each disk also holds `\seedship\disk.json` ([`DiskId`]): which seed, job and position it
//! is, so a disk found again after a crash is recognised. It is not in the manifest and not
//! under `\BlockBlob\`, so it is never uploaded.
//!
//! What was written and verified is kept in a journal on the station ([`Journal`], no keys):
//! after a crash the files it lists are not written again if the volume still holds them at
//! their size.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use md5::{Digest, Md5};
use seedship_disk::azure::manifest::{self, Access, Blocks, DriveManifest, ManifestBlob};
use seedship_disk::ntfs::{Volume, VolumeError};
use serde::{Deserialize, Serialize};

/// The volume label of a seedship disk.
pub const LABEL: &str = "seedship";
/// Where a disk's identity is, from the volume's root.
pub const ID_FILE: &str = "\\seedship\\disk.json";
/// How much is read from staging and written at a time.
const PIECE: usize = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// A tool is missing or failed: what, and its output.
    #[error("{0}")]
    Tool(String),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    /// The staging side failed while a file was copied.
    #[error("{0}")]
    Source(String),
    #[error("{0}")]
    Volume(#[from] VolumeError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> MediaError + '_ {
    move |source| MediaError::Io { path: path.display().to_string(), source }
}

fn tool(cmd: &mut Command) -> Result<(), MediaError> {
    let shown = format!("{cmd:?}");
    let o = cmd.output().map_err(|e| {
        MediaError::Tool(format!("{shown} could not run ({e}); install ntfs-3g (deploy/debian/install.sh)"))
    })?;
    if !o.status.success() {
        return Err(MediaError::Tool(format!(
            "{shown} failed: {}{}",
            String::from_utf8_lossy(&o.stdout).trim(),
            String::from_utf8_lossy(&o.stderr).trim()
        )));
    }
    Ok(())
}

/// Which layout a disk has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    CustomerDisk,
    DataboxDisk,
}

impl Layout {
    /// Where staging file `path` (`/`-separated) of `container` goes on the volume.
    pub fn file_path(self, container: &str, path: &str) -> String {
        let p = path.replace('/', "\\");
        match self {
            Layout::CustomerDisk => format!("\\seedship\\{p}"),
            Layout::DataboxDisk => format!("\\BlockBlob\\{container}\\{p}"),
        }
    }
}

/// What a seedship disk says about itself (`\seedship\disk.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskId {
    pub drive_id: String,
    pub seed_id: String,
    pub job_name: String,
    pub position: u32,
    pub set_size: u32,
    pub layout: Layout,
    pub container: String,
}

/// Checks, before anything is written, that Azure keeps every name as it is: the import
/// container, and each staging file's blob name and size. Names up to five problems.
pub fn check_names(container: &str, files: &[seedship_disk::plan::FileSpec]) -> Result<(), String> {
    use seedship_disk::azure::names;
    let mut bad: Vec<String> = Vec::new();
    if let Err(e) = names::container(container) {
        bad.push(e);
    }
    for f in files {
        if let Err(e) = names::blob(&f.path).and_then(|_| names::blob_size(&f.path, f.size)) {
            bad.push(e);
        }
    }
    if bad.is_empty() {
        return Ok(());
    }
    let more = if bad.len() > 5 { format!(" (and {} more)", bad.len() - 5) } else { String::new() };
    bad.truncate(5);
    Err(format!("Azure would rename or refuse what this seed would put on the disks: {}{more}", bad.join("; ")))
}

/// Formats `device` (a block device, an image or an unlocked BitLocker volume) as one NTFS
/// volume with 512-byte sectors: `sectors` of them, or all the device holds. Everything on it
/// is lost.
pub fn format(device: &Path, sectors: Option<u64>) -> Result<(), MediaError> {
    let mut cmd = Command::new("mkntfs");
    cmd.args(["-F", "-Q", "-s", "512", "-L", LABEL]).arg(device);
    if let Some(n) = sectors {
        cmd.arg(n.to_string());
    }
    tool(&mut cmd)
}

/// The size of the device or image at `path`, in bytes (a block device's end, not its
/// metadata's length).
pub fn device_size(path: &Path) -> Result<u64, MediaError> {
    use std::io::{Seek, SeekFrom};
    let mut f = std::fs::File::open(path).map_err(io(path))?;
    f.seek(SeekFrom::End(0)).map_err(io(path))
}

/// Formats `device` as the NTFS volume of a customer disk: it ends where BitLocker's reserved
/// tail begins, so the volume can be encrypted in place once written.
pub fn format_for_bitlocker(device: &Path) -> Result<(), MediaError> {
    let size = device_size(device)?;
    format(device, Some(seedship_bitlocker::volume::Layout::ntfs_sectors(size)))
}

/// An ntfs-3g mount; unmounted on drop (best effort) or by [`Mount::unmount`].
pub struct Mount {
    pub dir: PathBuf,
    mounted: bool,
}

/// Mounts `device` read-write at `at` (made if missing). A mount left there by a station that
/// was killed (its ntfs-3g still running, or dead) is unmounted first.
pub fn mount(device: &Path, at: &Path) -> Result<Mount, MediaError> {
    release(at);
    std::fs::create_dir_all(at).map_err(io(at))?;
    tool(Command::new("ntfs-3g").arg(device).arg(at))?;
    Ok(Mount { dir: at.to_path_buf(), mounted: true })
}

/// Unmounts whatever is mounted at `at`, if anything (best effort; flushes a live ntfs-3g,
/// clears a dead one's endpoint).
pub fn release(at: &Path) {
    let _ = Command::new("umount").arg(at).output();
}

impl Mount {
    /// A volume mounted by someone else (a Data Box Disk as Microsoft's unlock tool mounts
    /// it): written through, unmounted by [`Mount::unmount`] only, never on drop.
    pub fn adopt(dir: &Path) -> Mount {
        Mount { dir: dir.to_path_buf(), mounted: false }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel.trim_start_matches('\\').replace('\\', "/"))
    }

    /// Flushes and unmounts: after this the volume on the device is complete. A mount still
    /// busy for a moment (a file closed an instant before, something on the host looking in)
    /// is tried again for up to 5 seconds before the disk is called failed.
    pub fn unmount(mut self) -> Result<(), MediaError> {
        self.mounted = false;
        let started = std::time::Instant::now();
        loop {
            match tool(Command::new("umount").arg(&self.dir)) {
                Err(MediaError::Tool(m))
                    if m.contains("target is busy") && started.elapsed() < std::time::Duration::from_secs(5) =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                other => return other,
            }
        }
    }

    /// Drops the mount without unmounting it.
    pub fn keep(mut self) {
        self.mounted = false;
    }

    /// Writes the disk's identity.
    pub fn write_id(&self, id: &DiskId) -> Result<(), MediaError> {
        let p = self.path(ID_FILE);
        write_synced(&p, &serde_json::to_vec_pretty(id).expect("serializes"))
    }

    /// The size of the file at `rel` on the volume, if it is there.
    pub fn size_of(&self, rel: &str) -> Option<u64> {
        std::fs::metadata(self.path(rel)).ok().filter(|m| m.is_file()).map(|m| m.len())
    }

    /// Writes a file of `size` bytes at `rel`, its bytes from `read(offset, len)`, and fsyncs
    /// it. Its SHA-256 and the drive manifest's 4 MiB block MD5s (with `blocks`) are computed
    /// on a thread of their own while the bytes go through the mount; then `accept(sha256)`
    /// says whether they are the expected bytes and gives their MD5 (the seed manifest has it,
    /// computed by the source agent from the same bytes; the read-back checks it on the disk).
    /// A short or failed read, or bytes `accept` refuses, is a [`MediaError::Source`] and
    /// leaves a partial file, which a resume writes again.
    pub fn write_file(
        &self,
        rel: &str,
        size: u64,
        blocks: bool,
        mut read: impl FnMut(u64, usize) -> Result<Vec<u8>, String>,
        mut progress: impl FnMut(u64),
        accept: impl FnOnce(&str) -> Result<String, String>,
    ) -> Result<Written, MediaError> {
        use sha2::{Digest as _, Sha256};
        let p = self.path(rel);
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
        let mut f = std::fs::File::create(&p).map_err(io(&p))?;
        let (sha256, list, length) = std::thread::scope(|s| -> Result<_, MediaError> {
            let (tx, rx) = std::sync::mpsc::sync_channel::<std::sync::Arc<Vec<u8>>>(4);
            let hasher = s.spawn(move || {
                let (mut sha, mut list, mut n) = (Sha256::new(), Blocks::default(), 0u64);
                for piece in rx {
                    sha.update(&piece[..]);
                    if blocks {
                        list.update(&piece);
                    }
                    n += piece.len() as u64;
                }
                (hex::encode(sha.finalize()), if blocks { list.finish().0 } else { Vec::new() }, n)
            });
            let mut at = 0u64;
            while at < size {
                let want = PIECE.min((size - at) as usize);
                let data = read(at, want).map_err(MediaError::Source)?;
                if data.len() != want {
                    return Err(MediaError::Source(format!(
                        "{rel}: staging gave {} of {want} bytes at {at}",
                        data.len()
                    )));
                }
                let data = std::sync::Arc::new(data);
                // The hasher works on this piece while it goes through the mount.
                let _ = tx.send(data.clone());
                f.write_all(&data).map_err(io(&p))?;
                at += want as u64;
                progress(want as u64);
            }
            drop(tx);
            Ok(hasher.join().expect("hasher thread"))
        })?;
        let md5 = accept(&sha256).map_err(MediaError::Source)?;
        f.sync_all().map_err(io(&p))?;
        Ok(Written { rel: rel.to_string(), length, md5, blocks: list })
    }

    /// Writes the drive manifest (customer disks) listing `files` as blobs of `container`;
    /// returns its path and its MD5 in upper-case hex, as the job carries them.
    pub fn write_manifest(
        &self,
        drive_id: &str,
        access: Access,
        container: &str,
        files: &[(String, Written)],
    ) -> Result<(String, String), MediaError> {
        let m = DriveManifest {
            drive_id: drive_id.to_string(),
            access,
            client_creator: format!("seedship {}", env!("CARGO_PKG_VERSION")),
            blobs: files
                .iter()
                .map(|(path, w)| ManifestBlob {
                    blob_path: format!("{container}/{path}"),
                    file_path: w.rel.clone(),
                    length: w.length,
                    blocks: w.blocks.clone(),
                })
                .collect(),
        };
        let xml = m.to_xml();
        write_synced(&self.path(manifest::MANIFEST_PATH), xml.as_bytes())?;
        Ok((manifest::MANIFEST_PATH.to_string(), manifest::manifest_hash(xml.as_bytes())))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if self.mounted {
            let _ = Command::new("umount").arg(&self.dir).output();
        }
    }
}

fn write_synced(p: &Path, data: &[u8]) -> Result<(), MediaError> {
    if let Some(dir) = p.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let mut f = std::fs::File::create(p).map_err(io(p))?;
    f.write_all(data).map_err(io(p))?;
    f.sync_all().map_err(io(p))
}

/// One file written to a volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Written {
    /// On the volume, `\`-separated from the root.
    pub rel: String,
    pub length: u64,
    /// Lower-case hex.
    pub md5: String,
    #[serde(skip)]
    pub blocks: Vec<manifest::Block>,
}

/// The identity of the seedship disk at `device`, read raw (nothing mounted); `None` for a
/// disk that is not NTFS or holds no identity.
pub fn probe(device: &Path) -> Option<DiskId> {
    let mut v = Volume::open(device).ok()?;
    let raw = v.read_all(ID_FILE, 64 << 10).ok()?;
    serde_json::from_slice(&raw).ok()
}

/// Reads every expected file back from the raw volume and compares size and MD5 (and the
/// manifest's MD5, when given). Returns what differs, one line each; empty means all good.
/// Two readers share the files (MD5 is the bound on two cores), each with its own handle.
pub fn read_back(
    device: &Path,
    files: &[(String, u64, String)],
    manifest_hash: Option<&str>,
    progress: impl Fn(u64) + Sync,
) -> Result<Vec<String>, MediaError> {
    // Largest first, each to the reader with less so far.
    let mut order: Vec<&(String, u64, String)> = files.iter().collect();
    order.sort_by_key(|f| std::cmp::Reverse(f.1));
    let mut shares: [Vec<&(String, u64, String)>; 2] = [Vec::new(), Vec::new()];
    let mut load = [0u64; 2];
    for f in order {
        let i = if load[0] <= load[1] { 0 } else { 1 };
        load[i] += f.1;
        shares[i].push(f);
    }
    let progress = &progress;
    let results: Vec<Result<Vec<String>, MediaError>> = std::thread::scope(|s| {
        let handles: Vec<_> = shares
            .iter()
            .map(|share| {
                s.spawn(move || {
                    let mut v = Volume::open(device)?;
                    let mut bad = Vec::new();
                    for (rel, size, md5) in share.iter().copied() {
                        let mut h = Md5::new();
                        match v.read(rel, |b| {
                            h.update(b);
                            progress(b.len() as u64);
                        }) {
                            Ok(n) if n != *size => bad.push(format!("{rel}: {n} bytes on the disk, {size} written")),
                            Ok(_) => {
                                let got = hex::encode(h.finalize());
                                if !got.eq_ignore_ascii_case(md5) {
                                    bad.push(format!("{rel}: MD5 {got} on the disk, {md5} written"));
                                }
                            }
                            Err(VolumeError::NotFound(_)) => bad.push(format!("{rel}: missing from the disk")),
                            Err(e) => return Err(MediaError::from(e)),
                        }
                    }
                    Ok(bad)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("reader")).collect()
    });
    let mut bad = Vec::new();
    for r in results {
        bad.extend(r?);
    }
    bad.sort();
    if let Some(want) = manifest_hash {
        let mut v = Volume::open(device)?;
        match v.read_all(manifest::MANIFEST_PATH, manifest::MAX_MANIFEST_BYTES) {
            Ok(raw) if manifest::manifest_hash(&raw).eq_ignore_ascii_case(want) => {}
            Ok(_) => bad.push(format!("{}: changed since it was written", manifest::MANIFEST_PATH)),
            Err(VolumeError::NotFound(_)) => bad.push(format!("{}: missing from the disk", manifest::MANIFEST_PATH)),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(bad)
}

/// Makes the next reads of `device` come from the device, not the page cache: the read-back
/// checks what the disk holds, not what was just written to memory.
pub fn evict(device: &Path) -> Result<(), MediaError> {
    let f = std::fs::File::open(device).map_err(io(device))?;
    f.sync_data().map_err(io(device))?;
    nix::fcntl::posix_fadvise(&f, 0, 0, nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED)
        .map_err(|e| MediaError::Io { path: device.display().to_string(), source: e.into() })
}

/// What a disk holds so far, kept on the station (`<state_dir>/media-<drive>.json`, 0600,
/// replaced atomically): each staging file written, with its size and MD5, and its blocks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    pub drive_id: String,
    /// Staging path → what was written.
    pub files: BTreeMap<String, JournalEntry>,
    /// Set once every file and the manifest are written and the volume is unmounted: only the
    /// encryption (customer disks) and the read-back are left.
    #[serde(default)]
    pub sealed: Option<Sealed>,
    /// Set once the sealed volume is a complete BitLocker volume (customer disks).
    #[serde(default)]
    pub encrypted: bool,
}

/// A disk whose writing is finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    /// The drive manifest's path and upper-case MD5 (customer disks).
    pub manifest: Option<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub rel: String,
    pub length: u64,
    pub md5: String,
    /// (offset, length, upper-case MD5) of each block.
    pub blocks: Vec<(u64, u64, String)>,
}

impl Journal {
    pub fn path(state_dir: &Path, drive_id: &str) -> PathBuf {
        state_dir.join(format!("media-{drive_id}.json"))
    }

    /// The journal of `drive_id`, or an empty one.
    pub fn load(state_dir: &Path, drive_id: &str) -> Journal {
        std::fs::read(Self::path(state_dir, drive_id))
            .ok()
            .and_then(|b| serde_json::from_slice::<Journal>(&b).ok())
            .filter(|j| j.drive_id == drive_id)
            .unwrap_or_else(|| Journal { drive_id: drive_id.to_string(), ..Default::default() })
    }

    /// The BitLocker conversion's intent log of `drive_id` (no keys, no data).
    pub fn conversion_log(state_dir: &Path, drive_id: &str) -> PathBuf {
        state_dir.join(format!("media-{drive_id}.convert"))
    }

    /// Forgets what the disk held (it is being formatted again), and any conversion of it.
    pub fn reset(state_dir: &Path, drive_id: &str) -> Result<(), MediaError> {
        for p in [Self::path(state_dir, drive_id), Self::conversion_log(state_dir, drive_id)] {
            match std::fs::remove_file(&p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&p)(e)),
                _ => {}
            }
        }
        Ok(())
    }

    /// Every file written, as the read-back expects it: (path on the volume, length, MD5).
    pub fn expected(&self) -> Vec<(String, u64, String)> {
        self.files.values().map(|e| (e.rel.clone(), e.length, e.md5.clone())).collect()
    }

    /// SHA-256 (upper-case hex) of what the disk holds: each file's path on the volume,
    /// length and MD5, one line each in path order, then the manifest's MD5. Two disks with
    /// the same files in the same layout have the same hash.
    pub fn content_hash(&self) -> String {
        use sha2::{Digest as _, Sha256};
        let mut lines: Vec<String> =
            self.files.values().map(|e| format!("{}\t{}\t{}\n", e.rel, e.length, e.md5)).collect();
        lines.sort();
        let mut h = Sha256::new();
        for l in &lines {
            h.update(l.as_bytes());
        }
        if let Some(Sealed { manifest: Some((_, md5)) }) = &self.sealed {
            h.update(md5.as_bytes());
        }
        hex::encode_upper(h.finalize())
    }

    pub fn bytes(&self) -> u64 {
        self.files.values().map(|e| e.length).sum()
    }

    /// Records a written file and saves the journal.
    pub fn record(&mut self, state_dir: &Path, path: &str, w: &Written) -> Result<(), MediaError> {
        self.files.insert(
            path.to_string(),
            JournalEntry {
                rel: w.rel.clone(),
                length: w.length,
                md5: w.md5.clone(),
                blocks: w.blocks.iter().map(|b| (b.offset, b.length, b.hash.clone())).collect(),
            },
        );
        self.save(state_dir)
    }

    pub fn save(&self, state_dir: &Path) -> Result<(), MediaError> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = Self::path(state_dir, &self.drive_id);
        let tmp = path.with_extension("json.tmp");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io(&tmp))?;
        f.write_all(&serde_json::to_vec(self).expect("serializes")).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))
    }

    /// The written file of staging `path`, if the journal has it and the volume still holds
    /// it at its size: a resume need not write it again.
    pub fn done(&self, path: &str, mount: &Mount) -> Option<Written> {
        let e = self.files.get(path)?;
        (mount.size_of(&e.rel) == Some(e.length)).then(|| Written {
            rel: e.rel.clone(),
            length: e.length,
            md5: e.md5.clone(),
            blocks: e
                .blocks
                .iter()
                .map(|(offset, length, hash)| manifest::Block { offset: *offset, length: *length, hash: hash.clone() })
                .collect(),
        })
    }
}

/// What [`sizing`] found: the disks a staging set needs, with NTFS's overhead counted.
#[derive(Debug, Clone, Serialize)]
pub struct Sizing {
    pub files: usize,
    pub bytes: u64,
    pub disks: usize,
    /// Each disk's capacity, at least.
    pub disk_size: u64,
}

/// How many disks, of which size, the staging set at `staging` needs: `disks` of the smallest
/// size that holds it, or as few disks of `disk_size` as hold it (one disk when neither is
/// given). Reads only the seed manifest.
pub fn sizing(staging: &Path, disks: Option<usize>, disk_size: Option<u64>) -> Result<Sizing, String> {
    use seedship_disk::plan::{FileSpec, MAX_DRIVES, disks_for, size_for};
    let raw = std::fs::read(staging.join(seedship_repo::layout::MANIFEST))
        .map_err(|e| format!("{}: {e} (is it a staging set?)", staging.display()))?;
    let m = seedship_repo::manifest::SeedManifest::parse(&raw, &staging.display().to_string())
        .map_err(|e| format!("the seed manifest is refused: {e}"))?;
    let mut files: Vec<FileSpec> = m.files.iter().map(|f| FileSpec { path: f.path.clone(), size: f.size }).collect();
    files.push(FileSpec { path: seedship_repo::layout::MANIFEST.into(), size: raw.len() as u64 });
    let bytes = files.iter().map(|f| f.size).sum();
    let (disks, disk_size) = match (disks, disk_size) {
        (Some(_), Some(_)) => return Err("give --disks or --disk-size, not both".into()),
        (None, Some(size)) => match disks_for(&files, size) {
            Some(n) => (n, size),
            None => {
                return Err(format!(
                    "{MAX_DRIVES} disks of {size} bytes do not hold this seed ({bytes} bytes); use larger disks (see --disks {MAX_DRIVES})"
                ));
            }
        },
        (n, None) => {
            let n = n.unwrap_or(1);
            let size = size_for(&files, n)
                .ok_or_else(|| format!("use 1 to {MAX_DRIVES} disks (an import job holds at most {MAX_DRIVES})"))?;
            (n, size)
        }
    };
    Ok(Sizing { files: files.len(), bytes, disks, disk_size })
}

/// What [`bench`] measured.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub bytes: u64,
    pub files: usize,
    /// Formatting (mkntfs; with dislocker, the empty BitLocker volume and its unlock first)
    /// and mounting.
    pub format_seconds: f64,
    /// Every staging file written through the mount (checked against the seed manifest), the
    /// drive manifest, and the unmount (the data is on the device then; with dislocker, locked
    /// again).
    pub copy_seconds: f64,
    /// Encrypting the written volume in place (`in_place` only).
    pub encrypt_seconds: f64,
    /// The raw read-back of every file (through a read-only dislocker unlock when encrypted).
    pub verify_seconds: f64,
}

/// How a benchmark's volume is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchEncryption {
    /// Plain NTFS.
    None,
    /// NTFS written plain, then encrypted in place (XTS-AES-256).
    InPlace,
    /// An empty BitLocker volume (XTS-AES-256) unlocked read-write by dislocker-fuse, NTFS
    /// formatted and written through it.
    Dislocker,
}

/// Writes a staging set onto one disk image in `layout` as a station would (every staging
/// file's SHA-256 and MD5 checked against the seed manifest while it is copied), unmounts,
/// and reads every file back raw. No coordinator: the disk is not shippable.
pub fn bench(
    staging: &Path,
    disk: &Path,
    layout: Layout,
    container: &str,
    encryption: BenchEncryption,
) -> Result<BenchReport, String> {
    use seedship_bitlocker::dislocker::{self, Secret};
    use seedship_bitlocker::volume::{self as bitlocker, Method};
    let s = |e: &dyn std::fmt::Display| e.to_string();
    let bytes = std::fs::read(staging.join(seedship_repo::layout::MANIFEST)).map_err(|e| s(&e))?;
    let m: seedship_repo::manifest::SeedManifest = serde_json::from_slice(&bytes).map_err(|e| s(&e))?;
    let staging = std::path::absolute(staging).map_err(|e| format!("{}: {e}", staging.display()))?;
    let st =
        crate::staging::Staging::open(&staging.display().to_string(), &m.root, std::slice::from_ref(&staging), &[])
            .map_err(|e| s(&e))?;
    check_names(container, &st.files)?;
    let capacity = std::fs::metadata(disk).map_err(|e| format!("{}: {e}", disk.display()))?.len();
    let p =
        seedship_disk::plan::plan_whole(&st.files, &[seedship_disk::plan::DiskSpec { id: "bench".into(), capacity }])
            .map_err(|e| s(&e))?;
    let pw = seedship_disk::key::RecoveryPassword::generate().map_err(|e| s(&e))?;
    // Encrypted, NTFS ends where BitLocker's reserved tail begins.
    let sectors = (encryption != BenchEncryption::None).then(|| bitlocker::Layout::ntfs_sectors(capacity));
    let clear = disk.with_extension("clear");
    let t = std::time::Instant::now();
    let unlocked = match encryption {
        BenchEncryption::Dislocker => {
            bitlocker::create_empty(disk, &pw, None, Method::XtsAes256, "BENCH").map_err(|e| s(&e))?;
            Some(dislocker::unlock(disk, &clear, Secret::Recovery(&pw), false).map_err(|e| s(&e))?)
        }
        _ => None,
    };
    let volume = unlocked.as_ref().map(|u| u.file()).unwrap_or_else(|| disk.to_path_buf());
    format(&volume, sectors).map_err(|e| s(&e))?;
    let mnt = disk.with_extension("mnt");
    let mount = mount(&volume, &mnt).map_err(|e| s(&e))?;
    let format_seconds = t.elapsed().as_secs_f64();
    let t = std::time::Instant::now();
    let mut reader = crate::staging::Reader::new(&st);
    let mut written = Vec::new();
    for part in &p.disks[0].parts {
        let rel = layout.file_path(container, &part.path);
        let w = mount
            .write_file(
                &rel,
                part.length,
                layout == Layout::CustomerDisk,
                |at, n| reader.read(&part.path, at, n).map_err(|e| e.to_string()),
                |_| {},
                |sha| st.check(&part.path, part.length, sha).map_err(|e| e.to_string()),
            )
            .map_err(|e| s(&e))?;
        written.push((part.path.clone(), w));
    }
    let hash = match layout {
        Layout::CustomerDisk => Some(
            mount
                .write_manifest("BENCH", Access::ContainerSas("bench".into()), container, &written)
                .map_err(|e| s(&e))?
                .1,
        ),
        Layout::DataboxDisk => None,
    };
    mount.unmount().map_err(|e| s(&e))?;
    if let Some(u) = unlocked {
        u.lock().map_err(|e| s(&e))?;
    }
    let copy_seconds = t.elapsed().as_secs_f64();
    let t = std::time::Instant::now();
    if encryption == BenchEncryption::InPlace {
        seedship_bitlocker::convert::encrypt_in_place(
            disk,
            &pw,
            Method::XtsAes256,
            "BENCH",
            &disk.with_extension("convert"),
        )
        .map_err(|e| s(&e))?;
    }
    let encrypt_seconds = t.elapsed().as_secs_f64();
    let t = std::time::Instant::now();
    evict(disk).map_err(|e| s(&e))?;
    let expect: Vec<(String, u64, String)> =
        written.iter().map(|(_, w)| (w.rel.clone(), w.length, w.md5.clone())).collect();
    let bad = match encryption {
        BenchEncryption::None => read_back(disk, &expect, hash.as_deref(), |_| {}).map_err(|e| s(&e))?,
        _ => {
            let u = dislocker::unlock(disk, &clear, Secret::Recovery(&pw), true).map_err(|e| s(&e))?;
            let bad = read_back(&u.file(), &expect, hash.as_deref(), |_| {}).map_err(|e| s(&e))?;
            u.lock().map_err(|e| s(&e))?;
            bad
        }
    };
    if !bad.is_empty() {
        return Err(format!("the read-back found differences: {}", bad.join("; ")));
    }
    Ok(BenchReport {
        bytes: p.total_bytes,
        files: written.len(),
        format_seconds,
        copy_seconds,
        encrypt_seconds,
        verify_seconds: t.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use seedship_disk::plan::FileSpec;

    #[test]
    fn names_azure_would_change_are_refused_before_anything_is_written() {
        let f = |p: &str, size: u64| FileSpec { path: p.into(), size };
        assert_eq!(check_names("import-sd-1a2b", &[f("data/0a/0a1b", 10), f("manifest.json", 5)]), Ok(()));
        let e = check_names("Import_SD", &[f("data/../x", 1), f("ok", 1), f("big", (7 << 40) + 1)]).unwrap_err();
        assert!(e.contains("\"Import_SD\" is not a valid Azure container name"), "{e}");
        assert!(e.contains("\"data/../x\"") && e.contains("big is") && !e.contains("\"ok\""), "{e}");
        let many: Vec<FileSpec> = (0..8).map(|i| f(&format!("x{i}/"), 1)).collect();
        assert!(check_names("abc", &many).unwrap_err().ends_with("(and 3 more)"));
    }
}
