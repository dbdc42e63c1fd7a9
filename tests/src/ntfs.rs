//! NTFS disk images made with the real tools, for tests: `mkntfs` formats, `ntfs-3g` mounts,
//! the files go in through the mount, and the image is unmounted before anyone reads it. A
//! BitLocker disk is read through dislocker's unlock with its drive's key ([`Keys`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use md5::Digest as _;
use seedship_bitlocker::dislocker::{self, Secret, Unlocked};
use seedship_disk::key::RecoveryPassword;

/// Drive id → its BitLocker recovery password (`prep::escrowed_keys`).
pub type Keys = HashMap<String, RecoveryPassword>;

/// A disk opened for reading (or writing): a BitLocker disk unlocked by dislocker-fuse with its
/// drive's key (locked again on drop), or a plain one as it is.
pub struct Opened {
    unlocked: Option<Unlocked>,
    _dir: Option<tempfile::TempDir>,
    volume: PathBuf,
}

impl Opened {
    /// The NTFS volume: the decrypted one, or the image itself.
    pub fn volume(&self) -> &Path {
        &self.volume
    }
}

impl Drop for Opened {
    fn drop(&mut self) {
        if let Some(u) = self.unlocked.take() {
            let _ = u.lock();
        }
    }
}

/// Opens `image`: unlocked with the key of the drive its BitLocker description names when it
/// is BitLocker, read-only unless `write`.
pub fn open(image: &Path, keys: &Keys, write: bool) -> Result<Opened> {
    if !dislocker::is_bitlocker(image)? {
        return Ok(Opened { unlocked: None, _dir: None, volume: image.to_path_buf() });
    }
    let drive = seedship_bitlocker::volume::label(image)
        .with_context(|| format!("{}: a BitLocker volume that names no drive", image.display()))?;
    let key = keys.get(&drive).with_context(|| format!("{}: no key for drive {drive}", image.display()))?;
    let dir = tempfile::tempdir()?;
    let u = dislocker::unlock(image, &dir.path().join("clear"), Secret::Recovery(key), !write)?;
    let volume = u.file();
    Ok(Opened { unlocked: Some(u), _dir: Some(dir), volume })
}

/// Encrypts the NTFS volume on `image` (formatted by [`format`]) in place with seedship's
/// BitLocker writer, as a customer disk of drive `drive` with recovery password `key`.
pub fn encrypt(image: &Path, drive: &str, key: &RecoveryPassword) -> Result<()> {
    let log = image.with_extension("convert");
    seedship_bitlocker::convert::encrypt_in_place(
        image,
        key,
        seedship_bitlocker::volume::Method::XtsAes256,
        drive,
        &log,
    )?;
    Ok(())
}

fn run(cmd: &mut Command) -> Result<()> {
    let o = cmd.output().with_context(|| format!("{cmd:?} (is ntfs-3g installed? tests/run.sh installs it)"))?;
    anyhow::ensure!(
        o.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    Ok(())
}

/// An image of `mib` MiB at `path`, formatted NTFS with 512-byte sectors, the volume ending
/// before BitLocker's reserved tail (so [`encrypt`] can make it a BitLocker volume).
pub fn format(path: &Path, mib: u64) -> Result<PathBuf> {
    std::fs::File::create(path)?.set_len(mib << 20)?;
    let sectors = seedship_bitlocker::volume::Layout::ntfs_sectors(mib << 20);
    run(Command::new("mkntfs").args(["-F", "-Q", "-s", "512", "-L", "seedship"]).arg(path).arg(sectors.to_string()))?;
    Ok(path.to_path_buf())
}

/// Mounts `image` with ntfs-3g and writes `files` (`/`-separated paths from the volume's root)
/// through the mount, then unmounts.
pub fn write(image: &Path, files: &[(&str, &[u8])]) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mnt = dir.path().join("mnt");
    std::fs::create_dir_all(&mnt)?;
    run(Command::new("ntfs-3g").arg(image).arg(&mnt))?;
    let wrote = (|| -> Result<()> {
        for (path, data) in files {
            let p = mnt.join(path);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&p, data)?;
        }
        Ok(())
    })();
    run(Command::new("umount").arg(&mnt))?;
    wrote
}

