//! Lease load generator: simulated copy stations drive claim / renew / progress / report drive
//! / complete over real mTLS against real coordinator processes, while the registered fleet
//! sends heartbeats at the rate it would in production.
//!
//! One run measures, side by side, for each backend asked for:
//! - SQLite: one coordinator (SQLite allows one writer host);
//! - PostgreSQL: `--coordinators` coordinators (two by default) on one PostgreSQL server, the
//!   stations and agents spread over them;
//!
//! and for each: `--agents` agents registered over mTLS (each keeps its connection open and
//! sends a heartbeat every `--heartbeat-interval` seconds during the phases), a warm-up that is
//! not counted (`--warmup`), then the phases of each `--stations` count, each timing the disk's
//! flushes beside it (`flush_probe`). The peers, on the same disk: plain SQLite with one fsync'd
//! transaction per operation, and `pgbench` with one single-row update per transaction on the
//! same PostgreSQL server.
//!
//! Build and run (release):
//!   cargo build --release --workspace --bins --locked
//!   $CARGO_TARGET_DIR/release/seedship-loadgen --backend both --stations 16,64 --agents 10000
//! Results are printed as Markdown (see docs/benchmarks.md).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use seedship_e2e::{Cluster, Options, cpu_seconds, cpu_seconds_of, seed_request};
use seedship_proto::identity::{Role, SpiffeId};
use seedship_proto::pb;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Backend {
    Sqlite,
    Postgres,
    Both,
}

#[derive(Debug, Parser)]
#[command(about = "seedship lease load generator")]
struct Args {
    /// Which store(s) to measure, one after the other in this run.
    #[arg(long, value_enum, default_value = "both")]
    backend: Backend,
    /// Concurrent simulated copy stations: one phase per count (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "16,64")]
    stations: Vec<usize>,
    /// Agents registered before the phases (each on its own mTLS connection, kept open).
    #[arg(long, default_value_t = 10_000)]
    agents: usize,
    /// Seconds between two heartbeats of one registered agent during the phases (the
    /// coordinator's default is 30); 0: no heartbeats.
    #[arg(long, default_value_t = 30)]
    heartbeat_interval: u64,
    /// Coordinators on the one PostgreSQL server.
    #[arg(long, default_value_t = 2)]
    coordinators: usize,
    /// `[postgres] pool_size` of each coordinator: the connections it uses at once (the
    /// coordinator's default is 16, for a database server of its own). On this machine the
    /// database shares 2 cores with everything else; more connections only take turns on them.
    #[arg(long, default_value_t = 8)]
    pool_size: usize,
    /// Seconds per phase.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Progress reports per work item.
    #[arg(long, default_value_t = 3)]
    progress_per_item: u64,
    /// Seeds queued before each phase as fast as answered (must outlast the phase).
    #[arg(long, default_value_t = 10_000)]
    seeds: usize,
    /// Lease operations per second offered in a second phase per station count (0: none),
    /// spread evenly over the stations, each station's calls due at fixed times, the stations
    /// at different places in a work item's calls (not all claiming at once). A call's
    /// latency counts from when it was due, so a late answer that delays the calls after it
    /// counts in theirs too (no coordinated omission).
    #[arg(long, default_value_t = 2_000)]
    rate: u64,
    /// Seconds of a warm-up before the first phase, not counted: the largest station count at
    /// `WARMUP_RATE` lease operations/s, so that the tables hold drives, history and requests
    /// as a running site's do when each phase's statistics are taken (0: none).
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// After the PostgreSQL phases, print how each table was read (sequential and index scans,
    /// rows read) and the statements' conflicts, from PostgreSQL's statistics views.
    #[arg(long)]
    db_stats: bool,
}

/// Lease operations per second of the warm-up (`--warmup`).
const WARMUP_RATE: u64 = 1_000;

const OPS: [&str; 6] = ["claim", "renew", "progress", "report_drive", "complete", "all"];
const ALL: usize = OPS.len() - 1;

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds are valid")
}

