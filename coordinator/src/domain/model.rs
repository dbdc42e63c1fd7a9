//! Domain types: what the coordinator knows, independent of the wire and the database.

use seedship_proto::identity::Role;
use serde::{Deserialize, Serialize};

use crate::clock::UnixMs;
use crate::domain::import::JobRecord;
use crate::domain::lease::WorkItem;
use crate::domain::seed::{SeedEvent, SeedState};

/// What an agent says about itself when it registers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentInfo {
    pub site: Option<String>,
    pub hostname: String,
    pub version: String,
    /// "none" on physical hardware, a hypervisor kind, or empty when unknown.
    #[serde(default)]
    pub virtualization: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agent {
    pub identity: String,
    pub role: Role,
    pub name: String,
    pub info: AgentInfo,
    pub registered_ms: UnixMs,
    pub last_heartbeat_ms: UnixMs,
    pub status: String,
    /// Whether a heartbeat ever came (registered and never run: false).
    #[serde(default)]
    pub reported: bool,
    /// The work a copy station holds, with its disks.
    #[serde(default)]
    pub work: Option<AgentWork>,
}

/// The work a copy station holds, as the coordinator records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentWork {
    pub job_name: String,
    /// The work's phase ("waiting" while the station waits, e.g. for disks).
    pub phase: String,
    pub lease_expires_ms: UnixMs,
    pub disks: Vec<DiskProgress>,
}

/// What an agent is doing, by the coordinator's records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    /// Registered, never sent a heartbeat (set up, never run).
    NeverReported,
    /// No heartbeat for three heartbeat intervals.
    Gone,
    Idle,
    /// A copy station holding work and writing or verifying its disks.
    Copying,
    /// A copy station holding work and waiting (for disks, for a person).
    Waiting,
}

impl Activity {
    pub fn as_str(self) -> &'static str {
        match self {
            Activity::NeverReported => "never reported",
            Activity::Gone => "gone",
            Activity::Idle => "idle",
            Activity::Copying => "copying",
            Activity::Waiting => "waiting",
        }
    }
}

impl Agent {
    /// What the agent is doing at `now`; gone after `gone_after_ms` without a heartbeat.
    pub fn activity(&self, now: UnixMs, gone_after_ms: i64) -> Activity {
        if !self.reported {
            return Activity::NeverReported;
        }
        if now - self.last_heartbeat_ms > gone_after_ms {
            return Activity::Gone;
        }
        match &self.work {
            Some(w) if w.lease_expires_ms >= now && w.phase == crate::domain::lease::WAITING => Activity::Waiting,
            Some(w) if w.lease_expires_ms >= now => Activity::Copying,
            _ => Activity::Idle,
        }
    }
}

/// One disk at a copy station, as the station last reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskProgress {
    pub position: u32,
    pub set_size: u32,
    pub drive_id: String,
    pub phase: String,
    pub done_bytes: u64,
    pub total_bytes: u64,
    pub rate_bytes_per_sec: u64,
    /// When the coordinator received it.
    pub updated_ms: UnixMs,
}

/// A seed as a source agent registers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewSeed {
    pub job_name: String,
    pub storage_account: String,
    pub container: String,
    pub subscription_id: String,
    pub location: String,
    pub staging_location: String,
    pub manifest_root: String,
    pub total_bytes: u64,
    pub file_count: u64,
    pub target_site: Option<String>,
    pub target_station: Option<String>,
    /// The repository the seed holds (its config's id); a server's seeds and vault share one.
    #[serde(default)]
    pub repository_id: String,
}

/// What a seed is shipped on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiskKind {
    /// The operator's own disks (`DataBoxCustomerDisk`).
    #[default]
    CustomerDisk,
    /// Microsoft's disks (`DataBoxDisk`): ordered first, delivered, filled, sent back.
    DataboxDisk,
}

