//! The Azure import job (a `Microsoft.DataBox` job) as the coordinator follows it: pure rules,
//! no I/O.
//!
//! - [`follow`]: which seed events bring a seed in line with the job's stage as Azure reports it.
//! - [`Deadline`]: the two 14-day clocks (shipment details after creation, delivery after
//!   shipping), the warning steps at days 10, 12 and 13, and the expiry at 14.
//! - [`drive_changes`]: what changed on each disk between two polls, in words for the history.

use seedship_azure::databox::{CopyStatus, SHIPMENT_DETAILS_DAYS, StageName, StageStatus};
use serde::{Deserialize, Serialize};

use crate::clock::{UnixMs, rfc3339};
use crate::domain::model::DiskKind;
use crate::domain::seed::{SeedEvent, SeedState};

pub const DAY_MS: i64 = 86_400_000;
/// Azure deletes a customer-disk job without shipment details after this many days; the
/// coordinator gives the datacenter as long to receive shipped disks.
pub const DEADLINE_DAYS: i64 = SHIPMENT_DETAILS_DAYS;
/// The days on which operators are warned; day 14 is the expiry.
pub const WARN_DAYS: [i64; 3] = [10, 12, 13];
/// At most this many disks in one customer-disk job.
pub const MAX_DRIVES: usize = seedship_azure::databox::MAX_CUSTOMER_DISKS;

/// At most this many disks in one Data Box Disk order.
pub const MAX_DATABOX_DISKS: u32 = seedship_azure::databox::MAX_DATABOX_DISKS as u32;

/// How many Data Box Disks a seed of `total_bytes` needs, with 2% room for the file system and
/// the disk's identity; `None` above Azure Backup's 7.2 TB per server on Data Box Disk, or when
/// one order of 5 does not hold it.
pub fn databox_disks_needed(total_bytes: u64) -> Option<u32> {
    use seedship_azure::databox::{DATABOX_DISK_PER_SERVER_BYTES, DATABOX_DISK_USABLE_BYTES as usable};
    if total_bytes > DATABOX_DISK_PER_SERVER_BYTES {
        return None;
    }
    let want = total_bytes.saturating_add(total_bytes / 50).max(1);
    let n = want.div_ceil(usable);
    (n <= MAX_DATABOX_DISKS as u64).then_some(n as u32)
}

/// The kind a new seed of `total_bytes` gets under the `policy` of `[azure] disk_kind`, and
/// why it differs from the policy when it does.
pub fn kind_for(policy: DiskKind, total_bytes: u64) -> (DiskKind, Option<String>) {
    match policy {
        DiskKind::DataboxDisk if databox_disks_needed(total_bytes).is_none() => (
            DiskKind::CustomerDisk,
            Some(format!(
                "{total_bytes} bytes are above what Azure Backup takes on Data Box Disk (7.2 TB per server); shipped on customer disks instead"
            )),
        ),
        k => (k, None),
    }
}

/// What an operator's change of kind looks at, loaded by the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindFacts {
    pub state: SeedState,
    pub kind: DiskKind,
    pub total_bytes: u64,
    /// The seed has an import job record (an intent, a job, or a refusal).
    pub has_job: bool,
    /// A copy station has claimed the seed's disk-prep work at some time.
    pub ever_claimed: bool,
}

/// Why the seed cannot be switched to `to` now, if it cannot: only before anything was done
/// with the other kind.
pub fn kind_change_problem(f: &KindFacts, to: DiskKind) -> Option<String> {
    if f.kind == to {
        return None;
    }
    if to == DiskKind::DataboxDisk && databox_disks_needed(f.total_bytes).is_none() {
        return Some(format!(
            "the seed holds {} bytes, more than Azure Backup takes on Data Box Disk (7.2 TB per server)",
            f.total_bytes
        ));
    }
    if f.has_job {
        return Some(match f.kind {
            DiskKind::DataboxDisk => {
                "Microsoft's disks are already ordered for it; cancel the seed (`seedctl cancel`) and register it again"
                    .into()
            }
            DiskKind::CustomerDisk => "its Azure job exists already".into(),
        });
    }
    if f.ever_claimed || !matches!(f.state, SeedState::Registered | SeedState::QueuedForDiskPrep) {
        return Some(format!("the seed is {}; the kind is chosen before a copy station starts on it", f.state));
    }
    None
}

/// What the coordinator asks Azure to create, written before the PUT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobIntent {
    pub seed_id: String,
    /// What the seed is shipped on: the job's SKU.
    #[serde(default)]
    pub kind: DiskKind,
    /// Data Box Disk: how many disks to order (0 for customer disks).
    #[serde(default)]
    pub disks: u32,
    pub job_name: String,
    pub subscription_id: String,
    pub resource_group: String,
    pub location: String,
    pub storage_account_id: String,
}

