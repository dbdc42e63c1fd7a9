//! Several coordinators on one PostgreSQL (issue 19): the background workers run on the one
//! that holds the workers' lease; when it dies another takes over, and one that was paused
//! past its lease finds its fence gone and sends nothing to Azure.

use std::time::Duration;

use seedship_e2e::azure::{Emulator, wait_seed_state};
use seedship_e2e::prep::prepare;
use seedship_e2e::{Cluster, Options, wait_for};
use seedship_proto::client::{self, ClientConfig};
use seedship_proto::pb;

const T: Duration = Duration::from_secs(60);

/// A cluster on its own PostgreSQL with the emulated Azure and a workers' lease of 2 s.
fn cluster(env: Vec<(String, String)>) -> anyhow::Result<(Cluster, Emulator)> {
    let base = seedship_e2e::azure::kept_dir("seedship-failover-")?;
    let emu = Emulator::start_with(&base, false, &[])?;
    let c = Cluster::start_with(Options {
        extra_toml: format!("{}[workers]\nlease_ttl = \"2s\"\n", emu.coordinator_toml("1s")),
        offset_clock: true,
        postgres: true,
        coordinator_env: env,
        ..Default::default()
    })?;
    Ok((c, emu))
}

/// The workers' lease as the database holds it: holder and generation.
fn lease(c: &Cluster) -> anyhow::Result<Option<(String, u64)>> {
    c.sql(|db| {
        db.row("SELECT holder, generation FROM worker_leases WHERE name = 'workers'", &[], |r| {
            Ok((r.get::<String>(0)?, r.get::<u64>(1)?))
        })
    })
}

