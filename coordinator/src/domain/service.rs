//! The coordinator service: the one place that turns a validated request from an
//! authenticated caller into store operations, with the clock, lease timing and keys.

use std::sync::Arc;
use std::time::Duration;

use seedship_proto::identity::{Role, SpiffeId};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::azure::AzureSide;
use crate::clock::{Clock, UnixMs};
use crate::domain::lease::Fence;
use crate::domain::model::*;
use crate::domain::placement::Placement;
use crate::domain::seed::SeedState;
use crate::error::{Error, Result};
use crate::keys::MasterKey;
use crate::store::{LeaseTiming, Store};

/// Timing the service hands out.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub lease_ttl: Duration,
    pub heartbeat_interval: Duration,
    /// How released work waits before it can be claimed again, and when it is held.
    pub release_backoff: crate::domain::lease::Backoff,
}

pub struct Coordinator {
    pub(crate) store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    settings: Settings,
    pub(crate) master_key: Option<Arc<MasterKey>>,
    /// The Azure side, when `[azure]` is configured.
    azure: Option<Arc<AzureSide>>,
    /// Where seeds' import containers go.
    placement: Placement,
}

/// A mutating request as the service receives it: the caller's request id and the payload.
#[derive(Debug, Clone)]
pub struct Cmd<T> {
    pub request_id: String,
    pub body: T,
}

fn fingerprint<T: Serialize>(method: &str, body: &T) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(method.as_bytes());
    h.update([0]);
    h.update(serde_json::to_vec(body).unwrap_or_default());
    h.finalize().into()
}

