//! Disk-prep work items and their leases: pure rules, no I/O.
//!
//! ```text
//!             claim (generation += 1)
//!   [queued] ------------------------> [leased] --complete--> [done]
//!      ^                                 |  |
//!      +---- release / expiry (sweeper) -+  +-- renew / progress / report drive (same generation)
//!
//!   [waiting] --disks delivered--> [queued]   (Data Box Disk: nothing to write on before)
//!   any non-done state --cancel--> [cancelled]
//! ```
//!
//! The generation is the fencing token: it grows by one at every claim and never goes back,
//! so a station that lost its lease (expiry, release, a pause longer than the TTL) is refused
//! by every later call. Progress is a `(from, to]` byte delta: `from` must be the recorded
//! position, so a retry cannot count twice and a stale station cannot rewind.

use serde::{Deserialize, Serialize};

use crate::clock::UnixMs;
use crate::domain::model::ProgressDelta;
use crate::error::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkState {
    Queued,
    Leased,
    Done,
    Cancelled,
    /// Released too often without progress: waits for an operator (`seedctl retry`).
    Held,
    /// Data Box Disk: waits for Microsoft's disks to be delivered; not claimable.
    Waiting,
}

impl WorkState {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkState::Queued => "queued",
            WorkState::Leased => "leased",
            WorkState::Done => "done",
            WorkState::Cancelled => "cancelled",
            WorkState::Held => "held",
            WorkState::Waiting => "waiting",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [
            WorkState::Queued,
            WorkState::Leased,
            WorkState::Done,
            WorkState::Cancelled,
            WorkState::Held,
            WorkState::Waiting,
        ]
        .into_iter()
        .find(|w| w.as_str() == s)
    }
}

/// The work phase of a station waiting for the operator (more disks, a replacement disk).
pub const WAITING: &str = "waiting";

/// One seed's disk-prep work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkItem {
    pub work_id: String,
    pub seed_id: String,
    pub state: WorkState,
    /// Fencing token of the newest lease; 0 before the first claim.
    pub generation: u64,
    /// Station name holding the lease.
    pub holder: Option<String>,
    pub lease_expires_ms: UnixMs,
    pub progress_bytes: u64,
    pub total_bytes: u64,
    pub phase: String,
    pub target_site: Option<String>,
    pub target_station: Option<String>,
}

/// How released work waits before a station may claim it again: `base_ms` after the first
/// release, doubling with each further one (at most an hour), and after `max_releases` in a
/// row without progress it is held for an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base_ms: i64,
    pub max_releases: u32,
}

impl Backoff {
    /// The wait after release number `n` (1 for the first).
    pub fn wait_ms(&self, n: u32) -> i64 {
        let shift = n.saturating_sub(1).min(20);
        self.base_ms.saturating_mul(1 << shift).min(3_600_000)
    }
}

/// A station giving work back: why, whether the staging set itself is wrong (the seed fails),
/// and how the work then waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub reason: String,
    pub staging_invalid: bool,
    pub backoff: Backoff,
}

/// The background workers' lease as its holder knows it: `generation` is the fencing token
/// every Azure write is checked against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerFence {
    pub name: String,
    pub holder: String,
    pub generation: u64,
    pub expires_ms: i64,
}

/// The lease a caller claims to hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fence {
    pub work_id: String,
    pub generation: u64,
}

/// How a seed's source runs, as it reported at registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceHost {
    /// "none", "kvm", "vmware", ...; empty when it could not tell.
    pub virtualization: String,
    pub hostname: String,
}

/// How a copy station runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StationHost {
    pub virtualization: String,
    pub hostname: String,
}

/// Azure's rule: a seed from a virtual machine is prepared on a separate physical copy station
/// (one that runs on no hypervisor, on another host), unless an operator allowed otherwise for
/// that seed. A source that never registered, or could not tell how it runs, is not held to it.
pub fn vm_rule_allows(source: Option<&SourceHost>, station: &StationHost, allowed_by_operator: bool) -> bool {
    let Some(source) = source else { return true };
    allowed_by_operator
        || matches!(source.virtualization.as_str(), "" | "none")
        || (station.virtualization == "none" && source.hostname != station.hostname)
}

impl WorkItem {
    /// Whether `station` at `site` may claim this item.
    pub fn eligible_for(&self, station: &str, site: Option<&str>) -> bool {
        self.state == WorkState::Queued
            && self.target_station.as_deref().is_none_or(|t| t == station)
            && self.target_site.as_deref().is_none_or(|t| Some(t) == site)
    }

