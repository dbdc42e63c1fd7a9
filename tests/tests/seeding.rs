//! A staged seed registered with the real coordinator over mTLS.

use std::process::{Command, Output, Stdio};

use seedship_e2e::{Cluster, backup_cmd, bin, make_corpus};
use seedship_proto::{client, pb};

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn manifest(staging: &std::path::Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(staging.join("manifest.json")).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_registers_the_seed_idempotently_and_survives_an_unreachable_coordinator() -> anyhow::Result<()> {
    let mut c = Cluster::start()?;
    let (fs01, ops) = (c.issue("source", "fs01")?, c.issue("operator", "alice")?);
    let cfg = c.agent_config(&fs01, Some("hq"))?;
    let corpus = c.path("corpus");
    make_corpus(&corpus, 8, 21)?;
    let staging = c.path("staging");

    let o = c.run(
        "backup",
        backup_cmd(c.dir.path(), &staging, "job-fs01", &[&corpus], Some(&cfg))?
            .arg("--staging-share")
            .arg("\\\\fs01\\staging\\job-fs01"),
    )?;
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("registered: waiting for a copy station"), "{}", text(&o));
    assert!(text(&o).contains("import container (chosen by the coordinator): seedacct/import-sd-"), "{}", text(&o));

    // The coordinator has exactly what the manifest says.
    let m = manifest(&staging);
    let mut op = client::operator(c.connect(&ops).await?);
    let d = op.get_seed(pb::GetSeedRequest { seed: "job-fs01".into() }).await?.into_inner();
    let s = d.seed.unwrap();
    assert_eq!(s.manifest_root, m["root"].as_str().unwrap());
    assert_eq!(s.file_count, m["files"].as_array().unwrap().len() as u64);
    let total: u64 = m["files"].as_array().unwrap().iter().map(|f| f["size"].as_u64().unwrap()).sum();
    assert_eq!(s.total_bytes, total);
    assert_eq!(s.staging_location, "\\\\fs01\\staging\\job-fs01");
    assert_eq!((s.owner.as_str(), s.state), ("fs01", pb::SeedState::QueuedForDiskPrep as i32));

    // Registering again is idempotent.
    let o = c.run(
        "register-again",
        Command::new(bin("source-agent")).arg("--config").arg(&cfg).args(["register", "--staging"]).arg(&staging),
    )?;
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("was already registered"), "{}", text(&o));

    // A different seed under the same job name is refused; its staging set stays for later.
    let other = c.path("other-src");
    std::fs::create_dir(&other)?;
    std::fs::write(other.join("x.txt"), b"different data")?;
    let staging2 = c.path("staging2");
    let o = c.run("backup-conflict", &mut backup_cmd(c.dir.path(), &staging2, "job-fs01", &[&other], Some(&cfg))?)?;
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("refused") && text(&o).contains("already in use"), "{}", text(&o));
    assert!(staging2.join("manifest.json").exists());

    // The source agent's status shows the coordinator's words.
    let o = c.run("status", Command::new(bin("source-agent")).arg("--config").arg(&cfg).arg("status"))?;
    assert!(text(&o).contains("job-fs01  queued_for_disk_prep  waiting for a copy station"), "{}", text(&o));

    // Coordinator down at registration: the backup is kept, and `register` works later. (Another
    // server: fs01's seed of another repository is under way, which a second one may not join.)
    let fs02 = c.issue("source", "fs02")?;
    let cfg = c.agent_config(&fs02, Some("hq"))?;
    c.kill9_coordinator()?;
    let src3 = c.path("src3");
    std::fs::create_dir(&src3)?;
    std::fs::write(src3.join("y.txt"), b"third")?;
    let staging3 = c.path("staging3");
    let mut cmd = backup_cmd(c.dir.path(), &staging3, "job-three", &[&src3], Some(&cfg))?;
    cmd.stdin(Stdio::null());
    let o = c.run("backup-offline-coordinator", &mut cmd)?;
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("the staged seed is kept"), "{}", text(&o));
    assert!(staging3.join("manifest.json").exists());
    c.start_coordinator()?;
    let cfg = c.agent_config(&fs02, Some("hq"))?;
    let o = c.run(
        "register-later",
        Command::new(bin("source-agent")).arg("--config").arg(&cfg).args(["register", "--staging"]).arg(&staging3),
    )?;
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("job-three) registered"), "{}", text(&o));
    // Connection failures while the coordinator was down are expected in that run's log.
    c.allow_error("transport error");
    c.finish()
}