/// What the creation rules look at, loaded by the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFacts {
    /// The seed's prepared disks, in order.
    pub drives: Vec<DriveFact>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DriveFact {
    pub drive_id: String,
    pub key_escrowed: bool,
    /// The job name of another active job that has this disk, if any.
    pub in_other_active_job: Option<String>,
}

/// What stops the job from being created (Azure's rules), if anything: a valid job name, and
/// for customer disks 1 to 10 prepared disks, each with its key escrowed and in no other
/// active job; for Data Box Disk an order of 1 to 5 disks.
pub fn job_problem(intent: &JobIntent, facts: &JobFacts) -> Option<String> {
    if !seedship_azure::databox::paths::valid_job_name(&intent.job_name) {
        return Some(format!(
            "{:?} is not a valid Azure Data Box job name (3-24 letters, digits or '-', a letter or digit first and last)",
            intent.job_name
        ));
    }
    if intent.kind == DiskKind::DataboxDisk {
        return (intent.disks == 0 || intent.disks > MAX_DATABOX_DISKS)
            .then(|| format!("an order of {} Data Box Disk(s); Azure takes 1 to {MAX_DATABOX_DISKS}", intent.disks));
    }
    let n = facts.drives.len();
    if n == 0 || n > MAX_DRIVES {
        return Some(format!("{n} prepared disk(s); an Azure customer-disk job takes 1 to {MAX_DRIVES}"));
    }
    if let Some(d) = facts.drives.iter().find(|d| !d.key_escrowed) {
        return Some(format!("drive {} has no escrowed key; prepare the disk again", d.drive_id));
    }
    facts.drives.iter().find_map(|d| {
        d.in_other_active_job.as_ref().map(|other| {
            format!(
                "drive {} is already in active import job {other}; a drive serial can be in one active job only",
                d.drive_id
            )
        })
    })
}

/// Where the coordinator's record of a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobPhase {
    /// Written, not yet confirmed by Azure (the PUT may or may not have happened).
    Intent,
    /// Azure has the job.
    Created,
    /// Azure refused to create it; the reason is in `last_error`.
    Refused,
    /// The job is gone on the Azure side (deleted, or never there).
    Gone,
}

impl JobPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            JobPhase::Intent => "intent",
            JobPhase::Created => "created",
            JobPhase::Refused => "refused",
            JobPhase::Gone => "gone",
        }
    }
    pub fn parse(s: &str) -> Option<JobPhase> {
        [JobPhase::Intent, JobPhase::Created, JobPhase::Refused, JobPhase::Gone].into_iter().find(|p| p.as_str() == s)
    }
}

/// One disk as Azure reports it (strings as they came).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobDrive {
    /// The disk's serial number (the key of `importDiskDetailsCollection`).
    pub drive_id: String,
    /// Its `copyStatus` (`NotStarted`, `InProgress`, `Completed`, `DriveNotReceived`, ...).
    pub state: String,
    /// What the copy status means, and how many files errored.
    pub copy_status: String,
    pub percent_complete: Option<i64>,
    pub bytes_succeeded: Option<i64>,
    pub error_log_uri: String,
    pub verbose_log_uri: String,
    pub manifest_uri: String,
    /// The files the disk's copy log names as not imported (read by the coordinator).
    pub errors: Vec<CopyError>,
}

/// One file the datacenter could not import, from a disk's copy log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyError {
    pub path: String,
    pub category: String,
    pub code: i32,
    pub message: String,
}

/// The parts of an Azure job the coordinator mirrors.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSnapshot {
    /// The job's `status` (its current stage: `AwaitingShipmentDetails`, `DataCopy`, ...).
    pub state: String,
    /// The current stage's `stageStatus` (`InProgress`, `WaitingForCustomerAction`, ...).
    pub stage_status: String,
    /// The job's `error` (code: message), when Azure sets one.
    pub error: String,
    /// What Azure offers the customer (`mitigate`), when it waits for them.
    pub actions: Vec<String>,
    pub percent_complete: Option<i64>,
    pub drives: Vec<JobDrive>,
    /// The tracking number of the package to the datacenter, once Azure has one.
    pub delivery_tracking: Option<String>,
    pub cancel_requested: bool,
    /// Why the job was cancelled, as Azure keeps it (seedship's own start with [`CANCEL_PREFIX`]).
    pub cancellation_reason: String,
}

