//! Durable state behind a narrow trait of domain operations.
//!
//! # What we store and why
//!
//! | table | what | why |
//! |---|---|---|
//! | `agents` | every agent's SPIFFE id, site, host, version, virtualization, registration and last heartbeat | the fleet view; site targeting; the physical-station rule for VM sources |
//! | `seeds` | each seed's Azure coordinates, staging location, manifest root, size, owner, lifecycle state, disk kind (customer disks or Data Box Disk), and whether a virtual station is allowed | the unit of work the whole system moves forward |
//! | `seed_events` | every transition with time, actor and reason (append-only) | operators read a seed's history; audits |
//! | `work_items` | each seed's disk-prep item, its lease holder, expiry, fencing generation and progress | leases must survive a coordinator restart, and the generation must never go back |
//! | `drives` | drives reported per seed (or delivered by Microsoft, for Data Box Disk), with the recovery password sealed under the master key | the Azure job's drive list; keys are needed once, at job creation |
//! | `import_jobs` | each seed's Azure import job: the intent written before the PUT, Azure's job state, the datacenter address, the deadline clocks and warnings, "unavailable since", the sealed Data Box Disk passkey | a crash between intent and PUT converges on one job; deadlines and operators' views |
//! | `job_drives` | every drive of every job as Azure last reported it (state, copy status, percent, bytes, log URIs) | the operator view and the history of each drive |
//! | `verify_results` | per file of each seed: verified, missing or corrupted, and why (the latest verification) | the operators' report; what to repair |
//! | `repairs` | files asked of a source agent again, and what became of each (uploaded, lost) | repair sends only what is missing; a seed never reaches "seeded" with gaps |
//! | `vaults` | each server's vault: storage account and container (`container/folder` for a member of a group vault), and the seed it came from | the catalogue; incrementals and restores go to the right vault |
//! | `recovery_points` | every snapshot of every vault, seed or incremental | operators list recovery points per server; restores pick one |
//! | `shipping` | carrier, tracking number, drive count and ship date per job, who recorded it, and when Azure confirmed it | Azure needs the tracking number within 14 days; numbers are unique across jobs |
//! | `requests` | the answer to each mutating request, by caller and request id | a retried request gets the stored answer instead of being applied twice |
//!
//! Every method below is one transaction: it either happens completely, with its history row
//! and its idempotency record, or not at all. A database that is locked or unreachable gives
//! [`Error::Unavailable`] and writes nothing.
//!
//! What we do not store: clear-text drive keys, private keys, certificates (the identity is
//! re-read from the client certificate on every call), or anything from the staging data.

pub mod sqlite;

use async_trait::async_trait;
use seedship_proto::identity::{Role, SpiffeId};

use crate::clock::UnixMs;
use crate::domain::import::{DeadlineKind, JobIntent, JobRecord, JobSnapshot};
use crate::domain::lease::{Fence, Release};
use crate::domain::model::*;
use crate::domain::placement::Placement;
use crate::error::Result;

/// Lease timing handed to the store's lease operations.
#[derive(Debug, Clone, Copy)]
pub struct LeaseTiming {
    pub now: UnixMs,
    pub ttl_ms: i64,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    // ---- agents
    /// Registers or re-registers an agent (keeps the first registration time).
    async fn register_agent(&self, idem: &Idem, who: &SpiffeId, info: &AgentInfo, now: UnixMs) -> Result<Agent>;
    /// Records a heartbeat; FAILED_PRECONDITION if the agent never registered.
    async fn heartbeat(&self, idem: &Idem, who: &SpiffeId, status: &str, now: UnixMs) -> Result<UnixMs>;

    // ---- seeds
    /// Registers a seed and queues its disk-prep work, or returns the identical existing one.
    /// `seed.container` is the source's suggestion (may be empty); the stored container is
    /// chosen by `placement`, unique among seeds, and never a vault's. A server's seeds and
    /// vault are of one repository.
    async fn register_seed(
        &self,
        idem: &Idem,
        owner: &SpiffeId,
        seed: &NewSeed,
        placement: &Placement,
        policy: DiskKind,
        now: UnixMs,
    ) -> Result<SeedRegistration>;

