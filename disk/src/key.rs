//! Drive keys.
//!
//! A drive key is 128 random bits, written as a BitLocker recovery password: 8 groups of 6
//! digits, each group 11 × a 16-bit word (so every group is a multiple of 11 below 720896, which
//! is how BitLocker checks a typed password). The words, in order and little-endian, are the
//! 16 bytes of the recovery key BitLocker stretches into the key that protects the volume.

use std::fmt;

use crate::plan::PlanError;

/// A drive's recovery password. `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct RecoveryPassword {
    words: [u16; 8],
}

impl fmt::Debug for RecoveryPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecoveryPassword(<redacted>)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("a recovery password is 48 digits in 8 groups of 6 separated by '-'")]
    Shape,
    #[error("group {0} of the recovery password fails the check (a multiple of 11 below 720896); was it mistyped?")]
    Check(usize),
    #[error("the system has no randomness available")]
    NoRandom,
}

impl From<KeyError> for PlanError {
    fn from(e: KeyError) -> Self {
        PlanError::Invalid(e.to_string())
    }
}

impl RecoveryPassword {
    /// A new random password (128 bits from the system's secure random source).
    pub fn generate() -> Result<RecoveryPassword, KeyError> {
        use ring::rand::SecureRandom;
        let mut b = [0u8; 16];
        ring::rand::SystemRandom::new().fill(&mut b).map_err(|_| KeyError::NoRandom)?;
        Ok(Self::from_bytes(&b))
    }

    pub fn from_bytes(b: &[u8; 16]) -> RecoveryPassword {
        let mut words = [0u16; 8];
        for (i, w) in words.iter_mut().enumerate() {
            *w = u16::from_le_bytes([b[2 * i], b[2 * i + 1]]);
        }
        RecoveryPassword { words }
    }

    pub fn parse(s: &str) -> Result<RecoveryPassword, KeyError> {
        let groups: Vec<&str> = s.trim().split('-').collect();
        if groups.len() != 8 || groups.iter().any(|g| g.len() != 6 || !g.bytes().all(|c| c.is_ascii_digit())) {
            return Err(KeyError::Shape);
        }
        let mut words = [0u16; 8];
        for (i, g) in groups.iter().enumerate() {
            let n: u32 = g.parse().map_err(|_| KeyError::Shape)?;
            if !n.is_multiple_of(11) || n >= 720_896 {
                return Err(KeyError::Check(i + 1));
            }
            words[i] = (n / 11) as u16;
        }
        Ok(RecoveryPassword { words })
    }

    /// The 16 bytes of the recovery key (the words, little-endian).
    pub fn bytes(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        for (i, w) in self.words.iter().enumerate() {
            b[2 * i..2 * i + 2].copy_from_slice(&w.to_le_bytes());
        }
        b
    }

    /// The password text. Call only to send it to the coordinator (over mTLS) or to show it to
    /// an operator on purpose; never log it.
    pub fn reveal(&self) -> String {
        self.words.iter().map(|w| format!("{:06}", *w as u32 * 11)).collect::<Vec<_>>().join("-")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_passwords_have_the_bitlocker_shape_and_round_trip() {
        for _ in 0..50 {
            let p = RecoveryPassword::generate().unwrap();
            let text = p.reveal();
            assert_eq!(text.len(), 55);
            let back = RecoveryPassword::parse(&text).unwrap();
            assert_eq!(back, p);
            assert_eq!(back.bytes(), p.bytes());
        }
    }

    #[test]
    fn typos_and_shapes_are_refused_and_never_echoed() {
        let p = RecoveryPassword::from_bytes(&[7; 16]).reveal();
        let mut typo = p.clone().into_bytes();
        typo[0] = if typo[0] == b'9' { b'8' } else { b'9' };
        let e = RecoveryPassword::parse(std::str::from_utf8(&typo).unwrap()).unwrap_err();
        assert_eq!(e, KeyError::Check(1));
        assert!(!e.to_string().contains(&p[..6]));
        assert_eq!(RecoveryPassword::parse("123-456").unwrap_err(), KeyError::Shape);
        assert!(!format!("{:?}", RecoveryPassword::from_bytes(&[7; 16])).contains(&p[..6]));
    }
}
