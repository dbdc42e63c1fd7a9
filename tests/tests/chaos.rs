//! Chaos: the whole chain, with `kill -9` at random points of the coordinator, the copy
//! agent, the source agent during incrementals, the storage emulator (Azurite) during vault
//! seeding and the Azure emulator during the datacenter's copy. Afterwards every recovery point
//! the coordinator reports is restored, and each one taken here is compared with the tree it
//! was taken of. Seeded and replayable: the seed is printed, and `SEEDSHIP_CHAOS_SEED=N`
//! replays a run; `SEEDSHIP_CHAOS_ROUNDS=N` (default 4) sets the number of incremental rounds
//! (the soak, `docs/operations.md`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use seedship_e2e::azure::{Emulator, wait_seed_state};
use seedship_e2e::prep::{copy_agent, disk_size, image, stage, station, text};
use seedship_e2e::{Cluster, Identity, Options, Rng, bin};
use seedship_proto::{client, pb};
use serde_json::json;

const T: Duration = Duration::from_secs(90);

/// Runs `cmd` and kills it with SIGKILL after `after` if it has not ended; true if killed.
fn run_and_maybe_kill(
    c: &mut Cluster,
    name: &str,
    cmd: &mut std::process::Command,
    after: Duration,
) -> anyhow::Result<bool> {
    let pid = c.spawn(name, cmd)?;
    let until = Instant::now() + after;
    while Instant::now() < until {
        if c.try_wait(pid)?.is_some() {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    if c.try_wait(pid)?.is_some() {
        return Ok(false);
    }
    c.kill9(pid)?;
    Ok(true)
}

async fn points(c: &Cluster, ops: &Identity) -> anyhow::Result<Vec<pb::RecoveryPoint>> {
    Ok(client::operator(c.connect(ops).await?)
        .list_recovery_points(pb::ListRecoveryPointsRequest { server: "src-job-ch".into() })
        .await?
        .into_inner()
        .points)
}

fn mutate(c: &Cluster, corpus: &std::path::Path, seed: u64) -> anyhow::Result<()> {
    seedship_e2e::run_ok(
        std::process::Command::new("python3")
            .arg(seedship_e2e::corpus_tool())
            .args(["mutate", "--out"])
            .arg(corpus)
            .arg("--undo")
            .arg(c.path(&format!("undo-{seed}")))
            .args(["--fraction", "0.1", "--seed", &seed.to_string()]),
    )?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_anywhere_and_every_reported_point_restores() -> anyhow::Result<()> {
    let seed: u64 = std::env::var("SEEDSHIP_CHAOS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
    }) | 1;
    let rounds: u64 = std::env::var("SEEDSHIP_CHAOS_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(4);
    eprintln!("chaos seed {seed} (replay with SEEDSHIP_CHAOS_SEED={seed}), {rounds} incremental rounds");
    let mut rng = Rng(seed);
    let mut kills: Vec<String> = Vec::new();

    let base = seedship_e2e::azure::kept_dir("seedship-chaos-")?;
    let mut emu = Emulator::start_with_storage(&base)?;
    let mut c = Cluster::start_with(Options {
        extra_toml: emu.coordinator_toml("1s"),
        lease_ttl: "2s",
        // Vault seeding slow enough that the storage kill lands while it runs, past Azurite's
        // 5 s save interval for the import before it.
        coordinator_env: vec![("SEEDSHIP_FAILPOINTS".into(), "vault-copy=sleep(1500)".into())],
        ..Default::default()
    })?;
    // What a kill makes other parts say is expected; a panic or a lost write is not.
    for e in ["lease", "Azure", "vault", "copy", "storage", "transport", "refused", "unavailable", "interrupted"] {
        c.allow_error(e);
    }
    let ops = c.issue("operator", "alice")?;

    // 1. Disk preparation: the copy agent killed at random points (it resumes from its
    //    journals once the lease has expired), and the coordinator once.
    let staging = stage(&mut c, &ops, "job-ch", 8, (seed % 50) as u32 + 1, "st-ch").await?;
    let (cfg, dir) = station(&c, "st-ch", "")?;
    let size = disk_size(&staging, 2);
    let images: Vec<PathBuf> = (1..=2).map(|i| image(&dir, &format!("disk{i}.img"), size)).collect();
    let mut coordinator_killed = false;
    for round in 0.. {
        anyhow::ensure!(round < 30, "the disks were not prepared after {round} rounds");
        // The first two runs are killed early; the later ones are left to finish.
        let after = if round < 2 { rng.ms(5, 60) } else { Duration::from_secs(60) };
        if run_and_maybe_kill(&mut c, &format!("copy-{round}"), &mut copy_agent(&cfg), after)? {
            kills.push(format!("copy agent after {after:?}"));
        }
        if !coordinator_killed {
            c.kill9_coordinator()?;
            c.start_coordinator()?;
            kills.push("coordinator during disk preparation".into());
            coordinator_killed = true;
        }
        let d = client::operator(c.connect(&ops).await?)
            .get_seed(pb::GetSeedRequest { seed: "job-ch".into() })
            .await?
            .into_inner();
        if d.seed.unwrap().state != pb::SeedState::QueuedForDiskPrep as i32
            && d.work.as_ref().is_some_and(|w| w.status == "done")
        {
            break;
        }
        // A killed station's lease expires before the work can be claimed again.
        tokio::time::sleep(Duration::from_millis(2200)).await;
    }

    // 2. The import job: the coordinator killed while it creates it.
    tokio::time::sleep(rng.ms(0, 800)).await;
    c.kill9_coordinator()?;
    c.start_coordinator()?;
    kills.push("coordinator while the import job is created".into());
    wait_seed_state(&c, &ops, "job-ch", "import_job_created", T).await?;
    let o = c.run(
        "ship",
        &mut c.seedctl(
            &ops,
            &[
                "ship",
                "--job",
                "job-ch",
                "--carrier",
                "DHL",
                "--tracking",
                "1000000042",
                "--drives",
                "2",
                "--date",
                "2026-11-22",
            ],
        ),
    )?;
    anyhow::ensure!(o.status.success(), "ship: {}", text(&o));
    let disks: Vec<String> = images.iter().map(|p| p.display().to_string()).collect();
    emu.dc("job-ch", "arrive", json!({ "disks": disks })).await?;

    // 3. The datacenter's copy: the Azure emulator killed mid-copy, started again, and the
    //    copy asked for again (a drive left Transferring is copied again).
    let (url, ca) = (emu.url.clone(), std::fs::read(emu.tls.join("ca.crt"))?);
    let copy = tokio::spawn(async move {
        let http = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        http.post(format!(
            "{url}/_datacenter/subscriptions/{}/resourceGroups/{}/jobs/job-ch/copy",
            seedship_e2e::azure::SUB,
            seedship_e2e::azure::RG
        ))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
    });
    tokio::time::sleep(rng.ms(5, 150)).await;
    emu.kill9_and_restart()?;
    kills.push("Azure emulator during the datacenter's copy".into());
    let _ = copy.await;
    emu.dc("job-ch", "copy", json!({})).await?;

    // 4. Vault seeding: storage killed between confirmed copies, and the coordinator.
    wait_seed_state(&c, &ops, "job-ch", "seeding_vault", T).await?;
    tokio::time::sleep(rng.ms(5200, 6500)).await;
    emu.azurite.as_mut().unwrap().kill9_and_restart()?;
    kills.push("Azurite during vault seeding".into());
    tokio::time::sleep(rng.ms(100, 900)).await;
    c.kill9_coordinator()?;
    c.start_coordinator()?;
    kills.push("coordinator during vault seeding".into());
    wait_seed_state(&c, &ops, "job-ch", "seeded", T).await?;

    // 5. Incrementals: each round, one killed at a random point, then one whole. The tree each
    //    new recovery point was taken of is kept.
    let corpus = c.path("corpus-job-ch");
    let cache = c.path("vault-cache-job-ch");
    let mut expected: Vec<(String, PathBuf)> = Vec::new();
    let keep = |c: &Cluster, n: usize| -> anyhow::Result<PathBuf> {
        let to = c.path(&format!("expected-{n}"));
        seedship_e2e::run_ok(std::process::Command::new("cp").arg("-a").arg(&corpus).arg(&to))?;
        Ok(to)
    };
    let first = points(&c, &ops).await?;
    expected.push((first.last().unwrap().snapshot_id.clone(), keep(&c, 0)?));
    let backup = |c: &Cluster| {
        let mut cmd = std::process::Command::new(bin("source-agent"));
        cmd.arg("--config")
            .arg(c.path("src-job-ch.toml"))
            .arg("backup")
            .arg("--cache")
            .arg(&cache)
            .arg("--passphrase-file")
            .arg(seedship_e2e::passphrase_file(c.dir.path()).unwrap())
            .arg(&corpus);
        cmd
    };
    let mut attempt: u64 = 0;
    for round in 0..rounds {
        // A killed attempt (tried again, with new changes, until a kill lands before the run
        // ends), then a whole one.
        for _try in 0..3 {
            attempt += 1;
            mutate(&c, &corpus, seed % 1000 + attempt)?;
            let before: Vec<String> = points(&c, &ops).await?.into_iter().map(|p| p.snapshot_id).collect();
            let tree = keep(&c, 100 + attempt as usize)?;
            let after = rng.ms(10, 120);
            let mut cmd = backup(&c);
            let landed = run_and_maybe_kill(&mut c, &format!("backup-killed-{attempt}"), &mut cmd, after)?;
            if landed {
                kills.push(format!("source agent {after:?} into an incremental"));
            }
            for p in points(&c, &ops).await? {
                if !before.contains(&p.snapshot_id) {
                    expected.push((p.snapshot_id, tree.clone()));
                }
            }
            if landed {
                break;
            }
        }
        if round == 0 {
            // The coordinator killed while an incremental runs: the agent fails or retries;
            // whatever it got recorded must restore.
            attempt += 1;
            mutate(&c, &corpus, seed % 1000 + attempt)?;
            let before: Vec<String> = points(&c, &ops).await?.into_iter().map(|p| p.snapshot_id).collect();
            let tree = keep(&c, 100 + attempt as usize)?;
            let pid = c.spawn(&format!("backup-coordinator-killed-{attempt}"), &mut backup(&c))?;
            tokio::time::sleep(rng.ms(20, 200)).await;
            c.kill9_coordinator()?;
            c.start_coordinator()?;
            kills.push("coordinator during an incremental".into());
            let _ = c.wait_exit(pid, Duration::from_secs(60));
            for p in points(&c, &ops).await? {
                if !before.contains(&p.snapshot_id) {
                    expected.push((p.snapshot_id, tree.clone()));
                }
            }
        }
        attempt += 1;
        mutate(&c, &corpus, seed % 1000 + attempt)?;
        let before: Vec<String> = points(&c, &ops).await?.into_iter().map(|p| p.snapshot_id).collect();
        let tree = keep(&c, 100 + attempt as usize)?;
        let o = c.run(&format!("backup-{round}"), &mut backup(&c))?;
        anyhow::ensure!(o.status.success(), "{}", text(&o));
        for p in points(&c, &ops).await? {
            if !before.contains(&p.snapshot_id) {
                expected.push((p.snapshot_id, tree.clone()));
            }
        }
    }

    // 6. Every recovery point reported restores; those taken here restore their tree.
    let all = points(&c, &ops).await?;
    for p in &all {
        let target = c.path(&format!("restored-{}", &p.snapshot_id[..12]));
        let o = c.run(
            &format!("restore-{}", &p.snapshot_id[..12]),
            std::process::Command::new(bin("source-agent"))
                .arg("--config")
                .arg(c.path("src-job-ch.toml"))
                .args(["restore", "--vault", "--cache"])
                .arg(c.path("restore-cache"))
                .arg("--target")
                .arg(&target)
                .args(["--snapshot", &p.snapshot_id])
                .arg("--passphrase-file")
                .arg(seedship_e2e::passphrase_file(c.dir.path()).unwrap()),
        )?;
        anyhow::ensure!(
            o.status.success(),
            "recovery point {} does not restore (seed {seed}): {}",
            p.snapshot_id,
            text(&o)
        );
        if let Some((_, tree)) = expected.iter().find(|(id, _)| *id == p.snapshot_id) {
            seedship_e2e::same_tree(tree, &target.join("corpus-job-ch"));
        }
    }
    eprintln!("{} kills: {kills:#?}; {} recovery points restored", kills.len(), all.len());
    anyhow::ensure!(kills.len() >= 10, "only {} kills (seed {seed}): {kills:?}", kills.len());
    c.finish()
}