    // ---- disk-prep leases
    /// Leases the oldest queued item the station may take, or `None`.
    async fn claim_work(&self, idem: &Idem, station: &SpiffeId, t: LeaseTiming) -> Result<Option<Lease>>;
    /// Extends a live lease; a non-empty `waiting` puts the work in the "waiting" phase and
    /// records why in the seed's history (once per wait).
    async fn renew_lease(
        &self,
        idem: &Idem,
        station: &SpiffeId,
        fence: &Fence,
        waiting: &str,
        t: LeaseTiming,
    ) -> Result<UnixMs>;
    async fn report_progress(
        &self,
        idem: &Idem,
        station: &SpiffeId,
        fence: &Fence,
        delta: &ProgressDelta,
        t: LeaseTiming,
    ) -> Result<(u64, UnixMs)>;
    /// Replaces the disks' progress of the work `fence` names (its live holder only).
    async fn record_disks(
        &self,
        station: &SpiffeId,
        fence: &Fence,
        disks: Vec<DiskProgress>,
        now: UnixMs,
    ) -> Result<()>;
    async fn report_drive(
        &self,
        idem: &Idem,
        station: &SpiffeId,
        fence: &Fence,
        drive: &DriveSpec,
        key: Option<SealedKey>,
        now: UnixMs,
    ) -> Result<Drive>;
    async fn complete_work(&self, idem: &Idem, station: &SpiffeId, fence: &Fence, now: UnixMs) -> Result<Seed>;
    async fn release_work(
        &self,
        idem: &Idem,
        station: &SpiffeId,
        fence: &Fence,
        release: &Release,
        now: UnixMs,
    ) -> Result<()>;
    /// The sealed key of `drive_id`, for the station holding the live lease `fence` that
    /// reported that drive.
    async fn drive_key(&self, station: &SpiffeId, fence: &Fence, drive_id: &str, now: UnixMs) -> Result<SealedKey>;
    /// Returns every lease that expired by `now` to the queue (the sweeper's job).
    async fn expire_leases(&self, now: UnixMs) -> Result<Vec<ExpiredLease>>;

    // ---- the Azure import job (see `domain::import`)
    /// Seeds whose disks are prepared and that have no import job record yet.
    async fn seeds_awaiting_jobs(&self) -> Result<Vec<Seed>>;
    /// A seed's prepared drives with their sealed keys (the job's drive list).
    async fn drives_for_job(&self, seed_id: &str) -> Result<Vec<DriveForJob>>;
    /// Writes the intent to create a job, after Azure's rules (at most 10 drives, each with a
    /// key and in no other active job, a valid name). An existing intent is returned as is.
    async fn record_job_intent(&self, intent: &JobIntent, now: UnixMs) -> Result<JobRecord>;
    /// Intents to create and created jobs whose import has not ended.
    async fn followed_jobs(&self) -> Result<Vec<JobRecord>>;
    /// Azure has the job: the seed is `import_job_created`, the datacenter address kept.
    async fn job_created(
        &self,
        seed_id: &str,
        snap: &JobSnapshot,
        address: &[String],
        adopted: bool,
        now: UnixMs,
    ) -> Result<()>;
    /// Data Box Disk: the disks are delivered; their sealed keys (and the passkey) kept, the
    /// disk-prep work queued.
    async fn disks_delivered(
        &self,
        seed_id: &str,
        disks: &[DeliveredDisk],
        passkey: Option<&(SealedKey, bool)>,
        now: UnixMs,
    ) -> Result<()>;
    /// A seed's sealed Data Box Disk passkey, if Azure gave it.
    async fn passkey(&self, seed: &str) -> Result<PasskeyRecord>;
    /// The sealed passkey of the seed whose work the station holds with the live lease `fence`.
    async fn lease_passkey(&self, station: &SpiffeId, fence: &Fence, now: UnixMs) -> Result<PasskeyRecord>;
    /// Azure refused the job: the seed fails with the reason.
    async fn job_refused(&self, seed_id: &str, reason: &str, now: UnixMs) -> Result<()>;
    /// Azure did not answer: "Azure unavailable since …" on the seed.
    async fn azure_unavailable(&self, seed_id: &str, error: &str, now: UnixMs) -> Result<()>;
    /// A poll's answer, mirrored into the job, its drives and the seed's history.
    async fn mirror_job(&self, seed_id: &str, snap: &JobSnapshot, now: UnixMs) -> Result<Vec<String>>;
    /// The job is gone in Azure.
    async fn job_gone(&self, seed_id: &str, now: UnixMs) -> Result<()>;
    /// Something done to a seed's job (an operator's `mitigate`, the worker's update), in the
    /// seed's history as `event` by `actor`.
    async fn note_job(&self, seed_id: &str, actor: &str, event: &str, what: &str, now: UnixMs) -> Result<()>;
    /// Announces a deadline step once (10, 12, 13; 14 fails the seed). True when new.
    async fn deadline_step(
        &self,
        seed_id: &str,
        kind: DeadlineKind,
        step: i64,
        text: &str,
        now: UnixMs,
    ) -> Result<bool>;
    async fn job(&self, job: &str) -> Result<Option<ImportJob>>;

