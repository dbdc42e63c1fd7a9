//! The coordinator's configuration: a TOML file, then `SEEDSHIP_*` environment variables,
//! then command-line flags. Unknown fields are errors; `validate` checks files and ranges
//! before anything starts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use seedship_telemetry::TelemetryConfig;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on for mTLS gRPC; port 0 picks a free port (see `ready_file`).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Written (atomically) once the server listens: `{"addr": "...", "pid": N}`.
    #[serde(default)]
    pub ready_file: Option<PathBuf>,
    /// SQLite database file; created if missing. Or `[postgres]` instead, for several
    /// coordinators on one database.
    #[serde(default)]
    pub database: PathBuf,
    /// PostgreSQL instead of SQLite.
    #[serde(default)]
    pub postgres: Option<crate::store::pg::PostgresConfig>,
    /// The SPIFFE trust domain of every identity this coordinator accepts.
    pub trust_domain: String,
    /// Master key (64 hex characters, mode 0600) that seals drive keys at rest. Without it the
    /// coordinator refuses drive reports that carry a key.
    #[serde(default)]
    pub master_key_file: Option<PathBuf>,
    pub tls: TlsConfig,
    #[serde(default)]
    pub leases: LeaseConfig,
    /// The background workers' lease (several coordinators on one PostgreSQL).
    #[serde(default)]
    pub workers: WorkersConfig,
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    /// Tests and demos only: a file holding a number of milliseconds added to the wall clock
    /// (re-read within a second of a change), so Azure's 14-day deadlines can be fast-forwarded.
    #[serde(default)]
    pub clock_offset_file: Option<PathBuf>,
    /// The Azure side (import jobs through Azure Resource Manager); absent: disk preparation only.
    #[serde(default)]
    pub azure: Option<crate::azure::AzureConfig>,
    /// Where each seed's import container is (the coordinator chooses it).
    #[serde(default)]
    pub imports: crate::domain::placement::ImportConfig,
    /// The operations console: `/metrics` and the web dashboard, on their own HTTPS listener.
    #[serde(default)]
    pub web: Option<WebConfig>,
    /// Where notifications go (webhooks, e-mail).
    #[serde(default)]
    pub notify: crate::notify::NotifyConfig,
    /// Agents enroll with one-time tokens (`seedctl enroll create`) at `POST /enroll` of the
    /// `[web]` listener; absent: certificates come from `coordinator pki issue` only.
    #[serde(default)]
    pub enroll: Option<EnrollConfig>,
}

/// Enrollment: the CA key that signs enrolled agents' certificates, and their lifetime.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollConfig {
    /// The certificate of the CA that signs agents' (and, with `server_cert_lifetime`, the
    /// coordinator's) certificates: an issuing CA made by `coordinator pki intermediate`, so
    /// that the root's key stays offline. Default: the root, `[tls] ca_file`.
    #[serde(default)]
    pub ca_cert_file: Option<PathBuf>,
    /// That CA's private key (mode 0600); default `ca.key` beside `[tls] ca_file`, or, with
    /// `ca_cert_file`, the file of that name ending `.key` (`issuing-ca.key`).
    #[serde(default)]
    pub ca_key_file: Option<PathBuf>,
    /// How long an enrolled agent's certificate lives (from 5 minutes back, for clock skew).
    /// Running agents renew it at about half of that; hours suit a fleet, seconds a test.
    #[serde(default = "default_cert_lifetime", with = "humantime_serde")]
    pub cert_lifetime: Duration,
    /// The coordinator's own server certificate is renewed at half this lifetime, signed by the
    /// same CA, written over `[tls] cert_file` and `key_file` and used at once; absent: the
    /// certificate in those files is used as it is.
    #[serde(default, with = "humantime_serde")]
    pub server_cert_lifetime: Option<Duration>,
}

fn default_cert_lifetime() -> Duration {
    Duration::from_secs(86_400)
}

impl EnrollConfig {
    pub fn ca_cert(&self, tls: &TlsConfig) -> PathBuf {
        self.ca_cert_file.clone().unwrap_or_else(|| tls.ca_file.clone())
    }

    pub fn ca_key(&self, tls: &TlsConfig) -> PathBuf {
        match (&self.ca_key_file, &self.ca_cert_file) {
            (Some(k), _) => k.clone(),
            (None, Some(c)) => c.with_extension("key"),
            (None, None) => tls.ca_file.with_file_name("ca.key"),
        }
    }

    /// The signing CA, checked against the roots in `[tls] ca_file`.
    pub fn signer(&self, tls: &TlsConfig) -> Result<crate::pki::Signer, crate::pki::PkiError> {
        crate::pki::load_signer(&self.ca_cert(tls), &self.ca_key(tls), &tls.ca_file)
    }
}

