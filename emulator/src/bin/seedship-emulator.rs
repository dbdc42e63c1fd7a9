//! `seedship-emulator`: the emulated Azure Resource Manager API of `Microsoft.DataBox`
//! (api-version 2025-02-01) and its datacenter, on loopback, for tests, the demo and anyone
//! without a subscription.
//!
//!   seedship-emulator --state emulator.json [--tls-dir DIR] [--listen 127.0.0.1:0] [--ready-file F]
//!                     [--resource-group SUB/RG ...] [--storage-url http://127.0.0.1:10000 --storage-keys keys.txt]
//!                     [--page-size N] [--lro-polls N] [--retry-after SECS] [--async-operation] [--record F]
//!
//! With `--tls-dir` it serves HTTPS, as ARM does (clients trust `DIR/ca.crt`); without it,
//! plain HTTP for raw tests. The ready file gets `{"addr": "127.0.0.1:PORT", "url": ...}` once
//! it listens. With `--storage-url` (Azurite) the datacenter's "copy" command imports the disks
//! into the storage accounts named in `--storage-keys`, and only those accounts exist.
//! SIGTERM/ctrl-c stops it.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use seedship_emulator::datacenter::router;
use seedship_emulator::ingest::Storage;
use seedship_emulator::server::{Emulator, Options, serve_tls, tls};

#[derive(Debug, Parser)]
#[command(
    name = "seedship-emulator",
    about = "Emulated Azure Data Box (Microsoft.DataBox 2025-02-01) and its datacenter"
)]
struct Cli {
    /// Where the emulator keeps its state (created if missing).
    #[arg(long)]
    state: PathBuf,
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// Written with the address once listening.
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// Serve HTTPS with a certificate made (once) in this directory; clients trust its ca.crt.
    #[arg(long)]
    tls_dir: Option<PathBuf>,
    /// A resource group that exists: SUBSCRIPTION/NAME (repeatable; kept in the state).
    #[arg(long = "resource-group")]
    resource_groups: Vec<String>,
    /// Blob storage the datacenter copies into, path-style (Azurite: http://127.0.0.1:10000);
    /// the account name is appended.
    #[arg(long, requires = "storage_keys")]
    storage_url: Option<String>,
    /// `account=key` lines: the storage accounts that exist, with their keys (base64).
    #[arg(long, requires = "storage_url")]
    storage_keys: Option<PathBuf>,
    /// Jobs per page of a list (then nextLink with $skipToken).
    #[arg(long, default_value_t = 20)]
    page_size: usize,
    /// Polls a long-running operation answers 202 before it is done.
    #[arg(long, default_value_t = 2)]
    lro_polls: u32,
    /// Send Retry-After (seconds) with every 202.
    #[arg(long)]
    retry_after: Option<u64>,
    /// Also send Azure-AsyncOperation with every 202.
    #[arg(long)]
    async_operation: bool,
    /// Append every ARM exchange to this file as a JSON line (tests/py/armcheck.py reads it).
    #[arg(long)]
    record: Option<PathBuf>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_ansi(false).init();
    let cli = Cli::parse();
    let fail = |what: String| {
        eprintln!("error: {what}");
        std::process::ExitCode::from(2)
    };
    let storage = match (&cli.storage_url, &cli.storage_keys) {
        (Some(u), Some(k)) => match Storage::load(u, k) {
            Ok(s) => Some(s),
            Err(e) => return fail(format!("--storage-keys: {e}")),
        },
        _ => None,
    };
    let options = Options {
        page_size: cli.page_size,
        lro_polls: cli.lro_polls,
        retry_after_secs: cli.retry_after,
        async_operation: cli.async_operation,
        resource_groups: cli.resource_groups.clone(),
        record: cli.record.clone(),
        plain_http: cli.tls_dir.is_none(),
    };
    let emu = match Emulator::open(&cli.state).and_then(|e| e.with_options(options)) {
        Ok(e) => Arc::new(match storage {
            Some(s) => e.with_storage(s),
            None => e,
        }),
        Err(e) => return fail(e),
    };
    let listener = match tokio::net::TcpListener::bind(&cli.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {}: {e}", cli.listen);
            return std::process::ExitCode::FAILURE;
        }
    };
    let addr = listener.local_addr().expect("bound");
    let acceptor = match cli.tls_dir.as_deref().map(tls).transpose() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let url = format!("{}://{addr}", if acceptor.is_some() { "https" } else { "http" });
    if let Some(f) = &cli.ready_file {
        let tmp = f.with_extension("tmp");
        let ok = std::fs::write(&tmp, format!("{{\"addr\":\"{addr}\",\"url\":\"{url}\"}}"))
            .and_then(|_| std::fs::rename(&tmp, f));
        if let Err(e) = ok {
            eprintln!("error: cannot write {}: {e}", f.display());
            return std::process::ExitCode::FAILURE;
        }
    }
    tracing::info!(%url, state = %cli.state.display(), "emulated Microsoft.DataBox listening");
    let stop = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    match acceptor {
        Some(a) => serve_tls(listener, a, router(emu), stop).await,
        None => {
            if let Err(e) = axum::serve(listener, router(emu)).with_graceful_shutdown(stop).await {
                eprintln!("error: {e}");
                return std::process::ExitCode::FAILURE;
            }
        }
    }
    std::process::ExitCode::SUCCESS
}
