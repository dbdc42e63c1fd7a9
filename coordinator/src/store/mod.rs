//! Durable state behind a narrow trait of domain operations.
//!
//! # What we store and why
//!
//! | table | what | why |
//! |---|---|---|
//! | `agents` | every agent's SPIFFE id, site, host, version, virtualization, registration and last heartbeat | the fleet view; site targeting; the physical-station rule for VM sources |
//! | `seeds` | each seed's Azure coordinates, staging location, manifest root, size, owner, lifecycle state, and whether a virtual station is allowed | the unit of work the whole system moves forward |
//! | `seed_events` | every transition with time, actor and reason (append-only) | operators read a seed's history; audits |
//! | `work_items` | each seed's disk-prep item, its lease holder, expiry, fencing generation and progress | leases must survive a coordinator restart, and the generation must never go back |
//! | `drives` | drives reported per seed, with the recovery password sealed under the master key | the Azure job's drive list; keys are needed once, at job creation |
//! | `shipping` | carrier, tracking number, drive count and ship date per job | Azure needs the tracking number within 14 days; numbers are unique across jobs |
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
use crate::domain::lease::Fence;
use crate::domain::model::*;
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
    async fn register_seed(
        &self,
        idem: &Idem,
        owner: &SpiffeId,
        seed: &NewSeed,
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
        reason: &str,
        staging_invalid: bool,
        now: UnixMs,
    ) -> Result<()>;
    /// The sealed key of `drive_id`, for the station holding the live lease `fence` that
    /// reported that drive.
    async fn drive_key(&self, station: &SpiffeId, fence: &Fence, drive_id: &str, now: UnixMs) -> Result<SealedKey>;
    /// Returns every lease that expired by `now` to the queue (the sweeper's job).
    async fn expire_leases(&self, now: UnixMs) -> Result<Vec<ExpiredLease>>;

    // ---- shipping
    async fn record_shipping(
        &self,
        idem: &Idem,
        operator: &SpiffeId,
        rec: &NewShipping,
        now: UnixMs,
    ) -> Result<ShippingRecord>;
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
    async fn list_events(&self, seed: Option<&str>, limit: u32) -> Result<Vec<HistoryEntry>>;
}
