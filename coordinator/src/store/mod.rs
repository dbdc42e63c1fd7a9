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

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod migrate;
pub mod ops;
pub mod pg;
pub mod sql;
pub mod sqlite;

/// The schema's migrations in order, for every backend: SQLite records how many are applied in
/// `PRAGMA user_version`, PostgreSQL in `schema_migrations` (`pg::dialect` translates them).
pub const MIGRATIONS: &[(&str, &str)] = &[
    ("0001_init", include_str!("../../migrations/0001_init.sql")),
    ("0002_virtual_stations", include_str!("../../migrations/0002_virtual_stations.sql")),
    ("0003_drive_status", include_str!("../../migrations/0003_drive_status.sql")),
    ("0004_import_jobs", include_str!("../../migrations/0004_import_jobs.sql")),
    ("0005_verification", include_str!("../../migrations/0005_verification.sql")),
    ("0006_vaults", include_str!("../../migrations/0006_vaults.sql")),
    ("0007_seed_placement", include_str!("../../migrations/0007_seed_placement.sql")),
    ("0008_fair_queue", include_str!("../../migrations/0008_fair_queue.sql")),
    ("0009_databox", include_str!("../../migrations/0009_databox.sql")),
    ("0010_databox_disk", include_str!("../../migrations/0010_databox_disk.sql")),
    ("0011_disk_progress", include_str!("../../migrations/0011_disk_progress.sql")),
    ("0012_audit", include_str!("../../migrations/0012_audit.sql")),
    ("0013_notifications", include_str!("../../migrations/0013_notifications.sql")),
    ("0014_web_sessions", include_str!("../../migrations/0014_web_sessions.sql")),
    ("0015_rounds", include_str!("../../migrations/0015_rounds.sql")),
    ("0016_enrollment", include_str!("../../migrations/0016_enrollment.sql")),
    ("0017_revocations", include_str!("../../migrations/0017_revocations.sql")),
    ("0018_worker_lease", include_str!("../../migrations/0018_worker_lease.sql")),
    ("0019_audit_pending", include_str!("../../migrations/0019_audit_pending.sql")),
    ("0020_queue_order", include_str!("../../migrations/0020_queue_order.sql")),
    ("0021_lease_renewals_in_place", include_str!("../../migrations/0021_lease_renewals_in_place.sql")),
    ("0022_autovacuum", include_str!("../../migrations/0022_autovacuum.sql")),
];

use async_trait::async_trait;
use seedship_proto::identity::{Role, SpiffeId};

use crate::clock::UnixMs;
use crate::domain::import::{DeadlineKind, JobIntent, JobRecord, JobSnapshot};
use crate::domain::lease::{Fence, Release};
use crate::domain::model::*;
use crate::domain::placement::Placement;
use crate::error::Result;

/// The store the configuration names: SQLite's `database` file, or `[postgres]`.
pub async fn open(cfg: &crate::config::Config) -> Result<std::sync::Arc<dyn Store>> {
    Ok(match &cfg.postgres {
        Some(pc) => std::sync::Arc::new(pg::PgStore::connect(pc).await?),
        None => std::sync::Arc::new(sqlite::SqliteStore::open(&cfg.database, cfg.server.db_busy_timeout)?),
    })
}

/// Lease timing handed to the store's lease operations.
#[derive(Debug, Clone, Copy)]
pub struct LeaseTiming {
    pub now: UnixMs,
    pub ttl_ms: i64,
}

