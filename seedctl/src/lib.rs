//! `seedctl`, the operations team's command line: read views over every seed, drive, job,
//! agent and event, shipping records, and the operator's few actions. It talks to the same
//! gRPC API as everyone else, with an operator certificate, and depends on the contract
//! (`seedship-proto`) only. Human-readable by default, `--json` for scripts.

mod render;
mod tar;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use seedship_proto::client::{self, ClientConfig, Conn, new_request_id};
use seedship_proto::pb;
use serde_json::Value;

pub use render::*;

#[derive(Debug, Parser)]
#[command(name = "seedctl", version, about = "Operator view of a seedship coordinator")]
pub struct Cli {
    /// Client config file (TOML with url, ca_file, cert_file, key_file). Before or after the
    /// command, like every connection flag.
    #[arg(long, env = "SEEDCTL_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Coordinator URL, e.g. https://127.0.0.1:7443 (instead of --config).
    #[arg(long, env = "SEEDCTL_URL", global = true)]
    pub url: Option<String>,
    /// The CA certificate that signed the coordinator's certificate (PEM; with --url).
    #[arg(long, env = "SEEDCTL_CA", global = true)]
    pub ca: Option<PathBuf>,
    /// Your operator certificate (PEM; with --url).
    #[arg(long, env = "SEEDCTL_CERT", global = true)]
    pub cert: Option<PathBuf>,
    /// Your operator certificate's private key (PEM, mode 0600; with --url).
    #[arg(long, env = "SEEDCTL_KEY", global = true)]
    pub key: Option<PathBuf>,
    /// Name to verify in the coordinator's certificate (default: the URL's host).
    #[arg(long, env = "SEEDCTL_SERVER_NAME", global = true)]
    pub server_name: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// List seeds with state and age, newest first.
    Seeds {
        /// Only seeds in this state (e.g. preparing, shipped).
        #[arg(long)]
        state: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Show one seed (id or job name) with its work, drives, shipping and history.
    Seed {
        /// The seed: its id or its job name.
        seed: String,
    },
    /// List agents with their last heartbeat.
    #[command(args_conflicts_with_subcommands = true)]
    Agents {
        /// source, copy or operator.
        #[arg(long)]
        role: Option<String>,
        #[command(subcommand)]
        cmd: Option<AgentsCmd>,
    },
    /// List drives (never keys), optionally of one seed.
    Drives {
        /// Only this seed's drives (its id or job name).
        #[arg(long)]
        seed: Option<String>,
    },
    /// List import jobs with Azure's state and the running deadline.
    Jobs,
    /// Show one import job (job name or seed id): Azure's state and each drive's, the
    /// datacenter address, shipping, the deadline and the history.
    Job {
        /// The import job's name (or its seed's id).
        job: String,
    },
    /// The import verification report of a seed: verified, missing, corrupted, and repairs.
    Verification {
        /// The seed: its id or its job name.
        seed: String,
    },
    /// Delete a seeded seed's data from its import container (recorded in its history).
    CleanupImport {
        /// The seed: its id or its job name.
        seed: String,
    },
    /// Recovery points of every vault (or one server's), oldest first.
    RecoveryPoints {
        /// Only this backup server's vault (its agent name).
        #[arg(long)]
        server: Option<String>,
    },
    /// Seed history across all seeds, newest first.
    Events {
        /// Only this seed's events (its id or job name).
        #[arg(long)]
        seed: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Only events older than this event id (page back through a long history).
        #[arg(long)]
        before: Option<i64>,
    },
    /// Put a seed's held disk-prep work (released too often by copy stations) back in the queue.
    Retry {
        /// The seed: its id or its job name.
        seed: String,
        /// What was fixed; kept in the seed's history.
        #[arg(long)]
        reason: String,
    },
    /// Put a seed's disk-prep work back in the queue, from the station that holds it too,
    /// optionally for another station or site (only before its disks are prepared).
    Requeue {
        /// The seed: its id or its job name.
        seed: String,
        /// Only this copy station may take it.
        #[arg(long)]
        station: Option<String>,
        /// Only copy stations of this site.
        #[arg(long)]
        site: Option<String>,
        /// Any copy station (clears the station and site).
        #[arg(long, conflicts_with_all = ["station", "site"])]
        anywhere: bool,
        /// Why; kept in the seed's history.
        #[arg(long)]
        reason: String,
    },
    /// After a partial loss (the seed needs repair), ship exactly the files its import lost
    /// on new disks: a new offline round, job <JOB>-r<n>, into the same import container.
    /// The source agent is no longer asked to upload them.
    Reship {
        /// The seed that lost files: its id or its job name.
        seed: String,
        /// Why the files go on disks again (too much for the uplink, say); kept in the history.
        #[arg(long)]
        reason: String,
    },
    /// Cancel a seed before its disks are shipped (and its Azure job).
    Cancel {
        /// The seed: its id or its job name.
        seed: String,
        /// Why; kept in the seed's history and sent to Azure.
        #[arg(long)]
        reason: String,
    },
    /// Choose what a seed is shipped on, before a copy station starts on it: customer_disk
    /// (your own disks) or databox_disk (Microsoft's Data Box Disks, ordered at once).
    Kind {
        /// The seed: its id or its job name.
        seed: String,
        /// customer_disk or databox_disk.
        kind: String,
        /// Why; kept in the seed's history.
        #[arg(long)]
        reason: String,
    },
    /// Show the passkey of a seed's Data Box Disk order (for Microsoft's unlock tool); every
    /// release is in the seed's history.
    Passkey {
        /// The seed: its id or its job name.
        seed: String,
    },
    /// Answer an import job that waits for a customer action (Azure's mitigate).
    Mitigate {
        /// The import job's name.
        #[arg(long)]
        job: String,
        /// Resume, Restart, MoveToCleanUpDevice or ReachOutToOperation.
        #[arg(long)]
        resolution: String,
        /// One disk's serial (default: the whole job).
        #[arg(long, default_value = "")]
        disk: String,
    },
    /// Record carrier and tracking number for a job's package.
    Ship {
        /// The import job's name.
        #[arg(long)]
        job: String,
        /// The carrier: FedEx, UPS, DHL, TNT, USPS or BlueDart.
        #[arg(long)]
        carrier: String,
        /// The package's tracking number.
        #[arg(long)]
        tracking: String,
        /// How many drives are in the package.
        #[arg(long)]
        drives: u32,
        /// YYYY-MM-DD.
        #[arg(long)]
        date: String,
    },
    /// Show the shipping record of a job.
    Shipping {
        /// The import job's name (or its seed's id).
        job: String,
    },
    /// Let a virtual copy station (or the source's own host) prepare a seed's disks.
    AllowVirtualStation {
        /// The seed: its id or its job name.
        seed: String,
        /// Why; kept in the seed's history.
        #[arg(long)]
        reason: String,
    },
    /// Notifications (deadline warnings, failures, waiting for a person, seeded, repair
    /// blocked) with each channel's delivery, newest first.
    Notifications {
        /// Only those not acknowledged yet.
        #[arg(long)]
        open: bool,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Acknowledge a notification: its pending deliveries stop; kept with who and why.
    Ack {
        /// The notification's number (from `seedctl notifications`).
        id: i64,
        /// Why; kept with the acknowledgement.
        #[arg(long)]
        reason: String,
    },
    /// Write the signed evidence bundle of a seed (chain of custody) as one tar archive, to
    /// check offline with openssl and sha256sum (see VERIFY.txt inside).
    Evidence {
        /// The seed: its id or its job name.
        seed: String,
        /// The archive to write (default: evidence-<job>.tar here).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// A single-use link into the web dashboard, valid 10 minutes (it opens an 8-hour session).
    LoginLink,
    /// The tamper-evident audit log: list, export, verify.
    Audit {
        #[command(subcommand)]
        cmd: AuditCmd,
    },
    /// One-time enrollment tokens for agents: create, list.
    Enroll {
        #[command(subcommand)]
        cmd: EnrollCmd,
    },
    #[command(flatten)]
    Docs(seedship_proto::cli::DocCmd),
}

#[derive(Debug, Subcommand)]
pub enum AgentsCmd {
    /// Revoke an agent (a stolen station, a retired server): the coordinator refuses it from
    /// now on, within 5 seconds everywhere, on open connections too; a station's work goes
    /// back in the queue.
    Revoke {
        /// Its name, or its spiffe:// id.
        agent: String,
        /// source, copy or operator (when names repeat, or it never registered).
        #[arg(long)]
        role: Option<String>,
        /// Why; kept in the audit log.
        #[arg(long)]
        reason: String,
    },
    /// The revoked identities, newest first.
    Revoked,
}

#[derive(Debug, Subcommand)]
pub enum EnrollCmd {
    /// A one-time token an agent enrolls with (shown once; the coordinator keeps its hash).
    Create {
        /// The agent's role: source or copy.
        #[arg(long)]
        role: String,
        /// The agent's name, or a prefix followed by '*' ("dpm-*").
        #[arg(long)]
        name: String,
        /// The site the agent is at (it registers there only); default any.
        #[arg(long)]
        site: Option<String>,
        /// How long the token may wait to be used, in seconds (60 to 2592000).
        #[arg(long, default_value_t = 86_400)]
        ttl_seconds: u64,
        /// Who or what it is for; kept in the audit log.
        #[arg(long)]
        reason: String,
    },
    /// Every token, newest first: who made it, until when, who used it (never the token).
    List,
}

#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// The newest entries, or one target's (a job name, an identity).
    List {
        /// Only entries about this job (or identity, or work id).
        #[arg(long)]
        target: Option<String>,
        /// At most this many, the newest.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Write the whole log as JSON lines (one entry a line, oldest first), to check offline
    /// with `seedctl audit verify --file` or keep beside an evidence bundle.
    Export {
        /// Where to write it (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Check the hash chain: every entry unchanged, none removed, none moved. Reads the
    /// coordinator's log, or an export with --file. Exit 1 when anything is wrong.
    Verify {
        /// An export to check instead of the coordinator's log.
        #[arg(long)]
        file: Option<PathBuf>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),
    /// The audit log's chain is broken: the report, printed as it is.
    #[error("{0}")]
    Tampered(String),
    #[error("{0}")]
    Io(String),
    #[error(transparent)]
    Connect(#[from] client::ConnectError),
    #[error("{}", client::status_text(.0))]
    Rpc(tonic::Status),
}

impl From<tonic::Status> for CliError {
    fn from(s: tonic::Status) -> Self {
        CliError::Rpc(s)
    }
}

impl Cli {
    pub fn client_config(&self) -> Result<ClientConfig, CliError> {
        if let Some(path) = &self.config {
            let mut cfg: ClientConfig =
                seedship_proto::config::load_toml(path).map_err(|e| CliError::Usage(e.to_string()))?;
            cfg.resolve(&seedship_proto::config::base_dir(path));
            return Ok(cfg);
        }
        let need = |v: &Option<PathBuf>, flag: &str| {
            v.clone().ok_or_else(|| {
                CliError::Usage(format!("give --config, or --url with --ca, --cert and --key (missing {flag})"))
            })
        };
        Ok(ClientConfig {
            url: self
                .url
                .clone()
                .ok_or_else(|| CliError::Usage("give --config, or --url with --ca, --cert and --key".into()))?,
            ca_file: need(&self.ca, "--ca")?,
            cert_file: need(&self.cert, "--cert")?,
            key_file: need(&self.key, "--key")?,
            server_name: self.server_name.clone(),
            timeout: std::time::Duration::from_secs(30),
        })
    }
}

/// A seed state as `seedctl` names it ("queued_for_disk_prep") → the contract's number.
fn parse_state(s: &str) -> Result<i32, CliError> {
    let name = |st: pb::SeedState| st.as_str_name().trim_start_matches("SEED_STATE_").to_ascii_lowercase();
    let all: Vec<pb::SeedState> = (1..64)
        .filter_map(|n| pb::SeedState::try_from(n).ok())
        .filter(|st| *st != pb::SeedState::Unspecified)
        .collect();
    all.iter().find(|st| name(**st) == s).map(|st| *st as i32).ok_or_else(|| {
        let names: Vec<String> = all.iter().map(|st| name(*st)).collect();
        CliError::Usage(format!("unknown state {s:?}; one of: {}", names.join(", ")))
    })
}

fn parse_role(s: &str) -> Result<i32, CliError> {
    Ok(match s {
        "source" => pb::Role::Source,
        "copy" => pb::Role::Copy,
        "operator" => pb::Role::Operator,
        _ => return Err(CliError::Usage(format!("unknown role {s:?}; one of: source, copy, operator"))),
    } as i32)
}

/// Runs one command and returns what to print.
pub async fn run(cli: &Cli, conn: Conn) -> Result<String, CliError> {
    let mut ops = client::operator(conn.clone());
    let (text, json): (String, Value) = match &cli.cmd {
        Cmd::Seeds { state, limit } => {
            let state = state.as_deref().map(parse_state).transpose()?.unwrap_or(0);
            let r = ops.list_seeds(pb::ListSeedsRequest { state, limit: *limit }).await?.into_inner();
            (seeds_table(&r.seeds, r.server_time_unix_ms), Value::Array(r.seeds.iter().map(seed_json).collect()))
        }
        Cmd::Seed { seed } => {
            let r = ops.get_seed(pb::GetSeedRequest { seed: seed.clone() }).await?.into_inner();
            (seed_detail_text(&r), seed_detail_json(&r))
        }
        Cmd::Agents { cmd: Some(AgentsCmd::Revoke { agent, role, reason }), .. } => {
            let r = ops
                .revoke_agent(pb::RevokeAgentRequest {
                    request_id: new_request_id(),
                    agent: agent.clone(),
                    role: role.as_deref().map(parse_role).transpose()?.unwrap_or(0),
                    reason: reason.clone(),
                })
                .await?
                .into_inner();
            let rv = r.revocation.unwrap_or_default();
            let back = if r.released.is_empty() {
                String::new()
            } else {
                format!("; its work is back in the queue: {}", r.released.join(", "))
            };
            (
                format!(
                    "{} is revoked (by {} at {}: {}){back}",
                    rv.identity,
                    rv.revoked_by,
                    seedship_proto::human::rfc3339(rv.revoked_unix_ms),
                    rv.reason
                ),
                serde_json::json!({ "identity": rv.identity, "revoked_by": rv.revoked_by, "reason": rv.reason,
                    "revoked": seedship_proto::human::rfc3339(rv.revoked_unix_ms), "released": r.released }),
            )
        }
        Cmd::Agents { cmd: Some(AgentsCmd::Revoked), .. } => {
            let r = ops.list_revocations(pb::ListRevocationsRequest {}).await?.into_inner();
            let rows = r
                .revocations
                .iter()
                .map(|v| {
                    vec![
                        v.identity.clone(),
                        v.revoked_by.clone(),
                        seedship_proto::human::rfc3339(v.revoked_unix_ms),
                        v.reason.clone(),
                    ]
                })
                .collect();
            let json = r
                .revocations
                .iter()
                .map(|v| {
                    serde_json::json!({ "identity": v.identity, "revoked_by": v.revoked_by,
                        "revoked": seedship_proto::human::rfc3339(v.revoked_unix_ms), "reason": v.reason })
                })
                .collect();
            (render::table(&["IDENTITY", "REVOKED BY", "AT", "WHY"], rows), Value::Array(json))
        }
        Cmd::Agents { role, cmd: None } => {
            let role = role.as_deref().map(parse_role).transpose()?.unwrap_or(0);
            let r = ops.list_agents(pb::ListAgentsRequest { role }).await?.into_inner();
            (agents_table(&r.agents, r.server_time_unix_ms), Value::Array(r.agents.iter().map(agent_json).collect()))
        }
        Cmd::Drives { seed } => {
            let r =
                ops.list_drives(pb::ListDrivesRequest { seed: seed.clone().unwrap_or_default() }).await?.into_inner();
            (drives_table(&r.drives), Value::Array(r.drives.iter().map(drive_json).collect()))
        }
        Cmd::Jobs => {
            let r = ops.list_jobs(pb::ListJobsRequest {}).await?.into_inner();
            (jobs_table(&r.jobs), Value::Array(r.jobs.iter().map(job_json).collect()))
        }
        Cmd::Job { job } => {
            let r = ops.get_job(pb::GetJobRequest { job: job.clone() }).await?.into_inner();
            (job_detail_text(&r), job_detail_json(&r))
        }
        Cmd::Verification { seed } => {
            let r = ops.get_verification(pb::GetVerificationRequest { seed: seed.clone() }).await?.into_inner();
            (verification_text(&r), verification_json(&r))
        }
        Cmd::CleanupImport { seed } => {
            let r = ops
                .cleanup_import(pb::CleanupImportRequest { request_id: new_request_id(), seed: seed.clone() })
                .await?
                .into_inner();
            let s = r.seed.unwrap_or_default();
            (
                format!(
                    "import container of {} cleaned up: {} blob(s), {} deleted",
                    s.job_name,
                    r.blobs_deleted,
                    size(r.bytes_deleted)
                ),
                serde_json::json!({"seed": seed_json(&s), "blobs_deleted": r.blobs_deleted, "bytes_deleted": r.bytes_deleted}),
            )
        }
        Cmd::RecoveryPoints { server } => {
            let r = ops
                .list_recovery_points(pb::ListRecoveryPointsRequest { server: server.clone().unwrap_or_default() })
                .await?
                .into_inner();
            (recovery_points_table(&r.points), Value::Array(r.points.iter().map(recovery_point_json).collect()))
        }
        Cmd::Events { seed, limit, before } => {
            let r = ops
                .list_events(pb::ListEventsRequest {
                    seed: seed.clone().unwrap_or_default(),
                    limit: *limit,
                    before_event_id: before.unwrap_or(0),
                })
                .await?
                .into_inner();
            (events_table(&r.events), Value::Array(r.events.iter().map(event_json).collect()))
        }
        Cmd::Ship { job, carrier, tracking, drives, date } => {
            let r = client::shipping(conn)
                .record_shipping(pb::RecordShippingRequest {
                    request_id: new_request_id(),
                    job_name: job.clone(),
                    carrier: carrier.clone(),
                    tracking_number: tracking.clone(),
                    drive_count: *drives,
                    ship_date: date.clone(),
                })
                .await?
                .into_inner();
            let rec = r.record.unwrap_or_default();
            (shipping_text(&rec), shipping_json(&rec))
        }
        Cmd::Cancel { seed, reason } => {
            let r = ops
                .cancel_seed(pb::CancelSeedRequest {
                    request_id: new_request_id(),
                    seed: seed.clone(),
                    reason: reason.clone(),
                })
                .await?
                .into_inner();
            let s = r.seed.unwrap_or_default();
            (format!("seed {} ({}) cancelled: {}", s.job_name, s.seed_id, s.state_reason), seed_json(&s))
        }
        Cmd::Kind { seed, kind, reason } => {
            let disk_kind = match kind.as_str() {
                "customer_disk" => pb::DiskKind::CustomerDisk,
                "databox_disk" => pb::DiskKind::DataboxDisk,
                other => {
                    return Err(CliError::Usage(format!(
                        "{other:?} is not a disk kind: use customer_disk (your own disks) or databox_disk (Microsoft's)"
                    )));
                }
            };
            let r = ops
                .set_disk_kind(pb::SetDiskKindRequest {
                    request_id: new_request_id(),
                    seed: seed.clone(),
                    disk_kind: disk_kind as i32,
                    reason: reason.clone(),
                })
                .await?
                .into_inner();
            let s = r.seed.unwrap_or_default();
            (
                format!(
                    "seed {} ({}) ships on {}: {}",
                    s.job_name,
                    s.seed_id,
                    render::kind_name(s.disk_kind),
                    s.state_reason
                ),
                seed_json(&s),
            )
        }
        Cmd::Passkey { seed } => {
            let r = ops.get_passkey(pb::GetPasskeyRequest { seed: seed.clone() }).await?.into_inner();
            let chosen = if r.user_defined { " (chosen by you)" } else { "" };
            (
                format!(
                    "Data Box Disk passkey of {seed}{chosen}: {}\nKeep it secret; use it with DataBoxDiskUnlock.",
                    r.passkey
                ),
                serde_json::json!({ "seed": seed, "passkey": r.passkey, "user_defined": r.user_defined }),
            )
        }
        Cmd::Mitigate { job, resolution, disk } => {
            let r = ops
                .mitigate(pb::MitigateRequest {
                    request_id: new_request_id(),
                    job: job.clone(),
                    resolution: resolution.clone(),
                    disk: disk.clone(),
                })
                .await?
                .into_inner();
            let j = r.job.unwrap_or_default();
            let text = format!(
                "job {}: answered with {resolution}{}; Azure job stage {} {}",
                j.job_name,
                if disk.is_empty() { String::new() } else { format!(" for disk {disk}") },
                j.azure_state,
                j.stage_status
            );
            (text, render::job_json(&j))
        }
        Cmd::Retry { seed, reason } => {
            let r = ops
                .retry_work(pb::RetryWorkRequest {
                    request_id: new_request_id(),
                    seed: seed.clone(),
                    reason: reason.clone(),
                })
                .await?
                .into_inner();
            let s = r.seed.unwrap_or_default();
            (
                format!(
                    "seed {} ({}) is {}: {}",
                    s.job_name,
                    s.seed_id,
                    seedship_proto::human::seed_state(s.state),
                    s.state_reason
                ),
                seed_json(&s),
            )
        }
        Cmd::Requeue { seed, station, site, anywhere, reason } => {
            let r = ops
                .requeue_work(pb::RequeueWorkRequest {
                    request_id: new_request_id(),
                    seed: seed.clone(),
                    target_station: station.clone().unwrap_or_default(),
                    target_site: site.clone().unwrap_or_default(),
                    any_station: *anywhere,
                    reason: reason.clone(),
                })
                .await?
                .into_inner();
            let s = r.seed.unwrap_or_default();
            (format!("seed {} ({}): {}", s.job_name, s.seed_id, s.state_reason), seed_json(&s))
        }
        Cmd::Reship { seed, reason } => {
            let r = ops
                .reship_lost(pb::ReshipLostRequest {
                    request_id: new_request_id(),
                    seed: seed.clone(),
                    reason: reason.clone(),
                })
                .await?
                .into_inner();
            let (s, round) = (r.seed.unwrap_or_default(), r.round.unwrap_or_default());
            (
                format!(
                    "new offline round {} ({}) for {} file(s), {}, that the import of {} lost: {}\n\
                     Its disks are prepared like any seed's (seedctl seed {}); once it is imported, {} is verified again.",
                    round.job_name,
                    round.seed_id,
                    r.files,
                    render::size(r.bytes),
                    s.job_name,
                    seedship_proto::human::seed_state(round.state),
                    round.job_name,
                    s.job_name
                ),
                serde_json::json!({ "seed": seed_json(&s), "round": seed_json(&round), "files": r.files, "bytes": r.bytes }),
            )
        }
        Cmd::AllowVirtualStation { seed, reason } => {
            let r = ops
                .allow_virtual_station(pb::AllowVirtualStationRequest {
                    request_id: new_request_id(),
                    seed: seed.clone(),
                    reason: reason.clone(),
                })
                .await?
                .into_inner();
            let s = r.seed.unwrap_or_default();
            (
                format!("seed {} ({}) may now be prepared on a virtual copy station", s.job_name, s.seed_id),
                seed_json(&s),
            )
        }
        Cmd::Docs(_) => return Err(CliError::Usage("completions and man pages need no coordinator".into())),
        Cmd::Audit { cmd } => return audit(cli, &mut ops, cmd).await,
        Cmd::Enroll { cmd: EnrollCmd::Create { role, name, site, ttl_seconds, reason } } => {
            let r = ops
                .create_enroll_token(pb::CreateEnrollTokenRequest {
                    role: parse_role(role)?,
                    name: name.clone(),
                    site: site.clone().unwrap_or_default(),
                    ttl_seconds: *ttl_seconds,
                    reason: reason.clone(),
                })
                .await?
                .into_inner();
            let info = r.info.unwrap_or_default();
            let program = if role == "copy" { "copy-agent" } else { "source-agent" };
            let url = r.enroll_url.trim_end_matches("/enroll").to_string();
            (
                format!(
                    "token {} (shown once; id {}, for {role} {name:?}, site {}, until {})\n\
                     CA fingerprint sha256:{}\n\
                     On the agent, with the token in a file readable only by it:\n  \
                     {program} --config {program}.toml enroll --url {} --ca-fingerprint sha256:{} --token-file TOKEN_FILE --name NAME",
                    r.token,
                    info.id,
                    if info.site.is_empty() { "any" } else { &info.site },
                    seedship_proto::human::rfc3339(info.expires_unix_ms),
                    r.ca_fingerprint,
                    if url.is_empty() { "https://COORDINATOR:PORT" } else { &url },
                    r.ca_fingerprint
                ),
                serde_json::json!({ "token": r.token, "id": info.id, "ca_fingerprint": r.ca_fingerprint,
                    "enroll_url": r.enroll_url, "expires": seedship_proto::human::rfc3339(info.expires_unix_ms) }),
            )
        }
        Cmd::Enroll { cmd: EnrollCmd::List } => {
            let r = ops.list_enroll_tokens(pb::ListEnrollTokensRequest {}).await?.into_inner();
            let rows: Vec<Vec<String>> = r
                .tokens
                .iter()
                .map(|t| {
                    vec![
                        t.id.clone(),
                        render::role_name(t.role),
                        t.name.clone(),
                        if t.site.is_empty() { "-".into() } else { t.site.clone() },
                        t.created_by.rsplit('/').next().unwrap_or_default().to_string(),
                        seedship_proto::human::rfc3339(t.expires_unix_ms),
                        if t.used_unix_ms == 0 { "-".into() } else { t.used_by.clone() },
                    ]
                })
                .collect();
            let json: Vec<Value> = r
                .tokens
                .iter()
                .map(|t| {
                    serde_json::json!({ "id": t.id, "role": render::role_name(t.role), "name": t.name, "site": t.site,
                        "created_by": t.created_by, "reason": t.reason, "expires": seedship_proto::human::rfc3339(t.expires_unix_ms),
                        "used": seedship_proto::human::rfc3339(t.used_unix_ms), "used_by": t.used_by })
                })
                .collect();
            (render::table(&["ID", "ROLE", "NAME", "SITE", "BY", "EXPIRES", "USED BY"], rows), Value::Array(json))
        }
        Cmd::LoginLink => {
            let r = ops.create_login_link(pb::CreateLoginLinkRequest {}).await?.into_inner();
            (
                format!(
                    "{}\n(single use, valid until {}; it opens an 8-hour dashboard session)",
                    r.url,
                    seedship_proto::human::rfc3339(r.expires_unix_ms)
                ),
                serde_json::json!({ "url": r.url, "expires": seedship_proto::human::rfc3339(r.expires_unix_ms) }),
            )
        }
        Cmd::Evidence { seed, out } => return evidence(cli, &mut ops, seed, out.as_deref()).await,
        Cmd::Notifications { open, limit } => {
            let r =
                ops.list_notifications(pb::ListNotificationsRequest { open: *open, limit: *limit }).await?.into_inner();
            (
                render::notifications_table(&r.notifications),
                Value::Array(r.notifications.iter().map(render::notification_json).collect()),
            )
        }
        Cmd::Ack { id, reason } => {
            let r = ops
                .ack_notification(pb::AckNotificationRequest {
                    request_id: new_request_id(),
                    id: *id,
                    reason: reason.clone(),
                })
                .await?
                .into_inner();
            let n = r.notification.unwrap_or_default();
            (
                format!("notification {} ({}, job {}) acknowledged: {}", n.id, n.kind, n.job_name, n.ack_reason),
                render::notification_json(&n),
            )
        }
        Cmd::Shipping { job } => {
            let r = client::shipping(conn)
                .get_shipping(pb::GetShippingRequest { job_name: job.clone() })
                .await?
                .into_inner();
            let rec = r.record.unwrap_or_default();
            (shipping_text(&rec), shipping_json(&rec))
        }
    };
    if cli.json { Ok(serde_json::to_string_pretty(&json).unwrap_or_default()) } else { Ok(text) }
}

type Ops = pb::operator_service_client::OperatorServiceClient<Conn>;

/// Fetches a seed's evidence bundle and writes it as a tar archive (whole or not at all).
async fn evidence(cli: &Cli, ops: &mut Ops, seed: &str, out: Option<&std::path::Path>) -> Result<String, CliError> {
    let mut stream = ops.get_evidence(pb::GetEvidenceRequest { seed: seed.to_string() }).await?.into_inner();
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    while let Some(chunk) = stream.message().await? {
        match files.last_mut() {
            Some((p, d)) if *p == chunk.path => d.extend_from_slice(&chunk.data),
            _ => files.push((chunk.path, chunk.data)),
        }
    }
    let job = files
        .iter()
        .find(|(p, _)| p == "seed.json")
        .and_then(|(_, d)| serde_json::from_slice::<Value>(d).ok())
        .and_then(|v| v["job_name"].as_str().map(str::to_string))
        .ok_or_else(|| CliError::Io("the coordinator's bundle has no seed.json".into()))?;
    if files.iter().any(|(p, _)| p.contains('/') || p.starts_with('.')) {
        return Err(CliError::Io("the coordinator's bundle names a file outside its folder; not written".into()));
    }
    let folder = format!("evidence-{job}");
    let path = out.map(std::path::Path::to_path_buf).unwrap_or_else(|| PathBuf::from(format!("{folder}.tar")));
    let mtime = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let bytes = tar::archive(&folder, &files, mtime).map_err(CliError::Io)?;
    let tmp = path.with_extension("tar.part");
    std::fs::write(&tmp, &bytes)
        .and_then(|_| std::fs::rename(&tmp, &path))
        .map_err(|e| CliError::Io(format!("cannot write {}: {e}", path.display())))?;
    if cli.json {
        let names: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
        return Ok(serde_json::json!({ "archive": path, "folder": folder, "files": names }).to_string());
    }
    Ok(format!(
        "wrote {} ({} files under {folder}/, signed by the coordinator)\ncheck it: tar xf {} && cd {folder} && cat VERIFY.txt",
        path.display(),
        files.len(),
        path.display()
    ))
}

/// The whole audit log (or one target's), page by page, oldest first.
async fn audit_entries(ops: &mut Ops, target: &str) -> Result<Vec<seedship_proto::audit::Entry>, CliError> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let r = ops
            .list_audit(pb::ListAuditRequest { after_seq: after, limit: 1000, target: target.to_string() })
            .await?
            .into_inner();
        let n = r.entries.len();
        for e in r.entries {
            after = e.seq;
            out.push(e.into());
        }
        if n < 1000 {
            return Ok(out);
        }
    }
}

fn read_export(path: &std::path::Path) -> Result<Vec<seedship_proto::audit::Entry>, CliError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| CliError::Io(format!("cannot read {}: {e}", path.display())))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| {
                CliError::Usage(format!(
                    "{} line {}: not an audit entry ({e}); is it a `seedctl audit export`?",
                    path.display(),
                    i + 1
                ))
            })
        })
        .collect()
}

