//! The Azure stand-ins for end-to-end tests: the emulated Resource Manager and datacenter
//! (`seedship-azure-emulator`, over TLS with its own CA), the coordinator's `[azure]` table
//! pointing at it, and the datacenter's commands.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use seedship_azure::client::{ArmClient, ArmOptions, StaticToken};
use serde_json::Value;

use crate::{Cluster, start_emulator};

/// Subscription and resource group every test seed uses.
pub const SUB: &str = "0f0e0d0c-0000-4000-8000-00000000abcd";
pub const RG: &str = "seedship-rg";

pub struct Emulator {
    pub child: Child,
    pub url: String,
    pub tls: PathBuf,
    pub state: PathBuf,
    pub log: PathBuf,
    http: reqwest::Client,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Emulator {
    /// Starts the emulator with its state, TLS and log under `dir`.
    pub fn start(dir: &Path) -> Result<Emulator> {
        let (tls, state, log) = (dir.join("emulator-tls"), dir.join("emulator.json"), dir.join("emulator.log"));
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (child, _, url) = start_emulator(&state, &log, Some(&tls))?;
        let ca = reqwest::Certificate::from_pem(&std::fs::read(tls.join("ca.crt"))?)?;
        let http = reqwest::Client::builder().add_root_certificate(ca).timeout(Duration::from_secs(30)).build()?;
        Ok(Emulator { child, url, tls, state, log, http })
    }

    /// The coordinator's `[azure]` table for this emulator, polling every `poll`.
    pub fn coordinator_toml(&self, poll: &str) -> String {
        format!(
            r#"[azure]
arm_endpoint = "{}"
ca_file = "{}"
resource_group = "{RG}"
poll_interval = "{poll}"
credential = {{ kind = "emulator" }}
[azure.return_address]
recipient_name = "Backup team"
street_address1 = "1 Main St"
city = "Utrecht"
postal_code = "3511"
country_or_region = "Netherlands"
phone = "+31 30 000 0000"
email = "backup@example.org"
[azure.return_shipping]
carrier_name = "DHL"
carrier_account_number = "123456"
"#,
            self.url,
            self.tls.join("ca.crt").display()
        )
    }

    /// An ARM client for checking what the emulator holds.
    pub fn arm(&self) -> Result<ArmClient> {
        let opts = ArmOptions { ca_pem: Some(std::fs::read(self.tls.join("ca.crt"))?), ..Default::default() };
        Ok(ArmClient::new(&self.url, Arc::new(StaticToken("test".into())), opts)?)
    }

    /// POSTs a datacenter command; the answer must be 2xx.
    pub async fn post(&self, path: &str, body: Value) -> Result<Value> {
        let r = self.http.post(format!("{}{path}", self.url)).json(&body).send().await?;
        let status = r.status();
        let text = r.text().await?;
        anyhow::ensure!(status.is_success(), "{path}: {status} {text}");
        Ok(if text.is_empty() { Value::Null } else { serde_json::from_str(&text)? })
    }

    /// A datacenter command for one job: `arrive`, `start-copy`, `finish-copy`, `ship-back`.
    pub async fn dc(&self, job: &str, action: &str, body: Value) -> Result<Value> {
        self.post(&format!("/_datacenter/subscriptions/{SUB}/resourceGroups/{RG}/jobs/{job}/{action}"), body).await
    }

    /// Moves the datacenter's clock (and the coordinator's) `days` forward and applies the
    /// datacenter's timers.
    pub async fn advance(&self, cluster: &Cluster, days: f64) -> Result<Value> {
        cluster.advance_clock(days)?;
        let whole = days.round() as i64;
        self.post("/_datacenter/clock/advance", serde_json::json!({ "days": whole })).await
    }

    /// Injects failures into the next ARM requests.
    pub async fn faults(&self, body: Value) -> Result<()> {
        self.post("/_datacenter/faults", body).await.map(|_| ())
    }

    /// The job as Azure holds it, or `None`.
    pub async fn job(&self, job: &str) -> Result<Option<seedship_azure::arm::JobResponse>> {
        match self.arm()?.get_job(SUB, RG, job).await {
            Ok(j) => Ok(Some(j)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(anyhow!(e)),
        }
    }

    /// How many jobs the resource group holds.
    pub async fn job_count(&self) -> Result<usize> {
        Ok(self.arm()?.list_jobs(SUB, Some(RG)).await?.len())
    }
}

/// Waits until `job`'s seed is in `state` (as `seedctl` names it), returning its detail.
pub async fn wait_seed_state(
    cluster: &Cluster,
    ops: &crate::Identity,
    job: &str,
    state: &str,
    timeout: Duration,
) -> Result<seedship_proto::pb::GetSeedResponse> {
    let conn = cluster.connect(ops).await?;
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let r = seedship_proto::client::operator(conn.clone())
            .get_seed(seedship_proto::pb::GetSeedRequest { seed: job.into() })
            .await
            .context("GetSeed")?
            .into_inner();
        let s = r.seed.clone().unwrap_or_default();
        let name = seedship_proto::pb::SeedState::try_from(s.state)
            .map(|st| st.as_str_name().trim_start_matches("SEED_STATE_").to_ascii_lowercase())
            .unwrap_or_default();
        if name == state {
            return Ok(r);
        }
        if std::time::Instant::now() > deadline {
            anyhow::bail!("seed {job} is {name} ({}), not {state}, after {timeout:?}", s.state_reason);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the coordinator's history of `job` has an event whose reason contains `needle`.
pub async fn wait_event(
    cluster: &Cluster,
    ops: &crate::Identity,
    job: &str,
    needle: &str,
    timeout: Duration,
) -> Result<seedship_proto::pb::SeedEvent> {
    let conn = cluster.connect(ops).await?;
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let r = seedship_proto::client::operator(conn.clone())
            .list_events(seedship_proto::pb::ListEventsRequest { seed: job.into(), limit: 1000 })
            .await?
            .into_inner();
        if let Some(e) = r.events.iter().find(|e| e.reason.contains(needle)) {
            return Ok(e.clone());
        }
        if std::time::Instant::now() > deadline {
            let all: Vec<String> = r.events.iter().map(|e| format!("{}: {}", e.event, e.reason)).collect();
            anyhow::bail!("no event of {job} says {needle:?} after {timeout:?}; history:\n{}", all.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
