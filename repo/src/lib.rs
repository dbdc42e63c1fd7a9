//! The seedship repository format (version 1), documented in `docs/formats/repository.md`.
//!
//! A repository holds deduplicated, compressed, encrypted backups: files are cut into chunks
//! by FastCDC, each chunk is named by a keyed BLAKE3 hash of its content, compressed with zstd
//! when that helps, sealed with AES-256-GCM and packed with others into large pack files. Trees
//! describe directories; a snapshot names the root tree of one backup. A staging set is a
//! repository plus its seed manifest (sizes, SHA-256 and MD5 of every file).
//!
//! The same format is written to a staging location by the source agent, copied to shipping
//! disks by the copy agent, verified by the coordinator, and becomes the vault.

pub mod beneath;
pub mod blob;
pub mod crypto;
pub mod error;
pub mod index;
pub mod keyfile;
pub mod layout;
pub mod manifest;
pub mod pack;
pub mod repo;
pub mod restore;
pub mod snapshot;
pub mod tree;
pub mod verify;

pub use crypto::{ChunkId, Crypto, Kind};
pub use error::{RepoError, Result};
pub use keyfile::{KdfParams, Unlock};
pub use repo::{CreateOptions, Repository};