fn signal(pid: u32, sig: nix::sys::signal::Signal) -> anyhow::Result<()> {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workers_move_to_another_coordinator_when_their_holder_is_killed() -> anyhow::Result<()> {
    let (mut c, emu) = cluster(Vec::new())?;
    let first = c.addr;
    let (_, second) = c.start_another_coordinator("coordinator-b", &[])?;
    let (holder, generation) = lease(&c)?.expect("the first coordinator took the lease at start");
    assert!(holder.ends_with(&first.to_string()) && generation == 1, "{holder} {generation}");

    // Both answer every call: the seed is staged and its disks prepared through the second.
    c.use_coordinator(second);
    let ops = c.issue("operator", "alice")?;
    prepare(&mut c, &ops, "job-fo", 2, 1).await?;
    // A client given both addresses, the holder's first: it calls there while it lives.
    let both = format!("https://{first},https://{second}");
    let cfg = ClientConfig { url: both.clone(), ..c.client_config(&ops) };
    let conn = seedship_proto::client::connect(&cfg).await?;
    client::operator(conn.clone()).list_seeds(pb::ListSeedsRequest::default()).await?;
    // The holder dies; within a lease's lifetime the second runs the workers and creates the
    // job (the first may have created it already: then the second follows it).
    c.kill9_coordinator()?;
    // The client's next call fails at the transport (its coordinator is gone: UNAVAILABLE, or
    // UNKNOWN "transport error" when the dead connection is found by the call itself, which
    // agents retry alike), and the one after goes to the other coordinator.
    let mut lost = 0;
    loop {
        match client::operator(conn.clone()).list_seeds(pb::ListSeedsRequest::default()).await {
            Ok(r) => {
                assert_eq!(r.into_inner().seeds.len(), 1);
                break;
            }
            Err(e) if seedship_proto::agent::is_transient(&e) && lost < 2 => lost += 1,
            Err(e) => anyhow::bail!("after {lost} lost call(s): {e}"),
        }
    }
    // seedctl given both addresses, the first dead: it answers from the second.
    let mut cmd = std::process::Command::new(seedship_e2e::bin("seedctl"));
    cmd.args(["--url", &both, "--server-name", "localhost", "--ca"])
        .arg(c.pki.join("ca.crt"))
        .arg("--cert")
        .arg(&ops.cert)
        .arg("--key")
        .arg(&ops.key)
        .args(["audit", "verify"]);
    let o = c.run("seedctl-both", &mut cmd)?;
    assert!(o.status.success(), "{}", seedship_e2e::prep::text(&o));
    let moved = wait_for("the lease to move", T, || {
        lease(&c).ok().flatten().filter(|(h, g)| h.ends_with(&second.to_string()) && *g == 2)
    })?;
    assert_eq!(moved.1, 2);
    wait_seed_state(&c, &ops, "job-fo", "import_job_created", T).await?;
    assert_eq!(emu.job_count().await?, 1, "exactly one job in Azure");
    assert!(c.log_of("coordinator-b").contains("this coordinator runs the background workers"));
    c.finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_paused_past_its_lease_is_refused_and_sends_nothing_to_azure() -> anyhow::Result<()> {
    // The first coordinator pauses for 4 s right before each job creation (as in a long
    // garbage-collection pause), and is stopped there for longer still.
    let env = vec![("SEEDSHIP_FAILPOINTS".to_string(), "azure-before-put=sleep(4000)".to_string())];
    let (mut c, emu) = cluster(env)?;
    let (_, second) = c.start_another_coordinator("coordinator-b", &[])?;
    let ops = c.issue("operator", "alice")?;
    prepare(&mut c, &ops, "job-stop", 2, 1).await?;
    let paused = c.coordinator_pid();
    wait_for("the first coordinator to reach the job creation", T, || {
        c.log_of("coordinator-1").contains("failpoint azure-before-put: pausing").then_some(())
    })?;
    signal(paused, nix::sys::signal::Signal::SIGSTOP)?;
    // The second takes the lease over and creates the job.
    wait_for("the lease to move", T, || lease(&c).ok().flatten().filter(|(_, g)| *g == 2))?;
    c.use_coordinator(second);
    wait_seed_state(&c, &ops, "job-stop", "import_job_created", T).await?;
    // The first wakes up where it paused: its fence is refused, and it sends nothing.
    signal(paused, nix::sys::signal::Signal::SIGCONT)?;
    // It ends the pause it was stopped in and checks its fence before the PUT: refused.
    wait_for("the woken coordinator to be refused at its fence", T, || {
        c.log_of("coordinator-1")
            .contains("the import job is not created from this coordinator: its workers' fence is gone")
            .then_some(())
    })?;
    let first = c.log_of("coordinator-1");
    assert!(!first.contains("import job created in Azure"), "the paused coordinator created nothing: {first}");
    assert_eq!(emu.job_count().await?, 1, "exactly one job in Azure");
    assert!(c.log_of("coordinator-b").contains("import job created in Azure"));
    c.finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_restarted_mid_chain_gives_unavailable_then_the_chain_goes_on() -> anyhow::Result<()> {
    let (mut c, emu) = cluster(Vec::new())?;
    let (_, second) = c.start_another_coordinator("coordinator-b", &[])?;
    let first = c.addr;
    let ops = c.issue("operator", "alice")?;
    prepare(&mut c, &ops, "job-pg1", 2, 1).await?;
    wait_seed_state(&c, &ops, "job-pg1", "import_job_created", T).await?;

    // PostgreSQL dies (SIGKILL of its postmaster): both coordinators answer UNAVAILABLE, with
    // nothing half-done.
    c.pg.as_mut().expect("a PostgreSQL cluster").kill()?;
    for addr in [first, second] {
        c.use_coordinator(addr);
        let conn = c.connect(&ops).await?;
        let e = client::operator(conn)
            .get_seed(pb::GetSeedRequest { seed: "job-pg1".into() })
            .await
            .expect_err("no database");
        assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
        assert!(e.message().contains("retry"), "{}", e.message());
    }
    // It comes back (recovering from its WAL): both answer again, the state intact, and the
    // chain goes on through the workers (another seed gets its job).
    c.pg.as_mut().unwrap().run()?;
    for addr in [first, second] {
        c.use_coordinator(addr);
        let d = seedship_e2e::get_seed(&c, &ops, "job-pg1").await?;
        assert_eq!(d.seed.unwrap().state, pb::SeedState::ImportJobCreated as i32);
    }
    c.use_coordinator(first);
    prepare(&mut c, &ops, "job-pg2", 2, 1).await?;
    wait_seed_state(&c, &ops, "job-pg2", "import_job_created", T).await?;
    assert_eq!(emu.job_count().await?, 2, "one job per seed");
    for e in ["database unavailable", "workers' lease", "unavailable"] {
        c.allow_error(e);
    }
    c.finish()
}

/// Which coordinator holds the workers' lease (its address), and the generation.
fn holder(c: &Cluster) -> anyhow::Result<Option<(std::net::SocketAddr, u64)>> {
    Ok(lease(c)?.and_then(|(h, g)| h.rsplit('/').next()?.parse().ok().map(|a| (a, g))))
}

/// Two coordinators, one of them perhaps killed.
struct Pair {
    a: std::net::SocketAddr,
    b: std::net::SocketAddr,
    b_pid: u32,
    b_starts: u32,
    down: Option<std::net::SocketAddr>,
    kills: Vec<String>,
}

impl Pair {
    /// SIGKILLs whichever coordinator holds the workers' lease (the one down comes back
    /// first, where it listened).
    fn kill_holder(&mut self, c: &mut Cluster, when: &str) -> anyhow::Result<()> {
        self.revive(c)?;
        let Some((addr, generation)) = holder(c)? else { return Ok(()) };
        if addr == self.a {
            c.kill9_coordinator()?;
        } else if addr == self.b {
            c.kill9(self.b_pid)?;
        } else {
            anyhow::bail!("the lease is held by {addr}, neither coordinator");
        }
        self.down = Some(addr);
        self.kills.push(format!("{when}: the holder {addr} (generation {generation})"));
        Ok(())
    }

    fn revive(&mut self, c: &mut Cluster) -> anyhow::Result<()> {
        match self.down.take() {
            Some(a) if a == self.a => c.start_coordinator()?,
            Some(_) => {
                self.b_starts += 1;
                let name = format!("coordinator-b{}", self.b_starts);
                self.b_pid = c.start_another_coordinator_at(&name, &[], self.b)?.0;
            }
            None => {}
        }
        Ok(())
    }

    /// Waits for `job` to reach `state`, killing the lease holder at seeded random moments
    /// (at least three times), and bringing it back after another.
    async fn chain_to(
        &mut self,
        c: &mut Cluster,
        rng: &mut seedship_e2e::Rng,
        ops: &seedship_e2e::Identity,
        job: &str,
        state: &str,
    ) -> anyhow::Result<()> {
        let deadline = std::time::Instant::now() + Duration::from_secs(180);
        let mut killed = 0;
        loop {
            let wait = rng.ms(300, 2500);
            if wait_seed_state(c, ops, job, state, wait).await.is_ok() && killed >= 3 {
                return Ok(());
            }
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "{job} did not reach {state}; kills: {:?}",
                self.kills
            );
            self.kill_holder(c, &format!("waiting for {state}"))?;
            killed += 1;
            tokio::time::sleep(rng.ms(200, 3000)).await;
            self.revive(c)?;
        }
    }
}

/// The chain from staging to `seeded` on two coordinators, the workers' lease holder killed
/// at seeded random moments all along (at least ten times); then one Azure job, one lease at a
/// time, every event in the history and the audit chain, and a restore equal to the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chain_reaches_seeded_with_the_lease_holder_killed_again_and_again() -> anyhow::Result<()> {
    use seedship_e2e::prep::{copy_agent, disk_size, image, stage, station, text};
    let mut rng = seedship_e2e::Rng::from_env("SEEDSHIP_FAILOVER_SEED");
    let base = seedship_e2e::azure::kept_dir("seedship-failover-")?;
    let emu = Emulator::start_with_storage(&base)?;
    let mut c = Cluster::start_with(Options {
        extra_toml: format!("{}[workers]\nlease_ttl = \"2s\"\n", emu.coordinator_toml("1s")),
        lease_ttl: "3s",
        postgres: true,
        ..Default::default()
    })?;
    for e in ["lease", "Azure", "vault", "transport", "unavailable", "refused", "interrupted", "storage"] {
        c.allow_error(e);
    }
    let (b_pid, b) = c.start_another_coordinator("coordinator-b", &[])?;
    c.also_coordinator(b);
    let mut pair = Pair { a: c.addr, b, b_pid, b_starts: 0, down: None, kills: Vec::new() };
    let ops = c.issue("operator", "alice")?;

    // Disk preparation, the copy agent run again after each kill until the work is done.
    let staging = stage(&mut c, &ops, "job-ha", 4, 7, "st-ha").await?;
    let (cfg, dir) = station(&c, "st-ha", "")?;
    let size = disk_size(&staging, 1);
    image(&dir, "disk1.img", size);
    for round in 0.. {
        anyhow::ensure!(round < 20, "the disks were not prepared after {round} runs");
        let pid = c.spawn(&format!("copy-{round}"), &mut copy_agent(&cfg))?;
        tokio::time::sleep(rng.ms(100, 1500)).await;
        if round < 2 {
            pair.kill_holder(&mut c, "while the disks are prepared")?;
        }
        let _ = c.wait_exit(pid, Duration::from_secs(90));
        pair.revive(&mut c)?;
        let d = seedship_e2e::get_seed(&c, &ops, "job-ha").await?;
        if d.work.as_ref().is_some_and(|w| w.status == "done") {
            break;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    pair.chain_to(&mut c, &mut rng, &ops, "job-ha", "import_job_created").await?;
    let o = c.run(
        "ship",
        &mut c.seedctl(
            &ops,
            &[
                "ship",
                "--job",
                "job-ha",
                "--carrier",
                "DHL",
                "--tracking",
                "1000000077",
                "--drives",
                "1",
                "--date",
                "2026-11-22",
            ],
        ),
    )?;
    anyhow::ensure!(o.status.success(), "ship: {}", text(&o));
    pair.chain_to(&mut c, &mut rng, &ops, "job-ha", "shipped").await?;
    let disks = vec![dir.join("disk1.img").display().to_string()];
    emu.dc("job-ha", "arrive", serde_json::json!({ "disks": disks })).await?;
    emu.dc("job-ha", "copy", serde_json::json!({})).await?;
    pair.chain_to(&mut c, &mut rng, &ops, "job-ha", "seeded").await?;
    pair.revive(&mut c)?;
    assert!(pair.kills.len() >= 10, "{} kills: {:?}", pair.kills.len(), pair.kills);

    // One job; one lease at a time (each claim a higher generation); every step in the
    // history, in order; the audit chain intact.
    assert_eq!(emu.job_count().await?, 1, "exactly one Azure job; kills: {:?}", pair.kills);
    let d = seedship_e2e::get_seed(&c, &ops, "job-ha").await?;
    let generations: Vec<u64> = d
        .history
        .iter()
        .filter(|h| h.event == "lease_claimed")
        .filter_map(|h| h.reason.split("lease generation ").nth(1)?.trim_end_matches(')').parse().ok())
        .collect();
    assert!(generations.windows(2).all(|w| w[0] < w[1]), "one lease at a time: {generations:?}");
    let path: Vec<String> = d
        .history
        .iter()
        .filter_map(|h| pb::SeedState::try_from(h.to_state).ok())
        .map(|s| s.as_str_name().trim_start_matches("SEED_STATE_").to_ascii_lowercase())
        .collect();
    let mut want = [
        "registered",
        "queued_for_disk_prep",
        "preparing",
        "disks_prepared",
        "import_job_created",
        "shipped",
        "seeding_vault",
        "seeded",
    ]
    .into_iter()
    .peekable();
    for p in &path {
        if want.peek() == Some(&p.as_str()) {
            want.next();
        }
    }
    assert!(want.peek().is_none(), "every step in the history, in order: {path:?}");
    let o = c.run("verify", &mut c.seedctl(&ops, &["audit", "verify"]))?;
    assert!(o.status.success(), "the audit chain: {}", text(&o));

    // The vault restores the source.
    let target = c.path("restored");
    let o = c.run(
        "restore",
        std::process::Command::new(seedship_e2e::bin("source-agent"))
            .arg("--config")
            .arg(c.path("src-job-ha.toml"))
            .args(["restore", "--vault", "--cache"])
            .arg(c.path("restore-cache"))
            .arg("--target")
            .arg(&target)
            .arg("--passphrase-file")
            .arg(seedship_e2e::passphrase_file(c.dir.path())?),
    )?;
    anyhow::ensure!(o.status.success(), "restore: {}", text(&o));
    seedship_e2e::same_tree(&c.path("corpus-job-ha"), &target.join("corpus-job-ha"));
    eprintln!("{} kills of the lease holder: {:#?}", pair.kills.len(), pair.kills);
    c.finish()
}
