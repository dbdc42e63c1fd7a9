//! The Azure import job as the coordinator follows it: pure rules, no I/O.
//!
//! - [`follow`]: which seed events bring a seed in line with the job state Azure reports.
//! - [`Deadline`]: Azure's two 14-day clocks (tracking number after creation, delivery after
//!   shipping), the warning steps at days 10, 12 and 13, and the expiry at 14.
//! - [`drive_changes`]: what changed on each drive between two polls, in words for the history.

use serde::{Deserialize, Serialize};

use crate::clock::{UnixMs, rfc3339};
use crate::domain::seed::{SeedEvent, SeedState};

pub const DAY_MS: i64 = 86_400_000;
/// Azure deletes a job without a tracking number, and gives up on drives not received, after
/// this many days.
pub const DEADLINE_DAYS: i64 = 14;
/// The days on which operators are warned; day 14 is the expiry.
pub const WARN_DAYS: [i64; 3] = [10, 12, 13];
/// At most this many drives in one import job.
pub const MAX_DRIVES: usize = 10;

/// What the coordinator asks Azure to create, written before the PUT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobIntent {
    pub seed_id: String,
    pub job_name: String,
    pub subscription_id: String,
    pub resource_group: String,
    pub location: String,
    pub storage_account_id: String,
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

/// One drive as Azure reports it (strings as they came).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobDrive {
    pub drive_id: String,
    pub state: String,
    pub copy_status: String,
    pub percent_complete: Option<i64>,
    pub bytes_succeeded: Option<i64>,
    pub error_log_uri: String,
    pub verbose_log_uri: String,
    pub manifest_uri: String,
}

/// The parts of an Azure job the coordinator mirrors.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSnapshot {
    pub state: String,
    pub percent_complete: Option<i64>,
    pub drives: Vec<JobDrive>,
    /// The delivery package's tracking number, once Azure has one.
    pub delivery_tracking: Option<String>,
    pub cancel_requested: bool,
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
    pub drives: Vec<JobDrive>,
}

impl JobRecord {
    /// The deadline running now, if any.
    pub fn deadline(&self) -> Option<Deadline> {
        if self.phase != JobPhase::Created {
            return None;
        }
        match (self.created_ms, self.shipped_ms, self.azure_state.as_str()) {
            (Some(c), None, "Creating" | "") => Some(Deadline { kind: DeadlineKind::TrackingNumber, start_ms: c }),
            (_, Some(s), "Shipping" | "Creating") => Some(Deadline { kind: DeadlineKind::Delivery, start_ms: s }),
            _ => None,
        }
    }
}

