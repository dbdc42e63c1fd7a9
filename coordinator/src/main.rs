//! `coordinator`: serve, or manage the PKI.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use coordinator::config::{Config, Overrides};
use seedship_proto::identity::Role;

/// jemalloc: the coordinator allocates and frees per call (protobuf messages, rows, HTTP/2
/// frames) from many threads; glibc's allocator was a fifth of its CPU under load. (mimalloc
/// saved as much there but made 10,000 agents' TLS connections a third slower to set up.)
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Debug, Parser)]
#[command(name = "coordinator", version, about = "The seedship coordinator")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Serve the mTLS gRPC API.
    Serve {
        /// Config file (TOML).
        #[arg(long, env = "SEEDSHIP_CONFIG")]
        config: PathBuf,
        /// Override `listen`.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Override `database`.
        #[arg(long)]
        database: Option<PathBuf>,
        /// Override `ready_file`.
        #[arg(long)]
        ready_file: Option<PathBuf>,
        /// Print the effective configuration as TOML and exit.
        #[arg(long)]
        print_config: bool,
    },
    /// Create and issue certificates.
    Pki {
        #[command(subcommand)]
        cmd: PkiCmd,
    },
    /// The master key that seals drive keys: make a new one, rotate to it.
    Keys {
        #[command(subcommand)]
        cmd: KeysCmd,
    },
    /// The coordinator's database: move a site from SQLite to PostgreSQL.
    Store {
        #[command(subcommand)]
        cmd: StoreCmd,
    },
    #[command(flatten)]
    Docs(seedship_proto::cli::DocCmd),
}

#[derive(Debug, Subcommand)]
enum StoreCmd {
    /// With the coordinator stopped: copy its SQLite state into an empty PostgreSQL database in
    /// one transaction, then read every table back and compare (rows and contents). Then
    /// replace `database` with a [postgres] section in the config and start the coordinators.
    Migrate {
        /// The SQLite database: sqlite:PATH.
        #[arg(long)]
        from: String,
        /// The PostgreSQL database: postgres:URL (postgres://USER@HOST:PORT/DATABASE, no password).
        #[arg(long)]
        to: String,
        /// The CA of the PostgreSQL server's certificate (TLS, as [postgres] ca_file).
        #[arg(long)]
        ca_file: Option<PathBuf>,
        /// The PostgreSQL password (a file of mode 0600, as [postgres] password_file).
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
}

fn store(cmd: StoreCmd) -> anyhow::Result<()> {
    match cmd {
        StoreCmd::Migrate { from, to, ca_file, password_file } => {
            let (path, url) = (sqlite_arg(&from)?, postgres_arg(&to)?);
            let pg = coordinator::store::pg::PostgresConfig {
                ca_file,
                password_file,
                ..coordinator::store::pg::PostgresConfig::url(&url)
            };
            if let Some(p) = pg.problem() {
                anyhow::bail!(
                    "{p} (on this command: postgres.url is --to, postgres.ca_file --ca-file, postgres.password_file --password-file)"
                );
            }
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
            let checks = rt.block_on(coordinator::store::migrate::sqlite_to_postgres(
                &path,
                &pg,
                std::time::Duration::from_secs(5),
                |line| println!("{line}"),
            ))?;
            let rows: u64 = checks.iter().map(|c| c.rows).sum();
            println!(
                "migrated {} to {url}: {rows} row(s) in {} table(s), every one read back and identical. \
                 Replace `database` with a [postgres] section in each coordinator's config and start them.",
                path.display(),
                checks.len()
            );
            Ok(())
        }
    }
}

/// `sqlite:PATH` as the path.
fn sqlite_arg(s: &str) -> anyhow::Result<PathBuf> {
    match s.strip_prefix("sqlite:") {
        Some(p) if !p.is_empty() => Ok(PathBuf::from(p)),
        _ => anyhow::bail!("--from {s:?}: expected sqlite:PATH (the coordinator's database file)"),
    }
}

/// `postgres:URL` (or the URL alone) as the URL.
fn postgres_arg(s: &str) -> anyhow::Result<String> {
    let url = s.strip_prefix("postgres:").filter(|u| u.starts_with("postgres")).unwrap_or(s);
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(url.to_string())
    } else {
        anyhow::bail!("--to {s:?}: expected postgres:postgres://USER@HOST:PORT/DATABASE")
    }
}

