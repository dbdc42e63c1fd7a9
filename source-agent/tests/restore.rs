//! The restore read path against a real staging set: trees in packs of their own, only the
//! packs (and ranges) a selection needs are read, and a damaged pack costs only its files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use seedship_repo::restore::{LocalPacks, PackSource, RestoreOptions, RestoreProgress, restore_from};
use seedship_repo::{KdfParams, Kind, Repository, Unlock};
use source_agent::backup::{BackupRequest, run};
use source_agent::seedfile::SeedTarget;

/// Reads through to the staging set's packs, recording what was read; optionally damages
/// every read of one pack.
struct Recording<'a> {
    inner: LocalPacks<'a>,
    reads: Mutex<BTreeMap<String, u64>>,
    damage: Option<String>,
}

impl PackSource for Recording<'_> {
    fn read(&self, pack: &str, offset: u64, len: u64, buf: &mut Vec<u8>) -> seedship_repo::Result<()> {
        self.inner.read(pack, offset, len, buf)?;
        *self.reads.lock().unwrap().entry(pack.to_string()).or_default() += len;
        if self.damage.as_deref() == Some(pack) {
            let mid = buf.len() / 2;
            buf[mid] ^= 0x40;
        }
        Ok(())
    }

    fn parallel(&self) -> usize {
        3
    }
}

/// Files of random bytes (incompressible, so the packs fill up) under `dir`.
fn files(dir: &Path, n: usize, size: usize, seed: u64) {
    std::fs::create_dir_all(dir).unwrap();
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for i in 0..n {
        let data: Vec<u8> = (0..size)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        std::fs::write(dir.join(format!("f{i:02}.bin")), data).unwrap();
    }
}