    // ---- import verification and repair
    /// `imported` (or `needs_repair` with every file back) → `verifying`.
    async fn start_verification(&self, seed_id: &str, now: UnixMs) -> Result<Seed>;
    /// A round of lost files is imported: it is `merged`, its parent verified again.
    async fn merge_round(&self, round_id: &str, now: UnixMs) -> Result<Seed>;
    /// Starts a new offline round for the files a seed's import lost (`domain/round.rs`
    /// decides); recorded in both seeds' histories.
    async fn reship_lost(
        &self,
        idem: &Idem,
        operator: &SpiffeId,
        seed: &str,
        reason: &str,
        now: UnixMs,
    ) -> Result<Reshipped>;
    /// Stores a verification's findings: passed → `seeding_vault`; otherwise `needs_repair`
    /// with `repair` asked of the source agent.
    async fn finish_verification(
        &self,
        seed_id: &str,
        files: &[VerifiedFile],
        repair: &[RepairFile],
        now: UnixMs,
    ) -> Result<Seed>;
    /// The caller's seeds waiting for files from it.
    async fn repair_orders(&self, owner: &str) -> Result<Vec<(Seed, Vec<RepairFile>)>>;
    /// What the source agent uploaded, and what it could not (with why).
    async fn report_repair(
        &self,
        idem: &Idem,
        owner: &SpiffeId,
        seed_id: &str,
        uploaded: &[String],
        lost: &[(String, String)],
        now: UnixMs,
    ) -> Result<Seed>;
    async fn verification(&self, seed: &str) -> Result<Option<VerificationReport>>;

    // ---- vaults
    async fn vault_of(&self, server: &str) -> Result<Option<Vault>>;
    /// Fails a seed that cannot go on (not one already ended), with who and why.
    async fn fail_seed(&self, seed_id: &str, actor: &str, reason: &str, now: UnixMs) -> Result<Seed>;
    /// The seed's data is in the vault: recorded, with its snapshots as recovery points.
    async fn vault_seeded(
        &self,
        seed_id: &str,
        account: &str,
        container: &str,
        snapshots: &[String],
        now: UnixMs,
    ) -> Result<Seed>;
    async fn add_recovery_point(&self, server: &str, snapshot_id: &str, now: UnixMs) -> Result<RecoveryPoint>;
    async fn recovery_points(&self, server: Option<&str>) -> Result<Vec<RecoveryPoint>>;
    /// Records a clean-up (import container or staging) of a seeded seed in its history.
    /// FAILED_PRECONDITION unless the seed is `seeded`; with `owner`, only the owner's seed.
    async fn record_cleanup(
        &self,
        seed: &str,
        owner: Option<&str>,
        actor: &str,
        event: &str,
        reason: &str,
        now: UnixMs,
    ) -> Result<Seed>;

