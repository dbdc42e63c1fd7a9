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

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use seedship_azure::client::ArmError;
use seedship_azure::databox::{copylog, model};
use tokio::sync::watch;

use super::Backoff;
use crate::azure::{AzureSide, body, state};
use crate::domain::import::{CopyError, JobIntent, JobPhase, JobRecord, JobSnapshot};
use crate::domain::model::*;
use crate::domain::seed::SeedState;
use crate::error::{Error, Result};
use crate::service::Coordinator;

/// The job a seed gets: in the configured resource group, at the seed's location, into the
/// seed's storage account.
pub fn intent(side: &AzureSide, seed: &Seed) -> JobIntent {
    JobIntent {
        seed_id: seed.seed_id.clone(),
        kind: seed.kind,
        disks: match seed.kind {
            DiskKind::DataboxDisk => crate::domain::import::databox_disks_needed(seed.spec.total_bytes).unwrap_or(0),
            DiskKind::CustomerDisk => 0,
        },
        job_name: seed.spec.job_name.clone(),
        subscription_id: seed.spec.subscription_id.clone(),
        resource_group: side.cfg.resource_group.clone(),
        location: seed.spec.location.clone(),
        storage_account_id: format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Storage/storageAccounts/{}",
            seed.spec.subscription_id,
            side.cfg.storage_resource_group(),
            seed.spec.storage_account
        ),
    }
}

/// What became of one Azure call for a job.
enum Outcome {
    Done,
    /// Azure did not answer (or throttled); try again after a backoff.
    Retry,
}

/// Runs the worker until `stop`: a round every second (or the poll interval, if shorter).
pub async fn run(core: Weak<Coordinator>, side: Arc<AzureSide>, stop: watch::Receiver<bool>) {
    let poll = side.cfg.poll_interval;
    let due = Arc::new(tokio::sync::Mutex::new(Backoff::default()));
    super::run_as_leader("azure", poll.min(Duration::from_secs(1)), core, stop, move |core| {
        let (side, due) = (side.clone(), due.clone());
        async move { round(&core, &side, &mut *due.lock().await, poll).await }
    })
    .await
}

/// After a call for `key`: due again after the poll interval, or after a back-off.
fn after(due: &mut Backoff, key: &str, outcome: &Outcome, poll: Duration) {
    let now = Instant::now();
    match outcome {
        Outcome::Done => due.done(key, poll, now),
        Outcome::Retry => {
            due.failed(key, poll, now);
        }
    }
}

