//! The offline backup into a staging location, through the real `source-agent` binary:
//! round trips through the format's own read path, dedup, crash and resume, corruption, and
//! bad input.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use seedship_e2e::{backup_cmd, bin, make_corpus, passphrase_file, run_ok, same_tree, wait_for, walk};

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("runs")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn random_bytes(n: usize, mut seed: u64) -> Vec<u8> {
    (0..n)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 24) as u8
        })
        .collect()
}

fn set_mtime(p: &Path, secs: i64, nsec: i64) {
    run_ok(Command::new("touch").arg("-h").arg("-d").arg(format!("@{secs}.{nsec:09}")).arg(p)).unwrap();
}

/// The hand-made edge cases of the issue, with fixed metadata.
fn edge_tree(root: &Path) -> PathBuf {
    let src = root.join("edge");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("plain.txt"), b"hello seed\n".repeat(100)).unwrap();
    fs::set_permissions(src.join("plain.txt"), fs::Permissions::from_mode(0o640)).unwrap();
    fs::write(src.join(OsStr::from_bytes(b"caf\xe9-\xff.bin")), random_bytes(3000, 1)).unwrap();
    let mut deep = src.join("deep");
    for i in 0..40 {
        deep = deep.join(format!("level-{i:02}"));
    }
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join("bottom.txt"), b"deep down").unwrap();
    std::os::unix::fs::symlink("plain.txt", src.join("link")).unwrap();
    std::os::unix::fs::symlink(OsStr::from_bytes(b"nowhere/\xfe"), src.join("dangling")).unwrap();
    fs::write(src.join("hl-a"), random_bytes(70_000, 2)).unwrap();
    fs::hard_link(src.join("hl-a"), src.join("hl-b")).unwrap();
    let sparse = fs::File::create(src.join("sparse.img")).unwrap();
    sparse.set_len(16 << 20).unwrap();
    sparse.write_all_at(&random_bytes(4096, 3), 1 << 20).unwrap();
    sparse.write_all_at(&random_bytes(4096, 4), 12 << 20).unwrap();
    drop(sparse);
    fs::write(src.join("empty"), b"").unwrap();
    fs::write(src.join("min.bin"), random_bytes(512 << 10, 5)).unwrap();
    fs::write(src.join("max.bin"), random_bytes(8 << 20, 6)).unwrap();
    fs::write(src.join("max-plus-one.bin"), random_bytes((8 << 20) + 1, 7)).unwrap();
    fs::write(src.join("run.sh"), b"#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(src.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    run_ok(Command::new("mkfifo").arg(src.join("pipe"))).unwrap();
    // A mode the umask would not give: the restore must set it, not mkfifo's default.
    fs::set_permissions(src.join("pipe"), fs::Permissions::from_mode(0o666)).unwrap();
    fs::create_dir(src.join("emptydir")).unwrap();
    fs::set_permissions(src.join("emptydir"), fs::Permissions::from_mode(0o700)).unwrap();
    // Fixed times, deepest first, so writing an entry does not move its directory's time.
    let mut all: Vec<PathBuf> = walk(&src);
    all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for (i, p) in all.iter().enumerate() {
        set_mtime(p, 1_700_000_000 + i as i64, 123_456_789);
    }
    set_mtime(&src, 1_600_000_000, 1);
    src
}

fn manifest_root(staging: &Path) -> String {
    let v: serde_json::Value = serde_json::from_slice(&fs::read(staging.join("manifest.json")).unwrap()).unwrap();
    v["root"].as_str().unwrap().to_string()
}

fn restore(dir: &Path, staging: &Path, target: &Path) -> Output {
    let o = run(Command::new(bin("source-agent"))
        .args(["restore", "--staging"])
        .arg(staging)
        .arg("--target")
        .arg(target)
        .arg("--passphrase-file")
        .arg(passphrase_file(dir).unwrap()));
    assert!(o.status.success(), "restore failed: {}", text(&o));
    o
}

fn verify(staging: &Path, extra: &[&str]) -> Output {
    run(Command::new(bin("source-agent")).args(["verify", "--staging"]).arg(staging).args(extra))
}

