//! Lease load generator: N simulated copy stations drive claim / renew / progress / report
//! drive / complete over real mTLS against one real coordinator process with SQLite.
//!
//! One run measures, side by side:
//! - phase A: the lease cycle with only the stations registered;
//! - phase B: the same after registering `--extra-agents` more agents (the claim path must
//!   not slow down with the fleet size);
//! - a baseline: plain SQLite, one fsync'd transaction per operation (what the coordinator
//!   would manage without group commit), on the same disk.
//!
//! Build and run (release):
//!   cargo build --release --workspace --bins
//!   $CARGO_TARGET_DIR/release/seedship-loadgen --stations 32 --extra-agents 10000 --duration 15
//! Results are printed as a Markdown table (see docs/benchmarks.md).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use hdrhistogram::Histogram;
use seedship_e2e::{Cluster, Options, seed_request};
use seedship_proto::identity::{Role, SpiffeId};
use seedship_proto::pb;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

#[derive(Debug, Parser)]
#[command(about = "seedship lease load generator")]
struct Args {
    /// Concurrent simulated copy stations.
    #[arg(long, default_value_t = 32)]
    stations: usize,
    /// Agents registered between phase A and phase B.
    #[arg(long, default_value_t = 10_000)]
    extra_agents: usize,
    /// Seconds per phase.
    #[arg(long, default_value_t = 15)]
    duration: u64,
    /// Progress reports per work item.
    #[arg(long, default_value_t = 3)]
    progress_per_item: u64,
    /// Seeds queued before each phase (must outlast the phase).
    #[arg(long, default_value_t = 8000)]
    seeds: usize,
}

const OPS: [&str; 6] = ["claim", "renew", "progress", "report_drive", "complete", "all"];

struct Stats {
    hist: Vec<Histogram<u64>>,
}

