//! `seedctl`: the operator's view of a coordinator.

use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use seedctl::{Cli, CliError, Cmd};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Cmd::Docs(d) = &cli.cmd {
        return d.run(Cli::command());
    }
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        let cfg = cli.client_config()?;
        let conn = seedship_proto::client::connect(&cfg).await?;
        seedctl::run(&cli, conn).await
    });
    match result {
        Ok(out) => seedship_proto::stdout::print(&out),
        Err(e @ CliError::Usage(_)) => {
            eprintln!("error: {e}");
            ExitCode::from(seedship_proto::EXIT_USAGE)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
