//! Import jobs, shipping records and Azure's waits for the customer.

use seedship_azure::client::{ArmClient, ArmError};

use super::*;

/// What the sealed passkey is bound to, beside the work id (no drive id has a '#').
pub const PASSKEY_AAD: &str = "#passkey";
use crate::azure::state;
use crate::domain::import::{DeadlineKind, JobIntent, JobRecord, JobSnapshot};

impl Coordinator {
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
        if self.seed_detail(&rec.seed_id).await?.seed.kind == DiskKind::DataboxDisk {
            // Microsoft's disks go back with Microsoft's return label: Azure has no
            // `markDevicesShipped` for them, and reports the pick-up itself.
            let rec = self.store.confirm_shipping(&rec.seed_id, self.now()).await?;
            tracing::info!(operator = %operator, job = %rec.spec.job_name, carrier = %rec.spec.carrier, tracking = %rec.spec.tracking_number, "Data Box Disk return shipment recorded");
            return Ok(rec);
        }
        let rec = self.push_shipping(&azure.quick, &rec).await?;
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
    pub(super) fn warm_address(&self, subscription: &str, location: &str) {
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

    pub async fn job(&self, job: &str) -> Result<ImportJob> {
        self.store
            .job(job)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no import job for {job:?} (by job name or seed id)")))
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
        self.store.note_job(&i.seed_id, &operator.to_string(), "azure_mitigated", &what, self.now()).await?;
        tracing::info!(operator = %operator, job = %i.job_name, %resolution, %disk, "Azure's wait for the customer answered");
        if let Ok((found, _)) = azure.quick.get_job(&i.subscription_id, &i.resource_group, &i.job_name).await {
            self.store.mirror_job(&i.seed_id, &crate::azure::state::snapshot(&found), self.now()).await?;
        }
        self.job(job).await
    }

    /// Cancels a seed before its disks are shipped: its Azure job (if Azure has one) is
    /// cancelled with the reason, then deleted; then the seed and its disk-prep work. Azure's
    /// refusal, or no answer, changes nothing.
    pub async fn cancel_seed(&self, operator: &SpiffeId, cmd: Cmd<(String, String)>) -> Result<Seed> {
        let (seed, reason) = &cmd.body;
        let detail = self.seed_detail(seed).await?;
        if detail.seed.state.apply(crate::domain::seed::SeedEvent::Cancel).is_err() {
            return Err(Error::FailedPrecondition(format!(
                "seed {} is {}; a seed can be cancelled until its disks are shipped",
                detail.seed.spec.job_name, detail.seed.state
            )));
        }
        if let Some(job) = self.store.job(&detail.seed.seed_id).await? {
            let i = &job.record.intent;
            match job.record.phase {
                crate::domain::import::JobPhase::Intent => {
                    return Err(Error::FailedPrecondition(format!(
                        "the Azure job {} is being created right now; cancel again in a minute",
                        i.job_name
                    )));
                }
                crate::domain::import::JobPhase::Created => {
                    let azure = self
                        .azure
                        .as_ref()
                        .ok_or_else(|| Error::FailedPrecondition("the coordinator has no [azure] settings".into()))?;
                    let why = format!("{}{reason}", crate::domain::import::CANCEL_PREFIX);
                    match azure.quick.cancel_job(&i.subscription_id, &i.resource_group, &i.job_name, &why).await {
                        Ok(()) => {}
                        Err(e) if e.is_not_found() => {}
                        Err(e) if e.is_transient() => {
                            return Err(Error::Unavailable(format!(
                                "Azure did not answer ({e}); nothing was cancelled, try again"
                            )));
                        }
                        Err(e) => {
                            return Err(Error::FailedPrecondition(format!(
                                "Azure refused to cancel job {}: {e}; nothing was cancelled",
                                i.job_name
                            )));
                        }
                    }
                }
                _ => {}
            }
        }
        let idem = self.idem(operator, "CancelSeed", &cmd);
        let s = self.store.cancel_seed(&idem, operator, seed, reason, self.now()).await?;
        tracing::info!(operator = %operator, job = %s.spec.job_name, %reason, "seed cancelled");
        // A cancelled job is deletable: leave nothing behind in the portal (after the seed is
        // cancelled, so the job's disappearing is not taken for a loss).
        if let (Some(azure), Some(job)) = (self.azure.as_ref(), self.store.job(&s.seed_id).await?)
            && job.record.phase == crate::domain::import::JobPhase::Created
        {
            let i = &job.record.intent;
            if let Err(e) = azure.quick.delete_job(&i.subscription_id, &i.resource_group, &i.job_name).await {
                tracing::warn!(job = %i.job_name, error = %e, "the cancelled job could not be deleted in Azure; it stays there, cancelled");
            }
        }
        Ok(s)
    }

    pub async fn shipping(&self, job: &str) -> Result<ShippingRecord> {
        self.store
            .get_shipping(job)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no shipping recorded for job {job:?}")))
    }

    pub async fn list_jobs(&self) -> Result<Vec<ImportJob>> {
        self.store.list_jobs().await
    }

    /// Tells Azure the disks are on their way (`markDevicesShipped`: carrier and tracking number)
    /// and confirms the record. An Azure refusal removes the reservation (nothing changed) and is
    /// returned with its reason; no answer keeps it, for the worker to push again.
    pub async fn push_shipping(&self, client: &ArmClient, rec: &ShippingRecord) -> Result<ShippingRecord> {
        let core = self;
        let job = core
            .store
            .job(&rec.seed_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("job {} has no import job", rec.spec.job_name)))?;
        let i = &job.record.intent;
        // A push from before a crash may have landed already.
        if let Ok((found, _)) = client.get_job(&i.subscription_id, &i.resource_group, &i.job_name).await {
            let snap = state::snapshot(&found);
            if snap.delivery_tracking.as_deref() == Some(rec.spec.tracking_number.as_str())
                && crate::domain::import::shipped(&snap)
            {
                return core.store.confirm_shipping(&rec.seed_id, core.now()).await;
            }
        }
        let sent = client
            .mark_devices_shipped(
                &i.subscription_id,
                &i.resource_group,
                &i.job_name,
                &rec.spec.carrier,
                &rec.spec.tracking_number,
            )
            .await;
        match sent {
            Ok(()) => core.store.confirm_shipping(&rec.seed_id, core.now()).await,
            Err(e) if e.is_transient() || matches!(e, ArmError::Decode(_)) => {
                core.store.azure_unavailable(&rec.seed_id, &e.to_string(), core.now()).await?;
                Err(Error::Unavailable(format!(
                    "shipping for job {} is recorded, but Azure has not confirmed it yet ({e}); the coordinator keeps retrying",
                    rec.spec.job_name
                )))
            }
            Err(e) => {
                let why = format!(
                    "Azure refused the shipping details for job {}: {e}; nothing was changed",
                    rec.spec.job_name
                );
                core.store.drop_shipping(&rec.seed_id, &why, core.now()).await?;
                match e.code() {
                    Some("DuplicateTrackingNumber") => Err(Error::AlreadyExists(why)),
                    _ => Err(Error::FailedPrecondition(why)),
                }
            }
        }
    }

