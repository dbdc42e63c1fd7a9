//! `copy-agent run`: claim work, prepare it, show the result; again until stopped.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use seedship_proto::agent::{self, with_retry};
use seedship_proto::client::{self, Conn};
use seedship_proto::human::bytes;
use seedship_proto::pb;
use tokio::sync::mpsc;

use crate::board::Board;
use crate::config::Config;
use crate::history::{self, Entry};
use crate::prepare::{self, Ctx, Outcome};

/// Exit codes of `run --once`.
pub const EXIT_NOT_DONE: u8 = 3;
pub const EXIT_LEASE_LOST: u8 = 4;

pub struct RunOptions {
    /// Exit after the first work item ends.
    pub once: bool,
    /// Ask for disks at the terminal when more are needed.
    pub interactive: bool,
    pub disks: Vec<PathBuf>,
}

/// Runs the station; returns the exit code.
pub async fn run(cfg: Config, conn: Conn, opts: RunOptions) -> Result<u8, Box<dyn std::error::Error + Send + Sync>> {
    let r = agent::register(&conn, cfg.site.as_deref(), crate::VERSION).await?;
    tracing::info!(identity = %r.agent.map(|a| a.identity).unwrap_or_default(), "registered; claiming disk-prep work");
    let stop = Arc::new(AtomicBool::new(false));
    let (stopped_tx, stopped_rx) = tokio::sync::watch::channel(false);
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            seedship_proto::signals::shutdown_signal().await;
            stop.store(true, Ordering::SeqCst);
            let _ = stopped_tx.send(true);
        });
    }
    let mut station = cfg.station.clone();
    station.disks.extend(opts.disks);
    std::fs::create_dir_all(&station.state_dir)
        .map_err(|e| format!("cannot create the state directory {}: {e}", station.state_dir.display()))?;
    let ctx = Ctx {
        conn: conn.clone(),
        board: Arc::new(Board::new(&station.state_dir)),
        station,
        stop: stop.clone(),
        typed: Mutex::new(opts.interactive.then(prompt_reader)),
        extra: Mutex::new(Vec::new()),
    };
    // Heartbeats carry what the station is doing: "idle", "preparing <job>", "waiting: ...".
    let hb = {
        let (conn, board) = (conn.clone(), ctx.board.clone());
        let mut every = Duration::from_secs(r.heartbeat_interval_secs.max(1) as u64);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                match agent::heartbeat(&conn, &board.status()).await {
                    Ok(r) if r.heartbeat_interval_secs > 0 => {
                        every = Duration::from_secs(r.heartbeat_interval_secs as u64)
                    }
                    Ok(_) => {}
                    Err(s) => tracing::warn!(code = ?s.code(), error = %s.message(), "heartbeat failed; will retry"),
                }
            }
        })
    };
    let display = {
        let (board, every, mut rx) = (ctx.board.clone(), ctx.station.progress_interval, stopped_rx.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = rx.wait_for(|s| *s) => return,
                }
                if board.active() {
                    board.save();
                    if !board.lanes().is_empty() {
                        eprintln!("{}", board.render());
                    }
                }
            }
        })
    };
    let mut code = 0;
    loop {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let claimed_at = Instant::now();
        let lease = with_retry("ClaimWork", 5, |rid| {
            let mut c = client::diskprep(conn.clone());
            async move { c.claim_work(pb::ClaimWorkRequest { request_id: rid }).await }
        })
        .await;
        let lease = match lease {
            Ok(r) => r.into_inner().lease,
            Err(s) => {
                tracing::warn!(code = ?s.code(), error = %s.message(), "cannot claim work; will retry");
                None
            }
        };
        let Some(lease) = lease else {
            let mut rx = stopped_rx.clone();
            tokio::select! {
                _ = tokio::time::sleep(ctx.station.poll_interval) => {}
                _ = rx.wait_for(|s| *s) => {}
            }
            continue;
        };
        tracing::info!(job = %lease.job_name, seed = %lease.seed_id, generation = lease.generation, bytes = lease.total_bytes, "work claimed");
        eprintln!(
            "copy-agent: preparing disks for job {} (seed {}, {} in {} files, lease generation {})",
            lease.job_name,
            lease.seed_id,
            bytes(lease.total_bytes),
            lease.file_count,
            lease.generation
        );
        let entry = |event: &str, detail: String, drives: Vec<String>| Entry {
            at_unix_ms: history::now_ms(),
            event: event.into(),
            job_name: lease.job_name.clone(),
            seed_id: lease.seed_id.clone(),
            work_id: lease.work_id.clone(),
            generation: lease.generation,
            detail,
            drives,
        };
        history::append(&ctx.station.state_dir, &entry("claimed", String::new(), vec![]));
        let started = Instant::now();
        let outcome = prepare::prepare(&ctx, &lease, claimed_at).await;
        match outcome {
            Outcome::Completed { drives, address, seed } => {
                let names: Vec<String> =
                    drives.iter().map(|d| format!("{}/{} {}", d.position, d.set_size, d.drive_id)).collect();
                history::append(&ctx.station.state_dir, &entry("completed", String::new(), names));
                println!("{}", final_screen(&lease, &drives, &address, seed.as_deref(), started.elapsed()));
                code = 0;
            }
            Outcome::Released(why) => {
                history::append(&ctx.station.state_dir, &entry("released", why.clone(), vec![]));
                eprintln!("copy-agent: gave the work back: {why}");
                code = crate::run::EXIT_NOT_DONE;
            }
            Outcome::Refused(why) => {
                history::append(&ctx.station.state_dir, &entry("refused", why.clone(), vec![]));
                eprintln!("copy-agent: refused the staging set (the seed failed): {why}");
                code = crate::run::EXIT_NOT_DONE;
            }
            Outcome::Lost(why) => {
                history::append(&ctx.station.state_dir, &entry("lost", why.clone(), vec![]));
                eprintln!("copy-agent: stopped writing: lease lost: {why}");
                code = crate::run::EXIT_LEASE_LOST;
            }
            Outcome::Stopped => {
                let reason = "the copy station was stopped by its operator; the disks' journals keep the work";
                let _ = with_retry("ReleaseWork", 3, |rid| {
                    let mut c = client::diskprep(conn.clone());
                    let req = pb::ReleaseWorkRequest {
                        request_id: rid,
                        work_id: lease.work_id.clone(),
                        generation: lease.generation,
                        reason: reason.into(),
                        staging_invalid: false,
                    };
                    async move { c.release_work(req).await }
                })
                .await;
                history::append(&ctx.station.state_dir, &entry("stopped", reason.into(), vec![]));
                eprintln!("copy-agent: stopped; the work was given back and resumes from the disks' journals");
                code = crate::run::EXIT_NOT_DONE;
                break;
            }
        }
        if opts.once {
            break;
        }
    }
    stop.store(true, Ordering::SeqCst);
    display.abort();
    hb.abort();
    Ok(code)
}

