//! The copy agent end to end: real coordinator, real `source-agent` staging sets, real
//! `copy-agent` processes formatting image files as NTFS (mkntfs) and writing them through
//! ntfs-3g, and ntfs-3g's own `ntfscat` reading them back raw.

use std::path::{Path, PathBuf};
use std::process::Command;

use seedship_e2e::ntfs::{DiskView, check_set, flip_bit_in};
use seedship_e2e::prep::{copy_agent, disk_size, escrowed_keys, image, stage, station, text};
use seedship_e2e::{Cluster, bin};
use seedship_proto::{client, pb};

/// The container the coordinator chose for `job` (its default, `import-<seed>`).
async fn container_of(c: &Cluster, ops: &seedship_e2e::Identity, job: &str) -> anyhow::Result<String> {
    let d = seedship_e2e::get_seed(c, ops, job).await?;
    Ok(coordinator::domain::placement::Placement::default().chosen(&d.seed.unwrap().seed_id))
}

fn sorted_images(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "img"))
        .collect();
    v.sort();
    v
}

/// The first pack (`data/...`) the seed manifest of the staging set at `staging` lists.
fn first_pack(staging: &Path) -> anyhow::Result<String> {
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(staging.join("manifest.json"))?)?;
    let files = m["files"].as_array().ok_or_else(|| anyhow::anyhow!("no files in the seed manifest"))?;
    let pack = files.iter().filter_map(|f| f["path"].as_str()).find(|p| p.starts_with("data/"));
    pack.map(str::to_string).ok_or_else(|| anyhow::anyhow!("no pack in the seed manifest"))
}

/// Whether any of the images holds an NTFS volume yet (the station started formatting).
fn any_formatted(dir: &Path) -> bool {
    sorted_images(dir).iter().any(|i| seedship_disk::ntfs::Volume::open(i).is_ok())
}