/// Mounts `image` at `at` with ntfs-3g, as Microsoft's unlock tool leaves a Data Box Disk.
pub fn mount(image: &Path, at: &Path) -> Result<()> {
    std::fs::create_dir_all(at)?;
    run(Command::new("ntfs-3g").arg(image).arg(at))
}

/// Unmounts everything mounted below `dir` (deepest first): the tests' own mounts, and any a
/// killed copy agent left.
pub fn unmount_under(dir: &Path) {
    let Ok(dir) = std::fs::canonicalize(dir) else { return };
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p.starts_with(&dir) && *p != dir)
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in points {
        let _ = Command::new("umount").arg(&p).output();
    }
}

/// What a shipped disk holds, read raw: its files (path from the root, `\`-separated) with
/// their bytes read by `ntfscat` (ntfs-3g's own reader, independent of seedship's), its
/// identity and its drive manifest.
pub struct DiskView {
    pub image: PathBuf,
    pub files: std::collections::BTreeMap<String, Vec<u8>>,
    /// `\seedship\disk.json`.
    pub id: serde_json::Value,
    /// `\DriveManifest.xml` (customer disks).
    pub manifest: Option<seedship_disk::azure::manifest::DriveManifest>,
    pub manifest_md5: Option<String>,
}

/// The bytes of the file at `path` (`\`-separated) on `image`, by `ntfscat`.
pub fn cat(image: &Path, path: &str) -> Result<Vec<u8>> {
    let o = Command::new("ntfscat").arg(image).arg(path.replace('\\', "/")).output()?;
    anyhow::ensure!(o.status.success(), "ntfscat {path}: {}", String::from_utf8_lossy(&o.stderr));
    Ok(o.stdout)
}

/// What `image` holds (unlocked with its drive's key from `keys` when it is BitLocker).
pub fn read_disk(image: &Path, keys: &Keys) -> Result<DiskView> {
    let opened = open(image, keys, false)?;
    let volume = opened.volume();
    let mut v = seedship_disk::ntfs::Volume::open(volume)?;
    let mut files = std::collections::BTreeMap::new();
    for e in v.files()? {
        let data = cat(volume, &e.path)?;
        anyhow::ensure!(data.len() as u64 == e.size, "{}: ntfscat gave {} bytes of {}", e.path, data.len(), e.size);
        files.insert(e.path, data);
    }
    let id = serde_json::from_slice(files.get("\\seedship\\disk.json").context("no \\seedship\\disk.json")?)?;
    let raw = files.get(seedship_disk::azure::manifest::MANIFEST_PATH);
    let manifest = raw.map(|r| seedship_disk::azure::manifest::DriveManifest::parse(r)).transpose()?;
    let manifest_md5 = raw.map(|r| seedship_disk::azure::manifest::manifest_hash(r));
    Ok(DiskView { image: image.to_path_buf(), files, id, manifest, manifest_md5 })
}

