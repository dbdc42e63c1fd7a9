//! A repository on a filesystem path: create, open, read blobs, write index and snapshots.
//!
//! ```text
//! <root>/config                 plain JSON: format, version, id, chunker, compression
//! <root>/keys/key.json          key slots (passphrase, recovery)
//! <root>/data/<xx>/<sha256>     packs, named by the SHA-256 of their bytes
//! <root>/index/<sha256>         sealed index files
//! <root>/snapshots/<sha256>     sealed snapshots
//! <root>/manifest.json          the seed manifest (staging sets; written last)
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::blob;
use crate::crypto::{ChunkId, Crypto, Kind, MasterKeys};
use crate::error::{RepoError, Result};
use crate::index::Index;
use crate::keyfile::{KdfParams, KeyFile, Unlock};
use crate::layout;
use crate::pack;
use crate::snapshot::Snapshot;

pub const FORMAT: &str = "seedship-repository";
pub const VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerParams {
    pub algorithm: String,
    pub min_size: u32,
    pub avg_size: u32,
    pub max_size: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompressionParams {
    pub algorithm: String,
    pub level: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoConfig {
    pub format: String,
    pub version: u32,
    /// Random id of this repository (hex, 16 bytes).
    pub id: String,
    pub chunker: ChunkerParams,
    pub compression: CompressionParams,
    pub encryption: String,
    pub chunk_id: String,
    /// A pack is closed once it holds at least this many bytes.
    pub pack_target_bytes: u64,
}

/// Choices made when a repository is created.
#[derive(Debug, Clone)]
pub struct CreateOptions {
    pub compression_level: i32,
    pub pack_target_bytes: u64,
    pub kdf: KdfParams,
}

impl Default for CreateOptions {
    fn default() -> Self {
        CreateOptions { compression_level: 3, pack_target_bytes: 32 << 20, kdf: KdfParams::default() }
    }
}

pub struct Repository {
    pub root: PathBuf,
    pub config: RepoConfig,
    keyfile: KeyFile,
    keys: MasterKeys,
    crypto: Crypto,
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository").field("root", &self.root).field("id", &self.config.id).finish()
    }
}

fn key_path(root: &Path) -> PathBuf {
    root.join(layout::KEYS_DIR).join("key.json")
}

/// Whether `root` holds a repository config.
pub fn exists(root: &Path) -> bool {
    root.join(layout::CONFIG).is_file()
}

pub fn read_config(root: &Path) -> Result<RepoConfig> {
    let p = root.join(layout::CONFIG);
    let b = std::fs::read(&p).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            RepoError::NotARepository { path: root.to_path_buf(), reason: "no config file".into() }
        }
        _ => RepoError::io(&p, e),
    })?;
    let cfg: RepoConfig = serde_json::from_slice(&b)
        .map_err(|e| RepoError::NotARepository { path: root.to_path_buf(), reason: format!("config: {e}") })?;
    if cfg.format != FORMAT {
        return Err(RepoError::NotARepository {
            path: root.to_path_buf(),
            reason: format!("config format is {:?}", cfg.format),
        });
    }
    if cfg.version != VERSION {
        return Err(RepoError::Version { path: root.to_path_buf(), found: cfg.version, supported: VERSION });
    }
    Ok(cfg)
}