/// Reads disk paths typed at the terminal, one per line.
fn prompt_reader() -> mpsc::UnboundedReceiver<PathBuf> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::Builder::new()
        .name("prompt".into())
        .spawn(move || {
            let mut line = String::new();
            while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {
                if tx.send(PathBuf::from(line.trim())).is_err() {
                    return;
                }
                line.clear();
            }
        })
        .expect("spawn prompt thread");
    rx
}

/// What the operator needs at the end: each drive and its label, and where to send them.
pub fn final_screen(
    lease: &pb::Lease,
    drives: &[prepare::Prepared],
    address: &[String],
    seed: Option<&pb::SeedSummary>,
    took: Duration,
) -> String {
    let mut s = format!(
        "\nDisks prepared for job {} (seed {}): {} drive(s), {} of data, verified by reading back, in {:.1} s\n\n",
        lease.job_name,
        lease.seed_id,
        drives.len(),
        bytes(lease.total_bytes),
        took.as_secs_f64()
    );
    s.push_str("  POS  DRIVE ID               WRITTEN     MANIFEST HASH (MD5)               DISK\n");
    for d in drives {
        s.push_str(&format!(
            "  {}/{}  {:<20} {:>10}  {}  {}\n",
            d.position,
            d.set_size,
            d.drive_id,
            bytes(d.bytes),
            d.manifest_hash,
            d.path.display()
        ));
    }
    s.push_str("\nLabels (stick one on each disk):\n");
    for d in drives {
        s.push_str(&format!(
            "  [ seedship | job {} | disk {} of {} | drive {} ]\n",
            lease.job_name, d.position, d.set_size, d.drive_id
        ));
    }
    s.push_str("\nShip to:\n");
    for l in address {
        s.push_str(&format!("  {l}\n"));
    }
    if let Some(seed) = seed {
        s.push_str(&format!(
            "\nThe seed is now {}. The drive keys are held by the coordinator only; record the carrier and tracking number with `seedctl ship` once the import job exists.\n",
            crate::run::state_name(seed.state)
        ));
    }
    s
}

/// A seed state in words ("disks prepared").
pub fn state_name(state: i32) -> String {
    seedship_proto::human::seed_state(state).replace('_', " ")
}