    /// Grants a new lease to `station`; the generation grows by one.
    pub fn claim(&mut self, station: &str, now: UnixMs, ttl_ms: i64) -> Result<(), Error> {
        if self.state != WorkState::Queued {
            return Err(Error::FailedPrecondition(format!(
                "work {} is {}, not queued",
                self.work_id,
                self.state.as_str()
            )));
        }
        self.state = WorkState::Leased;
        self.generation += 1;
        self.holder = Some(station.to_string());
        self.lease_expires_ms = now + ttl_ms;
        Ok(())
    }

    /// Checks that `station` holds the live lease `generation`.
    ///
    /// Order matters: a stale generation is FAILED_PRECONDITION even when someone else holds
    /// the item now (that is the normal "you lost it" case); the right generation presented by
    /// another station is PERMISSION_DENIED.
    pub fn check(&self, station: &str, generation: u64, now: UnixMs) -> Result<(), Error> {
        if generation != self.generation {
            return Err(Error::FailedPrecondition(format!(
                "stale lease on work {}: generation {generation} was superseded by {}; stop writing",
                self.work_id, self.generation
            )));
        }
        if self.state != WorkState::Leased {
            return Err(Error::FailedPrecondition(format!(
                "lease {generation} on work {} is no longer held (work is {}); stop writing",
                self.work_id,
                self.state.as_str()
            )));
        }
        if self.holder.as_deref() != Some(station) {
            return Err(Error::PermissionDenied(format!("work {} is leased to another station", self.work_id)));
        }
        if now >= self.lease_expires_ms {
            return Err(Error::FailedPrecondition(format!(
                "lease {generation} on work {} expired {} ms ago; stop writing and claim again",
                self.work_id,
                now - self.lease_expires_ms
            )));
        }
        Ok(())
    }

    pub fn renew(&mut self, station: &str, generation: u64, now: UnixMs, ttl_ms: i64) -> Result<(), Error> {
        self.check(station, generation, now)?;
        self.lease_expires_ms = now + ttl_ms;
        Ok(())
    }

    /// Applies a `(from, to]` progress delta and renews the lease.
    pub fn progress(
        &mut self,
        station: &str,
        generation: u64,
        delta: &ProgressDelta,
        now: UnixMs,
        ttl_ms: i64,
    ) -> Result<(), Error> {
        self.check(station, generation, now)?;
        let (from, to) = (delta.from, delta.to);
        if from != self.progress_bytes {
            return Err(Error::FailedPrecondition(format!(
                "progress on work {} is at {} bytes, not {from}; report ({}, to]",
                self.work_id, self.progress_bytes, self.progress_bytes
            )));
        }
        if to <= from {
            return Err(Error::invalid("to_bytes", format!("must be greater than from_bytes ({from}), got {to}")));
        }
        if to > self.total_bytes {
            return Err(Error::invalid(
                "to_bytes",
                format!("{to} is beyond the seed's total of {} bytes", self.total_bytes),
            ));
        }
        self.progress_bytes = to;
        self.phase = delta.phase.clone();
        self.lease_expires_ms = now + ttl_ms;
        Ok(())
    }

    pub fn complete(&mut self, station: &str, generation: u64, now: UnixMs) -> Result<(), Error> {
        self.check(station, generation, now)?;
        self.state = WorkState::Done;
        self.holder = None;
        self.lease_expires_ms = 0;
        Ok(())
    }

    /// Gives the work back to the queue; progress is kept for the next holder.
    pub fn release(&mut self, station: &str, generation: u64, now: UnixMs) -> Result<(), Error> {
        self.check(station, generation, now)?;
        self.requeue();
        Ok(())
    }

    /// Ends the work for good: its seed cannot be prepared as registered.
    pub fn abandon(&mut self, station: &str, generation: u64, now: UnixMs) -> Result<(), Error> {
        self.check(station, generation, now)?;
        self.state = WorkState::Cancelled;
        self.holder = None;
        self.lease_expires_ms = 0;
        Ok(())
    }

    /// Returns an expired lease to the queue. False if the lease is still live.
    pub fn expire(&mut self, now: UnixMs) -> bool {
        if self.state == WorkState::Leased && now >= self.lease_expires_ms {
            self.requeue();
            true
        } else {
            false
        }
    }

    /// An operator takes the work back (from its holder, or from held): queued again. The
    /// holder's next call is refused (the work is no longer leased), and it stops writing.
    pub fn revoke(&mut self) {
        self.requeue();
    }

