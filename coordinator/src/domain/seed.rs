//! The seed lifecycle: a pure state machine.
//!
//! ```text
//!  register                 (Data Box Disk: Microsoft's disks are ordered first)
//!     |          +--disks_ordered--> [disks_ordered] --disks_delivered--+
//!     v          |                                                       v
//! [registered] --+------------------queue-----------------> [queued_for_disk_prep] <--------+
//!     ^                                                                  |                   |
//!     +------------- unqueue (the operator chose Microsoft's disks) -----+                   |
//!                                                                 lease_claimed    lease_lost (expired, released)
//!                                                                        v                   |
//!                                                                   [preparing] -------------+
//!                               |
//!                        disks_prepared
//!                               v
//!                       [disks_prepared] --import_job_created--> [import_job_created]
//!               (Data Box Disk: the job exists since the order; both events at once)
//!                                                                        |
//!                                                                     shipped
//!                                                                        v
//!   [importing] <--import_started-- [at_datacenter] <--received-- [shipped]
//!        ^                                                               |
//!        +----------------------- import_started ------------------------+
//!        |
//!  import_completed
//!        v
//!   [imported] --verification_started--> [verifying] --verification_passed--> [seeding_vault]
//!                                          |     ^                                  |
//!                          verification_failed  repaired                      vault_seeded
//!                                          v     |                                  v
//!                                       [needs_repair]                          [seeded]
//!
//!  a round (a new offline round for files its parent's import lost, `seedctl reship`):
//!   the same path from registered to imported, then [imported] --merge--> [merged]
//!   (its files are in the parent's import container; the parent is verified again)
//!
//!  fail:   any state but seeded/merged/failed/cancelled --> [failed]
//!  cancel: registered, disks_ordered, queued_for_disk_prep, preparing, disks_prepared,
//!          import_job_created (nothing shipped yet) --> [cancelled]
//! ```
//!
//! Adding a step means: a variant in [`SeedEvent`], a row in [`SeedState::apply`], and a row
//! in the exhaustive test below. Every applied event is recorded by the store with time, actor
//! and reason (see `seed_events`).

use serde::{Deserialize, Serialize};

/// Where a seed stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeedState {
    Registered,
    /// Data Box Disk: Microsoft's disks are ordered; waiting for them to be delivered.
    DisksOrdered,
    QueuedForDiskPrep,
    Preparing,
    DisksPrepared,
    ImportJobCreated,
    Shipped,
    AtDatacenter,
    Importing,
    Imported,
    Verifying,
    NeedsRepair,
    SeedingVault,
    Seeded,
    Failed,
    Cancelled,
    /// A round of lost files: imported into its parent's container; the parent carries on.
    Merged,
}

/// Something that happened to a seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeedEvent {
    Queue,
    /// The operator chose Microsoft's disks for a seed still waiting in the queue.
    Unqueue,
    /// Data Box Disk: the order is placed with Azure.
    DisksOrdered,
    /// Data Box Disk: the disks reached the customer, their keys are escrowed.
    DisksDelivered,
    LeaseClaimed,
    LeaseLost,
    DisksPrepared,
    ImportJobCreated,
    Shipped,
    Received,
    ImportStarted,
    ImportCompleted,
    VerificationStarted,
    VerificationFailed,
    Repaired,
    VerificationPassed,
    VaultSeeded,
    Fail,
    Cancel,
    /// An operator retries the import job of a seed that failed only because Azure refused to
    /// create it (its disks are prepared): the one way out of `failed`.
    RetryImportJob,
    /// A round's import is done: its files are in its parent's import container.
    Merge,
}

/// The event does not apply in the current state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("seed is {state}; {event} does not apply in that state")]
pub struct InvalidTransition {
    pub state: SeedState,
    pub event: SeedEvent,
}

