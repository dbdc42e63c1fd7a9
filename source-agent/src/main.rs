//! `source-agent`: the seedship agent on a backup server.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand};
use seedship_proto::agent;
use seedship_repo::restore::{LocalPacks, PackSource, RestoreOptions, RestoreProgress};
use source_agent::backup::{self, BackupRequest, progress::human_bytes};
use source_agent::seedfile::SeedTarget;
use source_agent::{EXIT_PARTIAL, VERSION, passphrase};

#[derive(Debug, Parser)]
#[command(name = "source-agent", version, about = "seedship source agent (backup server)")]
struct Cli {
    /// Config file (TOML), for the commands that talk to the coordinator.
    #[arg(long, env = "SEEDSHIP_CONFIG", global = true, default_value = "source-agent.toml")]
    config: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Args)]
struct Secret {
    /// File holding the repository passphrase (mode 0600). Or set SEEDSHIP_PASSPHRASE, or type
    /// it at the prompt.
    #[arg(long)]
    passphrase_file: Option<PathBuf>,
    /// File holding the paper recovery key, instead of the passphrase (or SEEDSHIP_RECOVERY_KEY).
    #[arg(long)]
    recovery_key_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Enroll this server with a one-time token: a new key (kept here), a certificate from the
    /// coordinator, written where the config's [coordinator] says.
    Enroll(seedship_proto::enroll::Args),
    /// Renew this agent's certificate over its current one, before it expires: a new key
    /// (kept here), the key and certificate files replaced (run it from a timer).
    Renew,
    /// Register this server with the coordinator and exit.
    Register {
        /// Instead: register the seed staged here (after re-verifying every file).
        #[arg(long)]
        staging: Option<PathBuf>,
    },
    /// Register, then send heartbeats and carry out repairs until stopped (SIGTERM/ctrl-c).
    Run,
    /// Upload again, once, the files the coordinator found missing or damaged in the import.
    Repair,
    /// Delete a staging location once its seed is in the vault (the deletion is recorded).
    Cleanup {
        /// The staging location (a local path or a mounted share).
        #[arg(long)]
        staging: PathBuf,
    },
    /// Show this server's seeds and where each stands.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Back up SOURCE... as a seed into a staging location, then register it.
    Backup(Box<BackupArgs>),
    /// Re-read every file of a staging set and check it against the seed manifest.
    Verify {
        /// The staging location (a local path or a mounted share).
        #[arg(long)]
        staging: PathBuf,
        /// Also open every blob with the key and check it against its id.
        #[arg(long)]
        read_data: bool,
        #[command(flatten)]
        secret: Secret,
    },
    /// Restore the latest snapshot (or --snapshot) of a staging set, or of this server's vault
    /// (--vault), into TARGET; every chunk is checked before it is written.
    Restore {
        /// Restore from this staging set (no coordinator needed).
        #[arg(long, required_unless_present = "vault", conflicts_with = "vault")]
        staging: Option<PathBuf>,
        /// Restore from this server's vault, through the coordinator.
        #[arg(long)]
        vault: bool,
        /// Where the vault's files are kept locally (default ~/.cache/seedship/<vault>).
        #[arg(long, requires = "vault")]
        cache: Option<PathBuf>,
        /// Where to restore to (a folder; created if missing).
        #[arg(long)]
        target: PathBuf,
        /// A snapshot id (or its start); default: the latest.
        #[arg(long)]
        snapshot: Option<String>,
        /// Only this path of the snapshot (as `source-name/dir/file`) and what is under it;
        /// repeat for more.
        #[arg(long = "include")]
        include: Vec<String>,
        /// Replace files that already exist in TARGET (a non-empty TARGET is refused without it).
        #[arg(long)]
        overwrite: bool,
        /// Write all file data through the page cache (by default long runs are written with
        /// O_DIRECT where the file system allows it).
        #[arg(long)]
        page_cache: bool,
        #[command(flatten)]
        secret: Secret,
    },
    /// Print the paper recovery key of a staging set's repository.
    RecoveryKey {
        /// The staging location (a local path or a mounted share).
        #[arg(long)]
        staging: PathBuf,
        #[command(flatten)]
        secret: Secret,
    },
    /// Rebuild a staging set's index from its packs (when an index file is damaged).
    RepairIndex {
        /// The staging location (a local path or a mounted share).
        #[arg(long)]
        staging: PathBuf,
        #[command(flatten)]
        secret: Secret,
    },
    #[command(flatten)]
    Docs(seedship_proto::cli::DocCmd),
}

