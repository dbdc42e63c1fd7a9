//! Drive keys at rest: sealed under the coordinator's master key with AES-256-GCM.
//!
//! The master key is 32 random bytes kept in a file as 64 hex characters (mode 0600), made by
//! `coordinator pki init`. A sealed key is `nonce (12 bytes) ‖ ciphertext ‖ tag`, with the work
//! id and drive id as associated data, so a sealed key copied onto another drive's row does
//! not open.

use std::path::Path;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use crate::domain::model::{RecoveryPassword, SealedKey};
use crate::error::{Error, Result};

pub struct MasterKey {
    aead: LessSafeKey,
    mac: hmac::Key,
    rng: SystemRandom,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

fn aad(work_id: &str, drive_id: &str) -> String {
    format!("seedship drive key v1|{work_id}|{drive_id}")
}

impl MasterKey {
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        let aead = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, bytes).expect("32-byte key"));
        // A separate key for fingerprints, derived so the AEAD key is never used twice over.
        let mac_key = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, bytes), b"seedship fingerprint key v1");
        MasterKey { aead, mac: hmac::Key::new(hmac::HMAC_SHA256, mac_key.as_ref()), rng: SystemRandom::new() }
    }

    /// Reads a master key file: 64 hex characters, mode 0600 or stricter.
    pub fn load(path: &Path) -> std::result::Result<Self, String> {
        let raw = seedship_proto::keyfile::read_private(path).map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&raw);
        let bytes = hex::decode(text.trim())
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| format!("master key file {} must hold exactly 64 hex characters", path.display()))?;
        Ok(Self::from_bytes(&bytes))
    }

    /// 32 fresh random bytes as hex, for a new master key file.
    pub fn generate_hex() -> Result<String> {
        let mut b = [0u8; 32];
        SystemRandom::new().fill(&mut b).map_err(|_| Error::Internal("no system randomness".into()))?;
        Ok(hex::encode(b))
    }

    pub fn seal(&self, work_id: &str, drive_id: &str, key: &RecoveryPassword) -> Result<SealedKey> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| Error::Internal("no system randomness".into()))?;
        let mut buf = key.0.as_bytes().to_vec();
        self.aead
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(work_id, drive_id).as_bytes()),
                &mut buf,
            )
            .map_err(|_| Error::Internal("sealing a drive key failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(SealedKey(out))
    }

    pub fn open(&self, work_id: &str, drive_id: &str, sealed: &SealedKey) -> Result<RecoveryPassword> {
        if sealed.0.len() < NONCE_LEN + 16 {
            return Err(Error::Internal(format!("sealed key of drive {drive_id} is truncated")));
        }
        let (nonce, ct) = sealed.0.split_at(NONCE_LEN);
        let mut buf = ct.to_vec();
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| Error::Internal("bad nonce".into()))?;
        let plain =
            self.aead.open_in_place(nonce, Aad::from(aad(work_id, drive_id).as_bytes()), &mut buf).map_err(|_| {
                Error::Internal(format!(
                    "sealed key of drive {drive_id} does not open with this master key (wrong key or tampered row)"
                ))
            })?;
        String::from_utf8(plain.to_vec())
            .map(RecoveryPassword)
            .map_err(|_| Error::Internal("sealed key is not text".into()))
    }

    /// A keyed fingerprint of a secret, for idempotency checks that must not store the secret.
    pub fn fingerprint(&self, secret: &str) -> String {
        hex::encode(hmac::sign(&self.mac, secret.as_bytes()).as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_aad_binding() {
        let k = MasterKey::from_bytes(&[7; 32]);
        let pw = RecoveryPassword("000011-000022-000033-000044-000055-000066-000077-000088".into());
        let sealed = k.seal("wk-1", "DRV1", &pw).unwrap();
        assert!(!String::from_utf8_lossy(&sealed.0).contains("000011"));
        assert_eq!(k.open("wk-1", "DRV1", &sealed).unwrap(), pw);
        assert!(k.open("wk-1", "DRV2", &sealed).is_err(), "row swap must not open");
        assert!(MasterKey::from_bytes(&[8; 32]).open("wk-1", "DRV1", &sealed).is_err());
        assert_ne!(k.seal("wk-1", "DRV1", &pw).unwrap(), sealed, "nonces are fresh");
    }
}
