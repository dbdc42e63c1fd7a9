//! Repair: the coordinator found files missing or damaged in the import container and asks
//! this agent for them. Each file is read from the staging location, checked against the seed
//! manifest (size, SHA-256, MD5), and uploaded into the import container with Put Block and
//! Put Block List (the blob's MD5 set), using the container-scoped SAS token the coordinator
//! handed out. A file that is gone or changed is reported lost, with why.
//!
//! Names in an order are used only if they are names a staging set has (the repository's
//! layout, or the manifest), files are opened beneath the staging location (never through a
//! link or `..`), and a file without the manifest's hashes is refused, not sent unchecked.

use std::io::Read;
use std::path::Path;

use seedship_repo::beneath::Beneath;
use seedship_repo::layout::MANIFEST;
use seedship_repo::manifest::{SeedManifest, check_path};

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

/// Size, SHA-256 and MD5 of an open file, read once.
fn hash_file(mut f: std::fs::File) -> std::io::Result<(u64, String, String)> {
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

/// Why `file` in `staging` cannot be sent, or `None` when it is as the seed manifest says.
/// The seed manifest itself (which the order gives no hash for) must hash to `root`, the root
/// the seed was registered with.
fn check(staging: Option<&Beneath>, file: &pb::RepairFile, root: &str) -> Option<String> {
    let Some(dir) = staging else {
        return Some("not in the staging location: the location cannot be opened (deleted?)".into());
    };
    if file.path == MANIFEST {
        let mut b = Vec::new();
        let read = dir.read(Path::new(MANIFEST)).and_then(|mut f| f.read_to_end(&mut b));
        let parsed =
            read.map_err(|e| e.to_string()).and_then(|_| SeedManifest::parse(&b, MANIFEST).map_err(|e| e.to_string()));
        return match parsed {
            Ok(m) if !root.is_empty() && m.root == root => None,
            Ok(_) => Some("the staging set's manifest is not the one the seed was registered with".into()),
            Err(e) => Some(format!("cannot be read: {e}")),
        };
    }
    if let Err(why) = check_path(&file.path) {
        return Some(format!("refused: {why}"));
    }
    let hex_ok = |h: &str, n: usize| h.len() == n && h.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex_ok(&file.sha256, 64) || !hex_ok(&file.md5, 32) {
        return Some("refused: the order carries no SHA-256 and MD5 to check it against".into());
    }
    match dir.read(Path::new(&file.path)).and_then(hash_file) {
        Ok((n, sha, md5)) if n == file.size && sha == file.sha256 && md5 == file.md5 => None,
        Ok(_) => Some("changed since it was staged (its size or hash differs from the seed manifest)".into()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some("not in the staging location (deleted?)".into()),
        Err(e) => Some(format!("cannot be read: {e}")),
    }
}

async fn upload(store: &BlobStore, container: &str, name: &str, dir: &Beneath) -> Result<u64, String> {
    let mut f = dir.read(Path::new(name)).map_err(|e| format!("{name}: {e}"))?;
    let (mut md5, mut ids, mut off) = (Md5::new(), Vec::new(), 0u64);
    loop {
        let mut buf = vec![0u8; BLOCK];
        let mut got = 0;
        while got < BLOCK {
            let k = f.read(&mut buf[got..]).map_err(|e| format!("{name}: {e}"))?;
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
        let staging = Beneath::open(Path::new(&o.staging_location)).ok();
        let store = BlobStore::new(&o.blob_endpoint, BlobAuth::Sas(o.sas.clone()))
            .map_err(|e| tonic::Status::internal(format!("blob client: {e}")))?;
        let (mut uploaded, mut lost) = (Vec::new(), Vec::new());
        for file in &o.files {
            if let Some(why) = check(staging.as_ref(), file, &o.manifest_root) {
                tracing::warn!(job = %o.job_name, file = %file.path, %why, "cannot send a file the coordinator asked for");
                lost.push(pb::LostFile { path: file.path.clone(), reason: why });
                continue;
            }
            let Some(dir) = staging.as_ref() else { continue };
            match upload(&store, &o.container, &file.path, dir).await {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn order_file(path: &str, sha256: &str, md5: &str, size: u64) -> pb::RepairFile {
        pb::RepairFile { path: path.into(), size, sha256: sha256.into(), md5: md5.into() }
    }

    #[test]
    fn names_outside_the_staging_set_links_and_missing_hashes_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let (staging, outside) = (d.path().join("staging"), d.path().join("secret.key"));
        std::fs::create_dir_all(staging.join("data/ab")).unwrap();
        std::fs::write(&outside, b"the agent's own secret").unwrap();
        let id = format!("ab{}", "0".repeat(62));
        std::os::unix::fs::symlink(&outside, staging.join(format!("data/ab/{id}"))).unwrap();
        let dir = Beneath::open(&staging).unwrap();
        let (n, sha, md5) = hash_file(std::fs::File::open(&outside).unwrap()).unwrap();
        let cases = [
            order_file("../secret.key", &sha, &md5, n),
            order_file("/etc/shadow", &sha, &md5, n),
            order_file(&format!("data/ab/{id}"), &sha, &md5, n),
            order_file("config", "", "", 0),
        ];
        for f in &cases {
            let why = check(Some(&dir), f, "").unwrap_or_else(|| panic!("{} was accepted", f.path));
            assert!(why.contains("refused") || why.contains("symbolic link"), "{}: {why}", f.path);
        }
        // The manifest must hash to the registered root.
        assert!(check(Some(&dir), &order_file(MANIFEST, "", "", 0), &"a".repeat(64)).is_some());
    }
}