#[derive(Debug, Args)]
struct BackupArgs {
    /// Write a full seed to a staging location (offline seeding). Without it: an incremental
    /// into this server's vault, once its seed is there.
    #[arg(long)]
    offline: bool,
    /// The staging location: a local path or a mounted share. Online, while the seed is on
    /// its way: where its staging set is (default: as registered).
    #[arg(long, required_if_eq("offline", "true"))]
    staging: Option<PathBuf>,
    /// The staging location as a copy station will see it (default: --staging).
    #[arg(long)]
    staging_share: Option<String>,
    /// The import job's name: 3-24 letters, digits or '-', starting and ending with a letter or
    /// digit.
    #[arg(long, required_if_eq("offline", "true"))]
    job_name: Option<String>,
    /// The Azure storage account the disks are imported into.
    #[arg(long, required_if_eq("offline", "true"))]
    storage_account: Option<String>,
    /// A suggested import container; by default (and as a rule) the coordinator chooses it.
    #[arg(long)]
    container: Option<String>,
    /// The Azure subscription (a GUID) of the import job.
    #[arg(long, required_if_eq("offline", "true"))]
    subscription_id: Option<String>,
    /// The Azure region of the storage account, e.g. westeurope.
    #[arg(long, required_if_eq("offline", "true"))]
    location: Option<String>,
    /// Only copy stations at this site may prepare the disks.
    #[arg(long)]
    target_site: Option<String>,
    /// Only this copy station may prepare the disks.
    #[arg(long)]
    target_station: Option<String>,
    /// zstd level for a new repository: 1-22, or -1 to -7 for the fast levels.
    #[arg(long, default_value_t = 3, allow_negative_numbers = true)]
    compression: i32,
    /// Snapshot time (RFC 3339), default now.
    #[arg(long)]
    time: Option<String>,
    /// Hash/compress/encrypt threads (default: the number of cores).
    #[arg(long)]
    workers: Option<usize>,
    /// Write the staging set only; register later with `register --staging`.
    #[arg(long)]
    no_register: bool,
    /// No progress line.
    #[arg(long)]
    quiet: bool,
    /// Argon2id memory for a new repository's key, KiB (default 65536).
    #[arg(long, hide = true, default_value_t = 64 * 1024)]
    kdf_memory_kib: u32,
    /// Pack size for a new repository, MiB (default 32).
    #[arg(long, hide = true, default_value_t = 32)]
    pack_target_mib: u64,
    /// File holding the repository passphrase (mode 0600). Or set SEEDSHIP_PASSPHRASE, or
    /// type it at the prompt.
    #[arg(long)]
    passphrase_file: Option<PathBuf>,
    /// Online: where the vault's small files are kept locally (default ~/.cache/seedship/<vault>).
    #[arg(long)]
    cache: Option<PathBuf>,
    /// Files and folders to back up.
    #[arg(required = true)]
    sources: Vec<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Docs(d) => d.run(Cli::command()),
        Cmd::Enroll(args) => {
            let cfg = agent::load_or_exit(&cli.config);
            seedship_proto::enroll::main(args, seedship_proto::identity::Role::Source, &cfg.coordinator)
        }
        Cmd::Renew => {
            let cfg = agent::load_or_exit(&cli.config);
            seedship_proto::enroll::renew_main(&cfg.coordinator)
        }
        Cmd::Backup(args) => backup_cmd(&cli.config, *args),
        Cmd::Verify { staging, read_data, secret } => local(|| verify(&staging, read_data, &secret)),
        Cmd::Restore { staging: Some(staging), target, snapshot, include, overwrite, page_cache, secret, .. } => {
            let opts = RestoreOptions { include, overwrite, page_cache };
            local_code(|| restore(&staging, &LocalPacks(&staging), &target, snapshot.as_deref(), &opts, &secret))
        }
        Cmd::RecoveryKey { staging, secret } => local(|| recovery_key(&staging, &secret)),
        Cmd::RepairIndex { staging, secret } => local(|| repair_index(&staging, &secret)),
        cmd => {
            let cfg = agent::load_or_exit(&cli.config);
            agent::run_main("seedship-source-agent", cfg, |cfg| async move {
                let conn = seedship_proto::client::connect_renewing(&cfg.coordinator).await?;
                match cmd {
                    Cmd::Register { staging: Some(staging) } => {
                        let r = source_agent::register::register(&conn, &staging, true).await?;
                        print_registered(&r);
                    }
                    Cmd::Register { staging: None } => {
                        let r = agent::register(&conn, cfg.site.as_deref(), VERSION).await?;
                        let id = r.agent.map(|a| a.identity).unwrap_or_default();
                        tracing::info!(identity = %id, "registered with the coordinator");
                        println!("registered as {id}");
                    }
                    Cmd::Run => {
                        // Repairs are asked for while the agent runs (as MARS does at its
                        // scheduled runs): checked every 30 s beside the heartbeats.
                        let c2 = conn.clone();
                        tokio::spawn(async move {
                            loop {
                                match source_agent::repair::repair_once(&c2).await {
                                    Ok(s) if s.orders > 0 => tracing::info!(
                                        uploaded = s.uploaded.len(),
                                        lost = s.lost.len(),
                                        bytes = s.bytes,
                                        "repair pass done"
                                    ),
                                    Ok(_) => {}
                                    Err(e) => tracing::warn!(error = %e.message(), "repair pass failed; retrying"),
                                }
                                tokio::time::sleep(std::time::Duration::from_secs(30)).await;
                            }
                        });
                        agent::register_and_run(conn, cfg.site.as_deref(), VERSION).await?
                    }
                    Cmd::Restore {
                        staging: None,
                        cache,
                        target,
                        snapshot,
                        include,
                        overwrite,
                        page_cache,
                        secret,
                        ..
                    } => {
                        check_target(&target, overwrite)?;
                        let v = source_agent::vault::access(&conn, false).await?;
                        let cache = cache.unwrap_or_else(|| source_agent::vault::default_cache(&v.name()));
                        tracing::debug!("vault access granted");
                        let st = source_agent::vault::sync(&v, &cache).await?;
                        tracing::debug!("vault metadata synced");
                        println!(
                            "vault {}: {} small file(s) in {} ({} downloaded, {})",
                            v.name(),
                            st.files,
                            cache.display(),
                            st.downloaded,
                            human_bytes(st.bytes),
                        );
                        let packs = source_agent::vault::VaultPacks {
                            store: v.store,
                            container: v.container,
                            prefix: v.prefix,
                            rt: tokio::runtime::Handle::current(),
                            parallel: RESTORE_DOWNLOADS,
                        };
                        let opts = RestoreOptions { include, overwrite, page_cache };
                        let code = tokio::task::spawn_blocking(move || {
                            restore(&cache, &packs, &target, snapshot.as_deref(), &opts, &secret)
                        })
                        .await
                        .map_err(|e| e.to_string())??;
                        if code != 0 {
                            return Err("some files could not be restored (listed above)".into());
                        }
                    }
                    Cmd::Cleanup { staging } => {
                        let (job, bytes) = source_agent::vault::delete_staging(&conn, &staging).await?;
                        println!(
                            "deleted the staging location {} of seed {job} ({})",
                            staging.display(),
                            human_bytes(bytes)
                        );
                    }
                    Cmd::Repair => {
                        let s = source_agent::repair::repair_once(&conn).await?;
                        if s.orders == 0 {
                            println!("no repairs asked of this server");
                        } else {
                            println!("{} file(s) uploaded again ({} bytes)", s.uploaded.len(), s.bytes);
                            for (p, why) in &s.lost {
                                println!("lost: {p}: {why}");
                            }
                        }
                    }
                    Cmd::Status { json } => {
                        let seeds = source_agent::status(&conn).await?;
                        // States by name, as seedctl gives them; a closed pipe ends quietly.
                        let out = if json {
                            let v: Vec<_> = seeds
                                .iter()
                                .map(|s| serde_json::json!({"job_name": s.job_name, "seed_id": s.seed_id, "state": seedship_proto::human::seed_state(s.state), "state_reason": s.state_reason, "import_job_state": s.import_job_state}))
                                .collect();
                            serde_json::to_string_pretty(&v)?
                        } else {
                            source_agent::status_text(&seeds)
                        };
                        let _ = seedship_proto::stdout::print(&out);
                    }
                    _ => unreachable!("local commands are handled above"),
                }
                Ok(())
            })
        }
    }
}

