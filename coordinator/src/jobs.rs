//! The Azure worker: creates each seed's import job, follows it, watches Azure's deadlines,
//! and pushes shipping records that Azure has not confirmed yet.
//!
//! Creation is intent-first. The intent row is written (with the job name as its key) before
//! the PUT. For an intent, the worker first GETs the job: found means a PUT from before a crash
//! landed, and the job is adopted; 404 means PUT it now. Azure's PUT is create-or-update by
//! name, so a retried PUT can never make a second job either.
//!
//! Everything is retried with backoff when Azure does not answer or throttles (the ARM
//! client retries within a call; the worker retries calls), and the seed says "Azure
//! unavailable since …" meanwhile.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use seedship_azure::arm::{self, JobResponse};
use seedship_azure::client::{ArmClient, ArmError, ArmOptions};
use tokio::sync::watch;

use crate::azure::AzureConfig;
use crate::domain::import::{JobDrive, JobIntent, JobPhase, JobRecord, JobSnapshot};
use crate::domain::model::*;
use crate::domain::seed::SeedState;
use crate::domain::service::Coordinator;
use crate::error::{Error, Result};

/// The coordinator's Azure side: its settings and two ARM clients.
pub struct AzureSide {
    pub cfg: AzureConfig,
    /// Blob storage (import containers, vaults).
    pub accounts: seedship_azure::blob::Accounts,
    /// For background work: long timeouts, many retries.
    pub arm: ArmClient,
    /// For an operator's request that waits on the answer: a few quick retries.
    pub quick: ArmClient,
    /// Datacenter addresses by Azure location, as the worker last read them: a station's
    /// `CompleteWork` is answered from here and never waits on Azure.
    addresses: std::sync::Mutex<std::collections::HashMap<String, (Vec<String>, Instant)>>,
}

impl std::fmt::Debug for AzureSide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureSide").field("endpoint", &self.cfg.arm_endpoint).finish()
    }
}

impl AzureSide {
    pub fn new(cfg: AzureConfig) -> std::result::Result<AzureSide, String> {
        // Within a call: 4 retries (about 3 s); the worker retries calls after that.
        let arm = cfg.client_with(ArmOptions { max_retries: 4, ..Default::default() })?;
        let quick = cfg.client_with(ArmOptions {
            max_retries: 2,
            initial_delay: Duration::from_millis(200),
            timeout: Duration::from_secs(10),
            ..Default::default()
        })?;
        let accounts = cfg.accounts()?;
        Ok(AzureSide { cfg, accounts, arm, quick, addresses: Default::default() })
    }

    /// The datacenter address of `location` if it has been read (within a day).
    pub fn cached_address(&self, location: &str) -> Option<Vec<String>> {
        let a = self.addresses.lock().unwrap_or_else(|p| p.into_inner());
        a.get(location).filter(|(_, at)| at.elapsed() < Duration::from_secs(86_400)).map(|(l, _)| l.clone())
    }

    /// Reads the datacenter address of `location` from Azure (the Locations API) into the cache.
    pub async fn refresh_address(&self, location: &str) -> std::result::Result<Vec<String>, String> {
        let loc = self.arm.location(location).await.map_err(|e| e.to_string())?;
        let lines = loc.properties.map(|p| p.address_lines()).unwrap_or_default();
        if lines.is_empty() {
            return Err(format!("Azure gave no address for location {location}"));
        }
        let mut a = self.addresses.lock().unwrap_or_else(|p| p.into_inner());
        a.insert(location.to_string(), (lines.clone(), Instant::now()));
        Ok(lines)
    }

    /// The job a seed gets: in the configured resource group, at the seed's location, into
    /// the seed's storage account.
    pub fn intent(&self, seed: &Seed) -> JobIntent {
        JobIntent {
            seed_id: seed.seed_id.clone(),
            job_name: seed.spec.job_name.clone(),
            subscription_id: seed.spec.subscription_id.clone(),
            resource_group: self.cfg.resource_group.clone(),
            location: seed.spec.location.clone(),
            storage_account_id: format!(
                "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Storage/storageAccounts/{}",
                seed.spec.subscription_id,
                self.cfg.storage_resource_group(),
                seed.spec.storage_account
            ),
        }
    }

