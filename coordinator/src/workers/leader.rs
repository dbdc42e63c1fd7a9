//! Keeps the background workers' lease: taken or renewed every third of its lifetime, so a
//! holder renews twice before it could run out, and a dead holder's lease is taken over by
//! another coordinator within one lifetime.

use std::sync::Weak;

use tokio::sync::watch;

use crate::service::Coordinator;

pub async fn run(core: Weak<Coordinator>, every: std::time::Duration, stop: watch::Receiver<bool>) {
    super::run_every("workers-lease", every, core, stop, |core| async move { core.hold_workers().await.map(|_| ()) })
        .await
}
