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
    let lease = client::diskprep(cp.clone())
        .claim_work(pb::ClaimWorkRequest { request_id: rid() })
        .await?
        .into_inner()
        .lease
        .expect("a lease");

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

    // Registered, never reported: both say so, and their heartbeat is "never".
    assert!(agents.as_array().unwrap().iter().all(|a| a["activity"] == "never reported"), "{agents}");
    let table = seedctl(&mut c, "agents-never", &["agents"])?;
    assert!(
        table.lines().any(|l| l.contains("fs01") && l.contains("never reported") && l.contains("never")),
        "{table}"
    );
    // The station beats and holds the work: copying, with each disk it reports (bytes, rate,
    // ETA), centrally as on the station.
    seedship_proto::agent::heartbeat(&cp, "preparing job-cli (copy)").await?;
    let disk = |position: u32, phase: &str, done: u64| pb::DiskProgress {
        position,
        set_size: 2,
        drive_id: format!("DRV-{position}"),
        phase: phase.into(),
        done_bytes: done,
        total_bytes: 100 << 20,
        rate_bytes_per_sec: 10 << 20,
        updated_unix_ms: 0,
    };
    client::diskprep(cp.clone())
        .renew_lease(pb::RenewLeaseRequest {
            request_id: rid(),
            work_id: lease.work_id.clone(),
            generation: lease.generation,
            waiting: String::new(),
            disks: vec![disk(1, "copy", 40 << 20), disk(2, "verify", 90 << 20)],
        })
        .await?;
    let table = seedctl(&mut c, "agents-copying", &["agents"])?;
    assert!(table.lines().any(|l| l.starts_with("copy") && l.contains("copying") && l.contains("job-cli")), "{table}");
    assert!(table.contains("disk 1/2 DRV-1  copy") && table.contains("(40%)") && table.contains("ETA 6s"), "{table}");
    assert!(table.contains("disk 2/2 DRV-2  verify") && table.contains("ETA 1s"), "{table}");
    let detail = seedctl(&mut c, "seed-disks", &["seed", "job-cli"])?;
    assert!(detail.contains("disk 1/2 DRV-1") && detail.contains("10.0 MiB/s"), "{detail}");
    // A disk report that names a disk twice is refused, and the renewal with it.
    let twice = client::diskprep(cp.clone())
        .renew_lease(pb::RenewLeaseRequest {
            request_id: rid(),
            work_id: lease.work_id.clone(),
            generation: lease.generation,
            waiting: String::new(),
            disks: vec![disk(1, "copy", 1), disk(1, "copy", 2)],
        })
        .await
        .unwrap_err();
    assert!(twice.message().contains("reported twice"), "{twice:?}");
    // Waiting for a person: "waiting".
    client::diskprep(cp.clone())
        .renew_lease(pb::RenewLeaseRequest {
            request_id: rid(),
            work_id: lease.work_id.clone(),
            generation: lease.generation,
            waiting: "insert 1 more disk".into(),
            disks: vec![],
        })
        .await?;
    let json: serde_json::Value = serde_json::from_str(&seedctl(&mut c, "agents-waiting", &["--json", "agents"])?)?;
    let station = json.as_array().unwrap().iter().find(|a| a["name"] == "station-01").unwrap();
    assert_eq!(station["activity"], "waiting", "{json}");

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
    assert!(s.contains("job-cli") && s.contains("copy station station-01 is waiting: insert 1 more disk"), "{s}");
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
    let pid =
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
    let seedctl_agents = |c: &mut Cluster| -> anyhow::Result<String> {
        let out = c.run("agents", &mut c.seedctl(&ops, &["agents"]))?;
        Ok(String::from_utf8(out.stdout)?)
    };
    let table = seedctl_agents(&mut c)?;
    assert!(table.lines().any(|l| l.contains("station-01") && l.contains(" idle ")), "{table}");
    // Stopped: gone after three heartbeat intervals without one.
    c.kill9(pid)?;
    seedship_e2e::wait_for("station-01 gone", std::time::Duration::from_secs(15), || {
        let t = seedctl_agents(&mut c).ok()?;
        t.lines().any(|l| l.contains("station-01") && l.contains(" gone ")).then_some(())
    })?;
    c.finish()
}

/// Every program says what is wrong with a configuration it cannot use, in one line, and exits
/// with the same code (2, a usage error's).
#[test]
fn a_bad_config_exits_2_from_every_program() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "url = 3\nno_such_key = true\n")?;
    let missing = dir.path().join("missing.toml");
    for cfg in [&bad, &missing] {
        for (prog, args) in [
            ("coordinator", &["serve", "--config"][..]),
            ("copy-agent", &["status", "--config"][..]),
            ("source-agent", &["status", "--config"][..]),
            ("seedctl", &["seeds", "--config"][..]),
        ] {
            let out = std::process::Command::new(bin(prog)).args(args).arg(cfg).output()?;
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{prog} with {}: {err}", cfg.display());
            assert!(err.starts_with("error: ") && err.contains(&*cfg.to_string_lossy()), "{prog}: {err}");
        }
    }
    Ok(())
}

/// Every program writes shell completions and man pages from its own command-line definition:
/// bash loads the completion, and nroff renders each page.
#[test]
fn every_program_has_shell_completions_and_man_pages() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    for prog in ["coordinator", "copy-agent", "source-agent", "seedctl"] {
        for shell in ["bash", "zsh", "fish"] {
            let out = std::process::Command::new(bin(prog)).args(["completions", shell]).output()?;
            assert!(out.status.success(), "{prog} completions {shell}: {}", String::from_utf8_lossy(&out.stderr));
            assert!(String::from_utf8_lossy(&out.stdout).contains(prog), "{prog} completions {shell}");
            if shell == "bash" {
                let script = dir.path().join(format!("{prog}.bash"));
                std::fs::write(&script, &out.stdout)?;
                let check = std::process::Command::new("bash")
                    .arg("-c")
                    .arg(format!("source {} && complete -p {prog}", script.display()))
                    .output()?;
                assert!(
                    check.status.success() && String::from_utf8_lossy(&check.stdout).contains(prog),
                    "bash did not load {prog}'s completion: {}",
                    String::from_utf8_lossy(&check.stderr)
                );
            }
        }
        let man = dir.path().join(format!("man-{prog}"));
        let out = std::process::Command::new(bin(prog)).arg("man").arg("--dir").arg(&man).output()?;
        assert!(out.status.success(), "{prog} man: {}", String::from_utf8_lossy(&out.stderr));
        let pages: Vec<_> = std::fs::read_dir(&man)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
        assert!(pages.len() >= 3, "{prog}: a page for the program and one per command: {pages:?}");
        let main = man.join(format!("{prog}.1"));
        let text = std::process::Command::new("nroff").args(["-man", "-Tutf8"]).arg(&main).output()?;
        // nroff makes bold by overstriking ("S\x08S"): keep the letters.
        let mut plain = String::new();
        for ch in String::from_utf8_lossy(&text.stdout).chars() {
            if ch == '\x08' {
                plain.pop();
            } else {
                plain.push(ch);
            }
        }
        let text = plain;
        assert!(text.contains("SYNOPSIS") && text.contains("completions"), "{prog}.1 renders: {text}");
    }
    // A command's own page names its options with their help.
    let seeds = std::fs::read_to_string(dir.path().join("man-seedctl/seedctl-seeds.1"))?;
    assert!(seeds.contains("limit") && seeds.contains("At most this many"), "{seeds}");
    Ok(())
}
