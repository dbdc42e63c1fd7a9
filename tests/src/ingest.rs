//! The emulated datacenter's copy: what Azure's people and machines do with a drive that
//! arrived. It opens the disk image, checks its manifest against the job's manifest hash,
//! unlocks it with the job's BitLocker key (the recovery password), and uploads every part into
//! the storage account's container: Put Block, then Put Block List with the blob's MD5. A
//! blob split over several drives is committed once all its parts are staged. Whatever failed
//! goes into a per-drive error log blob, as Azure writes one, and the drive ends
//! `CompletedMoreInfo` with the reason.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use md5::{Digest, Md5};
use seedship_azure::blob::{Accounts, BlobStore};
use seedship_disk::format::{DiskReader, probe};
use seedship_disk::key::RecoveryPassword;
use serde::{Deserialize, Serialize};

/// Put Block size.
const BLOCK: usize = 4 << 20;

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

/// What copying one drive did.
#[derive(Debug, Clone, Default)]
pub struct DriveOutcome {
    pub bytes: i64,
    /// Set when the drive ends `CompletedMoreInfo`: the reason.
    pub failure: Option<String>,
    pub error_log_uri: Option<String>,
    pub verbose_log_uri: Option<String>,
    pub log: Vec<String>,
}

/// What the datacenter knows about the drive from the job.
#[derive(Debug, Clone)]
pub struct DriveOrder {
    pub job: String,
    pub drive_id: String,
    pub image: PathBuf,
    /// The job's `bitLockerKey` for the drive.
    pub key: String,
    /// The job's `manifestHash` for the drive.
    pub manifest_hash: String,
    pub account: String,
    pub diagnostics_path: String,
    pub verbose: bool,
}

fn block_id(offset: u64) -> String {
    format!("{offset:020}")
}

/// Copies one drive into the storage account. Never panics on a bad drive: every problem
/// becomes the drive's failure and a line of its error log.
pub async fn copy_drive(storage: &Storage, order: &DriveOrder, state: &mut IngestJob) -> DriveOutcome {
    let mut out = DriveOutcome::default();
    let store = match storage.account(&order.account) {
        Ok(s) => s,
        Err(e) => {
            out.failure = Some(e);
            return out;
        }
    };
    let mut touched = std::collections::BTreeSet::new();
    match copy_parts(&store, order, state, &mut out, &mut touched).await {
        Ok(()) => {}
        Err(why) => {
            out.log.push(format!("drive {}: {why}", order.drive_id));
            out.failure.get_or_insert(why);
        }
    }
    commit_ready(&store, state, &mut out, &touched).await;
    let logs = store.ensure_container(&order.diagnostics_path).await;
    if out.failure.is_some() {
        let body = xml_log(order, &out.log, "Error");
        let name = format!("{}_{}_error.xml", order.job, order.drive_id);
        if logs.is_ok() && store.put_small(&order.diagnostics_path, &name, body.into_bytes()).await.is_ok() {
            out.error_log_uri = Some(store.blob_url(&order.diagnostics_path, &name));
        }
    }
    if order.verbose {
        let body = xml_log(order, &out.log, "Verbose");
        let name = format!("{}_{}_verbose.xml", order.job, order.drive_id);
        if logs.is_ok() && store.put_small(&order.diagnostics_path, &name, body.into_bytes()).await.is_ok() {
            out.verbose_log_uri = Some(store.blob_url(&order.diagnostics_path, &name));
        }
    }
    out
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn xml_log(order: &DriveOrder, lines: &[String], level: &str) -> String {
    let mut x = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<DriveLog Version=\"2021-01-01\" Level=\"{level}\">\n  <DriveId>{}</DriveId>\n  <JobName>{}</JobName>\n",
        xml_escape(&order.drive_id),
        xml_escape(&order.job)
    );
    for l in lines {
        x.push_str(&format!("  <Entry>{}</Entry>\n", xml_escape(l)));
    }
    x.push_str("</DriveLog>\n");
    x
}