impl Stats {
    fn new() -> Self {
        Stats { hist: OPS.iter().map(|_| Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram")).collect() }
    }
    fn record(&mut self, op: usize, d: Duration) {
        let us = d.as_micros().clamp(1, 60_000_000) as u64;
        let _ = self.hist[op].record(us);
        let _ = self.hist[OPS.len() - 1].record(us);
    }
    fn merge(&mut self, other: &Stats) {
        for (a, b) in self.hist.iter_mut().zip(&other.hist) {
            let _ = a.add(b);
        }
    }
}

struct Pki {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    td: String,
    ca: Certificate,
}

impl Pki {
    fn identity(&self, role: Role, name: &str) -> Result<Identity> {
        let id = SpiffeId::new(&self.td, role, name)?;
        let (cert, key) = coordinator::pki::issue_leaf(&self.issuer, &id, &[], 30, 0)?;
        Ok(Identity::from_pem(cert, key))
    }

    async fn connect(&self, url: &str, id: Identity) -> Result<Channel> {
        let tls = ClientTlsConfig::new().ca_certificate(self.ca.clone()).identity(id).domain_name("localhost");
        Ok(Endpoint::from_shared(url.to_string())?
            .tls_config(tls)?
            .timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .connect()
            .await?)
    }
}

fn rid() -> String {
    seedship_proto::client::new_request_id()
}

async fn register(ch: Channel, site: &str) -> Result<()> {
    pb::agent_service_client::AgentServiceClient::new(ch)
        .register_agent(pb::RegisterAgentRequest {
            request_id: rid(),
            site: site.into(),
            hostname: "loadgen".into(),
            version: "bench".into(),
            virtualization: "none".into(),
        })
        .await?;
    Ok(())
}

async fn queue_seeds(src: Channel, phase: &str, n: usize) -> Result<()> {
    let per_task = n.div_ceil(16);
    let mut tasks = Vec::new();
    for t in 0..16 {
        let src = src.clone();
        let phase = phase.to_string();
        tasks.push(tokio::spawn(async move {
            let mut c = pb::seed_service_client::SeedServiceClient::new(src);
            for i in 0..per_task {
                c.register_seed(seed_request(&format!("{phase}-{t}-{i}"))).await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// One station: full lease cycles until the deadline.
async fn station(ch: Channel, deadline: Instant, progress_per_item: u64) -> Result<(Stats, u64)> {
    let mut c = pb::disk_prep_service_client::DiskPrepServiceClient::new(ch);
    let mut stats = Stats::new();
    let mut items = 0;
    while Instant::now() < deadline {
        let t = Instant::now();
        let lease = c.claim_work(pb::ClaimWorkRequest { request_id: rid() }).await?.into_inner().lease;
        stats.record(0, t.elapsed());
        let Some(l) = lease else { anyhow::bail!("the queue ran dry; raise --seeds") };
        let t = Instant::now();
        c.renew_lease(pb::RenewLeaseRequest {
            request_id: rid(),
            work_id: l.work_id.clone(),
            generation: l.generation,
            ..Default::default()
        })
        .await?;
        stats.record(1, t.elapsed());
        let step = l.total_bytes / progress_per_item;
        let mut pos = l.progress_bytes;
        for k in 1..=progress_per_item {
            let to = if k == progress_per_item { l.total_bytes } else { k * step };
            let t = Instant::now();
            c.report_progress(pb::ReportProgressRequest {
                request_id: rid(),
                work_id: l.work_id.clone(),
                generation: l.generation,
                from_bytes: pos,
                to_bytes: to,
                phase: "copy".into(),
                disks: Vec::new(),
            })
            .await?;
            stats.record(2, t.elapsed());
            pos = to;
        }
        let t = Instant::now();
        c.report_drive(pb::ReportDriveRequest {
            request_id: rid(),
            work_id: l.work_id.clone(),
            generation: l.generation,
            drive: Some(pb::DriveReport {
                drive_id: format!("D-{}", l.work_id),
                position: 1,
                capacity_bytes: l.total_bytes * 2,
                bytes_written: l.total_bytes,
                manifest_file: "\\DriveManifest.xml".into(),
                manifest_hash: "0123456789ABCDEF0123456789ABCDEF".into(),
                drive_header_hash: "0123456789ABCDEF0123456789ABCDEF".into(),
                recovery_password: "000011-000022-000033-000044-000055-000066-000077-000088".into(),
                ..Default::default()
            }),
        })
        .await?;
        stats.record(3, t.elapsed());
        let t = Instant::now();
        c.complete_work(pb::CompleteWorkRequest { request_id: rid(), work_id: l.work_id, generation: l.generation })
            .await?;
        stats.record(4, t.elapsed());
        items += 1;
    }
    Ok((stats, items))
}

struct PhaseResult {
    stats: Stats,
    wall: Duration,
    items: u64,
    coordinator_cpu: f64,
}

async fn phase(name: &str, chans: &[Channel], src: &Channel, args: &Args, cluster: &Cluster) -> Result<PhaseResult> {
    let t = Instant::now();
    queue_seeds(src.clone(), name, args.seeds).await?;
    eprintln!("phase {name}: queued {} seeds in {:.1}s", args.seeds, t.elapsed().as_secs_f64());
    let cpu0 = cluster.coordinator_cpu_seconds()?;
    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.duration);
    let mut tasks = Vec::new();
    for ch in chans {
        tasks.push(tokio::spawn(station(ch.clone(), deadline, args.progress_per_item)));
    }
    let mut total = Stats::new();
    let mut items = 0;
    for task in tasks {
        let (s, n) = task.await??;
        total.merge(&s);
        items += n;
    }
    let wall = start.elapsed();
    let coordinator_cpu = cluster.coordinator_cpu_seconds()? - cpu0;
    Ok(PhaseResult { stats: total, wall, items, coordinator_cpu })
}

fn table(name: &str, r: &PhaseResult) -> String {
    let (s, wall, items) = (&r.stats, r.wall, r.items);
    let ops = s.hist[OPS.len() - 1].len() as f64;
    let mut out = format!(
        "\n**{name}** — {items} work items in {:.1} s; the coordinator used {:.1} CPU-s ({:.0} % of one core), {:.0} lease operations per coordinator CPU-second\n\n",
        wall.as_secs_f64(),
        r.coordinator_cpu,
        100.0 * r.coordinator_cpu / wall.as_secs_f64(),
        ops / r.coordinator_cpu.max(0.01)
    );
    out.push_str("| operation | count | ops/s | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|---|\n");
    for (i, op) in OPS.iter().enumerate() {
        let h = &s.hist[i];
        out.push_str(&format!(
            "| {op} | {} | {:.0} | {:.2} | {:.2} | {:.2} |\n",
            h.len(),
            h.len() as f64 / wall.as_secs_f64(),
            h.value_at_quantile(0.5) as f64 / 1000.0,
            h.value_at_quantile(0.99) as f64 / 1000.0,
            h.max() as f64 / 1000.0
        ));
    }
    out
}

/// The naive peer: one fsync'd SQLite transaction per operation, same disk, same settings.
fn sqlite_baseline(dir: &std::path::Path, n: usize) -> Result<f64> {
    let db = rusqlite::Connection::open(dir.join("baseline.db"))?;
    db.pragma_update(None, "journal_mode", "WAL")?;
    db.pragma_update(None, "synchronous", "FULL")?;
    db.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER); INSERT INTO t VALUES (1, 0);")?;
    let t = Instant::now();
    for i in 0..n {
        db.execute_batch("BEGIN IMMEDIATE")?;
        db.execute("UPDATE t SET v = ?1 WHERE id = 1", [i as i64])?;
        db.execute_batch("COMMIT")?;
    }
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cluster = Cluster::start_with(Options { lease_ttl: "60s", sweep_interval: "5s", ..Default::default() })?;
    let (issuer, td) = coordinator::pki::load_ca(&cluster.pki)?;
    let pki = Pki { issuer, td, ca: Certificate::from_pem(std::fs::read(cluster.pki.join("ca.crt"))?) };
    let url = cluster.url();

    let src = pki.connect(&url, pki.identity(Role::Source, "bench-source")?).await?;
    let mut chans = Vec::new();
    for i in 0..args.stations {
        let ch = pki.connect(&url, pki.identity(Role::Copy, &format!("station-{i:03}"))?).await?;
        register(ch.clone(), "bench").await?;
        chans.push(ch);
    }

    let a = phase("a", &chans, &src, &args, &cluster).await.context("phase A")?;

    let t = Instant::now();
    let per_task = args.extra_agents.div_ceil(8);
    let pki = Arc::new(pki);
    let mut tasks = Vec::new();
    for w in 0..8 {
        let (pki, url) = (pki.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..per_task {
                let n = w * per_task + i;
                let role = if n % 2 == 0 { Role::Source } else { Role::Copy };
                let ch = pki.connect(&url, pki.identity(role, &format!("fleet-{n:05}"))?).await?;
                register(ch, &format!("site-{}", n % 50)).await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let reg = t.elapsed();
    eprintln!("registered {} more agents in {:.1}s", args.extra_agents, reg.as_secs_f64());

    let b = phase("b", &chans, &src, &args, &cluster).await.context("phase B")?;
    let baseline = sqlite_baseline(cluster.dir.path(), 2000)?;

    println!(
        "seedship lease benchmark: {} stations, {} progress reports per item, {} s per phase, coordinator {} (release: {})",
        args.stations,
        args.progress_per_item,
        args.duration,
        seedship_e2e::bin("coordinator").display(),
        !cfg!(debug_assertions)
    );
    println!("{}", table(&format!("Phase A: {} agents registered", args.stations + 1), &a));
    println!("{}", table(&format!("Phase B: {} agents registered", args.stations + 1 + args.extra_agents), &b));
    println!(
        "\nRegistering {} agents over mTLS (one TLS connection each): {:.1} s ({:.0}/s).",
        args.extra_agents,
        reg.as_secs_f64(),
        args.extra_agents as f64 / reg.as_secs_f64()
    );
    println!(
        "Baseline on the same disk: one fsync'd SQLite transaction per operation (no group commit): {baseline:.0} commits/s."
    );
    cluster.finish()?;
    Ok(())
}