/// How seedship's own cancellations start their reason in Azure, so that a cancel seen by the
/// worker before the operator's request finishes cancels the seed (not fails it).
pub const CANCEL_PREFIX: &str = "seedship: ";

/// The disks are on their way to the datacenter, or past that.
pub fn shipped(job: &JobSnapshot) -> bool {
    matches!(
        StageName::parse(&job.state),
        Some(
            StageName::ShippedToAzureDc
                | StageName::PickedUp
                | StageName::AtAzureDc
                | StageName::ReadyToReceiveAtAzureDc
                | StageName::DataCopy
        )
    )
}

impl JobSnapshot {
    /// Azure waits for the customer (answered with `seedctl mitigate`).
    pub fn waits_for_customer(&self) -> bool {
        StageStatus::parse(&self.stage_status).is_some_and(StageStatus::waits_for_customer)
    }
}

/// Everything the coordinator keeps about a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    pub intent: JobIntent,
    pub phase: JobPhase,
    pub azure_state: String,
    pub percent_complete: Option<i64>,
    pub intent_ms: UnixMs,
    pub created_ms: Option<UnixMs>,
    pub shipped_ms: Option<UnixMs>,
    pub shipping_address: Vec<String>,
    pub last_polled_ms: Option<UnixMs>,
    pub unavailable_since_ms: Option<UnixMs>,
    pub last_error: String,
    pub warned_step: i64,
    pub warned_kind: String,
    /// The current stage's status, as Azure last said it.
    pub stage_status: String,
    /// What Azure offers when it waits for the customer.
    pub actions: Vec<String>,
    /// The job's error as Azure last said it ("code: message").
    pub azure_error: String,
    pub drives: Vec<JobDrive>,
}

impl JobRecord {
    /// Azure waits for the customer (answered with `seedctl mitigate`).
    pub fn waits_for_customer(&self) -> bool {
        StageStatus::parse(&self.stage_status).is_some_and(StageStatus::waits_for_customer)
    }

    /// The deadline running now, if any.
    pub fn deadline(&self) -> Option<Deadline> {
        if self.phase != JobPhase::Created {
            return None;
        }
        let stage = StageName::parse(&self.azure_state);
        let unknown = self.azure_state.is_empty();
        match (self.created_ms, self.shipped_ms) {
            (Some(c), None)
                if unknown || matches!(stage, Some(StageName::AwaitingShipmentDetails | StageName::Created)) =>
            {
                Some(Deadline { kind: DeadlineKind::TrackingNumber, start_ms: c })
            }
            (_, Some(s))
                if unknown
                    || matches!(stage, Some(StageName::ShippedToAzureDc | StageName::AwaitingShipmentDetails)) =>
            {
                Some(Deadline { kind: DeadlineKind::Delivery, start_ms: s })
            }
            _ => None,
        }
    }
}

/// Which of Azure's 14-day clocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadlineKind {
    /// From job creation until the shipment details (carrier, tracking number) are given; then
    /// Azure deletes the job.
    TrackingNumber,
    /// From shipping until the datacenter receives the disks.
    Delivery,
}

impl DeadlineKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DeadlineKind::TrackingNumber => "tracking_number",
            DeadlineKind::Delivery => "delivery",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    pub kind: DeadlineKind,
    pub start_ms: UnixMs,
}

impl Deadline {
    pub fn due_ms(&self) -> UnixMs {
        self.start_ms + DEADLINE_DAYS * DAY_MS
    }

    /// Whole days started since the clock began (day 0 is the first 24 hours).
    pub fn days_elapsed(&self, now: UnixMs) -> i64 {
        (now - self.start_ms).max(0) / DAY_MS
    }

    /// Days left, counting a started day as a whole one; 0 once due.
    pub fn days_left(&self, now: UnixMs) -> i64 {
        let left = self.due_ms() - now;
        if left <= 0 { 0 } else { (left + DAY_MS - 1) / DAY_MS }
    }

    pub fn expired(&self, now: UnixMs) -> bool {
        now >= self.due_ms()
    }

    /// The step to announce at `now`: 10, 12, 13 or 14 (expired), or 0 before day 10.
    pub fn step(&self, now: UnixMs) -> i64 {
        if self.expired(now) {
            return DEADLINE_DAYS;
        }
        let d = self.days_elapsed(now);
        WARN_DAYS.iter().copied().filter(|w| d >= *w).max().unwrap_or(0)
    }

