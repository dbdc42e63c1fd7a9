//! The repository's keys and what they do.
//!
//! - `enc_key`: AES-256-GCM for every stored object (chunks, trees, pack headers, index,
//!   snapshots).
//! - `id_key`: keyed BLAKE3 of a chunk's plaintext is its id, so ids reveal nothing about
//!   which known files are stored, yet equal data still deduplicates.
//! - `nonce_key`: the 96-bit nonce of each sealed object is keyed BLAKE3 of (kind, plaintext),
//!   a synthetic IV: the same plaintext always seals to the same bytes (so an interrupted
//!   backup resumes into byte-identical packs), and two different plaintexts get the same
//!   nonce only with probability about 2^-96 per pair.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

use crate::error::{RepoError, Result};

/// What a sealed object is; bound into its nonce and associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Data = 1,
    Tree = 2,
    PackHeader = 3,
    Index = 4,
    Snapshot = 5,
    /// The recovery key, sealed in the key file.
    Recovery = 6,
}

impl Kind {
    pub fn from_u8(b: u8) -> Option<Kind> {
        match b {
            1 => Some(Kind::Data),
            2 => Some(Kind::Tree),
            3 => Some(Kind::PackHeader),
            4 => Some(Kind::Index),
            5 => Some(Kind::Snapshot),
            6 => Some(Kind::Recovery),
            _ => None,
        }
    }
}

/// A chunk id: keyed BLAKE3-256 of the chunk's plaintext.
pub type ChunkId = [u8; 32];

/// The 96 bytes of key material behind a repository.
#[derive(Clone)]
pub struct MasterKeys {
    pub(crate) bytes: [u8; 96],
}

impl std::fmt::Debug for MasterKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKeys(<redacted>)")
    }
}

/// Tag bytes added by sealing.
pub const TAG_LEN: usize = 16;
/// Bytes a sealed object has beyond its plaintext.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;

pub struct Crypto {
    aead: LessSafeKey,
    id_key: [u8; 32],
    nonce_key: [u8; 32],
}

impl std::fmt::Debug for Crypto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Crypto(<redacted>)")
    }
}

impl MasterKeys {
    pub fn generate() -> Result<MasterKeys> {
        let mut bytes = [0u8; 96];
        fill_random(&mut bytes)?;
        Ok(MasterKeys { bytes })
    }

    pub fn crypto(&self) -> Crypto {
        let enc: [u8; 32] = self.bytes[..32].try_into().expect("32 bytes");
        Crypto {
            aead: LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &enc).expect("AES-256 key")),
            id_key: self.bytes[32..64].try_into().expect("32 bytes"),
            nonce_key: self.bytes[64..96].try_into().expect("32 bytes"),
        }
    }
}

pub fn fill_random(buf: &mut [u8]) -> Result<()> {
    use ring::rand::SecureRandom;
    ring::rand::SystemRandom::new()
        .fill(buf)
        .map_err(|_| RepoError::Invalid("the system has no randomness available".into()))
}

const AAD_PREFIX: &[u8] = b"seedship repository v1";

fn aad(kind: Kind) -> [u8; 23] {
    let mut a = [0u8; 23];
    a[..22].copy_from_slice(AAD_PREFIX);
    a[22] = kind as u8;
    a
}

impl Crypto {
    pub fn chunk_id(&self, plaintext: &[u8]) -> ChunkId {
        *blake3::keyed_hash(&self.id_key, plaintext).as_bytes()
    }

    /// Seals `plaintext`: `nonce (12) ‖ ciphertext ‖ tag (16)`. Deterministic (see module doc).
    pub fn seal(&self, kind: Kind, plaintext: &[u8]) -> Vec<u8> {
        let mut h = blake3::Hasher::new_keyed(&self.nonce_key);
        h.update(&[kind as u8]);
        h.update(plaintext);
        let digest = h.finalize();
        let nonce: [u8; NONCE_LEN] = digest.as_bytes()[..NONCE_LEN].try_into().expect("12 bytes");
        let mut out = Vec::with_capacity(plaintext.len() + SEAL_OVERHEAD);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = self
            .aead
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(kind)),
                &mut out[NONCE_LEN..],
            )
            .expect("AES-GCM seal cannot fail for in-range lengths");
        out.extend_from_slice(tag.as_ref());
        out
    }

    /// Opens a sealed object of `kind`; any change to it is detected.
    pub fn open(&self, kind: Kind, sealed: &[u8], what: &str) -> Result<Vec<u8>> {
        if sealed.len() < SEAL_OVERHEAD {
            return Err(RepoError::corrupt(what, "too short to be a sealed object"));
        }
        let nonce = Nonce::try_assume_unique_for_key(&sealed[..NONCE_LEN]).expect("12 bytes");
        let mut buf = sealed[NONCE_LEN..].to_vec();
        let plain = self
            .aead
            .open_in_place(nonce, Aad::from(aad(kind)), &mut buf)
            .map_err(|_| RepoError::corrupt(what, "authentication failed (modified, or another repository's key)"))?;
        let n = plain.len();
        buf.truncate(n);
        Ok(buf)
    }

    /// [`Crypto::open`] in place: returns the plaintext, a part of `sealed` (no copy).
    pub fn open_in_place<'a>(&self, kind: Kind, sealed: &'a mut [u8], what: &str) -> Result<&'a mut [u8]> {
        if sealed.len() < SEAL_OVERHEAD {
            return Err(RepoError::corrupt(what, "too short to be a sealed object"));
        }
        let (nonce, rest) = sealed.split_at_mut(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).expect("12 bytes");
        self.aead
            .open_in_place(nonce, Aad::from(aad(kind)), rest)
            .map_err(|_| RepoError::corrupt(what, "authentication failed (modified, or another repository's key)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_is_deterministic_authenticated_and_kind_bound() {
        let c = MasterKeys::generate().unwrap().crypto();
        let a = c.seal(Kind::Data, b"hello");
        assert_eq!(a, c.seal(Kind::Data, b"hello"));
        assert_ne!(a, c.seal(Kind::Data, b"hellp"));
        assert_eq!(c.open(Kind::Data, &a, "x").unwrap(), b"hello");
        assert_eq!(c.open_in_place(Kind::Data, &mut a.clone(), "x").unwrap(), b"hello");
        assert!(c.open_in_place(Kind::Tree, &mut a.clone(), "x").is_err(), "kind is bound in place too");
        assert!(c.open(Kind::Tree, &a, "x").is_err(), "kind is bound");
        let mut bad = a.clone();
        bad[14] ^= 1;
        assert!(c.open(Kind::Data, &bad, "x").is_err());
        let other = MasterKeys::generate().unwrap().crypto();
        assert!(other.open(Kind::Data, &a, "x").is_err());
        assert_ne!(c.chunk_id(b"x"), other.chunk_id(b"x"), "ids are keyed");
    }
}