#[derive(Debug, Subcommand)]
enum KeysCmd {
    /// Write a new master key file (64 hex characters, mode 0600; never overwrites).
    Generate {
        /// The file to create.
        #[arg(long)]
        out: PathBuf,
    },
    /// With the coordinator stopped: seal every drive key and passkey in its database again
    /// under NEW_KEY_FILE (they must open with the configured master_key_file), all or nothing.
    /// Then set master_key_file to the new file and start the coordinator.
    RotateMaster {
        /// The coordinator's config (its database and current master_key_file).
        #[arg(long, env = "SEEDSHIP_CONFIG")]
        config: PathBuf,
        /// The new master key file (from `coordinator keys generate`).
        #[arg(long)]
        new_key_file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum PkiCmd {
    /// Create a CA, the coordinator's server certificate and a master key in DIR.
    Init {
        /// The PKI folder (created; it must not hold a CA already).
        #[arg(long, default_value = "pki")]
        dir: PathBuf,
        /// The SPIFFE trust domain of every identity, e.g. seedship.example.com.
        #[arg(long, default_value = "seedship.local")]
        trust_domain: String,
        /// DNS name or IP address clients use to reach the coordinator (repeatable).
        #[arg(long = "server-name", default_values_t = vec!["localhost".to_string(), "127.0.0.1".to_string()])]
        server_names: Vec<String>,
        /// How long the CA and the server certificate are valid.
        #[arg(long, default_value_t = 365)]
        days: i64,
    },
    /// Make an issuing CA under a root kept offline: DIR gets issuing-ca.crt, issuing-ca.key
    /// (0600) and a copy of the root's ca.crt. Point [enroll] ca_cert_file at issuing-ca.crt;
    /// the root's key is needed only for this.
    Intermediate {
        /// The root's folder (its ca.crt and ca.key), e.g. on a removable disk.
        #[arg(long)]
        root_dir: PathBuf,
        /// Where to write the issuing CA (created; nothing in it is overwritten).
        #[arg(long)]
        dir: PathBuf,
        /// How long the issuing CA is valid (1 to 3650 days; never past the root).
        #[arg(long, default_value_t = 365)]
        days: i64,
    },
    /// Issue a certificate and key for an agent or operator.
    Issue {
        /// The PKI folder made by `pki init`.
        #[arg(long, default_value = "pki")]
        dir: PathBuf,
        /// source, copy or operator.
        #[arg(long)]
        role: Role,
        /// The identity's name, e.g. station-01.
        #[arg(long)]
        name: String,
        /// Where to write NAME.crt and NAME.key (default: the PKI directory).
        #[arg(long)]
        out: Option<PathBuf>,
        /// How long the certificate is valid.
        #[arg(long, default_value_t = 365)]
        days: i64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Cmd::Docs(d) = &cli.cmd {
        return d.run(Cli::command());
    }
    match real_main(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            // A configuration that cannot be used exits as a usage error does, like the
            // agents' and seedctl's (see docs/operations.md, "Exit codes").
            if e.is::<coordinator::config::ConfigError>() {
                ExitCode::from(seedship_proto::EXIT_USAGE)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn real_main(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::Pki { cmd } => pki(cmd),
        Cmd::Keys { cmd } => keys(cmd),
        Cmd::Store { cmd } => store(cmd),
        Cmd::Docs(_) => Ok(()),
        Cmd::Serve { config, listen, database, ready_file, print_config } => {
            let cfg = Config::load(&config, &Overrides { listen, database, ready_file })?;
            if print_config {
                println!("{}", toml::to_string_pretty(&cfg)?);
                return Ok(());
            }
            serve(cfg)
        }
    }
}

fn pki(cmd: PkiCmd) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    match cmd {
        PkiCmd::Init { dir, trust_domain, server_names, days } => {
            let out = coordinator::pki::init(&dir, &trust_domain, &server_names, days)?;
            println!("created CA          {}", out.ca_cert.display());
            println!("created coordinator {} (names: {})", out.server_cert.display(), server_names.join(", "));
            println!("created master key  {} (keep it safe: it seals drive keys)", out.master_key.display());
            println!("next: coordinator pki issue --dir {} --role copy --name station-01", dir.display());
        }
        PkiCmd::Intermediate { root_dir, dir, days } => {
            let out = coordinator::pki::intermediate(&root_dir, &dir, days)?;
            println!(
                "created issuing CA {} and its key {} (0600), for trust domain {}",
                out.cert.display(),
                out.key.display(),
                out.trust_domain
            );
            println!("copied the root   {}", out.root.display());
            println!(
                "next: in coordinator.toml set [tls] ca_file = \"{}\" and [enroll] ca_cert_file = \"{}\"; then take {} offline",
                out.root.display(),
                out.cert.display(),
                root_dir.join("ca.key").display()
            );
        }
        PkiCmd::Issue { dir, role, name, out, days } => {
            let out = out.unwrap_or_else(|| dir.clone());
            let (crt, key) = coordinator::pki::issue(&dir, role, &name, &out, days)?;
            println!("issued {role} identity {name}: {} and {}", crt.display(), key.display());
        }
    }
    Ok(())
}

fn keys(cmd: KeysCmd) -> anyhow::Result<()> {
    use coordinator::keys::MasterKey;
    match cmd {
        KeysCmd::Generate { out } => {
            let hex = MasterKey::generate_hex()?;
            coordinator::pki::write_new(&out, format!("{hex}\n").as_bytes(), 0o600)?;
            println!("created master key {} (0600)", out.display());
        }
        KeysCmd::RotateMaster { config, new_key_file } => {
            let cfg = Config::load(&config, &Overrides::default())?;
            let old_file =
                cfg.master_key_file.clone().context("the config has no master_key_file: nothing is sealed")?;
            let old = std::sync::Arc::new(MasterKey::load(&old_file).map_err(anyhow::Error::msg)?);
            let new = std::sync::Arc::new(MasterKey::load(&new_key_file).map_err(anyhow::Error::msg)?);
            if std::fs::read(&old_file)? == std::fs::read(&new_key_file)? {
                anyhow::bail!(
                    "{} holds the key in use; make a new one with `coordinator keys generate`",
                    new_key_file.display()
                );
            }
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let done = rt.block_on(async {
                let store = coordinator::store::open(&cfg).await?;
                let now = coordinator::clock::Clock::now_ms(&coordinator::clock::SystemClock);
                anyhow::Ok(store.reseal_master(old, new, now).await?)
            })?;
            println!(
                "{} drive key(s) and {} passkey(s) sealed again under {}; set master_key_file = \"{}\" and start the coordinator (keep {} until it runs)",
                done.drive_keys,
                done.passkeys,
                new_key_file.display(),
                new_key_file.display(),
                old_file.display()
            );
        }
    }
    Ok(())
}

fn serve(cfg: Config) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    // The OTLP exporter's channel needs the runtime while it is built.
    let _rt = rt.enter();
    let _guard = seedship_telemetry::init("seedship-coordinator", &cfg.telemetry)?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .with_context(|| format!("cannot listen on {}", cfg.listen))?;
        coordinator::run(cfg, listener, seedship_proto::signals::shutdown_signal()).await?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_argument_and_command_says_what_it_is_for() {
        use clap::CommandFactory;
        assert_eq!(seedship_proto::cli::undocumented(&super::Cli::command()), Vec::<String>::new());
    }
}
