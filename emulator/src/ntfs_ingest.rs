//! The emulated datacenter reading a disk as Azure does: only the first data volume, which
//! must be BitLocker-encrypted NTFS. It is unlocked with the disk's BitLocker key (the job's
//! recovery password) by dislocker, a BitLocker implementation seedship did not write, and
//! the NTFS volume read raw through that unlock (never mounted). A disk that is not BitLocker
//! fails with `BitLockerVolumeNotFound`, one without a numerical-password protector with
//! `BitLockerProtectorNotFound`, one the key does not open with `BitLockerKeyInvalid`, and an
//! unlocked volume that is not NTFS with `VolumeNotNtfs`.
//!
//! - A **customer disk** is read through its drive manifest (the job's `manifestFile`): the
//!   manifest's MD5 must be the job's `manifestHash` (`ManifestCorrupted`), its `DriveId` the
//!   disk's serial (`ManifestDriveIdMismatch`), its format valid (`ManifestFormatInvalid`,
//!   `BlobListFormatInvalid`). Each blob's file is read block by block and each block's MD5
//!   checked against the manifest before it is staged.
//! - A **Data Box Disk** has no manifest: each file under `\BlockBlob\<container>\` becomes a
//!   block blob of that container, a file directly in `\BlockBlob\` one of `$root`; files
//!   outside `\BlockBlob\` are not uploaded. Names Azure would rename, and sizes it refuses,
//!   are errored entities.
//!
//! Whole-disk failures carry the datacenter's code at the start of their reason.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};

use md5::{Digest, Md5};
use seedship_azure::blob::BlobStore;
use seedship_azure::databox::copylog::ErroredEntity;
use seedship_azure::databox::{CopyStatus, Sku};
use seedship_disk::azure::manifest::{self, DriveManifest};
use seedship_disk::azure::names;
use seedship_disk::ntfs::{Volume, VolumeError};

use crate::ingest::{DiskOrder, DiskOutcome, Fail, IngestJob, block_id, read_seed_manifest};

/// The serial the datacenter reads off a disk image (a real disk's is on its label): the drive
/// its BitLocker description names, else (a plain NTFS disk) its drive manifest's `DriveId`,
/// else its name (`<serial>.img`, as Data Box Disks are delivered).
pub fn serial_of(image: &Path) -> Option<String> {
    let from_manifest = || {
        Volume::open(image)
            .ok()
            .and_then(|mut v| v.read_all(manifest::MANIFEST_PATH, manifest::MAX_MANIFEST_BYTES).ok())
            .and_then(|raw| DriveManifest::parse(&raw).ok())
            .map(|m| m.drive_id)
    };
    seedship_bitlocker::volume::label(image).or_else(from_manifest).or_else(|| {
        let stem = image.file_stem()?.to_string_lossy().to_string();
        (image.extension().is_some_and(|e| e == "img") && !stem.is_empty()).then_some(stem)
    })
}

/// The folders an unlocked Data Box Disk of a storage-account order holds when it arrives.
pub const DATABOX_FOLDERS: [&str; 4] = ["BlockBlob", "PageBlob", "AzureFile", "DataBoxDiskImport"];

/// Where the datacenter unlocks a disk for a while: a fresh folder of its own.
fn unlock_dir(serial: &str) -> std::path::PathBuf {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::env::temp_dir().join(format!("seedship-datacenter-{}-{n}-{serial}", std::process::id()))
}

