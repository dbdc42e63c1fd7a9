//! Links the audit entries operations recorded (`audit_pending`) into the hash chain, every
//! quarter of a second on the workers' leader: a little at a time, so that a busy coordinator
//! (some 1,400 entries a second at 2,000 lease operations a second) never has a burst of
//! thousands to chain at once while stations wait (docs/benchmarks.md, lease operations).
//! Readers of the log chain what is left first, so they never miss an entry.

use std::sync::Weak;
use std::time::Duration;

use tokio::sync::watch;

use crate::service::Coordinator;

/// How often the leader chains what was recorded.
pub const EVERY: Duration = Duration::from_millis(250);

pub async fn run(core: Weak<Coordinator>, stop: watch::Receiver<bool>) {
    super::run_as_leader("auditor", EVERY, core, stop, |core| async move { core.chain_audit().await.map(|_| ()) }).await
}