impl Repository {
    /// Creates a repository in `root` (missing or empty but for control files). Returns it and
    /// the paper recovery key, which must be shown to the user once.
    pub fn create(root: &Path, passphrase: &str, opts: &CreateOptions) -> Result<(Repository, String)> {
        layout::create_dir_all(root)?;
        let foreign: Vec<String> = layout::list_files(root)?
            .into_iter()
            .filter(|f| f != layout::SEED_FILE && f != layout::LOCK_FILE && !f.ends_with(layout::TMP_SUFFIX))
            .collect();
        if !foreign.is_empty() {
            return Err(RepoError::NotARepository {
                path: root.to_path_buf(),
                reason: format!("it is not empty (holds {}, ...); use an empty directory", foreign[0]),
            });
        }
        if !(-7..=22).contains(&opts.compression_level) || opts.compression_level == 0 {
            return Err(RepoError::Invalid(format!(
                "zstd level must be -7 to -1 (fast) or 1 to 22, got {}",
                opts.compression_level
            )));
        }
        let (keyfile, keys, paper) = KeyFile::create(passphrase, opts.kdf)?;
        let mut id = [0u8; 16];
        crate::crypto::fill_random(&mut id)?;
        let config = RepoConfig {
            format: FORMAT.into(),
            version: VERSION,
            id: hex::encode(id),
            chunker: ChunkerParams {
                algorithm: "fastcdc-2020".into(),
                min_size: 512 << 10,
                avg_size: 1 << 20,
                max_size: 8 << 20,
            },
            compression: CompressionParams { algorithm: "zstd".into(), level: opts.compression_level },
            encryption: "aes-256-gcm".into(),
            chunk_id: "blake3-keyed-256".into(),
            pack_target_bytes: opts.pack_target_bytes,
        };
        layout::write_atomic_private(&key_path(root), &serde_json::to_vec_pretty(&keyfile).expect("serializes"))?;
        // The config last: its presence marks a usable repository.
        layout::write_atomic(&root.join(layout::CONFIG), &serde_json::to_vec_pretty(&config).expect("serializes"))?;
        let crypto = keys.crypto();
        Ok((Repository { root: root.to_path_buf(), config, keyfile, keys, crypto }, paper))
    }

    pub fn open(root: &Path, unlock: &Unlock) -> Result<Repository> {
        let config = read_config(root)?;
        let kp = key_path(root);
        let b = std::fs::read(&kp).map_err(|e| RepoError::io(&kp, e))?;
        let keyfile: KeyFile =
            serde_json::from_slice(&b).map_err(|e| RepoError::corrupt(kp.display().to_string(), e.to_string()))?;
        let keys = keyfile.open(unlock)?.ok_or(RepoError::WrongKey { path: kp })?;
        let crypto = keys.crypto();
        Ok(Repository { root: root.to_path_buf(), config, keyfile, keys, crypto })
    }

    pub fn crypto(&self) -> &Crypto {
        &self.crypto
    }

    pub fn recovery_key(&self) -> Result<String> {
        self.keyfile.recovery_key(&self.keys)
    }

    /// Every complete pack: (id, path). Temporary files are not packs.
    pub fn packs(&self) -> Result<Vec<(String, PathBuf)>> {
        Ok(layout::list_files(&self.root.join(layout::DATA_DIR))?
            .into_iter()
            .filter(|r| !r.ends_with(layout::TMP_SUFFIX))
            .filter_map(|r| {
                let id = r.rsplit('/').next()?.to_string();
                (id.len() == 64).then(|| (id.clone(), layout::pack_path(&self.root, &id)))
            })
            .collect())
    }

    /// The index: index files first, then the headers of packs no index file covers (packs a
    /// killed backup left behind). Returns the index and those uncovered packs.
    pub fn load_index(&self) -> Result<(Index, Vec<String>)> {
        let mut index = Index::default();
        let dir = self.root.join(layout::INDEX_DIR);
        for rel in layout::list_files(&dir)? {
            if rel.ends_with(layout::TMP_SUFFIX) {
                continue;
            }
            let p = dir.join(&rel);
            let b = std::fs::read(&p).map_err(|e| RepoError::io(&p, e))?;
            index.decode_file(&self.crypto, &b, &format!("index file {rel}"))?;
        }
        let covered: std::collections::HashSet<[u8; 32]> = index.blobs.values().map(|l| l.pack).collect();
        let mut uncovered = Vec::new();
        for (id, path) in self.packs()? {
            let raw: [u8; 32] = hex::decode(&id).ok().and_then(|b| b.try_into().ok()).unwrap_or([0; 32]);
            if !covered.contains(&raw) {
                let entries = pack::read_header(&self.crypto, &path)?;
                index.add_pack(&id, &entries)?;
                uncovered.push(id);
            }
        }
        Ok((index, uncovered))
    }

