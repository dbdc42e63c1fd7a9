//! End-to-end harness: the real seedship binaries as processes on 127.0.0.1.
//!
//! - Binaries come from cargo's target directory (build them first: `cargo build --workspace
//!   --bins`; the test script does).
//! - Every [`Cluster`] has its own temporary directory, a fresh PKI made by the real
//!   `coordinator pki init`, and a coordinator on an OS-chosen port that it announces in a
//!   ready file.
//! - Each process's stderr goes to a log file. When a test panics, every log is printed. Any
//!   ERROR line not explicitly allowed fails the test in [`Cluster::finish`].
//! - Every wait is a bounded poll ([`wait_for`]); nothing sleeps blindly.

pub mod azure;
pub mod browser;
pub mod ntfs;
pub mod pg;
pub mod prep;
pub mod raw;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use seedship_proto::client::{ClientConfig, Conn};
use tempfile::TempDir;

/// Path of a workspace binary next to the running test executable.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // A test runs from target/<profile>/deps/, a tool (the load generator) from target/<profile>/.
    let here = exe.parent().expect("exe dir");
    let candidates = [here.join(name), here.parent().map(|p| p.join(name)).unwrap_or_default()];
    candidates.iter().find(|p| p.is_file()).cloned().unwrap_or_else(|| {
        panic!("{name} is missing next to {}; build the binaries first: cargo build --workspace --bins", exe.display())
    })
}

/// Polls `f` every 50 ms until it returns `Some`, or fails after `timeout` saying `what`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Result<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if start.elapsed() > timeout {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Async version of [`wait_for`].
pub async fn wait_for_async<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if start.elapsed() > timeout {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The CPU time (user and system) process `pid` has used.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the ")" that closes the command name; utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).ok_or_else(|| anyhow!("bad /proc stat"))?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>()? + f[12].parse::<f64>()?;
    Ok(ticks / 100.0)
}

/// The CPU time every running process named `comm` has used (e.g. "postgres": the server's
/// processes).
pub fn cpu_seconds_of(comm: &str) -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0.0 };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm))
        .filter_map(|pid| cpu_seconds(pid).ok())
        .sum()
}

/// A small deterministic generator (xorshift), so a failing chaos run can be replayed.
pub struct Rng(pub u64);

impl Rng {
    /// Seeded from `var` when set, else from the clock (never 0); says which in the output.
    pub fn from_env(var: &str) -> Rng {
        let seed: u64 = std::env::var(var).ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
        }) | 1;
        eprintln!("chaos seed {seed} (replay with {var}={seed})");
        Rng(seed)
    }

    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A pause from `lo` to `hi` milliseconds.
    pub fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.next() % (hi - lo))
    }
}

/// A certificate/key pair on disk.
#[derive(Debug, Clone)]
pub struct Identity {
    pub name: String,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The bearer token Prometheus scrapes every test coordinator's `/metrics` with.
pub const METRICS_TOKEN: &str = "e2e-metrics-token-0123456789abcdef0123456789";

/// Coordinator settings a test may change.
#[derive(Debug, Clone)]
pub struct Options {
    pub lease_ttl: &'static str,
    pub sweep_interval: &'static str,
    pub db_busy_timeout: &'static str,
    /// Appended to the coordinator's config (tables such as `[azure]`).
    pub extra_toml: String,
    /// The coordinator reads a clock offset from `clock-offset` in the test directory, so a
    /// test can fast-forward its deadlines ([`Cluster::advance_clock`]).
    pub offset_clock: bool,
    /// Environment of the coordinator process (test hooks), at every start.
    pub coordinator_env: Vec<(String, String)>,
    /// `[leases] release_backoff` and `max_releases`.
    pub release_backoff: &'static str,
    pub max_releases: u32,
    /// Agents may enroll with tokens (`[enroll]`, as [`Cluster::enroll`] needs); off: the
    /// coordinator has no `[enroll]`.
    pub enroll: bool,
    /// The coordinator keeps its state in a PostgreSQL of its own (TLS, a password), not
    /// SQLite: on when `SEEDSHIP_TEST_DATABASE=postgres`, so that the whole suite runs on
    /// either backend.
    pub postgres: bool,
    /// `[postgres] pool_size` (the coordinator's default when `None`).
    pub pg_pool_size: Option<usize>,
}

/// Whether the suite runs on PostgreSQL (`SEEDSHIP_TEST_DATABASE=postgres`) or SQLite.
pub fn postgres_by_default() -> bool {
    std::env::var("SEEDSHIP_TEST_DATABASE").is_ok_and(|v| v == "postgres")
}

impl Default for Options {
    fn default() -> Self {
        Options {
            lease_ttl: "30s",
            sweep_interval: "200ms",
            db_busy_timeout: "2s",
            extra_toml: String::new(),
            offset_clock: false,
            coordinator_env: Vec::new(),
            release_backoff: "200ms",
            max_releases: 8,
            enroll: true,
            postgres: postgres_by_default(),
            pg_pool_size: None,
        }
    }
}

struct Proc {
    name: String,
    child: Child,
}

/// A coordinator (and whatever else a test starts) in its own directory.
pub struct Cluster {
    pub dir: TempDir,
    pub pki: PathBuf,
    pub config: PathBuf,
    pub addr: SocketAddr,
    /// The operations console's HTTPS address (as the last start announced it).
    pub web: SocketAddr,
    procs: Vec<Proc>,
    logs: Vec<PathBuf>,
    allowed_errors: Vec<String>,
    starts: u32,
    coordinator_pid: u32,
    coordinator_env: Vec<(String, String)>,
    finished: bool,
    /// The coordinator's PostgreSQL (with `Options::postgres`); dropped after the processes.
    pub pg: Option<pg::Postgres>,
    /// How the coordinator reaches it (`[postgres]`), for [`Cluster::sql`].
    pg_config: Option<coordinator::store::pg::PostgresConfig>,
    /// Other coordinators' addresses clients list after the coordinator's own.
    also: Vec<SocketAddr>,
}

impl Cluster {
    pub fn start() -> Result<Cluster> {
        Self::start_with(Options::default())
    }