/// An incremental into this server's vault (see `backup::online`).
fn online_backup_cmd(config: &Path, a: BackupArgs) -> ExitCode {
    let unlock = match passphrase::unlock(a.passphrase_file.as_deref(), None) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(seedship_proto::EXIT_USAGE);
        }
    };
    let sources: Vec<PathBuf> = a.sources.iter().map(|s| std::path::absolute(s).unwrap_or(s.clone())).collect();
    let workers = a.workers.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2));
    let time = a.time.clone().unwrap_or_else(backup::now_rfc3339);
    let cfg = agent::load_or_exit(config);
    agent::run_main("seedship-source-agent", cfg, |cfg| async move {
        let conn = seedship_proto::client::connect_renewing(&cfg.coordinator).await?;
        let inc = source_agent::vault::incremental(&conn, a.cache, unlock, sources, time, workers, a.staging).await?;
        for s in &inc.sent_from_outbox {
            println!("sent from the outbox: incremental {} (written while the seed travelled)", &s[..12]);
        }
        let out = inc.out;
        println!(
            "incremental {} (parent {}) {} in {:.1}s",
            &out.snapshot[..12],
            out.parent.as_deref().map(|p| &p[..12]).unwrap_or("-"),
            if inc.pending {
                "written to the outbox: the seed is on its way; it goes to the vault once the vault is seeded"
            } else {
                "into the vault"
            },
            out.elapsed.as_secs_f64()
        );
        println!("  files        {} ({} unchanged, not read again)", out.files, out.unchanged_files);
        println!("  read         {}", human_bytes(out.read_bytes));
        println!("  new data     {} in {} new chunk(s)", human_bytes(out.new_bytes), out.new_chunks);
        println!("  uploaded     {} in {} file(s)", human_bytes(out.upload_bytes), out.upload.len());
        if let Some(line) = source_agent::backup::xattrs_line(&out.xattrs_not_kept) {
            println!("  not kept     {line}");
            tracing::warn!("{line}");
        }
        for s in &out.skipped {
            println!("  skipped      {}: {}", s.path.display(), s.reason);
        }
        if !out.skipped.is_empty() {
            return Err(format!("{} file(s) could not be read (listed above)", out.skipped.len()).into());
        }
        Ok(())
    })
}

