//! The index: where each blob is (pack, offset, length).
//!
//! Index file plaintext (sealed, kind Index): `version (u32 LE, = 1) ‖ count (u32 LE)`, then per
//! blob `id (32) ‖ kind (u8) ‖ pack id (32, the SHA-256 of the pack) ‖ offset (u64 LE) ‖
//! length (u32 LE) ‖ raw length (u32 LE)`, sorted by id. Files are named by the SHA-256 of
//! their bytes and hold at most [`MAX_PER_FILE`] entries.

use std::collections::HashMap;

use crate::crypto::{ChunkId, Crypto, Kind};
use crate::error::{RepoError, Result};
use crate::pack::PackEntry;

pub const MAX_PER_FILE: usize = 50_000;
const ENTRY: usize = 81;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub kind: Kind,
    pub pack: [u8; 32],
    pub offset: u64,
    pub length: u32,
    pub raw_length: u32,
}

#[derive(Debug, Default, Clone)]
pub struct Index {
    pub blobs: HashMap<ChunkId, Location>,
}

impl Index {
    pub fn add_pack(&mut self, pack_id: &str, entries: &[PackEntry]) -> Result<()> {
        let pack: [u8; 32] = hex::decode(pack_id)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| RepoError::corrupt(format!("pack name {pack_id}"), "not a SHA-256"))?;
        for e in entries {
            self.blobs.entry(e.id).or_insert(Location {
                kind: e.kind,
                pack,
                offset: e.offset,
                length: e.length,
                raw_length: e.raw_length,
            });
        }
        Ok(())
    }

    pub fn contains(&self, id: &ChunkId) -> bool {
        self.blobs.contains_key(id)
    }

    pub fn len(&self) -> usize {
        self.blobs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }

    /// The sealed index files, deterministic for the same set of blobs.
    pub fn encode_files(&self, crypto: &Crypto) -> Vec<Vec<u8>> {
        let mut all: Vec<(&ChunkId, &Location)> = self.blobs.iter().collect();
        all.sort_by(|a, b| a.0.cmp(b.0));
        all.chunks(MAX_PER_FILE)
            .map(|part| {
                let mut b = Vec::with_capacity(8 + part.len() * ENTRY);
                b.extend_from_slice(&1u32.to_le_bytes());
                b.extend_from_slice(&(part.len() as u32).to_le_bytes());
                for (id, l) in part {
                    b.extend_from_slice(*id);
                    b.push(l.kind as u8);
                    b.extend_from_slice(&l.pack);
                    b.extend_from_slice(&l.offset.to_le_bytes());
                    b.extend_from_slice(&l.length.to_le_bytes());
                    b.extend_from_slice(&l.raw_length.to_le_bytes());
                }
                crypto.seal(Kind::Index, &b)
            })
            .collect()
    }

    /// Adds the entries of one sealed index file.
    pub fn decode_file(&mut self, crypto: &Crypto, sealed: &[u8], what: &str) -> Result<()> {
        let b = crypto.open(Kind::Index, sealed, what)?;
        let bad = |d: &str| RepoError::corrupt(what, d.to_string());
        if b.len() < 8 || u32::from_le_bytes(b[..4].try_into().expect("4")) != 1 {
            return Err(bad("unknown index version"));
        }
        let n = u32::from_le_bytes(b[4..8].try_into().expect("4")) as usize;
        if b.len() != 8 + n * ENTRY {
            return Err(bad("length does not match the entry count"));
        }
        for i in 0..n {
            let e = &b[8 + i * ENTRY..8 + (i + 1) * ENTRY];
            self.blobs.insert(
                e[..32].try_into().expect("32"),
                Location {
                    kind: Kind::from_u8(e[32]).ok_or_else(|| bad("unknown kind"))?,
                    pack: e[33..65].try_into().expect("32"),
                    offset: u64::from_le_bytes(e[65..73].try_into().expect("8")),
                    length: u32::from_le_bytes(e[73..77].try_into().expect("4")),
                    raw_length: u32::from_le_bytes(e[77..81].try_into().expect("4")),
                },
            );
        }
        Ok(())
    }
}