async fn round(core: &Coordinator, side: &AzureSide, due: &mut Backoff, poll: Duration) -> Result<()> {
    // The datacenter addresses the copy stations will show, read before their work ends.
    let mut locations: Vec<(String, String)> = Vec::new();
    for state in [SeedState::QueuedForDiskPrep, SeedState::Preparing, SeedState::DisksPrepared] {
        for s in core.list_seeds(Some(state), 1000).await? {
            if !locations.iter().any(|(l, _)| *l == s.spec.location) && side.cached_address(&s.spec.location).is_none()
            {
                locations.push((s.spec.location, s.spec.subscription_id));
            }
        }
    }
    for (loc, sub) in locations {
        if let Err(e) = side.refresh_address(&sub, &loc).await {
            tracing::warn!(location = %loc, error = %e, "the datacenter address could not be read; retrying");
        }
    }
    for seed in core.seeds_awaiting_jobs().await? {
        let intent = intent(side, &seed);
        let rec = core.record_job_intent(&intent).await?;
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
    for job in core.followed_jobs().await? {
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
        after(due, &seed, &outcome, poll);
    }
    // Shipping that an operator recorded but Azure has not confirmed (Azure was down, or the
    // coordinator stopped in between): pushed again.
    let before = core.now() - 30_000;
    for rec in core.stale_reservations(before).await? {
        let key = format!("ship:{}", rec.seed_id);
        if !due.ready(&key, now) {
            continue;
        }
        if core.check_workers_fence().await.is_err() {
            return Ok(());
        }
        let outcome = match core.push_shipping(&side.arm, &rec).await {
            Ok(_) => Outcome::Done,
            Err(Error::Unavailable(_)) => Outcome::Retry,
            Err(e) => {
                tracing::warn!(job = %rec.spec.job_name, error = %e, "Azure refused the shipping record");
                Outcome::Done
            }
        };
        after(due, &key, &outcome, poll);
    }
    Ok(())
}

async fn unavailable(core: &Coordinator, job: &JobRecord, e: &ArmError) -> Result<Outcome> {
    tracing::warn!(job = %job.intent.job_name, error = %e, "Azure unavailable; will retry");
    core.azure_unavailable(&job.intent.seed_id, &e.to_string()).await?;
    Ok(Outcome::Retry)
}

/// An intent: adopt the job if Azure has it; otherwise validate the inputs, PUT it (following
/// the operation), and read it back.
async fn create(core: &Coordinator, side: &AzureSide, job: &JobRecord) -> Result<Outcome> {
    let i = &job.intent;
    match side.arm.get_job(&i.subscription_id, &i.resource_group, &i.job_name).await {
        Ok((found, _)) => return adopt(core, side, job, &found, true).await,
        Err(e) if e.is_not_found() => {}
        Err(e) if e.is_transient() => return unavailable(core, job, &e).await,
        Err(e) => {
            core.job_refused(&i.seed_id, &e.to_string()).await?;
            return Ok(Outcome::Done);
        }
    }
    // Azure's own checks first: each refusal is named for the operator.
    match side.arm.validate_inputs(&i.subscription_id, &i.location, &body::validation(i, &side.cfg, i.kind.sku())).await
    {
        Ok(v) => {
            let refused = state::refusals(&v);
            if !refused.is_empty() {
                let why = format!("Azure's validateInputs refused the job: {}", refused.join("; "));
                tracing::warn!(job = %i.job_name, "{why}");
                core.job_refused(&i.seed_id, &why).await?;
                return Ok(Outcome::Done);
            }
        }
        Err(e) if e.is_transient() || matches!(e, ArmError::Decode(_)) => return unavailable(core, job, &e).await,
        Err(e) => {
            core.job_refused(&i.seed_id, &format!("Azure's validateInputs failed: {e}")).await?;
            return Ok(Outcome::Done);
        }
    }
    let put = match i.kind {
        DiskKind::CustomerDisk => body::customer_disk_job(i, &side.cfg, core.drive_keys_for_job(&i.seed_id).await?),
        DiskKind::DataboxDisk => body::databox_disk_job(i, &side.cfg),
    };
    // Right before the write: this coordinator still runs the workers (a paused former holder
    // finds its fence gone and sends nothing).
    seedship_telemetry::failpoint::eval_async("azure-before-put").await;
    if let Err(e) = core.check_workers_fence().await {
        tracing::warn!(job = %i.job_name, error = %e, "the import job is not created from this coordinator: its workers' fence is gone");
        return Ok(Outcome::Retry);
    }
    match side.arm.put_job(&i.subscription_id, &i.resource_group, &i.job_name, &put).await {
        Ok(end) => {
            tracing::info!(job = %i.job_name, ?end, "import job created in Azure");
            match side.arm.get_job(&i.subscription_id, &i.resource_group, &i.job_name).await {
                Ok((created, _)) => adopt(core, side, job, &created, false).await,
                // Created, not read back: the next round GETs it (and adopts it).
                Err(e) => unavailable(core, job, &e).await,
            }
        }
        // No answer, or the operation still running: the PUT may have landed; the next round
        // GETs the job first, so it is never created twice.
        Err(e) if e.is_transient() || matches!(e, ArmError::Decode(_)) => unavailable(core, job, &e).await,
        Err(e) => {
            tracing::warn!(job = %i.job_name, error = %e, "Azure refused to create the import job");
            core.job_refused(&i.seed_id, &e.to_string()).await?;
            Ok(Outcome::Done)
        }
    }
}

/// A job Azure has: taken as this seed's when it imports into the seed's storage account.
async fn adopt(
    core: &Coordinator,
    side: &AzureSide,
    job: &JobRecord,
    found: &model::JobResource,
    after_restart: bool,
) -> Result<Outcome> {
    let i = &job.intent;
    let theirs = state::storage_account(found).unwrap_or_default();
    if !theirs.eq_ignore_ascii_case(&i.storage_account_id) {
        let why = format!(
            "a different job named {} already exists in resource group {} (storage account {theirs}); rename the seed's job",
            i.job_name, i.resource_group
        );
        core.job_refused(&i.seed_id, &why).await?;
        return Ok(Outcome::Done);
    }
    if after_restart {
        tracing::info!(job = %i.job_name, "import job found in Azure after a restart; adopted, not created again");
    }
    let address = side.remember_address(&i.location, found);
    core.job_created(&i.seed_id, &state::snapshot(found), &address, after_restart).await?;
    Ok(Outcome::Done)
}

/// A created job: GET it, read the copy logs of disks that did not copy in full, and mirror
/// what Azure says.
async fn follow(core: &Coordinator, side: &AzureSide, job: &JobRecord) -> Result<Outcome> {
    let i = &job.intent;
    match side.arm.get_job(&i.subscription_id, &i.resource_group, &i.job_name).await {
        Ok((found, etag)) => {
            let mut snap = state::snapshot(&found);
            if i.kind == DiskKind::DataboxDisk {
                delivered(core, side, job, &found, &snap).await?;
            }
            update_details(core, side, job, &found, etag.as_deref(), &snap).await?;
            read_copy_logs(side, job, &mut snap).await;
            let changes = core.mirror_job(&i.seed_id, &snap).await?;
            for c in changes {
                tracing::info!(job = %i.job_name, "{c}");
            }
            Ok(Outcome::Done)
        }
        Err(e) if e.is_not_found() => {
            tracing::warn!(job = %i.job_name, "import job no longer exists in Azure");
            core.job_gone(&i.seed_id).await?;
            Ok(Outcome::Done)
        }
        Err(e) => unavailable(core, job, &e).await,
    }
}

/// Data Box Disk: once Azure says the disks are delivered, their keys and the passkey are
/// read (`listCredentials`) and escrowed, and the seed's disk-prep work is queued. Before
/// delivery Azure refuses the passkey (`DevicesNotDelivered`); that, or no answer, is tried
/// again at the next poll. Credentials Azure gives wrong (a serial twice, a key that is no
/// recovery password) are surfaced on the seed and not used.
async fn delivered(
    core: &Coordinator,
    side: &AzureSide,
    job: &JobRecord,
    found: &model::JobResource,
    snap: &JobSnapshot,
) -> Result<()> {
    use seedship_azure::databox::StageName;
    let i = &job.intent;
    let seed = core.seed_detail(&i.seed_id).await?.seed;
    if seed.state != SeedState::DisksOrdered || StageName::parse(&snap.state) != Some(StageName::Delivered) {
        return Ok(());
    }
    let creds = match side.arm.list_credentials(&i.subscription_id, &i.resource_group, &i.job_name).await {
        Ok(list) => state::disk_credentials(&list),
        Err(e) => {
            tracing::warn!(job = %i.job_name, error = %e, "the delivered disks' keys could not be read yet; retrying at the next poll");
            return Ok(());
        }
    };
    match creds {
        Ok(creds) => {
            core.disks_delivered(&i.seed_id, &creds, &state::disk_sizes(found)).await?;
            tracing::info!(job = %i.job_name, disks = creds.disks.len(), "Data Box Disks delivered; keys escrowed and disk prep queued");
        }
        Err(why) => {
            tracing::warn!(job = %i.job_name, %why, "the delivered disks' credentials are unusable");
            core.note_job(&i.seed_id, &format!("the delivered disks cannot be written yet: {why}")).await?;
        }
    }
    Ok(())
}

/// Before the disks are shipped, a job whose contact, return address or return carrier differ
/// from the settings (they changed since the job was made) is updated with a PATCH carrying
/// the ETag just read (`If-Match`): a change made in the portal since is not overwritten (Azure
/// answers 412, and the next poll reads the job again).
async fn update_details(
    core: &Coordinator,
    side: &AzureSide,
    job: &JobRecord,
    found: &model::JobResource,
    etag: Option<&str>,
    snap: &JobSnapshot,
) -> Result<()> {
    let i = &job.intent;
    if seedship_azure::databox::StageName::parse(&snap.state)
        != Some(seedship_azure::databox::StageName::AwaitingShipmentDetails)
    {
        return Ok(());
    }
    let Some(patch) = body::details_update(found, &side.cfg) else { return Ok(()) };
    if core.check_workers_fence().await.is_err() {
        return Ok(());
    }
    match side.arm.update_job(&i.subscription_id, &i.resource_group, &i.job_name, &patch, etag).await {
        Ok(_) => {
            let what = "the job's contact, return address and return carrier updated in Azure to the [azure.return_address] and [azure.return_shipping] settings";
            tracing::info!(job = %i.job_name, "{what}");
            core.note_job(&i.seed_id, what).await?;
        }
        Err(e) if e.code() == Some("PreconditionFailed") => {
            tracing::warn!(job = %i.job_name, "the job changed in Azure while it was being updated; reading it again");
        }
        Err(e) => {
            tracing::warn!(job = %i.job_name, error = %e, "the job's details could not be updated; retrying at the next poll");
        }
    }
    Ok(())
}

/// The errored files of each disk whose copy log is new, from `databoxcopylog` in the seed's
/// own storage account (a log Azure names elsewhere is not read). A log that cannot be read
/// now is read at a later poll.
async fn read_copy_logs(side: &AzureSide, job: &JobRecord, snap: &mut JobSnapshot) {
    let account = job.intent.storage_account_id.rsplit('/').next().unwrap_or_default().to_string();
    for d in snap.drives.iter_mut() {
        let before = job.drives.iter().find(|b| b.drive_id == d.drive_id);
        if let Some(b) = before.filter(|b| b.error_log_uri == d.error_log_uri) {
            d.errors = b.errors.clone();
            continue;
        }
        let Some(name) = copy_log_name(&d.error_log_uri) else { continue };
        let text = match side.accounts.store(&account) {
            Ok(store) => store.download(copylog::LOG_CONTAINER, &name).await,
            Err(e) => Err(e),
        };
        match text {
            Ok(bytes) => {
                d.errors = copylog::parse(&String::from_utf8_lossy(&bytes))
                    .into_iter()
                    .map(|e| CopyError { path: e.path, category: e.category, code: e.code, message: e.message })
                    .collect();
            }
            Err(e) => {
                tracing::warn!(job = %job.intent.job_name, disk = %d.drive_id, error = %e, "the copy log could not be read yet");
                // Not remembered as read: the next poll tries again.
                d.error_log_uri = before.map(|b| b.error_log_uri.clone()).unwrap_or_default();
            }
        }
    }
}

/// The blob name of a copy log link, when it is one: `.../databoxcopylog/<order>_<serial>_CopyLog_<id>.xml`.
pub(crate) fn copy_log_name(link: &str) -> Option<String> {
    log_name(link).filter(|n| n.contains("_CopyLog_"))
}

/// The blob name of a copy log or verbose log link in `databoxcopylog`, when it is one.
pub(crate) fn log_name(link: &str) -> Option<String> {
    let path = link.split('?').next()?;
    let mut parts = path.rsplit('/');
    let name = parts.next()?;
    let container = parts.next()?;
    (container == copylog::LOG_CONTAINER
        && (name.contains("_CopyLog_") || name.contains("_VerboseLog_"))
        && name.ends_with(".xml")
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)))
    .then(|| name.to_string())
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
    if core.deadline_step(&job.intent.seed_id, d.kind, step, &text).await? {
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

#[cfg(test)]
mod tests {
    use super::*;

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
country = "NL"
phone = "+31 30 000 0000"
email = "backup@example.org"
[return_shipping]
carrier_name = "DHL"
carrier_account_number = "123456"
"#;

    #[test]
    fn the_job_body_names_each_disk_by_serial_with_its_manifest_and_key() {
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
            kind: DiskKind::CustomerDisk,
            round_of: None,
        };
        let intent = intent(&side, &seed);
        assert_eq!(
            intent.storage_account_id,
            "/subscriptions/0f0e0d0c-0000-4000-8000-00000000abcd/resourceGroups/seedship-rg/providers/Microsoft.Storage/storageAccounts/seedacct"
        );
        let drive = DriveSpec {
            drive_id: "SS-1".into(),
            position: 1,
            capacity_bytes: 1,
            bytes_written: 1,
            manifest_file: seedship_disk::azure::manifest::MANIFEST_PATH.into(),
            manifest_hash: "A".repeat(32),
            drive_header_hash: "b".repeat(64),
            status: DriveStatus::Prepared,
            status_reason: String::new(),
        };
        let key = RecoveryPassword("000011-000022-000033-000044-000055-000066-000077-000088".into());
        let put = serde_json::to_value(body::customer_disk_job(&intent, &side.cfg, vec![(drive, key)])).unwrap();
        let d = &put["properties"]["details"];
        assert_eq!(put["sku"]["name"], "DataBoxCustomerDisk");
        assert_eq!(d["jobDetailsType"], "DataBoxCustomerDisk");
        let disk = &d["importDiskDetailsCollection"]["SS-1"];
        assert_eq!(disk["manifestFile"], "\\DriveManifest.xml");
        assert_eq!(disk["manifestHash"], "A".repeat(32));
        assert_eq!(disk["bitLockerKey"], "000011-000022-000033-000044-000055-000066-000077-000088");
        assert_eq!(d["dataImportDetails"].as_array().unwrap().len(), 1);
        assert_eq!(d["dataImportDetails"][0]["accountDetails"]["storageAccountId"], intent.storage_account_id.as_str());
        assert_eq!(d["returnToCustomerPackageDetails"]["carrierAccountNumber"], "123456");
        assert_eq!(d["shippingAddress"]["country"], "NL");
        assert_eq!(put["tags"]["seedship-seed"], "sd-1");
        // The key never shows in Debug (logs).
        let shown = format!("{:?}", body::customer_disk_job(&intent, &side.cfg, vec![]));
        assert!(!shown.contains("123456"), "{shown}");
    }

    #[test]
    fn only_copy_logs_in_databoxcopylog_are_read() {
        let ok = "http://127.0.0.1:10000/acct/databoxcopylog/job-1_SS-1_CopyLog_0123abcd.xml";
        assert_eq!(copy_log_name(ok).as_deref(), Some("job-1_SS-1_CopyLog_0123abcd.xml"));
        assert_eq!(copy_log_name(&format!("{ok}?sv=2024&sig=x")).as_deref(), Some("job-1_SS-1_CopyLog_0123abcd.xml"));
        for bad in [
            "",
            "https://a.blob.core.windows.net/vault-x/job-1_SS-1_CopyLog_1.xml",
            "https://a.blob.core.windows.net/databoxcopylog/keys.bin",
            "https://a.blob.core.windows.net/databoxcopylog/..%2Fx_CopyLog_1.xml",
        ] {
            assert_eq!(copy_log_name(bad), None, "{bad}");
        }
    }
}