fn print_registered(r: &seedship_proto::pb::RegisterSeedResponse) {
    let s = r.seed.clone().unwrap_or_default();
    let how = if r.created { "registered" } else { "was already registered" };
    println!("seed {} (job {}) {how}: {}", s.seed_id, s.job_name, s.state_reason);
    println!("import container (chosen by the coordinator): {}/{}", s.storage_account, s.container);
}

/// Runs a command that needs no coordinator; errors print as `error: ...` with exit 1.
fn local(f: impl FnOnce() -> Result<(), String>) -> ExitCode {
    let _ = tracing_init_default();
    match f() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn tracing_init_default() -> Result<seedship_telemetry::TelemetryGuard, seedship_telemetry::TelemetryError> {
    seedship_telemetry::init(
        "seedship-source-agent",
        &seedship_telemetry::TelemetryConfig { log_filter: "warn".into(), ..Default::default() },
    )
}

fn open(staging: &Path, secret: &Secret) -> Result<seedship_repo::Repository, String> {
    let unlock = passphrase::unlock(secret.passphrase_file.as_deref(), secret.recovery_key_file.as_deref())?;
    seedship_repo::Repository::open(staging, &unlock).map_err(|e| e.to_string())
}

fn verify(staging: &Path, read_data: bool, secret: &Secret) -> Result<(), String> {
    let mut report = seedship_repo::verify::verify_staging(staging, |_| {}).map_err(|e| e.to_string())?;
    if read_data {
        let repo = open(staging, secret)?;
        seedship_repo::verify::verify_data(&repo, &mut report).map_err(|e| e.to_string())?;
    }
    println!("manifest root {}", report.root);
    println!(
        "checked {} files, {}{}",
        report.files,
        human_bytes(report.bytes),
        if read_data { format!(", {} blobs", report.blobs) } else { String::new() }
    );
    if report.ok() {
        println!("ok: the staging set matches its manifest");
        return Ok(());
    }
    for f in &report.findings {
        println!("DAMAGED {}: {}", f.path, f.problem);
    }
    Err(format!("{} problem(s) found; the staging set must not be shipped as it is", report.findings.len()))
}

/// A restore goes into an empty (or new) folder, unless overwriting is asked for.
fn check_target(target: &Path, overwrite: bool) -> Result<(), String> {
    match std::fs::read_dir(target).map(|mut rd| rd.next().is_some()) {
        Ok(true) if !overwrite => Err(format!(
            "the target {} is not empty; restore into an empty folder, or give --overwrite to replace what is there",
            target.display()
        )),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            Err(format!("the target {} is a file, not a folder", target.display()))
        }
        Err(e) => Err(format!("the target {}: {e}", target.display())),
    }
}

