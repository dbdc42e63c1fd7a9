//! Content-defined chunking of a byte stream with FastCDC (2020), over one reusable buffer.
//!
//! The cut point depends only on the next `max` bytes, so as long as the buffer holds at least
//! `max` bytes (or everything left), the chunks depend only on the content.

use std::io::Read;

use seedship_repo::repo::ChunkerParams;

pub struct Chunker {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
    min: u32,
    avg: u32,
    max: u32,
}

impl Chunker {
    pub fn new(p: &ChunkerParams) -> Chunker {
        Chunker {
            buf: vec![0u8; 2 * p.max_size as usize],
            start: 0,
            end: 0,
            eof: false,
            min: p.min_size,
            avg: p.avg_size,
            max: p.max_size,
        }
    }

    /// Starts a new stream (the buffer is kept).
    pub fn reset(&mut self) {
        self.start = 0;
        self.end = 0;
        self.eof = false;
    }

    /// The next chunk of `r`, or `None` at the end.
    pub fn next(&mut self, r: &mut impl Read) -> std::io::Result<Option<Vec<u8>>> {
        if !self.eof && self.end - self.start < self.max as usize {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            while self.end < self.buf.len() {
                let n = r.read(&mut self.buf[self.end..])?;
                if n == 0 {
                    self.eof = true;
                    break;
                }
                self.end += n;
            }
        }
        if self.start == self.end {
            return Ok(None);
        }
        let cdc = fastcdc::v2020::FastCDC::new(&self.buf[..self.end], self.min, self.avg, self.max);
        let (_, cut) = cdc.cut(self.start, self.end - self.start);
        let chunk = self.buf[self.start..cut].to_vec();
        self.start = cut;
        Ok(Some(chunk))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> ChunkerParams {
        ChunkerParams { algorithm: "fastcdc-2020".into(), min_size: 4096, avg_size: 16384, max_size: 65536 }
    }

    fn pseudo_random(n: usize, mut seed: u64) -> Vec<u8> {
        (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect()
    }

    #[test]
    fn chunks_cover_the_stream_and_depend_only_on_content() {
        let data = pseudo_random(1_000_000, 7);
        let mut c = Chunker::new(&params());
        let mut all = Vec::new();
        let mut sizes = Vec::new();
        let mut r = data.as_slice();
        while let Some(ch) = c.next(&mut r).unwrap() {
            assert!(ch.len() <= 65536);
            sizes.push(ch.len());
            all.extend_from_slice(&ch);
        }
        assert_eq!(all, data);
        assert!(sizes.len() > 20);
        // A reader that returns tiny reads gives the same chunks.
        struct Trickle<'a>(&'a [u8]);
        impl std::io::Read for Trickle<'_> {
            fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
                let n = self.0.len().min(b.len()).min(777);
                b[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        c.reset();
        let mut t = Trickle(&data);
        let mut sizes2 = Vec::new();
        while let Some(ch) = c.next(&mut t).unwrap() {
            sizes2.push(ch.len());
        }
        assert_eq!(sizes, sizes2);
        // An insertion near the start only changes the chunks around it.
        let mut shifted = data[..1000].to_vec();
        shifted.extend_from_slice(b"inserted");
        shifted.extend_from_slice(&data[1000..]);
        c.reset();
        let mut r = shifted.as_slice();
        let mut sizes3 = Vec::new();
        while let Some(ch) = c.next(&mut r).unwrap() {
            sizes3.push(ch.len());
        }
        assert_eq!(sizes[sizes.len() - 10..], sizes3[sizes3.len() - 10..]);
    }
}
