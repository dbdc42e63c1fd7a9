//! The notifier: every second, gives each channel its new notifications and sends what is due
//! (webhooks, e-mail). Deliveries live in the database, so a restart resumes them where they
//! were; a failed one is retried with back-off until it is delivered or acknowledged.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::watch;

use crate::notify::Channel;
use crate::service::Coordinator;

pub async fn run(
    core: Weak<Coordinator>,
    channels: Arc<Vec<Channel>>,
    external_url: String,
    stop: watch::Receiver<bool>,
) {
    super::run_as_leader("notifier", Duration::from_secs(1), core, stop, move |core| {
        let (channels, url) = (channels.clone(), external_url.clone());
        async move {
            for ch in channels.iter() {
                core.notify_round(ch, &url).await?;
            }
            Ok(())
        }
    })
    .await
}
