//! `source-agent`: the seedship agent on a backup server.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use source_agent::{Config, VERSION};

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
    let cfg = match Config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    // The OTLP exporter's channel needs the runtime while it is built.
    let _rt = rt.enter();
    let _guard = match seedship_telemetry::init("seedship-source-agent", &cfg.telemetry) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(real_main(cli.cmd, cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn real_main(cmd: Cmd, cfg: Config) -> anyhow::Result<()> {
    let span = tracing::info_span!("source-agent", trace_id = tracing::field::Empty);
    seedship_telemetry::record_trace_id(&span);
    let _enter = span.enter();
    let conn = seedship_proto::client::connect(&cfg.coordinator).await?;
    match cmd {
        Cmd::Register => {
            let r = seedship_proto::agent::register(&conn, cfg.site.as_deref(), VERSION).await?;
            let id = r.agent.map(|a| a.identity).unwrap_or_default();
            tracing::info!(identity = %id, "registered with the coordinator");
            println!("registered as {id}");
        }
        Cmd::Run => {
            let r = seedship_proto::agent::register(&conn, cfg.site.as_deref(), VERSION).await?;
            let id = r.agent.map(|a| a.identity).unwrap_or_default();
            tracing::info!(identity = %id, "registered; sending heartbeats");
            let every = std::time::Duration::from_secs(r.heartbeat_interval_secs.max(1) as u64);
            seedship_proto::agent::heartbeat_loop(conn, every, "idle", shutdown()).await;
            tracing::info!("stopped");
        }
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
}

async fn shutdown() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
