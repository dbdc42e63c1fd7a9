//! This server's vault, through the coordinator: it hands out a short-lived SAS token for the
//! server's own vault container (never the account key), and the agent keeps a local copy
//! (cache) of the vault's files to restore from, checked against each blob's MD5.

use std::path::{Path, PathBuf};

use md5::{Digest, Md5};
use seedship_azure::blob::{BlobAuth, BlobStore};
use seedship_proto::client::Conn;
use seedship_proto::pb;

/// A vault as the coordinator gave it.
pub struct VaultAccess {
    pub store: BlobStore,
    pub container: String,
    pub points: Vec<pb::RecoveryPoint>,
}

/// Asks the coordinator for this server's vault (read and list; with `write`, also create
/// and write).
pub async fn access(conn: &Conn, write: bool) -> Result<VaultAccess, String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let r = seedship_proto::client::seeds(conn.clone())
        .get_vault(pb::GetVaultRequest { write })
        .await
        .map_err(|e| format!("the coordinator gave no vault: {}", e.message()))?
        .into_inner();
    let store = BlobStore::new(&r.blob_endpoint, BlobAuth::Sas(r.sas)).map_err(|e| e.to_string())?;
    Ok(VaultAccess { store, container: r.container, points: r.points })
}

/// Default cache folder of a vault.
pub fn default_cache(container: &str) -> PathBuf {
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache/seedship").join(container)
}

/// What a sync did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncStats {
    pub files: usize,
    pub downloaded: usize,
    pub bytes: u64,
}

/// Brings `cache` up to date with the vault's repository files: each blob missing locally, or
/// with another size or MD5, is downloaded, checked against the blob's MD5 and written
/// atomically. The seed's own records (`seeds/`) are left out.
pub async fn sync(v: &VaultAccess, cache: &Path) -> Result<SyncStats, String> {
    let blobs = v.store.list(&v.container).await.map_err(|e| format!("listing the vault: {e}"))?;
    let mut st = SyncStats::default();
    for b in blobs.iter().filter(|b| !b.name.starts_with("seeds/")) {
        if b.name.contains("..") || b.name.starts_with('/') {
            return Err(format!("the vault holds an unsafe name {:?}", b.name));
        }
        st.files += 1;
        let local = cache.join(&b.name);
        if let Ok(data) = std::fs::read(&local)
            && data.len() as u64 == b.size
            && b.md5.as_deref().is_none_or(|m| Md5::digest(&data).as_slice() == m)
        {
            continue;
        }
        let data = v.store.download(&v.container, &b.name).await.map_err(|e| format!("{}: {e}", b.name))?;
        if let Some(m) = &b.md5
            && Md5::digest(&data).as_slice() != m.as_slice()
        {
            return Err(format!("{} from the vault does not match its MD5 (damaged in storage or in transit)", b.name));
        }
        seedship_repo::layout::write_atomic(&local, &data).map_err(|e| e.to_string())?;
        st.downloaded += 1;
        st.bytes += data.len() as u64;
    }
    Ok(st)
}