#[test]
fn edge_cases_round_trip_with_their_metadata() {
    let d = tempfile::tempdir().unwrap();
    let src = edge_tree(d.path());
    let staging = d.path().join("staging");
    let o = run(&mut backup_cmd(d.path(), &staging, "job-edge", &[&src], None).unwrap());
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("recovery key"), "a new repository shows its recovery key: {out}");
    assert!(verify(&staging, &[]).status.success());

    let target = d.path().join("restored");
    let r = restore(d.path(), &staging, &target);
    assert!(text(&r).contains("1 hard links"), "{}", text(&r));
    same_tree(&src, &target.join("edge"));
    // Hard links are links again; the sparse file is sparse again.
    let (a, b) = (fs::metadata(target.join("edge/hl-a")).unwrap(), fs::metadata(target.join("edge/hl-b")).unwrap());
    assert_eq!(a.ino(), b.ino());
    let sparse = fs::metadata(target.join("edge/sparse.img")).unwrap();
    assert_eq!(sparse.len(), 16 << 20);
    assert!(sparse.blocks() * 512 < (1 << 20), "holes were written out: {} blocks", sparse.blocks());
    assert_eq!(fs::symlink_metadata(target.join("edge/pipe")).unwrap().mode() & 0o7777, 0o666, "the FIFO's exact mode");
}

/// Extended attributes are not kept by this version: the backup says so, naming the entries,
/// rather than dropping them silently.
#[test]
fn extended_attributes_not_kept_are_reported() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("xa");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("plain.txt"), b"no attributes").unwrap();
    fs::write(src.join("tagged.txt"), b"has one").unwrap();
    if rustix::fs::setxattr(src.join("tagged.txt"), "user.seedship.test", b"1", rustix::fs::XattrFlags::empty())
        .is_err()
    {
        eprintln!("skipped: this file system takes no user extended attributes");
        return;
    }
    let staging = d.path().join("staging");
    let o = run(&mut backup_cmd(d.path(), &staging, "job-xa", &[&src], None).unwrap());
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("not kept") && out.contains("1 entry with extended attributes"), "{out}");
    assert!(out.contains("tagged.txt") && !out.contains("plain.txt"), "{out}");
}

#[test]
fn corpus_round_trip_and_two_copies_store_one_set_of_chunks() {
    let d = tempfile::tempdir().unwrap();
    let corpus = d.path().join("corpus");
    make_corpus(&corpus, 24, 11).unwrap();
    // Two extra copies of 6 MiB of random data: stored once.
    let blob = random_bytes(6 << 20, 9);
    fs::write(corpus.join("copy-1.bin"), &blob).unwrap();
    fs::create_dir(corpus.join("again")).unwrap();
    fs::write(corpus.join("again/copy-2.bin"), &blob).unwrap();
    let staging = d.path().join("staging");
    let o = run(&mut backup_cmd(d.path(), &staging, "job-corpus", &[&corpus], None).unwrap());
    assert!(o.status.success(), "{}", text(&o));
    let summary = text(&o);

    let alone = d.path().join("alone");
    fs::create_dir(&alone).unwrap();
    fs::write(alone.join("copy-1.bin"), &blob).unwrap();
    let staging1 = d.path().join("staging1");
    assert!(run(&mut backup_cmd(d.path(), &staging1, "job-one", &[&alone], None).unwrap()).status.success());
    fs::write(alone.join("copy-2.bin"), &blob).unwrap();
    let staging2 = d.path().join("staging2");
    let o2 = run(&mut backup_cmd(d.path(), &staging2, "job-two", &[&alone], None).unwrap());
    assert!(o2.status.success());
    let size = |s: &Path| -> u64 {
        let v: serde_json::Value = serde_json::from_slice(&fs::read(s.join("manifest.json")).unwrap()).unwrap();
        v["files"].as_array().unwrap().iter().map(|f| f["size"].as_u64().unwrap()).sum()
    };
    let (one, two) = (size(&staging1), size(&staging2));
    assert!(two < one + 64 * 1024, "a second copy must add only metadata: {one} vs {two} bytes");
    // The summary says so: "after dedup … (N of M chunks new)" with N < M.
    let t = text(&o2);
    let counts = t
        .split("after dedup")
        .nth(1)
        .and_then(|r| r.split('(').nth(1))
        .and_then(|r| r.split(" chunks new").next())
        .unwrap_or("");
    let nums: Vec<u64> = counts.split(" of ").filter_map(|n| n.trim().parse().ok()).collect();
    assert!(nums.len() == 2 && nums[0] < nums[1], "expected fewer new chunks than chunks: {t}");

    let target = d.path().join("restored");
    restore(d.path(), &staging, &target);
    same_tree(&corpus, &target.join("corpus"));
    assert!(summary.contains("staged"), "{summary}");
}

