//! BitLocker's key derivation and key wrapping.

use aes::Aes256;
use ccm::aead::{AeadInOut, KeyInit};
use ccm::consts::{U12, U16};
use sha2::{Digest, Sha256};

/// AES-CCM as BitLocker uses it for keys: AES-256, a 12-byte nonce, a 16-byte MAC.
type Ccm = ccm::Ccm<Aes256, U16, U12>;

/// How many SHA-256 rounds stretch a recovery key.
pub const STRETCH_ROUNDS: u64 = 0x10_0000;

/// The 256-bit key that protects a recovery-password VMK: the 16-byte recovery key (the
/// recovery password's words, little-endian) hashed, then stretched ([`stretch`]).
pub fn stretch_recovery_key(recovery_key: &[u8; 16], salt: &[u8; 16]) -> [u8; 32] {
    stretch(Sha256::digest(recovery_key).into(), salt)
}

/// The 256-bit key that protects a user-password VMK (a Data Box passkey): SHA-256 twice
/// over the password in UTF-16LE (no terminator), then stretched ([`stretch`]).
pub fn stretch_user_password(password: &str, salt: &[u8; 16]) -> [u8; 32] {
    let utf16: Vec<u8> = password.encode_utf16().flat_map(|c| c.to_le_bytes()).collect();
    stretch(Sha256::digest(Sha256::digest(&utf16)).into(), salt)
}

/// BitLocker's key stretching: `{last, initial, salt, count}` hashed with SHA-256
/// [`STRETCH_ROUNDS`] times, `last` starting at zero.
fn stretch(initial: [u8; 32], salt: &[u8; 16]) -> [u8; 32] {
    let mut chain = [0u8; 88];
    chain[32..64].copy_from_slice(&initial);
    chain[64..80].copy_from_slice(salt);
    for count in 0..STRETCH_ROUNDS {
        chain[80..88].copy_from_slice(&count.to_le_bytes());
        let h = Sha256::digest(chain);
        chain[..32].copy_from_slice(&h);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(&chain[..32]);
    out
}

/// Encrypts `plain` under `key` with `nonce`, as BitLocker stores it: the (encrypted) MAC
/// first, then the ciphertext.
pub fn wrap(key: &[u8; 32], nonce: &[u8; 12], plain: &[u8]) -> Vec<u8> {
    let ccm = Ccm::new(key.into());
    let mut buf = plain.to_vec();
    let tag = ccm.encrypt_inout_detached(nonce.into(), &[], buf.as_mut_slice().into()).expect("key data is small");
    let mut out = tag.to_vec();
    out.extend_from_slice(&buf);
    out
}

/// The inverse of [`wrap`]; `None` when the MAC does not match (a wrong key).
pub fn unwrap(key: &[u8; 32], nonce: &[u8; 12], stored: &[u8]) -> Option<Vec<u8>> {
    if stored.len() < 16 {
        return None;
    }
    let ccm = Ccm::new(key.into());
    let (tag, data) = stored.split_at(16);
    let tag: [u8; 16] = tag.try_into().ok()?;
    let mut buf = data.to_vec();
    ccm.decrypt_inout_detached(nonce.into(), &[], buf.as_mut_slice().into(), &tag.into()).ok()?;
    Some(buf)
}

/// `n` random bytes from the system's secure source.
pub fn random<const N: usize>() -> [u8; N] {
    use ring::rand::SecureRandom;
    let mut b = [0u8; N];
    ring::rand::SystemRandom::new().fill(&mut b).expect("system randomness");
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_keys_open_with_their_key_only() {
        let (k, other, nonce) = ([7u8; 32], [8u8; 32], [1u8; 12]);
        let w = wrap(&k, &nonce, b"a key container");
        assert_eq!(w.len(), 16 + 15);
        assert_eq!(unwrap(&k, &nonce, &w).as_deref(), Some(&b"a key container"[..]));
        assert_eq!(unwrap(&other, &nonce, &w), None);
        let mut bad = w.clone();
        bad[20] ^= 1;
        assert_eq!(unwrap(&k, &nonce, &bad), None);
    }

    #[test]
    fn stretching_depends_on_key_and_salt() {
        let a = stretch_recovery_key(&[1; 16], &[2; 16]);
        assert_ne!(a, stretch_recovery_key(&[1; 16], &[3; 16]));
        assert_ne!(a, stretch_recovery_key(&[4; 16], &[2; 16]));
        assert_eq!(a, stretch_recovery_key(&[1; 16], &[2; 16]));
    }
}