fn content(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.strip_prefix(dir).unwrap().to_path_buf(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn a_restore_reads_only_what_it_needs_and_a_damaged_pack_costs_only_its_files() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    files(&src.join("a"), 12, 200_000, 1);
    files(&src.join("b"), 12, 200_000, 2);
    // Large enough for runs written with O_DIRECT.
    files(&src.join("c"), 2, 3_000_000, 3);
    std::fs::write(src.join("empty"), b"").unwrap();
    let staging = t.path().join("staging");
    let req = BackupRequest {
        sources: vec![src.clone()],
        staging: staging.clone(),
        target: SeedTarget {
            job_name: "job-r".into(),
            storage_account: "acct".into(),
            container: "seed".into(),
            subscription_id: "sub".into(),
            location: "westeurope".into(),
            staging_share: staging.display().to_string(),
            target_site: None,
            target_station: None,
        },
        passphrase: "restore test".into(),
        compression_level: 3,
        time: None,
        workers: 2,
        quiet: true,
        kdf: KdfParams { memory_kib: 1024, iterations: 1, parallelism: 1 },
        pack_target_bytes: 512 << 10,
    };
    run(&req).unwrap();
    let repo = Repository::open(&staging, &Unlock::Passphrase("restore test".into())).unwrap();
    let (index, _) = repo.load_index().unwrap();
    let (_, snap) = repo.snapshots().unwrap().pop().unwrap();

    // Trees have packs of their own.
    let mut kinds: BTreeMap<[u8; 32], BTreeSet<u8>> = BTreeMap::new();
    for l in index.blobs.values() {
        kinds.entry(l.pack).or_default().insert(l.kind as u8);
    }
    assert!(kinds.len() >= 6, "several packs: {}", kinds.len());
    assert!(kinds.values().all(|k| k.len() == 1), "no pack mixes trees and data: {kinds:?}");
    let tree_packs: BTreeSet<String> =
        kinds.iter().filter(|(_, k)| k.contains(&(Kind::Tree as u8))).map(|(p, _)| hex::encode(p)).collect();
    assert!(!tree_packs.is_empty());

    // The whole snapshot: identical, every pack read once.
    let rec = Recording { inner: LocalPacks(&staging), reads: Mutex::default(), damage: None };
    let full = t.path().join("full");
    let progress = RestoreProgress::default();
    let st = restore_from(repo.crypto(), &index, &rec, &snap, &full, &RestoreOptions::default(), &progress).unwrap();
    let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!((load(&progress.files), load(&progress.total_files)), (27, 27), "progress counts every file");
    let total = 24 * 200_000 + 2 * 3_000_000;
    assert_eq!((load(&progress.bytes), load(&progress.total_bytes)), (total, total));
    // Through the page cache only: the same files.
    let cached = t.path().join("cached");
    let opts = RestoreOptions { page_cache: true, ..Default::default() };
    let again = RestoreProgress::default();
    let st2 = restore_from(repo.crypto(), &index, &LocalPacks(&staging), &snap, &cached, &opts, &again).unwrap();
    assert!(st2.failed.is_empty(), "{:?}", st2.failed);
    assert_eq!(content(&cached.join("src")), content(&src));
    assert!(st.failed.is_empty(), "{:?}", st.failed);
    assert_eq!(content(&full.join("src")), content(&src));
    assert_eq!(st.files, 27);
    assert_eq!(st.packs_read, kinds.len() as u64 - tree_packs.len() as u64, "data packs, each read once");
    let all_read = rec.reads.lock().unwrap().clone();
    assert_eq!(all_read.len(), kinds.len(), "every pack read");

    // One folder: only the packs holding its chunks (and the trees) are read.
    let rec = Recording { inner: LocalPacks(&staging), reads: Mutex::default(), damage: None };
    let part = t.path().join("part");
    let opts = RestoreOptions { include: vec!["src/a".into()], ..Default::default() };
    let st = restore_from(repo.crypto(), &index, &rec, &snap, &part, &opts, &RestoreProgress::default()).unwrap();
    assert!(st.failed.is_empty(), "{:?}", st.failed);
    assert_eq!(content(&part.join("src/a")), content(&src.join("a")));
    assert!(!part.join("src/b").exists() && !part.join("src/empty").exists());
    let read = rec.reads.lock().unwrap().clone();
    assert!(read.len() < all_read.len(), "fewer packs than the whole snapshot: {} of {}", read.len(), all_read.len());
    assert!(st.bytes_read < all_read.values().sum::<u64>() * 3 / 4, "{} bytes read", st.bytes_read);

    // A damaged data pack: its files are named and removed; every other file is restored.
    let victim = all_read.keys().find(|p| !tree_packs.contains(*p)).unwrap().clone();
    let rec = Recording { inner: LocalPacks(&staging), reads: Mutex::default(), damage: Some(victim.clone()) };
    let dmg = t.path().join("damaged");
    let st =
        restore_from(repo.crypto(), &index, &rec, &snap, &dmg, &RestoreOptions::default(), &RestoreProgress::default())
            .unwrap();
    assert!(!st.failed.is_empty());
    for (p, why) in &st.failed {
        assert!(why.contains(&victim) && why.contains("damaged"), "{}: {why}", p.display());
        assert!(!p.exists(), "{} is not left half-written", p.display());
    }
    let got = content(&dmg.join("src"));
    let want = content(&src);
    assert_eq!(got.len() + st.failed.len(), want.len());
    for (p, data) in &got {
        assert_eq!(Some(data), want.get(p), "{} restored intact", p.display());
    }
}

/// Many small files (each its own chunk or two) in one staging set with large packs, and the
/// repository opened.
fn many_small(t: &Path) -> (PathBuf, PathBuf) {
    let src = t.join("src");
    files(&src.join("d"), 60, 40_000, 7);
    let staging = t.join("staging");
    let req = BackupRequest {
        sources: vec![src.clone()],
        staging: staging.clone(),
        target: SeedTarget {
            job_name: "job-d".into(),
            storage_account: "acct".into(),
            container: String::new(),
            subscription_id: "sub".into(),
            location: "westeurope".into(),
            staging_share: staging.display().to_string(),
            target_site: None,
            target_station: None,
        },
        passphrase: "damage test".into(),
        compression_level: 3,
        time: None,
        workers: 2,
        quiet: true,
        kdf: KdfParams { memory_kib: 1024, iterations: 1, parallelism: 1 },
        pack_target_bytes: 4 << 20,
    };
    run(&req).unwrap();
    (src, staging)
}

/// The data pack holding the most file data, and its length.
fn biggest_data_pack(staging: &Path) -> (PathBuf, u64) {
    let repo = Repository::open(staging, &Unlock::Passphrase("damage test".into())).unwrap();
    let (index, _) = repo.load_index().unwrap();
    let mut by_pack: BTreeMap<[u8; 32], u64> = BTreeMap::new();
    for l in index.blobs.values().filter(|l| l.kind == Kind::Data) {
        *by_pack.entry(l.pack).or_default() += l.length as u64;
    }
    let (pack, _) = by_pack.iter().max_by_key(|(_, n)| **n).unwrap();
    let path = seedship_repo::layout::pack_path(staging, &hex::encode(pack));
    let len = std::fs::metadata(&path).unwrap().len();
    (path, len)
}

fn restore_all(staging: &Path, target: &Path, overwrite: bool) -> seedship_repo::restore::RestoreStats {
    let repo = Repository::open(staging, &Unlock::Passphrase("damage test".into())).unwrap();
    let (index, _) = repo.load_index().unwrap();
    let (_, snap) = repo.snapshots().unwrap().pop().unwrap();
    let opts = RestoreOptions { overwrite, ..Default::default() };
    restore_from(repo.crypto(), &index, &LocalPacks(staging), &snap, target, &opts, &RestoreProgress::default())
        .unwrap()
}

/// A damaged pack costs only the files whose chunks are damaged: a tail cut short, a run of
/// bytes in the middle overwritten, one flipped bit. Every file restored is right.
#[test]
fn a_damaged_pack_costs_only_the_files_whose_chunks_are_damaged() {
    for damage in ["tail cut", "middle cut", "flipped bit"] {
        let t = tempfile::tempdir().unwrap();
        let (src, staging) = many_small(t.path());
        let (pack, len) = biggest_data_pack(&staging);
        match damage {
            "tail cut" => {
                let f = std::fs::OpenOptions::new().write(true).open(&pack).unwrap();
                f.set_len(len - (256 << 10)).unwrap();
            }
            "middle cut" => {
                use std::os::unix::fs::FileExt;
                let f = std::fs::OpenOptions::new().write(true).open(&pack).unwrap();
                f.write_all_at(&vec![0u8; 64 << 10], len / 2).unwrap();
            }
            _ => {
                let mut b = std::fs::read(&pack).unwrap();
                b[(len / 3) as usize] ^= 0x01;
                std::fs::write(&pack, b).unwrap();
            }
        }
        let target = t.path().join("restored");
        let st = restore_all(&staging, &target, false);
        let want = content(&src);
        let got = content(&target.join("src"));
        // What came back is right; what did not is listed.
        for (p, data) in &got {
            assert_eq!(want.get(p), Some(data), "{damage}: {} restored wrong", p.display());
        }
        let lost = want.len() - got.len();
        assert_eq!(lost, st.failed.len(), "{damage}: every lost file is listed: {:?}", st.failed);
        match damage {
            // 256 KiB of 40 KB chunks: at most 8 files, and the rest of the pack is saved.
            "tail cut" => assert!((1..=8).contains(&lost), "{damage}: {lost} of {} lost", want.len()),
            "middle cut" => assert!((1..=3).contains(&lost), "{damage}: {lost} of {} lost", want.len()),
            _ => assert_eq!(lost, 1, "{damage}: one flipped bit costs one file"),
        }
        eprintln!("{damage}: {} of {} files restored", got.len(), want.len());
    }
}

/// Entries that cannot be restored (a directory where the snapshot has a file, a name too
/// long for the file system under the target) are listed, and every other file is restored.
#[test]
fn a_restore_with_conflicts_finishes_every_other_file() {
    let t = tempfile::tempdir().unwrap();
    let (src, staging) = many_small(t.path());
    let target = t.path().join("restored");
    // A directory in the way of one file.
    std::fs::create_dir_all(target.join("src/d/f03.bin")).unwrap();
    let st = restore_all(&staging, &target, true);
    let want = content(&src);
    let got = content(&target.join("src"));
    assert_eq!(st.failed.len(), 1, "{:?}", st.failed);
    assert!(st.failed[0].0.ends_with("src/d/f03.bin") && st.failed[0].1.contains("directory"), "{:?}", st.failed);
    assert_eq!(got.len(), want.len() - 1, "every other file is restored");
}

/// One flipped bit in an index file blocks nothing for long: the index is rebuilt from the
/// packs, and the restore is whole.
#[test]
fn a_damaged_index_is_rebuilt_from_the_packs() {
    let t = tempfile::tempdir().unwrap();
    let (src, staging) = many_small(t.path());
    let idx = std::fs::read_dir(staging.join("index")).unwrap().next().unwrap().unwrap().path();
    let mut b = std::fs::read(&idx).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 0x08;
    std::fs::write(&idx, b).unwrap();
    let repo = Repository::open(&staging, &Unlock::Passphrase("damage test".into())).unwrap();
    let e = repo.load_index().unwrap_err().to_string();
    assert!(e.contains("index file"), "{e}");
    let (packs, blobs) = repo.rebuild_index().unwrap();
    assert!(packs >= 1 && blobs >= 60, "{packs} packs, {blobs} blobs");
    let target = t.path().join("restored");
    let st = restore_all(&staging, &target, false);
    assert!(st.failed.is_empty(), "{:?}", st.failed);
    assert_eq!(content(&target.join("src")), content(&src));
}
