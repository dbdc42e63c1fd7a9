//! One coordinator among several runs the background workers: it holds the workers' lease
//! (a row in the database, renewed every third of its lifetime), and checks its fence before
//! every write to Azure or a vault. A coordinator that lost the lease (paused past it, cut off
//! from the database, or another took over) stops acting at its next check.

use std::sync::Mutex;
use std::time::Duration;

use super::Coordinator;
use crate::domain::lease::WorkerFence;
use crate::error::{Error, Result};

/// The one workers' lease.
pub const WORKERS: &str = "workers";

/// This coordinator's side of the workers' lease.
#[derive(Debug)]
pub struct Leader {
    /// Who this coordinator is among several: its host and listening address (a restart on
    /// the same address takes its own lease back at once).
    pub instance: String,
    pub ttl: Duration,
    held: Mutex<Option<WorkerFence>>,
}

impl Leader {
    pub fn new(instance: String, ttl: Duration) -> Leader {
        Leader { instance, ttl, held: Mutex::new(None) }
    }
}

impl Default for Leader {
    fn default() -> Leader {
        Leader::new("coordinator".into(), Duration::from_secs(15))
    }
}

impl Coordinator {
    /// Takes or renews the workers' lease; whether this coordinator holds it. A failure to
    /// reach the database keeps a lease that has not run out yet.
    pub async fn hold_workers(&self) -> Result<bool> {
        let now = self.clock.now_ms();
        let l = &self.leader;
        let got = self.store.take_worker_lease(WORKERS, &l.instance, now, l.ttl.as_millis() as i64).await;
        let mut held = l.held.lock().map_err(|_| Error::Internal("the workers' lease state is poisoned".into()))?;
        match got {
            Ok(Some(f)) => {
                if held.as_ref().map(|h| h.generation) != Some(f.generation) {
                    tracing::info!(instance = %l.instance, generation = f.generation, "this coordinator runs the background workers");
                }
                *held = Some(f);
                Ok(true)
            }
            Ok(None) => {
                if held.take().is_some() {
                    tracing::warn!(instance = %l.instance, "another coordinator holds the background workers' lease; this one stops them");
                }
                Ok(false)
            }
            Err(e) => {
                if held.as_ref().is_some_and(|h| h.expires_ms <= now) {
                    *held = None;
                    tracing::warn!(instance = %l.instance, error = %e, "the background workers' lease ran out unrenewed; this coordinator stops them");
                }
                Err(e)
            }
        }
    }

    /// The workers' fence while this coordinator holds the lease (by its own clock).
    pub fn workers_fence(&self) -> Option<WorkerFence> {
        let now = self.clock.now_ms();
        self.leader.held.lock().ok()?.clone().filter(|f| f.expires_ms > now)
    }

    /// Checked right before every write to Azure or a vault: the lease is still this
    /// coordinator's, in the database. Refused (FAILED_PRECONDITION) otherwise, and the lease
    /// is dropped here.
    pub async fn check_workers_fence(&self) -> Result<WorkerFence> {
        let f = self.workers_fence().ok_or_else(|| {
            Error::FailedPrecondition("this coordinator does not hold the background workers' lease".into())
        })?;
        if let Err(e) = self.store.check_worker_fence(&f, self.clock.now_ms()).await {
            if matches!(e, Error::FailedPrecondition(_)) {
                if let Ok(mut held) = self.leader.held.lock() {
                    *held = None;
                }
                tracing::warn!(instance = %self.leader.instance, error = %e, "the background workers' lease is lost; nothing more is sent to Azure from here");
            }
            return Err(e);
        }
        Ok(f)
    }
}