/// Every store operation, written once: the [`Store`] trait is made from this list, and each
/// backend implements the same list (`read`, `write` or `lease` says which of its paths an
/// operation takes; `sqlite/mod.rs`, `impl_sqlite`). A new operation is added here and written
/// once in each backend.
///
/// `lease` is for the calls stations and agents make many at once on their own rows (claim,
/// renew, progress, report drive, complete, heartbeat): SQLite runs them as writes; PostgreSQL
/// at READ COMMITTED, where the operation locks the rows its decision rests on (the work item,
/// then the seed) as it reads them and its request id first (`Db::for_update`, `Db::lock_key`),
/// instead of SERIALIZABLE's predicate locks, which made such calls abort each other.
macro_rules! store_operations {
    ($callback:ident) => {
        $callback! {

        // ---- agents
        /// Registers or re-registers an agent (keeps the first registration time).
        write register_agent(idem: &Idem, who: &SpiffeId, info: &AgentInfo, now: UnixMs) -> Agent;
        /// Records a heartbeat; FAILED_PRECONDITION if the agent never registered.
        lease heartbeat(idem: &Idem, who: &SpiffeId, status: &str, now: UnixMs) -> UnixMs;

        // ---- seeds
        /// Registers a seed and queues its disk-prep work, or returns the identical existing one.
        /// `seed.container` is the source's suggestion (may be empty); the stored container is
        /// chosen by `placement`, unique among seeds, and never a vault's. A server's seeds and
        /// vault are of one repository.
        write register_seed(idem: &Idem, owner: &SpiffeId, seed: &NewSeed, placement: &Placement, policy: DiskKind, now: UnixMs) -> SeedRegistration;

        // ---- disk-prep leases
        /// The queued work due at `now` the station may take, oldest first: the first step of
        /// `claim_work`, in a snapshot of its own.
        read claim_candidates(station: &SpiffeId, now: UnixMs) -> Vec<String>;
        /// Leases the oldest queued item when it is free and the station may take it (or one of
        /// the next few): the first step of `claim_work`; UNAVAILABLE `ops::HEAD_PASSED` when
        /// the claim must scan the queue.
        lease claim_head(idem: &Idem, station: &SpiffeId, t: LeaseTiming) -> Option<Lease>;
        /// Leases the first of `candidates` still queued and free, or `None` when there are no
        /// candidates; UNAVAILABLE `ops::CANDIDATES_TAKEN` when others took them all in between.
        lease claim_chosen(idem: &Idem, station: &SpiffeId, t: LeaseTiming, candidates: &[String]) -> Option<Lease>;
        /// Extends a live lease; a non-empty `waiting` puts the work in the "waiting" phase and
        /// records why in the seed's history (once per wait).
        lease renew_lease(idem: &Idem, station: &SpiffeId, fence: &Fence, waiting: &str, t: LeaseTiming) -> UnixMs;
        lease report_progress(idem: &Idem, station: &SpiffeId, fence: &Fence, delta: &ProgressDelta, t: LeaseTiming) -> (u64, UnixMs);
        /// Replaces the disks' progress of the work `fence` names (its live holder only).
        write record_disks(station: &SpiffeId, fence: &Fence, disks: Vec<DiskProgress>, now: UnixMs) -> ();
        lease report_drive(idem: &Idem, station: &SpiffeId, fence: &Fence, drive: &DriveSpec, key: Option<SealedKey>, now: UnixMs) -> Drive;
        lease complete_work(idem: &Idem, station: &SpiffeId, fence: &Fence, now: UnixMs) -> Seed;
        write release_work(idem: &Idem, station: &SpiffeId, fence: &Fence, release: &Release, now: UnixMs) -> ();
        /// The sealed key of `drive_id`, for the station holding the live lease `fence` that
        /// reported that drive.
        read drive_key(station: &SpiffeId, fence: &Fence, drive_id: &str, now: UnixMs) -> SealedKey;
        /// Returns every lease that expired by `now` to the queue (the sweeper's job).
        write expire_leases(now: UnixMs) -> Vec<ExpiredLease>;

        // ---- the Azure import job (see `domain::import`)
        /// Seeds whose disks are prepared and that have no import job record yet.
        read seeds_awaiting_jobs() -> Vec<Seed>;
        /// A seed's prepared drives with their sealed keys (the job's drive list).
        read drives_for_job(seed_id: &str) -> Vec<DriveForJob>;
        /// Writes the intent to create a job, after Azure's rules (at most 10 drives, each with a
        /// key and in no other active job, a valid name). An existing intent is returned as is.
        write record_job_intent(intent: &JobIntent, now: UnixMs) -> JobRecord;
        /// Intents to create and created jobs whose import has not ended.
        read followed_jobs() -> Vec<JobRecord>;
        /// Azure has the job: the seed is `import_job_created`, the datacenter address kept.
        write job_created(seed_id: &str, snap: &JobSnapshot, address: &[String], adopted: bool, now: UnixMs) -> ();
        /// Data Box Disk: the disks are delivered; their sealed keys (and the passkey) kept, the
        /// disk-prep work queued.
        write disks_delivered(seed_id: &str, disks: &[DeliveredDisk], passkey: Option<&(SealedKey, bool)>, now: UnixMs) -> ();
        /// A seed's sealed Data Box Disk passkey, if Azure gave it.
        read passkey(seed: &str) -> PasskeyRecord;
        /// The sealed passkey of the seed whose work the station holds with the live lease `fence`.
        read lease_passkey(station: &SpiffeId, fence: &Fence, now: UnixMs) -> PasskeyRecord;
        /// Azure refused the job: the seed fails with the reason.
        write job_refused(seed_id: &str, reason: &str, now: UnixMs) -> ();
        /// Azure did not answer: "Azure unavailable since …" on the seed.
        write azure_unavailable(seed_id: &str, error: &str, now: UnixMs) -> ();
        /// A poll's answer, mirrored into the job, its drives and the seed's history.
        write mirror_job(seed_id: &str, snap: &JobSnapshot, now: UnixMs) -> Vec<String>;
        /// The job is gone in Azure.
        write job_gone(seed_id: &str, now: UnixMs) -> ();
        /// Something done to a seed's job (an operator's `mitigate`, the worker's update), in the
        /// seed's history as `event` by `actor`.
        write note_job(seed_id: &str, actor: &str, event: &str, what: &str, now: UnixMs) -> ();
        /// Announces a deadline step once (10, 12, 13; 14 fails the seed). True when new.
        write deadline_step(seed_id: &str, kind: DeadlineKind, step: i64, text: &str, now: UnixMs) -> bool;
        read job(job: &str) -> Option<ImportJob>;

        // ---- import verification and repair
        /// `imported` (or `needs_repair` with every file back) → `verifying`.
        write start_verification(seed_id: &str, now: UnixMs) -> Seed;
        /// A round of lost files is imported: it is `merged`, its parent verified again.
        write merge_round(round_id: &str, now: UnixMs) -> Seed;
        /// Starts a new offline round for the files a seed's import lost (`domain/round.rs`
        /// decides); recorded in both seeds' histories.
        write reship_lost(idem: &Idem, operator: &SpiffeId, seed: &str, reason: &str, now: UnixMs) -> Reshipped;
        /// Stores a verification's findings: passed → `seeding_vault`; otherwise `needs_repair`
        /// with `repair` asked of the source agent.
        write finish_verification(seed_id: &str, files: &[VerifiedFile], repair: &[RepairFile], now: UnixMs) -> Seed;
        /// The caller's seeds waiting for files from it.
        read repair_orders(owner: &str) -> Vec<(Seed, Vec<RepairFile>)>;
        /// What the source agent uploaded, and what it could not (with why).
        write report_repair(idem: &Idem, owner: &SpiffeId, seed_id: &str, uploaded: &[String], lost: &[(String, String)], now: UnixMs) -> Seed;
        read verification(seed: &str) -> Option<VerificationReport>;

        // ---- vaults
        read vault_of(server: &str) -> Option<Vault>;
        /// Fails a seed that cannot go on (not one already ended), with who and why.
        write fail_seed(seed_id: &str, actor: &str, reason: &str, now: UnixMs) -> Seed;
        /// The seed's data is in the vault: recorded, with its snapshots as recovery points.
        write vault_seeded(seed_id: &str, account: &str, container: &str, snapshots: &[String], now: UnixMs) -> Seed;
        write add_recovery_point(server: &str, snapshot_id: &str, now: UnixMs) -> RecoveryPoint;
        read recovery_points(server: Option<&str>) -> Vec<RecoveryPoint>;
        /// Records a clean-up (import container or staging) of a seeded seed in its history.
        /// FAILED_PRECONDITION unless the seed is `seeded`; with `owner`, only the owner's seed.
        write record_cleanup(seed: &str, owner: Option<&str>, actor: &str, event: &str, reason: &str, now: UnixMs) -> Seed;

        // ---- shipping
        /// Takes the tracking number for a job (of two racing operators exactly one wins), before
        /// Azure is told. Checks the job's state and drive count.
        write reserve_shipping(idem: &Idem, operator: &SpiffeId, rec: &NewShipping, now: UnixMs) -> ShippingRecord;
        /// Azure took the delivery package: the seed is `shipped`.
        write confirm_shipping(seed_id: &str, now: UnixMs) -> ShippingRecord;
        /// Azure refused it: the reservation is removed, with the reason in the history.
        write drop_shipping(seed_id: &str, reason: &str, now: UnixMs) -> ();
        /// Reservations made before `before` that were never confirmed.
        read stale_reservations(before: UnixMs) -> Vec<ShippingRecord>;
        read get_shipping(job_name: &str) -> Option<ShippingRecord>;

        /// Lets a virtual station (or the source's host) prepare `seed`; recorded in its history.
        write allow_virtual_station(idem: &Idem, operator: &SpiffeId, seed: &str, reason: &str, now: UnixMs) -> Seed;

        /// Cancels a seed (before its disks are shipped) and its disk-prep work; recorded in its
        /// history with the operator and the reason.
        write cancel_seed(idem: &Idem, operator: &SpiffeId, seed: &str, reason: &str, now: UnixMs) -> Seed;

        /// An operator's choice of disk kind (`domain::import::kind_change_problem` decides).
        write set_disk_kind(idem: &Idem, operator: &SpiffeId, seed: &str, kind: DiskKind, reason: &str, now: UnixMs) -> Seed;

        /// Puts held work back in the queue; recorded in the seed's history.
        write retry_work(idem: &Idem, operator: &SpiffeId, seed: &str, reason: &str, now: UnixMs) -> Seed;
        /// Puts disk-prep work back in the queue (from its holder too), optionally for another
        /// station or site; only before the disks are prepared.
        write requeue_work(idem: &Idem, operator: &SpiffeId, seed: &str, to: &crate::store::ops::Retarget, reason: &str, now: UnixMs) -> Seed;

        // ---- housekeeping
        /// Forgets idempotency records older than `before`; returns how many.
        write purge_requests(before: UnixMs) -> u64;

        // ---- reads for operators and agents
        read list_seeds(state: Option<crate::domain::seed::SeedState>, limit: u32) -> Vec<Seed>;
        read list_own_seeds(owner: &str) -> Vec<Seed>;
        /// One seed by id or job name, with everything known about it.
        read seed_detail(seed: &str) -> Option<SeedDetail>;
        read list_drives(seed: Option<&str>) -> Vec<Drive>;
        read list_jobs() -> Vec<ImportJob>;
        read list_agents(role: Option<Role>) -> Vec<Agent>;
        // ---- the web dashboard's logins
        /// Stores a new enrollment token (its hash), audited with its creator.
        write enroll_create(token_hash: &str, token: &crate::domain::enroll::EnrollToken, now: UnixMs) -> ();
        read enroll_list() -> Vec<crate::domain::enroll::EnrollToken>;
        /// Seals every drive key and passkey again under `new` (they open with `old`), all or nothing.
        write reseal_master(old: std::sync::Arc<crate::keys::MasterKey>, new: std::sync::Arc<crate::keys::MasterKey>, now: UnixMs) -> crate::store::ops::Resealed;
        /// The identity an operator names (a spiffe:// id, or a registered agent's name).
        read resolve_agent(agent: &str, role: Option<Role>, trust_domain: &str) -> SpiffeId;
        /// Revokes an identity (once) and takes back the work it holds; audited.
        write revoke(idem: &Idem, operator: &SpiffeId, id: &SpiffeId, reason: &str, now: UnixMs) -> Revoked;
        read revocations() -> Vec<Revocation>;
        /// Spends a token for `id` (`domain/enroll.rs` decides), audited; PERMISSION_DENIED says why not.
        write enroll_redeem(token_hash: &str, id: &SpiffeId, trust_domain: &str, not_after: UnixMs, now: UnixMs) -> crate::domain::enroll::EnrollToken;

        write web_create_login(token_hash: &str, identity: &str, now: UnixMs, expires: UnixMs) -> ();
        /// Uses a login link once and opens a session; PERMISSION_DENIED when unknown, used or expired.
        write web_redeem(token_hash: &str, session_hash: &str, now: UnixMs, ttl_ms: i64) -> String;
        read web_session(session_hash: &str, now: UnixMs) -> Option<String>;
        /// Changes when a seed event, a disk report or a notification is added.
        read web_change_token() -> String;

        // ---- notifications (the outbox)
        /// Gives `channel` a delivery of each new notification of `kinds`.
        write notify_enqueue(channel: &str, kinds: Vec<crate::domain::notify::Kind>, now: UnixMs) -> usize;
        /// `channel`'s deliveries due at `now`, with their attempts so far.
        write notify_due(channel: &str, now: UnixMs, limit: u32) -> Vec<(crate::domain::notify::Notification, u32)>;
        /// One attempt's outcome: delivered, or the error (retried with back-off).
        write notify_attempted(id: i64, channel: &str, outcome: std::result::Result<(), String>, now: UnixMs) -> ();
        /// Notifications with their deliveries, newest first.
        read notify_list(open: bool, limit: u32) -> Vec<crate::store::ops::NotificationListed>;
        /// An operator acknowledges a notification (recorded in the audit log).
        write notify_ack(id: i64, by: &str, reason: &str, now: UnixMs) -> crate::domain::notify::Notification;

        // ---- the background workers' lease (one coordinator runs them)
        /// Takes or renews the lease `name` for `holder` until `now + ttl_ms`; the generation
        /// goes up when the holder changes. `None` while another coordinator holds it.
        write take_worker_lease(name: &str, holder: &str, now: UnixMs, ttl_ms: i64) -> Option<crate::domain::lease::WorkerFence>;
        /// FAILED_PRECONDITION unless `fence` is still its holder's and unexpired at `now`.
        read check_worker_fence(fence: &crate::domain::lease::WorkerFence, now: UnixMs) -> ();

        /// Records one entry for the audit log (its own transaction; it joins the chain at the
        /// next `chain_audit` or read of the log).
        write audit(r: AuditRecord, now: UnixMs) -> ();
        /// Audit entries after `after` (a sequence number), oldest first, at most `limit` (only
        /// `target`'s when given); every entry recorded before joins the chain first.
        write audit_list(after: i64, limit: u32, target: Option<&str>) -> Vec<seedship_proto::audit::Entry>;
        /// The newest audit entry's sequence number, every recorded entry chained first.
        write audit_head() -> i64;
        /// Links up to `ops::AUDIT_CHAIN_BATCH` of the audit entries operations recorded into
        /// the chain, oldest first (the sweeper's, every pass): how many joined.
        write chain_audit() -> u64;
        /// The durable facts `/metrics` counts.
        read metrics_facts() -> MetricsFacts;
        /// Each station's write rate now (bytes/s), for the dashboard's chart.
        read station_rates() -> Vec<(String, u64)>;
        /// Events, newest first; `before` (an event id, 0 for none) pages back.
        read list_events(seed: Option<&str>, limit: u32, before: i64) -> Vec<HistoryEntry>;
        }
    };
}
pub(crate) use store_operations;