    /// The PUT body: storage account, drive list with keys, return address and shipping,
    /// diagnostics path and log level.
    pub fn put_body(&self, intent: &JobIntent, drives: Vec<(DriveSpec, RecoveryPassword)>) -> arm::PutJobParameters {
        let drive_list = drives
            .into_iter()
            .map(|(d, key)| arm::DriveStatus {
                drive_id: Some(d.drive_id),
                bit_locker_key: Some(arm::Secret(key.0)),
                manifest_file: Some(d.manifest_file),
                manifest_hash: Some(d.manifest_hash),
                drive_header_hash: Some(d.drive_header_hash),
                ..Default::default()
            })
            .collect();
        arm::PutJobParameters {
            location: Some(intent.location.clone()),
            tags: Some([("seedship-seed".to_string(), serde_json::Value::String(intent.seed_id.clone()))].into()),
            properties: Some(arm::JobDetails {
                storage_account_id: Some(intent.storage_account_id.clone()),
                job_type: Some("Import".into()),
                return_address: Some(self.cfg.return_address.to_arm()),
                return_shipping: Some(self.cfg.return_shipping.to_arm()),
                diagnostics_path: Some(self.cfg.diagnostics_path.clone()),
                log_level: Some(self.cfg.log_level.clone()),
                backup_drive_manifest: Some(true),
                drive_list: Some(drive_list),
                ..Default::default()
            }),
        }
    }
}

/// The parts of an Azure job the coordinator keeps.
pub fn snapshot(job: &JobResponse) -> JobSnapshot {
    let p = job.properties.clone().unwrap_or_default();
    JobSnapshot {
        state: p.state.clone().unwrap_or_default(),
        percent_complete: p.percent_complete,
        drives: p
            .drive_list
            .unwrap_or_default()
            .into_iter()
            .map(|d| JobDrive {
                drive_id: d.drive_id.unwrap_or_default(),
                state: d.state.unwrap_or_default(),
                copy_status: d.copy_status.unwrap_or_default(),
                percent_complete: d.percent_complete,
                bytes_succeeded: d.bytes_succeeded,
                error_log_uri: d.error_log_uri.unwrap_or_default(),
                verbose_log_uri: d.verbose_log_uri.unwrap_or_default(),
                manifest_uri: d.manifest_uri.unwrap_or_default(),
            })
            .collect(),
        delivery_tracking: p.delivery_package.map(|d| d.tracking_number),
        cancel_requested: p.cancel_requested.unwrap_or(false),
    }
}

fn address_of(job: &JobResponse) -> Vec<String> {
    job.properties.as_ref().and_then(|p| p.shipping_information.as_ref()).map(|s| s.address_lines()).unwrap_or_default()
}

/// What became of one Azure call for a job.
enum Outcome {
    Done,
    /// Azure did not answer (or throttled); try again after a backoff.
    Retry,
}

/// When each job is next due, and how many calls in a row failed.
#[derive(Default)]
struct Due {
    at: HashMap<String, (Instant, u32)>,
}

impl Due {
    fn ready(&self, seed: &str, now: Instant) -> bool {
        self.at.get(seed).is_none_or(|(t, _)| *t <= now)
    }
    fn after(&mut self, seed: &str, outcome: &Outcome, poll: Duration, now: Instant) {
        let failures = match outcome {
            Outcome::Done => 0,
            Outcome::Retry => self.at.get(seed).map_or(1, |(_, f)| f + 1),
        };
        let wait = match outcome {
            Outcome::Done => poll,
            // 1 s, 2 s, 4 s … up to the poll interval.
            Outcome::Retry => Duration::from_secs(1 << failures.min(8)).min(poll.max(Duration::from_secs(1))),
        };
        self.at.insert(seed.to_string(), (now + wait, failures));
    }
}