    pub fn start_with(opts: Options) -> Result<Cluster> {
        let dir = tempfile::Builder::new().prefix("seedship-e2e-").tempdir()?;
        let pki = dir.path().join("pki");
        run_ok(
            Command::new(bin("coordinator"))
                .args(["pki", "init", "--dir"])
                .arg(&pki)
                .args(["--trust-domain", "e2e.test"]),
        )?;
        // The storage account's key signs the drive manifests' SAS (`[imports] keys_file`).
        let keys = dir.path().join("manifest-keys.txt");
        std::fs::write(&keys, format!("{}={}\n", azure::ACCOUNT, azure::ACCOUNT_KEY))?;
        std::fs::set_permissions(&keys, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        // Prometheus's bearer token for /metrics.
        let token = dir.path().join("metrics-token");
        std::fs::write(&token, format!("{}\n", METRICS_TOKEN))?;
        std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        let (database, pg, pg_config) = if opts.postgres {
            let mut pg = pg::Postgres::start()?;
            let (ca, password) = pg.require_tls_and_password()?;
            let url = pg.url("seedship");
            let mut section = format!(
                "[postgres]\nurl = \"{url}\"\nca_file = \"{}\"\npassword_file = \"{}\"\n",
                ca.display(),
                password.display()
            );
            if let Some(n) = opts.pg_pool_size {
                section.push_str(&format!("pool_size = {n}\n"));
            }
            let pc = coordinator::store::pg::PostgresConfig {
                ca_file: Some(ca),
                password_file: Some(password),
                ..coordinator::store::pg::PostgresConfig::url(&url)
            };
            (section, Some(pg), Some(pc))
        } else {
            (String::new(), None, None)
        };
        let config = dir.path().join("coordinator.toml");
        std::fs::write(
            &config,
            format!(
                r#"listen = "127.0.0.1:0"
ready_file = "ready.json"
{}trust_domain = "e2e.test"
master_key_file = "pki/master.key"
{}[imports]
keys_file = "manifest-keys.txt"
[tls]
ca_file = "pki/ca.crt"
cert_file = "pki/coordinator.crt"
key_file = "pki/coordinator.key"
[leases]
ttl = "{}"
sweep_interval = "{}"
heartbeat_interval = "1s"
release_backoff = "{}"
max_releases = {}
[server]
db_busy_timeout = "{}"
[web]
listen = "127.0.0.1:0"
metrics_token_file = "metrics-token"
{}{}{}
"#,
                if opts.postgres { "" } else { "database = \"coordinator.db\"\n" },
                if opts.offset_clock { "clock_offset_file = \"clock-offset\"\n" } else { "" },
                opts.lease_ttl,
                opts.sweep_interval,
                opts.release_backoff,
                opts.max_releases,
                opts.db_busy_timeout,
                opts.extra_toml,
                // Agents enroll with tokens (`Cluster::enroll`), unless a test sets its own.
                if !opts.enroll || opts.extra_toml.contains("[enroll]") { "" } else { "[enroll]\n" },
                database,
            ),
        )?;
        let mut c = Cluster {
            dir,
            pki,
            config,
            addr: "127.0.0.1:0".parse()?,
            web: "127.0.0.1:0".parse()?,
            procs: Vec::new(),
            logs: Vec::new(),
            allowed_errors: Vec::new(),
            starts: 0,
            coordinator_pid: 0,
            coordinator_env: opts.coordinator_env.clone(),
            finished: false,
            pg,
            pg_config,
            also: Vec::new(),
        };
        c.start_coordinator()?;
        Ok(c)
    }

    /// Runs `f` on the coordinator's database directly, as someone holding it would (a test
    /// that looks behind the API): SQLite's file, or the PostgreSQL in one transaction.
    pub fn sql<T: Send + 'static>(
        &self,
        f: impl Fn(&dyn coordinator::store::sql::Db) -> coordinator::error::Result<T> + Send + Sync + 'static,
    ) -> Result<T> {
        match &self.pg_config {
            None => {
                let conn = rusqlite::Connection::open(self.path("coordinator.db"))?;
                conn.busy_timeout(Duration::from_secs(5))?;
                Ok(f(&conn)?)
            }
            // Its own thread and runtime: callable from a test's runtime or none.
            Some(pc) => {
                let pc = pc.clone();
                std::thread::spawn(move || -> Result<T> {
                    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                    rt.block_on(async {
                        let store = coordinator::store::pg::PgStore::connect(&pc).await?;
                        Ok(store.tx(f).await?)
                    })
                })
                .join()
                .map_err(|_| anyhow!("the database thread panicked"))?
            }
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `seedctl` with flags (not a config file) as `ops`.
    pub fn seedctl(&self, ops: &Identity, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin("seedctl"));
        cmd.args(["--url", &self.url(), "--server-name", "localhost", "--ca"])
            .arg(self.pki.join("ca.crt"))
            .arg("--cert")
            .arg(&ops.cert)
            .arg("--key")
            .arg(&ops.key)
            .args(args);
        cmd
    }

    /// Moves the coordinator's clock `days` forward (needs `Options::offset_clock`); the
    /// coordinator sees it within a second.
    pub fn advance_clock(&self, days: f64) -> Result<()> {
        let f = self.path("clock-offset");
        let now: i64 = std::fs::read_to_string(&f).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
        let tmp = self.path("clock-offset.tmp");
        std::fs::write(&tmp, (now + (days * 86_400_000.0) as i64).to_string())?;
        std::fs::rename(&tmp, &f)?;
        Ok(())
    }

    /// Starts (or restarts) the coordinator and waits for its ready file.
    pub fn start_coordinator(&mut self) -> Result<()> {
        let ready = self.path("ready.json");
        let _ = std::fs::remove_file(&ready);
        self.starts += 1;
        let name = format!("coordinator-{}", self.starts);
        let mut cmd = Command::new(bin("coordinator"));
        cmd.arg("serve").arg("--config").arg(&self.config).envs(self.coordinator_env.clone());
        // A restart listens where the first start did, so agents' configs stay right.
        if self.addr.port() != 0 {
            cmd.arg("--listen").arg(self.addr.to_string());
        }
        self.coordinator_pid = self.spawn(&name, &mut cmd)?;
        let (addr, web) = self.wait_ready(&ready, self.coordinator_pid, &name)?;
        self.addr = addr;
        self.web = web;
        Ok(())
    }

    /// Waits for the ready file of coordinator `name` (pid `pid`): its gRPC and web addresses.
    fn wait_ready(&mut self, ready: &Path, pid: u32, name: &str) -> Result<(SocketAddr, SocketAddr)> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let found = std::fs::read_to_string(ready)
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .and_then(|v| {
                    Some((v["addr"].as_str()?.parse::<SocketAddr>().ok()?, v["web"].as_str()?.parse().ok()?))
                });
            if let Some(a) = found {
                return Ok(a);
            }
            // A coordinator that exited will not start: say so now, with its log.
            if let Some(st) = self.try_wait(pid)? {
                bail!("coordinator exited ({st}) before it was ready; log:\n{}", self.log_of(name));
            }
            if Instant::now() > deadline {
                bail!("coordinator did not start within 20 s; log:\n{}", self.log_of(name));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Another coordinator `name` on the same configuration and database (several at once
    /// on PostgreSQL), on its own addresses, with the environment `env` (not the options'):
    /// its pid and gRPC address.
    pub fn start_another_coordinator(&mut self, name: &str, env: &[(&str, &str)]) -> Result<(u32, SocketAddr)> {
        self.start_another_coordinator_at(name, env, "127.0.0.1:0".parse()?)
    }

    /// [`Cluster::start_another_coordinator`] listening at `listen` (again where a killed one
    /// listened).
    pub fn start_another_coordinator_at(
        &mut self,
        name: &str,
        env: &[(&str, &str)],
        listen: SocketAddr,
    ) -> Result<(u32, SocketAddr)> {
        let ready = self.path(&format!("ready-{name}.json"));
        let _ = std::fs::remove_file(&ready);
        let mut cmd = Command::new(bin("coordinator"));
        cmd.arg("serve")
            .arg("--config")
            .arg(&self.config)
            .arg("--listen")
            .arg(listen.to_string())
            .arg("--ready-file")
            .arg(&ready)
            .envs(env.iter().copied());
        let pid = self.spawn(name, &mut cmd)?;
        let (addr, _) = self.wait_ready(&ready, pid, name)?;
        Ok((pid, addr))
    }

    /// Clients made from now on reach the coordinator at `addr` (another of several).
    pub fn use_coordinator(&mut self, addr: SocketAddr) {
        self.addr = addr;
    }

    /// Clients and agent configs made from now on list `addr` too, after the coordinator's own
    /// (`url = "https://a,https://b"`): they move to it when the first cannot be reached.
    pub fn also_coordinator(&mut self, addr: SocketAddr) {
        self.also.push(addr);
    }

    /// The pid of the coordinator started last by [`Cluster::start_coordinator`].
    pub fn coordinator_pid(&self) -> u32 {
        self.coordinator_pid
    }

    /// The operations console's base URL.
    pub fn web_url(&self) -> String {
        format!("https://localhost:{}", self.web.port())
    }

    /// An HTTPS client for the console that trusts our CA and presents `id`'s certificate
    /// (none: a browser without one).
    pub fn web_client(&self, id: Option<&Identity>) -> Result<reqwest::Client> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pemfile::certs(&mut std::io::BufReader::new(std::fs::File::open(self.pki.join("ca.crt"))?)) {
            roots.add(c?)?;
        }
        let b = rustls::ClientConfig::builder().with_root_certificates(roots);
        let cfg = match id {
            Some(id) => {
                let certs = rustls_pemfile::certs(&mut std::io::BufReader::new(std::fs::File::open(&id.cert)?))
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                let key = rustls_pemfile::private_key(&mut std::io::BufReader::new(std::fs::File::open(&id.key)?))?
                    .ok_or_else(|| anyhow!("no key in {}", id.key.display()))?;
                b.with_client_auth_cert(certs, key)?
            }
            None => b.with_no_client_auth(),
        };
        Ok(reqwest::Client::builder()
            .tls_backend_preconfigured(cfg)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(20))
            .build()?)
    }

    /// Spawns a process with stderr and stdout captured to `<name>.log`.
    pub fn spawn(&mut self, name: &str, cmd: &mut Command) -> Result<u32> {
        let log = self.path(&format!("{name}.log"));
        let f = std::fs::File::create(&log)?;
        let child = cmd
            .current_dir(self.dir.path())
            .env("RUST_LOG", "info")
            .env("SEEDSHIP_CACHE", self.dir.path().join("agent-cache"))
            .stdin(Stdio::null())
            .stdout(f.try_clone()?)
            .stderr(f)
            .spawn()
            .with_context(|| format!("spawning {name}"))?;
        let pid = child.id();
        self.procs.push(Proc { name: name.to_string(), child });
        self.logs.push(log);
        Ok(pid)
    }

    /// User + system CPU seconds the running coordinator has used (from /proc).
    pub fn coordinator_cpu_seconds(&self) -> Result<f64> {
        cpu_seconds(self.coordinator_pid)
    }

    /// SIGKILLs the coordinator: no shutdown code runs.
    /// Spawns like [`Cluster::spawn`], with a pipe to the process's standard input.
    pub fn spawn_piped(&mut self, name: &str, cmd: &mut Command) -> Result<(u32, std::process::ChildStdin)> {
        let log = self.path(&format!("{name}.log"));
        let f = std::fs::File::create(&log)?;
        let mut child = cmd
            .current_dir(self.dir.path())
            .env("RUST_LOG", "info")
            .env("SEEDSHIP_CACHE", self.dir.path().join("agent-cache"))
            .stdin(Stdio::piped())
            .stdout(f.try_clone()?)
            .stderr(f)
            .spawn()
            .with_context(|| format!("spawning {name}"))?;
        let stdin = child.stdin.take().expect("piped");
        let pid = child.id();
        self.procs.push(Proc { name: name.to_string(), child });
        self.logs.push(log);
        Ok((pid, stdin))
    }

    /// SIGKILLs the spawned process `pid` and reaps it.
    pub fn kill9(&mut self, pid: u32) -> Result<()> {
        let p = self.procs.iter_mut().find(|p| p.child.id() == pid).ok_or_else(|| anyhow!("no process {pid}"))?;
        p.child.kill()?;
        p.child.wait()?;
        Ok(())
    }

    /// The exit status of the spawned process `pid` if it has exited.
    pub fn try_wait(&mut self, pid: u32) -> Result<Option<std::process::ExitStatus>> {
        let p = self.procs.iter_mut().find(|p| p.child.id() == pid).ok_or_else(|| anyhow!("no process {pid}"))?;
        Ok(p.child.try_wait()?)
    }

    /// Waits up to `timeout` for the spawned process `pid` to exit.
    pub fn wait_exit(&mut self, pid: u32, timeout: Duration) -> Result<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_wait(pid)? {
                return Ok(s);
            }
            if Instant::now() > deadline {
                bail!("process {pid} did not exit within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn kill9_coordinator(&mut self) -> Result<()> {
        let name = format!("coordinator-{}", self.starts);
        let p = self.procs.iter_mut().find(|p| p.name == name).ok_or_else(|| anyhow!("no running {name}"))?;
        p.child.kill()?; // SIGKILL
        p.child.wait()?;
        Ok(())
    }

    /// Issues an identity with the real `coordinator pki issue`.
    pub fn issue(&self, role: &str, name: &str) -> Result<Identity> {
        run_ok(
            Command::new(bin("coordinator"))
                .args(["pki", "issue", "--dir"])
                .arg(&self.pki)
                .args(["--role", role, "--name", name]),
        )?;
        Ok(Identity {
            name: name.to_string(),
            cert: self.pki.join(format!("{name}.crt")),
            key: self.pki.join(format!("{name}.key")),
        })
    }

    pub fn url(&self) -> String {
        std::iter::once(self.addr)
            .chain(self.also.iter().copied())
            .map(|a| format!("https://{a}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Enrolls an agent as an operator and the agent would: a one-time token from `seedctl
    /// enroll create`, then `source-agent enroll` or `copy-agent enroll` with the CA's
    /// fingerprint, at the console listener. Writes the agent's config at `<name>.toml` (as
    /// [`Cluster::agent_config`]); its own key and certificate go where `issue` puts them.
    pub fn enroll(&self, role: &str, name: &str, site: Option<&str>) -> Result<(Identity, PathBuf)> {
        let ops = Identity {
            name: "harness-enroller".into(),
            cert: self.pki.join("harness-enroller.crt"),
            key: self.pki.join("harness-enroller.key"),
        };
        if !ops.cert.exists() {
            self.issue("operator", &ops.name)?;
        }
        let mut args = vec!["--json", "enroll", "create", "--role", role, "--name", name, "--ttl-seconds", "600"];
        args.extend(["--reason", "the test harness enrolls its agents"]);
        if let Some(s) = site {
            args.extend(["--site", s]);
        }
        let out = run_ok(&mut self.seedctl(&ops, &args))?;
        let t: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let token = self.path(&format!("{name}.token"));
        std::fs::write(&token, t["token"].as_str().context("no token")?)?;
        std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        let id = Identity {
            name: name.to_string(),
            cert: self.pki.join(format!("{name}.crt")),
            key: self.pki.join(format!("{name}.key")),
        };
        let cfg = self.agent_config(&id, site)?;
        let program = if role == "copy" { "copy-agent" } else { "source-agent" };
        run_ok(
            Command::new(bin(program))
                .arg("--config")
                .arg(&cfg)
                .args(["enroll", "--url", &self.web_url(), "--ca-fingerprint"])
                .arg(t["ca_fingerprint"].as_str().context("no fingerprint")?)
                .arg("--token-file")
                .arg(&token)
                .args(["--name", name]),
        )?;
        Ok((id, cfg))
    }

    pub fn client_config(&self, id: &Identity) -> ClientConfig {
        ClientConfig {
            url: self.url(),
            ca_file: self.pki.join("ca.crt"),
            cert_file: id.cert.clone(),
            key_file: id.key.clone(),
            server_name: Some("localhost".into()),
            timeout: Duration::from_secs(15),
        }
    }

    /// An mTLS connection as `id`.
    pub async fn connect(&self, id: &Identity) -> Result<Conn> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Ok(seedship_proto::client::connect(&self.client_config(id)).await?)
    }

    /// Writes an agent config file for `id` and returns its path.
    pub fn agent_config(&self, id: &Identity, site: Option<&str>) -> Result<PathBuf> {
        let p = self.path(&format!("{}.toml", id.name));
        let site = site.map(|s| format!("site = \"{s}\"\n")).unwrap_or_default();
        std::fs::write(
            &p,
            format!(
                "{site}[coordinator]\nurl = \"{}\"\nca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\nserver_name = \"localhost\"\n",
                self.url(),
                self.pki.join("ca.crt").display(),
                id.cert.display(),
                id.key.display()
            ),
        )?;
        Ok(p)
    }

    /// Runs a binary to completion with its output captured (and kept for failure reports).
    pub fn run(&mut self, name: &str, cmd: &mut Command) -> Result<Output> {
        let out = cmd
            .current_dir(self.dir.path())
            .env("RUST_LOG", "info")
            .env("SEEDSHIP_CACHE", self.dir.path().join("agent-cache"))
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {name}"))?;
        let log = self.path(&format!("{name}-{}.log", self.logs.len()));
        std::fs::write(&log, [out.stdout.as_slice(), b"\n--- stderr ---\n", out.stderr.as_slice()].concat())?;
        self.logs.push(log);
        Ok(out)
    }

    /// Runs several binaries at once, each to completion, with their output captured.
    pub fn run_all(&mut self, cmds: Vec<(&str, &mut Command)>) -> Result<Vec<Output>> {
        let mut children = Vec::new();
        for (name, cmd) in cmds {
            let child = cmd
                .current_dir(self.dir.path())
                .env("RUST_LOG", "info")
                .env("SEEDSHIP_CACHE", self.dir.path().join("agent-cache"))
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .with_context(|| format!("spawning {name}"))?;
            children.push((name.to_string(), child));
        }
        let mut out = Vec::new();
        for (name, child) in children {
            let o = child.wait_with_output().with_context(|| format!("waiting for {name}"))?;
            let log = self.path(&format!("{name}-{}.log", self.logs.len()));
            std::fs::write(&log, [o.stdout.as_slice(), b"\n--- stderr ---\n", o.stderr.as_slice()].concat())?;
            self.logs.push(log);
            out.push(o);
        }
        Ok(out)
    }

    /// ERROR lines containing `needle` are expected in this test.
    pub fn allow_error(&mut self, needle: &str) {
        self.allowed_errors.push(needle.to_string());
    }

    pub fn log_of(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(&format!("{name}.log"))).unwrap_or_default()
    }

    /// All coordinator logs so far, concatenated.
    pub fn coordinator_logs(&self) -> String {
        (1..=self.starts).map(|i| self.log_of(&format!("coordinator-{i}"))).collect()
    }

    fn unexpected_errors(&self) -> Vec<String> {
        let mut out = Vec::new();
        for log in &self.logs {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            for line in text.lines() {
                let is_error = line.contains(" ERROR ") || line.contains("\"level\":\"ERROR\"");
                if is_error && !self.allowed_errors.iter().any(|a| line.contains(a)) {
                    out.push(format!("{}: {line}", log.file_name().unwrap_or_default().to_string_lossy()));
                }
            }
        }
        out
    }

    /// Stops every process and fails if any log has an unexpected ERROR line, or anything
    /// shaped like a drive key (48 digits in 8 groups of 6).
    pub fn finish(mut self) -> Result<()> {
        self.stop_all();
        let errors = self.unexpected_errors();
        if !errors.is_empty() {
            bail!("unexpected ERROR lines in logs:\n{}", errors.join("\n"));
        }
        for log in &self.logs {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if let Some(k) = find_recovery_password(&text) {
                bail!("{} shows a drive key: {k}", log.display());
            }
        }
        self.finished = true;
        Ok(())
    }

    fn stop_all(&mut self) {
        for p in &mut self.procs {
            if let Ok(None) = p.child.try_wait() {
                let _ = Command::new("kill").arg("-TERM").arg(p.child.id().to_string()).status();
                let deadline = Instant::now() + Duration::from_secs(5);
                while Instant::now() < deadline {
                    if let Ok(Some(_)) = p.child.try_wait() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = p.child.kill();
                let _ = p.child.wait();
            }
        }
        // NTFS volumes mounted by the tests, or left mounted by a killed copy agent.
        ntfs::unmount_under(self.dir.path());
    }

    fn print_logs(&self) {
        for log in &self.logs {
            eprintln!("===== {} =====", log.display());
            eprintln!("{}", std::fs::read_to_string(log).unwrap_or_default());
        }
    }
}

impl Drop for Cluster {
    /// A cluster dropped without a successful `finish` belongs to a failed test (a panic, or an
    /// error returned with `?`): print every log so the failure can be read.
    fn drop(&mut self) {
        self.stop_all();
        if !self.finished {
            self.print_logs();
        }
    }
}

/// The seed of `job` as an operator sees it (`GetSeed`), asked again while the coordinator
/// answers UNAVAILABLE (busy: its answer says to retry), for up to 20 s.
pub async fn get_seed(c: &Cluster, ops: &Identity, job: &str) -> Result<seedship_proto::pb::GetSeedResponse> {
    let conn = c.connect(ops).await?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = seedship_proto::client::operator(conn.clone())
            .get_seed(seedship_proto::pb::GetSeedRequest { seed: job.into() })
            .await;
        match r {
            Err(e) if e.code() == tonic::Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            r => return Ok(r.context("GetSeed")?.into_inner()),
        }
    }
}

/// The first thing in `text` shaped like a BitLocker recovery password: 8 groups of 6 digits
/// joined by '-'.
pub fn find_recovery_password(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let (want, n) = (55usize, b.len());
    (0..n.saturating_sub(want - 1))
        .find(|&i| {
            (i == 0 || !b[i - 1].is_ascii_digit())
                && (i + want == n || !b[i + want].is_ascii_digit())
                && (0..want).all(|j| if j % 7 == 6 { b[i + j] == b'-' } else { b[i + j].is_ascii_digit() })
        })
        .map(|i| text[i..i + want].to_string())
}

/// Runs a command and fails with its output if it does not exit 0.
pub fn run_ok(cmd: &mut Command) -> Result<Output> {
    let out = cmd.stdin(Stdio::null()).output().context("running a command")?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

/// A passphrase file (mode 0600) in `dir`, for the source agent.
pub fn passphrase_file(dir: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::OpenOptionsExt;
    let p = dir.join("passphrase");
    if !p.exists() {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&p)?;
        std::io::Write::write_all(&mut f, b"correct horse battery staple\n")?;
    }
    Ok(p)
}

/// `source-agent backup --offline` of `sources` into `staging` for `job`, with test defaults: a
/// fast key derivation, no progress line, and `--no-register` unless `config` is given.
pub fn backup_cmd(dir: &Path, staging: &Path, job: &str, sources: &[&Path], config: Option<&Path>) -> Result<Command> {
    let mut c = Command::new(bin("source-agent"));
    if let Some(cfg) = config {
        c.arg("--config").arg(cfg);
    }
    c.args(["backup", "--offline", "--quiet", "--kdf-memory-kib", "1024", "--job-name", job])
        .args(["--storage-account", "seedacct", "--location", "westeurope"])
        .args(["--subscription-id", "0f0e0d0c-0000-4000-8000-00000000abcd"])
        .arg("--staging")
        .arg(staging)
        .arg("--passphrase-file")
        .arg(passphrase_file(dir)?);
    if config.is_none() {
        c.arg("--no-register");
    }
    c.args(sources);
    Ok(c)
}

/// The project's corpus generator (`tests/corpus/corpus.py`).
pub fn corpus_tool() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/corpus.py")
}

/// Generates a deterministic corpus with `tests/corpus/corpus.py`.
pub fn make_corpus(out: &Path, size_mib: u32, seed: u32) -> Result<()> {
    let script = corpus_tool();
    run_ok(Command::new("python3").arg(script).args(["generate", "--out"]).arg(out).args([
        "--size-mib",
        &size_mib.to_string(),
        "--seed",
        &seed.to_string(),
    ]))?;
    Ok(())
}

/// A fixed, valid seed registration for tests.
pub fn seed_request(job: &str) -> seedship_proto::pb::RegisterSeedRequest {
    seedship_proto::pb::RegisterSeedRequest {
        request_id: seedship_proto::client::new_request_id(),
        job_name: job.to_string(),
        storage_account: "seedacct".into(),
        container: String::new(),
        subscription_id: "0f0e0d0c-0000-4000-8000-00000000abcd".into(),
        location: "westeurope".into(),
        staging_location: format!("/staging/{job}"),
        manifest_root: "ab".repeat(32),
        total_bytes: 1_000_000,
        file_count: 42,
        target_site: String::new(),
        target_station: String::new(),
        repository_id: TEST_REPOSITORY_ID.into(),
    }
}

/// The repository id of [`seed_request`]'s seeds (all of one server's seeds share one).
pub const TEST_REPOSITORY_ID: &str = "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd";

/// A minimal HTTP/1.1 client for tests of the emulated Azure APIs: one request on its own
/// connection. Returns the status code and the body.
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    let body = body.unwrap_or("");
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    if !body.is_empty() {
        req.push_str("Content-Type: application/json\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes())?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    let text = String::from_utf8_lossy(&out).to_string();
    let (head, rest) = text.split_once("\r\n\r\n").ok_or_else(|| anyhow!("no HTTP response: {text}"))?;
    let status =
        head.split(' ').nth(1).and_then(|c| c.parse().ok()).ok_or_else(|| anyhow!("bad status line: {head}"))?;
    let chunked = head.lines().any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding: chunked"));
    let body = if chunked {
        let mut b = String::new();
        let mut r = rest;
        while let Some((size, tail)) = r.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            b.push_str(&tail[..n]);
            r = &tail[n + 2..];
        }
        b
    } else {
        rest.to_string()
    };
    Ok((status, body))
}

/// Starts `seedship-azure-emulator` on loopback with its state in `state` (HTTPS with its CA in
/// `tls` when given); returns the process, its address and its URL.
pub fn start_emulator(state: &Path, log: &Path, tls: Option<&Path>) -> Result<(Child, String, String)> {
    start_emulator_with(state, log, tls, &[])
}

/// [`start_emulator`] with more arguments (e.g. `--storage-url`).
pub fn start_emulator_with(
    state: &Path,
    log: &Path,
    tls: Option<&Path>,
    extra: &[std::ffi::OsString],
) -> Result<(Child, String, String)> {
    start_emulator_binary("seedship-emulator", state, log, tls, extra)
}

/// Starts emulator binary `name` with its state, log and TLS; waits for its ready file.
pub fn start_emulator_binary(
    name: &str,
    state: &Path,
    log: &Path,
    tls: Option<&Path>,
    extra: &[std::ffi::OsString],
) -> Result<(Child, String, String)> {
    let ready = state.with_extension("ready");
    let _ = std::fs::remove_file(&ready);
    let mut cmd = Command::new(bin(name));
    cmd.args(extra);
    if let Some(t) = tls {
        cmd.arg("--tls-dir").arg(t);
    }
    let child = cmd
        .arg("--state")
        .arg(state)
        .arg("--ready-file")
        .arg(&ready)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(log)?)
        .stderr(std::fs::OpenOptions::new().append(true).open(log)?)
        .spawn()?;
    let (addr, url) = wait_for("the emulator's ready file", Duration::from_secs(20), || {
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&ready).ok()?).ok()?;
        Some((v["addr"].as_str()?.to_string(), v["url"].as_str()?.to_string()))
    })?;
    Ok((child, addr, url))
}

