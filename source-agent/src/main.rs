//! `source-agent`: the seedship agent on a backup server.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use seedship_proto::agent;
use source_agent::VERSION;

#[derive(Debug, Parser)]
#[command(name = "source-agent", version, about = "seedship source agent (backup server)")]
struct Cli {
    /// Config file (TOML).
    #[arg(long, env = "SEEDSHIP_CONFIG", global = true, default_value = "source-agent.toml")]
    config: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Register this server with the coordinator and exit.
    Register,
    /// Register, then send heartbeats until stopped (SIGTERM/ctrl-c).
    Run,
    /// Show this server's seeds and where each stands.
    Status {
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let cfg = agent::load_or_exit(&cli.config);
    agent::run_main("seedship-source-agent", cfg, |cfg| async move {
        let conn = seedship_proto::client::connect(&cfg.coordinator).await?;
        match cli.cmd {
            Cmd::Register => {
                let r = agent::register(&conn, cfg.site.as_deref(), VERSION).await?;
                let id = r.agent.map(|a| a.identity).unwrap_or_default();
                tracing::info!(identity = %id, "registered with the coordinator");
                println!("registered as {id}");
            }
            Cmd::Run => agent::register_and_run(conn, cfg.site.as_deref(), VERSION).await?,
            Cmd::Status { json } => {
                let seeds = source_agent::status(&conn).await?;
                if json {
                    let v: Vec<_> = seeds
                        .iter()
                        .map(|s| serde_json::json!({"job_name": s.job_name, "seed_id": s.seed_id, "state": s.state, "state_reason": s.state_reason}))
                        .collect();
                    println!("{}", serde_json::to_string_pretty(&v)?);
                } else {
                    println!("{}", source_agent::status_text(&seeds));
                }
            }
        }
        Ok(())
    })
}
