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
    let plain = seedship_e2e::ntfs::Keys::new();
    assert!(
        seedship_e2e::ntfs::top_level(&d.path().join("d.img"), &plain)
            .unwrap()
            .contains(&"DriveManifest.xml".to_string())
    );
    // Both encrypted write paths: the volume is BitLocker (read back through dislocker by the
    // command itself), and nothing of the seed manifest is in the clear on it.
    let seed_manifest = std::fs::read(staging.join("manifest.json")).unwrap();
    for how in ["in-place", "dislocker"] {
        let img = d.path().join(format!("{how}.img"));
        std::fs::File::create(&img).unwrap().set_len(64 << 20).unwrap();
        let out = Command::new(bin("copy-agent"))
            .current_dir(d.path())
            .args(["bench-ntfs", "--staging", "staging", "--disk"])
            .arg(&img)
            .args(["--bitlocker", how])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{how}: {text}");
        assert_eq!(seedship_bitlocker::volume::label(&img).as_deref(), Some("BENCH"), "{how}");
        let raw = std::fs::read(&img).unwrap();
        assert!(raw.windows(48).all(|w| w != &seed_manifest[..48]), "{how}: the seed manifest is in the clear");
    }

    // A container name Azure would refuse is caught before anything is written.
    std::fs::File::create(d.path().join("e.img")).unwrap().set_len(64 << 20).unwrap();
    let out = Command::new(bin("copy-agent"))
        .current_dir(d.path())
        .args(["bench-ntfs", "--staging", "staging", "--disk", "e.img", "--container", "Import_Seed"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("\"Import_Seed\" is not a valid Azure container name"), "{err}");
    assert!(std::fs::read(d.path().join("e.img")).unwrap().iter().all(|b| *b == 0), "nothing was written");

    // The operator asks how many disks of which size the seed needs.
    let plan = |args: &[&str]| {
        let o = Command::new(bin("copy-agent"))
            .current_dir(d.path())
            .args(["plan", "--staging", "staging", "--json"])
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
    };
    let three = plan(&["--disks", "3"]);
    let size = three["disk_size"].as_u64().unwrap();
    assert_eq!(three["disks"], 3);
    assert!(plan(&["--disk-size", &size.to_string()])["disks"].as_u64().unwrap() <= 3, "{three}");
    let one = plan(&["--disks", "1"]);
    assert_eq!(plan(&["--disk-size", &one["disk_size"].to_string()])["disks"], 1, "{one}");
    let o = Command::new(bin("copy-agent"))
        .current_dir(d.path())
        .args(["plan", "--staging", "staging", "--disk-size", "5000000"])
        .output()
        .unwrap();
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("use larger disks"));
    let o = Command::new(bin("copy-agent"))
        .current_dir(d.path())
        .args(["plan", "--staging", "staging", "--disks", "11"])
        .output()
        .unwrap();
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("1 to 10 disks"));
}
