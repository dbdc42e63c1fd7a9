//! The key file: the repository's master keys, wrapped once per way in.
//!
//! - A **passphrase slot**: Argon2id(passphrase, salt) gives a key that wraps the master keys
//!   with AES-256-GCM.
//! - A **recovery slot**: a random 256-bit recovery key, printed once as a paper key, wraps the
//!   same master keys (through BLAKE3 key derivation; it is random, so no slow KDF is needed).
//!   The recovery key itself is also kept sealed under the master keys, so whoever can open the
//!   repository can print the paper key again.

use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use serde::{Deserialize, Serialize};

use crate::crypto::{Kind, MasterKeys, fill_random};
use crate::error::{RepoError, Result};

/// Argon2id cost; stored in each slot so it can be raised later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for KdfParams {
    /// 64 MiB, 3 passes, 1 lane: about a third of a second here, and expensive to guess at.
    fn default() -> Self {
        KdfParams { memory_kib: 64 * 1024, iterations: 3, parallelism: 1 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Slot {
    Passphrase { kdf: String, params: KdfParams, salt: String, wrapped: String },
    Recovery { wrapped: String },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyFile {
    pub version: u32,
    pub slots: Vec<Slot>,
    /// The recovery key sealed under the master keys (for `recovery-key` export).
    pub recovery_sealed: String,
}

/// How a user opens a repository.
#[derive(Clone)]
pub enum Unlock {
    Passphrase(String),
    RecoveryKey(String),
}

impl std::fmt::Debug for Unlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Unlock::Passphrase(_) => "Unlock::Passphrase(<redacted>)",
            Unlock::RecoveryKey(_) => "Unlock::RecoveryKey(<redacted>)",
        })
    }
}

fn wrap(kek: &[u8; 32], plain: &[u8]) -> Result<String> {
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, kek).expect("32-byte key"));
    let mut nonce = [0u8; NONCE_LEN];
    fill_random(&mut nonce)?;
    let mut buf = plain.to_vec();
    key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(b"seedship key slot v1"), &mut buf)
        .map_err(|_| RepoError::Invalid("key wrapping failed".into()))?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&buf);
    Ok(B64.encode(out))
}

fn unwrap(kek: &[u8; 32], wrapped: &str) -> Option<Vec<u8>> {
    let raw = B64.decode(wrapped).ok()?;
    if raw.len() < NONCE_LEN + 16 {
        return None;
    }
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, kek).ok()?);
    let nonce = Nonce::try_assume_unique_for_key(&raw[..NONCE_LEN]).ok()?;
    let mut buf = raw[NONCE_LEN..].to_vec();
    let plain = key.open_in_place(nonce, Aad::from(b"seedship key slot v1"), &mut buf).ok()?;
    Some(plain.to_vec())
}

fn argon2(passphrase: &str, salt: &[u8], p: KdfParams) -> Result<[u8; 32]> {
    let params = Params::new(p.memory_kib, p.iterations, p.parallelism, Some(32))
        .map_err(|e| RepoError::Invalid(format!("bad Argon2id parameters: {e}")))?;
    let mut out = [0u8; 32];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase.as_bytes(), salt, &mut out)
        .map_err(|e| RepoError::Invalid(format!("Argon2id failed: {e}")))?;
    Ok(out)
}

fn recovery_kek(secret: &[u8; 32]) -> [u8; 32] {
    blake3::derive_key("seedship recovery slot v1", secret)
}

impl KeyFile {
    /// New master keys with a passphrase slot and a recovery slot. Returns the key file, the
    /// master keys, and the paper recovery key (show it once).
    pub fn create(passphrase: &str, kdf: KdfParams) -> Result<(KeyFile, MasterKeys, String)> {
        if passphrase.is_empty() {
            return Err(RepoError::Invalid("the passphrase is empty".into()));
        }
        let keys = MasterKeys::generate()?;
        let mut salt = [0u8; 16];
        fill_random(&mut salt)?;
        let kek = argon2(passphrase, &salt, kdf)?;
        let mut secret = [0u8; 32];
        fill_random(&mut secret)?;
        let crypto = keys.crypto();
        let kf = KeyFile {
            version: 1,
            slots: vec![
                Slot::Passphrase {
                    kdf: "argon2id".into(),
                    params: kdf,
                    salt: B64.encode(salt),
                    wrapped: wrap(&kek, &keys.bytes)?,
                },
                Slot::Recovery { wrapped: wrap(&recovery_kek(&secret), &keys.bytes)? },
            ],
            recovery_sealed: B64.encode(crypto.seal(Kind::Recovery, &secret)),
        };
        Ok((kf, keys, paper_key(&secret)))
    }