#[test]
fn kill_9_mid_backup_then_rerun_gives_the_same_staging_set() {
    let d = tempfile::tempdir().unwrap();
    let corpus = d.path().join("corpus");
    make_corpus(&corpus, 64, 5).unwrap();
    let time = "2026-11-22T10:00:00Z";
    let with = |c: &mut Command| {
        c.args(["--time", time, "--pack-target-mib", "2", "--workers", "2"]);
    };
    // A: uninterrupted.
    let a = d.path().join("a");
    let mut ca = backup_cmd(d.path(), &a, "job-crash", &[&corpus], None).unwrap();
    with(&mut ca);
    assert!(run(&mut ca).status.success());

    // B: the same repository (keys, config, seed record), not yet backed up.
    let b = d.path().join("b");
    fs::create_dir_all(b.join("keys")).unwrap();
    fs::copy(a.join("config"), b.join("config")).unwrap();
    fs::copy(a.join("keys/key.json"), b.join("keys/key.json")).unwrap();
    let mut seed: serde_json::Value = serde_json::from_slice(&fs::read(a.join("seed.json")).unwrap()).unwrap();
    seed["completed"] = serde_json::Value::Null;
    seed["target"]["staging_share"] = serde_json::Value::String(b.display().to_string());
    fs::write(b.join("seed.json"), serde_json::to_vec(&seed).unwrap()).unwrap();

    let mut cb = backup_cmd(d.path(), &b, "job-crash", &[&corpus], None).unwrap();
    with(&mut cb);
    cb.arg("--staging-share").arg(&b);
    let mut child = cb.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let packs = |dir: &Path| {
        walk(&dir.join("data")).into_iter().filter(|p| p.is_file() && !p.to_string_lossy().ends_with(".tmp")).count()
    };
    wait_for("three complete packs", Duration::from_secs(60), || (packs(&b) >= 3).then_some(())).unwrap();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(!b.join("manifest.json").exists(), "the backup must not have finished before the kill");
    assert!(b.join("lock").exists(), "the dead process left its lock behind");

    let mut again = backup_cmd(d.path(), &b, "job-crash", &[&corpus], None).unwrap();
    with(&mut again);
    again.arg("--staging-share").arg(&b);
    let o = run(&mut again);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("complete packs from the interrupted run were kept"), "{}", text(&o));
    assert_eq!(manifest_root(&a), manifest_root(&b), "the resumed staging set must equal the uninterrupted one");
    assert!(verify(&b, &[]).status.success());
}

#[test]
fn a_flipped_bit_is_caught_by_verify_naming_the_file() {
    let d = tempfile::tempdir().unwrap();
    let corpus = d.path().join("corpus");
    make_corpus(&corpus, 8, 2).unwrap();
    let staging = d.path().join("staging");
    let mut c = backup_cmd(d.path(), &staging, "job-bits", &[&corpus], None).unwrap();
    c.args(["--pack-target-mib", "1"]);
    assert!(run(&mut c).status.success());
    assert!(verify(&staging, &[]).status.success());

    let pack = walk(&staging.join("data")).into_iter().filter(|p| p.is_file()).nth(2).unwrap();
    let rel = pack.strip_prefix(&staging).unwrap().to_string_lossy().to_string();
    let f = fs::OpenOptions::new().read(true).write(true).open(&pack).unwrap();
    let mut byte = [0u8; 1];
    f.read_exact_at(&mut byte, 5000).unwrap();
    f.write_all_at(&[byte[0] ^ 0x10], 5000).unwrap();
    drop(f);

    let o = verify(&staging, &[]);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(t.contains(&format!("DAMAGED {rel}")) && t.contains("SHA-256"), "{t}");
    assert_eq!(t.matches("DAMAGED").count(), 1, "only that file: {t}");
    // With the key, the blob itself fails authentication.
    let pf = passphrase_file(d.path()).unwrap();
    let o = verify(&staging, &["--read-data", "--passphrase-file", pf.to_str().unwrap()]);
    let t = text(&o);
    assert!(!o.status.success() && t.contains("authentication failed"), "{t}");
}