    // ---- shipping
    /// Takes the tracking number for a job (of two racing operators exactly one wins), before
    /// Azure is told. Checks the job's state and drive count.
    async fn reserve_shipping(
        &self,
        idem: &Idem,
        operator: &SpiffeId,
        rec: &NewShipping,
        now: UnixMs,
    ) -> Result<ShippingRecord>;
    /// Azure took the delivery package: the seed is `shipped`.
    async fn confirm_shipping(&self, seed_id: &str, now: UnixMs) -> Result<ShippingRecord>;
    /// Azure refused it: the reservation is removed, with the reason in the history.
    async fn drop_shipping(&self, seed_id: &str, reason: &str, now: UnixMs) -> Result<()>;
    /// Reservations made before `before` that were never confirmed.
    async fn stale_reservations(&self, before: UnixMs) -> Result<Vec<ShippingRecord>>;
    async fn get_shipping(&self, job_name: &str) -> Result<Option<ShippingRecord>>;

    /// Lets a virtual station (or the source's host) prepare `seed`; recorded in its history.
    async fn allow_virtual_station(
        &self,
        idem: &Idem,
        operator: &SpiffeId,
        seed: &str,
        reason: &str,
        now: UnixMs,
    ) -> Result<Seed>;

    /// Cancels a seed (before its disks are shipped) and its disk-prep work; recorded in its
    /// history with the operator and the reason.
    async fn cancel_seed(
        &self,
        idem: &Idem,
        operator: &SpiffeId,
        seed: &str,
        reason: &str,
        now: UnixMs,
    ) -> Result<Seed>;

    /// An operator's choice of disk kind (`domain::import::kind_change_problem` decides).
    async fn set_disk_kind(
        &self,
        idem: &Idem,
        operator: &SpiffeId,
        seed: &str,
        kind: DiskKind,
        reason: &str,
        now: UnixMs,
    ) -> Result<Seed>;

    /// Puts held work back in the queue; recorded in the seed's history.
    async fn retry_work(&self, idem: &Idem, operator: &SpiffeId, seed: &str, reason: &str, now: UnixMs)
    -> Result<Seed>;
    /// Puts disk-prep work back in the queue (from its holder too), optionally for another
    /// station or site; only before the disks are prepared.
    async fn requeue_work(
        &self,
        idem: &Idem,
        operator: &SpiffeId,
        seed: &str,
        to: &sqlite::Retarget,
        reason: &str,
        now: UnixMs,
    ) -> Result<Seed>;

    // ---- housekeeping
    /// Forgets idempotency records older than `before`; returns how many.
    async fn purge_requests(&self, before: UnixMs) -> Result<u64>;

