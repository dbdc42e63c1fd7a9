//! Loading a program's TOML config file with errors that name the file.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use crate::client::ClientConfig;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path} is invalid: {detail}")]
    Parse { path: PathBuf, detail: String },
    #[error("environment variable {var} is invalid: {detail}")]
    Env { var: String, detail: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Reads and parses a TOML file; unknown fields are refused by the target type.
pub fn load_toml<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse { path: path.to_path_buf(), detail: e.to_string() })
}

impl ClientConfig {
    /// Makes relative file paths relative to `base` (the config file's directory), and applies
    /// `SEEDSHIP_COORDINATOR_URL` if set.
    pub fn resolve(&mut self, base: &Path) {
        for p in [&mut self.ca_file, &mut self.cert_file, &mut self.key_file] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        if let Ok(url) = std::env::var("SEEDSHIP_COORDINATOR_URL") {
            self.url = url;
        }
    }
}

/// The directory of a config file, for resolving relative paths in it.
pub fn base_dir(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}