async fn audit(cli: &Cli, ops: &mut Ops, cmd: &AuditCmd) -> Result<String, CliError> {
    match cmd {
        AuditCmd::List { target, limit } => {
            let all = audit_entries(ops, target.as_deref().unwrap_or_default()).await?;
            let shown: Vec<_> = all.iter().rev().take(*limit as usize).rev().cloned().collect();
            if cli.json {
                return Ok(serde_json::to_string_pretty(&shown).unwrap_or_default());
            }
            Ok(render::audit_table(&shown))
        }
        AuditCmd::Export { out } => {
            let all = audit_entries(ops, "").await?;
            let mut text = String::new();
            for e in &all {
                text.push_str(&serde_json::to_string(e).expect("serializes"));
                text.push('\n');
            }
            match out {
                None => Ok(text.trim_end().to_string()),
                Some(p) => {
                    std::fs::write(p, &text).map_err(|e| CliError::Io(format!("cannot write {}: {e}", p.display())))?;
                    let head = all.last().map(|e| format!("; head: entry {} {}", e.seq, e.hash)).unwrap_or_default();
                    Ok(format!("wrote {} audit entries to {}{head}", all.len(), p.display()))
                }
            }
        }
        AuditCmd::Verify { file } => {
            let entries = match file {
                Some(f) => read_export(f)?,
                None => audit_entries(ops, "").await?,
            };
            let r = seedship_proto::audit::verify(&entries);
            let head = r.head.as_ref().map(|(s, h)| format!("head: entry {s} {h}")).unwrap_or_else(|| "empty".into());
            if r.problems.is_empty() {
                return Ok(format!(
                    "audit log intact: {} entries, each unchanged and in place; {head}\n(keep the head: a log cut short after it shows here as a shorter, intact chain)",
                    r.entries
                ));
            }
            let mut text = format!("audit log NOT intact: {} problem(s) in {} entries\n", r.problems.len(), r.entries);
            for p in &r.problems {
                text.push_str(&format!("  {p}\n"));
            }
            text.push_str(&format!("  ({head})"));
            Err(CliError::Tampered(text))
        }
    }
}

#[cfg(test)]
mod cli_tests {
    #[test]
    fn every_argument_and_command_says_what_it_is_for() {
        use clap::CommandFactory;
        assert_eq!(seedship_proto::cli::undocumented(&super::Cli::command()), Vec::<String>::new());
    }
}
