//! The background sweeper: returns expired leases to the queue and forgets old idempotency
//! records (the audit entries are chained by `auditor`, more often). It holds only a weak reference to the service and stops with the server.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::watch;

use crate::service::Coordinator;

pub async fn run(core: Weak<Coordinator>, every: Duration, retention: Duration, stop: watch::Receiver<bool>) {
    let since_purge = Arc::new(std::sync::Mutex::new(Duration::ZERO));
    super::run_as_leader("sweeper", every, core, stop, move |core| {
        let since_purge = since_purge.clone();
        async move {
            core.expire_leases().await?;
            let purge = {
                let mut s = since_purge.lock().unwrap_or_else(|p| p.into_inner());
                *s += every;
                let due = *s >= Duration::from_secs(3600);
                if due {
                    *s = Duration::ZERO;
                }
                due
            };
            if purge {
                match core.purge_requests(retention).await {
                    Ok(n) if n > 0 => tracing::info!(purged = n, "forgot old idempotency records"),
                    Ok(_) => {}
                    Err(e) => super::report("sweeper", "purging idempotency records", &e, 1, false),
                }
            }
            Ok(())
        }
    })
    .await
}