/// Makes a delivered Data Box Disk at `path` (kept if it is one already): an image of `size`
/// bytes holding a BitLocker volume (XTS-AES-128, made by seedship's writer) that `key` (the
/// disk's recovery password, `listCredentials`' `bitLockerKey`) and `passkey` (the order's)
/// unlock, its description naming `serial`; inside, one NTFS volume (mkntfs, 512-byte
/// sectors) with [`DATABOX_FOLDERS`], made through dislocker-fuse and an ntfs-3g mount.
pub fn make_databox_disk(path: &Path, size: u64, serial: &str, key: &str, passkey: &str) -> Result<(), String> {
    use seedship_bitlocker::dislocker::{self, Secret};
    use seedship_bitlocker::volume::{self as bitlocker, Method};
    use std::process::Command;
    if bitlocker::label(path).is_some() {
        return Ok(());
    }
    let pw = seedship_disk::key::RecoveryPassword::parse(key).map_err(|e| format!("the disk's key: {e}"))?;
    let run = |cmd: &mut Command| -> Result<(), String> {
        let o = cmd.output().map_err(|e| format!("{cmd:?}: {e} (install ntfs-3g)"))?;
        if !o.status.success() {
            return Err(format!("{cmd:?}: {}", String::from_utf8_lossy(&o.stderr).trim()));
        }
        Ok(())
    };
    let f =
        std::fs::OpenOptions::new().create(true).truncate(true).write(true).open(path).map_err(|e| e.to_string())?;
    f.set_len(size).map_err(|e| e.to_string())?;
    drop(f);
    let layout =
        bitlocker::create_empty(path, &pw, Some(passkey), Method::XtsAes128, serial).map_err(|e| e.to_string())?;
    let clear = unlock_dir(serial);
    let unlocked = dislocker::unlock(path, &clear, Secret::Recovery(&pw), false).map_err(|e| e.to_string())?;
    let volume = unlocked.file();
    let ntfs_sectors = layout.meta[0] / bitlocker::SECTOR;
    let mnt = path.with_extension("delivering");
    let made = (|| {
        run(Command::new("mkntfs")
            .args(["-F", "-Q", "-s", "512", "-L", "DataBoxDisk"])
            .arg(&volume)
            .arg(ntfs_sectors.to_string()))?;
        std::fs::create_dir_all(&mnt).map_err(|e| e.to_string())?;
        run(Command::new("ntfs-3g").arg(&volume).arg(&mnt))?;
        let made = DATABOX_FOLDERS.iter().try_for_each(|d| std::fs::create_dir(mnt.join(d)).map_err(|e| e.to_string()));
        made.and(run(Command::new("umount").arg(&mnt)))
    })();
    let _ = std::fs::remove_dir(&mnt);
    let locked = unlocked.lock().map_err(|e| e.to_string());
    let _ = std::fs::remove_dir(&clear);
    made.and(locked)
}

/// Unlocks the disk's BitLocker volume with its key, read-only, as the datacenter does; every
/// refusal with Azure's code.
fn unlock(order: &DiskOrder) -> Result<seedship_bitlocker::dislocker::Unlocked, Fail> {
    use seedship_bitlocker::dislocker::{self, Secret, UnlockError};
    let invalid = |why: String| Fail(CopyStatus::OtherUserError, format!("BitLockerKeyInvalid: {why}"));
    let Ok(pw) = seedship_disk::key::RecoveryPassword::parse(&order.key) else {
        return Err(invalid("the job holds no valid BitLocker key for this disk".into()));
    };
    dislocker::unlock(&order.image, &unlock_dir(&order.serial), Secret::Recovery(&pw), true).map_err(|e| match e {
        UnlockError::NotBitLocker(_) => Fail(
            CopyStatus::UnsupportedDrive,
            "BitLockerVolumeNotFound: the disk's first volume is not BitLocker-encrypted".into(),
        ),
        UnlockError::NoProtector(..) => Fail(
            CopyStatus::OtherUserError,
            "BitLockerProtectorNotFound: the numerical password key protector does not exist".into(),
        ),
        UnlockError::WrongKey(..) => invalid("the job's BitLocker key does not unlock the volume".into()),
        UnlockError::Missing(e) => Fail(CopyStatus::OtherServiceError, format!("dislocker is not installed: {e}")),
        e => Fail(CopyStatus::HardwareError, format!("BitLockerUnlockVolumeFailed: {e}")),
    })
}

/// One file to upload: where it is on the volume, the blob it becomes, and (customer disks)
/// the manifest's length and block list.
struct Upload {
    file: String,
    container: String,
    blob: String,
    expect: Option<(u64, Vec<manifest::Block>)>,
}

fn vol_fail(e: VolumeError) -> Fail {
    match e {
        VolumeError::NotNtfs(why) => Fail(CopyStatus::UnsupportedDrive, format!("VolumeNotNtfs: {why}")),
        VolumeError::Io(what, e) => Fail(CopyStatus::HardwareError, format!("DiskOperationFailed: {what}: {e}")),
        other => Fail(CopyStatus::DriveCorrupted, format!("DiskOperationFailed: {other}")),
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Fail> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Fail(CopyStatus::OtherServiceError, e.to_string()))
}