/// The HTTPS listener of `/metrics` and the dashboard (TLS 1.3, the coordinator's certificate;
/// a client certificate is asked for and optional).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebConfig {
    /// Address to listen on; port 0 picks a free port (written to `ready_file` as `web`).
    pub listen: SocketAddr,
    /// A file holding the bearer token Prometheus scrapes `/metrics` with (mode 0600, at
    /// least 32 characters). Without it, `/metrics` takes an operator certificate only.
    #[serde(default)]
    pub metrics_token_file: Option<PathBuf>,
    /// The dashboard's address as operators' browsers reach it (login links, notifications);
    /// default https://localhost:<port>.
    #[serde(default)]
    pub public_url: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// CA that signs every client certificate (and ours).
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    /// Must not be readable by group or others.
    pub key_file: PathBuf,
}

/// `[workers]`: one coordinator at a time runs the background workers (the Azure worker, the
/// sweeper, the verifier, the vaulter, the notifier), holding a lease in the database.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkersConfig {
    /// How long the lease lasts unrenewed (renewed every third of it): how long the workers
    /// pause when their coordinator dies before another takes over.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
}

impl Default for WorkersConfig {
    fn default() -> Self {
        WorkersConfig { lease_ttl: Duration::from_secs(15) }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LeaseConfig {
    /// How long a disk-prep lease lasts without renewal.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// How often the sweeper returns expired leases to the queue.
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
    /// How often agents should send heartbeats.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// Released work goes behind the rest and waits this long before a station may claim it
    /// again, twice as long after each further release in a row without progress.
    #[serde(with = "humantime_serde")]
    pub release_backoff: Duration,
    /// After this many releases in a row without progress the work is held until an operator
    /// runs `seedctl retry`.
    pub max_releases: u32,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        LeaseConfig {
            ttl: Duration::from_secs(60),
            sweep_interval: Duration::from_secs(5),
            heartbeat_interval: Duration::from_secs(30),
            release_backoff: Duration::from_secs(5),
            max_releases: 8,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Deadline for one request, including waiting for the database.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Requests served at once across all connections; more wait.
    pub max_concurrent_requests: usize,
    /// Requests one client certificate may have in the coordinator at once; more are refused
    /// at once (RESOURCE_EXHAUSTED), so no one caller can fill the shared limit.
    pub max_requests_per_identity: usize,
    /// Requests all source agents (backup servers) together may have in at once.
    pub max_source_requests: usize,
    /// A request's body must arrive within this; headers without a body hold nothing longer.
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
    /// HTTP/2 streams one connection may have open at once.
    pub max_streams_per_connection: u32,
    /// Largest request message; larger ones get RESOURCE_EXHAUSTED.
    pub max_message_bytes: usize,
    /// How long a write waits for a database lock held by someone else before UNAVAILABLE.
    #[serde(with = "humantime_serde")]
    pub db_busy_timeout: Duration,
    /// How long answers to mutating requests are kept for retries.
    #[serde(with = "humantime_serde")]
    pub idempotency_retention: Duration,
    /// Deadline for a TLS handshake.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            request_timeout: Duration::from_secs(10),
            max_concurrent_requests: 512,
            max_requests_per_identity: 32,
            max_source_requests: 256,
            body_timeout: Duration::from_secs(5),
            max_streams_per_connection: 64,
            max_message_bytes: seedship_proto::MAX_MESSAGE_BYTES,
            db_busy_timeout: Duration::from_secs(2),
            idempotency_retention: Duration::from_secs(7 * 24 * 3600),
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

fn default_listen() -> SocketAddr {
    "127.0.0.1:7443".parse().expect("valid default")
}

/// Overrides given on the command line.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub database: Option<PathBuf>,
    pub ready_file: Option<PathBuf>,
}

pub use seedship_proto::config::ConfigError;

impl Config {
    /// Loads the file, then applies `SEEDSHIP_*` variables and `overrides`, then validates.
    pub fn load(path: &Path, overrides: &Overrides) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        let mut cfg: Config = toml::from_str(&text)
            .map_err(|e| ConfigError::Parse { path: path.to_path_buf(), detail: e.to_string() })?;
        // Relative paths in the file are relative to the file.
        let base = path.parent().unwrap_or(Path::new("."));
        cfg.resolve_paths(base);
        cfg.apply_env(|k| std::env::var(k).ok())?;
        if let Some(l) = overrides.listen {
            cfg.listen = l;
        }
        if let Some(d) = &overrides.database {
            cfg.database = d.clone();
        }
        if let Some(r) = &overrides.ready_file {
            cfg.ready_file = Some(r.clone());
        }
        cfg.validate()?;
        Ok(cfg)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if !self.database.as_os_str().is_empty() {
            fix(&mut self.database);
        }
        if let Some(p) = &mut self.postgres {
            p.resolve_paths(base);
        }
        fix(&mut self.tls.ca_file);
        fix(&mut self.tls.cert_file);
        fix(&mut self.tls.key_file);
        if let Some(p) = &mut self.master_key_file {
            fix(p);
        }
        if let Some(p) = &mut self.ready_file {
            fix(p);
        }
        if let Some(p) = &mut self.clock_offset_file {
            fix(p);
        }
        if let Some(a) = &mut self.azure {
            a.resolve_paths(base);
        }
        if let Some(p) = &mut self.imports.keys_file {
            fix(p);
        }
        if let Some(p) = self.web.as_mut().and_then(|w| w.metrics_token_file.as_mut()) {
            fix(p);
        }
        for w in &mut self.notify.webhook {
            fix(&mut w.secret_file);
            if let Some(p) = &mut w.ca_file {
                fix(p);
            }
        }
        if let Some(p) = self.notify.email.as_mut().and_then(|e| e.ca_file.as_mut()) {
            fix(p);
        }
        if let Some(e) = &mut self.enroll {
            for p in [&mut e.ca_cert_file, &mut e.ca_key_file].into_iter().flatten() {
                fix(p);
            }
        }
    }

    /// The database, as logs name it: SQLite's file, or PostgreSQL's URL (which holds no
    /// password).
    pub fn database_name(&self) -> String {
        match &self.postgres {
            Some(p) => p.url.clone(),
            None => self.database.display().to_string(),
        }
    }

    /// The keys that sign drive manifests' SAS without `[azure]` (`[imports] keys_file`).
    pub fn manifest_signer(&self) -> Result<Option<seedship_azure::blob::Accounts>, String> {
        let Some(k) = &self.imports.keys_file else { return Ok(None) };
        let keys = seedship_azure::blob::Accounts::load_keys(k).map_err(|e| format!("imports.keys_file: {e}"))?;
        Ok(Some(seedship_azure::blob::Accounts { endpoint_template: String::new(), keys, token: None }))
    }

    fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(v) = get("SEEDSHIP_LISTEN") {
            self.listen = v.parse().map_err(|e: std::net::AddrParseError| ConfigError::Env {
                var: "SEEDSHIP_LISTEN".into(),
                detail: e.to_string(),
            })?;
        }
        if let Some(v) = get("SEEDSHIP_DATABASE") {
            self.database = v.into();
        }
        if let Some(v) = get("SEEDSHIP_READY_FILE") {
            self.ready_file = Some(v.into());
        }
        if let Some(v) = get("SEEDSHIP_OTLP_ENDPOINT") {
            self.telemetry.otlp_endpoint = Some(v);
        }
        if let Some(v) = get("SEEDSHIP_LOG_FORMAT") {
            self.telemetry.log_format = match v.as_str() {
                "text" => seedship_telemetry::LogFormat::Text,
                "json" => seedship_telemetry::LogFormat::Json,
                _ => {
                    return Err(ConfigError::Env {
                        var: "SEEDSHIP_LOG_FORMAT".into(),
                        detail: format!("expected text or json, got {v:?}"),
                    });
                }
            };
        }
        Ok(())
    }

    /// The import-container rules, checked against the vault container patterns.
    pub fn placement(&self) -> Result<crate::domain::placement::Placement, String> {
        let vaults = self.azure.as_ref().map(|a| a.vaults.clone()).unwrap_or_default();
        crate::domain::placement::Placement::new(&self.imports, &[&vaults.container, &vaults.group_container])
    }

    /// Checks ranges and that every referenced file can be used.
    pub fn validate(&self) -> Result<(), ConfigError> {
        seedship_proto::identity::validate_label("trust domain", &self.trust_domain)
            .map_err(|e| ConfigError::Invalid(format!("trust_domain: {e}")))?;
        let bad = |s: String| Err(ConfigError::Invalid(s));
        if !(Duration::from_secs(1)..=Duration::from_secs(600)).contains(&self.workers.lease_ttl) {
            return bad(format!("workers.lease_ttl {:?}: from 1s to 10min", self.workers.lease_ttl));
        }
        if self.leases.ttl < Duration::from_secs(1) {
            return bad(format!("leases.ttl must be at least 1s, got {:?}", self.leases.ttl));
        }
        if self.leases.sweep_interval.is_zero() || self.leases.sweep_interval > self.leases.ttl {
            return bad("leases.sweep_interval must be above 0 and at most leases.ttl".into());
        }
        if self.leases.max_releases == 0 {
            return bad("leases.max_releases must be at least 1".into());
        }
        if self.server.max_concurrent_requests == 0 {
            return bad("server.max_concurrent_requests must be at least 1".into());
        }
        if self.server.max_requests_per_identity == 0 || self.server.max_source_requests == 0 {
            return bad("server.max_requests_per_identity and max_source_requests must be at least 1".into());
        }
        if self.server.body_timeout.is_zero() || self.server.max_streams_per_connection == 0 {
            return bad("server.body_timeout and max_streams_per_connection must be above 0".into());
        }
        if !(1024..=64 * 1024 * 1024).contains(&self.server.max_message_bytes) {
            return bad("server.max_message_bytes must be between 1024 and 67108864".into());
        }
        if self.server.request_timeout.is_zero() {
            return bad("server.request_timeout must be above 0".into());
        }
        // Fail at start-up, naming the file, rather than at the first handshake.
        let cert = crate::tls::ServerCert::load(&self.tls.ca_file, &self.tls.cert_file, &self.tls.key_file)
            .map_err(ConfigError::Invalid)?;
        crate::tls::server_config(&self.tls.ca_file, cert).map_err(ConfigError::Invalid)?;
        if let Some(mk) = &self.master_key_file {
            crate::keys::MasterKey::load(mk).map_err(ConfigError::Invalid)?;
        }
        self.placement().map_err(ConfigError::Invalid)?;
        self.manifest_signer().map_err(ConfigError::Invalid)?;
        if let Some(a) = &self.azure {
            a.validate().map_err(ConfigError::Invalid)?;
            if self.master_key_file.is_none() {
                return bad("[azure] needs master_key_file: the import job's drive list carries the drive keys".into());
            }
        }
        if let Some(w) = &self.web {
            crate::web::load_token(w).map_err(ConfigError::Invalid)?;
        }
        if let Some(e) = &self.enroll {
            if self.web.is_none() {
                return Err(ConfigError::Invalid(
                    "[enroll] is served on the [web] listener (POST /enroll); configure [web] listen too".into(),
                ));
            }
            if let Some(l) = e.server_cert_lifetime
                && !(4..=366 * 86_400).contains(&l.as_secs())
            {
                return Err(ConfigError::Invalid(format!(
                    "enroll.server_cert_lifetime {l:?}: from 4 seconds to 366 days"
                )));
            }
            if !(4..=366 * 86_400).contains(&e.cert_lifetime.as_secs()) {
                return Err(ConfigError::Invalid(format!(
                    "enroll.cert_lifetime {:?}: from 4 seconds to 366 days",
                    e.cert_lifetime
                )));
            }
            e.signer(&self.tls).map_err(|err| ConfigError::Invalid(format!("[enroll]: {err}")))?;
        }
        crate::notify::channels(&self.notify).map_err(ConfigError::Invalid)?;
        match (&self.postgres, self.database.as_os_str().is_empty()) {
            (Some(_), false) => {
                return bad(format!(
                    "both database ({}) and [postgres] are set; keep one (move a SQLite site's state with `coordinator store migrate`)",
                    self.database.display()
                ));
            }
            (None, true) => {
                return bad("no database: set database = \"coordinator.db\" (SQLite) or a [postgres] section".into());
            }
            (Some(p), true) => {
                if let Some(problem) = p.problem() {
                    return bad(problem);
                }
            }
            (None, false) => {}
        }
        if let Some(dir) = self.database.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.is_dir()
        {
            return bad(format!("the directory of database {} does not exist", self.database.display()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_refused_with_the_file_named() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.toml");
        std::fs::write(
            &p,
            "database = 'x.db'\ntrust_domain = 't'\nlisten_addr = '1.2.3.4:5'\n[tls]\nca_file='a'\ncert_file='b'\nkey_file='c'\n",
        )
        .unwrap();
        let e = Config::load(&p, &Overrides::default()).unwrap_err().to_string();
        assert!(e.contains("c.toml") && e.contains("listen_addr"), "{e}");
    }

    #[test]
    fn missing_key_file_is_named() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.toml");
        std::fs::write(
            &p,
            "database = 'x.db'\ntrust_domain = 't'\n[tls]\nca_file='a.crt'\ncert_file='b.crt'\nkey_file='c.key'\n",
        )
        .unwrap();
        let e = Config::load(&p, &Overrides::default()).unwrap_err().to_string();
        assert!(e.contains("a.crt"), "{e}");
    }

    #[test]
    fn durations_parse_humanly() {
        let l: LeaseConfig = toml::from_str("ttl = '90s'\nsweep_interval = '1s'\nheartbeat_interval = '1m'").unwrap();
        assert_eq!(l.ttl, Duration::from_secs(90));
        assert_eq!(l.heartbeat_interval, Duration::from_secs(60));
    }
}
