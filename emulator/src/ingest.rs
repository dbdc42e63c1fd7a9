//! The emulated datacenter's copy: what Azure's people and machines do with a disk that
//! arrived. It opens the disk's first NTFS volume ([`crate::ntfs_ingest`]): a customer disk
//! through its drive manifest (checked against the job's manifest hash), a Data Box Disk
//! through its `BlockBlob\<container>\` folders, and uploads every file into the storage
//! account's container: Put Block, then Put Block List with the blob's MD5. A file that fails
//! its check is an errored entity (the disk ends `CompletedWithErrors`); a disk that cannot be
//! read ends with the copy status that says why. Either way the copy log goes to
//! `databoxcopylog` in the job's storage account, as Azure writes it
//! (`seedship_azure::databox::copylog`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use seedship_azure::blob::{Accounts, BlobStore};
use seedship_azure::databox::CopyStatus;
use seedship_azure::databox::copylog::{self, ErroredEntity, LOG_CONTAINER};
use serde::{Deserialize, Serialize};

/// Where the storage accounts are: path-style base URL (Azurite) and each account's key.
#[derive(Debug, Clone, Default)]
pub struct Storage {
    pub accounts: Accounts,
}

impl Storage {
    /// `account=key` lines (the base64 keys, as Azure shows them).
    pub fn load(base_url: &str, keys_file: &Path) -> Result<Storage, String> {
        Ok(Storage {
            accounts: Accounts {
                endpoint_template: format!("{}/{{account}}", base_url.trim_end_matches('/')),
                keys: Accounts::load_keys(keys_file)?,
                token: None,
            },
        })
    }

    pub fn account(&self, account: &str) -> Result<BlobStore, String> {
        if !self.accounts.keys.contains_key(account) {
            return Err(format!("storage account {account} does not exist in the emulated Azure"));
        }
        self.accounts.store(account).map_err(|e| e.to_string())
    }
}

/// One blob being assembled from parts (possibly from several drives).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PendingBlob {
    pub container: String,
    pub size: u64,
    pub parts: u32,
    /// file offset → (length, block ids as text, the part's MD5).
    pub staged: BTreeMap<u64, (u64, Vec<String>, String)>,
    pub committed: bool,
}

/// A job's import so far (persisted with the emulator's state).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IngestJob {
    pub blobs: BTreeMap<String, PendingBlob>,
    /// Whole-file MD5s (hex) from the seed manifest, once a drive carried it.
    pub file_md5: BTreeMap<String, String>,
}

/// What copying one disk did.
#[derive(Debug, Clone)]
pub struct DiskOutcome {
    /// The disk's `copyStatus` at the end.
    pub status: CopyStatus,
    pub bytes: i64,
    /// Parts imported.
    pub files: i64,
    pub errored: Vec<ErroredEntity>,
    /// Why the whole disk failed, when it did.
    pub failure: Option<String>,
    pub error_log: Option<String>,
    pub verbose_log: Option<String>,
    /// Imported parts (path, bytes), for the verbose log.
    pub copied: Vec<(String, u64)>,
}

impl Default for DiskOutcome {
    fn default() -> Self {
        DiskOutcome {
            status: CopyStatus::Completed,
            bytes: 0,
            files: 0,
            errored: Vec::new(),
            failure: None,
            error_log: None,
            verbose_log: None,
            copied: Vec::new(),
        }
    }
}

/// What the datacenter knows about the disk from the job.
#[derive(Debug, Clone)]
pub struct DiskOrder {
    /// The order (job) name.
    pub order: String,
    /// The job's id in the copy logs' names.
    pub job_id: String,
    pub serial: String,
    pub image: PathBuf,
    /// The disk's BitLocker key (the recovery password).
    pub key: String,
    /// The job's `manifestHash` for the disk (customer disks; Data Box Disks have none).
    pub manifest_hash: Option<String>,
    /// The job's `manifestFile` for the disk (customer disks).
    pub manifest_file: Option<String>,
    /// The job's kind: a customer disk's NTFS volume is read through its drive manifest, a
    /// Data Box Disk's through its `BlockBlob\<container>\` folders.
    pub sku: seedship_azure::databox::Sku,
    pub account: String,
    pub verbose: bool,
}

pub(crate) fn block_id(offset: u64) -> String {
    format!("{offset:020}")
}

/// A failure of the whole disk: its copy status and why.
pub(crate) struct Fail(pub CopyStatus, pub String);

