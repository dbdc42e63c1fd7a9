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
    // The client's next call fails at the transport (its coordinator is gone), and the one
    // after goes to the other coordinator.
    let mut lost = 0;
    loop {
        match client::operator(conn.clone()).list_seeds(pb::ListSeedsRequest::default()).await {
            Ok(r) => {
                assert_eq!(r.into_inner().seeds.len(), 1);
                break;
            }
            Err(e) if e.code() == tonic::Code::Unavailable && lost < 2 => lost += 1,
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