/// Copies the disk's NTFS volume into the storage account (see the module).
pub(crate) async fn copy_volume(
    store: &BlobStore,
    order: &DiskOrder,
    state: &mut IngestJob,
    out: &mut DiskOutcome,
    touched: &mut BTreeSet<String>,
) -> Result<(), Fail> {
    let o = order.clone();
    let unlocked = blocking(move || unlock(&o)).await??;
    let r = async {
        let volume = unlocked.file();
        let vol = blocking(move || Volume::open(&volume)).await?.map_err(vol_fail)?;
        let vol = Arc::new(Mutex::new(vol));
        let uploads = match order.sku {
            Sku::CustomerDisk => from_manifest(&vol, order).await?,
            Sku::DataBoxDisk => from_folders(&vol, out).await?,
        };
        for u in uploads {
            upload(store, &vol, u, state, out, touched).await?;
        }
        Ok(())
    }
    .await;
    let dir = unlocked.dir().to_path_buf();
    let _ = blocking(move || {
        let _ = unlocked.lock();
        let _ = std::fs::remove_dir(&dir);
    })
    .await;
    r
}

/// A customer disk's uploads, from its checked drive manifest.
async fn from_manifest(vol: &Arc<Mutex<Volume>>, order: &DiskOrder) -> Result<Vec<Upload>, Fail> {
    let meta = |why: String| Fail(CopyStatus::MetadataFilesModifiedOrRemoved, why);
    let path = order.manifest_file.clone().unwrap_or_else(|| manifest::MANIFEST_PATH.into());
    let v = vol.clone();
    let p = path.clone();
    let raw = blocking(move || v.lock().expect("lock").read_all(&p, manifest::MAX_MANIFEST_BYTES)).await?;
    let raw = raw.map_err(|e| match e {
        VolumeError::NotFound(_) => meta(format!("ManifestNotFound: there is no {path} on the disk's volume")),
        other => vol_fail(other),
    })?;
    // A manifest that names another drive says so first (the wrong disk in the package);
    // then the job's hash; then the format.
    let parsed = DriveManifest::parse(&raw);
    if let Ok(m) = &parsed
        && m.drive_id != order.serial
    {
        return Err(Fail(
            CopyStatus::OtherUserError,
            format!(
                "ManifestDriveIdMismatch: the manifest names drive {}, but the disk's serial is {}",
                m.drive_id, order.serial
            ),
        ));
    }
    if let Some(want) = &order.manifest_hash {
        let got = manifest::manifest_hash(&raw);
        if !got.eq_ignore_ascii_case(want) {
            return Err(meta(format!(
                "ManifestCorrupted: the manifest's content does not match its hash (MD5 {got}, the job's manifestHash {want})"
            )));
        }
    }
    let m = parsed.map_err(|e| meta(e.to_string()))?;
    Ok(m.blobs
        .into_iter()
        .map(|b| {
            let (container, blob) = b.blob_path.split_once('/').unwrap_or(("$root", b.blob_path.as_str()));
            Upload {
                file: b.file_path.clone(),
                container: container.to_string(),
                blob: blob.to_string(),
                expect: Some((b.length, b.blocks)),
            }
        })
        .collect())
}

/// A Data Box Disk's uploads: the files under `\BlockBlob\`.
async fn from_folders(vol: &Arc<Mutex<Volume>>, out: &mut DiskOutcome) -> Result<Vec<Upload>, Fail> {
    let v = vol.clone();
    let files = blocking(move || v.lock().expect("lock").files()).await?.map_err(vol_fail)?;
    let mut uploads = Vec::new();
    for f in files {
        let Some(rest) = f.path.strip_prefix("\\BlockBlob\\") else { continue };
        let (container, blob) = match rest.split_once('\\') {
            Some((c, b)) => (c.to_string(), b.replace('\\', "/")),
            None => ("$root".to_string(), rest.to_string()),
        };
        if let Err(why) = names::blob_size(&f.path, f.size) {
            out.errored.push(errored(
                &container,
                &blob,
                "UploadErrorCloudHttp",
                413,
                &format!("BlockBlobSizeExceeded: {why}"),
            ));
            continue;
        }
        uploads.push(Upload { file: f.path, container, blob, expect: None });
    }
    Ok(uploads)
}

fn errored(container: &str, blob: &str, category: &str, code: i32, message: &str) -> ErroredEntity {
    ErroredEntity { path: format!("{container}/{blob}"), category: category.into(), code, message: message.into() }
}

