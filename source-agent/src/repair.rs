//! Repair: the coordinator found files missing or damaged in the import container and asks
//! this agent for them. Each file is read from the staging location, checked against the seed
//! manifest (size, SHA-256, MD5), and uploaded into the import container with Put Block and
//! Put Block List (the blob's MD5 set), using the container-scoped SAS token the coordinator
//! handed out. A file that is gone or changed is reported lost, with why.

use std::io::Read;
use std::path::Path;

use md5::Md5;
use seedship_azure::blob::{BlobAuth, BlobStore};
use seedship_proto::client::{Conn, new_request_id};
use seedship_proto::pb;
use sha2::{Digest, Sha256};

/// Put Block size.
const BLOCK: usize = 4 << 20;

/// What one pass did, for the log and the command's output.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RepairSummary {
    pub orders: usize,
    pub uploaded: Vec<String>,
    pub lost: Vec<(String, String)>,
    pub bytes: u64,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Size, SHA-256 and MD5 of a file, read once.
fn hash_file(path: &Path) -> std::io::Result<(u64, String, String)> {
    let mut f = std::fs::File::open(path)?;
    let (mut sha, mut md5, mut n) = (Sha256::new(), Md5::new(), 0u64);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            break;
        }
        sha.update(&buf[..k]);
        md5.update(&buf[..k]);
        n += k as u64;
    }
    Ok((n, hex(&sha.finalize()), hex(&md5.finalize())))
}

/// Why `file` in `staging` cannot be sent, or `None` when it is as the manifest says.
fn check(staging: &Path, file: &pb::RepairFile) -> Option<String> {
    let p = staging.join(&file.path);
    if !p.is_file() {
        return Some(format!("not in the staging location {} (deleted?)", staging.display()));
    }
    if file.sha256.is_empty() {
        // The seed manifest itself: the coordinator checks it against the registered root.
        return None;
    }
    match hash_file(&p) {
        Ok((n, sha, md5)) if n == file.size && sha == file.sha256 && md5 == file.md5 => None,
        Ok(_) => Some("changed since it was staged (its size or hash differs from the seed manifest)".into()),
        Err(e) => Some(format!("cannot be read: {e}")),
    }
}

async fn upload(store: &BlobStore, container: &str, name: &str, path: &Path) -> Result<u64, String> {
    let mut f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (mut md5, mut ids, mut off) = (Md5::new(), Vec::new(), 0u64);
    loop {
        let mut buf = vec![0u8; BLOCK];
        let mut got = 0;
        while got < BLOCK {
            let k = f.read(&mut buf[got..]).map_err(|e| format!("{}: {e}", path.display()))?;
            if k == 0 {
                break;
            }
            got += k;
        }
        if got == 0 && !ids.is_empty() {
            break;
        }
        buf.truncate(got);
        md5.update(&buf);
        let id = format!("{off:020}").into_bytes();
        store.stage_block(container, name, &id, buf).await.map_err(|e| format!("Put Block of {name}: {e}"))?;
        ids.push(id);
        off += got as u64;
        if got < BLOCK {
            break;
        }
    }
    store
        .commit(container, name, ids, Some(md5.finalize().to_vec()))
        .await
        .map_err(|e| format!("Put Block List of {name}: {e}"))?;
    Ok(off)
}

/// Fetches the coordinator's repair orders for this agent, carries them out and reports each.
pub async fn repair_once(conn: &Conn) -> Result<RepairSummary, tonic::Status> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut seeds = seedship_proto::client::seeds(conn.clone());
    let orders = seeds.get_repairs(pb::GetRepairsRequest {}).await?.into_inner().orders;
    let mut sum = RepairSummary { orders: orders.len(), ..Default::default() };
    for o in orders {
        let staging = Path::new(&o.staging_location);
        let store = BlobStore::new(&o.blob_endpoint, BlobAuth::Sas(o.sas.clone()))
            .map_err(|e| tonic::Status::internal(format!("blob client: {e}")))?;
        let (mut uploaded, mut lost) = (Vec::new(), Vec::new());
        for file in &o.files {
            if let Some(why) = check(staging, file) {
                tracing::warn!(job = %o.job_name, file = %file.path, %why, "cannot send a file the coordinator asked for");
                lost.push(pb::LostFile { path: file.path.clone(), reason: why });
                continue;
            }
            match upload(&store, &o.container, &file.path, &staging.join(&file.path)).await {
                Ok(n) => {
                    tracing::info!(job = %o.job_name, file = %file.path, bytes = n, "uploaded again");
                    sum.bytes += n;
                    uploaded.push(file.path.clone());
                }
                // Not lost: the storage may come back; the order stays and is retried.
                Err(e) => tracing::warn!(job = %o.job_name, file = %file.path, error = %e, "upload failed; will retry"),
            }
        }
        if uploaded.is_empty() && lost.is_empty() {
            continue;
        }
        sum.uploaded.extend(uploaded.iter().cloned());
        sum.lost.extend(lost.iter().map(|l| (l.path.clone(), l.reason.clone())));
        seeds
            .report_repair(pb::ReportRepairRequest {
                request_id: new_request_id(),
                seed_id: o.seed_id.clone(),
                uploaded,
                lost,
            })
            .await?;
    }
    Ok(sum)
}
