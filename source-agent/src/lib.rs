//! The seedship source agent, on each backup server.
//!
//! - [`backup`]: the offline full backup into a staging location (a repository in the
//!   `seedship-repo` format plus its seed manifest), resumable after a crash.
//! - [`register`]: registering a complete staged seed with the coordinator.
//! - `verify`, `restore` and `recovery-key` work on a staging set through the format crate.
//! - `status`: where each of this server's seeds stands, in the coordinator's words.
//! - [`repair`]: uploads again the files the import verification found missing or damaged.
//! - [`vault`]: this server's vault through the coordinator (SAS), and its local cache.

pub mod backup;
pub mod passphrase;
pub mod register;
pub mod repair;
pub mod seedfile;
pub mod vault;

use seedship_proto::client::Conn;
use seedship_proto::pb;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `source-agent` configuration (TOML): site, `[coordinator]`, `[telemetry]`.
pub use seedship_proto::agent::AgentConfig as Config;

/// Exit code of a backup that skipped some files (as restic does).
pub const EXIT_PARTIAL: u8 = 3;

/// This server's seeds and where each stands, in the coordinator's words.
pub async fn status(conn: &Conn) -> Result<Vec<pb::SeedSummary>, tonic::Status> {
    let mut c = seedship_proto::client::seeds(conn.clone());
    Ok(c.list_own_seeds(pb::ListOwnSeedsRequest {}).await?.into_inner().seeds)
}

/// Renders `status` for people.
pub fn status_text(seeds: &[pb::SeedSummary]) -> String {
    if seeds.is_empty() {
        return "no seeds registered from this server".into();
    }
    seeds
        .iter()
        .map(|s| {
            let state = seedship_proto::human::seed_state(s.state);
            // As MARS says it on every scheduled run until the import is done.
            let waiting = matches!(state.as_str(), "import_job_created" | "shipped" | "at_datacenter" | "importing");
            if waiting && !s.import_job_state.is_empty() {
                format!(
                    "{}  {}  waiting for the import job to complete (Azure job state: {})  {}",
                    s.job_name, state, s.import_job_state, s.state_reason
                )
            } else {
                format!("{}  {}  {}", s.job_name, state, s.state_reason)
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}