async fn copy_parts(
    store: &BlobStore,
    order: &DriveOrder,
    state: &mut IngestJob,
    out: &mut DriveOutcome,
    touched: &mut std::collections::BTreeSet<String>,
) -> Result<(), String> {
    let image = order.image.clone();
    let header = probe(&image)
        .map_err(|e| format!("the disk cannot be read: {e}"))?
        .ok_or_else(|| "the disk holds no seedship data".to_string())?;
    if header.drive_id != order.drive_id {
        return Err(format!("the disk sent as drive {} is drive {}", order.drive_id, header.drive_id));
    }
    // The manifest must be the one the job names (its MD5 is the job's manifestHash).
    let raw = {
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::open(&image).map_err(|e| format!("the disk cannot be read: {e}"))?;
        let len = f.metadata().map_err(|e| e.to_string())?.len();
        if header.manifest_length > 64 << 20 || header.manifest_offset.saturating_add(header.manifest_length) > len {
            return Err("the drive manifest is out of range on the disk (corrupt header)".into());
        }
        let mut b = vec![0u8; header.manifest_length as usize];
        f.read_exact_at(&mut b, header.manifest_offset)
            .map_err(|e| format!("the drive manifest cannot be read: {e}"))?;
        b
    };
    let md5 = hex::encode(Md5::digest(&raw));
    if !md5.eq_ignore_ascii_case(&order.manifest_hash) {
        return Err(format!(
            "manifest hash mismatch: the drive manifest's MD5 is {}, the job's manifestHash is {}",
            md5.to_ascii_uppercase(),
            order.manifest_hash
        ));
    }
    let pw = RecoveryPassword::parse(&order.key).map_err(|_| {
        "the BitLocker key in the job is not a recovery password; the drive cannot be unlocked".to_string()
    })?;
    let reader = tokio::task::spawn_blocking(move || DiskReader::open(&image, &pw))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| match e {
        seedship_disk::format::DiskError::WrongKey { .. } => {
            "the BitLocker key in the job does not unlock the drive (wrong key)".to_string()
        }
        other => format!("the drive cannot be opened: {other}"),
    })?;
    let container = if reader.manifest.container.is_empty() {
        order.job.to_ascii_lowercase()
    } else {
        reader.manifest.container.clone()
    };
    store.ensure_container(&container).await.map_err(|e| format!("container {container}: {e}"))?;
    let reader = std::sync::Arc::new(reader);
    let parts = reader.manifest.parts.clone();
    let mut failed = 0;
    for (i, p) in parts.iter().enumerate() {
        let r = reader.clone();
        let data = match tokio::task::spawn_blocking(move || r.read_part(i)).await.map_err(|e| e.to_string())? {
            Ok(d) => d,
            Err(e) => {
                failed += 1;
                out.log
                    .push(format!("blob {container}/{}: part at offset {} not imported: {e}", p.path, p.file_offset));
                continue;
            }
        };
        let mut ids = Vec::new();
        for (k, chunk) in data.chunks(BLOCK).enumerate() {
            let id = block_id(p.file_offset + (k * BLOCK) as u64);
            store
                .stage_block(&container, &p.path, id.as_bytes(), chunk.to_vec())
                .await
                .map_err(|e| format!("blob {container}/{}: Put Block failed: {e}", p.path))?;
            ids.push(id);
        }
        if p.path == "manifest.json" && p.parts == 1 {
            read_seed_manifest(&data, state);
        }
        let b = state.blobs.entry(p.path.clone()).or_default();
        b.container = container.clone();
        b.size = p.blob_size;
        b.parts = p.parts;
        b.staged.insert(p.file_offset, (p.length, ids, p.md5.clone()));
        touched.insert(p.path.clone());
        out.bytes += p.length as i64;
        out.log.push(format!("blob {container}/{}: {} bytes at offset {} staged", p.path, p.length, p.file_offset));
    }
    if failed > 0 {
        return Err(format!("{failed} part(s) could not be read from the drive (damaged); see the error log"));
    }
    Ok(())
}

fn read_seed_manifest(data: &[u8], state: &mut IngestJob) {
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
    out: &mut DriveOutcome,
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
            Ok(()) => {
                b.committed = true;
                out.log.push(format!("blob {}/{name}: committed ({} bytes)", b.container, b.size));
            }
            Err(e) => {
                out.log.push(format!("blob {}/{name}: Put Block List failed: {e}", b.container));
                if touched.contains(name) {
                    out.failure.get_or_insert_with(|| format!("blob {name} could not be committed: {e}"));
                }
            }
        }
    }
}

/// "Corrupt blocks": damages the first extent of each of the `n` largest parts on a disk
/// (one byte of its ciphertext), as handling in transit might. Returns the blobs damaged.
/// The datacenter has the job's key, which it needs to find the parts.
pub fn corrupt_parts(image: &Path, key: &str, n: usize) -> Result<Vec<String>, String> {
    use std::os::unix::fs::FileExt;
    let pw = RecoveryPassword::parse(key).map_err(|e| format!("the job's key: {e}"))?;
    let reader = DiskReader::open(image, &pw).map_err(|e| e.to_string())?;
    let mut parts = reader.manifest.parts.clone();
    parts.sort_by(|a, b| b.length.cmp(&a.length).then(a.path.cmp(&b.path)));
    let f = std::fs::OpenOptions::new().read(true).write(true).open(image).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for p in parts.iter().take(n) {
        // Past the extent's 64-byte head, inside its sealed payload.
        let at = p.disk_offset + 64 + (p.length.min(4096) / 2);
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, at).map_err(|e| e.to_string())?;
        b[0] ^= 0x5a;
        f.write_all_at(&b, at).map_err(|e| e.to_string())?;
        out.push(p.path.clone());
    }
    f.sync_all().map_err(|e| e.to_string())?;
    Ok(out)
}
