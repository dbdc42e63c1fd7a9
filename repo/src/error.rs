//! Errors of the repository format, each saying what is wrong and what to do.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("the staging location is full while writing {path}: {detail}")]
    NoSpace { path: PathBuf, detail: String },
    #[error("wrong passphrase or recovery key: no key slot of {path} opens with it")]
    WrongKey { path: PathBuf },
    #[error("{path} is not a seedship repository ({reason})")]
    NotARepository { path: PathBuf, reason: String },
    #[error("{path} uses repository format version {found}; this program reads version {supported}")]
    Version { path: PathBuf, found: u32, supported: u32 },
    #[error("{what} is damaged: {detail}")]
    Corrupt { what: String, detail: String },
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = RepoError> = std::result::Result<T, E>;

impl RepoError {
    /// Wraps an I/O error with the path it concerns; a full disk gets its own variant.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        if source.raw_os_error() == Some(28) || source.kind() == std::io::ErrorKind::StorageFull {
            return RepoError::NoSpace { path, detail: source.to_string() };
        }
        RepoError::Io { path, source }
    }

    pub fn corrupt(what: impl Into<String>, detail: impl Into<String>) -> Self {
        RepoError::Corrupt { what: what.into(), detail: detail.into() }
    }
}
