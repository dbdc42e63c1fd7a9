//! The seedship copy agent, on a copy station.
//!
//! Today it registers the station with the coordinator and keeps a heartbeat, so operators
//! see it in the fleet view. Claiming disk-prep work and writing shipping disks build on this.

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `copy-agent` configuration (TOML): site, `[coordinator]`, `[telemetry]`.
pub use seedship_proto::agent::AgentConfig as Config;
