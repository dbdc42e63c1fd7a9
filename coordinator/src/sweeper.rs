//! The background sweeper: returns expired leases to the queue and forgets old idempotency
//! records. It holds only a weak reference to the service and stops with the server.

use std::sync::Weak;
use std::time::Duration;

use tokio::sync::watch;

use crate::error::Error;
use crate::service::Coordinator;

pub async fn run(core: Weak<Coordinator>, every: Duration, retention: Duration, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut since_purge = Duration::ZERO;
    let mut failures = 0u32;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let Some(core) = core.upgrade() else { return };
        match core.expire_leases().await {
            Ok(_) => failures = 0,
            Err(e) => {
                failures += 1;
                report(&e, failures, "returning expired leases");
            }
        }
        since_purge += every;
        if since_purge >= Duration::from_secs(3600) {
            since_purge = Duration::ZERO;
            match core.purge_requests(retention).await {
                Ok(n) if n > 0 => tracing::info!(purged = n, "forgot old idempotency records"),
                Ok(_) => {}
                Err(e) => report(&e, 1, "purging idempotency records"),
            }
        }
    }
}

fn report(e: &Error, failures: u32, what: &str) {
    // A locked database is usually transient; keep ERROR for what a person must look at.
    if matches!(e, Error::Unavailable(_)) && failures < 10 {
        tracing::warn!(error = %e, failures, "sweeper: {what} failed; will retry");
    } else {
        tracing::error!(error = %e, failures, "sweeper: {what} failed");
    }
}