    /// For operators: what is due, by when, and what to do.
    pub fn describe(&self, now: UnixMs) -> String {
        let due = rfc3339(self.due_ms());
        match (self.kind, self.expired(now)) {
            (DeadlineKind::TrackingNumber, false) => format!(
                "{} day(s) left to ship the disks and give the tracking number (Azure deletes the job at {due}); run `seedctl ship`",
                self.days_left(now)
            ),
            (DeadlineKind::TrackingNumber, true) => format!(
                "no shipment details within {DEADLINE_DAYS} days of creating the job: Azure deleted it at {due}"
            ),
            (DeadlineKind::Delivery, false) => format!(
                "{} day(s) left for the datacenter to receive the disks (deadline {due}); check the shipment with the carrier",
                self.days_left(now)
            ),
            (DeadlineKind::Delivery, true) => format!(
                "the datacenter did not receive the disks within {DEADLINE_DAYS} days of shipping (deadline {due}); check the shipment with the carrier"
            ),
        }
    }
}

/// How far along the import a seed state is (for following Azure forwards only).
fn rank(s: SeedState) -> Option<u8> {
    Some(match s {
        SeedState::ImportJobCreated => 0,
        SeedState::Shipped => 1,
        SeedState::AtDatacenter => 2,
        SeedState::Importing => 3,
        SeedState::Imported => 4,
        _ => return None,
    })
}

/// The result of comparing a seed with its Azure job.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Follow {
    /// Events to apply, in order, each with its reason.
    pub events: Vec<(SeedEvent, String)>,
    /// Set when Azure said something the lifecycle has no step for (an unknown state).
    pub note: Option<String>,
}

/// The disks that need attention: not copied in full, with what Azure says and the log.
fn drive_summary(drives: &[JobDrive]) -> String {
    let mut attention: Vec<String> = drives
        .iter()
        .filter(|d| CopyStatus::parse(&d.state).is_none_or(|c| c.is_failure() || c == CopyStatus::CompletedWithErrors))
        .filter(|d| !d.state.is_empty())
        .map(|d| {
            let why = if d.copy_status.is_empty() { String::new() } else { format!(": {}", d.copy_status) };
            let files = match d.errors.as_slice() {
                [] => String::new(),
                [e] => format!("; {}: {}", e.path, e.message),
                [e, rest @ ..] => format!("; {}: {} (and {} more)", e.path, e.message, rest.len()),
            };
            let log =
                if d.error_log_uri.is_empty() { String::new() } else { format!(" (copy log {})", d.error_log_uri) };
            format!("disk {} {}{why}{files}{log}", d.drive_id, d.state)
        })
        .collect();
    attention.sort();
    attention.join("; ")
}

/// The seed state a job stage means, or what it means for the seed: `Err(reason)` for a job
/// that ended without the data, `Ok(None)` for a stage this version does not know.
fn stage_target(job: &JobSnapshot) -> Result<Option<SeedState>, String> {
    let Some(stage) = StageName::parse(&job.state) else { return Ok(None) };
    Ok(Some(match stage {
        StageName::AwaitingShipmentDetails
        | StageName::Created
        | StageName::DeviceOrdered
        | StageName::DevicePrepared
        | StageName::Dispatched
        | StageName::Delivered => SeedState::ImportJobCreated,
        StageName::ShippedToAzureDc | StageName::PickedUp => SeedState::Shipped,
        StageName::AtAzureDc | StageName::ReadyToReceiveAtAzureDc => SeedState::AtDatacenter,
        StageName::DataCopy => SeedState::Importing,
        StageName::Completed
        | StageName::CompletedWithErrors
        | StageName::CompletedWithWarnings
        | StageName::PreparingToShipFromAzureDc
        | StageName::ReadyToDispatchFromAzureDc
        | StageName::ShippedToCustomer => SeedState::Imported,
        StageName::Cancelled => {
            return Err(match job.cancellation_reason.strip_prefix(CANCEL_PREFIX) {
                Some(why) => format!("{CANCEL_PREFIX}cancelled by an operator: {why}"),
                None => "the import job was cancelled in Azure; the disks are returned".into(),
            });
        }
        StageName::Aborted | StageName::FailedIssueReportedAtCustomer | StageName::FailedIssueDetectedAtAzureDc => {
            let drives = drive_summary(&job.drives);
            let error = if job.error.is_empty() { String::new() } else { format!(" ({})", job.error) };
            return Err(if drives.is_empty() {
                format!("Azure ended the import job {} before the data was imported{error}", job.state)
            } else {
                format!("Azure ended the import job {} before the data was imported{error}: {drives}", job.state)
            });
        }
    }))
}