impl SeedState {
    pub const ALL: [SeedState; 17] = [
        SeedState::Registered,
        SeedState::DisksOrdered,
        SeedState::QueuedForDiskPrep,
        SeedState::Preparing,
        SeedState::DisksPrepared,
        SeedState::ImportJobCreated,
        SeedState::Shipped,
        SeedState::AtDatacenter,
        SeedState::Importing,
        SeedState::Imported,
        SeedState::Verifying,
        SeedState::NeedsRepair,
        SeedState::SeedingVault,
        SeedState::Seeded,
        SeedState::Failed,
        SeedState::Cancelled,
        SeedState::Merged,
    ];

    /// The next state after `event`, or why it cannot happen.
    pub fn apply(self, event: SeedEvent) -> Result<SeedState, InvalidTransition> {
        use SeedEvent as E;
        use SeedState as S;
        let next = match (self, event) {
            (S::Registered, E::Queue) => S::QueuedForDiskPrep,
            (S::QueuedForDiskPrep, E::Unqueue) => S::Registered,
            (S::Registered, E::DisksOrdered) => S::DisksOrdered,
            (S::DisksOrdered, E::DisksDelivered) => S::QueuedForDiskPrep,
            (S::QueuedForDiskPrep, E::LeaseClaimed) => S::Preparing,
            (S::Preparing, E::LeaseLost) => S::QueuedForDiskPrep,
            (S::Preparing, E::DisksPrepared) => S::DisksPrepared,
            (S::DisksPrepared, E::ImportJobCreated) => S::ImportJobCreated,
            (S::ImportJobCreated, E::Shipped) => S::Shipped,
            (S::Shipped, E::Received) => S::AtDatacenter,
            (S::Shipped | S::AtDatacenter, E::ImportStarted) => S::Importing,
            (S::Importing, E::ImportCompleted) => S::Imported,
            (S::Imported, E::VerificationStarted) => S::Verifying,
            (S::Verifying, E::VerificationFailed) => S::NeedsRepair,
            (S::NeedsRepair, E::Repaired) => S::Verifying,
            (S::Verifying, E::VerificationPassed) => S::SeedingVault,
            (S::SeedingVault, E::VaultSeeded) => S::Seeded,
            // The store allows it only for a round (a seed with a parent).
            (S::Imported, E::Merge) => S::Merged,
            (s, E::Fail) if !s.is_terminal() => S::Failed,
            // The store allows it only when the import job was refused and no job exists.
            (S::Failed, E::RetryImportJob) => S::DisksPrepared,
            (
                S::Registered
                | S::DisksOrdered
                | S::QueuedForDiskPrep
                | S::Preparing
                | S::DisksPrepared
                | S::ImportJobCreated,
                E::Cancel,
            ) => S::Cancelled,
            (state, event) => return Err(InvalidTransition { state, event }),
        };
        Ok(next)
    }

    /// No event leaves a terminal state, but an operator's retry of a refused import job
    /// (`RetryImportJob`, failed → disks_prepared).
    pub fn is_terminal(self) -> bool {
        matches!(self, SeedState::Seeded | SeedState::Failed | SeedState::Cancelled | SeedState::Merged)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SeedState::Registered => "registered",
            SeedState::DisksOrdered => "disks_ordered",
            SeedState::QueuedForDiskPrep => "queued_for_disk_prep",
            SeedState::Preparing => "preparing",
            SeedState::DisksPrepared => "disks_prepared",
            SeedState::ImportJobCreated => "import_job_created",
            SeedState::Shipped => "shipped",
            SeedState::AtDatacenter => "at_datacenter",
            SeedState::Importing => "importing",
            SeedState::Imported => "imported",
            SeedState::Verifying => "verifying",
            SeedState::NeedsRepair => "needs_repair",
            SeedState::SeedingVault => "seeding_vault",
            SeedState::Seeded => "seeded",
            SeedState::Failed => "failed",
            SeedState::Cancelled => "cancelled",
            SeedState::Merged => "merged",
        }
    }

    pub fn parse(s: &str) -> Option<SeedState> {
        SeedState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// What the seed is waiting for, in words a backup admin understands.
    pub fn describe(self) -> &'static str {
        match self {
            SeedState::Registered => "registered with the coordinator",
            SeedState::DisksOrdered => "Microsoft's Data Box Disks are ordered; waiting for their delivery",
            SeedState::QueuedForDiskPrep => "waiting for a copy station to prepare the disks",
            SeedState::Preparing => "a copy station is writing the shipping disks",
            SeedState::DisksPrepared => "disks prepared; waiting for the import job to be created",
            SeedState::ImportJobCreated => "import job created; waiting for the disks to be shipped",
            SeedState::Shipped => "disks shipped; waiting for the datacenter to receive them",
            SeedState::AtDatacenter => "drives received at the datacenter",
            SeedState::Importing => "the datacenter is copying the drives into the storage account",
            SeedState::Imported => "import finished; waiting for verification",
            SeedState::Verifying => "verifying the imported data against the seed manifest",
            SeedState::NeedsRepair => "some imported data is missing or damaged; repairing",
            SeedState::SeedingVault => "copying the verified seed into the vault",
            SeedState::Seeded => "vault seeded; online incrementals are enabled",
            SeedState::Failed => "failed",
            SeedState::Cancelled => "cancelled",
            SeedState::Merged => "imported into its parent seed's container; the parent seed carries on",
        }
    }
}