impl DiskKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DiskKind::CustomerDisk => "customer_disk",
            DiskKind::DataboxDisk => "databox_disk",
        }
    }

    pub fn parse(s: &str) -> Option<DiskKind> {
        [DiskKind::CustomerDisk, DiskKind::DataboxDisk].into_iter().find(|k| k.as_str() == s)
    }

    /// The Azure SKU of the job.
    pub fn sku(self) -> seedship_azure::databox::Sku {
        match self {
            DiskKind::CustomerDisk => seedship_azure::databox::Sku::CustomerDisk,
            DiskKind::DataboxDisk => seedship_azure::databox::Sku::DataBoxDisk,
        }
    }

    /// In words for operators.
    pub fn describe(self) -> &'static str {
        match self {
            DiskKind::CustomerDisk => "the operator's own disks",
            DiskKind::DataboxDisk => "Microsoft's Data Box Disks",
        }
    }
}

impl std::fmt::Display for DiskKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seed {
    pub seed_id: String,
    pub owner: String,
    pub state: SeedState,
    pub state_reason: String,
    pub created_ms: UnixMs,
    pub updated_ms: UnixMs,
    pub spec: NewSeed,
    /// An operator allowed a virtual station (or the source's own host) for this seed.
    #[serde(default)]
    pub allow_virtual_station: bool,
    /// The Azure job state as last reported (raw); empty before the job exists.
    #[serde(default)]
    pub import_job_state: String,
    /// What the seed is shipped on.
    #[serde(default)]
    pub kind: DiskKind,
    /// A new offline round for files another seed's import lost: that seed's job name.
    #[serde(default)]
    pub round_of: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedRegistration {
    pub seed: Seed,
    pub created: bool,
}

/// A granted lease: the work item and what the station needs to do the work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub work: WorkItem,
    pub seed: Seed,
    pub ttl_ms: i64,
    /// Data Box Disk: the serials of the disks Microsoft delivered (not bad), in order.
    #[serde(default)]
    pub delivered: Vec<String>,
    /// A round of lost files: only these staging paths go on the disks (empty: all of them).
    #[serde(default)]
    pub files: Vec<String>,
    /// Customer disks: the import container's SAS for the drive manifest, made fresh for each
    /// answer (never stored with the idempotent answer).
    #[serde(skip)]
    pub container_sas: Option<SasToken>,
}

/// A SAS token (a query string). A secret: `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct SasToken(pub String);

impl std::fmt::Debug for SasToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SasToken(<redacted>)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressDelta {
    pub from: u64,
    pub to: u64,
    pub phase: String,
}

/// A drive key in the clear. Debug never shows it; it is sealed before it reaches the store.
#[derive(Clone, PartialEq, Eq)]
pub struct RecoveryPassword(pub String);

impl std::fmt::Debug for RecoveryPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecoveryPassword(<redacted>)")
    }
}

/// The public part of a drive report (everything but the key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriveSpec {
    pub drive_id: String,
    pub position: u32,
    pub capacity_bytes: u64,
    pub bytes_written: u64,
    pub manifest_file: String,
    pub manifest_hash: String,
    pub drive_header_hash: String,
    pub status: DriveStatus,
    /// Why a drive is bad; empty otherwise.
    pub status_reason: String,
}

/// Where a shipping drive stands at its copy station.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DriveStatus {
    /// Key escrowed, data being written; hashes not known yet.
    Preparing,
    /// Sealed and read back; the hashes are final.
    Prepared,
    /// The disk failed (I/O error, pulled out); it will not be shipped.
    Bad,
    /// Microsoft delivered it for the seed (Data Box Disk), key escrowed; not written yet.
    Delivered,
}

impl DriveStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DriveStatus::Preparing => "preparing",
            DriveStatus::Prepared => "prepared",
            DriveStatus::Bad => "bad",
            DriveStatus::Delivered => "delivered",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [DriveStatus::Preparing, DriveStatus::Prepared, DriveStatus::Bad, DriveStatus::Delivered]
            .into_iter()
            .find(|d| d.as_str() == s)
    }
}

