//! The operations console: `/metrics` on the coordinator's HTTPS listener, and the alert rules
//! Prometheus evaluates over it.

use std::collections::BTreeMap;
use std::path::Path;

use seedship_e2e::{Cluster, METRICS_TOKEN, rid, seed_request};
use seedship_proto::{client, pb};
use serde_json::Value;

/// `/metrics` parsed by Prometheus's own OpenMetrics parser (strict): the samples by name and
/// labels.
struct Scrape {
    families: Value,
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Scrape {
    fn parse(text: &str) -> anyhow::Result<Scrape> {
        use std::io::Write;
        let py = seedship_e2e::azure::python()?;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("py/openmetrics.py");
        let mut child = std::process::Command::new(py)
            .arg(script)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        child.stdin.take().expect("stdin").write_all(text.as_bytes())?;
        let out = child.wait_with_output()?;
        anyhow::ensure!(
            out.status.success(),
            "Prometheus's parser refused /metrics: {}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout)?;
        let samples = v["samples"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let labels = s["labels"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect();
                (s["name"].as_str().unwrap().to_string(), labels, s["value"].as_f64().unwrap_or(f64::NAN))
            })
            .collect();
        Ok(Scrape { families: v["families"].clone(), samples })
    }

    /// The value of `name` with (at least) these labels.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|(n, l, _)| n == name && labels.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v)))
            .map(|(_, _, v)| *v)
    }
}

async fn scrape(c: &Cluster, client: &reqwest::Client, token: Option<&str>) -> anyhow::Result<(u16, String, String)> {
    let mut req = client.get(format!("{}/metrics", c.web_url()));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await?;
    let status = r.status().as_u16();
    let ct = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    Ok((status, ct, r.text().await?))
}

/// Prometheus scrapes with its token, an operator with a certificate; nobody else. What it
/// serves is OpenMetrics that Prometheus's own parser accepts, counts what happened, and the
/// durable part of it survives a restart of the coordinator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_the_fleet_for_operators_and_prometheus_only() -> anyhow::Result<()> {
    let mut c = Cluster::start()?;
    let (fs, st, ops) = (c.issue("source", "fs01")?, c.issue("copy", "station-01")?, c.issue("operator", "alice")?);
    let (cp, lease) = seedship_e2e::claimed(&mut c, &fs, &st, &ops, "job-met").await?;
    seedship_proto::agent::heartbeat(&cp, "preparing").await?;
    client::diskprep(cp.clone())
        .report_progress(pb::ReportProgressRequest {
            request_id: rid(),
            work_id: lease.work_id.clone(),
            generation: lease.generation,
            from_bytes: 0,
            to_bytes: 500_000,
            phase: "copy".into(),
            disks: vec![pb::DiskProgress {
                position: 1,
                set_size: 1,
                drive_id: "DRV-1".into(),
                phase: "copy".into(),
                done_bytes: 500_000,
                total_bytes: 1_000_000,
                rate_bytes_per_sec: 5_000_000,
                updated_unix_ms: 0,
            }],
        })
        .await?;
    // A refused lease operation is counted with its outcome.
    let stale = client::diskprep(cp.clone())
        .renew_lease(pb::RenewLeaseRequest {
            request_id: rid(),
            work_id: lease.work_id.clone(),
            generation: lease.generation + 7,
            ..Default::default()
        })
        .await;
    assert!(stale.is_err());

    // Who may read it.
    let anonymous = c.web_client(None)?;
    let (status, _, body) = scrape(&c, &anonymous, None).await?;
    assert_eq!(status, 401, "{body}");
    let (status, _, _) = scrape(&c, &anonymous, Some("not-the-token-not-the-token-not-the-token")).await?;
    assert_eq!(status, 401);
    let (status, _, body) = scrape(&c, &c.web_client(Some(&st))?, None).await?;
    assert_eq!(status, 403, "a copy station's certificate is not an operator's: {body}");
    let (status, ct, text) = scrape(&c, &anonymous, Some(METRICS_TOKEN)).await?;
    assert_eq!(status, 200, "{text}");
    assert!(ct.starts_with("application/openmetrics-text; version=1.0.0"), "{ct}");
    let (status, _, _) = scrape(&c, &c.web_client(Some(&ops))?, None).await?;
    assert_eq!(status, 200, "an operator's certificate reads it too");