    /// Chooses what a seed is shipped on (see the RPC); the rules are
    /// `domain::import::kind_change_problem`.
    pub async fn set_disk_kind(&self, operator: &SpiffeId, cmd: Cmd<(String, DiskKind, String)>) -> Result<Seed> {
        let idem = self.idem(operator, "SetDiskKind", &cmd);
        let (seed, kind, reason) = &cmd.body;
        let s = self.store.set_disk_kind(&idem, operator, seed, *kind, reason, self.now()).await?;
        tracing::info!(operator = %operator, job = %s.spec.job_name, kind = %kind, %reason, "disk kind chosen");
        Ok(s)
    }

    /// The passkey of a seed's Data Box Disk order, once Azure gave it; every release is in the
    /// seed's history (never the passkey).
    pub async fn passkey(&self, operator: &SpiffeId, seed: &str) -> Result<(RecoveryPassword, bool)> {
        let rec = self.store.passkey(seed).await?;
        self.release_passkey(operator, rec).await
    }

    /// The passkey of the seed whose work `station` holds with the live lease `fence`: the
    /// station unlocks the delivered disks with it.
    pub async fn lease_passkey(&self, station: &SpiffeId, fence: &Fence) -> Result<RecoveryPassword> {
        let rec = Self::audit(station, "GetLeasePasskey", self.store.lease_passkey(station, fence, self.now()).await)?;
        Ok(self.release_passkey(station, rec).await?.0)
    }

    async fn release_passkey(&self, to: &SpiffeId, rec: PasskeyRecord) -> Result<(RecoveryPassword, bool)> {
        let operator = to;
        let job = &rec.seed.spec.job_name;
        if rec.seed.kind != DiskKind::DataboxDisk {
            return Err(Error::FailedPrecondition(format!(
                "seed {job} is shipped on the operator's own disks; only a Data Box Disk order has a passkey"
            )));
        }
        let Some(sealed) = rec.sealed else {
            let stage =
                if rec.stage.is_empty() { "not ordered yet".to_string() } else { format!("in stage {}", rec.stage) };
            return Err(Error::FailedPrecondition(format!(
                "Azure gives the passkey once the disks are delivered; job {job} is {stage}. Ask again after delivery"
            )));
        };
        let mk = self.master_key.as_ref().ok_or_else(|| {
            Error::FailedPrecondition("the coordinator has no master_key_file, so it cannot read the passkey".into())
        })?;
        let key = mk.open(&rec.work_id, PASSKEY_AAD, &sealed)?;
        self.store
            .note_job(
                &rec.seed.seed_id,
                &operator.to_string(),
                "passkey_released",
                &format!("the Data Box Disk passkey was released to {operator}"),
                self.now(),
            )
            .await?;
        tracing::info!(operator = %operator, %job, "Data Box Disk passkey released");
        Ok((key, rec.user_defined))
    }