/// A disk Microsoft delivered for a Data Box Disk seed, with its key sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveredDisk {
    pub serial: String,
    pub position: u32,
    pub capacity_bytes: u64,
    pub sealed_key: SealedKey,
}

/// A seed's sealed Data Box Disk passkey (none before delivery) and what it is sealed with.
#[derive(Debug, Clone)]
pub struct PasskeyRecord {
    pub seed: Seed,
    pub work_id: String,
    pub sealed: Option<SealedKey>,
    pub user_defined: bool,
    /// The job's stage as Azure last said it (empty before the order).
    pub stage: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriveReport {
    pub spec: DriveSpec,
    pub recovery_password: Option<RecoveryPassword>,
}

/// A drive key sealed under the coordinator's master key (AES-256-GCM, nonce ‖ ciphertext).
#[derive(Clone, PartialEq, Eq)]
pub struct SealedKey(pub Vec<u8>);

impl std::fmt::Debug for SealedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SealedKey({} bytes)", self.0.len())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drive {
    pub spec: DriveSpec,
    pub seed_id: String,
    pub job_name: String,
    pub reported_by: String,
    pub reported_ms: UnixMs,
    pub has_key: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewShipping {
    pub job_name: String,
    pub carrier: String,
    pub tracking_number: String,
    pub drive_count: u32,
    pub ship_date: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShippingRecord {
    pub spec: NewShipping,
    pub seed_id: String,
    pub recorded_by: String,
    pub recorded_ms: UnixMs,
    /// When Azure took the delivery package; `None` while the record is only reserved.
    #[serde(default)]
    pub confirmed_ms: Option<UnixMs>,
}

/// One recorded seed transition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub event_id: i64,
    pub seed_id: String,
    pub job_name: String,
    pub at_ms: UnixMs,
    pub actor: String,
    pub from: Option<SeedState>,
    pub to: SeedState,
    pub event: String,
    pub reason: String,
    /// How many identical events in a row this row stands for, and when the last one was.
    pub repeats: u32,
    pub last_ms: UnixMs,
}

/// A transition to record: who did what, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition<'a> {
    pub event: SeedEvent,
    pub actor: &'a str,
    pub reason: String,
}

/// Events a seed's detail carries (the newest); the rest are paged.
pub const HISTORY_PAGE: u32 = 200;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedDetail {
    pub seed: Seed,
    pub work: Option<WorkItem>,
    pub drives: Vec<Drive>,
    /// The newest events (at most [`HISTORY_PAGE`]), oldest first.
    pub history: Vec<HistoryEntry>,
    /// Every event of the seed; older ones are paged with `list_events`.
    pub history_total: u64,
    pub shipping: Option<ShippingRecord>,
    pub job: Option<JobRecord>,
    /// Each disk's progress at the station holding the work.
    pub disks: Vec<DiskProgress>,
    /// The seed's new offline rounds for lost files, oldest first.
    pub rounds: Vec<Seed>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportJob {
    pub job_name: String,
    pub seed_id: String,
    pub seed_state: SeedState,
    pub seed_reason: String,
    pub storage_account: String,
    pub location: String,
    pub drive_count: u32,
    pub shipping: Option<ShippingRecord>,
    /// The coordinator's record of the Azure job.
    pub record: JobRecord,
}

/// A prepared drive and its sealed key, as the job's drive list needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriveForJob {
    pub spec: DriveSpec,
    pub sealed_key: Option<SealedKey>,
    /// The disk-prep work the key was sealed under (its AAD).
    pub work_id: String,
}

/// The lease the sweeper took back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiredLease {
    pub work_id: String,
    pub seed_id: String,
    pub holder: String,
    pub generation: u64,
}

/// Identifies one mutating request for idempotency: a retry with the same caller and
/// request id must carry the same method and payload fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idem {
    pub caller: String,
    pub request_id: String,
    pub method: &'static str,
    pub fingerprint: [u8; 32],
}

/// One file of a seed as the import verification found it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifiedFile {
    pub path: String,
    pub size: u64,
    /// "verified", "missing" or "corrupted".
    pub status: String,
    pub detail: String,
}