/// The seed events that bring a seed in `seed` in line with `job`, as Azure reports it.
///
/// Stages map to seed states: until the disks are on their way → import_job_created,
/// `ShippedToAzureDC`/`PickedUp` → shipped, `AtAzureDC` → at_datacenter, `DataCopy` →
/// importing, `Completed*` and the return-shipping stages → imported. A cancelled, aborted or
/// failed job before the import finished fails the seed with the disks' reasons. An unknown
/// stage is noted, raw; so is a stage waiting for the customer (`seedctl mitigate`).
pub fn follow(seed: SeedState, job: &JobSnapshot) -> Follow {
    let mut out = Follow::default();
    if job.waits_for_customer() {
        let error = if job.error.is_empty() { String::new() } else { format!(": {}", job.error) };
        let offers =
            if job.actions.is_empty() { String::new() } else { format!(" (Azure offers {})", job.actions.join(", ")) };
        out.note = Some(format!(
            "Azure waits for a customer action in stage {}{error}{offers}; answer with `seedctl mitigate`",
            job.state
        ));
    }
    let target = match stage_target(job) {
        Ok(Some(t)) => t,
        Ok(None) => {
            out.note =
                Some(format!("Azure reports job stage {:?}, which seedship does not know; shown as is", job.state));
            return out;
        }
        Err(why) => {
            // Before the import finished (a Data Box Disk seed also while its disks are on
            // their way or being written): the seed ends with the job.
            let before_job = matches!(
                seed,
                SeedState::DisksOrdered
                    | SeedState::QueuedForDiskPrep
                    | SeedState::Preparing
                    | SeedState::DisksPrepared
            );
            if before_job || rank(seed).is_some_and(|r| r < 4) {
                // seedship's own cancel (an operator's, possibly still finishing): the seed is
                // cancelled, not failed.
                let event = match why.strip_prefix(CANCEL_PREFIX) {
                    Some(_) if seed.apply(SeedEvent::Cancel).is_ok() => SeedEvent::Cancel,
                    _ => SeedEvent::Fail,
                };
                out.events.push((event, why.trim_start_matches(CANCEL_PREFIX).to_string()));
            }
            return out;
        }
    };
    let (Some(mut at), Some(goal)) = (rank(seed), rank(target)) else {
        return out;
    };
    let steps = [
        (SeedEvent::Shipped, "Azure reports the disks shipped to the datacenter".to_string()),
        (SeedEvent::Received, "Azure reports the disks received at the datacenter".to_string()),
        (SeedEvent::ImportStarted, "the datacenter started copying the disks into the storage account".to_string()),
        (SeedEvent::ImportCompleted, {
            let drives = drive_summary(&job.drives);
            if drives.is_empty() {
                format!("Azure finished the import (job {}); every disk was copied", job.state)
            } else {
                format!("Azure finished the import (job {}); needs attention: {drives}", job.state)
            }
        }),
    ];
    while at < goal {
        let (event, reason) = steps[at as usize].clone();
        out.events.push((event, reason));
        at += 1;
    }
    out
}

/// One line per disk whose copy status or logs changed between `before` and `after`.
pub fn drive_changes(before: &[JobDrive], after: &[JobDrive]) -> Vec<String> {
    let mut out = Vec::new();
    for d in after {
        let old = before.iter().find(|b| b.drive_id == d.drive_id);
        let moved = old.is_none_or(|o| {
            o.state != d.state
                || o.copy_status != d.copy_status
                || o.error_log_uri != d.error_log_uri
                || o.verbose_log_uri != d.verbose_log_uri
        });
        if !moved {
            continue;
        }
        let mut line = format!(
            "disk {}: {}{}",
            d.drive_id,
            match old {
                Some(o) if o.state != d.state && !o.state.is_empty() => format!("{} -> {}", o.state, d.state),
                _ => d.state.clone(),
            },
            if d.copy_status.is_empty() { String::new() } else { format!(" ({})", d.copy_status) }
        );
        if let Some(p) = d.percent_complete {
            line.push_str(&format!(", {p}%"));
        }
        if let Some(b) = d.bytes_succeeded {
            line.push_str(&format!(", {b} bytes"));
        }
        if !d.error_log_uri.is_empty() {
            line.push_str(&format!(", copy log {}", d.error_log_uri));
        }
        if !d.verbose_log_uri.is_empty() {
            line.push_str(&format!(", verbose log {}", d.verbose_log_uri));
        }
        out.push(line);
    }
    out
}