/// Copies one disk into the storage account. Never panics on a bad disk: every problem
/// becomes the disk's status, an errored entity or a line of its copy log.
pub async fn copy_disk(storage: &Storage, order: &DiskOrder, state: &mut IngestJob) -> DiskOutcome {
    let mut out = DiskOutcome::default();
    let store = match storage.account(&order.account) {
        Ok(s) => s,
        Err(e) => {
            out.status = CopyStatus::StorageAccountNotAccessible;
            out.failure = Some(e);
            return out;
        }
    };
    let mut touched = std::collections::BTreeSet::new();
    if let Err(Fail(status, why)) = copy_parts(&store, order, state, &mut out, &mut touched).await {
        out.status = status;
        out.failure = Some(why);
    }
    commit_ready(&store, state, &mut out, &touched).await;
    if out.failure.is_none() && !out.errored.is_empty() {
        out.status = if out.files > 0 { CopyStatus::CompletedWithErrors } else { CopyStatus::Failed };
    }
    if store.ensure_container(LOG_CONTAINER).await.is_ok() {
        let name = copylog::copy_log_name(&order.order, &order.serial, &order.job_id);
        let mut entities = out.errored.clone();
        if let Some(why) = &out.failure {
            entities.push(ErroredEntity {
                path: order.serial.clone(),
                category: "DiskError".into(),
                code: 1,
                message: why.clone(),
            });
        }
        let summary = copylog::Summary {
            drive_id: order.serial.clone(),
            status: out.status.as_str().into(),
            total: out.files + out.errored.len() as i64,
            errored: out.errored.len() as i64,
        };
        if store.put_small(LOG_CONTAINER, &name, copylog::write(&entities, &summary).into_bytes()).await.is_ok() {
            out.error_log = Some(store.blob_url(LOG_CONTAINER, &name));
        }
        if order.verbose {
            let name = copylog::verbose_log_name(&order.order, &order.serial, &order.job_id);
            if store.put_small(LOG_CONTAINER, &name, copylog::write_verbose(&out.copied).into_bytes()).await.is_ok() {
                out.verbose_log = Some(store.blob_url(LOG_CONTAINER, &name));
            }
        }
    }
    out
}

async fn copy_parts(
    store: &BlobStore,
    order: &DiskOrder,
    state: &mut IngestJob,
    out: &mut DiskOutcome,
    touched: &mut std::collections::BTreeSet<String>,
) -> Result<(), Fail> {
    let image = order.image.clone();
    if image.as_os_str().is_empty() {
        return Err(Fail(CopyStatus::DriveNotDetected, "no disk came for this serial".into()));
    }
    // Read as Azure reads disks: the first data volume as NTFS (a disk without one fails
    // with VolumeNotNtfs).
    crate::ntfs_ingest::copy_volume(store, order, state, out, touched).await
}

pub(crate) fn read_seed_manifest(data: &[u8], state: &mut IngestJob) {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    for f in v["files"].as_array().into_iter().flatten() {
        if let (Some(p), Some(m)) = (f["path"].as_str(), f["md5"].as_str()) {
            state.file_md5.insert(p.to_string(), m.to_string());
        }
    }
}

/// Commits every blob whose parts are all staged and whose MD5 is known. A commit that fails
/// fails this drive only when this drive carried a part of that blob (`touched`); a blob of
/// another drive's that is still not committed is only logged (its own drive failed already).
async fn commit_ready(
    store: &BlobStore,
    state: &mut IngestJob,
    out: &mut DiskOutcome,
    touched: &std::collections::BTreeSet<String>,
) {
    let md5s = state.file_md5.clone();
    for (name, b) in state.blobs.iter_mut().filter(|(_, b)| !b.committed) {
        let covered: u64 = b.staged.values().map(|(len, _, _)| *len).sum();
        if covered != b.size || b.staged.len() as u32 != b.parts {
            continue;
        }
        let md5 =
            if b.parts == 1 { b.staged.values().next().map(|(_, _, m)| m.clone()) } else { md5s.get(name).cloned() };
        let Some(md5) = md5.and_then(|m| hex::decode(m).ok()) else { continue };
        let ids: Vec<Vec<u8>> =
            b.staged.values().flat_map(|(_, ids, _)| ids.iter().map(|i| i.as_bytes().to_vec())).collect();
        match store.commit(&b.container, name, ids, Some(md5)).await {
            Ok(()) => b.committed = true,
            Err(e) => {
                tracing::warn!(blob = %name, error = %e, "Put Block List failed");
                if touched.contains(name) {
                    out.errored.push(ErroredEntity {
                        path: format!("{}/{name}", b.container),
                        category: "UploadErrorCloudHttp".into(),
                        code: 2,
                        message: format!("the blob could not be committed: {e}"),
                    });
                }
            }
        }
    }
}