/// Which of Azure's 14-day clocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadlineKind {
    /// From job creation until the tracking number is entered; then Azure deletes the job.
    TrackingNumber,
    /// From shipping until the datacenter receives the drives; then they are `NeverReceived`.
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
                "{} day(s) left to ship the drives and record the tracking number (Azure deletes the job at {due}); run `seedctl ship`",
                self.days_left(now)
            ),
            (DeadlineKind::TrackingNumber, true) => {
                format!("no tracking number within {DEADLINE_DAYS} days of creating the job: Azure deleted it at {due}")
            }
            (DeadlineKind::Delivery, false) => format!(
                "{} day(s) left for the datacenter to receive the drives (Azure marks them NeverReceived at {due}); check the shipment with the carrier",
                self.days_left(now)
            ),
            (DeadlineKind::Delivery, true) => format!(
                "the datacenter did not receive the drives within {DEADLINE_DAYS} days of shipping (deadline {due}): Azure marks them NeverReceived"
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

fn drive_summary(drives: &[JobDrive]) -> String {
    let mut attention: Vec<String> = drives
        .iter()
        .filter(|d| matches!(d.state.as_str(), "CompletedMoreInfo" | "NeverReceived"))
        .map(|d| {
            let why = if d.copy_status.is_empty() { String::new() } else { format!(": {}", d.copy_status) };
            let log =
                if d.error_log_uri.is_empty() { String::new() } else { format!(" (error log {})", d.error_log_uri) };
            format!("drive {} {}{why}{log}", d.drive_id, d.state)
        })
        .collect();
    attention.sort();
    attention.join("; ")
}

/// The seed events that bring a seed in `seed` in line with `job`, as Azure reports it.
///
/// Azure's job states map to seed states: `Creating` → import_job_created, `Shipping` →
/// shipped, `Received` → at_datacenter, `Transferring` → importing, `Packaging` and
/// `Completed` → imported. A `Closed` or cancelled job before the import finished fails the
/// seed with the reason (drives never received, more info). Unknown states are noted, raw.
pub fn follow(seed: SeedState, job: &JobSnapshot) -> Follow {
    let mut out = Follow::default();
    let target = match job.state.as_str() {
        "Creating" => SeedState::ImportJobCreated,
        "Shipping" => SeedState::Shipped,
        "Received" => SeedState::AtDatacenter,
        "Transferring" => SeedState::Importing,
        "Packaging" | "Completed" => SeedState::Imported,
        "Closed" | "Canceled" | "Cancelled" => {
            if rank(seed).is_some_and(|r| r < 4) {
                let why = if job.state == "Closed" {
                    let drives = drive_summary(&job.drives);
                    if drives.is_empty() {
                        "Azure closed the import job before the data was imported".to_string()
                    } else {
                        format!("Azure closed the import job before the data was imported: {drives}")
                    }
                } else {
                    "the import job was cancelled in Azure; the drives are returned".to_string()
                };
                out.events.push((SeedEvent::Fail, why));
            }
            return out;
        }
        other => {
            out.note = Some(format!("Azure reports job state {other:?}, which seedship does not know; shown as is"));
            return out;
        }
    };
    let (Some(mut at), Some(goal)) = (rank(seed), rank(target)) else {
        return out;
    };
    let steps = [
        (SeedEvent::Shipped, "Azure reports the drives shipping".to_string()),
        (SeedEvent::Received, "Azure reports the drives received at the datacenter".to_string()),
        (SeedEvent::ImportStarted, "the datacenter started copying the drives into the storage account".to_string()),
        (SeedEvent::ImportCompleted, {
            let drives = drive_summary(&job.drives);
            if drives.is_empty() {
                format!("Azure finished the import (job {}); every drive completed", job.state)
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

/// One line per drive whose state, copy status or logs changed between `before` and `after`.
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
            "drive {}: {}{}",
            d.drive_id,
            match old {
                Some(o) if o.state != d.state && !o.state.is_empty() => format!("{} -> {}", o.state, d.state),
                _ => d.state.clone(),
            },
            if d.copy_status.is_empty() { String::new() } else { format!(", copy status {}", d.copy_status) }
        );
        if let Some(p) = d.percent_complete {
            line.push_str(&format!(", {p}%"));
        }
        if let Some(b) = d.bytes_succeeded {
            line.push_str(&format!(", {b} bytes"));
        }
        if !d.error_log_uri.is_empty() {
            line.push_str(&format!(", error log {}", d.error_log_uri));
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
    let done = job.drives.iter().filter(|d| matches!(d.state.as_str(), "Completed" | "CompletedMoreInfo")).count();
    let pct = job.percent_complete.map(|p| format!(", {p}%")).unwrap_or_default();
    format!(
        "waiting for the import job to complete: Azure job state {}{pct}, {done} of {total} drive(s) copied",
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
    fn every_azure_state_maps_to_one_seed_state() {
        use SeedEvent as E;
        use SeedState as S;
        assert_eq!(events(S::ImportJobCreated, "Creating"), vec![]);
        assert_eq!(events(S::ImportJobCreated, "Shipping"), vec![E::Shipped]);
        assert_eq!(events(S::Shipped, "Received"), vec![E::Received]);
        assert_eq!(events(S::Shipped, "Transferring"), vec![E::Received, E::ImportStarted]);
        assert_eq!(
            events(S::ImportJobCreated, "Completed"),
            vec![E::Shipped, E::Received, E::ImportStarted, E::ImportCompleted]
        );
        assert_eq!(events(S::Importing, "Packaging"), vec![E::ImportCompleted]);
        assert_eq!(events(S::Imported, "Completed"), vec![]);
        // Never backwards, and nothing after the import is touched.
        assert_eq!(events(S::Importing, "Shipping"), vec![]);
        assert_eq!(events(S::Verifying, "Completed"), vec![]);
        // Each event sequence is valid in the lifecycle.
        for (seed, state) in
            [(S::ImportJobCreated, "Completed"), (S::Shipped, "Packaging"), (S::AtDatacenter, "Transferring")]
        {
            let mut s = seed;
            for e in events(seed, state) {
                s = s.apply(e).unwrap();
            }
            assert!(matches!(s, S::Importing | S::Imported));
        }
    }

    #[test]
    fn closed_and_cancelled_jobs_fail_the_seed_with_the_reason() {
        let f = follow(
            SeedState::Shipped,
            &snap("Closed", &[("D1", "NeverReceived", ""), ("D2", "CompletedMoreInfo", "wrong BitLocker key")]),
        );
        assert_eq!(f.events.len(), 1);
        assert_eq!(f.events[0].0, SeedEvent::Fail);
        assert!(f.events[0].1.contains("drive D1 NeverReceived"), "{}", f.events[0].1);
        assert!(f.events[0].1.contains("drive D2 CompletedMoreInfo: wrong BitLocker key"), "{}", f.events[0].1);
        assert_eq!(events(SeedState::ImportJobCreated, "Canceled"), vec![SeedEvent::Fail]);
        // Closed after the import finished is not a failure of the seed.
        assert_eq!(events(SeedState::Imported, "Closed"), vec![]);
    }

    #[test]
    fn unknown_states_are_noted_raw() {
        let f = follow(SeedState::Shipped, &snap("Teleporting", &[]));
        assert!(f.events.is_empty());
        assert!(f.note.unwrap().contains("\"Teleporting\""));
    }

    #[test]
    fn completed_more_info_is_in_the_import_reason() {
        let f = follow(
            SeedState::Importing,
            &snap(
                "Packaging",
                &[("D1", "Completed", "Completed"), ("D2", "CompletedMoreInfo", "manifest hash mismatch")],
            ),
        );
        assert_eq!(f.events[0].0, SeedEvent::ImportCompleted);
        assert!(f.events[0].1.contains("D2 CompletedMoreInfo: manifest hash mismatch"));
        assert!(!f.events[0].1.contains("D1"));
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
    }

    #[test]
    fn the_running_deadline_follows_the_job() {
        let mut r = JobRecord {
            intent: JobIntent {
                seed_id: "s".into(),
                job_name: "j".into(),
                subscription_id: "x".into(),
                resource_group: "rg".into(),
                location: "westeurope".into(),
                storage_account_id: "/a".into(),
            },
            phase: JobPhase::Created,
            azure_state: "Creating".into(),
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
            drives: vec![],
        };
        assert_eq!(r.deadline().unwrap().kind, DeadlineKind::TrackingNumber);
        r.shipped_ms = Some(9);
        r.azure_state = "Shipping".into();
        assert_eq!(r.deadline(), Some(Deadline { kind: DeadlineKind::Delivery, start_ms: 9 }));
        r.azure_state = "Received".into();
        assert_eq!(r.deadline(), None);
    }

    #[test]
    fn drive_changes_name_what_moved() {
        let before = snap("Transferring", &[("D1", "Received", "")]).drives;
        let mut after = snap("Transferring", &[("D1", "Transferring", "InProgress")]).drives;
        after[0].percent_complete = Some(0);
        assert_eq!(
            drive_changes(&before, &after),
            vec!["drive D1: Received -> Transferring, copy status InProgress, 0%"]
        );
        assert!(drive_changes(&after, &after).is_empty());
    }
}