    let m = Scrape::parse(&text)?;
    assert_eq!(m.families["seedship_seeds"]["type"], "gauge");
    assert_eq!(m.families["seedship_lease_operation_duration_seconds"]["unit"], "seconds");
    assert_eq!(m.get("seedship_seeds", &[("state", "preparing")]), Some(1.0), "{text}");
    assert_eq!(m.get("seedship_seeds", &[("state", "seeded")]), Some(0.0));
    assert_eq!(m.get("seedship_diskprep_written_bytes_total", &[("station", "station-01")]), Some(500_000.0));
    assert_eq!(m.get("seedship_diskprep_throughput_bytes_per_second", &[("station", "station-01")]), Some(5e6));
    assert_eq!(m.get("seedship_lease_operations_total", &[("operation", "ClaimWork"), ("outcome", "ok")]), Some(1.0));
    assert_eq!(
        m.get("seedship_lease_operations_total", &[("operation", "RenewLease"), ("outcome", "failed_precondition")]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(m.get("seedship_lease_operation_duration_seconds_count", &[("operation", "ClaimWork")]), Some(1.0));
    assert!(m.get("seedship_agent_last_heartbeat_timestamp_seconds", &[("agent", "station-01")]).is_some());
    assert!(m.get("seedship_seed_state_age_seconds", &[("job", "job-met"), ("state", "preparing")]).is_some());
    // Stays that ended: registered → queued → preparing.
    let stays = m.get("seedship_stage_duration_seconds_count", &[("stage", "queued_for_disk_prep")]);
    assert_eq!(stays, Some(1.0), "{text}");

    // After a restart: what the database holds is there again; what this process counted
    // starts again from nothing, as Prometheus expects of a counter.
    c.kill9_coordinator()?;
    c.start_coordinator()?;
    let (_, _, text) = scrape(&c, &anonymous, Some(METRICS_TOKEN)).await?;
    let m = Scrape::parse(&text)?;
    assert_eq!(m.get("seedship_seeds", &[("state", "preparing")]), Some(1.0));
    assert_eq!(m.get("seedship_stage_duration_seconds_count", &[("stage", "queued_for_disk_prep")]), Some(1.0));
    assert_eq!(m.get("seedship_lease_operations_total", &[("operation", "ClaimWork"), ("outcome", "ok")]), None);
    c.finish()
}

/// The alert rules in deploy/prometheus/ are valid Prometheus rules, and each fires where its
/// unit tests say (promtool, from Debian's prometheus package).
#[test]
fn alert_rules_pass_promtool() -> anyhow::Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus");
    for args in [&["check", "rules", "seedship.rules.yml"][..], &["test", "rules", "seedship.rules.test.yml"][..]] {
        let out = std::process::Command::new("promtool").args(args).current_dir(&dir).output()?;
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && said.contains("SUCCESS"), "promtool {args:?}: {said}");
    }
    // The Grafana dashboard is JSON whose panels query only metrics the coordinator serves.
    let board: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("grafana-seedship.json"))?)?;
    let served =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../coordinator/src/web/metrics.rs"))?;
    let panels = board["panels"].as_array().expect("panels");
    assert!(panels.len() >= 6, "a panel for each part of the fleet");
    for p in panels {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().unwrap_or_default();
            let names: Vec<&str> = expr
                .split(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
                .filter(|w| w.starts_with("seedship_"))
                .collect();
            assert!(!names.is_empty(), "panel {} queries no seedship metric: {expr}", p["title"]);
            for n in names {
                let family =
                    ["_bucket", "_count", "_sum", "_total"].iter().fold(n, |n, s| n.strip_suffix(s).unwrap_or(n));
                assert!(
                    served.contains(&format!("\"{family}\"")),
                    "panel {} queries {n}, which /metrics does not serve",
                    p["title"]
                );
            }
        }
    }
    Ok(())
}

/// A real Prometheus (Debian's), configured with deploy/prometheus/prometheus.yml, scrapes the
/// coordinator over HTTPS with the token, stores what it reads, and loads the alert rules.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_coordinator_with_the_example_config() -> anyhow::Result<()> {
    let mut c = Cluster::start()?;
    let fs = c.issue("source", "fs01")?;
    client::seeds(c.connect(&fs).await?).register_seed(seed_request("job-prom")).await?;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus");
    let example = std::fs::read_to_string(dir.join("prometheus.yml"))?;
    let rules = dir.join("seedship.rules.yml");
    let config = example
        .replace("/etc/prometheus/seedship.rules.yml", &rules.display().to_string())
        .replace("/etc/prometheus/seedship-ca.crt", &c.pki.join("ca.crt").display().to_string())
        .replace("/etc/prometheus/seedship-metrics-token", &c.path("metrics-token").display().to_string())
        .replace("coordinator.example:7444", &format!("127.0.0.1:{}", c.web.port()))
        .replace("scrape_interval: 30s", "scrape_interval: 1s")
        .replace("evaluation_interval: 30s", "evaluation_interval: 1s");
    anyhow::ensure!(config != example, "the example config changed shape; update this test");
    std::fs::write(c.path("prometheus.yml"), config)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut prom = std::process::Command::new("prometheus");
    prom.arg(format!("--config.file={}", c.path("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", c.path("prometheus-data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"));
    c.spawn("prometheus", &mut prom)?;
    let api = reqwest::Client::builder().timeout(std::time::Duration::from_secs(5)).build()?;
    let query = |q: &'static str| {
        let api = api.clone();
        async move {
            let v: Value = api
                .get(format!("http://127.0.0.1:{port}/api/v1/query?query={}", percent(q)))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            v["data"]["result"][0]["value"][1].as_str().map(str::to_string)
        }
    };
    let up = seedship_e2e::wait_for_async(
        "Prometheus to scrape the coordinator",
        std::time::Duration::from_secs(60),
        || async { query("up{job=\"seedship\"}").await.filter(|v| v == "1") },
    )
    .await;
    if up.is_err() {
        let targets = api.get(format!("http://127.0.0.1:{port}/api/v1/targets")).send().await?.text().await?;
        anyhow::bail!("Prometheus never scraped the coordinator: {targets}");
    }
    let queued =
        seedship_e2e::wait_for_async("seedship_seeds in Prometheus", std::time::Duration::from_secs(30), || async {
            query("seedship_seeds{state=\"queued_for_disk_prep\"}").await
        })
        .await?;
    assert_eq!(queued, "1");
    let rules: Value = api.get(format!("http://127.0.0.1:{port}/api/v1/rules")).send().await?.json().await?;
    let loaded: Vec<&Value> = rules["data"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .collect();
    assert_eq!(loaded.len(), 8, "{rules}");
    seedship_e2e::wait_for_async("every rule evaluated", std::time::Duration::from_secs(30), || async {
        let r: Value = api.get(format!("http://127.0.0.1:{port}/api/v1/rules")).send().await.ok()?.json().await.ok()?;
        let all: Vec<Value> = r["data"]["groups"][0]["rules"].as_array()?.clone();
        all.iter().all(|x| x["health"] == "ok").then_some(())
    })
    .await?;
    c.finish()
}

/// A URL query value, percent-encoded.
fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