impl std::fmt::Display for SeedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl SeedEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            SeedEvent::Queue => "queue",
            SeedEvent::Unqueue => "unqueue",
            SeedEvent::DisksOrdered => "disks_ordered",
            SeedEvent::DisksDelivered => "disks_delivered",
            SeedEvent::LeaseClaimed => "lease_claimed",
            SeedEvent::LeaseLost => "lease_lost",
            SeedEvent::DisksPrepared => "disks_prepared",
            SeedEvent::ImportJobCreated => "import_job_created",
            SeedEvent::Shipped => "shipped",
            SeedEvent::Received => "received",
            SeedEvent::ImportStarted => "import_started",
            SeedEvent::ImportCompleted => "import_completed",
            SeedEvent::VerificationStarted => "verification_started",
            SeedEvent::VerificationFailed => "verification_failed",
            SeedEvent::Repaired => "repaired",
            SeedEvent::VerificationPassed => "verification_passed",
            SeedEvent::VaultSeeded => "vault_seeded",
            SeedEvent::Fail => "fail",
            SeedEvent::Cancel => "cancel",
            SeedEvent::RetryImportJob => "retry_import_job",
            SeedEvent::Merge => "merge",
        }
    }
}

impl std::fmt::Display for SeedEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::SeedEvent as E;
    use super::SeedState as S;
    use super::*;

    const EVENTS: [SeedEvent; 21] = [
        E::Queue,
        E::Unqueue,
        E::DisksOrdered,
        E::DisksDelivered,
        E::LeaseClaimed,
        E::LeaseLost,
        E::DisksPrepared,
        E::ImportJobCreated,
        E::Shipped,
        E::Received,
        E::ImportStarted,
        E::ImportCompleted,
        E::VerificationStarted,
        E::VerificationFailed,
        E::Repaired,
        E::VerificationPassed,
        E::VaultSeeded,
        E::Fail,
        E::Cancel,
        E::RetryImportJob,
        E::Merge,
    ];

    /// The complete transition table; every (state, event) pair not listed must be refused.
    fn expected(state: SeedState, event: SeedEvent) -> Option<SeedState> {
        let table: &[(S, E, S)] = &[
            (S::Registered, E::Queue, S::QueuedForDiskPrep),
            (S::QueuedForDiskPrep, E::Unqueue, S::Registered),
            (S::Registered, E::DisksOrdered, S::DisksOrdered),
            (S::DisksOrdered, E::DisksDelivered, S::QueuedForDiskPrep),
            (S::QueuedForDiskPrep, E::LeaseClaimed, S::Preparing),
            (S::Preparing, E::LeaseLost, S::QueuedForDiskPrep),
            (S::Preparing, E::DisksPrepared, S::DisksPrepared),
            (S::DisksPrepared, E::ImportJobCreated, S::ImportJobCreated),
            (S::ImportJobCreated, E::Shipped, S::Shipped),
            (S::Shipped, E::Received, S::AtDatacenter),
            (S::Shipped, E::ImportStarted, S::Importing),
            (S::AtDatacenter, E::ImportStarted, S::Importing),
            (S::Importing, E::ImportCompleted, S::Imported),
            (S::Imported, E::VerificationStarted, S::Verifying),
            (S::Verifying, E::VerificationFailed, S::NeedsRepair),
            (S::NeedsRepair, E::Repaired, S::Verifying),
            (S::Verifying, E::VerificationPassed, S::SeedingVault),
            (S::SeedingVault, E::VaultSeeded, S::Seeded),
            (S::Failed, E::RetryImportJob, S::DisksPrepared),
            (S::Imported, E::Merge, S::Merged),
        ];
        if let Some((_, _, to)) = table.iter().find(|(s, e, _)| *s == state && *e == event) {
            return Some(*to);
        }
        match event {
            E::Fail if !matches!(state, S::Seeded | S::Failed | S::Cancelled | S::Merged) => Some(S::Failed),
            E::Cancel
                if matches!(
                    state,
                    S::Registered
                        | S::DisksOrdered
                        | S::QueuedForDiskPrep
                        | S::Preparing
                        | S::DisksPrepared
                        | S::ImportJobCreated
                ) =>
            {
                Some(S::Cancelled)
            }
            _ => None,
        }
    }

    #[test]
    fn every_state_event_pair_matches_the_table() {
        for state in SeedState::ALL {
            for event in EVENTS {
                assert_eq!(state.apply(event).ok(), expected(state, event), "{state} + {event}");
            }
        }
    }

    #[test]
    fn happy_path_reaches_seeded_and_terminals_are_final() {
        let path = [
            E::Queue,
            E::LeaseClaimed,
            E::DisksPrepared,
            E::ImportJobCreated,
            E::Shipped,
            E::Received,
            E::ImportStarted,
            E::ImportCompleted,
            E::VerificationStarted,
            E::VerificationFailed,
            E::Repaired,
            E::VerificationPassed,
            E::VaultSeeded,
        ];
        let end = path.iter().try_fold(S::Registered, |s, e| s.apply(*e)).unwrap();
        assert_eq!(end, S::Seeded);
        for t in [S::Seeded, S::Failed, S::Cancelled, S::Merged] {
            assert!(t.is_terminal());
            for e in EVENTS {
                // The one way out: an operator's retry of a refused import job.
                if (t, e) == (S::Failed, E::RetryImportJob) {
                    continue;
                }
                assert!(t.apply(e).is_err(), "{t} + {e} must be refused");
            }
        }
    }

    #[test]
    fn microsofts_disks_are_ordered_and_delivered_before_the_queue() {
        let path = [E::DisksOrdered, E::DisksDelivered, E::LeaseClaimed, E::DisksPrepared, E::ImportJobCreated];
        assert_eq!(path.iter().try_fold(S::Registered, |s, e| s.apply(*e)).unwrap(), S::ImportJobCreated);
        assert_eq!(S::QueuedForDiskPrep.apply(E::Unqueue), Ok(S::Registered));
        assert!(S::DisksOrdered.apply(E::LeaseClaimed).is_err(), "no disk prep before the disks are here");
        assert_eq!(S::DisksOrdered.apply(E::Cancel), Ok(S::Cancelled));
    }

    #[test]
    fn names_round_trip() {
        for s in SeedState::ALL {
            assert_eq!(SeedState::parse(s.as_str()), Some(s));
        }
        assert_eq!(SeedState::parse("nope"), None);
    }

    #[test]
    fn shipped_seed_cannot_be_cancelled() {
        let err = S::Shipped.apply(E::Cancel).unwrap_err();
        assert_eq!(err.to_string(), "seed is shipped; cancel does not apply in that state");
    }
}