/// How many times `Store::claim_work` reads the queue again when other claims took every
/// candidate it chose.
pub const CLAIM_ATTEMPTS: u32 = 20;

/// Makes the [`Store`] trait from [`store_operations`].
macro_rules! store_trait {
    ($( $(#[$m:meta])* $kind:ident $name:ident ( $($a:ident : $t:ty),* $(,)? ) -> $ret:ty ; )*) => {
        /// The coordinator's durable state, as domain operations (see the module's documentation).
        #[async_trait]
        pub trait Store: Send + Sync + 'static {
            $( $(#[$m])* async fn $name(&self, $($a: $t),*) -> Result<$ret>; )*

            /// Leases the oldest queued item the station may take, or `None`. Most claims take
            /// the head of the queue in one write (`claim_head`); when the head has nothing for
            /// the station, the candidates are read in a snapshot, then the first still free
            /// taken in a write that reads only it, so claims at once (on several coordinators)
            /// do not conflict over the queue. Read again when other claims took every
            /// candidate in between, up to [`CLAIM_ATTEMPTS`] times, then UNAVAILABLE.
            async fn claim_work(&self, idem: &Idem, station: &SpiffeId, t: LeaseTiming) -> Result<Option<Lease>> {
                match self.claim_head(idem, station, t).await {
                    Err(crate::error::Error::Unavailable(m)) if m == crate::store::ops::HEAD_PASSED => {}
                    other => return other,
                }
                let mut attempt = 0;
                loop {
                    attempt += 1;
                    let candidates = self.claim_candidates(station, t.now).await?;
                    match self.claim_chosen(idem, station, t, &candidates).await {
                        Err(crate::error::Error::Unavailable(m)) if m == crate::store::ops::CANDIDATES_TAKEN && attempt < CLAIM_ATTEMPTS => {
                            tokio::time::sleep(std::time::Duration::from_millis(u64::from(attempt))).await;
                        }
                        other => return other,
                    }
                }
            }
        }
    };
}

store_operations!(store_trait);