/// Restores and prints what was restored and what was not; returns 3 when something could not
/// be restored.
/// Packs a restore from the vault downloads at once (each one's decoding and writing overlaps
/// the others' downloads).
const RESTORE_DOWNLOADS: usize = 4;

/// Restores a snapshot of the repository in `dir` (a staging set, or the vault's cached small
/// files), reading the packs from `packs`.
fn restore(
    dir: &Path,
    packs: &dyn PackSource,
    target: &Path,
    snapshot: Option<&str>,
    opts: &RestoreOptions,
    secret: &Secret,
) -> Result<u8, String> {
    check_target(target, opts.overwrite)?;
    let t0 = std::time::Instant::now();
    let repo = open(dir, secret)?;
    tracing::debug!(ms = t0.elapsed().as_millis() as u64, "repository opened");
    let (index, _) = repo.load_index().map_err(|e| match e {
        seedship_repo::RepoError::Corrupt { what, detail } if what.starts_with("index file") => {
            if dir.join(seedship_repo::layout::DATA_DIR).is_dir() {
                format!(
                    "{what} is damaged: {detail}. The packs hold what the index lists: rebuild it with `source-agent repair-index --staging {}`, then restore again",
                    dir.display()
                )
            } else {
                format!(
                    "the vault's {what} is damaged: {detail}. Restore from the staging set if it is still there (after `source-agent repair-index --staging DIR` if its index is damaged too); rebuilding a vault's index from its packs is not supported yet"
                )
            }
        }
        e => e.to_string(),
    })?;
    tracing::debug!(ms = t0.elapsed().as_millis() as u64, blobs = index.blobs.len(), "index loaded");
    let snaps = repo.snapshots().map_err(|e| e.to_string())?;
    let (id, snap) = match snapshot {
        Some(want) => {
            snaps.into_iter().find(|(id, _)| id.starts_with(want)).ok_or_else(|| format!("no snapshot {want}"))?
        }
        None => snaps.into_iter().last().ok_or("the repository has no snapshot yet")?,
    };
    let started = std::time::Instant::now();
    let progress = std::sync::Arc::new(RestoreProgress::default());
    let p2 = progress.clone();
    let display = source_agent::backup::progress::Display::start_with(
        move || {
            let n = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
            (n(&p2.files), n(&p2.total_files), n(&p2.bytes), n(&p2.total_bytes))
        },
        false,
    );
    let st = seedship_repo::restore::restore_from(repo.crypto(), &index, packs, &snap, target, opts, &progress);
    display.stop();
    let st = st.map_err(|e| e.to_string())?;
    let secs = started.elapsed().as_secs_f64().max(1e-3);
    println!(
        "restored snapshot {} ({}) to {}: {} files, {} directories, {} symlinks, {} hard links, {} in {secs:.1} s ({}/s); read {} from {} pack(s)",
        &id[..12],
        snap.time,
        target.display(),
        st.files,
        st.dirs,
        st.symlinks,
        st.hardlinks,
        human_bytes(st.bytes),
        human_bytes((st.bytes as f64 / secs) as u64),
        human_bytes(st.bytes_read),
        st.packs_read,
    );
    if st.failed.is_empty() {
        return Ok(0);
    }
    println!("NOT restored ({}):", st.failed.len());
    for (p, why) in &st.failed {
        println!("  {}: {why}", p.display());
    }
    Ok(source_agent::EXIT_PARTIAL)
}

