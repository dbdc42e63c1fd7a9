//! The Azure stand-ins for end-to-end tests: Azurite, the emulated Resource Manager and
//! datacenter (`seedship-emulator`, over TLS with its own CA), the coordinator's `[azure]`
//! table pointing at it, the datacenter's commands, and the Python tools we did not write
//! (`armcheck` over Azure's document, Microsoft's SDK).

use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use seedship_azure::client::{ArmClient, ArmOptions, StaticToken};
use serde_json::Value;

use crate::{Cluster, start_emulator_with};

/// Subscription and resource group every test seed uses.
pub const SUB: &str = "0f0e0d0c-0000-4000-8000-00000000abcd";
pub const RG: &str = "seedship-rg";

/// The storage account every test seed names, as it exists in Azurite.
pub const ACCOUNT: &str = "seedacct";
/// Its key (a made-up test key).
pub const ACCOUNT_KEY: &str =
    "c2VlZHNoaXAtdGVzdC1rZXktc2VlZHNoaXAtdGVzdC1rZXktc2VlZHNoaXAtdGVzdC1rZXktMDEyMzQ1Njc4OQ==";

/// Azurite, installed by `deploy/azurite/install.sh` (pinned by its lock file) unless
/// `SEEDSHIP_AZURITE_MAIN` names its `main.js`, on a free loopback port.
pub struct Azurite {
    child: Child,
    /// Path-style blob endpoint base, e.g. `http://127.0.0.1:39123`.
    pub url: String,
    main: PathBuf,
    dir: PathBuf,
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Python of `deploy/python` (jsonschema, Microsoft's `azure-mgmt-databox`), for the tests
/// that check our Azure side with tools we did not write: `SEEDSHIP_PYTHON`, or made now (once).
pub fn python() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("SEEDSHIP_PYTHON") {
        return Ok(PathBuf::from(p));
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/python/install.sh");
    let out = std::process::Command::new(&script)
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    anyhow::ensure!(
        out.status.success(),
        "the Python tools could not be installed ({}): {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// Where Azure's `Microsoft.DataBox` document and its examples are kept in the repository.
pub fn databox_spec() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../azure/spec/databox-2025-02-01")
}

/// Runs `tests/py/armcheck.py` (the `jsonschema` package over Azure's document) on `target`:
/// `--examples DIR` or a record of exchanges. Its report, or an error with it.
pub fn armcheck(args: &[&std::ffi::OsStr]) -> Result<String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("py/armcheck.py");
    let out = std::process::Command::new(python()?)
        .arg(&script)
        .arg(databox_spec().join("databox.json"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .context("running armcheck.py")?;
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    anyhow::ensure!(out.status.success(), "armcheck found problems:\n{report}");
    Ok(report)
}

impl Azurite {
    pub fn start(dir: &Path) -> Result<Azurite> {
        let main = match std::env::var_os("SEEDSHIP_AZURITE_MAIN") {
            Some(m) => PathBuf::from(m),
            None => {
                let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/azurite/install.sh");
                let out = std::process::Command::new(&script)
                    .stdin(std::process::Stdio::null())
                    .output()
                    .with_context(|| format!("running {}", script.display()))?;
                anyhow::ensure!(
                    out.status.success(),
                    "Azurite could not be installed ({}): {}",
                    script.display(),
                    String::from_utf8_lossy(&out.stderr)
                );
                PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
            }
        };
        let (child, url) = Self::spawn(&main, dir, 0)?;
        Ok(Azurite { child, url, main, dir: dir.to_path_buf() })
    }

    fn spawn(main: &Path, dir: &Path, port: u16) -> Result<(Child, String)> {
        let data = dir.join("azurite");
        std::fs::create_dir_all(&data)?;
        let log = dir.join("azurite.log");
        let child = std::process::Command::new("node")
            .arg(main)
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .args(["--skipApiVersionCheck", "--disableTelemetry", "--location"])
            .arg(&data)
            .env("AZURITE_ACCOUNTS", format!("{ACCOUNT}:{ACCOUNT_KEY}"))
            .stdin(std::process::Stdio::null())
            .stdout(std::fs::File::create(&log)?)
            .stderr(std::fs::OpenOptions::new().append(true).open(&log)?)
            .spawn()
            .context("starting Azurite (node)")?;
        let url = crate::wait_for("Azurite to listen", Duration::from_secs(30), || {
            let t = std::fs::read_to_string(&log).ok()?;
            let at = t.find("successfully listens on ")?;
            Some(t[at + "successfully listens on ".len()..].lines().next()?.trim().to_string())
        })
        .with_context(|| format!("Azurite's log: {}", std::fs::read_to_string(&log).unwrap_or_default()))?;
        Ok((child, url))
    }

    /// Kills Azurite with SIGKILL (what it had not saved yet is lost, as after a crash) and
    /// starts it again on the same port with the same data folder.
    pub fn kill9_and_restart(&mut self) -> Result<()> {
        let port: u16 =
            self.url.rsplit(':').next().and_then(|p| p.trim_end_matches('/').parse().ok()).context("Azurite's port")?;
        self.child.kill()?;
        self.child.wait()?;
        let (child, url) = crate::wait_for("Azurite to start again on its port", Duration::from_secs(20), || {
            Self::spawn(&self.main, &self.dir, port).ok()
        })?;
        anyhow::ensure!(url == self.url, "Azurite came back at {url}, not {}", self.url);
        self.child = child;
        Ok(())
    }

    /// The test account's blobs.
    pub fn blobs(&self) -> Result<seedship_azure::blob::BlobStore> {
        Ok(seedship_azure::blob::BlobStore::new(
            &format!("{}/{ACCOUNT}/", self.url),
            seedship_azure::blob::BlobAuth::SharedKey { account: ACCOUNT.into(), key: ACCOUNT_KEY.into() },
        )?)
    }
}

/// `seedship-emulator` (Azure's `Microsoft.DataBox` and its datacenter) on loopback over TLS,
/// with the test's resource group, and a record of every ARM exchange (`armcheck` validates it
/// against Azure's document).
pub struct Emulator {
    pub child: Child,
    pub url: String,
    pub tls: PathBuf,
    pub state: PathBuf,
    pub log: PathBuf,
    /// Every ARM exchange, a JSON line each (`--record`).
    pub record: PathBuf,
    /// The storage the datacenter copies into, when started with it.
    pub azurite: Option<Azurite>,
    http: reqwest::Client,
    /// The extra arguments it was started with, for a restart.
    extra: Vec<std::ffi::OsString>,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The storage account id of the test's account.
pub fn account_id() -> String {
    format!("/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Storage/storageAccounts/{ACCOUNT}")
}

/// A customer-disk job (PUT body) of the test's account, with one disk `serial` and
/// `contact` as the contact's name, as a client would send it.
pub fn customer_disk_job_json(serial: &str, contact: &str) -> Value {
    serde_json::json!({
        "location": "westeurope",
        "sku": {"name": "DataBoxCustomerDisk"},
        "properties": {"transferType": "ImportToAzure", "details": {
            "jobDetailsType": "DataBoxCustomerDisk",
            "contactDetails": {"contactName": contact, "phone": "+31 20 000 0000", "emailList": ["ops@example.com"]},
            "shippingAddress": {"streetAddress1": "1 Dock", "city": "Amsterdam", "country": "NL", "postalCode": "1000 AA"},
            "dataImportDetails": [{"accountDetails": {"dataAccountType": "StorageAccount", "storageAccountId": account_id()}}],
            "importDiskDetailsCollection": {serial: {
                "manifestFile": "\\DriveManifest.xml",
                "manifestHash": "0123456789ABCDEF0123456789ABCDEF",
                "bitLockerKey": "111111-222222-333333-444444-555555-666666-777777-888888"}},
            "returnToCustomerPackageDetails": {"carrierName": "DHL", "carrierAccountNumber": "987654"}
        }}
    })
}

impl Emulator {
    /// Starts the emulator with its state, TLS, log and record under `dir` (no storage:
    /// "copy" is refused).
    pub fn start(dir: &Path) -> Result<Emulator> {
        Self::start_with(dir, false, &[])
    }

    /// Starts Azurite, and the emulator copying into it.
    pub fn start_with_storage(dir: &Path) -> Result<Emulator> {
        Self::start_with(dir, true, &[])
    }

    /// Starts the emulator (and Azurite when `storage`) with `args` beside the usual ones.
    pub fn start_with(dir: &Path, storage: bool, args: &[&str]) -> Result<Emulator> {
        sweep_kept_dirs(dir);
        let (tls, state, log, record) = (
            dir.join("emulator-tls"),
            dir.join("emulator.json"),
            dir.join("emulator.log"),
            dir.join("emulator-record.jsonl"),
        );
        let _ = rustls::crypto::ring::default_provider().install_default();
        let azurite = if storage { Some(Azurite::start(dir)?) } else { None };
        let mut extra: Vec<std::ffi::OsString> =
            vec!["--resource-group".into(), format!("{SUB}/{RG}").into(), "--record".into(), record.clone().into()];
        if let Some(a) = &azurite {
            let keys = dir.join("storage-keys.txt");
            std::fs::write(&keys, format!("{ACCOUNT}={ACCOUNT_KEY}\n"))?;
            extra.extend(["--storage-url".into(), a.url.clone().into(), "--storage-keys".into(), keys.into()]);
        }
        extra.extend(args.iter().map(Into::into));
        let (child, _, url) = start_emulator_with(&state, &log, Some(&tls), &extra)?;
        let ca = reqwest::Certificate::from_pem(&std::fs::read(tls.join("ca.crt"))?)?;
        let http = reqwest::Client::builder().add_root_certificate(ca).timeout(Duration::from_secs(120)).build()?;
        Ok(Emulator { child, url, tls, state, log, record, azurite, http, extra })
    }

    /// Kills the emulator with SIGKILL and starts it again on the same address, with its state
    /// file (what it had saved), TLS and storage.
    pub fn kill9_and_restart(&mut self) -> Result<()> {
        let addr = self.url.trim_start_matches("https://").trim_end_matches('/').to_string();
        self.child.kill()?;
        self.child.wait()?;
        let mut extra = self.extra.clone();
        extra.extend(["--listen".into(), addr.clone().into()]);
        let log = self.log.with_extension(format!("{}.log", std::process::id()));
        let (child, _, url) =
            crate::wait_for("the emulator to start again on its address", Duration::from_secs(20), || {
                start_emulator_with(&self.state, &log, Some(&self.tls), &extra).ok()
            })?;
        anyhow::ensure!(url == self.url, "the emulator came back at {url}, not {}", self.url);
        self.child = child;
        Ok(())
    }

    pub fn ca(&self) -> PathBuf {
        self.tls.join("ca.crt")
    }

    /// An HTTP client that trusts the emulator.
    pub fn client(&self) -> &reqwest::Client {
        &self.http
    }

    /// A cluster whose coordinator talks to this emulator, polling every second, with the
    /// wall clock offset file (for the 14-day deadlines) and `azure_lines` added to `[azure]`
    /// (for example `disk_kind = "databox_disk"`).
    pub fn cluster(&self, azure_lines: &str) -> Result<crate::Cluster> {
        crate::Cluster::start_with(crate::Options {
            extra_toml: self.coordinator_toml("1s").replace("poll_interval", &format!("{azure_lines}\npoll_interval")),
            offset_clock: true,
            ..Default::default()
        })
    }

    /// The coordinator's `[azure]` table for this emulator, polling every `poll` (and its
    /// storage in Azurite, when started with it).
    pub fn coordinator_toml(&self, poll: &str) -> String {
        let storage = match &self.azurite {
            Some(a) => format!(
                "[azure.storage]\nendpoint = \"{}/{{account}}\"\nkeys_file = \"{}\"\n",
                a.url,
                self.state.with_file_name("storage-keys.txt").display()
            ),
            None => String::new(),
        };
        azure_table(&self.url, &self.tls.join("ca.crt"), r#"{ kind = "emulator" }"#, poll) + &storage
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

    /// A datacenter command for one job of the test's resource group: `arrive`, `copy`,
    /// `fail`, `wait`, `complete`, `prepare`, `dispatch`, `deliver`, `pickup`, `ship-back`.
    pub async fn dc(&self, job: &str, action: &str, body: Value) -> Result<Value> {
        self.post(&format!("/_datacenter/jobs/{SUB}/{RG}/{job}/{action}"), body).await
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

    /// The job as Azure holds it (with its details), or `None`.
    pub async fn job(&self, job: &str) -> Result<Option<seedship_azure::databox::model::JobResource>> {
        match self.arm()?.get_job(SUB, RG, job).await {
            Ok((j, _)) => Ok(Some(j)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(anyhow!(e)),
        }
    }

    /// How many jobs the resource group holds.
    pub async fn job_count(&self) -> Result<usize> {
        Ok(self.arm()?.list_jobs(SUB, Some(RG)).await?.len())
    }

    /// Runs `armcheck` over everything recorded so far; its report.
    pub fn check_record(&self) -> Result<String> {
        armcheck(&[self.record.as_os_str()]).with_context(|| format!("the record {}", self.record.display()))
    }
}

/// A coordinator `[azure]` table: ARM at `endpoint` (trusting `ca`), `credential` (inline
/// TOML), polling every `poll`, with the test return address and shipping.
pub fn azure_table(endpoint: &str, ca: &Path, credential: &str, poll: &str) -> String {
    format!(
        r#"[azure]
arm_endpoint = "{endpoint}"
ca_file = "{}"
resource_group = "{RG}"
poll_interval = "{poll}"
credential = {credential}
[azure.return_address]
recipient_name = "Backup team"
street_address1 = "1 Main St"
city = "Utrecht"
postal_code = "3511"
country = "NL"
phone = "+31 30 000 0000"
email = "backup@example.org"
[azure.return_shipping]
carrier_name = "DHL"
carrier_account_number = "123456"
"#,
        ca.display()
    )
}

/// A new folder in the temporary directory, named `<prefix>…`, that outlives the test (its
/// emulator and Azurite logs stay there for a failed test to be read).
pub fn kept_dir(prefix: &str) -> Result<std::path::PathBuf> {
    Ok(tempfile::Builder::new().prefix(prefix).tempdir()?.keep())
}

/// Removes the kept folders beside `dir` (`seedship-*`, made by [`kept_dir`]) older than six
/// hours, so that runs on a developer's machine do not fill its disk.
fn sweep_kept_dirs(dir: &Path) {
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name().map(|n| n.to_string_lossy().to_string())) else {
        return;
    };
    let family = name.trim_end_matches(|c: char| c.is_ascii_alphanumeric());
    if !family.starts_with("seedship-") || family.is_empty() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    for e in entries.filter_map(|e| e.ok()) {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(6 * 3600));
        if old && e.file_name().to_string_lossy().starts_with(family) && e.path() != dir {
            crate::ntfs::unmount_under(&e.path());
            let _ = std::fs::remove_dir_all(e.path());
        }
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
            .await;
        // A busy coordinator says UNAVAILABLE ("retry"), as clients are told to do.
        let r = match r {
            Err(e) if e.code() == tonic::Code::Unavailable && std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            r => r.context("GetSeed")?.into_inner(),
        };
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
            .list_events(seedship_proto::pb::ListEventsRequest { seed: job.into(), limit: 1000, before_event_id: 0 })
            .await;
        let r = match r {
            Err(e) if e.code() == tonic::Code::Unavailable && std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            r => r?.into_inner(),
        };
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