/// Runs the worker until `stop`.
pub async fn run(core: Weak<Coordinator>, side: Arc<AzureSide>, mut stop: watch::Receiver<bool>) {
    let poll = side.cfg.poll_interval;
    let mut tick = tokio::time::interval(poll.min(Duration::from_secs(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut due = Due::default();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let Some(core) = core.upgrade() else { return };
        if let Err(e) = round(&core, &side, &mut due, poll).await {
            tracing::warn!(error = %e, "Azure worker round failed; retrying at the next tick");
        }
    }
}

async fn round(core: &Coordinator, side: &AzureSide, due: &mut Due, poll: Duration) -> Result<()> {
    // The datacenter addresses the copy stations will show, read before their work ends.
    let mut locations: Vec<String> = Vec::new();
    for state in [SeedState::QueuedForDiskPrep, SeedState::Preparing, SeedState::DisksPrepared] {
        for s in core.list_seeds(Some(state), 1000).await? {
            if !locations.contains(&s.spec.location) && side.cached_address(&s.spec.location).is_none() {
                locations.push(s.spec.location);
            }
        }
    }
    for loc in locations {
        if let Err(e) = side.refresh_address(&loc).await {
            tracing::warn!(location = %loc, error = %e, "the datacenter address could not be read; retrying");
        }
    }
    for seed in core.store.seeds_awaiting_jobs().await? {
        let intent = side.intent(&seed);
        let rec = core.store.record_job_intent(&intent, core.now()).await?;
        match rec.phase {
            JobPhase::Refused => {
                tracing::warn!(job = %intent.job_name, reason = %rec.last_error, "import job cannot be created")
            }
            _ => {
                tracing::info!(job = %intent.job_name, resource_group = %intent.resource_group, "import job intent recorded; creating it in Azure")
            }
        }
    }
    let now = Instant::now();
    for job in core.store.followed_jobs().await? {
        deadlines(core, &job).await?;
        let seed = job.intent.seed_id.clone();
        if !due.ready(&seed, now) {
            continue;
        }
        let outcome = match job.phase {
            JobPhase::Intent => create(core, side, &job).await?,
            JobPhase::Created => follow(core, side, &job).await?,
            JobPhase::Refused | JobPhase::Gone => Outcome::Done,
        };
        // The wait runs from the end of the call: a slow call (a hung Azure) must not be retried at once.
        due.after(&seed, &outcome, poll, Instant::now());
    }
    // Shipping that an operator recorded but Azure has not confirmed (Azure was down, or the
    // coordinator stopped in between): pushed again.
    let before = core.now() - 30_000;
    for rec in core.store.stale_reservations(before).await? {
        let key = format!("ship:{}", rec.seed_id);
        if !due.ready(&key, now) {
            continue;
        }
        let outcome = match push_shipping(core, &side.arm, &rec).await {
            Ok(_) => Outcome::Done,
            Err(Error::Unavailable(_)) => Outcome::Retry,
            Err(e) => {
                tracing::warn!(job = %rec.spec.job_name, error = %e, "Azure refused the shipping record");
                Outcome::Done
            }
        };
        due.after(&key, &outcome, poll, Instant::now());
    }
    Ok(())
}

async fn unavailable(core: &Coordinator, job: &JobRecord, e: &ArmError) -> Result<Outcome> {
    tracing::warn!(job = %job.intent.job_name, error = %e, "Azure unavailable; will retry");
    core.store.azure_unavailable(&job.intent.seed_id, &e.to_string(), core.now()).await?;
    Ok(Outcome::Retry)
}

/// An intent: adopt the job if Azure has it, otherwise PUT it.
async fn create(core: &Coordinator, side: &AzureSide, job: &JobRecord) -> Result<Outcome> {
    let i = &job.intent;
    match side.arm.get_job(&i.subscription_id, &i.resource_group, &i.job_name).await {
        Ok(found) => {
            let theirs = found.properties.as_ref().and_then(|p| p.storage_account_id.clone()).unwrap_or_default();
            if !theirs.eq_ignore_ascii_case(&i.storage_account_id) {
                let why = format!(
                    "a different job named {} already exists in resource group {} (storage account {theirs}); rename the seed's job",
                    i.job_name, i.resource_group
                );
                core.store.job_refused(&i.seed_id, &why, core.now()).await?;
                return Ok(Outcome::Done);
            }
            tracing::info!(job = %i.job_name, "import job found in Azure after a restart; adopted, not created again");
            core.store.job_created(&i.seed_id, &snapshot(&found), &address_of(&found), true, core.now()).await?;
            return Ok(Outcome::Done);
        }
        Err(e) if e.is_not_found() => {}
        Err(e) if e.is_transient() => return unavailable(core, job, &e).await,
        Err(e) => {
            core.store.job_refused(&i.seed_id, &e.to_string(), core.now()).await?;
            return Ok(Outcome::Done);
        }
    }
    let drives = core.store.drives_for_job(&i.seed_id).await?;
    let mk = core.master_key.as_ref().ok_or_else(|| {
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
    let body = side.put_body(i, list);
    match side.arm.put_job(&i.subscription_id, &i.resource_group, &i.job_name, &body).await {
        Ok((status, created)) => {
            tracing::info!(job = %i.job_name, status, "import job created in Azure");
            core.store.job_created(&i.seed_id, &snapshot(&created), &address_of(&created), false, core.now()).await?;
            Ok(Outcome::Done)
        }
        Err(e) if e.is_transient() => unavailable(core, job, &e).await,
        // An unreadable 2xx: the PUT may have landed; the next round GETs it.
        Err(e @ ArmError::Decode(_)) => unavailable(core, job, &e).await,
        Err(e) => {
            tracing::warn!(job = %i.job_name, error = %e, "Azure refused to create the import job");
            core.store.job_refused(&i.seed_id, &e.to_string(), core.now()).await?;
            Ok(Outcome::Done)
        }
    }
}

/// A created job: GET it and mirror what Azure says.
async fn follow(core: &Coordinator, side: &AzureSide, job: &JobRecord) -> Result<Outcome> {
    let i = &job.intent;
    match side.arm.get_job(&i.subscription_id, &i.resource_group, &i.job_name).await {
        Ok(found) => {
            let changes = core.store.mirror_job(&i.seed_id, &snapshot(&found), core.now()).await?;
            for c in changes {
                tracing::info!(job = %i.job_name, "{c}");
            }
            Ok(Outcome::Done)
        }
        Err(e) if e.is_not_found() => {
            tracing::warn!(job = %i.job_name, "import job no longer exists in Azure");
            core.store.job_gone(&i.seed_id, core.now()).await?;
            Ok(Outcome::Done)
        }
        Err(e) => unavailable(core, job, &e).await,
    }
}

/// Azure's two 14-day clocks: warnings at days 10, 12 and 13, the seed failed at 14.
async fn deadlines(core: &Coordinator, job: &JobRecord) -> Result<()> {
    let Some(d) = job.deadline() else { return Ok(()) };
    let now = core.now();
    let step = d.step(now);
    if step == 0 || (job.warned_kind == d.kind.as_str() && job.warned_step >= step) {
        return Ok(());
    }
    let text = d.describe(now);
    if core.store.deadline_step(&job.intent.seed_id, d.kind, step, &text, now).await? {
        tracing::warn!(
            job = %job.intent.job_name,
            deadline = d.kind.as_str(),
            day = step,
            days_left = d.days_left(now),
            "{text}"
        );
        crate::metrics::deadline_warning(&job.intent.job_name, d.kind.as_str(), step, d.days_left(now));
    }
    Ok(())
}

/// The PATCH that tells Azure the drives are on their way: `state: Shipping` and the
/// delivery package.
pub fn shipping_patch(rec: &ShippingRecord) -> arm::UpdateJobParameters {
    arm::UpdateJobParameters {
        tags: None,
        properties: Some(arm::UpdateJobProperties {
            state: Some(arm::JobState::Shipping.as_str().into()),
            delivery_package: Some(arm::DeliveryPackageInformation {
                carrier_name: rec.spec.carrier.clone(),
                tracking_number: rec.spec.tracking_number.clone(),
                drive_count: Some(rec.spec.drive_count as i64),
                ship_date: Some(rec.spec.ship_date.clone()),
            }),
            ..Default::default()
        }),
    }
}

/// Tells Azure the job is shipping, with the delivery package, and confirms the record. An
/// Azure refusal removes the reservation (nothing changed) and is returned with its reason;
/// no answer keeps it, for the worker to push again.
pub async fn push_shipping(core: &Coordinator, client: &ArmClient, rec: &ShippingRecord) -> Result<ShippingRecord> {
    let job = core
        .store
        .job(&rec.seed_id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("job {} has no import job", rec.spec.job_name)))?;
    let i = &job.record.intent;
    // A push from before a crash may have landed already.
    if let Ok(found) = client.get_job(&i.subscription_id, &i.resource_group, &i.job_name).await {
        let snap = snapshot(&found);
        if snap.delivery_tracking.as_deref() == Some(rec.spec.tracking_number.as_str()) && snap.state != "Creating" {
            return core.store.confirm_shipping(&rec.seed_id, core.now()).await;
        }
    }
    let body = shipping_patch(rec);
    match client.update_job(&i.subscription_id, &i.resource_group, &i.job_name, &body).await {
        Ok(_) => core.store.confirm_shipping(&rec.seed_id, core.now()).await,
        Err(e) if e.is_transient() || matches!(e, ArmError::Decode(_)) => {
            core.store.azure_unavailable(&rec.seed_id, &e.to_string(), core.now()).await?;
            Err(Error::Unavailable(format!(
                "shipping for job {} is recorded, but Azure has not confirmed it yet ({e}); the coordinator keeps retrying",
                rec.spec.job_name
            )))
        }
        Err(e) => {
            let why =
                format!("Azure refused the shipping details for job {}: {e}; nothing was changed", rec.spec.job_name);
            core.store.drop_shipping(&rec.seed_id, &why, core.now()).await?;
            match &e {
                ArmError::Azure { code, .. } if code == "DuplicateTrackingNumber" => Err(Error::AlreadyExists(why)),
                _ => Err(Error::FailedPrecondition(why)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use seedship_azure::openapi::Spec;

    const CONFIG: &str = r#"
arm_endpoint = "https://127.0.0.1:9443"
resource_group = "seedship-rg"
[credential]
kind = "emulator"
[return_address]
recipient_name = "Backup team"
street_address1 = "1 Main St"
city = "Utrecht"
postal_code = "3511"
country_or_region = "Netherlands"
phone = "+31 30 000 0000"
email = "backup@example.org"
[return_shipping]
carrier_name = "DHL"
carrier_account_number = "123456"
"#;

    #[test]
    fn what_the_coordinator_sends_fits_the_official_openapi_description() {
        let side = AzureSide::new(toml::from_str(CONFIG).unwrap()).unwrap();
        let seed = Seed {
            seed_id: "sd-1".into(),
            owner: "fs01".into(),
            state: crate::domain::seed::SeedState::DisksPrepared,
            state_reason: String::new(),
            created_ms: 0,
            updated_ms: 0,
            spec: NewSeed {
                job_name: "job-1".into(),
                storage_account: "seedacct".into(),
                container: "seeds".into(),
                subscription_id: "0f0e0d0c-0000-4000-8000-00000000abcd".into(),
                location: "westeurope".into(),
                staging_location: "/staging".into(),
                manifest_root: "ab".repeat(32),
                total_bytes: 1,
                file_count: 1,
                target_site: None,
                target_station: None,
                repository_id: "cd".repeat(16),
            },
            allow_virtual_station: false,
            import_job_state: String::new(),
        };
        let intent = side.intent(&seed);
        assert_eq!(
            intent.storage_account_id,
            "/subscriptions/0f0e0d0c-0000-4000-8000-00000000abcd/resourceGroups/seedship-rg/providers/Microsoft.Storage/storageAccounts/seedacct"
        );
        let drive = DriveSpec {
            drive_id: "SS-1".into(),
            position: 1,
            capacity_bytes: 1,
            bytes_written: 1,
            manifest_file: seedship_disk::format::MANIFEST_FILE.into(),
            manifest_hash: "A".repeat(32),
            drive_header_hash: "b".repeat(64),
            status: DriveStatus::Prepared,
            status_reason: String::new(),
        };
        let key = RecoveryPassword("000011-000022-000033-000044-000055-000066-000077-000088".into());
        let spec = Spec::official();
        let put = serde_json::to_value(side.put_body(&intent, vec![(drive, key)])).unwrap();
        assert_eq!(spec.check("PutJobParameters", &put), Vec::<String>::new());
        assert_eq!(put["properties"]["driveList"][0]["manifestFile"], "\\seedship\\DriveManifest.json");
        let rec = ShippingRecord {
            spec: NewShipping {
                job_name: "job-1".into(),
                carrier: "DHL".into(),
                tracking_number: "1234567890".into(),
                drive_count: 1,
                ship_date: "2026-11-22".into(),
            },
            seed_id: "sd-1".into(),
            recorded_by: "ops".into(),
            recorded_ms: 0,
            confirmed_ms: None,
        };
        let patch = serde_json::to_value(shipping_patch(&rec)).unwrap();
        assert_eq!(spec.check("UpdateJobParameters", &patch), Vec::<String>::new());
    }
}