#[test]
fn wrong_passphrase_other_jobs_foreign_dirs_and_unreadable_entries() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("a.txt"), b"a").unwrap();
    let sock = std::os::unix::net::UnixListener::bind(src.join("app.sock")).unwrap();
    let staging = d.path().join("staging");
    let o = run(&mut backup_cmd(d.path(), &staging, "job-a", &[&src], None).unwrap());
    assert_eq!(o.status.code(), Some(3), "a skipped entry makes a partial backup: {}", text(&o));
    assert!(text(&o).contains("app.sock: a socket"), "{}", text(&o));
    drop(sock);

    // The wrong passphrase: a clear error, nothing written.
    let before = manifest_root(&staging);
    let bad = d.path().join("bad-pass");
    fs::write(&bad, "not it\n").unwrap();
    fs::set_permissions(&bad, fs::Permissions::from_mode(0o600)).unwrap();
    let c = backup_cmd(d.path(), &staging, "job-a", &[&src], None).unwrap();
    let args: Vec<_> = c.get_args().map(|a| a.to_os_string()).collect();
    let mut c2 = Command::new(c.get_program());
    for (i, a) in args.iter().enumerate() {
        c2.arg(if i > 0 && args[i - 1] == "--passphrase-file" { bad.as_os_str() } else { a });
    }
    let o = run(&mut c2);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("wrong passphrase"), "{}", text(&o));
    assert_eq!(manifest_root(&staging), before);

    // Another job's seed is there.
    let o = run(&mut backup_cmd(d.path(), &staging, "job-b", &[&src], None).unwrap());
    assert!(!o.status.success());
    assert!(text(&o).contains("holds the seed of job \"job-a\""), "{}", text(&o));

    // A directory that holds something else.
    let other = d.path().join("other");
    fs::create_dir(&other).unwrap();
    fs::write(other.join("report.docx"), b"x").unwrap();
    let o = run(&mut backup_cmd(d.path(), &other, "job-c", &[&src], None).unwrap());
    assert!(!o.status.success());
    assert!(text(&o).contains("not empty"), "{}", text(&o));

    // A staging path that cannot be a directory.
    let o = run(&mut backup_cmd(d.path(), &src.join("a.txt").join("sub"), "job-d", &[&src], None).unwrap());
    assert!(!o.status.success());
    assert!(text(&o).contains("a.txt/sub"), "{}", text(&o));
}

#[test]
fn a_full_staging_location_is_a_clear_error_and_a_rerun_resumes() {
    let d = tempfile::tempdir().unwrap();
    let mnt = d.path().join("small");
    fs::create_dir(&mnt).unwrap();
    let mounted =
        Command::new("mount").args(["-t", "tmpfs", "-o", "size=12m", "tmpfs"]).arg(&mnt).status().map(|s| s.success());
    if !matches!(mounted, Ok(true)) {
        eprintln!("skipped: this machine does not let the test mount a small tmpfs (needs root)");
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(mnt.clone());
    let corpus = d.path().join("corpus");
    make_corpus(&corpus, 32, 4).unwrap();
    let staging = mnt.join("staging");
    let mut c = backup_cmd(d.path(), &staging, "job-full", &[&corpus], None).unwrap();
    c.args(["--pack-target-mib", "2"]);
    let o = run(&mut c);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("staging location is full") && t.contains("more is needed"), "{t}");
    assert!(!staging.join("manifest.json").exists());
    // How much it asked for, against how much more the finished set took.
    let asked = {
        let at = t.find("about ").unwrap() + "about ".len();
        let words: Vec<&str> = t[at..].split_whitespace().take(2).collect();
        let unit = match words[1] {
            "B" => 1.0,
            "KiB" => 1024.0,
            "MiB" => 1048576.0,
            "GiB" => 1073741824.0,
            u => panic!("unit {u}: {t}"),
        };
        words[0].parse::<f64>().unwrap() * unit
    };
    let size_of = |p: &std::path::Path| -> f64 {
        walk(p).iter().filter(|f| f.is_file()).map(|f| fs::metadata(f).unwrap().len()).sum::<u64>() as f64
    };
    let at_full = size_of(&staging);

    run_ok(Command::new("mount").args(["-o", "remount,size=200m"]).arg(&mnt)).unwrap();
    let mut c = backup_cmd(d.path(), &staging, "job-full", &[&corpus], None).unwrap();
    c.args(["--pack-target-mib", "2"]);
    let o = run(&mut c);
    assert!(o.status.success(), "{}", text(&o));
    let more = size_of(&staging) - at_full;
    assert!(
        asked >= more * 0.5 && asked <= more * 2.0 + 3.0 * 1048576.0,
        "asked for {asked} more bytes; the set took {more} more"
    );
    assert!(text(&o).contains("were kept"), "the re-run resumes: {}", text(&o));
    assert!(verify(&staging, &[]).status.success());
}
