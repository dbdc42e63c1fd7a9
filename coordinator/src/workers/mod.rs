//! The coordinator's background loops, one shape for all: a round every interval until the
//! server stops (or the service is gone), work per key with a back-off after failures
//! ([`Backoff`]: 1 s, 2 s, 4 s … up to a ceiling, the wait counted from the end of the call),
//! and one logging policy ([`report`]). Each worker reaches the store only through the
//! service.
//!
//! - [`sweeper`]: expired leases back to the queue, old idempotency records forgotten;
//! - [`jobs`]: the Azure import jobs (create, follow, deadlines, shipping not yet confirmed);
//! - [`verifier`]: imported seeds verified against their manifests, repairs asked;
//! - [`vaulter`]: verified seeds copied into their servers' vaults;
//! - [`leader`]: the workers' lease, which decides which coordinator runs the five above
//!   (and the notifier); the revocation refresh and certificate renewal run on every one.

pub mod auditor;
pub mod certs;
pub mod jobs;
pub mod leader;
pub mod notifier;
pub mod sweeper;
pub mod vaulter;
pub mod verifier;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::service::Coordinator;

/// Runs `round` every `interval` until `stop` changes or the service is dropped. A round that
/// fails is reported ([`report`]) and the next one runs at the next tick; one still running
/// when `stop` changes is dropped.
pub async fn run_every<F, Fut>(
    name: &'static str,
    interval: Duration,
    core: Weak<Coordinator>,
    mut stop: watch::Receiver<bool>,
    mut round: F,
) where
    F: FnMut(Arc<Coordinator>) -> Fut,
    Fut: Future<Output = crate::error::Result<()>>,
{
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failures = 0u32;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let Some(core) = core.upgrade() else { return };
        // A stop ends the round where it is (as a crash could, which every round survives):
        // a round cut short by the server's shutdown is not a failure to report.
        let outcome = tokio::select! {
            r = round(core) => r,
            _ = stop.changed() => return,
        };
        if *stop.borrow() {
            return;
        }
        match outcome {
            Ok(()) => {
                if failures > 0 {
                    tracing::info!(worker = name, failures, "round succeeds again");
                }
                failures = 0;
            }
            Err(e) => {
                failures += 1;
                report(name, "round", &e, failures, matches!(e, crate::error::Error::Unavailable(_)));
            }
        }
    }
}

/// [`run_every`] for the background workers that run on one coordinator at a time: a round
/// runs only while this coordinator holds the workers' lease ([`leader`] keeps it), and each of
/// their writes to Azure or a vault checks its fence first.
pub async fn run_as_leader<F, Fut>(
    name: &'static str,
    interval: Duration,
    core: Weak<Coordinator>,
    stop: watch::Receiver<bool>,
    mut round: F,
) where
    F: FnMut(Arc<Coordinator>) -> Fut,
    Fut: Future<Output = crate::error::Result<()>>,
{
    run_every(name, interval, core, stop, move |core| {
        let held = core.workers_fence().is_some();
        let fut = held.then(|| round(core));
        async move {
            match fut {
                Some(f) => f.await,
                None => Ok(()),
            }
        }
    })
    .await
}

/// The logging policy of every worker: a transient failure (storage or Azure not answering, a
/// locked database) is a WARN while it has failed fewer than 10 times in a row; otherwise, and
/// for anything a person must look at, an ERROR.
pub fn report(worker: &str, what: &str, error: &dyn std::fmt::Display, failures: u32, transient: bool) {
    if transient && failures < 10 {
        tracing::warn!(worker, %error, failures, "{what} failed; will retry");
    } else {
        tracing::error!(worker, %error, failures, "{what} failed");
    }
}

/// When each key (a seed, a shipping record) is next due, and how many calls for it failed in
/// a row.
#[derive(Debug, Default)]
pub struct Backoff {
    at: HashMap<String, (Instant, u32)>,
}

impl Backoff {
    /// Whether `key` may be worked on at `now`.
    pub fn ready(&self, key: &str, now: Instant) -> bool {
        self.at.get(key).is_none_or(|(t, _)| *t <= now)
    }

    /// `key` succeeded at `now` (the end of the call): next due after `next`.
    pub fn done(&mut self, key: &str, next: Duration, now: Instant) {
        if next.is_zero() {
            self.at.remove(key);
        } else {
            self.at.insert(key.to_string(), (now + next, 0));
        }
    }

    /// `key` failed at `now` (the end of the call): waits 1 s, 2 s, 4 s … up to `ceiling`.
    /// Returns the wait and the failures in a row.
    pub fn failed(&mut self, key: &str, ceiling: Duration, now: Instant) -> (Duration, u32) {
        let failures = self.at.get(key).map_or(0, |(_, f)| *f) + 1;
        let wait = Duration::from_secs(1 << (failures - 1).min(8)).min(ceiling.max(Duration::from_secs(1)));
        self.at.insert(key.to_string(), (now + wait, failures));
        (wait, failures)
    }

    /// Failures in a row of `key`.
    pub fn failures(&self, key: &str) -> u32 {
        self.at.get(key).map_or(0, |(_, f)| *f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_back_off_doubles_up_to_its_ceiling_and_success_resets_it() {
        let mut b = Backoff::default();
        let t0 = Instant::now();
        assert!(b.ready("s", t0));
        let waits: Vec<u64> = (0..6).map(|_| b.failed("s", Duration::from_secs(10), t0).0.as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 10, 10]);
        assert_eq!(b.failures("s"), 6);
        assert!(!b.ready("s", t0 + Duration::from_secs(9)));
        assert!(b.ready("s", t0 + Duration::from_secs(10)));
        b.done("s", Duration::from_secs(30), t0);
        assert_eq!(b.failures("s"), 0);
        assert!(!b.ready("s", t0 + Duration::from_secs(29)));
        b.done("s", Duration::ZERO, t0);
        assert!(b.ready("s", t0), "no wait after a success that asks none");
        assert!(b.ready("other", t0), "keys are apart");
    }
}
