//! Shipping disks through the real `copy-agent` binary, on NTFS images made by the real tools.

use std::process::{Command, Stdio};

use seedship_e2e::bin;

#[test]
fn a_used_disk_is_wiped_only_on_explicit_confirmation() {
    let d = tempfile::tempdir().unwrap();
    let img = seedship_e2e::ntfs::format(&d.path().join("disk1.img"), 64).unwrap();
    let id = serde_json::json!({
        "drive_id": "SS-OLD", "seed_id": "sd-old", "job_name": "job-old", "position": 2, "set_size": 3,
        "layout": "customer_disk", "container": "import-sd-old",
    });
    seedship_e2e::ntfs::write(&img, &[("seedship/disk.json", id.to_string().as_bytes()), ("seedship/data/x", b"x")])
        .unwrap();
    let before = std::fs::read(&img).unwrap();

    // Without --yes nothing is written.
    let o = Command::new(bin("copy-agent")).args(["wipe", "--disk"]).arg(&img).stdin(Stdio::null()).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--yes"));
    assert!(std::fs::read(&img).unwrap() == before);

    let o = Command::new(bin("copy-agent"))
        .args(["wipe", "--yes", "--disk"])
        .arg(&img)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("drive SS-OLD (2 of 3) of seed sd-old (job job-old); 2097152 bytes zeroed"), "{out}");
    // Blank again: no volume at the start, none at the end (NTFS keeps a boot sector copy there).
    let after = std::fs::read(&img).unwrap();
    assert!(after[..1 << 20].iter().all(|b| *b == 0) && after[after.len() - (1 << 20)..].iter().all(|b| *b == 0));
    assert!(seedship_disk::ntfs::Volume::open(&img).is_err());
}

/// `copy-agent bench-ntfs` (the benchmark's way in) takes a staging path relative to where it
/// runs, as `tests/bench/ntfs-vs-cp.sh` gives it, writes the NTFS volume and reads it back.
#[test]
fn the_ntfs_benchmark_writes_a_relative_staging_path_and_reads_it_back() {
    let d = tempfile::tempdir().unwrap();
    let corpus = d.path().join("corpus");
    seedship_e2e::make_corpus(&corpus, 2, 3).unwrap();
    let staging = d.path().join("staging");
    seedship_e2e::run_ok(&mut seedship_e2e::backup_cmd(d.path(), &staging, "job-bench", &[&corpus], None).unwrap())
        .unwrap();
    std::fs::File::create(d.path().join("d.img")).unwrap().set_len(64 << 20).unwrap();
    let out = Command::new(bin("copy-agent"))
        .current_dir(d.path())
        .args(["bench-ntfs", "--staging", "staging", "--disk", "d.img"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(r["bytes"].as_u64().unwrap() > 0 && r["files"].as_u64().unwrap() > 1, "{text}");
    assert!(seedship_e2e::ntfs::top_level(&d.path().join("d.img")).unwrap().contains(&"DriveManifest.xml".to_string()));
}