/// Runs `sql` on the benchmark's database, as its superuser.
fn psql(pg: &seedship_e2e::pg::Postgres, sql: &str) -> Result<()> {
    let o = pg.client("psql").args(["-d", "seedship", "-v", "ON_ERROR_STOP=1", "-c", sql]).output()?;
    if !o.status.success() {
        bail!("{sql}: {}", String::from_utf8_lossy(&o.stderr));
    }
    Ok(())
}

fn micros(d: Duration) -> u64 {
    d.as_micros().clamp(1, 60_000_000) as u64
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

struct Stats {
    hist: Vec<Histogram<u64>>,
}

impl Stats {
    fn new() -> Self {
        Stats { hist: OPS.iter().map(|_| histogram()).collect() }
    }
    /// A call due at `due`, answered now: counted when due in `window`.
    fn record_due(&mut self, op: usize, due: Instant, window: std::ops::Range<Instant>) {
        if window.contains(&due) {
            self.record(op, due.elapsed());
        }
    }
    fn record(&mut self, op: usize, d: Duration) {
        let us = micros(d);
        let _ = self.hist[op].record(us);
        let _ = self.hist[ALL].record(us);
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

    async fn connect(&self, addr: SocketAddr, id: Identity) -> Result<Channel> {
        let tls = ClientTlsConfig::new().ca_certificate(self.ca.clone()).identity(id).domain_name("localhost");
        Endpoint::from_shared(format!("https://{addr}"))?
            .tls_config(tls)?
            .timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .connect()
            .await
            .with_context(|| format!("connecting to the coordinator at {addr}"))
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

/// `n` agents (half source, half copy, over 50 sites), spread over `addrs`, registered 8 at
/// a time; their connections, kept open for the heartbeats.
async fn register_fleet(pki: &Arc<Pki>, addrs: &[SocketAddr], n: usize) -> Result<Vec<Channel>> {
    let workers = 8;
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (pki, addrs) = (pki.clone(), addrs.to_vec());
        tasks.push(tokio::spawn(async move {
            let mut chans = Vec::new();
            for k in (w..n).step_by(workers) {
                let role = if k % 2 == 0 { Role::Source } else { Role::Copy };
                let ch = pki.connect(addrs[k % addrs.len()], pki.identity(role, &format!("fleet-{k:05}"))?).await?;
                register(ch.clone(), &format!("site-{}", k % 50)).await?;
                chans.push(ch);
            }
            anyhow::Ok(chans)
        }));
    }
    let mut all = Vec::with_capacity(n);
    for t in tasks {
        all.extend(t.await??);
    }
    Ok(all)
}

/// `n` seeds, from 32 source agents of their own (a server has few seeds: the checks of a new
/// seed against its server's others stay small), spread over `addrs`.
async fn queue_seeds(pki: &Arc<Pki>, addrs: &[SocketAddr], phase: &str, n: usize) -> Result<()> {
    let sources = 32;
    let per_task = n.div_ceil(sources);
    let mut tasks = Vec::new();
    for t in 0..sources {
        let src =
            pki.connect(addrs[t % addrs.len()], pki.identity(Role::Source, &format!("bench-{phase}-{t:02}"))?).await?;
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

/// When a station's next call is due: as soon as the last one was answered, or at fixed
/// times (a paced phase).
struct Pace(Option<(Instant, Duration)>);

impl Pace {
    /// Waits for the next call's turn; gives the moment its latency counts from.
    async fn next(&mut self) -> Instant {
        match &mut self.0 {
            None => Instant::now(),
            Some((due, every)) => {
                let at = *due;
                *due += *every;
                tokio::time::sleep_until(at.into()).await;
                at
            }
        }
    }
}

/// One station: full lease cycles until the deadline, each call when `pace` says; counted are
/// the calls due from `from` until the deadline, and the items claimed then (the phase's
/// rates are over that time; the last item is finished after it, not counted).
async fn station(
    ch: Channel,
    from: Instant,
    deadline: Instant,
    progress_per_item: u64,
    mut pace: Pace,
) -> Result<(Stats, u64)> {
    let mut c = pb::disk_prep_service_client::DiskPrepServiceClient::new(ch);
    let mut stats = Stats::new();
    let mut items = 0;
    while Instant::now() < deadline {
        let t = pace.next().await;
        let counted = t >= from && t < deadline;
        let lease = c.claim_work(pb::ClaimWorkRequest { request_id: rid() }).await?.into_inner().lease;
        stats.record_due(0, t, from..deadline);
        let Some(l) = lease else { bail!("the queue ran dry; raise --seeds") };
        let t = pace.next().await;
        c.renew_lease(pb::RenewLeaseRequest {
            request_id: rid(),
            work_id: l.work_id.clone(),
            generation: l.generation,
            ..Default::default()
        })
        .await?;
        stats.record_due(1, t, from..deadline);
        let step = l.total_bytes / progress_per_item;
        let mut pos = l.progress_bytes;
        for k in 1..=progress_per_item {
            let to = if k == progress_per_item { l.total_bytes } else { k * step };
            let t = pace.next().await;
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
            stats.record_due(2, t, from..deadline);
            pos = to;
        }
        let t = pace.next().await;
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
        stats.record_due(3, t, from..deadline);
        let t = pace.next().await;
        c.complete_work(pb::CompleteWorkRequest { request_id: rid(), work_id: l.work_id, generation: l.generation })
            .await?;
        stats.record_due(4, t, from..deadline);
        items += u64::from(counted);
    }
    Ok((stats, items))
}

/// The fleet's heartbeats until the deadline: one every `every` seconds per agent, spread
/// evenly, each agent on its own connection. Latencies, and how many failed.
async fn heartbeats(fleet: Arc<Vec<Channel>>, every: u64, deadline: Instant) -> Result<(Histogram<u64>, u64)> {
    let mut hist = histogram();
    if every == 0 || fleet.is_empty() {
        return Ok((hist, 0));
    }
    let period = Duration::from_secs_f64(every as f64 / fleet.len() as f64);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut calls = tokio::task::JoinSet::new();
    let mut next = 0;
    while Instant::now() < deadline {
        if tokio::time::timeout_at(deadline.into(), tick.tick()).await.is_err() {
            break;
        }
        let ch = fleet[next % fleet.len()].clone();
        next += 1;
        calls.spawn(async move {
            let t = Instant::now();
            let r = pb::agent_service_client::AgentServiceClient::new(ch)
                .heartbeat(pb::HeartbeatRequest { request_id: rid(), status: "idle".into() })
                .await;
            r.map(|_| t.elapsed())
        });
    }
    let mut failed = std::collections::BTreeMap::<String, u64>::new();
    while let Some(r) = calls.join_next().await {
        match r? {
            Ok(d) => {
                let _ = hist.record(micros(d));
            }
            Err(s) => *failed.entry(format!("{:?}: {}", s.code(), s.message())).or_default() += 1,
        }
    }
    for (why, n) in &failed {
        eprintln!("{n} heartbeat(s) refused: {why}");
    }
    Ok((hist, failed.values().sum()))
}

struct Phase {
    backend: &'static str,
    coordinators: usize,
    stations: usize,
    /// Lease operations per second offered (a paced phase), or none (as fast as answered).
    offered: Option<u64>,
    agents: usize,
    stats: Stats,
    beats: Histogram<u64>,
    beats_failed: u64,
    wall: Duration,
    items: u64,
    cpu_coordinators: f64,
    cpu_database: f64,
    cpu_loadgen: f64,
    /// How long the disk took to flush a small write, every 10 ms of the phase ([`flush_probe`]).
    flush: Histogram<u64>,
}

impl Phase {
    fn ops_per_s(&self) -> f64 {
        self.stats.hist[ALL].len() as f64 / self.wall.as_secs_f64()
    }
    fn server_cpu(&self) -> f64 {
        self.cpu_coordinators + self.cpu_database
    }
}

/// What a backend's run measured.
struct Run {
    phases: Vec<Phase>,
    registration: Duration,
    /// The peer on the same store: (clients, commits/s or why it could not run).
    peer: Vec<(usize, Result<f64, String>)>,
}

/// What PostgreSQL is running, sampled every 50 ms until `deadline` (`--db-stats`).
fn sample_activity(client: Option<std::process::Command>, deadline: Instant) -> std::collections::HashMap<String, u64> {
    let mut seen = std::collections::HashMap::new();
    let Some(mut c) = client else { return seen };
    c.args([
        "-d",
        "seedship",
        "-At",
        "-c",
        "SELECT state || ' ' || wait_event_type || '/' || wait_event || ' ' || left(query, 120) FROM pg_stat_activity \
         WHERE backend_type = 'client backend' AND state <> 'idle' AND pid <> pg_backend_pid()",
    ]);
    while Instant::now() < deadline {
        if let Ok(o) = c.output() {
            for l in String::from_utf8_lossy(&o.stdout).lines() {
                *seen.entry(l.to_string()).or_default() += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    seen
}

fn pids_cpu(pids: &[u32]) -> Result<f64> {
    pids.iter().map(|p| cpu_seconds(*p)).sum()
}

async fn run_backend(postgres: bool, args: &Args) -> Result<Run> {
    let backend = if postgres { "PostgreSQL" } else { "SQLite" };
    eprintln!("== {backend}: starting");
    let mut cluster = Cluster::start_with(Options {
        lease_ttl: "60s",
        sweep_interval: "5s",
        postgres,
        pg_pool_size: Some(args.pool_size),
        ..Default::default()
    })?;
    let mut addrs = vec![cluster.addr];
    let mut pids = vec![cluster.coordinator_pid()];
    if postgres {
        for k in 1..args.coordinators.max(1) {
            let (pid, addr) = cluster.start_another_coordinator(&format!("coordinator-{k}"), &[])?;
            addrs.push(addr);
            pids.push(pid);
        }
    }
    let (issuer, td) = coordinator::pki::load_ca(&cluster.pki)?;
    let pki = Arc::new(Pki { issuer, td, ca: Certificate::from_pem(std::fs::read(cluster.pki.join("ca.crt"))?) });

    let max_stations = args.stations.iter().copied().max().unwrap_or(0);
    let mut stations = Vec::new();
    for i in 0..max_stations {
        let ch = pki.connect(addrs[i % addrs.len()], pki.identity(Role::Copy, &format!("station-{i:03}"))?).await?;
        register(ch.clone(), "bench").await?;
        stations.push(ch);
    }

    let t = Instant::now();
    let fleet = Arc::new(register_fleet(&pki, &addrs, args.agents).await.context("registering the fleet")?);
    let registration = t.elapsed();
    eprintln!("== {backend}: registered {} agents in {:.1} s", args.agents, registration.as_secs_f64());

    let mut phases = Vec::new();
    // A warm-up (not counted), then per station count: as fast as answered, then paced at
    // `--rate`. A database created a minute before has empty tables; PostgreSQL would plan
    // the first phase's statements for them (a drive looked up by reading every drive: the
    // plans a connection keeps are made again only when the table is analyzed), where a
    // running site's tables hold rows and autovacuum keeps their statistics.
    let warmup = (args.warmup > 0).then_some((max_stations, Some(WARMUP_RATE), Duration::from_secs(args.warmup)));
    let measured = Duration::from_secs(args.duration);
    let plan: Vec<(usize, Option<u64>, Duration)> = warmup
        .into_iter()
        .chain(args.stations.iter().flat_map(|&c| {
            std::iter::once((c, None, measured)).chain((args.rate > 0).then_some((c, Some(args.rate), measured)))
        }))
        .collect();
    for (n, &(count, offered, duration)) in plan.iter().enumerate() {
        let warming = n == 0 && warmup.is_some();
        let name = format!("p{n}");
        // A paced phase takes what its rate needs, and half again.
        let seeds = match offered {
            None => args.seeds,
            Some(rate) => (rate * duration.as_secs() / (4 + args.progress_per_item) * 3 / 2) as usize + count,
        };
        // A checkpoint first: the full-page writes that follow one (the first change of each
        // page after it logs the whole page) go with the queueing, and no checkpoint is due
        // in the phase (every 5 minutes, or after 1 GB of log: the queueing writes much).
        if let Some(pg) = &cluster.pg {
            psql(pg, "CHECKPOINT")?;
        }
        let t = Instant::now();
        queue_seeds(&pki, &addrs, &name, seeds).await?;
        eprintln!("== {backend}: queued {seeds} seeds in {:.1} s", t.elapsed().as_secs_f64());
        if let Some(pg) = &cluster.pg {
            // The statistics a running database has, and the vacuum the queueing made due
            // (autovacuum's, within a minute: in the phase). Without statistics, this database,
            // created a minute ago, plans the claim's scan for the empty queue it had (a sort
            // of the whole queue).
            psql(pg, "VACUUM (ANALYZE)")?;
            if args.db_stats {
                // Counted from here when the server preloads pg_stat_statements.
                let _ = pg
                    .client("psql")
                    .args(["-d", "seedship", "-c", "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"])
                    .args(["-c", "SELECT pg_stat_statements_reset()", "-c", "SELECT pg_stat_reset()"])
                    .output();
            }
        }
        // Paced: each station's calls `count / rate` seconds apart. The stations' turns are
        // spread evenly over that time, and their places in a work item's cycle over the cycle
        // (independent stations are not all claiming at one moment); what is counted starts
        // once every station is in its pace.
        let cycle = 4 + args.progress_per_item;
        let every = offered.map(|rate| Duration::from_secs_f64(count as f64 / rate as f64));
        let paced_from = Instant::now() + Duration::from_millis(50);
        let start = every.map_or(paced_from, |e| paced_from + e * cycle as u32);
        let deadline = start + duration;
        let tasks: Vec<_> = stations[..count]
            .iter()
            .enumerate()
            .map(|(i, ch)| {
                let pace = Pace(every.map(|e| {
                    let place = i as f64 / count as f64 + (i as u64 % cycle) as f64;
                    (paced_from + e.mul_f64(place), e)
                }));
                tokio::spawn(station(ch.clone(), start, deadline, args.progress_per_item, pace))
            })
            .collect();
        tokio::time::sleep_until(start.into()).await;
        let (c0, d0, l0) = (pids_cpu(&pids)?, cpu_seconds_of("postgres"), cpu_seconds(std::process::id())?);
        let beats = tokio::spawn(heartbeats(fleet.clone(), args.heartbeat_interval, deadline));
        let probe = {
            let path = cluster.dir.path().join("flush-probe");
            std::thread::spawn(move || flush_probe(&path, deadline))
        };
        let sampler = (postgres && args.db_stats).then(|| {
            let client = cluster.pg.as_ref().map(|pg| pg.client("psql"));
            std::thread::spawn(move || sample_activity(client, deadline))
        });
        tokio::time::sleep_until(deadline.into()).await;
        let cpu = (
            pids_cpu(&pids)? - c0,
            if postgres { cpu_seconds_of("postgres") - d0 } else { 0.0 },
            cpu_seconds(std::process::id())? - l0,
        );
        let mut stats = Stats::new();
        let mut items = 0;
        for task in tasks {
            let (s, k) = task.await?.with_context(|| format!("{backend}, {count} stations"))?;
            stats.merge(&s);
            items += k;
        }
        let (beats, beats_failed) = beats.await??;
        let flush = probe.join().map_err(|_| anyhow::anyhow!("the flush probe panicked"))??;
        if let Some(Ok(samples)) = sampler.map(|t| t.join()) {
            let mut v: Vec<_> = samples.into_iter().collect();
            v.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
            eprintln!("statements seen running in PostgreSQL, by samples:");
            for (q, n) in v.into_iter().take(25) {
                eprintln!("{n:>6} {q}");
            }
        }
        let phase = Phase {
            backend,
            coordinators: addrs.len(),
            stations: count,
            offered,
            agents: args.agents + max_stations,
            stats,
            beats,
            beats_failed,
            wall: deadline - start,
            items,
            cpu_coordinators: cpu.0,
            cpu_database: cpu.1,
            cpu_loadgen: cpu.2,
            flush,
        };
        if warming {
            eprintln!("== {backend}: warmed up ({} work items), not counted", phase.items);
            continue;
        }
        eprintln!("== {backend}, {count} stations, {}: {:.0} lease operations/s", load(offered), phase.ops_per_s());
        phases.push(phase);
    }
    drop(fleet);
    if postgres && args.db_stats {
        let pg = cluster.pg.as_ref().context("the cluster has no PostgreSQL")?;
        for sql in [
            "SELECT relname, seq_scan, seq_tup_read, idx_scan, idx_tup_fetch, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del \
             FROM pg_stat_user_tables ORDER BY seq_tup_read DESC",
            "SELECT datname, xact_commit, xact_rollback, conflicts, deadlocks FROM pg_stat_database WHERE datname = 'seedship'",
            "SELECT calls, round(total_exec_time::numeric, 1) AS ms, rows, left(regexp_replace(query, '\\s+', ' ', 'g'), 110) \
             FROM pg_stat_statements ORDER BY calls DESC LIMIT 60",
        ] {
            let o = pg.client("psql").args(["-d", "seedship", "-c", sql]).output()?;
            eprintln!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        }
        // The statements that failed (serialization failures, locks), by message.
        let mut errors = std::collections::BTreeMap::<String, u64>::new();
        let log = pg.log();
        let mut lines = log.lines().peekable();
        while let Some(l) = lines.next() {
            let Some((_, m)) = l.split_once("ERROR:  ") else { continue };
            let mut what = m.chars().take(70).collect::<String>();
            while let Some(next) =
                lines.peek().filter(|n| n.contains("DETAIL:") || n.contains("HINT:") || n.contains("STATEMENT:"))
            {
                if let Some((_, st)) = next.split_once("STATEMENT:  ") {
                    what.push_str(" | ");
                    what.extend(st.chars().take(110));
                }
                lines.next();
            }
            *errors.entry(what).or_default() += 1;
        }
        for (m, n) in errors {
            eprintln!("{n:>7} ERROR {m}");
        }
    }

    let mut peer = Vec::new();
    for &count in &args.stations {
        let rate = if postgres {
            pgbench(cluster.pg.as_ref().context("the cluster has no PostgreSQL")?, count, args.duration)
        } else {
            sqlite_baseline(cluster.dir.path(), count, args.duration)
        };
        peer.push((count, rate.map_err(|e| format!("{e:#}"))));
    }
    cluster.finish()?;
    Ok(Run { phases, registration, peer })
}

/// The peer on SQLite: `clients` threads, each one fsync'd transaction per operation on its
/// own row (no group commit), same disk, same settings as the coordinator's store.
fn sqlite_baseline(dir: &std::path::Path, clients: usize, seconds: u64) -> Result<f64> {
    let path = dir.join(format!("baseline-{clients}.db"));
    {
        let db = rusqlite::Connection::open(&path)?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)")?;
        for i in 0..clients {
            db.execute("INSERT INTO t VALUES (?1, 0)", [i as i64])?;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|i| {
            let path = path.clone();
            std::thread::spawn(move || -> Result<u64> {
                let db = rusqlite::Connection::open(&path)?;
                db.pragma_update(None, "synchronous", "FULL")?;
                db.busy_timeout(Duration::from_secs(30))?;
                let mut n = 0;
                while Instant::now() < deadline {
                    db.execute_batch("BEGIN IMMEDIATE")?;
                    db.execute("UPDATE t SET v = v + 1 WHERE id = ?1", [i as i64])?;
                    db.execute_batch("COMMIT")?;
                    n += 1;
                }
                Ok(n)
            })
        })
        .collect();
    let mut total = 0;
    for t in threads {
        total += t.join().map_err(|_| anyhow::anyhow!("a baseline thread panicked"))??;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

/// The peer on PostgreSQL: `pgbench` with `clients` connections (TLS, SCRAM, as the
/// coordinators connect), each transaction one single-row update of its own row (PostgreSQL's
/// default isolation: 64 serializable clients at once run out of its conflict-tracking slots
/// under default settings), committed durably, in a database of its own on the same server.
/// Transactions per second.
fn pgbench(pg: &seedship_e2e::pg::Postgres, clients: usize, seconds: u64) -> Result<f64> {
    let db = format!("pgbench_{clients}");
    let psql = |db: &str, sql: &str| -> Result<()> {
        let o = pg.client("psql").args(["-d", db, "-v", "ON_ERROR_STOP=1", "-c", sql]).output()?;
        if !o.status.success() {
            bail!("psql -d {db} -c {sql:?}: {}", String::from_utf8_lossy(&o.stderr));
        }
        Ok(())
    };
    psql("seedship", &format!("CREATE DATABASE {db}"))?;
    psql(
        &db,
        &format!(
            "CREATE TABLE t (id int PRIMARY KEY, v bigint NOT NULL); \
             INSERT INTO t SELECT g, 0 FROM generate_series(1, {clients}) g;"
        ),
    )?;
    let script = pg.dir_path().join(format!("pgbench-{clients}.sql"));
    std::fs::write(&script, "BEGIN;\nUPDATE t SET v = v + 1 WHERE id = :client_id + 1;\nCOMMIT;\n")?;
    let o = pg
        .client("pgbench")
        .args(["-n", "-f"])
        .arg(&script)
        .args(["-c", &clients.to_string(), "-j", "2", "-T", &seconds.to_string(), "-M", "prepared", &db])
        .output()?;
    let out = String::from_utf8_lossy(&o.stdout);
    if !o.status.success() {
        bail!("pgbench failed: {out}{}", String::from_utf8_lossy(&o.stderr));
    }
    out.lines()
        .find_map(|l| l.strip_prefix("tps = ")?.split_whitespace().next()?.parse::<f64>().ok())
        .with_context(|| format!("no \"tps = \" line in pgbench's output: {out}"))
}

/// A phase's load, as the tables say it.
fn load(offered: Option<u64>) -> String {
    match offered {
        None => "as fast as answered".into(),
        Some(rate) => format!("{rate}/s offered"),
    }
}

/// Every 10 ms until `deadline`: a 4 KiB write over the start of `path` (beside the databases,
/// on their file system), flushed to the disk with `fdatasync` as a commit flushes its log; how
/// long each flush took. A stall of the disk holds up every commit waiting at that moment, so
/// this tells a slow phase of the disk from a slow phase of the stores.
fn flush_probe(path: &std::path::Path, deadline: Instant) -> Result<Histogram<u64>> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new().create(true).truncate(false).read(true).write(true).open(path)?;
    let block = [0x5a_u8; 4096];
    file.write_all_at(&block, 0)?;
    file.sync_all()?;
    let mut hist = histogram();
    let mut next = Instant::now();
    while next < deadline {
        file.write_all_at(&block, 0)?;
        let t = Instant::now();
        file.sync_data()?;
        let _ = hist.record(micros(t.elapsed()));
        next += Duration::from_millis(10);
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    Ok(hist)
}

fn summary(phases: &[&Phase]) -> String {
    let mut out = String::from(
        "| store | coordinators | stations | load | registered agents | lease ops/s | p50 ms | p99 ms | heartbeats/s | heartbeat p99 ms | CPU-s: coordinators | database | load generator | lease ops per CPU-s of coordinators + database | disk flush p99 / max ms |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for p in phases {
        let all = &p.stats.hist[ALL];
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.0}{} | {:.2} | {:.1} | {:.1} | {:.1} | {:.0} | {:.1} / {:.1} |\n",
            p.backend,
            p.coordinators,
            p.stations,
            load(p.offered),
            p.agents,
            p.ops_per_s(),
            ms(all, 0.5),
            ms(all, 0.99),
            p.beats.len() as f64 / p.wall.as_secs_f64(),
            if p.beats_failed > 0 { format!(" ({} refused)", p.beats_failed) } else { String::new() },
            ms(&p.beats, 0.99),
            p.cpu_coordinators,
            p.cpu_database,
            p.cpu_loadgen,
            all.len() as f64 / p.server_cpu().max(0.01),
            ms(&p.flush, 0.99),
            p.flush.max() as f64 / 1000.0,
        ));
    }
    out
}

fn detail(p: &Phase) -> String {
    let mut out = format!(
        "\n**{}, {} coordinator(s), {} stations, {}** — {} work items in {:.1} s\n\n\
         | operation | count | ops/s | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|---|\n",
        p.backend,
        p.coordinators,
        p.stations,
        load(p.offered),
        p.items,
        p.wall.as_secs_f64()
    );
    let rows = OPS.iter().zip(&p.stats.hist).chain(std::iter::once((&"heartbeat", &p.beats)));
    for (op, h) in rows {
        out.push_str(&format!(
            "| {op} | {} | {:.0} | {:.2} | {:.2} | {:.2} |\n",
            h.len(),
            h.len() as f64 / p.wall.as_secs_f64(),
            ms(h, 0.5),
            ms(h, 0.99),
            h.max() as f64 / 1000.0
        ));
    }
    out
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.stations.is_empty() || args.stations.contains(&0) {
        bail!("--stations needs one or more counts above zero, e.g. --stations 16,64");
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut runs = Vec::new();
    if args.backend != Backend::Postgres {
        runs.push(run_backend(false, &args).await.context("the SQLite run")?);
    }
    if args.backend != Backend::Sqlite {
        runs.push(run_backend(true, &args).await.context("the PostgreSQL run")?);
    }

    println!(
        "seedship lease benchmark: stations {:?}, as fast as answered and {}/s offered, {} agents with a heartbeat every {} s, {} progress reports per item, {} s per phase, {} CPUs, coordinator {} (release: {})\n",
        args.stations,
        args.rate,
        args.agents,
        args.heartbeat_interval,
        args.progress_per_item,
        args.duration,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        seedship_e2e::bin("coordinator").display(),
        !cfg!(debug_assertions)
    );
    let phases: Vec<&Phase> = runs.iter().flat_map(|r| &r.phases).collect();
    println!("{}", summary(&phases));
    for p in &phases {
        println!("{}", detail(p));
    }
    println!();
    for r in &runs {
        let Some(p) = r.phases.first() else { continue };
        println!(
            "- {}: registering {} agents over mTLS (one TLS connection each, kept open): {:.1} s ({:.0}/s).",
            p.backend,
            args.agents,
            r.registration.as_secs_f64(),
            args.agents as f64 / r.registration.as_secs_f64()
        );
        for (clients, rate) in &r.peer {
            let peer = if p.backend == "SQLite" {
                "plain SQLite, one fsync'd transaction per operation"
            } else {
                "pgbench, one single-row update per transaction"
            };
            match rate {
                Ok(rate) => println!("- {} peer ({peer}), {clients} clients: {rate:.0} commits/s.", p.backend),
                Err(e) => println!("- {} peer ({peer}), {clients} clients: did not run: {e}", p.backend),
            }
        }
    }
    Ok(())
}