impl Coordinator {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        settings: Settings,
        master_key: Option<Arc<MasterKey>>,
    ) -> Self {
        Coordinator { store, clock, settings, master_key, azure: None, placement: Placement::default() }
    }

    /// With the configured import-container rules (default: `import-{seed}`).
    pub fn with_placement(mut self, placement: Placement) -> Self {
        self.placement = placement;
        self
    }

    /// With the Azure side: shipping is sent to Azure, and addresses come from it.
    pub fn with_azure(mut self, azure: Arc<AzureSide>) -> Self {
        self.azure = Some(azure);
        self
    }

    pub fn settings(&self) -> Settings {
        self.settings
    }

    pub fn now(&self) -> UnixMs {
        self.clock.now_ms()
    }

    fn idem<T: Serialize>(&self, caller: &SpiffeId, method: &'static str, cmd: &Cmd<T>) -> Idem {
        Idem {
            caller: caller.uri(),
            request_id: cmd.request_id.clone(),
            method,
            fingerprint: fingerprint(method, &cmd.body),
        }
    }

    /// Logs a refusal of `who` (role checks are logged in `auth`; ownership checks here).
    fn audit<T>(who: &SpiffeId, rpc: &str, r: Result<T>) -> Result<T> {
        if let Err(Error::PermissionDenied(why)) = &r {
            tracing::warn!(caller = %who, rpc, reason = %why, "permission denied: not the caller's to act on");
        }
        r
    }

    fn timing(&self) -> LeaseTiming {
        LeaseTiming { now: self.now(), ttl_ms: self.settings.lease_ttl.as_millis() as i64 }
    }

    pub async fn register_agent(&self, who: &SpiffeId, cmd: Cmd<AgentInfo>) -> Result<Agent> {
        let idem = self.idem(who, "RegisterAgent", &cmd);
        let agent = self.store.register_agent(&idem, who, &cmd.body, self.now()).await?;
        tracing::info!(agent = %who, site = ?cmd.body.site, "agent registered");
        Ok(agent)
    }

    pub async fn heartbeat(&self, who: &SpiffeId, cmd: Cmd<String>) -> Result<UnixMs> {
        let idem = self.idem(who, "Heartbeat", &cmd);
        self.store.heartbeat(&idem, who, &cmd.body, self.now()).await
    }

    pub async fn register_seed(&self, owner: &SpiffeId, cmd: Cmd<NewSeed>) -> Result<SeedRegistration> {
        let idem = self.idem(owner, "RegisterSeed", &cmd);
        let reg = Self::audit(
            owner,
            "RegisterSeed",
            self.store.register_seed(&idem, owner, &cmd.body, &self.placement, self.now()).await,
        )?;
        if reg.created {
            tracing::info!(seed = %reg.seed.seed_id, job = %reg.seed.spec.job_name, owner = %owner, container = %reg.seed.spec.container, "seed registered and queued for disk preparation");
        }
        self.warm_address(&reg.seed.spec.subscription_id, &reg.seed.spec.location);
        Ok(reg)
    }

    pub async fn own_seeds(&self, owner: &SpiffeId) -> Result<Vec<Seed>> {
        self.store.list_own_seeds(&owner.name).await
    }

    pub async fn claim(&self, station: &SpiffeId, cmd: Cmd<()>) -> Result<Option<Lease>> {
        let idem = self.idem(station, "ClaimWork", &cmd);
        let lease = self.store.claim_work(&idem, station, self.timing()).await?;
        if let Some(l) = &lease {
            tracing::info!(station = %station, work = %l.work.work_id, job = %l.seed.spec.job_name, generation = l.work.generation, "lease granted");
            self.warm_address(&l.seed.spec.subscription_id, &l.seed.spec.location);
        }
        Ok(lease)
    }

    /// Renews a lease; `waiting` (non-empty) says what the station waits for.
    pub async fn renew(&self, station: &SpiffeId, cmd: Cmd<(Fence, String)>) -> Result<UnixMs> {
        let idem = self.idem(station, "RenewLease", &cmd);
        let (fence, waiting) = &cmd.body;
        Self::audit(station, "RenewLease", self.store.renew_lease(&idem, station, fence, waiting, self.timing()).await)
    }

    pub async fn progress(&self, station: &SpiffeId, cmd: Cmd<(Fence, ProgressDelta)>) -> Result<(u64, UnixMs)> {
        let idem = self.idem(station, "ReportProgress", &cmd);
        let (fence, delta) = &cmd.body;
        Self::audit(
            station,
            "ReportProgress",
            self.store.report_progress(&idem, station, fence, delta, self.timing()).await,
        )
    }

    pub async fn report_drive(
        &self,
        station: &SpiffeId,
        request_id: String,
        fence: Fence,
        drive: DriveReport,
    ) -> Result<Drive> {
        let sealed = match (&drive.recovery_password, &self.master_key) {
            (None, _) => None,
            (Some(pw), Some(mk)) => Some((mk.seal(&fence.work_id, &drive.spec.drive_id, pw)?, mk.fingerprint(&pw.0))),
            (Some(_), None) => {
                return Err(Error::FailedPrecondition(
                    "the coordinator has no master_key_file configured, so it cannot store drive keys; configure one and retry".into(),
                ));
            }
        };
        // The fingerprint covers the key only through a keyed hash, never the key itself.
        let cmd = Cmd { request_id, body: (&fence, &drive.spec, sealed.as_ref().map(|(_, fp)| fp.clone())) };
        let idem = self.idem(station, "ReportDrive", &cmd);
        let out = Self::audit(
            station,
            "ReportDrive",
            self.store.report_drive(&idem, station, &fence, &drive.spec, sealed.map(|(k, _)| k), self.now()).await,
        )?;
        tracing::info!(station = %station, work = %fence.work_id, drive = %drive.spec.drive_id, "drive reported");
        Ok(out)
    }

    /// A drive's recovery password, back to the station that reported it (see the RPC).
    pub async fn drive_key(&self, station: &SpiffeId, fence: &Fence, drive_id: &str) -> Result<RecoveryPassword> {
        let mk = self.master_key.as_ref().ok_or_else(|| {
            Error::FailedPrecondition(
                "the coordinator has no master_key_file configured, so it holds no drive keys".into(),
            )
        })?;
        let sealed =
            Self::audit(station, "GetDriveKey", self.store.drive_key(station, fence, drive_id, self.now()).await)?;
        let key = mk.open(&fence.work_id, drive_id, &sealed)?;
        tracing::info!(station = %station, work = %fence.work_id, drive = %drive_id, "drive key released to its lease holder");
        Ok(key)
    }

    pub async fn complete(&self, station: &SpiffeId, cmd: Cmd<Fence>) -> Result<Seed> {
        let idem = self.idem(station, "CompleteWork", &cmd);
        let seed = Self::audit(
            station,
            "CompleteWork",
            self.store.complete_work(&idem, station, &cmd.body, self.now()).await,
        )?;
        tracing::info!(station = %station, job = %seed.spec.job_name, "disk preparation complete");
        Ok(seed)
    }

    pub async fn release(&self, station: &SpiffeId, cmd: Cmd<(Fence, String, bool)>) -> Result<()> {
        let idem = self.idem(station, "ReleaseWork", &cmd);
        let (fence, reason, invalid) = &cmd.body;
        let release = crate::domain::lease::Release {
            reason: reason.clone(),
            staging_invalid: *invalid,
            backoff: self.settings.release_backoff,
        };
        Self::audit(
            station,
            "ReleaseWork",
            self.store.release_work(&idem, station, fence, &release, self.now()).await,
        )?;
        if *invalid {
            tracing::warn!(station = %station, work = %fence.work_id, %reason, "staging set refused; seed failed");
        } else {
            tracing::info!(station = %station, work = %fence.work_id, %reason, "lease released");
        }
        Ok(())
    }

    /// Returns expired leases to the queue; the sweeper calls this.
    pub async fn expire_leases(&self) -> Result<Vec<ExpiredLease>> {
        let expired = self.store.expire_leases(self.now()).await?;
        for e in &expired {
            tracing::warn!(work = %e.work_id, seed = %e.seed_id, holder = %e.holder, generation = e.generation, "lease expired; work returned to the queue");
        }
        Ok(expired)
    }

    pub async fn purge_requests(&self, keep: Duration) -> Result<u64> {
        self.store.purge_requests(self.now() - keep.as_millis() as i64).await
    }

    /// Records shipping: the tracking number is reserved (of two operators racing for one
    /// number exactly one wins), Azure is told (PATCH to `Shipping` with the delivery package),
    /// and the record is confirmed. Azure refusing it removes the reservation; Azure not
    /// answering keeps it, and the worker sends it when Azure answers (UNAVAILABLE says so).
    pub async fn record_shipping(&self, operator: &SpiffeId, cmd: Cmd<NewShipping>) -> Result<ShippingRecord> {
        let azure = self.azure.as_ref().ok_or_else(|| {
            Error::FailedPrecondition(
                "the coordinator has no [azure] settings, so it has no import jobs to ship; configure [azure]".into(),
            )
        })?;
        let idem = self.idem(operator, "RecordShipping", &cmd);
        let rec = self.store.reserve_shipping(&idem, operator, &cmd.body, self.now()).await?;
        if rec.confirmed_ms.is_some() {
            return Ok(rec);
        }
        let rec = crate::jobs::push_shipping(self, &azure.quick, &rec).await?;
        tracing::info!(operator = %operator, job = %rec.spec.job_name, carrier = %rec.spec.carrier, tracking = %rec.spec.tracking_number, "shipping recorded and sent to Azure");
        Ok(rec)
    }

    /// The datacenter address for `location`, as lines, from what the Azure worker has read:
    /// this never waits on Azure. `Err` with a reason to show instead; when the address is not
    /// read yet, reading it starts in the background.
    pub fn shipping_address(&self, subscription: &str, location: &str) -> std::result::Result<Vec<String>, String> {
        let azure = self.azure.as_ref().ok_or("the coordinator has no [azure] settings")?;
        if let Some(lines) = azure.cached_address(location) {
            return Ok(lines);
        }
        self.warm_address(subscription, location);
        Err("it has not been read from Azure yet".into())
    }

    /// Starts reading the datacenter address of `location` in the background, unless it is
    /// known: a seed's station will want it when its disks are done.
    fn warm_address(&self, subscription: &str, location: &str) {
        let Some(azure) = &self.azure else { return };
        if azure.cached_address(location).is_some() {
            return;
        }
        let (side, sub, loc) = (azure.clone(), subscription.to_string(), location.to_string());
        tokio::spawn(async move {
            if let Err(e) = side.refresh_address(&sub, &loc).await {
                tracing::warn!(location = %loc, error = %e, "the datacenter address could not be read");
            }
        });
    }

    /// The repairs asked of `owner`, each with a SAS token for its import container (create
    /// and write only, for `[azure.storage] sas_ttl`).
    pub async fn repair_orders(&self, owner: &SpiffeId) -> Result<Vec<RepairOrder>> {
        let orders = self.store.repair_orders(&owner.name).await?;
        if orders.is_empty() {
            return Ok(Vec::new());
        }
        let azure = self.azure.as_ref().ok_or_else(|| {
            Error::FailedPrecondition("the coordinator has no [azure] settings: no storage to repair into".into())
        })?;
        // SAS tokens are checked by the storage service against real time, not ours.
        let wall = crate::clock::SystemClock.now_ms();
        let expires_ms = wall + azure.cfg.storage.sas_ttl.as_millis() as i64;
        let mut out = Vec::with_capacity(orders.len());
        for (seed, files) in orders {
            let sas = azure
                .accounts
                .container_sas(&seed.spec.storage_account, &seed.spec.container, "cw", expires_ms / 1000)
                .map_err(|e| {
                    Error::FailedPrecondition(format!("cannot give a SAS token for job {}: {e}", seed.spec.job_name))
                })?;
            tracing::info!(owner = %owner, job = %seed.spec.job_name, files = files.len(), "repair order handed out (container-scoped SAS, create+write)");
            out.push(RepairOrder {
                endpoint: azure.accounts.endpoint(&seed.spec.storage_account),
                seed,
                files,
                sas,
                expires_ms,
            });
        }
        Ok(out)
    }

    pub async fn report_repair(&self, owner: &SpiffeId, cmd: Cmd<RepairReport>) -> Result<Seed> {
        let idem = self.idem(owner, "ReportRepair", &cmd);
        let RepairReport { seed_id, uploaded, lost } = &cmd.body;
        let s = Self::audit(
            owner,
            "ReportRepair",
            self.store.report_repair(&idem, owner, seed_id, uploaded, lost, self.now()).await,
        )?;
        tracing::info!(owner = %owner, job = %s.spec.job_name, uploaded = uploaded.len(), lost = lost.len(), state = %s.state, "repair reported");
        Ok(s)
    }

    pub async fn verification(&self, seed: &str) -> Result<VerificationReport> {
        self.store
            .verification(seed)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no seed with id or job name {seed:?}")))
    }

    /// The caller's vault with a SAS token for it (read+list, or also create+write).
    pub async fn vault_access(&self, owner: &SpiffeId, write: bool) -> Result<VaultAccess> {
        let v = self.store.vault_of(&owner.name).await?.ok_or_else(|| {
            Error::NotFound(format!("server {} has no vault yet: its seed is not in the vault", owner.name))
        })?;
        let azure = self
            .azure
            .as_ref()
            .ok_or_else(|| Error::FailedPrecondition("the coordinator has no [azure] settings".into()))?;
        let expires_ms = crate::clock::SystemClock.now_ms() + azure.cfg.storage.sas_ttl.as_millis() as i64;
        let perms = if write { "racwl" } else { "rl" };
        // A group's members share its container: the SAS is for the container, the folder is
        // the member's own (see docs/security.md).
        let place = seedship_azure::blob::VaultPlace::parse(&v.container);
        let sas = azure
            .accounts
            .container_sas(&v.account, &place.container, perms, expires_ms / 1000)
            .map_err(|e| Error::FailedPrecondition(format!("cannot give a SAS token for the vault: {e}")))?;
        let points = self.store.recovery_points(Some(&owner.name)).await?;
        tracing::info!(server = %owner, vault = %v.container, write, "vault access handed out (container-scoped SAS)");
        Ok(VaultAccess { endpoint: azure.accounts.endpoint(&v.account), vault: v, sas, expires_ms, points })
    }

    /// Deletes the index files of `owner`'s vault that `keep` supersedes (each index holds every
    /// blob of the ones before it), once every file of `keep` is in the vault. Agents get no
    /// delete permission; this is the coordinator's. A failure is logged and left for the next
    /// incremental (the old files only cost space).
    pub async fn prune_vault_index(&self, owner: &SpiffeId, keep: &[String]) {
        let r: std::result::Result<usize, String> = async {
            let v = self.store.vault_of(&owner.name).await.map_err(|e| e.to_string())?.ok_or("no vault")?;
            let azure = self.azure.as_ref().ok_or("no [azure] settings")?;
            let store = azure.accounts.store(&v.account).map_err(|e| e.to_string())?;
            let place = seedship_azure::blob::VaultPlace::parse(&v.container);
            let dir = place.blob("index/");
            let listed = store.list(&place.container).await.map_err(|e| e.to_string())?;
            let present: Vec<&str> = listed.iter().filter_map(|b| b.name.strip_prefix(&dir)).collect();
            if let Some(missing) = keep.iter().find(|k| !present.contains(&k.as_str())) {
                return Err(format!("index file {missing} is not in the vault; nothing deleted"));
            }
            let mut deleted = 0;
            for old in present.iter().filter(|p| !keep.iter().any(|k| k == *p)) {
                store.delete(&place.container, &format!("{dir}{old}")).await.map_err(|e| e.to_string())?;
                deleted += 1;
            }
            Ok(deleted)
        }
        .await;
        match r {
            Ok(0) => {}
            Ok(n) => tracing::info!(server = %owner, deleted = n, "superseded index files deleted from the vault"),
            Err(e) => {
                tracing::warn!(server = %owner, error = %e, "the vault's old index files were not deleted; the next incremental retries")
            }
        }
    }

    /// Records an incremental the agent wrote into its own vault, once its snapshot is there
    /// and every pack it added (`packs`: name, size, MD5 hex) is there whole.
    pub async fn report_recovery_point(
        &self,
        owner: &SpiffeId,
        cmd: Cmd<String>,
        packs: &[(String, u64, String)],
    ) -> Result<RecoveryPoint> {
        let snapshot = &cmd.body;
        let v = self
            .store
            .vault_of(&owner.name)
            .await?
            .ok_or_else(|| Error::NotFound(format!("server {} has no vault yet", owner.name)))?;
        let azure = self
            .azure
            .as_ref()
            .ok_or_else(|| Error::FailedPrecondition("the coordinator has no [azure] settings".into()))?;
        let store = azure.accounts.store(&v.account).map_err(|e| Error::Unavailable(e.to_string()))?;
        let place = seedship_azure::blob::VaultPlace::parse(&v.container);
        let name = place.blob(&format!("snapshots/{snapshot}"));
        match store.properties(&place.container, &name).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                return Err(Error::NotFound(format!(
                    "snapshot {snapshot} is not in vault {}; upload it first",
                    v.container
                )));
            }
            Err(e) => return Err(Error::Unavailable(format!("the vault cannot be read: {e}; retry"))),
        }
        for (pack, size, md5) in packs {
            let found = store
                .properties(&place.container, &place.blob(pack))
                .await
                .map_err(|e| Error::Unavailable(format!("the vault cannot be read: {e}; retry")))?;
            let whole = found
                .as_ref()
                .is_some_and(|b| b.size == *size && b.md5.as_deref().map(hex::encode).as_deref() == Some(md5.as_str()));
            if !whole {
                return Err(Error::NotFound(format!(
                    "pack {pack} of snapshot {snapshot} is not in vault {} whole ({}); upload it again, then report",
                    v.container,
                    match found {
                        None => "missing".to_string(),
                        Some(b) => format!("{} bytes, the report says {size}", b.size),
                    }
                )));
            }
        }
        let p = self.store.add_recovery_point(&owner.name, snapshot, self.now()).await?;
        tracing::info!(server = %owner, vault = %v.container, snapshot = %&snapshot[..12], "recovery point recorded (incremental)");
        Ok(p)
    }

    /// Deletes a seeded seed's files from its import container: exactly the files its verified
    /// seed manifest names (and the manifest), in the seed's own container, nothing else.
    /// Recorded with who did it.
    pub async fn cleanup_import(&self, actor: &str, seed: &str) -> Result<(Seed, u32, u64)> {
        let detail = self.store.seed_detail(seed).await?.ok_or_else(|| Error::NotFound(format!("no seed {seed:?}")))?;
        let s = detail.seed;
        if s.state != SeedState::Seeded {
            return Err(Error::FailedPrecondition(format!(
                "seed {} is {}; the import container is cleaned up only once the vault holds the seed verified (seeded)",
                s.spec.job_name, s.state
            )));
        }
        let azure = self
            .azure
            .as_ref()
            .ok_or_else(|| Error::FailedPrecondition("the coordinator has no [azure] settings".into()))?;
        // The names come from the verification, which read them from the manifest that hashes
        // to the root the source registered; none can be a blob the seed did not have.
        let report = self.store.verification(&s.seed_id).await?.ok_or_else(|| {
            Error::FailedPrecondition(format!(
                "seed {} has no verification on record; nothing deleted",
                s.spec.job_name
            ))
        })?;
        let mut names: Vec<String> = report.files.iter().map(|f| f.path.clone()).collect();
        if let Some(bad) = names.iter().find(|p| seedship_repo::manifest::check_path(p).is_err()) {
            return Err(Error::FailedPrecondition(format!(
                "the verified manifest of seed {} names {bad:?}, which is no staging file; nothing deleted",
                s.spec.job_name
            )));
        }
        names.push(crate::verifier::MANIFEST_BLOB.to_string());
        let store = azure.accounts.store(&s.spec.storage_account).map_err(|e| Error::Unavailable(e.to_string()))?;
        let (mut n, mut bytes) = (0u32, 0u64);
        for name in &names {
            let size = match store.properties(&s.spec.container, name).await {
                Ok(Some(b)) => b.size,
                Ok(None) => continue,
                Err(e) => return Err(Error::Unavailable(format!("{name}: {e}; retry"))),
            };
            store
                .delete(&s.spec.container, name)
                .await
                .map_err(|e| Error::Unavailable(format!("{name}: {e}; retry")))?;
            n += 1;
            bytes += size;
        }
        let reason = format!(
            "import container {}/{} cleaned up: {n} blob(s), {bytes} bytes deleted (the vault holds the seed)",
            s.spec.storage_account, s.spec.container
        );
        let s = self.store.record_cleanup(&s.seed_id, None, actor, "import_cleaned_up", &reason, self.now()).await?;
        tracing::info!(actor, job = %s.spec.job_name, blobs = n, bytes, "import container cleaned up");
        Ok((s, n, bytes))
    }

    pub async fn staging_deleted(&self, owner: &SpiffeId, seed_id: &str, bytes: u64) -> Result<Seed> {
        let reason = format!("staging location deleted by its source agent ({bytes} bytes); the vault holds the seed");
        let s = Self::audit(
            owner,
            "ReportStagingDeleted",
            self.store
                .record_cleanup(seed_id, Some(&owner.name), &owner.uri(), "staging_deleted", &reason, self.now())
                .await,
        )?;
        tracing::info!(owner = %owner, job = %s.spec.job_name, bytes, "staging location deleted");
        Ok(s)
    }

    pub async fn recovery_points(&self, server: Option<&str>) -> Result<Vec<RecoveryPoint>> {
        self.store.recovery_points(server).await
    }

    pub async fn job(&self, job: &str) -> Result<ImportJob> {
        self.store
            .job(job)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no import job for {job:?} (by job name or seed id)")))
    }

    pub async fn allow_virtual_station(&self, operator: &SpiffeId, cmd: Cmd<(String, String)>) -> Result<Seed> {
        let idem = self.idem(operator, "AllowVirtualStation", &cmd);
        let (seed, reason) = &cmd.body;
        let s = self.store.allow_virtual_station(&idem, operator, seed, reason, self.now()).await?;
        tracing::info!(operator = %operator, job = %s.spec.job_name, %reason, "virtual copy station allowed for this seed");
        Ok(s)
    }

    /// Puts held disk-prep work back in the queue (see the RPC).
    pub async fn retry_work(&self, operator: &SpiffeId, cmd: Cmd<(String, String)>) -> Result<Seed> {
        let idem = self.idem(operator, "RetryWork", &cmd);
        let (seed, reason) = &cmd.body;
        let s = self.store.retry_work(&idem, operator, seed, reason, self.now()).await?;
        tracing::info!(operator = %operator, job = %s.spec.job_name, %reason, "held disk-prep work put back in the queue");
        Ok(s)
    }

    /// Answers Azure's wait for a customer action on `job` (the whole job, or one disk), then
    /// reads the job back so the operator sees the result.
    pub async fn mitigate(&self, operator: &SpiffeId, job: &str, resolution: &str, disk: &str) -> Result<ImportJob> {
        let azure = self
            .azure
            .as_ref()
            .ok_or_else(|| Error::FailedPrecondition("the coordinator has no [azure] settings".into()))?;
        let rec = self.job(job).await?;
        let i = &rec.record.intent;
        if rec.record.phase != crate::domain::import::JobPhase::Created {
            return Err(Error::FailedPrecondition(format!(
                "job {} is not in Azure (its record is {}); there is nothing to answer",
                i.job_name,
                rec.record.phase.as_str()
            )));
        }
        let body = if disk.is_empty() {
            seedship_azure::databox::model::MitigateJobRequest {
                customer_resolution_code: Some(resolution.into()),
                ..Default::default()
            }
        } else {
            seedship_azure::databox::model::MitigateJobRequest {
                serial_number_customer_resolution_map: Some([(disk.to_string(), resolution.to_string())].into()),
                ..Default::default()
            }
        };
        match azure.quick.mitigate(&i.subscription_id, &i.resource_group, &i.job_name, &body).await {
            Ok(()) => {}
            Err(e) if e.is_transient() => {
                return Err(Error::Unavailable(format!("Azure did not answer ({e}); nothing was changed, try again")));
            }
            Err(e) => {
                return Err(Error::FailedPrecondition(format!("Azure refused the answer for job {}: {e}", i.job_name)));
            }
        }
        let what = if disk.is_empty() {
            format!("answered Azure's wait with {resolution}")
        } else {
            format!("answered Azure's wait with {resolution} for disk {disk}")
        };
        self.store.job_mitigated(&i.seed_id, &operator.to_string(), &what, self.now()).await?;
        tracing::info!(operator = %operator, job = %i.job_name, %resolution, %disk, "Azure's wait for the customer answered");
        if let Ok((found, _)) = azure.quick.get_job(&i.subscription_id, &i.resource_group, &i.job_name).await {
            self.store.mirror_job(&i.seed_id, &crate::azure::state::snapshot(&found), self.now()).await?;
        }
        self.job(job).await
    }

    pub async fn shipping(&self, job: &str) -> Result<ShippingRecord> {
        self.store
            .get_shipping(job)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no shipping recorded for job {job:?}")))
    }

    pub async fn list_seeds(&self, state: Option<SeedState>, limit: u32) -> Result<Vec<Seed>> {
        self.store.list_seeds(state, limit).await
    }

    pub async fn seed_detail(&self, seed: &str) -> Result<SeedDetail> {
        self.store
            .seed_detail(seed)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no seed with id or job name {seed:?}")))
    }

    pub async fn list_drives(&self, seed: Option<&str>) -> Result<Vec<Drive>> {
        self.store.list_drives(seed).await
    }

    pub async fn list_jobs(&self) -> Result<Vec<ImportJob>> {
        self.store.list_jobs().await
    }

    pub async fn list_agents(&self, role: Option<Role>) -> Result<Vec<Agent>> {
        self.store.list_agents(role).await
    }

    pub async fn list_events(&self, seed: Option<&str>, limit: u32, before: i64) -> Result<Vec<HistoryEntry>> {
        self.store.list_events(seed, limit, before).await
    }
}
