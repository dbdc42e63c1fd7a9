//! One stored blob (a chunk of file data, or a tree): compressed when that helps, then sealed.
//!
//! Plaintext before sealing: `flag (1 byte) ‖ payload`, where flag 0 means the payload is the
//! data as is, and 1 means it is a zstd frame of the data.

use crate::crypto::{ChunkId, Crypto, Kind};
use crate::error::{RepoError, Result};

const RAW: u8 = 0;
const ZSTD: u8 = 1;

/// Below this, compression is not tried (the frame overhead eats the gain).
const MIN_COMPRESS: usize = 128;
/// Sample probed with zstd level 1 before compressing a large chunk.
const PROBE: usize = 64 * 1024;

/// Compresses blobs, keeping its zstd contexts between calls (one per thread): creating a
/// context per chunk costs more than it seems.
pub struct Encoder {
    level: i32,
    main: Option<zstd::bulk::Compressor<'static>>,
    probe: Option<zstd::bulk::Compressor<'static>>,
}

impl Encoder {
    pub fn new(level: i32) -> Encoder {
        Encoder { level, main: zstd::bulk::Compressor::new(level).ok(), probe: zstd::bulk::Compressor::new(1).ok() }
    }

    /// Whether zstd is worth running on `data`: a chunk whose first 64 KiB do not shrink by
    /// 3 % at level 1 (already compressed media, encrypted files) is stored as is, which saves
    /// the full compression of data that will not compress.
    fn worth_compressing(&mut self, data: &[u8]) -> bool {
        if data.len() < MIN_COMPRESS {
            return false;
        }
        if data.len() <= PROBE {
            return true;
        }
        match self.probe.as_mut().map(|p| p.compress(&data[..PROBE])) {
            Some(Ok(c)) => c.len() * 100 < PROBE * 97,
            _ => true,
        }
    }

    fn compress(&mut self, data: &[u8]) -> Option<Vec<u8>> {
        if !self.worth_compressing(data) {
            return None;
        }
        match self.main.as_mut() {
            Some(c) => c.compress(data).ok(),
            None => zstd::bulk::compress(data, self.level).ok(),
        }
    }

    /// Sealed bytes of a blob whose id is already known.
    pub fn seal(&mut self, crypto: &Crypto, kind: Kind, data: &[u8]) -> Vec<u8> {
        let compressed = self.compress(data);
        frame_and_seal(crypto, kind, data, compressed)
    }
}

/// Id and sealed bytes of a blob.
pub fn encode(crypto: &Crypto, kind: Kind, data: &[u8], level: i32) -> (ChunkId, Vec<u8>) {
    let id = crypto.chunk_id(data);
    (id, encode_with_id(crypto, kind, data, level))
}

/// Sealed bytes of a blob (a one-off encoder; loops should keep an [`Encoder`]).
pub fn encode_with_id(crypto: &Crypto, kind: Kind, data: &[u8], level: i32) -> Vec<u8> {
    Encoder::new(level).seal(crypto, kind, data)
}

fn frame_and_seal(crypto: &Crypto, kind: Kind, data: &[u8], compressed: Option<Vec<u8>>) -> Vec<u8> {
    let mut plain = Vec::with_capacity(data.len() + 1);
    match compressed {
        Some(c) if c.len() < data.len() => {
            plain.push(ZSTD);
            plain.extend_from_slice(&c);
        }
        _ => {
            plain.push(RAW);
            plain.extend_from_slice(data);
        }
    }
    crypto.seal(kind, &plain)
}

/// Opens, decompresses and checks a blob against its id.
pub fn decode(crypto: &Crypto, kind: Kind, sealed: &[u8], id: &ChunkId, raw_len: usize, what: &str) -> Result<Vec<u8>> {
    let mut buf = sealed.to_vec();
    decode_in_place(crypto, kind, &mut buf, id, raw_len, what).map(|d| d.into_owned())
}

thread_local! {
    /// One zstd decompression context per thread: creating one per chunk costs more than it seems.
    static DCTX: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { std::cell::RefCell::new(None) };
}

fn decompress(payload: &[u8], raw_len: usize) -> std::io::Result<Vec<u8>> {
    DCTX.with(|d| {
        let mut d = d.borrow_mut();
        if d.is_none() {
            *d = Some(zstd::bulk::Decompressor::new()?);
        }
        d.as_mut().expect("just made").decompress(payload, raw_len)
    })
}

/// [`decode`] opening `sealed` in place: data stored as is comes back borrowed from it (no
/// copy), compressed data in a new buffer. Either way it has been checked against its id.
pub fn decode_in_place<'a>(
    crypto: &Crypto,
    kind: Kind,
    sealed: &'a mut [u8],
    id: &ChunkId,
    raw_len: usize,
    what: &str,
) -> Result<std::borrow::Cow<'a, [u8]>> {
    use std::borrow::Cow;
    let plain = crypto.open_in_place(kind, sealed, what)?;
    let (flag, payload) = plain.split_first().ok_or_else(|| RepoError::corrupt(what, "empty blob"))?;
    let data = match *flag {
        RAW => Cow::Borrowed(payload),
        ZSTD => Cow::Owned(decompress(payload, raw_len).map_err(|e| RepoError::corrupt(what, format!("zstd: {e}")))?),
        f => return Err(RepoError::corrupt(what, format!("unknown blob flag {f}"))),
    };
    if data.len() != raw_len {
        return Err(RepoError::corrupt(what, format!("expected {raw_len} bytes, decoded {}", data.len())));
    }
    if &crypto.chunk_id(&data) != id {
        return Err(RepoError::corrupt(what, "content does not match its id"));
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKeys;

    #[test]
    fn round_trip_compressible_and_incompressible() {
        let c = MasterKeys::generate().unwrap().crypto();
        let text = b"seedship ".repeat(20_000);
        let (id, sealed) = encode(&c, Kind::Data, &text, 3);
        assert!(sealed.len() < text.len() / 10, "compressible data is compressed");
        assert_eq!(decode(&c, Kind::Data, &sealed, &id, text.len(), "t").unwrap(), text);

        let mut noise = vec![0u8; 200_000];
        crate::crypto::fill_random(&mut noise).unwrap();
        let (id, sealed) = encode(&c, Kind::Data, &noise, 3);
        assert_eq!(sealed.len(), noise.len() + 1 + crate::crypto::SEAL_OVERHEAD, "noise is stored as is");
        assert_eq!(decode(&c, Kind::Data, &sealed, &id, noise.len(), "n").unwrap(), noise);
        assert!(decode(&c, Kind::Data, &sealed, &[0; 32], noise.len(), "n").is_err());
    }
}
