//! Shipping disks through the real `copy-agent` binary.

use std::process::{Command, Stdio};

use seedship_disk::format::{DiskInfo, DiskWriter};
use seedship_disk::key::RecoveryPassword;
use seedship_e2e::bin;

#[test]
fn a_used_disk_is_wiped_only_on_explicit_confirmation() {
    let d = tempfile::tempdir().unwrap();
    let img = d.path().join("disk1.img");
    std::fs::File::create(&img).unwrap().set_len(64 << 20).unwrap();
    let info = DiskInfo {
        drive_id: "SS-OLD".into(),
        seed_id: "sd-old".into(),
        job_name: "job-old".into(),
        position: 2,
        set_size: 3,
    };
    DiskWriter::create(&img, 64 << 20, &info, &RecoveryPassword::from_bytes(&[1; 16])).unwrap();
    let before = std::fs::read(&img).unwrap();

    // Without --yes nothing is written.
    let o = Command::new(bin("copy-agent")).args(["wipe", "--disk"]).arg(&img).stdin(Stdio::null()).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--yes"));
    assert!(std::fs::read(&img).unwrap() == before);

    // A new seed cannot take the disk while it holds the old one.
    let new = DiskInfo {
        drive_id: "SS-NEW".into(),
        seed_id: "sd-new".into(),
        job_name: "job-new".into(),
        position: 1,
        set_size: 1,
    };
    let e = DiskWriter::create(&img, 64 << 20, &new, &RecoveryPassword::from_bytes(&[2; 16])).err().unwrap();
    assert!(e.to_string().contains("wipe it explicitly"), "{e}");

    let o = Command::new(bin("copy-agent"))
        .args(["wipe", "--yes", "--disk"])
        .arg(&img)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("drive SS-OLD (2 of 3) of seed sd-old (job job-old)"), "{out}");
    DiskWriter::create(&img, 64 << 20, &new, &RecoveryPassword::from_bytes(&[2; 16])).unwrap();
}

/// `copy-agent bench` (the benchmark's way in) takes a staging path relative to where it runs,
/// as `tests/bench/disks-vs-dd.sh` gives it, and prepares and reads back the disk.
#[test]
fn the_disk_benchmark_prepares_a_relative_staging_path() {
    let d = tempfile::tempdir().unwrap();
    let corpus = d.path().join("corpus");
    seedship_e2e::make_corpus(&corpus, 2, 3).unwrap();
    let staging = d.path().join("staging");
    seedship_e2e::run_ok(&mut seedship_e2e::backup_cmd(d.path(), &staging, "job-bench", &[&corpus], None).unwrap())
        .unwrap();
    std::fs::File::create(d.path().join("d.img")).unwrap().set_len(64 << 20).unwrap();
    let out = Command::new(bin("copy-agent"))
        .current_dir(d.path())
        .args(["bench", "--staging", "staging", "--disk", "d.img"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["disks"], 1, "{text}");
    assert!(r["bytes"].as_u64().unwrap() > 0, "{text}");
}
