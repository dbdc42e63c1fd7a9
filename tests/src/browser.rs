//! A real browser for the dashboard tests: Debian's headless Chromium, driven through
//! chromedriver's W3C WebDriver API (plain HTTP on loopback). Screenshots go to
//! `target/<profile>/seedship-artifacts/` (kept after the run).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};

pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

fn find(names: &[&str]) -> Option<PathBuf> {
    names.iter().map(PathBuf::from).find(|p| p.is_file())
}

/// Where the screenshots go.
pub fn artifacts() -> PathBuf {
    let dir = crate::bin("seedctl").parent().expect("a folder").join("seedship-artifacts");
    let _ = std::fs::create_dir_all(&dir);
    dir
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session. The browser trusts no CA of
    /// ours: the test coordinator's certificate is accepted as a browser's exception would be.
    pub async fn start() -> Result<Browser> {
        let driver_bin = find(&["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"])
            .ok_or_else(|| anyhow!("chromedriver is missing; run deploy/debian/install.sh (chromium-driver)"))?;
        let chromium = find(&["/usr/bin/chromium", "/usr/lib/chromium/chromium"])
            .ok_or_else(|| anyhow!("chromium is missing; run deploy/debian/install.sh"))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let driver = Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting chromedriver")?;
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?;
        let base = format!("http://127.0.0.1:{port}");
        crate::wait_for_async("chromedriver", Duration::from_secs(20), || {
            let (http, base) = (http.clone(), base.clone());
            async move {
                let v: Value = http.get(format!("{base}/status")).send().await.ok()?.json().await.ok()?;
                (v["value"]["ready"] == true).then_some(())
            }
        })
        .await?;
        let profile = tempfile::tempdir()?;
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,1100", format!("--user-data-dir={}", profile.path().display())],
            },
        }}});
        let v: Value = http.post(format!("{base}/session")).json(&caps).send().await?.json().await?;
        let session = v["value"]["sessionId"]
            .as_str()
            .ok_or_else(|| anyhow!("chromedriver did not start a browser: {v}"))?
            .to_string();
        Ok(Browser { driver, base, session, http, _profile: profile })
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value> {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut req = self.http.request(method, url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let v: Value = req.send().await?.json().await?;
        if v["value"].get("error").is_some() {
            bail!("webdriver {path}: {}", v["value"]);
        }
        Ok(v["value"].clone())
    }

    pub async fn go(&self, url: &str) -> Result<()> {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url }))).await.map(|_| ())
    }

    /// Runs `script` in the page (its `return` value back).
    pub async fn js(&self, script: &str) -> Result<Value> {
        self.call(reqwest::Method::POST, "/execute/sync", Some(json!({ "script": script, "args": [] }))).await
    }

    /// Waits until `script` returns true.
    pub async fn until(&self, what: &str, script: &str, timeout: Duration) -> Result<()> {
        let start = std::time::Instant::now();
        loop {
            if self.js(script).await.ok() == Some(Value::Bool(true)) {
                return Ok(());
            }
            if start.elapsed() > timeout {
                let text = self.js("return document.body ? document.body.innerText : ''").await.unwrap_or_default();
                bail!(
                    "timed out after {timeout:?} waiting for {what}; the page says:\n{}",
                    text.as_str().unwrap_or("")
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn text(&self) -> Result<String> {
        Ok(self.js("return document.body.innerText").await?.as_str().unwrap_or_default().to_string())
    }

    /// Saves a screenshot as `name`.png among the test artifacts; returns its path.
    pub async fn screenshot(&self, name: &str) -> Result<PathBuf> {
        use base64::Engine;
        let v = self.call(reqwest::Method::GET, "/screenshot", None).await?;
        let png = base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap_or_default())?;
        anyhow::ensure!(png.starts_with(b"\x89PNG"), "the screenshot is not a PNG");
        let path = artifacts().join(format!("{name}.png"));
        std::fs::write(&path, png)?;
        Ok(path)
    }
}

impl Browser {
    /// Ends the browser (and chromedriver with it).
    pub async fn close(self) {
        let _ = self.http.delete(format!("{}/session/{}", self.base, self.session)).send().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