/// Reads one file block by block (the manifest's blocks, or 4 MiB), checks each block's MD5
/// against the manifest, stages it, and records the blob for the commit.
async fn upload(
    store: &BlobStore,
    vol: &Arc<Mutex<Volume>>,
    u: Upload,
    state: &mut IngestJob,
    out: &mut DiskOutcome,
    touched: &mut BTreeSet<String>,
) -> Result<(), Fail> {
    let refused = if u.container == "$root" { Ok(()) } else { names::container(&u.container) };
    if let Err(why) = refused.and_then(|_| names::blob(&u.blob)) {
        out.errored.push(errored(
            &u.container,
            &u.blob,
            "UploadErrorCloudHttp",
            400,
            &format!("FileNameInvalid: {why}"),
        ));
        return Ok(());
    }
    store
        .ensure_container(&u.container)
        .await
        .map_err(|e| Fail(CopyStatus::StorageAccountNotAccessible, format!("container {}: {e}", u.container)))?;
    let lengths: Option<Vec<u64>> = u.expect.as_ref().map(|(_, b)| b.iter().map(|k| k.length).collect());
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    let (v, file) = (vol.clone(), u.file.clone());
    let reader = tokio::task::spawn_blocking(move || {
        let mut lengths = lengths.map(|l| l.into_iter());
        let mut want = next_len(&mut lengths);
        let mut buf: Vec<u8> = Vec::new();
        let r = v.lock().expect("lock").read(&file, |b| {
            buf.extend_from_slice(b);
            loop {
                // Past the manifest's blocks, 4 MiB pieces (they fail the check).
                let cut = if want > 0 { want } else { 4 << 20 };
                if (buf.len() as u64) < cut {
                    break;
                }
                let piece: Vec<u8> = buf.drain(..cut as usize).collect();
                let _ = tx.blocking_send(piece);
                if want > 0 {
                    want = next_len(&mut lengths);
                }
            }
        });
        if !buf.is_empty() {
            let _ = tx.blocking_send(buf);
        }
        r
    });
    let mut md5 = Md5::new();
    let mut ids = Vec::new();
    let mut at = 0u64;
    let mut broken: Option<String> = None;
    let mut seed_manifest = Vec::new();
    let blocks = u.expect.as_ref().map(|(_, b)| b.clone()).unwrap_or_default();
    while let Some(piece) = rx.recv().await {
        if broken.is_some() {
            continue;
        }
        if let Some((_, _)) = &u.expect {
            match blocks.iter().find(|k| k.offset == at) {
                Some(k)
                    if k.length == piece.len() as u64
                        && k.hash.eq_ignore_ascii_case(&hex::encode(Md5::digest(&piece))) => {}
                Some(_) => {
                    broken =
                        Some(format!("Corrupted: the block at offset {at} does not match its MD5 in the manifest"));
                    continue;
                }
                None => {
                    broken = Some(format!("FileUnexpectedEnd: the file is longer than the manifest's {at} bytes"));
                    continue;
                }
            }
        }
        md5.update(&piece);
        let id = block_id(at);
        store.stage_block(&u.container, &u.blob, id.as_bytes(), piece.clone()).await.map_err(|e| {
            Fail(
                CopyStatus::StorageAccountNotAccessible,
                format!("blob {}/{}: Put Block failed: {e}", u.container, u.blob),
            )
        })?;
        if u.blob == "manifest.json" && seed_manifest.len() < 64 << 20 {
            seed_manifest.extend_from_slice(&piece);
        }
        ids.push(id);
        at += piece.len() as u64;
    }
    let read = reader.await.map_err(|e| Fail(CopyStatus::OtherServiceError, e.to_string()))?;
    if let Err(e) = read {
        let why = match e {
            VolumeError::NotFound(p) => format!("FileNotFound: {p} is not on the volume"),
            other => format!("IOFailed: {other}"),
        };
        out.errored.push(errored(&u.container, &u.blob, "UploadErrorWin32", 2, &why));
        return Ok(());
    }
    if let Some((length, _)) = &u.expect
        && broken.is_none()
        && at != *length
    {
        broken = Some(format!("FileUnexpectedEnd: the file holds {at} of the manifest's {length} bytes"));
    }
    if let Some(why) = broken {
        out.errored.push(errored(&u.container, &u.blob, "UploadErrorDataValidationError", 23, &why));
        return Ok(());
    }
    if u.blob == "manifest.json" {
        read_seed_manifest(&seed_manifest, state);
    }
    let b = state.blobs.entry(u.blob.clone()).or_default();
    b.container = u.container.clone();
    b.size = at;
    b.parts = 1;
    b.staged = [(0, (at, ids, hex::encode(md5.finalize())))].into();
    b.committed = false;
    touched.insert(u.blob.clone());
    out.bytes += at as i64;
    out.files += 1;
    out.copied.push((format!("{}/{}", u.container, u.blob), at));
    Ok(())
}

/// The next block length: from the manifest, or 4 MiB.
fn next_len(lengths: &mut Option<std::vec::IntoIter<u64>>) -> u64 {
    match lengths {
        Some(it) => it.next().unwrap_or(0),
        None => 4 << 20,
    }
}