    /// Data Box Disk: the delivered disks' keys and the passkey from `listCredentials`, sealed
    /// under the master key (never kept or logged in the clear); the seed's disk-prep work is
    /// queued. `sizes` are the disks' capacities as the job says them.
    pub async fn disks_delivered(
        &self,
        seed_id: &str,
        creds: &crate::azure::state::DiskCredentials,
        sizes: &std::collections::BTreeMap<String, u64>,
    ) -> Result<()> {
        let mk = self.master_key.as_ref().ok_or_else(|| {
            Error::FailedPrecondition(
                "the coordinator has no master_key_file configured, so it cannot keep the Data Box Disk keys".into(),
            )
        })?;
        let detail = self.seed_detail(seed_id).await?;
        let work_id = detail
            .work
            .as_ref()
            .map(|w| w.work_id.clone())
            .ok_or_else(|| Error::Internal(format!("seed {seed_id} has no disk-prep work item")))?;
        let mut disks = Vec::with_capacity(creds.disks.len());
        for (i, (serial, key)) in creds.disks.iter().enumerate() {
            disks.push(DeliveredDisk {
                serial: serial.clone(),
                position: i as u32 + 1,
                capacity_bytes: sizes
                    .get(serial)
                    .copied()
                    .unwrap_or(seedship_azure::databox::DATABOX_DISK_USABLE_BYTES),
                sealed_key: mk.seal(&work_id, serial, key)?,
            });
        }
        let passkey = match &creds.passkey {
            Some((k, user)) => Some((mk.seal(&work_id, PASSKEY_AAD, k)?, *user)),
            None => None,
        };
        self.store.disks_delivered(seed_id, &disks, passkey.as_ref(), self.now()).await
    }

    // ---- the Azure worker's steps (jobs.rs): each one store operation, with the clock.

    /// Seeds whose disks are prepared and that have no import job record yet.
    pub async fn seeds_awaiting_jobs(&self) -> Result<Vec<Seed>> {
        self.store.seeds_awaiting_jobs().await
    }

    /// Writes the intent (or finds it), after Azure's rules (`domain/import.rs`).
    pub async fn record_job_intent(&self, intent: &JobIntent) -> Result<JobRecord> {
        self.store.record_job_intent(intent, self.now()).await
    }

    pub async fn followed_jobs(&self) -> Result<Vec<JobRecord>> {
        self.store.followed_jobs().await
    }

    pub async fn stale_reservations(&self, before: UnixMs) -> Result<Vec<ShippingRecord>> {
        self.store.stale_reservations(before).await
    }

    pub async fn azure_unavailable(&self, seed_id: &str, error: &str) -> Result<()> {
        self.store.azure_unavailable(seed_id, error, self.now()).await
    }

    pub async fn job_refused(&self, seed_id: &str, reason: &str) -> Result<()> {
        self.store.job_refused(seed_id, reason, self.now()).await
    }

    pub async fn job_created(
        &self,
        seed_id: &str,
        snap: &JobSnapshot,
        address: &[String],
        adopted: bool,
    ) -> Result<()> {
        self.store.job_created(seed_id, snap, address, adopted, self.now()).await
    }

    pub async fn mirror_job(&self, seed_id: &str, snap: &JobSnapshot) -> Result<Vec<String>> {
        self.store.mirror_job(seed_id, snap, self.now()).await
    }

    /// Something the Azure worker did to a job, in the seed's history.
    pub async fn note_job(&self, seed_id: &str, what: &str) -> Result<()> {
        self.store.note_job(seed_id, "coordinator/azure", "azure_job_updated", what, self.now()).await
    }

    pub async fn job_gone(&self, seed_id: &str) -> Result<()> {
        self.store.job_gone(seed_id, self.now()).await
    }

    pub async fn deadline_step(&self, seed_id: &str, kind: DeadlineKind, step: i64, text: &str) -> Result<bool> {
        self.store.deadline_step(seed_id, kind, step, text, self.now()).await
    }

    /// The seed's prepared disks with their keys, unsealed with the master key: only for the
    /// job Azure is sent (never logged).
    pub async fn drive_keys_for_job(&self, seed_id: &str) -> Result<Vec<(DriveSpec, RecoveryPassword)>> {
        let drives = self.store.drives_for_job(seed_id).await?;
        let mk = self.master_key.as_ref().ok_or_else(|| {
            Error::FailedPrecondition("the coordinator has no master_key_file, so it cannot read drive keys".into())
        })?;
        let mut list = Vec::with_capacity(drives.len());
        for d in drives {
            let sealed = d
                .sealed_key
                .as_ref()
                .ok_or_else(|| Error::FailedPrecondition(format!("drive {} has no escrowed key", d.spec.drive_id)))?;
            let key = mk.open(&d.work_id, &d.spec.drive_id, sealed)?;
            list.push((d.spec, key));
        }
        Ok(list)
    }
}
