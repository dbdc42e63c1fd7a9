//! The copy agent end to end: real coordinator, real `source-agent` staging sets, real
//! `copy-agent` processes writing image files, and the disk format's own decoder reading them
//! back with the keys the coordinator escrowed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use coordinator::domain::model::SealedKey;
use coordinator::keys::MasterKey;
use seedship_disk::format::DiskReader;
use seedship_disk::key::RecoveryPassword;
use seedship_e2e::{Cluster, Identity, backup_cmd, bin, make_corpus, rid};
use seedship_proto::{client, pb};

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Stages `job` from a generated corpus and registers it (targeted at `station`), then lets
/// a virtual station prepare it (this test machine is a VM).
async fn stage(
    c: &mut Cluster,
    ops: &Identity,
    job: &str,
    mib: u32,
    seed: u32,
    station: &str,
) -> anyhow::Result<PathBuf> {
    let src = c.issue("source", &format!("src-{job}"))?;
    let cfg = c.agent_config(&src, None)?;
    let corpus = c.path(&format!("corpus-{job}"));
    make_corpus(&corpus, mib, seed)?;
    let staging = c.path(&format!("staging-{job}"));
    let o = c.run(
        &format!("backup-{job}"),
        backup_cmd(c.dir.path(), &staging, job, &[&corpus], Some(&cfg))?.args([
            "--pack-target-mib",
            "4",
            "--target-station",
            station,
        ]),
    )?;
    anyhow::ensure!(o.status.success(), "backup failed: {}", text(&o));
    client::operator(c.connect(ops).await?)
        .allow_virtual_station(pb::AllowVirtualStationRequest {
            request_id: rid(),
            seed: job.into(),
            reason: "test machine is a VM".into(),
        })
        .await?;
    Ok(staging)
}

fn staging_bytes(staging: &Path) -> u64 {
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(staging.join("manifest.json")).unwrap()).unwrap();
    m["files"].as_array().unwrap().iter().map(|f| f["size"].as_u64().unwrap()).sum()
}

/// A copy station: identity, config with its disk directory and state directory.
fn station(c: &Cluster, name: &str, extra: &str) -> anyhow::Result<(PathBuf, PathBuf)> {
    let id = c.issue("copy", name)?;
    let cfg = c.agent_config(&id, None)?;
    let disks = c.path(&format!("disks-{name}"));
    std::fs::create_dir_all(&disks)?;
    let mut t = std::fs::read_to_string(&cfg)?;
    t.push_str(&format!(
        "[station]\ndisk_dir = \"{}\"\nstate_dir = \"{}\"\npoll_interval = \"200ms\"\nprogress_interval = \"50ms\"\n{extra}",
        disks.display(),
        c.path(&format!("state-{name}")).display()
    ));
    std::fs::write(&cfg, t)?;
    Ok((cfg, disks))
}

fn image(dir: &Path, name: &str, size: u64) -> PathBuf {
    let p = dir.join(name);
    std::fs::File::create(&p).unwrap().set_len(size).unwrap();
    p
}

/// Capacity of each of `n` disks such that `n - 1` of them cannot hold `bytes`.
fn disk_size(bytes: u64, n: u64) -> u64 {
    let share = bytes.div_ceil(n) + bytes / (4 * n);
    (18 << 20) + share.div_ceil(1 << 20) * (1 << 20)
}

fn copy_agent(cfg: &Path) -> Command {
    let mut c = Command::new(bin("copy-agent"));
    c.arg("--config").arg(cfg).args(["run", "--once"]);
    c
}

/// The drive keys as the coordinator holds them, opened with its master key.
fn escrowed_keys(c: &Cluster) -> HashMap<String, RecoveryPassword> {
    let mk = MasterKey::load(&c.pki.join("master.key")).unwrap();
    let db = rusqlite::Connection::open(c.path("coordinator.db")).unwrap();
    let mut st = db
        .prepare(
            "SELECT d.drive_id, w.work_id, d.sealed_key FROM drives d JOIN work_items w ON w.seed_id = d.seed_id \
             WHERE d.sealed_key IS NOT NULL",
        )
        .unwrap();
    let rows =
        st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, Vec<u8>>(2)?))).unwrap();
    rows.map(|r| {
        let (drive, work, sealed) = r.unwrap();
        let pw = mk.open(&work, &drive, &SealedKey(sealed)).unwrap();
        (drive, RecoveryPassword::parse(&pw.0).unwrap())
    })
    .collect()
}

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
                assert!(st.success(), "copy-agent failed:\n{}", c.log_of(&name));
                break;
            }
            c.kill9(pid)?;
            eprintln!("round {round} ({job}): killed after {:?}", t0.elapsed());
            kills += 1;
            job_kills += 1;
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
