//! The seedship source agent, on each backup server.
//!
//! Today it registers the server with the coordinator, keeps a heartbeat, and shows where each
//! of its seeds stands (`status`). Staging backups and seed registration build on this.

use seedship_proto::client::Conn;
use seedship_proto::pb;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `source-agent` configuration (TOML): site, `[coordinator]`, `[telemetry]`.
pub use seedship_proto::agent::AgentConfig as Config;

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
            let state = pb::SeedState::try_from(s.state)
                .map(|st| st.as_str_name().trim_start_matches("SEED_STATE_").to_ascii_lowercase())
                .unwrap_or_default();
            format!("{}  {}  {}", s.job_name, state, s.state_reason)
        })
        .collect::<Vec<_>>()
        .join("\n")
}
