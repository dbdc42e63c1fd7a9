//! After the import: the coordinator verifies the import container against the seed manifest,
//! asks the source agent for what is missing or damaged, and only a complete seed moves on.
//! Real coordinator, copy agent, source agent, emulator and Azurite.

use std::time::Duration;

use seedship_e2e::azure::{Emulator, wait_event, wait_seed_state};
use seedship_e2e::prep::{copy_agent, disk_size, image, stage, station, text};
use seedship_e2e::{Cluster, Identity, Options, bin};
use seedship_proto::{client, pb};
use serde_json::json;

const T: Duration = Duration::from_secs(40);

fn cluster() -> anyhow::Result<(Cluster, Emulator)> {
    cluster_env(Vec::new())
}

fn cluster_env(env: Vec<(String, String)>) -> anyhow::Result<(Cluster, Emulator)> {
    let base = seedship_e2e::azure::kept_dir("seedship-verify-")?;
    let emu = Emulator::start_with_storage(&base)?;
    let c = Cluster::start_with(Options {
        extra_toml: emu.coordinator_toml("1s"),
        coordinator_env: env,
        ..Default::default()
    })?;
    Ok((c, emu))
}

/// Every staging file is in the server's vault with the manifest's size and MD5.
async fn vault_is_complete(emu: &Emulator, c: &Cluster, job: &str, server: &str) -> anyhow::Result<usize> {
    vault_folder_is_complete(emu, c, job, &format!("vault-{server}"), "").await
}

/// Every staging file of `job` is in `container` under `folder`, with the manifest's size and MD5.
async fn vault_folder_is_complete(
    emu: &Emulator,
    c: &Cluster,
    job: &str,
    container: &str,
    folder: &str,
) -> anyhow::Result<usize> {
    let blobs = emu.azurite.as_ref().unwrap().blobs()?;
    let listed: Vec<_> = blobs
        .list(container)
        .await?
        .into_iter()
        .filter_map(|mut b| {
            b.name = b.name.strip_prefix(folder)?.to_string();
            Some(b)
        })
        .collect();
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(c.path(&format!("staging-{job}/manifest.json")))?)?;
    let files = m["files"].as_array().unwrap();
    for f in files {
        let p = f["path"].as_str().unwrap();
        let b = listed.iter().find(|b| b.name == p).unwrap_or_else(|| panic!("{p} is not in the vault"));
        assert_eq!(b.size, f["size"].as_u64().unwrap(), "{p}");
        assert_eq!(b.md5.as_deref().map(hex::encode).as_deref(), f["md5"].as_str(), "{p}");
    }
    assert!(listed.iter().any(|b| b.name == format!("seeds/{job}.manifest.json")), "the seed's manifest is kept");
    Ok(files.len())
}

/// Stages, prepares (on `disks` images), waits for the job, ships. Returns the images by
/// drive id, in disk position order.
async fn shipped(
    c: &mut Cluster,
    ops: &Identity,
    job: &str,
    disks: u64,
) -> anyhow::Result<Vec<(String, std::path::PathBuf)>> {
    let st = format!("st-{job}");
    let staging = stage(c, ops, job, 6, 3, &st).await?;
    prepare_and_ship(c, ops, job, &staging, disks, &st).await
}

/// Prepares `staging` (registered as `job`) on `disks` images at station `st`, waits for the
/// job, ships. Returns the images by drive id, in disk position order.
async fn prepare_and_ship(
    c: &mut Cluster,
    ops: &Identity,
    job: &str,
    staging: &std::path::Path,
    disks: u64,
    st: &str,
) -> anyhow::Result<Vec<(String, std::path::PathBuf)>> {
    let (cfg, dir) = station(c, st, "")?;
    let size = disk_size(staging, disks);
    let images: Vec<_> = (1..=disks).map(|i| image(&dir, &format!("disk{i}.img"), size)).collect();
    let o = c.run(&format!("copy-{job}"), &mut copy_agent(&cfg))?;
    anyhow::ensure!(o.status.success(), "copy agent: {}", text(&o));
    wait_seed_state(c, ops, job, "import_job_created", T).await?;
    let o = c.run(
        "ship",
        &mut c.seedctl(
            ops,
            &[
                "ship",
                "--job",
                job,
                "--carrier",
                "DHL",
                "--tracking",
                &format!("{}", 1000000000 + disks * 7 + job.len() as u64),
                "--drives",
                &disks.to_string(),
                "--date",
                "2026-11-22",
            ],
        ),
    )?;
    anyhow::ensure!(o.status.success(), "ship: {}", text(&o));
    Ok(images.into_iter().map(|p| (seedship_e2e::ntfs::drive_id_of(&p).expect("a seedship disk"), p)).collect())
}

fn source_repair(c: &mut Cluster, job: &str) -> anyhow::Result<String> {
    let cfg = c.path(&format!("src-{job}.toml"));
    let o = c.run("repair", std::process::Command::new(bin("source-agent")).arg("--config").arg(&cfg).arg("repair"))?;
    anyhow::ensure!(o.status.success(), "source-agent repair: {}", text(&o));
    Ok(text(&o))
}

/// `source-agent restore --vault` for `job`'s server into `target`.
fn restore_cmd(c: &Cluster, job: &str, target: &std::path::Path, extra: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new(bin("source-agent"));
    cmd.arg("--config")
        .arg(c.path(&format!("src-{job}.toml")))
        .args(["restore", "--vault", "--cache"])
        .arg(c.path(&format!("vault-cache-{job}")))
        .arg("--target")
        .arg(target)
        .args(extra);
    if !extra.contains(&"--passphrase-file") {
        cmd.arg("--passphrase-file").arg(seedship_e2e::passphrase_file(c.dir.path()).unwrap());
    }
    cmd
}