/// What the seed shows while its job is followed, e.g. for `source-agent status`.
pub fn waiting_reason(job: &JobSnapshot) -> String {
    let total = job.drives.len();
    let done = job
        .drives
        .iter()
        .filter(|d| {
            CopyStatus::parse(&d.state).is_some_and(|c| !matches!(c, CopyStatus::NotStarted | CopyStatus::InProgress))
        })
        .count();
    let pct = job.percent_complete.map(|p| format!(", {p}%")).unwrap_or_default();
    format!(
        "waiting for the import job to complete: Azure job stage {}{pct}, {done} of {total} disk(s) done",
        job.state
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(state: &str, drives: &[(&str, &str, &str)]) -> JobSnapshot {
        JobSnapshot {
            state: state.into(),
            drives: drives
                .iter()
                .map(|(id, st, cs)| JobDrive {
                    drive_id: id.to_string(),
                    state: st.to_string(),
                    copy_status: cs.to_string(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn events(seed: SeedState, state: &str) -> Vec<SeedEvent> {
        follow(seed, &snap(state, &[])).events.into_iter().map(|(e, _)| e).collect()
    }

    #[test]
    fn every_stage_maps_to_one_seed_state() {
        use SeedEvent as E;
        use SeedState as S;
        assert_eq!(events(S::ImportJobCreated, "AwaitingShipmentDetails"), vec![]);
        assert_eq!(events(S::ImportJobCreated, "ShippedToAzureDC"), vec![E::Shipped]);
        assert_eq!(events(S::Shipped, "AtAzureDC"), vec![E::Received]);
        assert_eq!(events(S::Shipped, "DataCopy"), vec![E::Received, E::ImportStarted]);
        assert_eq!(
            events(S::ImportJobCreated, "Completed"),
            vec![E::Shipped, E::Received, E::ImportStarted, E::ImportCompleted]
        );
        assert_eq!(events(S::Importing, "CompletedWithErrors"), vec![E::ImportCompleted]);
        assert_eq!(events(S::Importing, "ShippedToCustomer"), vec![E::ImportCompleted]);
        assert_eq!(events(S::Imported, "Completed"), vec![]);
        // Never backwards, and nothing after the import is touched.
        assert_eq!(events(S::Importing, "ShippedToAzureDC"), vec![]);
        assert_eq!(events(S::Verifying, "Completed"), vec![]);
        // Every known stage has its meaning.
        for stage in seedship_azure::databox::StageName::ALL {
            let f = follow(S::ImportJobCreated, &snap(stage.as_str(), &[]));
            assert!(f.note.is_none(), "{stage:?}: {:?}", f.note);
        }
        // Each event sequence is valid in the lifecycle.
        for (seed, state) in
            [(S::ImportJobCreated, "Completed"), (S::Shipped, "CompletedWithWarnings"), (S::AtDatacenter, "DataCopy")]
        {
            let mut s = seed;
            for e in events(seed, state) {
                s = s.apply(e).unwrap();
            }
            assert!(matches!(s, S::Importing | S::Imported));
        }
    }

    #[test]
    fn failed_and_cancelled_jobs_fail_the_seed_with_the_reason() {
        let f = follow(
            SeedState::Shipped,
            &snap(
                "Failed_IssueDetectedAtAzureDC",
                &[
                    ("D1", "DriveNotReceived", "the disk never arrived at the datacenter"),
                    ("D2", "OtherUserError", "wrong key"),
                ],
            ),
        );
        assert_eq!(f.events.len(), 1);
        assert_eq!(f.events[0].0, SeedEvent::Fail);
        assert!(f.events[0].1.contains("disk D1 DriveNotReceived: the disk never arrived"), "{}", f.events[0].1);
        assert!(f.events[0].1.contains("disk D2 OtherUserError: wrong key"), "{}", f.events[0].1);
        assert_eq!(events(SeedState::ImportJobCreated, "Cancelled"), vec![SeedEvent::Fail]);
        // seedship's own cancel cancels the seed.
        let mut ours = snap("Cancelled", &[]);
        ours.cancellation_reason = format!("{CANCEL_PREFIX}ordered twice");
        let f = follow(SeedState::ImportJobCreated, &ours);
        assert_eq!(f.events, vec![(SeedEvent::Cancel, "cancelled by an operator: ordered twice".to_string())]);
        assert_eq!(events(SeedState::AtDatacenter, "Aborted"), vec![SeedEvent::Fail]);
        // Ended after the import finished is not a failure of the seed.
        assert_eq!(events(SeedState::Imported, "Cancelled"), vec![]);
    }

    #[test]
    fn unknown_stages_are_noted_raw_and_a_wait_for_the_customer_is_said() {
        let f = follow(SeedState::Shipped, &snap("Teleporting", &[]));
        assert!(f.events.is_empty());
        assert!(f.note.unwrap().contains("\"Teleporting\""));
        let mut waiting = snap("DataCopy", &[]);
        waiting.stage_status = "WaitingForCustomerAction".into();
        waiting.actions = vec!["Resume".into(), "MoveToCleanUpDevice".into()];
        waiting.error = "SsemUserCopyErrorWaitingForAction: the copy stopped".into();
        let f = follow(SeedState::Importing, &waiting);
        let note = f.note.unwrap();
        assert!(note.contains("seedctl mitigate") && note.contains("Resume, MoveToCleanUpDevice"), "{note}");
    }

    #[test]
    fn disks_not_copied_in_full_are_in_the_import_reason() {
        let f = follow(
            SeedState::Importing,
            &snap(
                "CompletedWithErrors",
                &[("D1", "Completed", "copied"), ("D2", "CompletedWithErrors", "2 file(s) errored")],
            ),
        );
        assert_eq!(f.events[0].0, SeedEvent::ImportCompleted);
        assert!(f.events[0].1.contains("disk D2 CompletedWithErrors: 2 file(s) errored"), "{}", f.events[0].1);
        assert!(!f.events[0].1.contains("D1"));
    }

    #[test]
    fn data_box_disk_seeds_hold_7_2_tb_and_the_kind_changes_only_before_work_starts() {
        let usable = seedship_azure::databox::DATABOX_DISK_USABLE_BYTES;
        assert_eq!(databox_disks_needed(1), Some(1));
        assert_eq!(databox_disks_needed(usable / 2), Some(1));
        assert_eq!(databox_disks_needed(usable), Some(2), "2% room for seedship's metadata");
        assert_eq!(databox_disks_needed(7_200_000_000_000), Some(2));
        assert_eq!(databox_disks_needed(7_200_000_000_001), None, "Azure Backup's limit per server");
        assert_eq!(kind_for(DiskKind::DataboxDisk, 10), (DiskKind::DataboxDisk, None));
        let (k, why) = kind_for(DiskKind::DataboxDisk, 5 * usable);
        assert!(k == DiskKind::CustomerDisk && why.unwrap().contains("customer disks"));
        let facts = KindFacts {
            state: SeedState::QueuedForDiskPrep,
            kind: DiskKind::CustomerDisk,
            total_bytes: 10,
            has_job: false,
            ever_claimed: false,
        };
        assert_eq!(kind_change_problem(&facts, DiskKind::DataboxDisk), None);
        assert_eq!(kind_change_problem(&facts, DiskKind::CustomerDisk), None, "no change is no problem");
        let big = KindFacts { total_bytes: 5 * usable, ..facts.clone() };
        assert!(kind_change_problem(&big, DiskKind::DataboxDisk).unwrap().contains("7.2 TB per server"));
        let claimed = KindFacts { ever_claimed: true, ..facts.clone() };
        assert!(kind_change_problem(&claimed, DiskKind::DataboxDisk).unwrap().contains("before a copy station"));
        let ordered = KindFacts { kind: DiskKind::DataboxDisk, has_job: true, state: SeedState::DisksOrdered, ..facts };
        assert!(kind_change_problem(&ordered, DiskKind::CustomerDisk).unwrap().contains("seedctl cancel"));
        let order = JobIntent {
            kind: DiskKind::DataboxDisk,
            disks: 6,
            seed_id: "sd-1".into(),
            job_name: "job-1".into(),
            subscription_id: "s".into(),
            resource_group: "rg".into(),
            location: "westeurope".into(),
            storage_account_id: "a".into(),
        };
        assert!(job_problem(&order, &JobFacts::default()).unwrap().contains("1 to 5"));
        assert_eq!(job_problem(&JobIntent { disks: 2, ..order }, &JobFacts::default()), None);
    }

    #[test]
    fn a_data_box_disk_order_cancelled_or_failed_before_the_disks_are_written_ends_the_seed() {
        for seed in [SeedState::DisksOrdered, SeedState::QueuedForDiskPrep, SeedState::Preparing] {
            let mut job = snap("Cancelled", &[]);
            job.cancellation_reason = format!("{CANCEL_PREFIX}wrong order");
            assert_eq!(follow(seed, &job).events[0].0, SeedEvent::Cancel, "{seed}");
            let failed = snap("Failed_IssueDetectedAtAzureDC", &[]);
            assert_eq!(follow(seed, &failed).events[0].0, SeedEvent::Fail, "{seed}");
        }
        // Delivered, not yet written: nothing to follow (the worker reads the keys).
        assert!(follow(SeedState::DisksOrdered, &snap("Delivered", &[])).events.is_empty());
        // Picked up after the disks were written: shipped.
        let f = follow(SeedState::ImportJobCreated, &snap("PickedUp", &[]));
        assert_eq!(f.events.iter().map(|e| e.0).collect::<Vec<_>>(), vec![SeedEvent::Shipped]);
    }

    #[test]
    fn the_creation_rules_name_what_is_wrong() {
        let intent = JobIntent {
            kind: DiskKind::CustomerDisk,
            disks: 0,
            seed_id: "s".into(),
            job_name: "job-1".into(),
            subscription_id: "x".into(),
            resource_group: "rg".into(),
            location: "westeurope".into(),
            storage_account_id: "/a".into(),
        };
        let disk = |id: &str, key: bool, other: Option<&str>| DriveFact {
            drive_id: id.into(),
            key_escrowed: key,
            in_other_active_job: other.map(String::from),
        };
        let facts = |d: Vec<DriveFact>| JobFacts { drives: d };
        assert_eq!(job_problem(&intent, &facts(vec![disk("A", true, None)])), None);
        let bad_name = JobIntent { job_name: "job_1".into(), ..intent.clone() };
        assert!(job_problem(&bad_name, &facts(vec![disk("A", true, None)])).unwrap().contains("not a valid"));
        assert!(job_problem(&intent, &facts(vec![])).unwrap().contains("0 prepared disk(s)"));
        let eleven = (0..11).map(|i| disk(&format!("D{i}"), true, None)).collect();
        assert!(job_problem(&intent, &facts(eleven)).unwrap().contains("takes 1 to 10"));
        assert!(job_problem(&intent, &facts(vec![disk("A", false, None)])).unwrap().contains("no escrowed key"));
        let taken = facts(vec![disk("A", true, None), disk("B", true, Some("job-9"))]);
        assert!(job_problem(&intent, &taken).unwrap().contains("drive B is already in active import job job-9"));
    }

    #[test]
    fn deadline_steps_at_10_12_13_and_expiry_at_14() {
        let d = Deadline { kind: DeadlineKind::TrackingNumber, start_ms: 1_000 };
        let at = |days: f64| 1_000 + (days * DAY_MS as f64) as i64;
        assert_eq!(d.step(at(9.9)), 0);
        assert_eq!(d.step(at(10.0)), 10);
        assert_eq!(d.step(at(11.5)), 10);
        assert_eq!(d.step(at(12.0)), 12);
        assert_eq!(d.step(at(13.2)), 13);
        assert_eq!(d.step(at(14.0)), 14);
        assert_eq!(d.days_left(at(10.0)), 4);
        assert_eq!(d.days_left(at(13.5)), 1);
        assert_eq!(d.days_left(at(15.0)), 0);
        assert!(d.describe(at(10.0)).starts_with("4 day(s) left"));
        assert!(d.describe(at(14.0)).contains("Azure deleted it"));
        assert!(d.describe(at(10.0)).contains("seedctl ship"));
    }

    #[test]
    fn the_running_deadline_follows_the_job() {
        let mut r = JobRecord {
            intent: JobIntent {
                kind: DiskKind::CustomerDisk,
                disks: 0,
                seed_id: "s".into(),
                job_name: "j".into(),
                subscription_id: "x".into(),
                resource_group: "rg".into(),
                location: "westeurope".into(),
                storage_account_id: "/a".into(),
            },
            phase: JobPhase::Created,
            azure_state: "AwaitingShipmentDetails".into(),
            percent_complete: None,
            intent_ms: 0,
            created_ms: Some(5),
            shipped_ms: None,
            shipping_address: vec![],
            last_polled_ms: None,
            unavailable_since_ms: None,
            last_error: String::new(),
            warned_step: 0,
            warned_kind: String::new(),
            stage_status: String::new(),
            actions: vec![],
            azure_error: String::new(),
            drives: vec![],
        };
        assert_eq!(r.deadline().unwrap().kind, DeadlineKind::TrackingNumber);
        r.shipped_ms = Some(9);
        r.azure_state = "ShippedToAzureDC".into();
        assert_eq!(r.deadline(), Some(Deadline { kind: DeadlineKind::Delivery, start_ms: 9 }));
        r.azure_state = "AtAzureDC".into();
        assert_eq!(r.deadline(), None);
    }

    #[test]
    fn drive_changes_name_what_moved() {
        let before = snap("AtAzureDC", &[("D1", "NotStarted", "")]).drives;
        let mut after = snap("DataCopy", &[("D1", "InProgress", "the copy is running")]).drives;
        after[0].percent_complete = Some(0);
        assert_eq!(drive_changes(&before, &after), vec!["disk D1: NotStarted -> InProgress (the copy is running), 0%"]);
        assert!(drive_changes(&after, &after).is_empty());
    }
}
