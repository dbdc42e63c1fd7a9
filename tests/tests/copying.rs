//! The copy agent end to end: real coordinator, real `source-agent` staging sets, real
//! `copy-agent` processes writing image files, and the disk format's own decoder reading them
//! back with the keys the coordinator escrowed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use seedship_disk::format::DiskReader;
use seedship_disk::key::RecoveryPassword;
use seedship_e2e::prep::{copy_agent, disk_size, escrowed_keys, image, stage, staging_bytes, station, text};
use seedship_e2e::{Cluster, bin};
use seedship_proto::{client, pb};

/// Decodes a disk set with the escrowed keys and checks it reproduces every staging file
/// (and the manifest) byte for byte. Returns the drives' decoded manifests.
fn decode_and_compare(images: &[PathBuf], keys: &HashMap<String, RecoveryPassword>, staging: &Path) -> Vec<DiskReader> {
    let mut files: HashMap<String, Vec<(u64, Vec<u8>)>> = HashMap::new();
    let mut readers = Vec::new();
    for img in images {
        let h = seedship_disk::format::probe(img).unwrap().expect("a seedship disk");
        let r = DiskReader::open(img, &keys[&h.drive_id]).unwrap();
        for (i, p) in r.manifest.parts.iter().enumerate() {
            files.entry(p.path.clone()).or_default().push((p.file_offset, r.read_part(i).unwrap()));
        }
        readers.push(r);
    }
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(staging.join("manifest.json")).unwrap()).unwrap();
    let mut expect: Vec<String> =
        m["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap().to_string()).collect();
    expect.push("manifest.json".into());
    assert_eq!(files.len(), expect.len(), "every staging file and the manifest are on the disks");
    for path in expect {
        let mut parts = files.remove(&path).unwrap_or_else(|| panic!("{path} is on no disk"));
        parts.sort_by_key(|p| p.0);
        let joined: Vec<u8> = parts.into_iter().flat_map(|p| p.1).collect();
        assert!(joined == std::fs::read(staging.join(&path)).unwrap(), "{path} differs after decoding");
    }
    readers
}