/// Like `local`, for a command whose success has degrees (its exit code).
fn local_code(f: impl FnOnce() -> Result<u8, String>) -> ExitCode {
    let _ = tracing_init_default();
    match f() {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Rebuilds the index of the repository at `staging` from its packs' headers.
fn repair_index(staging: &Path, secret: &Secret) -> Result<(), String> {
    let repo = open(staging, secret)?;
    let (packs, blobs) = repo.rebuild_index().map_err(|e| format!("the index could not be rebuilt: {e}"))?;
    println!("index rebuilt from {packs} pack(s): {blobs} blob(s)");
    if staging.join(seedship_repo::layout::MANIFEST).exists() {
        println!(
            "note: the seed manifest still names the old index file, so `verify` reports it changed; restores work. A staging set not yet shipped is best staged again."
        );
    }
    Ok(())
}

fn recovery_key(staging: &Path, secret: &Secret) -> Result<(), String> {
    let repo = open(staging, secret)?;
    println!("{}", repo.recovery_key().map_err(|e| e.to_string())?);
    Ok(())
}

fn backup_cmd(config: &Path, a: BackupArgs) -> ExitCode {
    if !a.offline {
        return online_backup_cmd(config, a);
    }
    let _guard = tracing_init_default();
    let a_staging = a.staging.clone().expect("clap requires --staging with --offline");
    let pass = match passphrase::passphrase(a.passphrase_file.as_deref(), !seedship_repo::repo::exists(&a_staging)) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(seedship_proto::EXIT_USAGE);
        }
    };
    let staging = std::path::absolute(&a_staging).unwrap_or(a_staging.clone());
    let req = BackupRequest {
        sources: a.sources.iter().map(|s| std::path::absolute(s).unwrap_or(s.clone())).collect(),
        staging: staging.clone(),
        target: SeedTarget {
            job_name: a.job_name.unwrap_or_default(),
            storage_account: a.storage_account.unwrap_or_default(),
            container: a.container.unwrap_or_default(),
            subscription_id: a.subscription_id.unwrap_or_default(),
            location: a.location.unwrap_or_default(),
            staging_share: a.staging_share.unwrap_or_else(|| staging.display().to_string()),
            target_site: a.target_site,
            target_station: a.target_station,
        },
        passphrase: pass,
        compression_level: a.compression,
        time: a.time,
        workers: a.workers.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)),
        quiet: a.quiet,
        kdf: seedship_repo::KdfParams { memory_kib: a.kdf_memory_kib, ..Default::default() },
        pack_target_bytes: a.pack_target_mib.max(1) << 20,
    };
    let out = match backup::run(&req) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    print_summary(&out, &staging);
    if !a.no_register {
        let cfg = agent::load_or_exit(config);
        let code = agent::run_main("seedship-source-agent", cfg, |cfg| async move {
            let conn = seedship_proto::client::connect_renewing(&cfg.coordinator).await.map_err(|e| {
                format!("cannot reach the coordinator ({e}); the staged seed is kept: run `source-agent register --staging {}` later", staging.display())
            })?;
            let r = source_agent::register::register(&conn, &staging, false).await?;
            print_registered(&r);
            Ok(())
        });
        if code != ExitCode::SUCCESS {
            return code;
        }
    }
    if out.skipped.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(EXIT_PARTIAL) }
}

fn print_summary(o: &backup::BackupOutcome, staging: &Path) {
    if let Some(k) = &o.recovery_key {
        println!("A new repository was created. Its recovery key opens it if the passphrase is lost.");
        println!("Write it down and keep it apart from the disks:\n\n    {k}\n");
    }
    if o.already_complete {
        println!("the staging set in {} is already complete (manifest root {})", staging.display(), o.manifest.root);
        return;
    }
    let secs = o.elapsed.as_secs_f64().max(0.001);
    println!("backup to {} complete in {:.1}s", staging.display(), secs);
    println!("  files        {} in {} directories", o.files, o.dirs);
    println!("  read         {} ({:.0} MB/s)", human_bytes(o.read_bytes), o.read_bytes as f64 / secs / 1e6);
    println!("  source       {}", human_bytes(o.source_bytes));
    println!("  after dedup  {} ({} of {} chunks new)", human_bytes(o.new_bytes), o.new_chunks, o.chunks);
    println!(
        "  staged       {} in {} packs (ratio {:.2})",
        human_bytes(o.stored_bytes),
        o.packs,
        o.source_bytes as f64 / o.stored_bytes.max(1) as f64
    );
    if o.resumed_packs > 0 {
        println!("  resumed      {} complete packs from the interrupted run were kept", o.resumed_packs);
    }
    println!("  snapshot     {}", &o.snapshot[..12.min(o.snapshot.len())]);
    println!("  manifest     {} files, root {}", o.manifest.files.len(), o.manifest.root);
    if let Some(line) = source_agent::backup::xattrs_line(&o.xattrs_not_kept) {
        println!("  not kept     {line}");
        tracing::warn!("{line}");
    }
    if !o.skipped.is_empty() {
        println!("  skipped      {} (exit code {EXIT_PARTIAL}):", o.skipped.len());
        for s in &o.skipped {
            println!("    {}: {}", s.path.display(), s.reason);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_argument_and_command_says_what_it_is_for() {
        use clap::CommandFactory;
        assert_eq!(seedship_proto::cli::undocumented(&super::Cli::command()), Vec::<String>::new());
    }
}