/// `job` registered by `source`, allowed on a virtual copy station by `ops` (this test
/// machine is a VM), and claimed by `station` (registered first): its connection and lease.
pub async fn claimed(
    c: &mut Cluster,
    source: &Identity,
    station: &Identity,
    ops: &Identity,
    job: &str,
) -> Result<(Conn, seedship_proto::pb::Lease)> {
    use seedship_proto::{client, pb};
    let src = c.connect(source).await?;
    seedship_proto::agent::register(&src, None, "test").await?;
    client::seeds(src).register_seed(seed_request(job)).await?;
    let out = c.run("allow", &mut c.seedctl(ops, &["allow-virtual-station", job, "--reason", "test lab"]))?;
    anyhow::ensure!(out.status.success(), "allow-virtual-station: {}", String::from_utf8_lossy(&out.stderr));
    let cp = c.connect(station).await?;
    seedship_proto::agent::register(&cp, Some("hq"), "test").await?;
    let lease = client::diskprep(cp.clone())
        .claim_work(pb::ClaimWorkRequest { request_id: rid() })
        .await?
        .into_inner()
        .lease
        .ok_or_else(|| anyhow!("{job} was not leased to the station"))?;
    Ok((cp, lease))
}

/// Shorthand for a request id.
pub fn rid() -> String {
    seedship_proto::client::new_request_id()
}