    fn requeue(&mut self) {
        self.state = WorkState::Queued;
        self.holder = None;
        self.lease_expires_ms = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    fn d(from: u64, to: u64, phase: &str) -> ProgressDelta {
        ProgressDelta { from, to, phase: phase.into() }
    }

    fn item() -> WorkItem {
        WorkItem {
            work_id: "wk-1".into(),
            seed_id: "sd-1".into(),
            state: WorkState::Queued,
            generation: 0,
            holder: None,
            lease_expires_ms: 0,
            progress_bytes: 0,
            total_bytes: 1000,
            phase: String::new(),
            target_site: None,
            target_station: None,
        }
    }

    #[test]
    fn a_virtual_source_goes_to_a_physical_station_on_another_host() {
        let vm = SourceHost { virtualization: "kvm".into(), hostname: "fs01".into() };
        let metal = |host: &str| StationHost { virtualization: "none".into(), hostname: host.into() };
        let virt = StationHost { virtualization: "vmware".into(), hostname: "st1".into() };
        assert!(vm_rule_allows(Some(&vm), &metal("st1"), false));
        assert!(!vm_rule_allows(Some(&vm), &metal("fs01"), false), "the same host");
        assert!(!vm_rule_allows(Some(&vm), &virt, false), "a virtual station");
        assert!(vm_rule_allows(Some(&vm), &virt, true), "an operator allowed it");
        let physical = SourceHost { virtualization: "none".into(), hostname: "fs02".into() };
        assert!(vm_rule_allows(Some(&physical), &virt, false));
        let unknown = SourceHost { virtualization: String::new(), hostname: "fs03".into() };
        assert!(vm_rule_allows(Some(&unknown), &virt, false));
        assert!(vm_rule_allows(None, &virt, false), "a source that never registered");
    }

    #[test]
    fn claim_expire_reclaim_fences_the_old_holder() {
        let mut w = item();
        w.claim("a", 0, 100).unwrap();
        assert_eq!(w.generation, 1);
        w.renew("a", 1, 50, 100).unwrap();
        assert_eq!(w.lease_expires_ms, 150);
        assert!(!w.expire(149));
        assert!(w.expire(150));
        w.claim("b", 160, 100).unwrap();
        assert_eq!(w.generation, 2);
        let err = w.renew("a", 1, 170, 100).unwrap_err();
        assert!(matches!(err, Error::FailedPrecondition(ref m) if m.contains("stale")), "{err}");
        assert!(matches!(w.renew("c", 2, 170, 100), Err(Error::PermissionDenied(_))));
        w.renew("b", 2, 170, 100).unwrap();
    }

    #[test]
    fn expired_but_unswept_lease_is_refused() {
        let mut w = item();
        w.claim("a", 0, 100).unwrap();
        let err = w.progress("a", 1, &d(0, 10, "copy"), 100, 100).unwrap_err();
        assert!(matches!(err, Error::FailedPrecondition(ref m) if m.contains("expired")));
        assert_eq!(w.progress_bytes, 0);
    }

    #[test]
    fn progress_is_a_checked_delta() {
        let mut w = item();
        w.claim("a", 0, 100).unwrap();
        w.progress("a", 1, &d(0, 400, "copy"), 10, 100).unwrap();
        assert_eq!(w.progress_bytes, 400);
        // A retry of the same delta, or a rewind, is refused and changes nothing.
        assert!(matches!(w.progress("a", 1, &d(0, 400, "copy"), 11, 100), Err(Error::FailedPrecondition(_))));
        assert!(matches!(w.progress("a", 1, &d(400, 400, "copy"), 11, 100), Err(Error::InvalidArgument { .. })));
        assert!(matches!(w.progress("a", 1, &d(400, 1001, "copy"), 11, 100), Err(Error::InvalidArgument { .. })));
        w.progress("a", 1, &d(400, 1000, "verify"), 12, 100).unwrap();
        assert_eq!((w.progress_bytes, w.phase.as_str()), (1000, "verify"));
    }

    #[test]
    fn release_keeps_progress_and_done_is_final() {
        let mut w = item();
        w.claim("a", 0, 100).unwrap();
        w.progress("a", 1, &d(0, 300, "copy"), 1, 100).unwrap();
        w.release("a", 1, 2).unwrap();
        assert_eq!((w.state, w.progress_bytes), (WorkState::Queued, 300));
        w.claim("b", 3, 100).unwrap();
        w.complete("b", 2, 4).unwrap();
        assert_eq!(w.state, WorkState::Done);
        assert!(w.claim("c", 5, 100).is_err());
        assert!(!w.expire(i64::MAX));
    }

    #[test]
    fn targeting() {
        let mut w = item();
        assert!(w.eligible_for("any", None));
        w.target_site = Some("east".into());
        assert!(!w.eligible_for("s1", None));
        assert!(!w.eligible_for("s1", Some("west")));
        assert!(w.eligible_for("s1", Some("east")));
        w.target_station = Some("s2".into());
        assert!(!w.eligible_for("s1", Some("east")));
        assert!(w.eligible_for("s2", Some("east")));
    }
}