/// A staging file the source agent is asked to upload again, and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairFile {
    pub path: String,
    pub size: u64,
    pub sha256: String,
    pub md5: String,
    /// "requested", "uploaded", "lost", or "reshipped" (on a new offline round).
    pub state: String,
    pub detail: String,
    pub updated_ms: UnixMs,
}

/// A new offline round started for the files a seed's import lost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reshipped {
    /// The seed that lost the files.
    pub seed: Seed,
    /// The round: a seed of its own, into the same import container.
    pub round: Seed,
    pub files: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerificationReport {
    pub seed: Seed,
    pub files: Vec<VerifiedFile>,
    pub repairs: Vec<RepairFile>,
    pub checked_ms: Option<UnixMs>,
}

/// Files a source agent is asked to upload again, with where and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairOrder {
    pub seed: Seed,
    pub files: Vec<RepairFile>,
    /// The storage account's blob endpoint.
    pub endpoint: String,
    /// SAS token for the seed's container (create, write).
    pub sas: String,
    pub expires_ms: UnixMs,
}

/// What a source agent did with a repair order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairReport {
    pub seed_id: String,
    pub uploaded: Vec<String>,
    /// (path, why) of each file it could not send.
    pub lost: Vec<(String, String)>,
}

/// A server's vault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vault {
    pub server: String,
    pub account: String,
    pub container: String,
    pub seed_id: String,
    pub created_ms: UnixMs,
}

/// One recovery point of a vault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryPoint {
    pub server: String,
    pub snapshot_id: String,
    /// "seed" or "incremental".
    pub kind: String,
    pub seed_id: Option<String>,
    pub manifest_root: String,
    pub created_ms: UnixMs,
    pub container: String,
}

/// A server's way into its own vault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultAccess {
    pub vault: Vault,
    pub endpoint: String,
    pub sas: String,
    pub expires_ms: UnixMs,
    pub points: Vec<RecoveryPoint>,
}

/// What `/metrics` reads from the database at each scrape: durable facts, so that what they
/// count survives a restart.
#[derive(Debug, Clone, Default)]
pub struct MetricsFacts {
    /// (state, seeds).
    pub seeds_by_state: Vec<(String, i64)>,
    /// (state, seconds a seed spent in it), one entry per stay that has ended.
    pub stage_stays: Vec<(String, f64)>,
    /// (status, files): the latest verification of every seed.
    pub verified_files: Vec<(String, i64)>,
    /// (state, files): every repair asked for.
    pub repairs: Vec<(String, i64)>,
    /// (server, newest recovery point of kind incremental, unix ms).
    pub last_online_backup: Vec<(String, UnixMs)>,
    /// (server, newest recovery point of any kind, unix ms).
    pub last_recovery_point: Vec<(String, UnixMs)>,
    /// (station, sum of its disks' reported rates, bytes/s) for the work it holds.
    pub station_rates: Vec<(String, u64)>,
    /// (role, name, last heartbeat unix ms) of every agent that has reported.
    pub heartbeats: Vec<(String, String, UnixMs)>,
    /// Bytes of seeds whose disks are prepared and not yet at the datacenter.
    pub bytes_in_transit: u64,
    /// (job, state, since unix ms) of every seed under way: when it entered its state.
    pub seed_states: Vec<(String, String, UnixMs)>,
    /// Jobs of seeds in `needs_repair` with a file the source no longer has.
    pub repair_blocked: Vec<String>,
}

/// What an audit entry records (the store adds the time, the sequence and the hashes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub actor: String,
    pub action: String,
    pub target: String,
    pub outcome: String,
    pub detail: String,
}

/// A revoked identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    pub identity: String,
    pub revoked_by: String,
    pub reason: String,
    pub revoked_ms: UnixMs,
}

/// What a revocation did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revoked {
    pub revocation: Revocation,
    /// The jobs whose disk-prep work a revoked copy station held, back in the queue.
    pub released: Vec<String>,
}
