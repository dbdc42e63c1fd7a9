//! `seedship-azure-emulator`: the emulated Azure Resource Manager API of `Microsoft.ImportExport`
//! (api-version 2021-01-01) on loopback, for tests, the demo and anyone without a subscription.
//!
//!   seedship-azure-emulator --state emulator.json [--tls-dir DIR] [--listen 127.0.0.1:0] [--ready-file F]
//!                           [--storage-url http://127.0.0.1:10000 --storage-keys keys.txt]
//!
//! With `--tls-dir` it serves HTTPS, as ARM does (clients trust `DIR/ca.crt`); without it,
//! plain HTTP for raw tests. The ready file gets `{"addr": "127.0.0.1:PORT", "url": ...}` once
//! it listens. With `--storage-url` (Azurite) the datacenter's "copy" command imports the
//! drives into the storage accounts named in `--storage-keys`. SIGTERM/ctrl-c stops it.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use seedship_e2e::emulator::{Emulator, router, serve_tls, tls};
use seedship_e2e::ingest::Storage;

#[derive(Debug, Parser)]
#[command(name = "seedship-azure-emulator", about = "Emulated Azure Import/Export (ARM) service")]
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
    /// Blob storage the datacenter copies into, path-style (Azurite: http://127.0.0.1:10000);
    /// the account name is appended.
    #[arg(long, requires = "storage_keys")]
    storage_url: Option<String>,
    /// `account=key` lines: the storage accounts that exist, with their keys (base64).
    #[arg(long, requires = "storage_url")]
    storage_keys: Option<PathBuf>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_ansi(false).init();
    let cli = Cli::parse();
    let storage = match (&cli.storage_url, &cli.storage_keys) {
        (Some(u), Some(k)) => match Storage::load(u, k) {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("error: --storage-keys: {e}");
                return std::process::ExitCode::from(2);
            }
        },
        _ => None,
    };
    let emu = match Emulator::open(&cli.state) {
        Ok(e) => Arc::new(match storage {
            Some(s) => e.with_storage(s),
            None => e,
        }),
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(2);
        }
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
    tracing::info!(%url, state = %cli.state.display(), "emulated Microsoft.ImportExport listening");
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