/// Every entry under `p` (depth first, children before their directory).
pub fn walk(p: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(p) else { return out };
    for e in rd {
        let e = e.unwrap();
        let path = e.path();
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&path));
        }
        out.push(path);
    }
    out
}

/// Compares two trees: names, kinds, modes, owners, sizes, times, contents, link targets.
pub fn same_tree(a: &Path, b: &Path) {
    use std::os::unix::fs::MetadataExt;
    let mut ea: Vec<PathBuf> = walk(a).into_iter().map(|p| p.strip_prefix(a).unwrap().to_path_buf()).collect();
    let mut eb: Vec<PathBuf> = walk(b).into_iter().map(|p| p.strip_prefix(b).unwrap().to_path_buf()).collect();
    ea.sort();
    eb.sort();
    assert_eq!(ea, eb, "the same entries");
    for rel in ea.iter().chain(std::iter::once(&PathBuf::new())) {
        let (pa, pb) = (a.join(rel), b.join(rel));
        let (ma, mb) = (std::fs::symlink_metadata(&pa).unwrap(), std::fs::symlink_metadata(&pb).unwrap());
        assert_eq!(ma.file_type(), mb.file_type(), "{rel:?}");
        assert_eq!(ma.mode() & 0o7777, mb.mode() & 0o7777, "mode of {rel:?}");
        assert_eq!((ma.uid(), ma.gid()), (mb.uid(), mb.gid()), "owner of {rel:?}");
        assert_eq!((ma.mtime(), ma.mtime_nsec()), (mb.mtime(), mb.mtime_nsec()), "mtime of {rel:?}");
        if ma.is_file() {
            assert_eq!(ma.len(), mb.len(), "size of {rel:?}");
            assert!(std::fs::read(&pa).unwrap() == std::fs::read(&pb).unwrap(), "content of {rel:?}");
        }
        if ma.file_type().is_symlink() {
            assert_eq!(std::fs::read_link(&pa).unwrap(), std::fs::read_link(&pb).unwrap(), "target of {rel:?}");
        }
    }
}

/// Runs `cmd` with its standard output a pipe whose reading end is already closed (as
/// `cmd | head -0` leaves it): its exit status and standard error.
pub fn run_into_closed_pipe(cmd: &mut Command) -> Result<(std::process::ExitStatus, String)> {
    let (reader, writer) = std::io::pipe()?;
    drop(reader);
    let o = cmd.stdin(Stdio::null()).stdout(writer).stderr(Stdio::piped()).output()?;
    Ok((o.status, String::from_utf8_lossy(&o.stderr).into_owned()))
}