/// What the station reported as the content hash of a disk: SHA-256 over each file's path,
/// length and MD5 (one line each, in order), then the drive manifest's MD5.
fn content_hash(d: &DiskView) -> String {
    use md5::Digest as _;
    let mut lines: Vec<String> = d
        .files
        .iter()
        .filter(|(p, _)| *p != "\\seedship\\disk.json" && p.as_str() != seedship_disk::azure::manifest::MANIFEST_PATH)
        .map(|(p, b)| format!("{p}\t{}\t{}\n", b.len(), hex::encode(md5::Md5::digest(b))))
        .collect();
    lines.sort();
    let mut h = sha2::Sha256::new();
    for l in &lines {
        h.update(l.as_bytes());
    }
    if let Some(m) = &d.manifest_md5 {
        h.update(m.as_bytes());
    }
    hex::encode_upper(h.finalize())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stations_prepare_two_seeds_spanning_three_ntfs_disks_each_that_read_back_byte_for_byte()
-> anyhow::Result<()> {
    let mut c = Cluster::start()?;
    let ops = c.issue("operator", "alice")?;
    let stage_a = stage(&mut c, &ops, "job-a", 24, 1, "st-a").await?;
    let stage_b = stage(&mut c, &ops, "job-b", 12, 2, "st-b").await?;
    let (cfg_a, disks_a) = station(&c, "st-a", "")?;
    let (cfg_b, disks_b) = station(&c, "st-b", "")?;
    for (dir, st) in [(&disks_a, &stage_a), (&disks_b, &stage_b)] {
        let size = disk_size(st, 3);
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

    // Read raw by ntfs-3g's own reader, the disks hold the staging sets byte for byte where
    // Azure's layout puts them, each drive manifest lists its disk exactly, and each disk is
    // what was reported.
    for (dir, st, job) in [(&disks_a, &stage_a, "job-a"), (&disks_b, &stage_b, "job-b")] {
        let container = container_of(&c, &ops, job).await?;
        let views = check_set(&sorted_images(dir), st, &container, &escrowed_keys(&c))?;
        let d = seedship_e2e::get_seed(&c, &ops, job).await?;
        assert_eq!(d.seed.as_ref().unwrap().state, pb::SeedState::DisksPrepared as i32);
        assert_eq!(d.drives.len(), 3);
        for v in &views {
            assert_eq!((v.id["job_name"].as_str(), v.id["layout"].as_str()), (Some(job), Some("customer_disk")));
            let rep = d.drives.iter().find(|x| v.id["drive_id"] == x.drive_id.as_str()).expect("reported");
            assert_eq!(rep.status, "prepared");
            assert_eq!(rep.manifest_file, "\\DriveManifest.xml");
            assert_eq!(Some(&rep.manifest_hash), v.manifest_md5.as_ref());
            assert_eq!(rep.drive_header_hash, content_hash(v));
            let bytes: u64 = v.manifest.as_ref().unwrap().blobs.iter().map(|b| b.length).sum();
            assert_eq!(
                (rep.position as u64, rep.bytes_written, rep.has_key),
                (v.id["position"].as_u64().unwrap(), bytes, true)
            );
        }
    }

    let o = c.run("status-a", Command::new(bin("copy-agent")).arg("--config").arg(&cfg_a).arg("status"))?;
    let s = text(&o);
    assert!(s.contains("Current work: none") && s.contains("completed") && s.contains("job-a"), "{s}");
    assert!(s.contains("1/3 SS-") && s.contains("claimed"), "{s}");
    let (o, err) =
        seedship_e2e::run_into_closed_pipe(Command::new(bin("copy-agent")).arg("--config").arg(&cfg_a).arg("status"))?;
    assert!(o.success() && !err.contains("panicked"), "copy-agent status into a closed pipe: {o:?} {err}");
    c.finish()
}

/// A small deterministic generator for the kill points (seeded, so a failure can be re-run).
struct Lcg(u64);
impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// Whether a disk's BitLocker conversion is under way at the station (its intent log exists).
fn converting(state: &Path) -> bool {
    std::fs::read_dir(state)
        .map(|rd| rd.filter_map(|e| e.ok()).any(|e| e.file_name().to_string_lossy().ends_with(".convert")))
        .unwrap_or(false)
}

/// Kills the ntfs-3g processes serving mounts below `dir`: with the agent's kill, a power cut
/// as far as the mounts go.
fn kill_mounts_under(dir: &Path) {
    let _ = Command::new("pkill").arg("-9").arg("-f").arg(format!("ntfs-3g .*{}", dir.display())).status();
}

/// How many files the station's disk journals in `state` list.
fn journaled_files(state: &Path) -> usize {
    let Ok(dir) = std::fs::read_dir(state) else { return 0 };
    dir.filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("media-"))
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .map(|t| t.matches("\"rel\":").count())
        .sum()
}

/// How many files the disks written in a run kept from their journals (its log says).
fn kept_in(log: &str) -> u32 {
    log.lines()
        .filter(|l| l.contains("disk written and unmounted"))
        .filter_map(|l| l.split("kept=").nth(1)?.split(|ch: char| !ch.is_ascii_digit()).next()?.parse::<u32>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_points_resumes_without_recopying_what_the_journal_holds() -> anyhow::Result<()> {
    use std::time::{Duration, Instant};
    let seed = std::env::var("SEEDSHIP_KILL_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(20261203u64);
    eprintln!("kill points from seed {seed} (set SEEDSHIP_KILL_SEED to replay)");
    let mut rng = Lcg(seed);
    let mut c =
        Cluster::start_with(seedship_e2e::Options { lease_ttl: "1s", sweep_interval: "100ms", ..Default::default() })?;
    let ops = c.issue("operator", "alice")?;
    let (cfg, disks) = station(&c, "st-k", "")?;
    let state = c.path("state-st-k");
    let mut kills = 0;
    let mut round = 0;
    let mut kept = 0;
    let mut in_encryption = 0;
    for (job, mib) in [("job-k1", 48u32), ("job-k2", 48)] {
        let staging = stage(&mut c, &ops, job, mib, 7, "st-k").await?;
        let dir = disks.join(job);
        std::fs::create_dir_all(&dir)?;
        let size = disk_size(&staging, 3);
        let images: Vec<PathBuf> = (1..=3).map(|i| image(&disks, &format!("{job}-{i}.img"), size)).collect();
        let mut job_kills = 0;
        loop {
            round += 1;
            let name = format!("copy-{round}");
            let pid = c.spawn(&name, &mut copy_agent(&cfg))?;
            // Kill at a random point after the claim (sometimes before it); one round in three,
            // after this run journaled a file, so resumes meet journals on any machine.
            let wait_claim = rng.below(4) != 0;
            let mid_copy = rng.below(3) == 0;
            let journaled = journaled_files(&state);
            let t0 = Instant::now();
            while wait_claim && !c.log_of(&name).contains("work claimed") && t0.elapsed() < Duration::from_secs(20) {
                if c.try_wait(pid)?.is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            while mid_copy && journaled_files(&state) <= journaled && t0.elapsed() < Duration::from_secs(20) {
                if c.try_wait(pid)?.is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            // Short windows until twelve kills landed (formatting and the first files); then
            // longer ones let the copy and the read-back finish, still killing them now and then.
            let window = match (job_kills < 12, wait_claim, mid_copy) {
                (true, _, true) => 20,
                (true, true, false) => 120,
                (true, false, false) => 60,
                (false, _, _) => 1500,
            };
            std::thread::sleep(Duration::from_millis(rng.below(window)));
            let finished = c.try_wait(pid)?;
            if finished.is_none() {
                if converting(&state) {
                    in_encryption += 1;
                }
                c.kill9(pid)?;
            }
            kept += kept_in(&c.log_of(&name));
            if let Some(st) = finished {
                // A 1 s lease can run out on a loaded machine: the agent stops (exit 4) and the
                // next round resumes, like after a kill.
                if st.code() != Some(4) {
                    assert!(st.success(), "copy-agent failed:\n{}", c.log_of(&name));
                    break;
                }
            } else {
                // Every other kill takes the agent's ntfs-3g mounts with it.
                let power_cut = rng.below(2) == 0;
                if power_cut {
                    kill_mounts_under(&state);
                }
                eprintln!(
                    "round {round} ({job}): killed after {:?}{}",
                    t0.elapsed(),
                    if power_cut { " with its mounts" } else { "" }
                );
                kills += 1;
                job_kills += 1;
            }
            // Killed after completing, before exiting: done.
            let d = seedship_e2e::get_seed(&c, &ops, job).await?;
            if d.seed.unwrap().state == pb::SeedState::DisksPrepared as i32 {
                break;
            }
            if round > 90 {
                anyhow::bail!("no completion after {round} rounds");
            }
        }
        // Whatever the kills interrupted, the set holds the staging set exactly, and the
        // drives reported are the ones on the disks.
        let container = container_of(&c, &ops, job).await?;
        let views = check_set(&images, &staging, &container, &escrowed_keys(&c))?;
        let d = seedship_e2e::get_seed(&c, &ops, job).await?;
        assert_eq!(d.seed.unwrap().state, pb::SeedState::DisksPrepared as i32);
        for v in &views {
            let rep = d.drives.iter().find(|x| v.id["drive_id"] == x.drive_id.as_str() && x.status == "prepared");
            assert_eq!(rep.map(|r| &r.manifest_hash), v.manifest_md5.as_ref(), "{}", v.image.display());
        }
        // Only blank disks are used by the next seed: move these away.
        seedship_e2e::ntfs::unmount_under(&state);
        for img in &images {
            std::fs::rename(img, dir.join(img.file_name().unwrap()))?;
        }
    }
    eprintln!(
        "{kills} kills in {round} rounds ({in_encryption} while a disk was being encrypted); {kept} file(s) kept from \
         the journals instead of copied again"
    );
    assert!(kills >= 20, "only {kills} kills landed before completion");
    assert!(kept > 0, "no resumed disk kept a file it had written");
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
    let size = disk_size(&staging, 3);
    let container = container_of(&c, &ops, "job-p").await?;
    for dir in [&disks_a, &disks_b] {
        for i in 1..=3 {
            image(dir, &format!("disk{i}.img"), size);
        }
    }
    // Station A starts writing, then is paused (SIGSTOP) for longer than the TTL.
    let a = c.spawn("copy-a", &mut copy_agent(&cfg_a))?;
    seedship_e2e::wait_for("station A to write", Duration::from_secs(20), || any_formatted(&disks_a).then_some(()))?;
    signal(a, "-STOP");
    std::thread::sleep(Duration::from_millis(3600));

    // Station B claims the seed and prepares it on its own disks.
    let o = c.run("copy-b", &mut copy_agent(&cfg_b))?;
    assert!(o.status.success(), "{}", text(&o));
    check_set(&sorted_images(&disks_b), &staging, &container, &escrowed_keys(&c))?;

    // A wakes: refused, it stops without finishing anything.
    signal(a, "-CONT");
    let st = c.wait_exit(a, Duration::from_secs(20))?;
    let log = c.log_of("copy-a");
    assert_eq!(st.code(), Some(4), "{log}");
    assert!(log.contains("lease lost"), "{log}");
    assert!(!log.contains("Disks prepared"), "{log}");

    // The seed has B's three drives prepared; A's are left behind, on the record.
    let d = seedship_e2e::get_seed(&c, &ops, "job-p").await?;
    assert_eq!(d.seed.unwrap().state, pb::SeedState::DisksPrepared as i32);
    let prepared: Vec<_> = d.drives.iter().filter(|x| x.status == "prepared").collect();
    assert_eq!(prepared.len(), 3);
    assert!(prepared.iter().all(|x| x.reported_by.ends_with("/copy/st-b")));
    assert!(d.drives.iter().filter(|x| x.reported_by.ends_with("/copy/st-a")).all(|x| x.status == "bad"));
    // (A may have been paused after formatting a disk but before its key reached the
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
    let op = client::operator(c.connect(&ops).await?);

    // Staging unreachable: the lease is given back with the reason; the seed is not failed.
    let away = c.path("staging-away");
    std::fs::rename(&bad, &away)?;
    let o = c.run("copy-unreachable", &mut copy_agent(&cfg))?;
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("gave the work back") && text(&o).contains("is it mounted"), "{}", text(&o));
    let d = seedship_e2e::get_seed(&c, &ops, "job-bad").await?;
    assert_eq!(d.seed.unwrap().state, pb::SeedState::QueuedForDiskPrep as i32);
    assert!(d.history.iter().any(|e| e.reason.contains("cannot be read")), "{:?}", d.history);
    // (Registered after that release: a released seed goes behind the seeds already queued.)
    let good = stage(&mut c, &ops, "job-good", 48, 5, "st-x").await?;

    // A flipped bit in a staging file: refused before shipping, naming the file; the seed fails.
    std::fs::rename(&away, &bad)?;
    let pack = first_pack(&bad)?;
    let mut b = std::fs::read(bad.join(&pack))?;
    b[1000] ^= 0x10;
    std::fs::write(bad.join(&pack), b)?;
    image(&disks, "d1.img", 64 << 20);
    let o = c.run("copy-flipped-staging", &mut copy_agent(&cfg))?;
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains(&pack) && text(&o).contains("changed since registration"), "{}", text(&o));
    let d = seedship_e2e::get_seed(&c, &ops, "job-bad").await?;
    let s = d.seed.unwrap();
    assert_eq!(s.state, pb::SeedState::Failed as i32);
    assert!(s.state_reason.contains(&pack), "{}", s.state_reason);
    std::fs::remove_file(disks.join("d1.img"))?;

    // A flipped bit on a written disk: the agent pauses 12 s before each read-back (a
    // failpoint, long enough for the flip through a dislocker unlock on a loaded machine);
    // once every disk is written, unmounted and encrypted, one bit of a staging file is
    // flipped on one disk (in its decrypted view). The read-back catches it, the drive is
    // marked bad and a replacement is used.
    let size = disk_size(&good, 2);
    let container = container_of(&c, &ops, "job-good").await?;
    let imgs = [image(&disks, "g1.img", size), image(&disks, "g2.img", size)];
    let pid =
        c.spawn("copy-good", copy_agent(&cfg).env(seedship_telemetry::failpoint::ENV, "read-back=sleep(12000)"))?;
    let state = c.path("state-st-x");
    seedship_e2e::wait_for("both disks written, unmounted and encrypted", Duration::from_secs(60), || {
        let sealed = std::fs::read_dir(&state)
            .ok()?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("media-"))
            .filter(|e| {
                std::fs::read_to_string(e.path())
                    .is_ok_and(|t| t.contains("\"sealed\":{") && t.contains("\"encrypted\":true"))
            })
            .count();
        (sealed == 2).then_some(())
    })?;
    let pack = first_pack(&good)?;
    let needle = std::fs::read(good.join(&pack))?[4096..4160].to_vec();
    let keys = escrowed_keys(&c);
    let hit =
        imgs.iter().find(|i| flip_bit_in(i, &needle, &keys).unwrap()).expect("the staging file is on a disk").clone();
    let bad_drive = seedship_e2e::ntfs::read_disk(&hit, &keys)?.id["drive_id"].as_str().unwrap().to_string();
    let d = seedship_e2e::wait_for_async("the drive marked bad", Duration::from_secs(60), || {
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
        rep.status_reason.contains("read-back found the disk differs")
            && rep.status_reason.contains(&format!("{}: MD5", pack.replace('/', "\\"))),
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
    let st = c.wait_exit(pid, Duration::from_secs(60))?;
    assert!(st.success(), "{}", c.log_of("copy-good"));
    let good_disks: Vec<PathBuf> = imgs.iter().filter(|i| **i != hit).cloned().chain([replacement]).collect();
    check_set(&good_disks, &good, &container, &escrowed_keys(&c))?;
    let d = seedship_e2e::get_seed(&c, &ops, "job-good").await?;
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
    let size = disk_size(&staging, 3);
    image(&disks, "a.img", size);
    // A disk that holds another seed's drive.
    let used = seedship_e2e::ntfs::format(&disks.join("b.img"), size >> 20)?;
    let old = serde_json::json!({
        "drive_id": "OLD-1", "seed_id": "sd-old", "job_name": "job-old", "position": 1, "set_size": 1,
        "layout": "customer_disk", "container": "import-sd-old",
    });
    seedship_e2e::ntfs::write(&used, &[("seedship/disk.json", old.to_string().as_bytes())])?;
    let pid = c.spawn("copy-w", &mut copy_agent(&cfg))?;
    let op = client::operator(c.connect(&ops).await?);
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
    check_set(&sorted_images(&disks), &staging, &container_of(&c, &ops, "job-w").await?, &escrowed_keys(&c))?;
    let d = seedship_e2e::get_seed(&c, &ops, "job-w").await?;
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
    let size = disk_size(&staging, 1);
    let d1 = image(&small, "d1.img", size);

    // Disks named on the command line; the prompt takes more.
    let (pid, mut stdin) = c.spawn_piped("copy-e", copy_agent(&cfg).arg("--interactive").arg("--disk").arg(&d1))?;
    let op = client::operator(c.connect(&ops).await?);
    let d = seedship_e2e::wait_for_async("the full disk marked bad", Duration::from_secs(30), || {
        let mut op = op.clone();
        async move {
            let d = op.get_seed(pb::GetSeedRequest { seed: "job-e".into() }).await.ok()?.into_inner();
            d.drives.iter().any(|x| x.status == "bad").then_some(d)
        }
    })
    .await?;
    let bad = d.drives.iter().find(|x| x.status == "bad").unwrap();
    assert!(
        bad.status_reason.contains("No space left on device") || bad.status_reason.contains("Input/output error"),
        "{}",
        bad.status_reason
    );
    seedship_e2e::wait_for("the prompt for a replacement", Duration::from_secs(10), || {
        c.log_of("copy-e").contains("type each one's path").then_some(())
    })?;
    let replacement = image(c.dir.path(), "replacement.img", size);
    writeln!(stdin, "{}", replacement.display())?;
    let st = c.wait_exit(pid, Duration::from_secs(30))?;
    assert!(st.success(), "{}", c.log_of("copy-e"));
    check_set(
        std::slice::from_ref(&replacement),
        &staging,
        &container_of(&c, &ops, "job-e").await?,
        &escrowed_keys(&c),
    )?;
    let d = seedship_e2e::get_seed(&c, &ops, "job-e").await?;
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
    let size = disk_size(&staging, 3);
    for i in 1..=3 {
        image(&disks, &format!("t{i}.img"), size);
    }
    let pid = c.spawn("copy-t1", &mut copy_agent(&cfg))?;
    seedship_e2e::wait_for("writing to start", Duration::from_secs(20), || any_formatted(&disks).then_some(()))?;
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
        let d = seedship_e2e::get_seed(&c, &ops, "job-t").await?;
        assert_eq!(d.seed.unwrap().state, pb::SeedState::QueuedForDiskPrep as i32);
        assert!(d.history.iter().any(|e| e.reason.contains("stopped by its operator")), "{:?}", d.history);
        // No TTL to wait for: the next run claims at once and continues from the journals.
        let o = c.run("copy-t2", &mut copy_agent(&cfg))?;
        assert!(o.status.success(), "{}", text(&o));
        assert!(text(&o).contains("resuming the disk from the station's journal"), "{}", text(&o));
    }
    check_set(&sorted_images(&disks), &staging, &container_of(&c, &ops, "job-t").await?, &escrowed_keys(&c))?;
    c.finish()
}
