//! Helpers for end-to-end tests that prepare disks: staging a seed, a copy station with its
//! disk directory, disk images sized to span, and the keys as the coordinator escrowed them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use coordinator::domain::model::SealedKey;
use coordinator::keys::MasterKey;
use seedship_disk::key::RecoveryPassword;
use seedship_proto::{client, pb};

use crate::{Cluster, Identity, backup_cmd, bin, make_corpus, rid};

pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Stages `job` from a generated corpus and registers it (targeted at `station`), then lets
/// a virtual station prepare it (this test machine is a VM).
pub async fn stage(
    c: &mut Cluster,
    ops: &Identity,
    job: &str,
    mib: u32,
    seed: u32,
    station: &str,
) -> anyhow::Result<PathBuf> {
    let (_, cfg) = c.enroll("source", &format!("src-{job}"), None)?;
    let corpus = c.path(&format!("corpus-{job}"));
    make_corpus(&corpus, mib, seed)?;
    let staging = c.path(&format!("staging-{job}"));
    let o = c.run(
        &format!("backup-{job}"),
        backup_cmd(c.dir.path(), &staging, job, &[&corpus], Some(&cfg))?
            .args(["--pack-target-mib", "1"])
            .args(if station.is_empty() { vec![] } else { vec!["--target-station", station] }),
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

/// Stages `job` (`mib` of corpus), prepares it on `disks` image(s) with a copy station, and
/// returns the copy agent's output and the images.
pub async fn prepare(
    c: &mut Cluster,
    ops: &Identity,
    job: &str,
    mib: u32,
    disks: u64,
) -> anyhow::Result<(String, Vec<std::path::PathBuf>)> {
    let st_name = format!("st-{job}");
    let staging = stage(c, ops, job, mib, mib, &st_name).await?;
    let (cfg, dir) = station(c, &st_name, "")?;
    let size = disk_size(&staging, disks);
    let images: Vec<_> = (1..=disks).map(|i| image(&dir, &format!("disk{i}.img"), size)).collect();
    let o = c.run(&format!("copy-{job}"), &mut copy_agent(&cfg))?;
    anyhow::ensure!(o.status.success(), "copy agent: {}", text(&o));
    Ok((String::from_utf8_lossy(&o.stdout).to_string(), images))
}

pub fn staging_bytes(staging: &Path) -> u64 {
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(staging.join("manifest.json")).unwrap()).unwrap();
    m["files"].as_array().unwrap().iter().map(|f| f["size"].as_u64().unwrap()).sum()
}

/// A copy station: identity, config with its disk directory and state directory.
pub fn station(c: &Cluster, name: &str, extra: &str) -> anyhow::Result<(PathBuf, PathBuf)> {
    let (_, cfg) = c.enroll("copy", name, None)?;
    let disks = c.path(&format!("disks-{name}"));
    std::fs::create_dir_all(&disks)?;
    let mut t = std::fs::read_to_string(&cfg)?;
    // Stations read stagings anywhere in the test's folder, unless `extra` says otherwise.
    let roots = if extra.contains("staging_roots") {
        String::new()
    } else {
        format!("staging_roots = [\"{}\"]\n", c.path("").display())
    };
    t.push_str(&format!(
        "[station]\ndisk_dir = \"{}\"\nstate_dir = \"{}\"\n{roots}poll_interval = \"200ms\"\nprogress_interval = \"50ms\"\n{extra}",
        disks.display(),
        c.path(&format!("state-{name}")).display(),
    ));
    std::fs::write(&cfg, t)?;
    Ok((cfg, disks))
}

pub fn image(dir: &Path, name: &str, size: u64) -> PathBuf {
    let p = dir.join(name);
    std::fs::File::create(&p).unwrap().set_len(size).unwrap();
    p
}

/// The staging files of the set at `staging`, as the planner sees them.
pub fn staging_files(staging: &Path) -> Vec<seedship_disk::plan::FileSpec> {
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(staging.join("manifest.json")).unwrap()).unwrap();
    let mut files: Vec<seedship_disk::plan::FileSpec> = m["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| seedship_disk::plan::FileSpec {
            path: f["path"].as_str().unwrap().into(),
            size: f["size"].as_u64().unwrap(),
        })
        .collect();
    let size = std::fs::metadata(staging.join("manifest.json")).unwrap().len();
    files.push(seedship_disk::plan::FileSpec { path: "manifest.json".into(), size });
    files
}

/// Capacity of each of `n` disks such that `n` of them hold the staging set at `staging` as
/// NTFS volumes but `n - 1` cannot: the smallest size (in steps of 256 KiB) the planner
/// accepts for `n`, and 256 KiB more.
pub fn disk_size(staging: &Path, n: u64) -> u64 {
    use seedship_disk::plan::{DiskSpec, plan_whole};
    let files = staging_files(staging);
    let disks = |k: u64, size: u64| -> Vec<DiskSpec> {
        (0..k).map(|i| DiskSpec { id: format!("D{i}"), capacity: size }).collect()
    };
    let mut size = 4u64 << 20;
    while plan_whole(&files, &disks(n, size)).is_err() {
        size += 256 << 10;
    }
    size += 256 << 10;
    assert!(n == 1 || plan_whole(&files, &disks(n - 1, size)).is_err(), "{n} disks of {size} bytes: fewer would do");
    size
}

/// Records the shipment of `job` (`drives` disks) with `seedctl ship`, as an operator does.
pub fn ship(
    c: &mut Cluster,
    ops: &Identity,
    job: &str,
    carrier: &str,
    tracking: &str,
    drives: u32,
) -> anyhow::Result<()> {
    let drives = drives.to_string();
    let args = [
        "ship",
        "--job",
        job,
        "--carrier",
        carrier,
        "--tracking",
        tracking,
        "--drives",
        &drives,
        "--date",
        "2026-11-22",
    ];
    let o = c.run("ship", &mut c.seedctl(ops, &args))?;
    anyhow::ensure!(o.status.success(), "ship: {}", text(&o));
    Ok(())
}

pub fn copy_agent(cfg: &Path) -> Command {
    let mut c = Command::new(bin("copy-agent"));
    c.arg("--config").arg(cfg).args(["run", "--once"]);
    c
}

/// The drive keys as the coordinator holds them, opened with its master key.
pub fn escrowed_keys(c: &Cluster) -> HashMap<String, RecoveryPassword> {
    let mk = MasterKey::load(&c.pki.join("master.key")).unwrap();
    let rows = c
        .sql(|db| {
            db.rows(
                "SELECT d.drive_id, w.work_id, d.sealed_key FROM drives d JOIN work_items w ON w.seed_id = d.seed_id \
                 WHERE d.sealed_key IS NOT NULL",
                &[],
                |r| Ok((r.get::<String>(0)?, r.get::<String>(1)?, r.get::<Vec<u8>>(2)?)),
            )
        })
        .unwrap();
    rows.into_iter()
        .map(|r| {
            let (drive, work, sealed) = r;
            let pw = mk.open(&work, &drive, &SealedKey(sealed)).unwrap();
            (drive, RecoveryPassword::parse(&pw.0).unwrap())
        })
        .collect()
}
