//! The `seedship-emulator` process (Azure's `Microsoft.DataBox` and its datacenter) for the
//! tests: started on loopback with TLS, the test's resource group, and a record of every ARM
//! exchange that `armcheck` validates against Azure's document.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::Value;

use crate::azure::{ACCOUNT, ACCOUNT_KEY, Azurite, RG, SUB};
use crate::start_emulator_binary;

pub struct DataBoxEmulator {
    pub child: Child,
    pub url: String,
    pub tls: PathBuf,
    pub state: PathBuf,
    pub log: PathBuf,
    /// Every ARM exchange, a JSON line each (`--record`).
    pub record: PathBuf,
    pub azurite: Option<Azurite>,
    http: reqwest::Client,
}

impl Drop for DataBoxEmulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The storage account id of the test's account.
pub fn account_id() -> String {
    format!("/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Storage/storageAccounts/{ACCOUNT}")
}

impl DataBoxEmulator {
    /// Starts the emulator under `dir` with `args` beside the usual ones (the test's resource
    /// group, TLS, the record); with Azurite when `storage` (the datacenter copies into it).
    pub fn start(dir: &Path, storage: bool, args: &[&str]) -> Result<DataBoxEmulator> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (tls, state, log, record) = (
            dir.join("databox-tls"),
            dir.join("databox.json"),
            dir.join("databox.log"),
            dir.join("databox-record.jsonl"),
        );
        let azurite = if storage { Some(Azurite::start(dir)?) } else { None };
        let mut extra: Vec<std::ffi::OsString> =
            vec!["--resource-group".into(), format!("{SUB}/{RG}").into(), "--record".into(), record.clone().into()];
        if let Some(a) = &azurite {
            let keys = dir.join("storage-keys.txt");
            std::fs::write(&keys, format!("{ACCOUNT}={ACCOUNT_KEY}\n"))?;
            extra.extend(["--storage-url".into(), a.url.clone().into(), "--storage-keys".into(), keys.into()]);
        }
        extra.extend(args.iter().map(Into::into));
        let (child, _, url) = start_emulator_binary("seedship-emulator", &state, &log, Some(&tls), &extra)?;
        let ca = reqwest::Certificate::from_pem(&std::fs::read(tls.join("ca.crt"))?)?;
        let http = reqwest::Client::builder().add_root_certificate(ca).timeout(Duration::from_secs(120)).build()?;
        Ok(DataBoxEmulator { child, url, tls, state, log, record, azurite, http })
    }

    pub fn ca(&self) -> PathBuf {
        self.tls.join("ca.crt")
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.http
    }

    /// POSTs a datacenter command; the answer must be 2xx.
    pub async fn post(&self, path: &str, body: Value) -> Result<Value> {
        let r = self.http.post(format!("{}{path}", self.url)).json(&body).send().await?;
        let status = r.status();
        let text = r.text().await?;
        anyhow::ensure!(status.is_success(), "{path}: {status} {text}");
        Ok(if text.is_empty() { Value::Null } else { serde_json::from_str(&text)? })
    }

    /// A datacenter command for one job of the test's resource group.
    pub async fn dc(&self, job: &str, action: &str, body: Value) -> Result<Value> {
        self.post(&format!("/_datacenter/jobs/{SUB}/{RG}/{job}/{action}"), body).await
    }

    /// Runs `armcheck` over everything recorded so far.
    pub fn check_record(&self) -> Result<String> {
        crate::azure::armcheck(&[self.record.as_os_str()])
            .with_context(|| format!("the record {}", self.record.display()))
    }
}