fn sorted_images(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stations_prepare_two_seeds_spanning_three_disks_each_and_the_disks_decode_byte_for_byte()
-> anyhow::Result<()> {
    let mut c = Cluster::start()?;
    let ops = c.issue("operator", "alice")?;
    let stage_a = stage(&mut c, &ops, "job-a", 24, 1, "st-a").await?;
    let stage_b = stage(&mut c, &ops, "job-b", 12, 2, "st-b").await?;
    let (cfg_a, disks_a) = station(&c, "st-a", "")?;
    let (cfg_b, disks_b) = station(&c, "st-b", "")?;
    for (dir, st) in [(&disks_a, &stage_a), (&disks_b, &stage_b)] {
        let size = disk_size(staging_bytes(st), 3);
        for i in 1..=3 {
            image(dir, &format!("disk{i}.img"), size);
        }
    }

    let outs = c.run_all(vec![("copy-st-a", &mut copy_agent(&cfg_a)), ("copy-st-b", &mut copy_agent(&cfg_b))])?;
    for o in &outs {
        assert!(o.status.success(), "{}", text(o));
    }
    let screen = String::from_utf8_lossy(&outs[0].stdout).to_string();
    assert!(screen.contains("Disks prepared for job job-a") && screen.contains("3 drive(s)"), "{screen}");
    assert!(screen.contains("| job job-a | disk 2 of 3 | drive SS-"), "{screen}");
    assert!(screen.contains("address pending") && screen.contains("westeurope"), "{screen}");
    // The live display showed both phases with throughput.
    let live = String::from_utf8_lossy(&outs[0].stderr).to_string();
    assert!(live.contains("disk 1/3") && live.contains(" copy ") && live.contains("/s"), "{live}");

    // The independent decoder, with the keys the coordinator escrowed, gives back the staging
    // sets byte for byte, and each disk is what was reported.
    let keys = escrowed_keys(&c);
    assert_eq!(keys.len(), 6);
    let mut op = client::operator(c.connect(&ops).await?);
    for (dir, st, job) in [(&disks_a, &stage_a, "job-a"), (&disks_b, &stage_b, "job-b")] {
        let readers = decode_and_compare(&sorted_images(dir), &keys, st);
        assert!(readers.iter().all(|r| r.manifest.job_name == job && r.header.set_size == 3));
        let d = op.get_seed(pb::GetSeedRequest { seed: job.into() }).await?.into_inner();
        assert_eq!(d.seed.as_ref().unwrap().state, pb::SeedState::DisksPrepared as i32);
        assert_eq!(d.drives.len(), 3);
        for r in &readers {
            let rep = d.drives.iter().find(|x| x.drive_id == r.header.drive_id).expect("reported");
            let sealed = r.sealed()?;
            assert_eq!(rep.status, "prepared");
            assert_eq!(rep.manifest_hash, sealed.manifest_md5.to_ascii_uppercase());
            assert_eq!(rep.drive_header_hash, sealed.header_sha256.to_ascii_uppercase());
            assert_eq!((rep.position, rep.bytes_written, rep.has_key), (r.header.position, sealed.bytes, true));
        }
        // No file was split more than the planner allows (n - 1 splits).
        let split = readers.iter().flat_map(|r| r.manifest.parts.iter()).filter(|p| p.parts > 1 && p.part == 1).count();
        assert!(split <= 2, "{split} files split");
    }

    let o = c.run("status-a", Command::new(bin("copy-agent")).arg("--config").arg(&cfg_a).arg("status"))?;
    let s = text(&o);
    assert!(s.contains("Current work: none") && s.contains("completed") && s.contains("job-a"), "{s}");
    assert!(s.contains("1/3 SS-") && s.contains("claimed"), "{s}");
    c.finish()
}

/// What an uninterrupted preparation writes, made here with the format's own writer from the
/// same staging set, disk capacities and (escrowed) keys: the reference for a resumed set.
fn clean_run(images: &[PathBuf], keys: &HashMap<String, RecoveryPassword>, staging: &Path, out: &Path) -> Vec<PathBuf> {
    use seedship_disk::format::{DiskInfo, DiskWriter, DriveManifest, write_plan};
    use seedship_disk::plan::{DiskSpec, FileSpec, plan};
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(staging.join("manifest.json")).unwrap()).unwrap();
    let mut files: Vec<FileSpec> = m["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| FileSpec { path: f["path"].as_str().unwrap().into(), size: f["size"].as_u64().unwrap() })
        .collect();
    files.push(FileSpec {
        path: "manifest.json".into(),
        size: std::fs::metadata(staging.join("manifest.json")).unwrap().len(),
    });
    let sizes: HashMap<String, u64> = files.iter().map(|f| (f.path.clone(), f.size)).collect();
    let mut headers: Vec<_> = images.iter().map(|i| seedship_disk::format::probe(i).unwrap().unwrap()).collect();
    headers.sort_by_key(|h| h.position);
    let specs: Vec<DiskSpec> =
        headers.iter().map(|h| DiskSpec { id: h.drive_id.clone(), capacity: h.capacity }).collect();
    let p = plan(&files, &specs).unwrap();
    let mut made = Vec::new();
    for (h, dp) in headers.iter().zip(&p.disks) {
        let path = out.join(format!("clean-{}.img", h.position));
        std::fs::File::create(&path).unwrap().set_len(h.capacity).unwrap();
        let info = DiskInfo {
            drive_id: h.drive_id.clone(),
            seed_id: h.seed_id.clone(),
            job_name: h.job_name.clone(),
            position: h.position,
            set_size: h.set_size,
        };
        let key = &keys[&h.drive_id];
        let mut w = DiskWriter::create(&path, h.capacity, &info, key).unwrap();
        let read = |f: &str, off: u64, len: usize| -> std::io::Result<Vec<u8>> {
            let b = std::fs::read(staging.join(f))?;
            Ok(b[off as usize..off as usize + len].to_vec())
        };
        let parts = write_plan(&mut w, dp, &sizes, read, |_, _| true).unwrap();
        let manifest = DriveManifest {
            format: "seedship-drive-manifest".into(),
            version: 1,
            drive_id: h.drive_id.clone(),
            seed_id: h.seed_id.clone(),
            job_name: h.job_name.clone(),
            position: h.position,
            set_size: h.set_size,
            // The coordinator's choice for the seed (the default `import-{seed}`).
            container: coordinator::domain::placement::Placement::default().chosen(&h.seed_id),
            parts,
        };
        w.seal(&manifest).unwrap();
        made.push(path);
    }
    made
}

/// A small deterministic generator for the kill points (seeded, so a failure can be re-run).
struct Lcg(u64);
impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_points_resumes_to_disks_identical_to_a_clean_run() -> anyhow::Result<()> {
    use std::time::{Duration, Instant};
    let seed = std::env::var("SEEDSHIP_KILL_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(20261122u64);
    eprintln!("kill points from seed {seed} (set SEEDSHIP_KILL_SEED to replay)");
    let mut rng = Lcg(seed);
    let mut c =
        Cluster::start_with(seedship_e2e::Options { lease_ttl: "1s", sweep_interval: "100ms", ..Default::default() })?;
    let ops = c.issue("operator", "alice")?;
    let (cfg, disks) = station(&c, "st-k", "")?;
    let mut kills = 0;
    let mut round = 0;
    for (job, mib) in [("job-k1", 24u32), ("job-k2", 24)] {
        let staging = stage(&mut c, &ops, job, mib, 7, "st-k").await?;
        let dir = disks.join(job);
        std::fs::create_dir_all(&dir)?;
        let size = disk_size(staging_bytes(&staging), 3);
        let images: Vec<PathBuf> = (1..=3).map(|i| image(&disks, &format!("{job}-{i}.img"), size)).collect();
        let mut job_kills = 0;
        loop {
            round += 1;
            let name = format!("copy-{round}");
            let pid = c.spawn(&name, &mut copy_agent(&cfg))?;
            // Kill at a random point after the claim (sometimes before it).
            let wait_claim = rng.below(4) != 0;
            let t0 = Instant::now();
            while wait_claim && !c.log_of(&name).contains("work claimed") && t0.elapsed() < Duration::from_secs(20) {
                if c.try_wait(pid)?.is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            // Short windows until eleven kills landed (mostly in the copy); then longer ones let the (not resumable)
            // read-back finish, still killing it now and then.
            let window = match (job_kills < 11, wait_claim) {
                (true, true) => 40,
                (true, false) => 30,
                (false, _) => 2500,
            };
            std::thread::sleep(Duration::from_millis(rng.below(window)));
            if let Some(st) = c.try_wait(pid)? {
                // A 1 s lease can run out on a loaded machine: the agent stops (exit 4) and the
                // next round resumes, like after a kill.
                if st.code() == Some(4) {
                    continue;
                }
                assert!(st.success(), "copy-agent failed:\n{}", c.log_of(&name));
                break;
            }
            c.kill9(pid)?;
            eprintln!("round {round} ({job}): killed after {:?}", t0.elapsed());
            kills += 1;
            job_kills += 1;
            // Killed after completing, before exiting: done.
            let d = client::operator(c.connect(&ops).await?)
                .get_seed(pb::GetSeedRequest { seed: job.into() })
                .await?
                .into_inner();
            if d.seed.unwrap().state == pb::SeedState::DisksPrepared as i32 {
                break;
            }
            if round > 80 {
                anyhow::bail!("no completion after {round} rounds");
            }
        }
        // Whatever the kills interrupted, the set equals a clean run's, byte for byte.
        let keys = escrowed_keys(&c);
        decode_and_compare(&images, &keys, &staging);
        let clean = clean_run(&images, &keys, &staging, c.dir.path());
        for img in &images {
            let h = seedship_disk::format::probe(img)?.unwrap();
            let reference = &clean[h.position as usize - 1];
            assert!(std::fs::read(img)? == std::fs::read(reference)?, "{} differs from a clean run", img.display());
        }
        // Only blank disks are used by the next seed: move these away.
        for img in &images {
            std::fs::rename(img, dir.join(img.file_name().unwrap()))?;
        }
        let d = client::operator(c.connect(&ops).await?)
            .get_seed(pb::GetSeedRequest { seed: job.into() })
            .await?
            .into_inner();
        assert_eq!(d.seed.unwrap().state, pb::SeedState::DisksPrepared as i32);
    }
    eprintln!("{kills} kills in {round} rounds");
    assert!(kills >= 20, "only {kills} kills landed before completion");
    c.finish()
}

fn signal(pid: u32, sig: &str) {
    assert!(Command::new("kill").args([sig, &pid.to_string()]).status().unwrap().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_station_paused_past_its_lease_is_refused_when_it_wakes_and_another_takes_over() -> anyhow::Result<()> {
    use std::time::Duration;
    let mut c =
        Cluster::start_with(seedship_e2e::Options { lease_ttl: "3s", sweep_interval: "100ms", ..Default::default() })?;
    let ops = c.issue("operator", "alice")?;
    let staging = stage(&mut c, &ops, "job-p", 24, 3, "").await?;
    let (cfg_a, disks_a) = station(&c, "st-a", "")?;
    let (cfg_b, disks_b) = station(&c, "st-b", "")?;
    let size = disk_size(staging_bytes(&staging), 3);
    for dir in [&disks_a, &disks_b] {
        for i in 1..=3 {
            image(dir, &format!("disk{i}.img"), size);
        }
    }
    // Station A starts writing, then is paused (SIGSTOP) for longer than the TTL.
    let a = c.spawn("copy-a", &mut copy_agent(&cfg_a))?;
    seedship_e2e::wait_for("station A to write", Duration::from_secs(20), || {
        sorted_images(&disks_a).iter().any(|i| matches!(seedship_disk::format::probe(i), Ok(Some(_)))).then_some(())
    })?;
    signal(a, "-STOP");
    std::thread::sleep(Duration::from_millis(3600));

    // Station B claims the seed and prepares it on its own disks.
    let o = c.run("copy-b", &mut copy_agent(&cfg_b))?;
    assert!(o.status.success(), "{}", text(&o));
    let keys = escrowed_keys(&c);
    decode_and_compare(&sorted_images(&disks_b), &keys, &staging);

    // A wakes: refused, it stops without finishing anything.
    signal(a, "-CONT");
    let st = c.wait_exit(a, Duration::from_secs(20))?;
    let log = c.log_of("copy-a");
    assert_eq!(st.code(), Some(4), "{log}");
    assert!(log.contains("lease lost"), "{log}");
    assert!(!log.contains("Disks prepared"), "{log}");

    // The seed has B's three drives prepared; A's are left behind, on the record.
    let d = client::operator(c.connect(&ops).await?)
        .get_seed(pb::GetSeedRequest { seed: "job-p".into() })
        .await?
        .into_inner();
    assert_eq!(d.seed.unwrap().state, pb::SeedState::DisksPrepared as i32);
    let prepared: Vec<_> = d.drives.iter().filter(|x| x.status == "prepared").collect();
    assert_eq!(prepared.len(), 3);
    assert!(prepared.iter().all(|x| x.reported_by.ends_with("/copy/st-b")));
    assert!(d.drives.iter().filter(|x| x.reported_by.ends_with("/copy/st-a")).all(|x| x.status == "bad"));
    // (A may have been paused after writing a header but before its key reached the
    // coordinator: then it reported nothing and nothing is left behind.)
    if d.drives.iter().any(|x| x.reported_by.ends_with("/copy/st-a")) {
        assert!(d.history.iter().any(|e| e.event == "drives_left_behind"), "{:?}", d.history);
    }
    c.finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_staging_is_refused_or_released_and_a_flipped_bit_on_disk_is_caught_and_the_disk_replaced()
-> anyhow::Result<()> {
    use std::time::Duration;
    let mut c = Cluster::start()?;
    c.allow_error("staging set refused");
    c.allow_error("drive marked bad");
    let ops = c.issue("operator", "alice")?;
    let bad = stage(&mut c, &ops, "job-bad", 8, 4, "st-x").await?;
    let (cfg, disks) = station(&c, "st-x", "")?;
    let mut op = client::operator(c.connect(&ops).await?);

    // Staging unreachable: the lease is given back with the reason; the seed is not failed.
    let away = c.path("staging-away");
    std::fs::rename(&bad, &away)?;
    let o = c.run("copy-unreachable", &mut copy_agent(&cfg))?;
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("gave the work back") && text(&o).contains("is it mounted"), "{}", text(&o));
    let d = op.get_seed(pb::GetSeedRequest { seed: "job-bad".into() }).await?.into_inner();
    assert_eq!(d.seed.unwrap().state, pb::SeedState::QueuedForDiskPrep as i32);
    assert!(d.history.iter().any(|e| e.reason.contains("cannot be read")), "{:?}", d.history);
    // (Registered after that release: a released seed goes behind the seeds already queued.)
    let good = stage(&mut c, &ops, "job-good", 48, 5, "st-x").await?;

    // A flipped bit in a staging file: refused before shipping, naming the file; the seed fails.
    std::fs::rename(&away, &bad)?;
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(bad.join("manifest.json"))?)?;
    let pack = m["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .find(|p| p.starts_with("data/"))
        .unwrap()
        .to_string();
    let mut b = std::fs::read(bad.join(&pack))?;
    b[1000] ^= 0x10;
    std::fs::write(bad.join(&pack), b)?;
    image(&disks, "d1.img", 64 << 20);
    let o = c.run("copy-flipped-staging", &mut copy_agent(&cfg))?;
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains(&pack) && text(&o).contains("changed since registration"), "{}", text(&o));
    let d = op.get_seed(pb::GetSeedRequest { seed: "job-bad".into() }).await?.into_inner();
    let s = d.seed.unwrap();
    assert_eq!(s.state, pb::SeedState::Failed as i32);
    assert!(s.state_reason.contains(&pack), "{}", s.state_reason);
    std::fs::remove_file(disks.join("d1.img"))?;

    // A flipped bit on a written disk: pause the agent while its first disk has extents on it
    // and some disk is still being written (so the read-back has not begun), flip a bit in
    // the first extent, let it go on; the read-back catches it, the drive is marked bad and a
    // replacement is used.
    let size = disk_size(staging_bytes(&good), 2);
    let imgs = [image(&disks, "g1.img", size), image(&disks, "g2.img", size)];
    let pid = c.spawn("copy-good", &mut copy_agent(&cfg))?;
    flip_a_bit_before_the_read_back(pid, &imgs)?;
    let bad_drive = seedship_disk::format::probe(&imgs[0])?.unwrap().drive_id;
    let d = seedship_e2e::wait_for_async("the drive marked bad", Duration::from_secs(30), || {
        let mut op = op.clone();
        let id = bad_drive.clone();
        async move {
            let d = op.get_seed(pb::GetSeedRequest { seed: "job-good".into() }).await.ok()?.into_inner();
            d.drives.iter().any(|x| x.drive_id == id && x.status == "bad").then_some(d)
        }
    })
    .await?;
    let rep = d.drives.iter().find(|x| x.drive_id == bad_drive).unwrap();
    assert!(
        rep.status_reason.contains("read-back failed") && rep.status_reason.contains("authentication failed"),
        "{}",
        rep.status_reason
    );
    // It waits for a replacement, on the record; a blank disk added to the directory is used.
    seedship_e2e::wait_for_async("the wait on the record", Duration::from_secs(10), || {
        let mut op = op.clone();
        async move {
            let d = op.get_seed(pb::GetSeedRequest { seed: "job-good".into() }).await.ok()?.into_inner();
            d.history.iter().any(|e| e.event == "station_waiting" && e.reason.contains("replacement")).then_some(())
        }
    })
    .await?;
    let replacement = image(&disks, "g3.img", size);
    let st = c.wait_exit(pid, Duration::from_secs(30))?;
    assert!(st.success(), "{}", c.log_of("copy-good"));
    let keys = escrowed_keys(&c);
    decode_and_compare(&[imgs[1].clone(), replacement], &keys, &good);
    let d = op.get_seed(pb::GetSeedRequest { seed: "job-good".into() }).await?.into_inner();
    assert_eq!(d.seed.unwrap().state, pb::SeedState::DisksPrepared as i32);
    assert_eq!(d.drives.iter().filter(|x| x.status == "prepared").count(), 2);
    c.finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_few_disks_wait_on_the_record_a_used_disk_needs_a_wipe_and_disks_added_mid_run_are_used()
-> anyhow::Result<()> {
    use std::time::Duration;
    let mut c = Cluster::start()?;
    let ops = c.issue("operator", "alice")?;
    let staging = stage(&mut c, &ops, "job-w", 16, 6, "st-w").await?;
    let (cfg, disks) = station(&c, "st-w", "")?;
    let size = disk_size(staging_bytes(&staging), 3);
    image(&disks, "a.img", size);
    // A disk that holds another seed's drive.
    let used = image(&disks, "b.img", size);
    let info = seedship_disk::format::DiskInfo {
        drive_id: "OLD-1".into(),
        seed_id: "sd-old".into(),
        job_name: "job-old".into(),
        position: 1,
        set_size: 1,
    };
    seedship_disk::format::DiskWriter::create(&used, size, &info, &RecoveryPassword::from_bytes(&[3; 16]))?;
    let pid = c.spawn("copy-w", &mut copy_agent(&cfg))?;
    let mut op = client::operator(c.connect(&ops).await?);
    let d = seedship_e2e::wait_for_async("the wait on the record", Duration::from_secs(20), || {
        let mut op = op.clone();
        async move {
            let d = op.get_seed(pb::GetSeedRequest { seed: "job-w".into() }).await.ok()?.into_inner();
            d.history.iter().any(|e| e.event == "station_waiting").then_some(d)
        }
    })
    .await?;
    let ev = d.history.iter().find(|e| e.event == "station_waiting").unwrap();
    assert!(ev.reason.contains("add 2 more disk(s)"), "{}", ev.reason);
    assert!(ev.reason.contains("holds drive OLD-1 of seed sd-old") && ev.reason.contains("wipe"), "{}", ev.reason);
    assert_eq!(d.work.unwrap().phase, "waiting");
    // The seed list says what to do.
    let s = d.seed.as_ref().unwrap();
    assert!(s.state_reason.contains("is waiting: ") && s.state_reason.contains("more disk(s)"), "{}", s.state_reason);
    seedship_e2e::wait_for_async("the station's heartbeat to say it waits", Duration::from_secs(10), || {
        let mut op = op.clone();
        async move {
            let a = op.list_agents(pb::ListAgentsRequest::default()).await.ok()?.into_inner().agents;
            a.into_iter().find(|a| a.name == "st-w" && a.status.starts_with("waiting: ")).map(|_| ())
        }
    })
    .await?;

    // The operator wipes the used disk and adds one more, while the agent waits.
    let o = c.run("wipe", Command::new(bin("copy-agent")).args(["wipe", "--yes", "--disk"]).arg(&used))?;
    assert!(o.status.success(), "{}", text(&o));
    image(&disks, "c.img", size);
    let st = c.wait_exit(pid, Duration::from_secs(30))?;
    assert!(st.success(), "{}", c.log_of("copy-w"));
    let keys = escrowed_keys(&c);
    decode_and_compare(&sorted_images(&disks), &keys, &staging);
    let d = op.get_seed(pb::GetSeedRequest { seed: "job-w".into() }).await?.into_inner();
    assert!(d.history.iter().any(|e| e.event == "station_resumed"), "{:?}", d.history);
    c.finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_marked_bad_and_a_replacement_typed_at_the_prompt_takes_its_place() -> anyhow::Result<()> {
    use std::io::Write;
    use std::time::Duration;
    let mut c = Cluster::start()?;
    c.allow_error("drive marked bad");
    let ops = c.issue("operator", "alice")?;
    let staging = stage(&mut c, &ops, "job-e", 16, 8, "st-e").await?;
    let (cfg, _) = station(&c, "st-e", "")?;
    // The disk: an image whose declared size fits the seed, on a file system that does not.
    let small = c.path("small");
    std::fs::create_dir(&small)?;
    let mounted =
        Command::new("mount").args(["-t", "tmpfs", "-o", "size=6m", "tmpfs"]).arg(&small).status().map(|s| s.success());
    if !matches!(mounted, Ok(true)) {
        eprintln!("skipped: this machine does not let the test mount a small tmpfs (needs root)");
        return c.finish();
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let guard = Unmount(small.clone());
    let size = disk_size(staging_bytes(&staging), 1);
    let d1 = image(&small, "d1.img", size);

    // Disks named on the command line; the prompt takes more.
    let (pid, mut stdin) = c.spawn_piped("copy-e", copy_agent(&cfg).arg("--interactive").arg("--disk").arg(&d1))?;
    let mut op = client::operator(c.connect(&ops).await?);
    let bad_id = seedship_disk::format::probe(&d1)?.map(|h| h.drive_id);
    let d = seedship_e2e::wait_for_async("the full disk marked bad", Duration::from_secs(30), || {
        let mut op = op.clone();
        async move {
            let d = op.get_seed(pb::GetSeedRequest { seed: "job-e".into() }).await.ok()?.into_inner();
            d.drives.iter().any(|x| x.status == "bad").then_some(d)
        }
    })
    .await?;
    let bad = d.drives.iter().find(|x| x.status == "bad").unwrap();
    assert!(bad.status_reason.contains("No space left on device"), "{}", bad.status_reason);
    if let Some(id) = bad_id {
        assert_eq!(bad.drive_id, id);
    }
    seedship_e2e::wait_for("the prompt for a replacement", Duration::from_secs(10), || {
        c.log_of("copy-e").contains("type each one's path").then_some(())
    })?;
    let replacement = image(c.dir.path(), "replacement.img", size);
    writeln!(stdin, "{}", replacement.display())?;
    let st = c.wait_exit(pid, Duration::from_secs(30))?;
    assert!(st.success(), "{}", c.log_of("copy-e"));
    let keys = escrowed_keys(&c);
    decode_and_compare(std::slice::from_ref(&replacement), &keys, &staging);
    let d = op.get_seed(pb::GetSeedRequest { seed: "job-e".into() }).await?.into_inner();
    assert_eq!(d.seed.unwrap().state, pb::SeedState::DisksPrepared as i32);
    assert_eq!(d.drives.iter().filter(|x| x.status == "prepared").count(), 1);
    // Unmount before the cluster's directory is removed, or the removal fails on the mount.
    drop(guard);
    c.finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_gives_the_work_back_and_the_next_run_resumes_from_the_journals() -> anyhow::Result<()> {
    use std::time::Duration;
    let mut c = Cluster::start()?;
    let ops = c.issue("operator", "alice")?;
    let staging = stage(&mut c, &ops, "job-t", 24, 9, "st-t").await?;
    let (cfg, disks) = station(&c, "st-t", "")?;
    let size = disk_size(staging_bytes(&staging), 3);
    for i in 1..=3 {
        image(&disks, &format!("t{i}.img"), size);
    }
    let pid = c.spawn("copy-t1", &mut copy_agent(&cfg))?;
    seedship_e2e::wait_for("writing to start", Duration::from_secs(20), || {
        sorted_images(&disks).iter().any(|i| matches!(seedship_disk::format::probe(i), Ok(Some(_)))).then_some(())
    })?;
    signal(pid, "-TERM");
    let st = c.wait_exit(pid, Duration::from_secs(20))?;
    let log = c.log_of("copy-t1");
    if log.contains("Disks prepared") {
        // The signal came after the work was done: nothing to give back.
        eprintln!("the signal landed after the disks were prepared");
        assert!(st.success(), "{log}");
    } else {
        assert_eq!(st.code(), Some(3), "{log}");
        assert!(log.contains("the work was given back"), "{log}");
        let d = client::operator(c.connect(&ops).await?)
            .get_seed(pb::GetSeedRequest { seed: "job-t".into() })
            .await?
            .into_inner();
        assert_eq!(d.seed.unwrap().state, pb::SeedState::QueuedForDiskPrep as i32);
        assert!(d.history.iter().any(|e| e.reason.contains("stopped by its operator")), "{:?}", d.history);
        // No TTL to wait for: the next run claims at once and continues from the journals.
        let o = c.run("copy-t2", &mut copy_agent(&cfg))?;
        assert!(o.status.success(), "{}", text(&o));
        assert!(text(&o).contains("resuming the disk after its last checkpoint"), "{}", text(&o));
    }
    decode_and_compare(&sorted_images(&disks), &escrowed_keys(&c), &staging);
    c.finish()
}

/// Whether every thread of `pid` is stopped (after SIGSTOP, a syscall in flight finishes first).
fn all_stopped(pid: u32) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/task")).is_ok_and(|d| {
        d.filter_map(|t| t.ok()).all(|t| {
            std::fs::read_to_string(t.path().join("stat"))
                .ok()
                .and_then(|s| s.rsplit(')').next().map(|r| r.trim_start().starts_with('T')))
                .unwrap_or(false)
        })
    })
}

/// Pauses the agent `pid` at a moment when `imgs[0]` holds its first two extents and some disk
/// is not sealed yet (so no read-back has started), flips one bit in the first extent's
/// ciphertext, and lets the agent go on.
fn flip_a_bit_before_the_read_back(pid: u32, imgs: &[PathBuf]) -> anyhow::Result<()> {
    use std::os::unix::fs::FileExt;
    use std::time::{Duration, Instant};
    let data = seedship_disk::format::DATA_OFF;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        anyhow::ensure!(Instant::now() < deadline, "the disks were never caught mid-copy");
        signal(pid, "-STOP");
        while !all_stopped(pid) {
            std::thread::sleep(Duration::from_micros(200));
        }
        let f = std::fs::OpenOptions::new().read(true).write(true).open(&imgs[0])?;
        let states: Vec<String> = imgs
            .iter()
            .map(|i| seedship_disk::format::probe(i).ok().flatten().map(|h| h.state).unwrap_or_default())
            .collect();
        // Walk the extents on the first disk: a large one followed by another is complete.
        let mut at = data;
        let mut target = None;
        loop {
            let mut head = [0u8; 64];
            if f.read_exact_at(&mut head, at).is_err() || &head[..4] != b"SSEX" {
                break;
            }
            let len = u32::from_le_bytes(head[32..36].try_into()?) as u64;
            let next = at + (64 + 12 + len + 16).div_ceil(4096) * 4096;
            let mut magic = [0u8; 4];
            if len > 8192 && f.read_exact_at(&mut magic, next).is_ok() && &magic == b"SSEX" {
                target = Some(at + 64 + 12 + 4096);
                break;
            }
            at = next;
        }
        if let Some(at) = target.filter(|_| states.iter().any(|s| s != "sealed")) {
            let mut x = [0u8; 1];
            f.read_exact_at(&mut x, at)?;
            f.write_all_at(&[x[0] ^ 1], at)?;
            f.sync_all()?;
            signal(pid, "-CONT");
            return Ok(());
        }
        signal(pid, "-CONT");
        anyhow::ensure!(
            !states.iter().all(|s| s == "sealed"),
            "every disk was sealed before the agent could be caught mid-copy"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}
