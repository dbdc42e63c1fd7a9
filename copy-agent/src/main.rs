//! `copy-agent`: the seedship agent on a copy station.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use copy_agent::{Config, VERSION, history};
use seedship_proto::agent;

#[derive(Debug, Parser)]
#[command(name = "copy-agent", version, about = "seedship copy agent (copy station)")]
struct Cli {
    /// Config file (TOML).
    #[arg(long, env = "SEEDSHIP_CONFIG", global = true, default_value = "copy-agent.toml")]
    config: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Enroll this station with a one-time token: a new key (kept here), a certificate from the
    /// coordinator, written where the config's [coordinator] says.
    Enroll(seedship_proto::enroll::Args),
    /// Renew this agent's certificate over its current one, before it expires: a new key
    /// (kept here), the key and certificate files replaced (run it from a timer).
    Renew,
    /// Register this copy station with the coordinator and exit.
    Register,
    /// Claim disk-prep work and prepare shipping disks until stopped (SIGTERM/ctrl-c).
    Run {
        /// A shipping disk (block device or image file), in addition to the config's; repeat.
        #[arg(long = "disk")]
        disks: Vec<PathBuf>,
        /// Exit after the first piece of work ends (exit 0 when its disks are prepared).
        #[arg(long)]
        once: bool,
        /// When more disks are needed, ask for them at the terminal.
        #[arg(long)]
        interactive: bool,
    },
    /// Show this station's current and past work.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Benchmark: write a staging set onto one disk image as an NTFS volume in Azure's layout
    /// (formatted, written through an ntfs-3g mount, read back raw). Prints JSON.
    #[command(hide = true)]
    BenchNtfs {
        /// The staging set (a source agent's offline backup).
        #[arg(long)]
        staging: PathBuf,
        /// The disk image to write (created or overwritten).
        #[arg(long)]
        disk: PathBuf,
        /// customer_disk (the default) or databox_disk.
        #[arg(long, default_value = "customer_disk")]
        layout: String,
        /// The import container the files are written for (its name is checked as Azure
        /// would check it, before anything is written).
        #[arg(long, default_value = "bench")]
        container: String,
        /// none, in-place (NTFS written plain, then encrypted) or dislocker (NTFS written
        /// through dislocker-fuse over an empty BitLocker volume).
        #[arg(long, default_value = "none")]
        bitlocker: String,
    },
    /// How many shipping disks, of which size, a staging set needs (NTFS's overhead counted):
    /// the smallest size for --disks N, or how many disks of --disk-size BYTES. Reads only the
    /// staging set's manifest.
    Plan {
        /// The staging set (a source agent's offline backup).
        #[arg(long)]
        staging: PathBuf,
        /// Spread the seed over this many disks: prints the smallest disk size that does.
        #[arg(long)]
        disks: Option<usize>,
        /// Disks of this many bytes: prints how many the seed needs.
        #[arg(long)]
        disk_size: Option<u64>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Make a disk blank for a new seed (a disk that holds another seed is never overwritten
    /// otherwise). Quick: its first and last MiB (boot sectors, partition tables); --full: every
    /// byte.
    Wipe {
        /// Block device or image file.
        #[arg(long)]
        disk: std::path::PathBuf,
        /// Also zero every byte (slow on large disks).
        #[arg(long)]
        full: bool,
        /// Confirm: without it, nothing is written.
        #[arg(long)]
        yes: bool,
    },
    #[command(flatten)]
    Docs(seedship_proto::cli::DocCmd),
}

/// A benchmark's report as JSON on stdout, or its error.
fn print_json<T: serde::Serialize>(r: Result<T, String>) -> ExitCode {
    match r {
        Ok(r) => {
            println!("{}", serde_json::to_string(&r).expect("serializes"));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Cmd::Docs(d) = &cli.cmd {
        return d.run(Cli::command());
    }
    if let Cmd::Wipe { disk, full, yes } = &cli.cmd {
        return wipe(disk, *full, *yes);
    }
    if let Cmd::Plan { staging, disks, disk_size, json } = &cli.cmd {
        return match copy_agent::media::sizing(staging, *disks, *disk_size) {
            Ok(s) if *json => print_json(Ok(s)),
            Ok(s) => {
                println!(
                    "{} disk(s) of at least {} bytes ({}) hold this seed: {} in {} files, NTFS's overhead counted",
                    s.disks,
                    s.disk_size,
                    seedship_proto::human::bytes(s.disk_size),
                    seedship_proto::human::bytes(s.bytes),
                    s.files
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Cmd::BenchNtfs { staging, disk, layout, container, bitlocker } = &cli.cmd {
        let layout = match layout.as_str() {
            "customer_disk" => copy_agent::media::Layout::CustomerDisk,
            "databox_disk" => copy_agent::media::Layout::DataboxDisk,
            other => {
                eprintln!("error: --layout {other:?}: use customer_disk or databox_disk");
                return ExitCode::from(seedship_proto::EXIT_USAGE);
            }
        };
        let encryption = match bitlocker.as_str() {
            "none" => copy_agent::media::BenchEncryption::None,
            "in-place" => copy_agent::media::BenchEncryption::InPlace,
            "dislocker" => copy_agent::media::BenchEncryption::Dislocker,
            other => {
                eprintln!("error: --bitlocker {other:?}: use none, in-place or dislocker");
                return ExitCode::from(seedship_proto::EXIT_USAGE);
            }
        };
        return print_json(copy_agent::media::bench(staging, disk, layout, container, encryption));
    }
    let cfg = Config::load(&cli.config).unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(seedship_proto::EXIT_USAGE.into())
    });
    if let Cmd::Status { json } = &cli.cmd {
        return status(&cfg, *json);
    }
    if let Cmd::Enroll(args) = cli.cmd {
        return seedship_proto::enroll::main(args, seedship_proto::identity::Role::Copy, &cfg.coordinator);
    }
    if let Cmd::Renew = cli.cmd {
        return seedship_proto::enroll::renew_main(&cfg.coordinator);
    }
    let code = std::sync::Arc::new(std::sync::atomic::AtomicU8::new(0));
    let code2 = code.clone();
    let r = agent::run_main("seedship-copy-agent", cfg.agent(), |_| async move {
        let conn = seedship_proto::client::connect_renewing(&cfg.coordinator).await?;
        match cli.cmd {
            Cmd::Register => {
                let r = agent::register(&conn, cfg.site.as_deref(), VERSION).await?;
                println!("registered as {}", r.agent.map(|a| a.identity).unwrap_or_default());
            }
            Cmd::Run { disks, once, interactive } => {
                let opts = copy_agent::run::RunOptions { once, interactive, disks };
                let c = copy_agent::run::run(cfg, conn, opts).await?;
                code2.store(c, std::sync::atomic::Ordering::SeqCst);
            }
            Cmd::Status { .. }
            | Cmd::Enroll(_)
            | Cmd::Renew
            | Cmd::Wipe { .. }
            | Cmd::BenchNtfs { .. }
            | Cmd::Plan { .. }
            | Cmd::Docs(_) => {
                unreachable!("handled before the coordinator is needed")
            }
        }
        Ok(())
    });
    match code.load(std::sync::atomic::Ordering::SeqCst) {
        0 => r,
        c => ExitCode::from(c),
    }
}

fn status(cfg: &Config, json: bool) -> ExitCode {
    let dir = &cfg.station.state_dir;
    let current: Option<serde_json::Value> =
        std::fs::read(dir.join("current.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
    let past = history::read(dir);
    if json {
        let v = serde_json::json!({ "current": current, "history": past });
        return seedship_proto::stdout::print(&serde_json::to_string_pretty(&v).expect("serializes"));
    }
    // Written whole at the end: a reader that goes away (`| head`) ends it quietly.
    use std::fmt::Write as _;
    let mut out = String::new();
    match &current {
        Some(c) => {
            let _ = writeln!(
                out,
                "Current work: job {} (seed {}), {}",
                c["job_name"].as_str().unwrap_or(""),
                c["seed_id"].as_str().unwrap_or(""),
                c["phase"].as_str().unwrap_or("")
            );
            if let Some(w) = c["waiting"].as_str().filter(|w| !w.is_empty()) {
                let _ = writeln!(out, "  waiting: {w}");
            }
            for l in c["lanes"].as_array().into_iter().flatten() {
                let _ = writeln!(
                    out,
                    "  disk {}/{} {:<20} {:<9} {} of {}  {}",
                    l["position"],
                    l["set_size"],
                    l["drive_id"].as_str().unwrap_or(""),
                    l["phase"].as_str().unwrap_or(""),
                    seedship_proto::human::bytes(l["done"].as_u64().unwrap_or(0)),
                    seedship_proto::human::bytes(l["total"].as_u64().unwrap_or(0)),
                    l["path"].as_str().unwrap_or("")
                );
            }
        }
        None => {
            let _ = writeln!(out, "Current work: none");
        }
    }
    let _ = writeln!(out, "\nHistory ({} entries, newest last):", past.len());
    let _ = writeln!(out, "  {:<24} {:<10} {:<24} {:>4}  DETAIL", "WHEN (UTC)", "EVENT", "JOB", "GEN");
    for e in past.iter().rev().take(50).rev() {
        let when = time::OffsetDateTime::from_unix_timestamp_nanos(e.at_unix_ms as i128 * 1_000_000)
            .ok()
            .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
            .unwrap_or_default();
        let detail = if e.drives.is_empty() { e.detail.clone() } else { format!("drives {}", e.drives.join(", ")) };
        let _ = writeln!(out, "  {:<24} {:<10} {:<24} {:>4}  {}", when, e.event, e.job_name, e.generation, detail);
    }
    seedship_proto::stdout::print(out.trim_end())
}

fn wipe(disk: &std::path::Path, full: bool, yes: bool) -> ExitCode {
    if !yes {
        eprintln!(
            "error: wiping {} destroys what it holds; run again with --yes to confirm{}",
            disk.display(),
            if full { "" } else { " (add --full to zero every byte)" }
        );
        return ExitCode::from(seedship_proto::EXIT_USAGE);
    }
    match copy_agent::disks::wipe(disk, full) {
        Ok(w) => {
            match w.previous {
                Some(h) => println!(
                    "wiped {}: it held drive {} ({} of {}) of seed {} (job {}); {} bytes zeroed",
                    disk.display(),
                    h.drive_id,
                    h.position,
                    h.set_size,
                    h.seed_id,
                    h.job_name,
                    w.bytes_zeroed
                ),
                None => println!("wiped {}: it held no seedship disk; {} bytes zeroed", disk.display(), w.bytes_zeroed),
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
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
