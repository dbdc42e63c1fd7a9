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

/// Whether this machine is a virtual machine: "none" on physical hardware, else the
/// hypervisor kind, as `systemd-detect-virt --vm` says it (containers do not count: the rule
/// is about the machine), or DMI vendor strings, or the CPU's hypervisor flag ("vm"); empty
/// when nothing can tell.
pub fn detect_virtualization() -> String {
    if let Ok(out) =
        std::process::Command::new("systemd-detect-virt").arg("--vm").stderr(std::process::Stdio::null()).output()
    {
        let v = String::from_utf8_lossy(&out.stdout).trim().to_ascii_lowercase();
        if !v.is_empty() && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return v;
        }
    }
    let dmi = ["sys_vendor", "product_name"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(format!("/sys/class/dmi/id/{f}")).ok())
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_lowercase();
    for (needle, kind) in [
        ("vmware", "vmware"),
        ("virtualbox", "oracle"),
        ("qemu", "qemu"),
        ("kvm", "kvm"),
        ("xen", "xen"),
        ("virtual machine", "microsoft"),
        ("amazon ec2", "amazon"),
        ("google compute", "google"),
    ] {
        if dmi.contains(needle) {
            return kind.into();
        }
    }
    match std::fs::read_to_string("/proc/cpuinfo") {
        Ok(c) if c.lines().any(|l| l.starts_with("flags") && l.split_whitespace().any(|f| f == "hypervisor")) => {
            "vm".into()
        }
        Ok(_) if !dmi.is_empty() => "none".into(),
        _ => String::new(),
    }
}

/// Registers the calling agent; returns the registration and the heartbeat interval.
pub async fn register(conn: &Conn, site: Option<&str>, version: &str) -> Result<pb::RegisterAgentResponse, Status> {
    let host = hostname();
    let virtualization = detect_virtualization();
    with_retry("RegisterAgent", 5, |request_id| {
        let mut c = client::agents(conn.clone());
        let req = pb::RegisterAgentRequest {
            request_id,
            site: site.unwrap_or_default().to_string(),
            hostname: host.clone(),
            version: version.to_string(),
            virtualization: virtualization.clone(),
        };
        async move { c.register_agent(req).await.map(|r| r.into_inner()) }
    })
    .await
}

/// Sends one heartbeat with `status`.
pub async fn heartbeat(conn: &Conn, status: &str) -> Result<pb::HeartbeatResponse, Status> {
    with_retry("Heartbeat", 3, |request_id| {
        let mut c = client::agents(conn.clone());
        let req = pb::HeartbeatRequest { request_id, status: status.to_string() };
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

/// The configuration every agent has (TOML): its site, how to reach the coordinator, and
/// telemetry. Agents with more settings embed the same tables in their own config type.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Site of this machine; disk-prep work can be targeted at a site.
    #[serde(default)]
    pub site: Option<String>,
    pub coordinator: crate::client::ClientConfig,
    #[serde(default)]
    pub telemetry: seedship_telemetry::TelemetryConfig,
}

impl AgentConfig {
    pub fn load(path: &std::path::Path) -> Result<Self, crate::config::ConfigError> {
        let mut cfg: AgentConfig = crate::config::load_toml(path)?;
        cfg.coordinator.resolve(&crate::config::base_dir(path));
        if let Some(site) = &cfg.site {
            crate::identity::validate_label("site", site)
                .map_err(|e| crate::config::ConfigError::Invalid(format!("site: {e}")))?;
        }
        Ok(cfg)
    }
}

/// The shared `main` of the agents: a runtime, telemetry (inside the runtime, which the OTLP
/// exporter needs), a span whose trace id is logged, then `body`. Exit codes: 0 success,
/// 1 failure, 2 bad configuration.
pub fn run_main<Fut>(
    service: &'static str,
    cfg: AgentConfig,
    body: impl FnOnce(AgentConfig) -> Fut,
) -> std::process::ExitCode
where
    Fut: Future<Output = Result<(), Box<dyn std::error::Error + Send + Sync>>>,
{
    use std::process::ExitCode;
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let _rt = rt.enter();
    let _guard = match seedship_telemetry::init(service, &cfg.telemetry) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(crate::EXIT_USAGE);
        }
    };
    let span = tracing::info_span!("agent", service, trace_id = tracing::field::Empty);
    seedship_telemetry::record_trace_id(&span);
    let result = rt.block_on(tracing::Instrument::instrument(body(cfg), span));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", crate::client::error_text(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

/// Loads an agent config or exits with code 2 and the reason.
pub fn load_or_exit(path: &std::path::Path) -> AgentConfig {
    AgentConfig::load(path).unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(crate::EXIT_USAGE.into())
    })
}

/// Registers with the coordinator, then sends heartbeats until SIGTERM/ctrl-c.
pub async fn register_and_run(conn: Conn, site: Option<&str>, version: &str) -> Result<(), Status> {
    let r = register(&conn, site, version).await?;
    let id = r.agent.map(|a| a.identity).unwrap_or_default();
    tracing::info!(identity = %id, "registered; sending heartbeats");
    let every = Duration::from_secs(r.heartbeat_interval_secs.max(1) as u64);
    heartbeat_loop(conn, every, "idle", crate::signals::shutdown_signal()).await;
    tracing::info!("stopped");
    Ok(())
}
