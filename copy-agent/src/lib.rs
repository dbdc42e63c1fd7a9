//! The seedship copy agent, on a copy station.
//!
//! Today it registers the station with the coordinator and keeps a heartbeat, so operators
//! see it in the fleet view. Claiming disk-prep work and writing shipping disks build on this.

use std::path::Path;

use seedship_proto::client::ClientConfig;
use seedship_proto::config::{ConfigError, base_dir, load_toml};
use seedship_telemetry::TelemetryConfig;
use serde::{Deserialize, Serialize};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `copy-agent` configuration (TOML).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Site of this copy station; work targeted at a site goes to its stations.
    #[serde(default)]
    pub site: Option<String>,
    pub coordinator: ClientConfig,
    #[serde(default)]
    pub telemetry: TelemetryConfig,
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let mut cfg: Config = load_toml(path)?;
        cfg.coordinator.resolve(&base_dir(path));
        if let Some(site) = &cfg.site {
            seedship_proto::identity::validate_label("site", site).map_err(|e| ConfigError::Invalid(format!("site: {e}")))?;
        }
        Ok(cfg)
    }
}