    /// Opens the master keys; `None` when no slot opens with what was given.
    pub fn open(&self, unlock: &Unlock) -> Result<Option<MasterKeys>> {
        for slot in &self.slots {
            let plain = match (slot, unlock) {
                (Slot::Passphrase { params, salt, wrapped, .. }, Unlock::Passphrase(p)) => {
                    let salt = B64.decode(salt).map_err(|_| RepoError::corrupt("key file", "bad salt"))?;
                    unwrap(&argon2(p, &salt, *params)?, wrapped)
                }
                (Slot::Recovery { wrapped }, Unlock::RecoveryKey(k)) => {
                    let Some(secret) = parse_paper_key(k) else { return Ok(None) };
                    unwrap(&recovery_kek(&secret), wrapped)
                }
                _ => None,
            };
            if let Some(bytes) = plain.and_then(|b| <[u8; 96]>::try_from(b).ok()) {
                return Ok(Some(MasterKeys { bytes }));
            }
        }
        Ok(None)
    }

    /// The paper recovery key, for someone who can already open the repository.
    pub fn recovery_key(&self, keys: &MasterKeys) -> Result<String> {
        let sealed =
            B64.decode(&self.recovery_sealed).map_err(|_| RepoError::corrupt("key file", "bad recovery field"))?;
        let secret = keys.crypto().open(Kind::Recovery, &sealed, "key file recovery field")?;
        let secret: [u8; 32] = secret.try_into().map_err(|_| RepoError::corrupt("key file", "bad recovery length"))?;
        Ok(paper_key(&secret))
    }
}

/// Crockford base32 without I, L, O, U: easy to read aloud and to type back.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// 32 secret bytes and a 2-byte check, as 55 base32 characters in 11 groups of 5.
pub fn paper_key(secret: &[u8; 32]) -> String {
    let check = blake3::hash(secret);
    let mut bytes = secret.to_vec();
    bytes.extend_from_slice(&check.as_bytes()[..2]);
    let mut bits: u64 = 0;
    let mut nbits = 0;
    let mut chars = Vec::new();
    for b in bytes {
        bits = (bits << 8) | b as u64;
        nbits += 8;
        while nbits >= 5 {
            nbits -= 5;
            chars.push(ALPHABET[((bits >> nbits) & 31) as usize]);
        }
    }
    if nbits > 0 {
        chars.push(ALPHABET[((bits << (5 - nbits)) & 31) as usize]);
    }
    chars.chunks(5).map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join("-")
}

/// Parses a paper key (case, spaces and dashes are forgiven; O/I/L read as 0/1/1).
pub fn parse_paper_key(s: &str) -> Option<[u8; 32]> {
    let mut bits: u64 = 0;
    let mut nbits = 0;
    let mut out = Vec::new();
    for c in s.chars().filter(|c| !c.is_whitespace() && *c != '-') {
        let c = match c.to_ascii_uppercase() {
            'O' => '0',
            'I' | 'L' => '1',
            c => c,
        };
        let v = ALPHABET.iter().position(|a| *a as char == c)? as u64;
        bits = (bits << 5) | v;
        nbits += 5;
        if nbits >= 8 {
            nbits -= 8;
            out.push((bits >> nbits) as u8);
        }
    }
    if out.len() != 34 {
        return None;
    }
    let secret: [u8; 32] = out[..32].try_into().ok()?;
    (blake3::hash(&secret).as_bytes()[..2] == out[32..34]).then_some(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast() -> KdfParams {
        KdfParams { memory_kib: 1024, iterations: 1, parallelism: 1 }
    }

    #[test]
    fn passphrase_and_recovery_key_open_the_same_keys() {
        let (kf, keys, paper) = KeyFile::create("correct horse", fast()).unwrap();
        let a = kf.open(&Unlock::Passphrase("correct horse".into())).unwrap().unwrap();
        let b = kf.open(&Unlock::RecoveryKey(paper.to_lowercase().replace('-', " "))).unwrap().unwrap();
        assert_eq!(a.bytes, keys.bytes);
        assert_eq!(b.bytes, keys.bytes);
        assert!(kf.open(&Unlock::Passphrase("wrong".into())).unwrap().is_none());
        assert_eq!(kf.recovery_key(&a).unwrap(), paper);
        let json = serde_json::to_string(&kf).unwrap();
        assert!(!json.contains("correct horse"));
    }

    #[test]
    fn paper_keys_catch_typos() {
        let mut s = [0u8; 32];
        fill_random(&mut s).unwrap();
        let p = paper_key(&s);
        assert_eq!(p.len(), 55 + 10);
        assert_eq!(parse_paper_key(&p), Some(s));
        let mut typo: Vec<char> = p.chars().collect();
        typo[3] = if typo[3] == 'A' { 'B' } else { 'A' };
        assert_eq!(parse_paper_key(&typo.into_iter().collect::<String>()), None);
    }
}