/// Changes about 10 % of `corpus`'s files (`tests/corpus/corpus.py mutate`).
fn mutate(c: &Cluster, corpus: &std::path::Path, seed: &str) -> anyhow::Result<()> {
    let script = seedship_e2e::corpus_tool();
    seedship_e2e::run_ok(
        std::process::Command::new("python3")
            .arg(&script)
            .args(["mutate", "--out"])
            .arg(corpus)
            .arg("--undo")
            .arg(c.path(&format!("undo-{seed}")))
            .args(["--fraction", "0.1", "--seed", seed]),
    )?;
    Ok(())
}

/// `source-agent backup` (online) of `job`'s corpus, with `extra` arguments.
fn online_backup(c: &Cluster, job: &str, extra: &[&std::ffi::OsStr]) -> std::process::Command {
    let mut cmd = std::process::Command::new(bin("source-agent"));
    cmd.arg("--config")
        .arg(c.path(&format!("src-{job}.toml")))
        .arg("backup")
        .args(extra)
        .arg("--passphrase-file")
        .arg(seedship_e2e::passphrase_file(c.dir.path()).unwrap())
        .arg(c.path(&format!("corpus-{job}")));
    cmd
}

async fn report(c: &Cluster, ops: &Identity, job: &str) -> anyhow::Result<pb::GetVerificationResponse> {
    Ok(client::operator(c.connect(ops).await?)
        .get_verification(pb::GetVerificationRequest { seed: job.into() })
        .await?
        .into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_import_is_verified_repaired_with_only_what_is_missing_and_then_complete() -> anyhow::Result<()> {
    let (mut c, emu) = cluster()?;
    let ops = c.issue("operator", "alice")?;
    let drives = shipped(&mut c, &ops, "job-part", 2).await?;
    // Only the first disk arrives; the second is never received.
    emu.dc("job-part", "arrive", json!({ "disks": [drives[0].1] })).await?;
    emu.dc("job-part", "copy", json!({})).await?;
    // The verifier finds what is missing and asks the source agent for it; repair rounds
    // (the seed manifest itself may have been on the lost disk) end with a complete seed.
    let mut rounds = 0;
    let mut sent = Vec::new();
    loop {
        let r = report(&c, &ops, "job-part").await?;
        let st = pb::SeedState::try_from(r.seed.as_ref().unwrap().state).unwrap();
        if st == pb::SeedState::SeedingVault {
            break;
        }
        if st == pb::SeedState::NeedsRepair {
            let asked: Vec<String> =
                r.repairs.iter().filter(|p| p.state == "requested").map(|p| p.path.clone()).collect();
            if !asked.is_empty() {
                rounds += 1;
                anyhow::ensure!(rounds <= 3, "more than 3 repair rounds");
                // Only the files not verified are asked for.
                let verified: Vec<&str> =
                    r.files.iter().filter(|f| f.status == "verified").map(|f| f.path.as_str()).collect();
                assert!(asked.iter().all(|a| !verified.contains(&a.as_str())), "{asked:?} vs {verified:?}");
                let out = source_repair(&mut c, "job-part")?;
                assert!(out.contains(&format!("{} file(s) uploaded again", asked.len())), "{out}");
                sent.extend(asked);
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        anyhow::ensure!(rounds <= 3);
    }
    assert!(rounds >= 1, "the missing disk's files were repaired");
    let r = report(&c, &ops, "job-part").await?;
    let files = r.files.len();
    assert!(r.files.iter().all(|f| f.status == "verified"), "{:?}", r.files);
    assert!(sent.len() < files + 1, "only what was missing was sent: {sent:?} of {files}");
    assert!(r.repairs.iter().all(|p| p.state == "uploaded"));
    wait_event(&c, &ops, "job-part", "verified in the import container", T).await?;
    let o = c.run("verification", &mut c.seedctl(&ops, &["verification", "job-part"]))?;
    assert!(text(&o).contains(&format!("Verified   {files} of {files} file(s)")), "{}", text(&o));
    // Then the vault is seeded from the import container, and its first recovery point listed.
    let det = wait_seed_state(&c, &ops, "job-part", "seeded", T).await?;
    assert!(det.seed.unwrap().state_reason.contains("online incrementals are enabled"));
    vault_is_complete(&emu, &c, "job-part", "src-job-part").await?;
    let o = c.run("points", &mut c.seedctl(&ops, &["recovery-points", "--server", "src-job-part"]))?;
    assert!(text(&o).contains("vault-src-job-part") && text(&o).contains(" seed "), "{}", text(&o));

    // The server restores from its vault (through the coordinator, with a SAS token):
    // byte for byte and metadata as the source.
    let target = c.path("restored");
    let o = c.run("restore", &mut restore_cmd(&c, "job-part", &target, &[]))?;
    assert!(o.status.success() && text(&o).contains("restored snapshot"), "{}", text(&o));
    seedship_e2e::same_tree(&c.path("corpus-job-part"), &target.join("corpus-job-part"));
    // A non-empty target is refused unless --overwrite; one folder can be chosen.
    let o = c.run("restore-again", &mut restore_cmd(&c, "job-part", &target, &[]))?;
    assert!(!o.status.success() && text(&o).contains("is not empty"), "{}", text(&o));
    let first = std::fs::read_dir(c.path("corpus-job-part"))?.flatten().find(|e| e.path().is_dir()).unwrap();
    let sub = format!("corpus-job-part/{}", first.file_name().to_string_lossy());
    let part = c.path("restored-part");
    let o = c.run("restore-part", &mut restore_cmd(&c, "job-part", &part, &["--include", &sub]))?;
    assert!(o.status.success(), "{}", text(&o));
    seedship_e2e::same_tree(&first.path(), &part.join(&sub));
    assert_eq!(std::fs::read_dir(part.join("corpus-job-part"))?.count(), 1, "only the chosen folder");
    // A wrong passphrase is a clear error.
    let bad = c.path("wrong-pass");
    std::fs::write(&bad, "not the passphrase\n")?;
    std::fs::set_permissions(&bad, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    // A chunk damaged in the vault where the blob's MD5 cannot tell (storage that corrupted
    // data and its MD5 alike): the restore names what it could not restore, restores the
    // rest, and fails.
    let blobs = emu.azurite.as_ref().unwrap().blobs()?;
    let vault = "vault-src-job-part";
    let pack =
        blobs.list(vault).await?.into_iter().filter(|b| b.name.starts_with("data/")).max_by_key(|b| b.size).unwrap();
    let mut data = blobs.download(vault, &pack.name).await?;
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    let md5 = {
        use md5::Digest;
        md5::Md5::digest(&data).to_vec()
    };
    blobs.stage_block(vault, &pack.name, b"0000", data).await?;
    blobs.commit(vault, &pack.name, vec![b"0000".to_vec()], Some(md5)).await?;
    let damaged = c.path("restored-damaged");
    let o = c.run("restore-damaged", &mut restore_cmd(&c, "job-part", &damaged, &[]))?;
    let t = text(&o);
    assert!(!o.status.success() && t.contains("NOT restored ("), "{t}");
    let restored = seedship_e2e::walk(&damaged).into_iter().filter(|p| p.is_file()).count();
    assert!(restored > 0, "the rest is restored: {t}");
    let bad_s = bad.to_string_lossy().to_string();
    let mut cmd = restore_cmd(&c, "job-part", &c.path("restored-wrong"), &["--passphrase-file", &bad_s]);
    let o = c.run("restore-wrong", &mut cmd)?;
    let t = text(&o);
    assert!(!o.status.success() && t.contains("passphrase") && !t.contains("cannot be used multiple times"), "{t}");
    c.finish()
}

/// `seedctl reship`, as an operator runs it.
fn reship(c: &mut Cluster, ops: &Identity, job: &str) -> anyhow::Result<std::process::Output> {
    let args = ["reship", job, "--reason", "a whole disk is lost: too much for the uplink"];
    c.run("reship", &mut c.seedctl(ops, &args))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_disk_goes_again_on_a_new_offline_round_of_exactly_its_files() -> anyhow::Result<()> {
    let (mut c, emu) = cluster()?;
    let ops = c.issue("operator", "alice")?;
    // Refused before anything is lost.
    let st = "st-job-lost";
    let staging = stage(&mut c, &ops, "job-lost", 6, 3, st).await?;
    let o = reship(&mut c, &ops, "job-lost")?;
    assert!(!o.status.success() && text(&o).contains("nothing is lost"), "{}", text(&o));
    let drives = prepare_and_ship(&mut c, &ops, "job-lost", &staging, 2, st).await?;
    // The second disk never reaches the datacenter.
    emu.dc("job-lost", "arrive", json!({ "disks": [drives[0].1] })).await?;
    emu.dc("job-lost", "copy", json!({})).await?;
    // Wait for the verification to name the lost files. When the seed manifest itself was on
    // the lost disk, which files are lost is not known yet: a round is refused, and the source
    // agent uploads the manifest (small) first.
    let until = std::time::Instant::now() + T;
    let asked = loop {
        let r = report(&c, &ops, "job-lost").await?;
        anyhow::ensure!(std::time::Instant::now() < until, "the lost files are not named: {r:?}");
        let st = pb::SeedState::try_from(r.seed.as_ref().unwrap().state).unwrap();
        let asked: Vec<pb::RepairStatus> = r.repairs.iter().filter(|p| p.state == "requested").cloned().collect();
        if st == pb::SeedState::NeedsRepair && asked.iter().any(|a| a.path == "manifest.json") {
            let o = reship(&mut c, &ops, "job-lost")?;
            assert!(!o.status.success() && text(&o).contains("not known yet"), "{}", text(&o));
            source_repair(&mut c, "job-lost")?;
        } else if st == pb::SeedState::NeedsRepair && !asked.is_empty() {
            break asked;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let r = report(&c, &ops, "job-lost").await?;
    let lost_bytes: u64 = r.files.iter().filter(|f| asked.iter().any(|a| a.path == f.path)).map(|f| f.size).sum();

    // The operator ships them on disks again: a round of exactly those files.
    let o = reship(&mut c, &ops, "job-lost")?;
    let t = text(&o);
    assert!(o.status.success() && t.contains("new offline round job-lost-r2"), "{t}");
    assert!(t.contains(&format!("for {} file(s)", asked.len())), "{t}");
    let r = report(&c, &ops, "job-lost").await?;
    assert!(r.repairs.iter().filter(|p| asked.iter().any(|a| a.path == p.path)).all(|p| p.state == "reshipped"));
    // The source agent is no longer asked to upload them; a second round waits for the first.
    let out = source_repair(&mut c, "job-lost")?;
    assert!(out.contains("no repairs asked of this server"), "{out}");
    let o = reship(&mut c, &ops, "job-lost")?;
    assert!(!o.status.success() && text(&o).contains("under way"), "{}", text(&o));
    let o = c.run("seed", &mut c.seedctl(&ops, &["seed", "job-lost-r2"]))?;
    assert!(text(&o).contains("Round of   job-lost"), "{}", text(&o));
    let det = wait_seed_state(&c, &ops, "job-lost", "needs_repair", T).await?;
    assert_eq!(det.rounds.iter().map(|r| r.job_name.as_str()).collect::<Vec<_>>(), ["job-lost-r2"]);
    let round = &det.rounds[0];
    assert_eq!((round.file_count, round.total_bytes), (asked.len() as u64, lost_bytes));
    assert_eq!(round.container, det.seed.as_ref().unwrap().container, "into the same import container");

    // The round keeps the seed's station; the operator sends it to another, which prepares it
    // like any seed: its disk holds the lost files only, each listed in the drive manifest for
    // the seed's container.
    assert_eq!(round.target_station, "st-job-lost");
    let o = c.run(
        "requeue",
        &mut c.seedctl(
            &ops,
            &["requeue", "job-lost-r2", "--station", "st-job-lost-2", "--reason", "closer to the courier"],
        ),
    )?;
    assert!(o.status.success(), "{}", text(&o));
    let round_disks = prepare_and_ship(&mut c, &ops, "job-lost-r2", &staging, 1, "st-job-lost-2").await?;
    let keys = seedship_e2e::prep::escrowed_keys(&c);
    let disk = seedship_e2e::ntfs::read_disk(&round_disks[0].1, &keys)?;
    let mut on_disk: Vec<String> = disk
        .files
        .keys()
        .filter_map(|k| k.strip_prefix("\\seedship\\"))
        .filter(|k| *k != "disk.json")
        .map(|k| k.replace('\\', "/"))
        .collect();
    on_disk.sort();
    let mut want: Vec<String> = asked.iter().map(|a| a.path.clone()).collect();
    want.sort();
    assert_eq!(on_disk, want, "exactly the lost files");
    let manifest = disk.manifest.as_ref().expect("a drive manifest");
    assert_eq!(manifest.blobs.len(), want.len());
    for (path, b) in want.iter().zip(&manifest.blobs) {
        assert_eq!(b.blob_path, format!("{}/{path}", round.container));
    }
    // It arrives and is copied: merged, and the seed is verified again, whole, and seeded.
    emu.dc("job-lost-r2", "arrive", json!({ "disks": [round_disks[0].1] })).await?;
    emu.dc("job-lost-r2", "copy", json!({})).await?;
    let r2 = wait_seed_state(&c, &ops, "job-lost-r2", "merged", T).await?;
    assert!(r2.seed.unwrap().state_reason.contains("are in the import container of job-lost"));
    wait_event(&c, &ops, "job-lost", "offline round job-lost-r2 is imported", T).await?;
    wait_seed_state(&c, &ops, "job-lost", "seeded", T).await?;
    vault_is_complete(&emu, &c, "job-lost", "src-job-lost").await?;
    let r = report(&c, &ops, "job-lost").await?;
    assert!(r.files.iter().all(|f| f.status == "verified"), "{:?}", r.files);
    assert!(r.repairs.iter().filter(|p| p.state != "uploaded").all(|p| p.state == "imported"), "{:?}", r.repairs);
    // Recorded with who and why.
    let o = c.run("audit", &mut c.seedctl(&ops, &["audit", "list", "--target", "job-lost"]))?;
    assert!(text(&o).contains("ReshipLost"), "{}", text(&o));
    c.finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staging_deleted_before_repair_blocks_the_seed_with_a_clear_report() -> anyhow::Result<()> {
    let (mut c, emu) = cluster()?;
    let ops = c.issue("operator", "alice")?;
    let drives = shipped(&mut c, &ops, "job-gone", 2).await?;
    emu.dc("job-gone", "arrive", json!({ "disks": [drives[0].1] })).await?;
    emu.dc("job-gone", "copy", json!({})).await?;
    wait_seed_state(&c, &ops, "job-gone", "needs_repair", T).await?;
    std::fs::remove_dir_all(c.path("staging-job-gone"))?;
    let out = source_repair(&mut c, "job-gone")?;
    assert!(out.contains("lost: ") && out.contains("not in the staging location"), "{out}");
    let e =
        wait_event(&c, &ops, "job-gone", "are neither in the import container nor in the staging location", T).await?;
    assert_eq!(e.event, "data_lost");
    let det = wait_seed_state(&c, &ops, "job-gone", "needs_repair", T).await?;
    let why = det.seed.unwrap().state_reason;
    assert!(
        why.starts_with("blocked: ") && why.contains("no new offline round") && why.contains("fresh seed"),
        "{why}"
    );
    let o = c.run("verification", &mut c.seedctl(&ops, &["verification", "job-gone"]))?;
    assert!(text(&o).contains("lost") && text(&o).contains("missing"), "{}", text(&o));
    // No new offline round can carry what the staging location lost either.
    let o = reship(&mut c, &ops, "job-gone")?;
    assert!(!o.status.success() && text(&o).contains("lost from the staging location too"), "{}", text(&o));
    // Nothing is cleaned up before the vault holds the seed.
    let o = c.run("cleanup-early", &mut c.seedctl(&ops, &["cleanup-import", "job-gone"]))?;
    assert!(!o.status.success() && text(&o).contains("only once the vault holds the seed"), "{}", text(&o));
    c.finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_killed_while_seeding_the_vault_converges_after_restart() -> anyhow::Result<()> {
    // A pause between copies, so the kill lands midway.
    let (mut c, emu) = cluster_env(vec![("SEEDSHIP_FAILPOINTS".into(), "vault-copy=sleep(400)".into())])?;
    let ops = c.issue("operator", "alice")?;
    let drives = shipped(&mut c, &ops, "job-kill", 1).await?;
    emu.dc("job-kill", "arrive", json!({ "disks": [drives[0].1] })).await?;
    emu.dc("job-kill", "copy", json!({})).await?;
    wait_seed_state(&c, &ops, "job-kill", "seeding_vault", T).await?;
    // Wait for the first copies to land in the vault, then kill -9.
    let blobs = emu.azurite.as_ref().unwrap().blobs()?;
    let deadline = std::time::Instant::now() + T;
    loop {
        let n = blobs.list("vault-src-job-kill").await.map(|l| l.len()).unwrap_or(0);
        if n >= 1 {
            break;
        }
        anyhow::ensure!(std::time::Instant::now() < deadline, "no copy into the vault started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.kill9_coordinator()?;
    let partial = blobs.list("vault-src-job-kill").await?.len();
    c.start_coordinator()?;
    wait_seed_state(&c, &ops, "job-kill", "seeded", T).await?;
    let files = vault_is_complete(&emu, &c, "job-kill", "src-job-kill").await?;
    assert!(partial < files, "the kill came before the end ({partial} of {files})");
    let r = client::operator(c.connect(&ops).await?)
        .list_recovery_points(pb::ListRecoveryPointsRequest { server: "src-job-kill".into() })
        .await?
        .into_inner();
    assert_eq!(r.points.len(), 1, "one recovery point, recorded once: {:?}", r.points);
    c.finish()
}

/// Storage killed while the vault is seeded loses copies it had confirmed (Azurite saves its
/// records every 5 s): the coordinator checks the whole vault again before it says `seeded`,
/// copies again what is gone, and the vault restores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_losing_confirmed_copies_is_caught_before_seeded() -> anyhow::Result<()> {
    // Slow copies into the vault, so the kill and the restart fit between two of them: the
    // coordinator sees no error at all.
    let (mut c, mut emu) = cluster_env(vec![("SEEDSHIP_FAILPOINTS".into(), "vault-copy=sleep(3000)".into())])?;
    let ops = c.issue("operator", "alice")?;
    let drives = shipped(&mut c, &ops, "job-az", 1).await?;
    emu.dc("job-az", "arrive", json!({ "disks": [drives[0].1] })).await?;
    emu.dc("job-az", "copy", json!({})).await?;
    wait_seed_state(&c, &ops, "job-az", "seeding_vault", T).await?;
    // Past Azurite's save interval, the import is saved; then, right after the next copy
    // lands (the coordinator has checked it and pauses), the kill and the restart.
    tokio::time::sleep(Duration::from_millis(5500)).await;
    let blobs = emu.azurite.as_ref().unwrap().blobs()?;
    let count = || async { blobs.list("vault-src-job-az").await.map(|l| l.len()).unwrap_or(0) };
    let seen = count().await;
    let deadline = std::time::Instant::now() + T;
    while count().await <= seen {
        anyhow::ensure!(std::time::Instant::now() < deadline, "no further copy into the vault");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = count().await;
    emu.azurite.as_mut().unwrap().kill9_and_restart()?;
    let after = blobs.list("vault-src-job-az").await.map(|l| l.len()).unwrap_or(0);
    eprintln!("vault blobs: {before} before the kill, {after} after the restart");
    c.allow_error("vault");
    wait_seed_state(&c, &ops, "job-az", "seeded", T).await?;
    vault_is_complete(&emu, &c, "job-az", "src-job-az").await?;
    let again = c.coordinator_logs().lines().filter(|l| l.contains("are gone; copying them again")).count();
    eprintln!("re-copies after the final check: {again}");
    let target = c.path("restored-job-az");
    let o = c.run("restore-az", &mut restore_cmd(&c, "job-az", &target, &[]))?;
    assert!(o.status.success(), "{}", text(&o));
    seedship_e2e::same_tree(&c.path("corpus-job-az"), &target.join("corpus-job-az"));
    c.finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incremental_after_seeding_sends_only_what_changed_and_restores() -> anyhow::Result<()> {
    let (mut c, emu) = cluster()?;
    let ops = c.issue("operator", "alice")?;
    let drives = shipped(&mut c, &ops, "job-inc", 1).await?;
    emu.dc("job-inc", "arrive", json!({ "disks": [drives[0].1] })).await?;
    emu.dc("job-inc", "copy", json!({})).await?;
    let import = wait_seed_state(&c, &ops, "job-inc", "seeded", T).await?.seed.unwrap().container;
    let blobs = emu.azurite.as_ref().unwrap().blobs()?;
    let identity = |b: &seedship_azure::blob::BlobInfo| b.name == "config" || b.name.starts_with("keys/");
    let vault_identity = |list: Vec<seedship_azure::blob::BlobInfo>| {
        list.into_iter().filter(identity).map(|b| (b.name, b.md5)).collect::<Vec<_>>()
    };
    let before = vault_identity(blobs.list("vault-src-job-inc").await?);
    assert_eq!(before.len(), 2, "{before:?}");

    // A second offline seed from this server (a new repository, with other keys) is refused
    // when it registers, before any disk is written, and says why; the vault keeps its keys.
    c.allow_error("already has a vault");
    let staging2 = c.path("staging-job-inc-2");
    let corpus = c.path("corpus-job-inc");
    let cfg = c.path("src-job-inc.toml");
    let o = c.run(
        "second-seed",
        &mut seedship_e2e::backup_cmd(c.dir.path(), &staging2, "job-inc-2", &[&corpus], Some(&cfg))?,
    )?;
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("already has a vault (vault-src-job-inc)") && text(&o).contains("online"),
        "{}",
        text(&o)
    );
    let e = client::operator(c.connect(&ops).await?)
        .get_seed(pb::GetSeedRequest { seed: "job-inc-2".into() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "no seed was registered: {e:?}");
    assert_eq!(
        vault_identity(blobs.list("vault-src-job-inc").await?),
        before,
        "the vault's config and keys are unchanged"
    );
    // A blob in the import container that the seed's manifest does not name (another
    // tenant's, say) survives the clean-up below.
    blobs.put_small(&import, "other/keep", b"not this seed's".to_vec()).await?;

    // Change about 10 % of the files, then back up online.
    let corpus = c.path("corpus-job-inc");
    mutate(&c, &corpus, "9")?;
    let cache = c.path("vault-cache-job-inc");
    let backup = |c: &mut Cluster, name: &str| {
        let mut cmd = online_backup(c, "job-inc", &["--cache".as_ref(), cache.as_os_str()]);
        c.run(name, &mut cmd)
    };
    let o = backup(&mut c, "incremental")?;
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    let num = |label: &str| -> u64 {
        let line = t.lines().find(|l| l.trim_start().starts_with(label)).unwrap_or_else(|| panic!("{label}: {t}"));
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    let files = num("files");
    let unchanged: u64 = t
        .lines()
        .find(|l| l.contains("unchanged, not read again"))
        .unwrap()
        .split('(')
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()?;
    assert!(unchanged > 0 && unchanged < files, "unchanged files are not read again: {t}");
    // A second run with nothing changed reads nothing and sends only the new snapshot and index.
    let o = backup(&mut c, "incremental-again")?;
    let t2 = text(&o);
    assert!(o.status.success(), "{t2}");
    assert!(t2.contains(&format!("({files} unchanged, not read again)")) && t2.contains("read         0 B"), "{t2}");
    assert!(t2.contains("new data     0 B"), "{t2}");
    // Each index holds the ones before it: the vault keeps only the latest, as the cache does.
    let blobs = emu.azurite.as_ref().unwrap().blobs()?;
    let mut in_vault: Vec<String> = blobs
        .list("vault-src-job-inc")
        .await?
        .into_iter()
        .filter_map(|b| b.name.strip_prefix("index/").map(str::to_string))
        .collect();
    let mut in_cache: Vec<String> = std::fs::read_dir(cache.join("index"))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    in_vault.sort();
    in_cache.sort();
    assert!(!in_cache.is_empty());
    assert_eq!(in_vault, in_cache, "superseded index files are deleted from the vault");

    // Three recovery points (seed and two incrementals); the latest restores the changed tree.
    let r = client::operator(c.connect(&ops).await?)
        .list_recovery_points(pb::ListRecoveryPointsRequest { server: "src-job-inc".into() })
        .await?
        .into_inner();
    let kinds: Vec<&str> = r.points.iter().map(|p| p.kind.as_str()).collect();
    assert_eq!(kinds, vec!["seed", "incremental", "incremental"], "{:?}", r.points);
    let target = c.path("restored-inc");
    let o = c.run("restore-inc", &mut restore_cmd(&c, "job-inc", &target, &[]))?;
    assert!(o.status.success(), "{}", text(&o));
    seedship_e2e::same_tree(&corpus, &target.join("corpus-job-inc"));

    // Another server gets no way into this vault: no vault of its own, and it cannot record a
    // recovery point in someone else's.
    let other = c.issue("source", "src-other")?;
    let mut seeds = client::seeds(c.connect(&other).await?);
    let e = seeds.get_vault(pb::GetVaultRequest { write: true }).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
    let snap = r.points.last().unwrap().snapshot_id.clone();
    let e = seeds
        .report_recovery_point(pb::ReportRecoveryPointRequest {
            request_id: seedship_e2e::rid(),
            snapshot_id: snap.clone(),
            index_files: vec!["0".repeat(64)],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
    // The owner itself cannot record a point naming a pack the vault does not hold whole.
    let owner = Identity {
        name: "src-job-inc".into(),
        cert: c.pki.join("src-job-inc.crt"),
        key: c.pki.join("src-job-inc.key"),
    };
    let e = client::seeds(c.connect(&owner).await?)
        .report_recovery_point(pb::ReportRecoveryPointRequest {
            request_id: seedship_e2e::rid(),
            snapshot_id: snap,
            index_files: Vec::new(),
            packs: vec![pb::PackRef { name: format!("data/ab/ab{}", "0".repeat(62)), size: 10, md5: "0".repeat(32) }],
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
    assert!(e.message().contains("is not in vault"), "{}", e.message());
    let still = blobs.list("vault-src-job-inc").await?.into_iter().filter(|b| b.name.starts_with("index/")).count();
    assert_eq!(still, in_vault.len(), "another server cannot prune this vault's index");

    // Clean-up once seeded: the import container, then the staging location; both recorded.
    let o = c.run("cleanup-import", &mut c.seedctl(&ops, &["cleanup-import", "job-inc"]))?;
    assert!(o.status.success() && text(&o).contains("cleaned up"), "{}", text(&o));
    let left: Vec<String> = blobs.list(&import).await?.into_iter().map(|b| b.name).collect();
    assert_eq!(left, vec!["other/keep".to_string()], "only what the seed's manifest names is deleted");
    let e = wait_event(&c, &ops, "job-inc", &format!("import container seedacct/{import} cleaned up"), T).await?;
    assert!(e.actor.contains("/operator/alice"), "{}", e.actor);
    let o = c.run(
        "cleanup-staging",
        std::process::Command::new(bin("source-agent"))
            .arg("--config")
            .arg(c.path("src-job-inc.toml"))
            .args(["cleanup", "--staging"])
            .arg(c.path("staging-job-inc")),
    )?;
    assert!(o.status.success() && text(&o).contains("deleted the staging location"), "{}", text(&o));
    assert!(!c.path("staging-job-inc").exists());
    wait_event(&c, &ops, "job-inc", "staging location deleted by its source agent", T).await?;
    c.finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incrementals_while_the_seed_travels_go_to_the_outbox_and_into_the_vault_after_seeding() -> anyhow::Result<()> {
    let (mut c, emu) = cluster()?;
    let ops = c.issue("operator", "alice")?;
    let drives = shipped(&mut c, &ops, "job-tr", 1).await?;
    let corpus = c.path("corpus-job-tr");
    let staging = c.path("staging-job-tr");
    let backup = |c: &mut Cluster, name: &str| {
        let mut cmd = online_backup(c, "job-tr", &["--staging".as_ref(), staging.as_os_str()]);
        c.run(name, &mut cmd)
    };
    // The disks are on their way: the backup does not wait, it goes to the outbox.
    mutate(&c, &corpus, "5")?;
    seedship_e2e::run_ok(std::process::Command::new("cp").arg("-a").arg(&corpus).arg(c.path("expected-1")))?;
    let o = backup(&mut c, "in-transit")?;
    let t = text(&o);
    assert!(o.status.success() && t.contains("written to the outbox"), "{t}");
    let pending = t.split_whitespace().nth(1).unwrap().to_string();

    emu.dc("job-tr", "arrive", json!({ "disks": [drives[0].1] })).await?;
    emu.dc("job-tr", "copy", json!({})).await?;
    wait_seed_state(&c, &ops, "job-tr", "seeded", T).await?;

    // The next backup sends the outbox first, then its own incremental.
    mutate(&c, &corpus, "6")?;
    let o = backup(&mut c, "after-seeding")?;
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains(&format!("sent from the outbox: incremental {pending}")) && t.contains("into the vault"), "{t}");
    let r = client::operator(c.connect(&ops).await?)
        .list_recovery_points(pb::ListRecoveryPointsRequest { server: "src-job-tr".into() })
        .await?
        .into_inner();
    let kinds: Vec<&str> = r.points.iter().map(|p| p.kind.as_str()).collect();
    assert_eq!(kinds, vec!["seed", "incremental", "incremental"], "{:?}", r.points);
    assert!(r.points[1].snapshot_id.starts_with(&pending));
    // The in-transit recovery point restores the tree as it was then.
    let target = c.path("restored-transit");
    let o = c.run("restore-transit", &mut restore_cmd(&c, "job-tr", &target, &["--snapshot", &pending]))?;
    assert!(o.status.success(), "{}", text(&o));
    seedship_e2e::same_tree(&c.path("expected-1"), &target.join("corpus-job-tr"));
    c.finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_of_a_group_share_one_vault_each_in_its_own_folder() -> anyhow::Result<()> {
    let base = seedship_e2e::azure::kept_dir("seedship-verify-")?;
    let emu = Emulator::start_with_storage(&base)?;
    let extra = emu.coordinator_toml("1s") + "[azure.vaults.groups]\nfinance = [\"src-job-ga\", \"src-job-gb2\"]\n";
    let mut c = Cluster::start_with(Options { extra_toml: extra, ..Default::default() })?;
    let ops = c.issue("operator", "alice")?;
    for job in ["job-ga", "job-gb2"] {
        let drives = shipped(&mut c, &ops, job, 1).await?;
        emu.dc(job, "arrive", json!({ "disks": [drives[0].1] })).await?;
        emu.dc(job, "copy", json!({})).await?;
        wait_seed_state(&c, &ops, job, "seeded", T).await?;
    }
    // One container; each server's repository complete in its own folder, and no other vault.
    for job in ["job-ga", "job-gb2"] {
        vault_folder_is_complete(&emu, &c, job, "vaultgroup-finance", &format!("src-{job}/")).await?;
    }
    let blobs = emu.azurite.as_ref().unwrap().blobs()?;
    assert!(blobs.list("vault-src-job-ga").await.map(|l| l.is_empty()).unwrap_or(true), "no vault of its own");
    let mut op = client::operator(c.connect(&ops).await?);
    let r = op.list_recovery_points(pb::ListRecoveryPointsRequest { server: "src-job-gb2".into() }).await?.into_inner();
    assert_eq!(r.points.len(), 1, "{:?}", r.points);
    assert_eq!(r.points[0].container, "vaultgroup-finance/src-job-gb2");

    // An incremental of one member goes into its folder; each member restores its own data.
    let corpus = c.path("corpus-job-ga");
    mutate(&c, &corpus, "4")?;
    let o = c.run("incremental-ga", &mut online_backup(&c, "job-ga", &[]))?;
    assert!(o.status.success(), "{}", text(&o));
    let names: Vec<String> = blobs.list("vaultgroup-finance").await?.into_iter().map(|b| b.name).collect();
    assert!(names.iter().all(|n| n.starts_with("src-job-ga/") || n.starts_with("src-job-gb2/")), "{names:?}");
    for job in ["job-ga", "job-gb2"] {
        let target = c.path(&format!("restored-{job}"));
        let o = c.run(&format!("restore-{job}"), &mut restore_cmd(&c, job, &target, &[]))?;
        assert!(o.status.success(), "{}", text(&o));
        seedship_e2e::same_tree(&c.path(&format!("corpus-{job}")), &target.join(format!("corpus-{job}")));
    }
    let r = op.list_recovery_points(pb::ListRecoveryPointsRequest { server: "src-job-ga".into() }).await?.into_inner();
    let kinds: Vec<&str> = r.points.iter().map(|p| p.kind.as_str()).collect();
    assert_eq!(kinds, vec!["seed", "incremental"]);
    c.finish()
}

/// A source that lies about its repository (another repository's staging set, registered
/// under its vault's repository id) gets past registration, but its seed never reaches the
/// vault: the vault's config and keys are never replaced, and the seed fails saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seed_of_another_repository_never_replaces_a_vaults_keys() -> anyhow::Result<()> {
    let (mut c, emu) = cluster()?;
    let ops = c.issue("operator", "alice")?;
    let drives = shipped(&mut c, &ops, "job-lie", 1).await?;
    emu.dc("job-lie", "arrive", json!({ "disks": [drives[0].1] })).await?;
    emu.dc("job-lie", "copy", json!({})).await?;
    let first = wait_seed_state(&c, &ops, "job-lie", "seeded", T).await?.seed.unwrap();
    let blobs = emu.azurite.as_ref().unwrap().blobs()?;
    let identity = |list: Vec<seedship_azure::blob::BlobInfo>| {
        list.into_iter()
            .filter(|b| b.name == "config" || b.name.starts_with("keys/"))
            .map(|b| (b.name, b.md5))
            .collect::<Vec<_>>()
    };
    let before = identity(blobs.list("vault-src-job-lie").await?);

    // A new repository staged, then registered by hand with the vault's repository id.
    let staging2 = c.path("staging-job-lie-2");
    let corpus = c.path("corpus-job-lie");
    let o = c.run("stage-2", &mut seedship_e2e::backup_cmd(c.dir.path(), &staging2, "job-lie-2", &[&corpus], None)?)?;
    anyhow::ensure!(o.status.success(), "{}", text(&o));
    let m = seedship_repo::manifest::SeedManifest::load(&staging2)?;
    let src = Identity {
        name: "src-job-lie".into(),
        cert: c.pki.join("src-job-lie.crt"),
        key: c.pki.join("src-job-lie.key"),
    };
    let mut r = seedship_e2e::seed_request("job-lie-2");
    r.staging_location = staging2.display().to_string();
    r.manifest_root = m.root.clone();
    r.total_bytes = m.total_bytes();
    r.file_count = m.files.len() as u64;
    r.repository_id = first.repository_id.clone();
    client::seeds(c.connect(&src).await?).register_seed(r).await?;
    client::operator(c.connect(&ops).await?)
        .allow_virtual_station(pb::AllowVirtualStationRequest {
            request_id: seedship_e2e::rid(),
            seed: "job-lie-2".into(),
            reason: "test machine is a VM".into(),
        })
        .await?;
    c.allow_error("the seed is not copied into the vault");
    let drives = prepare_and_ship(&mut c, &ops, "job-lie-2", &staging2, 1, "st-job-lie-2").await?;
    emu.dc("job-lie-2", "arrive", json!({ "disks": [drives[0].1] })).await?;
    emu.dc("job-lie-2", "copy", json!({})).await?;
    let failed = wait_seed_state(&c, &ops, "job-lie-2", "failed", T).await?.seed.unwrap();
    assert!(failed.state_reason.contains("already holds another repository"), "{}", failed.state_reason);
    assert_eq!(identity(blobs.list("vault-src-job-lie").await?), before, "the vault's config and keys are unchanged");
    c.finish()
}

async fn recovery_points(c: &Cluster, ops: &Identity, server: &str) -> anyhow::Result<Vec<pb::RecoveryPoint>> {
    Ok(client::operator(c.connect(ops).await?)
        .list_recovery_points(pb::ListRecoveryPointsRequest { server: server.into() })
        .await?
        .into_inner()
        .points)
}

/// An incremental interrupted at any point of its upload (its index and snapshot written
/// locally, its packs not yet in the vault; its packs in but not its snapshot; all in but not
/// reported) does not poison the next ones: every recovery point the coordinator then reports
/// restores exactly the tree it was taken of.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_incremental_leaves_every_reported_point_restorable() -> anyhow::Result<()> {
    let (mut c, emu) = cluster()?;
    let ops = c.issue("operator", "alice")?;
    let drives = shipped(&mut c, &ops, "job-cr", 1).await?;
    emu.dc("job-cr", "arrive", json!({ "disks": [drives[0].1] })).await?;
    emu.dc("job-cr", "copy", json!({})).await?;
    wait_seed_state(&c, &ops, "job-cr", "seeded", T).await?;
    let corpus = c.path("corpus-job-cr");
    let cache = c.path("vault-cache-job-cr");
    // The tree as each recovery point should restore it, by snapshot id.
    let mut expected: Vec<(String, std::path::PathBuf)> = Vec::new();
    let keep = |c: &Cluster, n: usize| -> anyhow::Result<std::path::PathBuf> {
        let to = c.path(&format!("expected-{n}"));
        seedship_e2e::run_ok(std::process::Command::new("cp").arg("-a").arg(&corpus).arg(&to))?;
        Ok(to)
    };
    let seed_point = recovery_points(&c, &ops, "src-job-cr").await?.last().unwrap().snapshot_id.clone();
    expected.push((seed_point, keep(&c, 0)?));
    for (n, crash) in ["before-upload", "after-packs", "before-report"].into_iter().enumerate() {
        mutate(&c, &corpus, &format!("{}", 30 + n))?;
        let mut cmd = online_backup(&c, "job-cr", &["--cache".as_ref(), cache.as_os_str()]);
        cmd.env("SEEDSHIP_FAILPOINTS", format!("incremental-{crash}=exit(137)"));
        let o = c.run(&format!("crash-{crash}"), &mut cmd)?;
        assert!(!o.status.success(), "the hook stops the agent at {crash}: {}", text(&o));
        // The next incremental, after the crash, is whole.
        mutate(&c, &corpus, &format!("{}", 40 + n))?;
        let o = c.run(
            &format!("after-{crash}"),
            &mut online_backup(&c, "job-cr", &["--cache".as_ref(), cache.as_os_str()]),
        )?;
        assert!(o.status.success(), "{}", text(&o));
        let latest = recovery_points(&c, &ops, "src-job-cr").await?.last().unwrap().snapshot_id.clone();
        expected.push((latest, keep(&c, n + 1)?));
    }
    // Every point the coordinator reports restores; those taken here restore their tree.
    let all = recovery_points(&c, &ops, "src-job-cr").await?;
    for p in &all {
        let target = c.path(&format!("restored-{}", &p.snapshot_id[..12]));
        let o = c.run(
            &format!("restore-{}", &p.snapshot_id[..12]),
            &mut restore_cmd(&c, "job-cr", &target, &["--snapshot", &p.snapshot_id]),
        )?;
        assert!(o.status.success(), "recovery point {} does not restore: {}", p.snapshot_id, text(&o));
        if let Some((_, tree)) = expected.iter().find(|(id, _)| *id == p.snapshot_id) {
            seedship_e2e::same_tree(tree, &target.join("corpus-job-cr"));
        }
    }
    assert_eq!(expected.len(), 4);
    assert!(expected.iter().all(|(id, _)| all.iter().any(|p| p.snapshot_id == *id)));
    c.finish()
}
