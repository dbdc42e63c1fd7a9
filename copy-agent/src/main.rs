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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let cfg = agent::load_or_exit(&cli.config);
    agent::run_main("seedship-copy-agent", cfg, |cfg| async move {
        let conn = seedship_proto::client::connect(&cfg.coordinator).await?;
        match cli.cmd {
            Cmd::Register => {
                let r = agent::register(&conn, cfg.site.as_deref(), VERSION).await?;
                println!("registered as {}", r.agent.map(|a| a.identity).unwrap_or_default());
            }
            Cmd::Run => agent::register_and_run(conn, cfg.site.as_deref(), VERSION).await?,
        }
        Ok(())
    })
}