/// Reads a disk set and checks it holds the staging set at `staging` exactly: every staging
/// file (and the seed manifest) on exactly one disk, byte for byte, where the layout puts it;
/// on customer disks, each listed in the drive manifest as blob `<container>/<path>` with
/// block MD5s that match, and nothing else listed. BitLocker disks are read through dislocker
/// with their drive's key from `keys`. Returns the disks, in position order.
pub fn check_set(images: &[PathBuf], staging: &Path, container: &str, keys: &Keys) -> Result<Vec<DiskView>> {
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(staging.join("manifest.json"))?)?;
    let mut expect: Vec<String> =
        m["files"].as_array().context("files")?.iter().map(|f| f["path"].as_str().unwrap().to_string()).collect();
    expect.push("manifest.json".into());
    let mut disks: Vec<DiskView> = images.iter().map(|i| read_disk(i, keys)).collect::<Result<_>>()?;
    disks.sort_by_key(|d| d.id["position"].as_u64());
    let n = disks.len() as u64;
    for (i, d) in disks.iter().enumerate() {
        anyhow::ensure!(d.id["position"] == i as u64 + 1 && d.id["set_size"] == n, "{}: {}", d.image.display(), d.id);
        anyhow::ensure!(d.id["container"] == container, "{}: {}", d.image.display(), d.id);
    }
    for path in &expect {
        let want = std::fs::read(staging.join(path))?;
        let mut on = 0;
        for d in &disks {
            let layout = d.id["layout"].as_str().unwrap_or_default();
            let rel = match layout {
                "customer_disk" => format!("\\seedship\\{}", path.replace('/', "\\")),
                "databox_disk" => format!("\\BlockBlob\\{container}\\{}", path.replace('/', "\\")),
                other => bail!("{}: layout {other:?}", d.image.display()),
            };
            let Some(got) = d.files.get(&rel) else { continue };
            on += 1;
            anyhow::ensure!(*got == want, "{rel} on {} differs from the staging file", d.image.display());
            if let Some(man) = &d.manifest {
                let b = man
                    .blobs
                    .iter()
                    .find(|b| b.file_path == rel)
                    .with_context(|| format!("{rel} is not in the drive manifest of {}", d.image.display()))?;
                anyhow::ensure!(b.blob_path == format!("{container}/{path}") && b.length == want.len() as u64);
                for k in &b.blocks {
                    let piece = &want[k.offset as usize..(k.offset + k.length) as usize];
                    anyhow::ensure!(k.hash == hex::encode_upper(md5::Md5::digest(piece)), "{rel}: block {}", k.offset);
                }
                anyhow::ensure!(b.blocks.iter().map(|k| k.length).sum::<u64>() == b.length, "{rel}: blocks");
            }
        }
        anyhow::ensure!(on == 1, "{path} is on {on} disks, not one");
    }
    for d in &disks {
        if let Some(man) = &d.manifest {
            anyhow::ensure!(man.drive_id == d.id["drive_id"], "{}: DriveId {}", d.image.display(), man.drive_id);
            let listed: std::collections::BTreeSet<&str> = man.blobs.iter().map(|b| b.file_path.as_str()).collect();
            let there: std::collections::BTreeSet<&str> = d
                .files
                .keys()
                .map(|k| k.as_str())
                .filter(|k| k.starts_with("\\seedship\\") && *k != "\\seedship\\disk.json")
                .collect();
            anyhow::ensure!(
                listed == there,
                "{}: the manifest lists {listed:?}, the disk holds {there:?}",
                d.image.display()
            );
        }
    }
    Ok(disks)
}

/// Flips one bit of `image` inside the first copy of `needle` on it (some bytes of a file),
/// as a disk damaged after writing; a BitLocker disk's bit is flipped in its decrypted view
/// (dislocker writes it back encrypted). Returns whether the needle was found.
pub fn flip_bit_in(image: &Path, needle: &[u8], keys: &Keys) -> Result<bool> {
    use std::os::unix::fs::FileExt;
    let opened = open(image, keys, true)?;
    let data = std::fs::read(opened.volume())?;
    let Some(at) = data.windows(needle.len()).position(|w| w == needle) else { return Ok(false) };
    let f = std::fs::OpenOptions::new().write(true).open(opened.volume())?;
    f.write_all_at(&[data[at + needle.len() / 2] ^ 0x01], (at + needle.len() / 2) as u64)?;
    f.sync_all()?;
    Ok(true)
}

/// The drive id of a seedship disk: the one its BitLocker description names, else the one in
/// its identity (`\seedship\disk.json`), read raw.
pub fn drive_id_of(image: &Path) -> Option<String> {
    if let Some(drive) = seedship_bitlocker::volume::label(image) {
        return Some(drive);
    }
    let raw = seedship_disk::ntfs::Volume::open(image).ok()?.read_all("\\seedship\\disk.json", 1 << 16).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&raw).ok()?;
    v["drive_id"].as_str().map(str::to_string)
}

/// The names at the root of the volume on `image`, as `ntfsls` lists them (folders too).
pub fn top_level(image: &Path, keys: &Keys) -> Result<Vec<String>> {
    let opened = open(image, keys, false)?;
    let o = Command::new("ntfsls").arg(opened.volume()).output()?;
    anyhow::ensure!(o.status.success(), "ntfsls: {}", String::from_utf8_lossy(&o.stderr));
    Ok(String::from_utf8_lossy(&o.stdout).lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect())
}

/// The mount points below `dir` (a station's unlocks and mounts it left behind).
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(dir) = std::fs::canonicalize(dir) else { return Vec::new() };
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p.starts_with(&dir))
        .collect()
}

/// Whether something is mounted at `dir`.
pub fn is_mounted(dir: &Path) -> bool {
    let Ok(dir) = std::fs::canonicalize(dir) else { return false };
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|p| Path::new(&p.replace("\\040", " ")) == dir)
}
