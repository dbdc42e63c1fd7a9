//! `copy-agent.toml`: the agent tables every agent has, plus `[station]`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use seedship_proto::agent::AgentConfig;
use seedship_proto::client::ClientConfig;
use seedship_proto::config::{ConfigError, base_dir, load_toml};

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Site of this station; disk-prep work can be targeted at a site.
    #[serde(default)]
    pub site: Option<String>,
    pub coordinator: ClientConfig,
    #[serde(default)]
    pub telemetry: seedship_telemetry::TelemetryConfig,
    #[serde(default)]
    pub station: Station,
}

/// Where the shipping disks are and how the station works.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Station {
    /// Shipping disks: block devices (best named by `/dev/disk/by-id/...`) or image files.
    pub disks: Vec<PathBuf>,
    /// A directory whose entries (image files, or symlinks to block devices) are disks too.
    /// It is read again while the station waits for disks, so disks can be added mid-run.
    pub disk_dir: Option<PathBuf>,
    /// The station's own records: the disk set of the work in hand, history, live status.
    pub state_dir: PathBuf,
    /// The only folders (local paths or mounted shares) staging locations may lie in. A seed
    /// whose staging location is elsewhere is not read (the work goes back to the queue for
    /// another station); empty: none is read. Nothing outside a staging set is ever opened.
    pub staging_roots: Vec<PathBuf>,
    /// How often to ask for work when there is none, and to look again for disks.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// How often the live display is printed.
    #[serde(with = "humantime_serde")]
    pub progress_interval: Duration,
}

impl Default for Station {
    fn default() -> Self {
        Station {
            disks: Vec::new(),
            disk_dir: None,
            state_dir: PathBuf::from("copy-agent-state"),
            staging_roots: Vec::new(),
            poll_interval: Duration::from_secs(5),
            progress_interval: Duration::from_secs(2),
        }
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let mut cfg: Config = load_toml(path)?;
        let base = base_dir(path);
        cfg.coordinator.resolve(&base);
        let abs = |p: &PathBuf| if p.is_absolute() { p.clone() } else { base.join(p) };
        cfg.station.disks = cfg.station.disks.iter().map(abs).collect();
        cfg.station.disk_dir = cfg.station.disk_dir.as_ref().map(abs);
        cfg.station.state_dir = abs(&cfg.station.state_dir);
        cfg.station.staging_roots = cfg.station.staging_roots.iter().map(abs).collect();
        if let Some(site) = &cfg.site {
            seedship_proto::identity::validate_label("site", site)
                .map_err(|e| ConfigError::Invalid(format!("site: {e}")))?;
        }
        if cfg.station.poll_interval.is_zero() || cfg.station.progress_interval.is_zero() {
            return Err(ConfigError::Invalid("station.poll_interval and progress_interval must be above 0".into()));
        }
        Ok(cfg)
    }

    /// The part every agent shares (registration, telemetry, the coordinator).
    pub fn agent(&self) -> AgentConfig {
        AgentConfig {
            site: self.site.clone(),
            coordinator: self.coordinator.clone(),
            telemetry: self.telemetry.clone(),
        }
    }
}
