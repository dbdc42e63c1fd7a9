//! Reading PEM certificate and key files with errors that name the file and the fix.

use std::fs;
use std::path::{Path, PathBuf};

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("private key {path} is readable by group or others (mode {mode:o}); run `chmod 600 {path}`")]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey { path: PathBuf },
    #[error("{path} is not valid PEM: {detail}")]
    BadPem { path: PathBuf, detail: String },
}

fn read(path: &Path) -> Result<Vec<u8>, KeyFileError> {
    fs::read(path).map_err(|source| KeyFileError::Read { path: path.to_path_buf(), source })
}

/// Refuses a secret file that group or others can read.
pub fn check_private(path: &Path) -> Result<(), KeyFileError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = fs::metadata(path).map_err(|source| KeyFileError::Read { path: path.to_path_buf(), source })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::TooOpen { path: path.to_path_buf(), mode });
    }
    Ok(())
}

/// Reads a secret file (a private key or a master key), refusing loose permissions.
pub fn read_private(path: &Path) -> Result<Vec<u8>, KeyFileError> {
    check_private(path)?;
    read(path)
}

/// Reads every certificate of a PEM file, and the raw PEM text.
pub fn read_certs(path: &Path) -> Result<(Vec<CertificateDer<'static>>, Vec<u8>), KeyFileError> {
    let pem = read(path)?;
    let certs: Result<Vec<_>, _> = rustls_pemfile::certs(&mut pem.as_slice()).collect();
    let certs = certs.map_err(|e| KeyFileError::BadPem { path: path.to_path_buf(), detail: e.to_string() })?;
    if certs.is_empty() {
        return Err(KeyFileError::NoCertificate { path: path.to_path_buf() });
    }
    Ok((certs, pem))
}

/// Reads a private key (mode must be 0600 or stricter), and the raw PEM text.
pub fn read_key(path: &Path) -> Result<(PrivateKeyDer<'static>, Vec<u8>), KeyFileError> {
    let pem = read_private(path)?;
    let key = rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| KeyFileError::BadPem { path: path.to_path_buf(), detail: e.to_string() })?
        .ok_or_else(|| KeyFileError::NoKey { path: path.to_path_buf() })?;
    Ok((key, pem))
}
