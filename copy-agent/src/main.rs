//! `copy-agent`: the seedship agent on a copy station.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use copy_agent::VERSION;
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
    /// Register this copy station with the coordinator and exit.
    Register,
    /// Register, then send heartbeats until stopped (SIGTERM/ctrl-c).
    Run,
    /// Make a disk blank for a new seed (a disk that holds another seed is never overwritten
    /// otherwise). Quick: header and journal; --full: every byte.
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Cmd::Wipe { disk, full, yes } = &cli.cmd {
        return wipe(disk, *full, *yes);
    }
    let cfg = agent::load_or_exit(&cli.config);
    agent::run_main("seedship-copy-agent", cfg, |cfg| async move {
        let conn = seedship_proto::client::connect(&cfg.coordinator).await?;
        match cli.cmd {
            Cmd::Register => {
                let r = agent::register(&conn, cfg.site.as_deref(), VERSION).await?;
                println!("registered as {}", r.agent.map(|a| a.identity).unwrap_or_default());
            }
            Cmd::Run => agent::register_and_run(conn, cfg.site.as_deref(), VERSION).await?,
            Cmd::Wipe { .. } => unreachable!("handled before the coordinator is needed"),
        }
        Ok(())
    })
}

fn wipe(disk: &std::path::Path, full: bool, yes: bool) -> ExitCode {
    let capacity = match std::fs::metadata(disk) {
        Ok(m) if m.is_file() => m.len(),
        Ok(_) => match std::fs::read_to_string(format!(
            "/sys/class/block/{}/size",
            disk.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default()
        )) {
            Ok(sectors) => sectors.trim().parse::<u64>().unwrap_or(0) * 512,
            Err(e) => {
                eprintln!("error: cannot tell the size of {}: {e}", disk.display());
                return ExitCode::FAILURE;
            }
        },
        Err(e) => {
            eprintln!("error: {}: {e}", disk.display());
            return ExitCode::FAILURE;
        }
    };
    if !yes {
        eprintln!(
            "error: wiping {} destroys what it holds; run again with --yes to confirm{}",
            disk.display(),
            if full { "" } else { " (add --full to zero every byte)" }
        );
        return ExitCode::from(2);
    }
    match seedship_disk::format::wipe(disk, capacity, full) {
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
