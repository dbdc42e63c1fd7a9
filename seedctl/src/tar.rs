//! A POSIX ustar archive, enough for an evidence bundle: regular files under one folder.

/// One 512-byte ustar header for a regular file.
fn header(path: &str, size: usize, mtime: u64) -> Result<[u8; 512], String> {
    if path.len() > 99 || !path.is_ascii() {
        return Err(format!("{path:?} is too long or not ASCII for a tar header"));
    }
    let mut h = [0u8; 512];
    h[..path.len()].copy_from_slice(path.as_bytes());
    let octal = |h: &mut [u8; 512], at: usize, len: usize, v: u64| {
        let s = format!("{v:0width$o}\0", width = len - 1);
        h[at..at + len].copy_from_slice(s.as_bytes());
    };
    octal(&mut h, 100, 8, 0o644);
    octal(&mut h, 108, 8, 0);
    octal(&mut h, 116, 8, 0);
    octal(&mut h, 124, 12, size as u64);
    octal(&mut h, 136, 12, mtime);
    h[148..156].copy_from_slice(b"        ");
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    let sum: u32 = h.iter().map(|b| *b as u32).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    Ok(h)
}

/// The archive of `files` (path, content), each under `folder/`.
pub fn archive(folder: &str, files: &[(String, Vec<u8>)], mtime: u64) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for (path, data) in files {
        out.extend_from_slice(&header(&format!("{folder}/{path}"), data.len(), mtime)?);
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    Ok(out)
}
