//! What every agent does with the coordinator: register, send heartbeats, and retry calls
//! that failed for a transient reason with the same request id (so a retry is never applied
//! twice).

use std::future::Future;
use std::time::Duration;

use tonic::{Code, Status};

use crate::client::{self, Conn, new_request_id};
use crate::pb;

/// Whether a failed call may be retried as is.
pub fn is_transient(s: &Status) -> bool {
    matches!(s.code(), Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::ResourceExhausted)
        || (s.code() == Code::Unknown && s.message().contains("transport error"))
}

/// Calls `f(request_id)` until it succeeds, fails permanently, or `attempts` are used, backing
/// off from 200 ms to 5 s. Every attempt carries the same request id.
pub async fn with_retry<T, F, Fut>(what: &str, attempts: u32, mut f: F) -> Result<T, Status>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<T, Status>>,
{
    let id = new_request_id();
    let mut delay = Duration::from_millis(200);
    let mut n = 0;
    loop {
        n += 1;
        match f(id.clone()).await {
            Ok(v) => return Ok(v),
            Err(s) if is_transient(&s) && n < attempts => {
                tracing::warn!(call = what, attempt = n, code = ?s.code(), error = %s.message(), "transient failure; retrying with the same request id");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(s) => return Err(s),
        }
    }
}

/// This machine's host name, for the fleet view.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// Registers the calling agent; returns the registration and the heartbeat interval.
pub async fn register(conn: &Conn, site: Option<&str>, version: &str) -> Result<pb::RegisterAgentResponse, Status> {
    let host = hostname();
    with_retry("RegisterAgent", 5, |request_id| {
        let mut c = client::agents(conn.clone());
        let req = pb::RegisterAgentRequest {
            request_id,
            site: site.unwrap_or_default().to_string(),
            hostname: host.clone(),
            version: version.to_string(),
        };
        async move { c.register_agent(req).await.map(|r| r.into_inner()) }
    })
    .await
}

/// Sends one heartbeat with `status`.
pub async fn heartbeat(conn: &Conn, status: &str) -> Result<pb::HeartbeatResponse, Status> {
    with_retry("Heartbeat", 3, |request_id| {
        let mut c = client::agents(conn.clone());
        let req = pb::HeartbeatRequest {
            request_id,
            status: status.to_string(),
        };
        async move { c.heartbeat(req).await.map(|r| r.into_inner()) }
    })
    .await
}

/// Sends heartbeats every `interval` until `stop` resolves. Failures are logged and retried
/// at the next tick: losing the coordinator for a while must not stop the agent.
pub async fn heartbeat_loop(conn: Conn, mut interval: Duration, status: &str, stop: impl Future<Output = ()>) {
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(interval) => {}
        }
        match heartbeat(&conn, status).await {
            Ok(r) => {
                tracing::debug!("heartbeat sent");
                if r.heartbeat_interval_secs > 0 {
                    interval = Duration::from_secs(r.heartbeat_interval_secs as u64);
                }
            }
            Err(s) => tracing::warn!(code = ?s.code(), error = %s.message(), "heartbeat failed; will retry"),
        }
    }
}
