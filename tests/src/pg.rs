//! A real PostgreSQL for the tests: Debian's server (`postgresql`, installed by
//! `deploy/debian/install.sh`), a new cluster made with `initdb` in a temporary folder and run
//! by the unprivileged `postgres` user (PostgreSQL refuses to run as root) on a free loopback
//! port, stopped and removed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    child: Option<Child>,
    pub port: u16,
    /// The superuser's password, once [`Postgres::require_tls_and_password`] set one.
    password: Option<String>,
}

/// The newest `/usr/lib/postgresql/<version>/bin`.
fn server_bin() -> Result<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL is not installed (/usr/lib/postgresql); run deploy/debian/install.sh")?
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, b): &(u32, PathBuf)| b.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().map(|(_, b)| b).ok_or_else(|| anyhow!("no PostgreSQL server in /usr/lib/postgresql"))
}

/// `program` from `bin`, as the `postgres` user when this process is root (the process itself
/// changes user, so its id is the server's: signals reach it).
fn as_postgres(bin: &Path, program: &str) -> Command {
    use std::os::unix::process::CommandExt;
    let mut c = Command::new(bin.join(program));
    if nix::unistd::geteuid().is_root()
        && let Ok(Some(user)) = nix::unistd::User::from_name("postgres")
    {
        c.uid(user.uid.as_raw()).gid(user.gid.as_raw()).env("HOME", "/tmp");
    }
    c
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Postgres {
    /// Makes a cluster whose superuser is `seedship` (trust on loopback: the test machine's
    /// own), starts it and makes the database `seedship`.
    pub fn start() -> Result<Postgres> {
        let bin = server_bin()?;
        let dir = tempfile::Builder::new().prefix("seedship-pg-").tempdir()?;
        if nix::unistd::geteuid().is_root() {
            let user = nix::unistd::User::from_name("postgres")?.context("no postgres user")?;
            nix::unistd::chown(dir.path(), Some(user.uid), Some(user.gid))?;
        }
        let data = dir.path().join("data");
        let o = as_postgres(&bin, "initdb")
            .arg("-D")
            .arg(&data)
            .args(["-U", "seedship", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"])
            .output()?;
        if !o.status.success() {
            bail!("initdb failed: {}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        }
        let mut pg = Postgres { dir, bin, child: None, port: 0, password: None };
        pg.run()?;
        let o = as_postgres(&pg.bin, "createdb")
            .args(["-h", "127.0.0.1", "-p", &pg.port.to_string(), "-U", "seedship", "seedship"])
            .output()?;
        if !o.status.success() {
            bail!("createdb failed: {}", String::from_utf8_lossy(&o.stderr));
        }
        Ok(pg)
    }

    /// Starts the server on a free port (again, after [`Postgres::stop`]: a restart).
    pub fn run(&mut self) -> Result<()> {
        if self.port == 0 {
            self.port = free_port()?;
        }
        self.spawn()?;
        let t0 = Instant::now();
        loop {
            // After a kill -9 the old server's children may hold its shared memory for a moment:
            // the new postmaster exits at once; start it again.
            if let Some(c) = self.child.as_mut()
                && c.try_wait()?.is_some()
            {
                if !self.log().contains("pre-existing shared memory block") || t0.elapsed() > Duration::from_secs(20) {
                    bail!("PostgreSQL exited at start: {}", self.log());
                }
                std::thread::sleep(Duration::from_millis(200));
                self.spawn()?;
                continue;
            }
            let ok = Command::new(self.bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "seedship", "-q"])
                .status()?
                .success();
            if ok {
                return Ok(());
            }
            if t0.elapsed() > Duration::from_secs(30) {
                bail!("PostgreSQL did not get ready in 30 s: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The postmaster on this cluster's port, logging to `postgres.log`.
    fn spawn(&mut self) -> Result<()> {
        let log = std::fs::File::create(self.dir.path().join("postgres.log"))?;
        let child = as_postgres(&self.bin, "postgres")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-p", &self.port.to_string(), "-c", "listen_addresses=127.0.0.1", "-k"])
            .arg(self.dir.path())
            .args(std::env::var("SEEDSHIP_PG_SETTINGS").unwrap_or_default().split_whitespace().flat_map(|s| ["-c", s]))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        Ok(())
    }

    /// Stops the server cleanly (a "fast" shutdown: SIGINT) and waits for it.
    pub fn stop(&mut self) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), nix::sys::signal::Signal::SIGINT)?;
            c.wait()?;
        }
        Ok(())
    }

    /// Stops the server at once (SIGKILL of the postmaster is no clean stop: the next start
    /// recovers from the WAL, as after a crash).
    pub fn kill(&mut self) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            c.kill()?;
            c.wait()?;
            // The postmaster's children go with it; wait until the port is free.
            let t0 = Instant::now();
            while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && t0.elapsed() < Duration::from_secs(10)
            {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    /// A connection URL for `database`, as the superuser `seedship`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://seedship@127.0.0.1:{}/{database}", self.port)
    }

    /// A new empty database (one per test of a shared server).
    pub fn database(&self, name: &str) -> Result<String> {
        let o = as_postgres(&self.bin, "createdb")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "seedship", name])
            .output()?;
        if !o.status.success() {
            bail!("createdb {name} failed: {}", String::from_utf8_lossy(&o.stderr));
        }
        Ok(self.url(name))
    }

    /// Requires TLS and a password from now on: a CA and a server certificate for
    /// 127.0.0.1 (made here), `ssl = on`, the superuser's password set, and `pg_hba.conf`
    /// accepting only `hostssl` with SCRAM. Gives the CA certificate's file and a password
    /// file (mode 0600), as `[postgres] ca_file` and `password_file` take them.
    pub fn require_tls_and_password(&mut self) -> Result<(PathBuf, PathBuf)> {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
        use std::os::unix::fs::PermissionsExt;
        let ca_key = KeyPair::generate()?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(rcgen::DnType::CommonName, "seedship test PostgreSQL CA");
        let ca_cert = ca.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate()?;
        let mut leaf = CertificateParams::new(vec!["localhost".to_string()])?;
        leaf.subject_alt_names.push(SanType::IpAddress("127.0.0.1".parse()?));
        let cert = leaf.signed_by(&key, &issuer)?;
        let data = self.dir.path().join("data");
        let (crt, keyf) = (data.join("server.crt"), data.join("server.key"));
        std::fs::write(&crt, cert.pem())?;
        std::fs::write(&keyf, key.serialize_pem())?;
        std::fs::set_permissions(&keyf, std::fs::Permissions::from_mode(0o600))?;
        if nix::unistd::geteuid().is_root() {
            let user = nix::unistd::User::from_name("postgres")?.context("no postgres user")?;
            for f in [&crt, &keyf] {
                nix::unistd::chown(f, Some(user.uid), Some(user.gid))?;
            }
        }
        let ca_file = self.dir.path().join("pg-ca.crt");
        std::fs::write(&ca_file, ca_cert.pem())?;
        let password = format!("pw-{}", std::process::id());
        let password_file = self.dir.path().join("pg-password");
        std::fs::write(&password_file, format!("{password}\n"))?;
        std::fs::set_permissions(&password_file, std::fs::Permissions::from_mode(0o600))?;
        let o = as_postgres(&self.bin, "psql")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "seedship", "-d", "seedship", "-c"])
            .arg(format!("ALTER USER seedship PASSWORD '{password}'"))
            .output()?;
        if !o.status.success() {
            bail!("setting the password failed: {}", String::from_utf8_lossy(&o.stderr));
        }
        let mut conf = std::fs::OpenOptions::new().append(true).open(data.join("postgresql.conf"))?;
        std::io::Write::write_all(&mut conf, b"ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n")?;
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\nhostnossl all all 127.0.0.1/32 reject\n",
        )?;
        self.stop()?;
        self.run()?;
        self.password = Some(password);
        Ok((ca_file, password_file))
    }

    /// A PostgreSQL client program (`psql`, `pgbench`) of the server's version, reaching this
    /// server as the superuser `seedship` (over TLS with the password once they are required).
    pub fn client(&self, program: &str) -> Command {
        let mut c = Command::new(self.bin.join(program));
        c.env("PGHOST", "127.0.0.1").env("PGPORT", self.port.to_string()).env("PGUSER", "seedship");
        if let Some(pw) = &self.password {
            c.env("PGPASSWORD", pw).env("PGSSLMODE", "require");
        }
        c
    }

    /// The cluster's folder (its data, log and the files this harness made).
    pub fn dir_path(&self) -> &Path {
        self.dir.path()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SIGTERM: a "smart" shutdown is slow with open connections; SIGINT is "fast".
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), nix::sys::signal::Signal::SIGINT);
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