    /// Reads one blob by id through the index.
    pub fn read_blob(&self, index: &Index, id: &ChunkId) -> Result<Vec<u8>> {
        let l = index
            .blobs
            .get(id)
            .ok_or_else(|| RepoError::corrupt(format!("blob {}", hex::encode(id)), "not in the index"))?;
        let pack_id = hex::encode(l.pack);
        let what = format!("blob {} in pack {pack_id}", hex::encode(id));
        let sealed = pack::read_blob(&layout::pack_path(&self.root, &pack_id), l.offset, l.length)?;
        blob::decode(&self.crypto, l.kind, &sealed, id, l.raw_length as usize, &what)
    }

    /// Rebuilds the index from the headers of every pack in the folder (each pack says which
    /// blobs it holds, sealed with the repository's key) and writes it in place of the index
    /// files there (a damaged one included). Returns (packs read, blobs indexed).
    pub fn rebuild_index(&self) -> Result<(usize, usize)> {
        let mut index = Index::default();
        let packs = self.packs()?;
        for (id, path) in &packs {
            let entries = pack::read_header(&self.crypto, path)?;
            index.add_pack(id, &entries)?;
        }
        self.write_index(&index)?;
        Ok((packs.len(), index.blobs.len()))
    }

    /// Writes the whole index (replacing older index files) and returns the new file names.
    pub fn write_index(&self, index: &Index) -> Result<Vec<String>> {
        let dir = self.root.join(layout::INDEX_DIR);
        let mut names = Vec::new();
        for sealed in index.encode_files(&self.crypto) {
            let name = hex::encode(Sha256::digest(&sealed));
            layout::write_atomic(&dir.join(&name), &sealed)?;
            names.push(name);
        }
        for old in layout::list_files(&dir)? {
            if !names.contains(&old) {
                let p = dir.join(&old);
                std::fs::remove_file(&p).map_err(|e| RepoError::io(&p, e))?;
            }
        }
        Ok(names)
    }

    pub fn write_snapshot(&self, snap: &Snapshot) -> Result<String> {
        let sealed = self.crypto.seal(Kind::Snapshot, &serde_json::to_vec(snap).expect("serializes"));
        let name = hex::encode(Sha256::digest(&sealed));
        layout::write_atomic(&self.root.join(layout::SNAPSHOTS_DIR).join(&name), &sealed)?;
        Ok(name)
    }

    /// Every snapshot, oldest first: (id, snapshot).
    pub fn snapshots(&self) -> Result<Vec<(String, Snapshot)>> {
        let dir = self.root.join(layout::SNAPSHOTS_DIR);
        let mut out = Vec::new();
        for rel in layout::list_files(&dir)? {
            if rel.ends_with(layout::TMP_SUFFIX) {
                continue;
            }
            let p = dir.join(&rel);
            let b = std::fs::read(&p).map_err(|e| RepoError::io(&p, e))?;
            let plain = self.crypto.open(Kind::Snapshot, &b, &format!("snapshot {rel}"))?;
            let s: Snapshot = serde_json::from_slice(&plain)
                .map_err(|e| RepoError::corrupt(format!("snapshot {rel}"), e.to_string()))?;
            out.push((rel, s));
        }
        out.sort_by(|a, b| a.1.time.cmp(&b.1.time));
        Ok(out)
    }
}

/// Parses a hex chunk id.
pub fn parse_id(s: &str) -> Result<ChunkId> {
    hex::decode(s)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| RepoError::corrupt(format!("id {s}"), "not 64 hex characters"))
}