    // ---- reads for operators and agents
    async fn list_seeds(&self, state: Option<crate::domain::seed::SeedState>, limit: u32) -> Result<Vec<Seed>>;
    async fn list_own_seeds(&self, owner: &str) -> Result<Vec<Seed>>;
    /// One seed by id or job name, with everything known about it.
    async fn seed_detail(&self, seed: &str) -> Result<Option<SeedDetail>>;
    async fn list_drives(&self, seed: Option<&str>) -> Result<Vec<Drive>>;
    async fn list_jobs(&self) -> Result<Vec<ImportJob>>;
    async fn list_agents(&self, role: Option<Role>) -> Result<Vec<Agent>>;
    // ---- the web dashboard's logins
    /// Stores a new enrollment token (its hash), audited with its creator.
    async fn enroll_create(
        &self,
        token_hash: &str,
        token: &crate::domain::enroll::EnrollToken,
        now: UnixMs,
    ) -> Result<()>;
    async fn enroll_list(&self) -> Result<Vec<crate::domain::enroll::EnrollToken>>;
    /// Seals every drive key and passkey again under `new` (they open with `old`), all or nothing.
    async fn reseal_master(
        &self,
        old: std::sync::Arc<crate::keys::MasterKey>,
        new: std::sync::Arc<crate::keys::MasterKey>,
        now: UnixMs,
    ) -> Result<sqlite::Resealed>;
    /// The identity an operator names (a spiffe:// id, or a registered agent's name).
    async fn resolve_agent(&self, agent: &str, role: Option<Role>, trust_domain: &str) -> Result<SpiffeId>;
    /// Revokes an identity (once) and takes back the work it holds; audited.
    async fn revoke(
        &self,
        idem: &Idem,
        operator: &SpiffeId,
        id: &SpiffeId,
        reason: &str,
        now: UnixMs,
    ) -> Result<Revoked>;
    async fn revocations(&self) -> Result<Vec<Revocation>>;
    /// Spends a token for `id` (`domain/enroll.rs` decides), audited; PERMISSION_DENIED says why not.
    async fn enroll_redeem(
        &self,
        token_hash: &str,
        id: &SpiffeId,
        trust_domain: &str,
        not_after: UnixMs,
        now: UnixMs,
    ) -> Result<crate::domain::enroll::EnrollToken>;

    async fn web_create_login(&self, token_hash: &str, identity: &str, now: UnixMs, expires: UnixMs) -> Result<()>;
    /// Uses a login link once and opens a session; PERMISSION_DENIED when unknown, used or expired.
    async fn web_redeem(&self, token_hash: &str, session_hash: &str, now: UnixMs, ttl_ms: i64) -> Result<String>;
    async fn web_session(&self, session_hash: &str, now: UnixMs) -> Result<Option<String>>;
    /// Changes when a seed event, a disk report or a notification is added.
    async fn web_change_token(&self) -> Result<String>;

    // ---- notifications (the outbox)
    /// Gives `channel` a delivery of each new notification of `kinds`.
    async fn notify_enqueue(
        &self,
        channel: &str,
        kinds: Vec<crate::domain::notify::Kind>,
        now: UnixMs,
    ) -> Result<usize>;
    /// `channel`'s deliveries due at `now`, with their attempts so far.
    async fn notify_due(
        &self,
        channel: &str,
        now: UnixMs,
        limit: u32,
    ) -> Result<Vec<(crate::domain::notify::Notification, u32)>>;
    /// One attempt's outcome: delivered, or the error (retried with back-off).
    async fn notify_attempted(
        &self,
        id: i64,
        channel: &str,
        outcome: std::result::Result<(), String>,
        now: UnixMs,
    ) -> Result<()>;
    /// Notifications with their deliveries, newest first.
    async fn notify_list(&self, open: bool, limit: u32) -> Result<Vec<sqlite::NotificationListed>>;
    /// An operator acknowledges a notification (recorded in the audit log).
    async fn notify_ack(
        &self,
        id: i64,
        by: &str,
        reason: &str,
        now: UnixMs,
    ) -> Result<crate::domain::notify::Notification>;

    /// Appends one entry to the audit log (its own transaction).
    async fn audit(&self, r: AuditRecord, now: UnixMs) -> Result<()>;
    /// Audit entries after `after`, oldest first, at most `limit` (only `target`'s when given).
    async fn audit_list(
        &self,
        after: i64,
        limit: u32,
        target: Option<&str>,
    ) -> Result<Vec<seedship_proto::audit::Entry>>;
    async fn audit_head(&self) -> Result<i64>;
    /// The durable facts `/metrics` counts.
    async fn metrics_facts(&self) -> Result<MetricsFacts>;
    /// Events, newest first; `before` (an event id, 0 for none) pages back.
    async fn list_events(&self, seed: Option<&str>, limit: u32, before: i64) -> Result<Vec<HistoryEntry>>;
}
