//! The operator CLI and the agents' CLIs, as real processes.

use seedship_e2e::{Cluster, bin, rid, seed_request};
use seedship_proto::{client, pb};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seedctl_shows_seeds_history_and_agents() -> anyhow::Result<()> {
    let mut c = Cluster::start()?;
    let (fs, st, ops) = (c.issue("source", "fs01")?, c.issue("copy", "station-01")?, c.issue("operator", "alice")?);

    // Agents register through their own binaries.
    let fs_cfg = c.agent_config(&fs, Some("hq"))?;
    let st_cfg = c.agent_config(&st, Some("hq"))?;
    let out = c.run(
        "source-register",
        std::process::Command::new(bin("source-agent")).arg("--config").arg(&fs_cfg).arg("register"),
    )?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("spiffe://e2e.test/source/fs01"));
    let out = c.run(
        "copy-register",
        std::process::Command::new(bin("copy-agent")).arg("--config").arg(&st_cfg).arg("register"),
    )?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let src = c.connect(&fs).await?;
    client::seeds(src.clone()).register_seed(seed_request("job-cli")).await?;
    // The agents run as real processes on this machine, which is a VM: Azure's rule would keep
    // the seed from this (virtual) station, so the lab override goes on record first.
    let out = c.run("allow", &mut c.seedctl(&ops, &["allow-virtual-station", "job-cli", "--reason", "test lab"]))?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cp = c.connect(&st).await?;
    client::diskprep(cp).claim_work(pb::ClaimWorkRequest { request_id: rid() }).await?;

    let seedctl = |c: &mut Cluster, name: &str, args: &[&str]| -> anyhow::Result<String> {
        let out = c.run(name, &mut c.seedctl(&ops, args))?;
        anyhow::ensure!(out.status.success(), "seedctl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        Ok(String::from_utf8(out.stdout)?)
    };

    let table = seedctl(&mut c, "seeds", &["seeds"])?;
    assert!(table.lines().next().unwrap().starts_with("JOB"), "{table}");
    let row = table.lines().find(|l| l.starts_with("job-cli")).expect("job-cli row");
    assert!(row.contains("preparing") && row.contains("fs01"), "{row}");

    let json: serde_json::Value = serde_json::from_str(&seedctl(&mut c, "seeds-json", &["--json", "seeds"])?)?;
    assert_eq!(json[0]["job_name"], "job-cli");
    assert_eq!(json[0]["state"], "preparing");

    let detail = seedctl(&mut c, "seed", &["seed", "job-cli"])?;
    assert!(
        detail.contains("History") && detail.contains("lease_claimed") && detail.contains("station-01"),
        "{detail}"
    );
    let dj: serde_json::Value = serde_json::from_str(&seedctl(&mut c, "seed-json", &["--json", "seed", "job-cli"])?)?;
    let events: Vec<&str> = dj["history"].as_array().unwrap().iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(events, vec!["register", "queue", "allow_virtual_station", "lease_claimed"]);
    assert_eq!(dj["work"]["holder"], "station-01");

    let agents: serde_json::Value = serde_json::from_str(&seedctl(&mut c, "agents", &["--json", "agents"])?)?;
    let names: Vec<&str> = agents.as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["station-01", "fs01"]);
    assert!(agents[0]["last_heartbeat_unix_ms"].as_i64().unwrap() > 0);

    // The connection flags go after the command as well as before it.
    let mut after = std::process::Command::new(bin("seedctl"));
    after.args(["--json", "agents", "--url", &c.url(), "--server-name", "localhost", "--ca"]).arg(c.pki.join("ca.crt"));
    after.arg("--cert").arg(&ops.cert).arg("--key").arg(&ops.key);
    let out = c.run("flags-after", &mut after)?;
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("station-01"), "{out:?}");

    // Output into a pipe nobody reads any more (`seedctl seeds | head -0`) ends quietly.
    let (o, err) = seedship_e2e::run_into_closed_pipe(&mut c.seedctl(&ops, &["seeds"]))?;
    assert!(o.success() && !err.contains("panicked"), "seedctl into a closed pipe: {o:?} {err}");

    // An unknown seed is a clear error and a non-zero exit, also as a list's filter (a typo
    // must not read as an empty list).
    for (name, args) in [
        ("seed-missing", &["seed", "no-such-job"][..]),
        ("drives-missing", &["drives", "--seed", "no-such-job"][..]),
        ("events-missing", &["events", "--seed", "no-such-job"][..]),
    ] {
        let out = c.run(name, &mut c.seedctl(&ops, args))?;
        assert!(!out.status.success(), "{name}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("not found") && err.contains("no-such-job"), "{name}: {err}");
    }

    // The source agent's own status view.
    let out = c.run(
        "source-status",
        std::process::Command::new(bin("source-agent")).arg("--config").arg(&fs_cfg).arg("status"),
    )?;
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("job-cli") && s.contains("copy station station-01 is preparing the disks"), "{s}");
    // Its JSON names states as seedctl does.
    let out = c.run(
        "source-status-json",
        std::process::Command::new(bin("source-agent")).arg("--config").arg(&fs_cfg).args(["status", "--json"]),
    )?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(v[0]["state"], "preparing", "{v}");
    let (o, err) = seedship_e2e::run_into_closed_pipe(
        std::process::Command::new(bin("source-agent")).arg("--config").arg(&fs_cfg).arg("status"),
    )?;
    assert!(o.success() && !err.contains("panicked"), "source-agent status into a closed pipe: {o:?} {err}");
    c.finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_agent_keeps_its_heartbeat_fresh() -> anyhow::Result<()> {
    let mut c = Cluster::start()?;
    let (st, ops) = (c.issue("copy", "station-01")?, c.issue("operator", "alice")?);
    let cfg = c.agent_config(&st, Some("hq"))?;
    c.spawn("copy-agent", std::process::Command::new(bin("copy-agent")).arg("--config").arg(&cfg).arg("run"))?;
    let op = client::operator(c.connect(&ops).await?);
    // The coordinator tells agents to beat every second (test config); the status moves from
    // "registered" to the agent's own "idle" with a fresh timestamp.
    let agent = seedship_e2e::wait_for_async("a heartbeat from station-01", std::time::Duration::from_secs(10), || {
        let mut op = op.clone();
        async move {
            let r = op.list_agents(pb::ListAgentsRequest::default()).await.ok()?.into_inner();
            let a = r.agents.into_iter().find(|a| a.name == "station-01")?;
            (a.status == "idle" && a.last_heartbeat_unix_ms > a.registered_unix_ms).then_some(a)
        }
    })
    .await?;
    assert_eq!(agent.site, "hq");
    let before = agent.last_heartbeat_unix_ms;
    seedship_e2e::wait_for_async("a later heartbeat", std::time::Duration::from_secs(10), || {
        let mut op = op.clone();
        async move {
            let r = op.list_agents(pb::ListAgentsRequest::default()).await.ok()?.into_inner();
            r.agents.into_iter().find(|a| a.name == "station-01" && a.last_heartbeat_unix_ms > before)
        }
    })
    .await?;
    c.finish()
}
