//! One trace across processes, the standard health service, and an OTLP exporter that is
//! harmless with no collector.

use std::time::Duration;

use seedship_e2e::{Cluster, Options, bin, wait_for};
use tonic_health::pb::health_check_response::ServingStatus;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_context_crosses_processes_and_health_is_served() -> anyhow::Result<()> {
    // An OTLP endpoint where nothing listens: the coordinator must work regardless.
    let mut c = Cluster::start_with(Options {
        extra_toml: "[telemetry]\notlp_endpoint = \"http://127.0.0.1:9\"\n".into(),
        ..Default::default()
    })?;
    let fs = c.issue("source", "fs01")?;
    let cfg = c.agent_config(&fs, None)?;
    let out =
        c.run("register", std::process::Command::new(bin("source-agent")).arg("--config").arg(&cfg).arg("register"))?;
    assert!(out.status.success());
    let agent_log = String::from_utf8_lossy(&out.stderr).to_string();
    let trace = agent_log
        .split("trace_id=\"")
        .nth(1)
        .and_then(|s| s.get(..32))
        .map(str::to_string)
        .expect("the agent logs its trace id");
    // The coordinator's request span belongs to the same trace.
    wait_for("the coordinator to log the agent's trace id", Duration::from_secs(5), || {
        c.coordinator_logs().lines().any(|l| l.contains("RegisterAgent") && l.contains(&trace)).then_some(())
    })?;

    // grpc.health.v1 answers SERVING for our services (over mTLS like everything else).
    let conn = c.connect(&fs).await?;
    let mut h = tonic_health::pb::health_client::HealthClient::new(conn);
    for svc in ["", "seedship.v1.DiskPrepService", "seedship.v1.OperatorService"] {
        let r = h.check(tonic_health::pb::HealthCheckRequest { service: svc.into() }).await?.into_inner();
        assert_eq!(r.status(), ServingStatus::Serving, "{svc}");
    }
    // The failed span export is reported by the SDK; it is the only error allowed.
    c.allow_error("opentelemetry");
    c.allow_error("BatchSpanProcessor");
    c.finish()
}
