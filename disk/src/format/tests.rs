use std::collections::HashMap;

use super::*;
use crate::plan::{DiskSpec, FileSpec, plan};

const MIB: u64 = 1 << 20;

fn data(n: usize, mut seed: u64) -> Vec<u8> {
    (0..n)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 32) as u8
        })
        .collect()
}

struct Set {
    files: HashMap<String, Vec<u8>>,
    specs: Vec<FileSpec>,
}

fn staging() -> Set {
    let mut files = HashMap::new();
    files.insert("config".to_string(), b"{\"format\":\"seedship-repository\"}".to_vec());
    files.insert("data/aa/pack-1".to_string(), data((20 * MIB) as usize, 1));
    files.insert("data/bb/pack-2".to_string(), data((13 * MIB + 5) as usize, 2));
    files.insert("index/empty".to_string(), Vec::new());
    files.insert("snapshots/s".to_string(), data(4000, 3));
    let mut specs: Vec<FileSpec> =
        files.iter().map(|(p, b)| FileSpec { path: p.clone(), size: b.len() as u64 }).collect();
    specs.sort_by(|a, b| a.path.cmp(&b.path));
    Set { files, specs }
}

fn info(pos: u32, id: &str) -> DiskInfo {
    DiskInfo { drive_id: id.into(), seed_id: "sd-1".into(), job_name: "job-1".into(), position: pos, set_size: 3 }
}

/// Prepares one disk, stopping after `stop` extents (a simulated crash) when given.
fn prepare(
    set: &Set,
    dp: &crate::plan::DiskPlan,
    path: &Path,
    pw: &RecoveryPassword,
    stop: Option<u64>,
) -> Option<Sealed> {
    let sizes: HashMap<String, u64> = set.specs.iter().map(|f| (f.path.clone(), f.size)).collect();
    let mut w = if path.exists() {
        DiskWriter::resume(path, pw).unwrap().0
    } else {
        DiskWriter::create(path, dp.capacity, &info(dp.position, &dp.id), pw).unwrap()
    };
    let mut written = 0u64;
    let read = |p: &str, off: u64, len: usize| -> std::io::Result<Vec<u8>> {
        Ok(set.files[p][off as usize..off as usize + len].to_vec())
    };
    if let Some(stop) = stop {
        // Write extents until the "crash": the writer is dropped without sealing.
        let r = write_plan(&mut w, dp, &sizes, read, |_, fresh| {
            written += u64::from(fresh);
            written < stop
        });
        assert!(matches!(r, Err(DiskError::Source { .. })), "the writer stops when told to");
        return None;
    }
    let parts = write_plan(&mut w, dp, &sizes, read, |_, _| true).unwrap();
    let m = DriveManifest {
        format: "seedship-drive-manifest".into(),
        version: 1,
        drive_id: dp.id.clone(),
        seed_id: "sd-1".into(),
        job_name: "job-1".into(),
        position: dp.position,
        set_size: 3,
        container: "seeds".into(),
        parts,
    };
    Some(w.seal(&m).unwrap())
}

#[test]
fn a_spanning_set_decodes_to_every_staging_file_byte_for_byte() {
    let d = tempfile::tempdir().unwrap();
    let set = staging();
    let disks: Vec<DiskSpec> = (0..3).map(|i| DiskSpec { id: format!("D{i}"), capacity: 32 * MIB }).collect();
    let p = plan(&set.specs, &disks).unwrap();
    let pws: Vec<RecoveryPassword> = (0..3).map(|i| RecoveryPassword::from_bytes(&[i as u8 + 1; 16])).collect();
    let mut sealed = Vec::new();
    for (i, dp) in p.disks.iter().enumerate() {
        sealed.push(prepare(&set, dp, &d.path().join(format!("d{i}.img")), &pws[i], None).unwrap());
    }
    assert!(p.disks.iter().filter(|x| !x.parts.is_empty()).count() >= 2, "the set must span disks");

    // An independent reader, with only the escrowed passwords, rebuilds every file.
    let mut rebuilt: HashMap<String, Vec<u8>> = HashMap::new();
    for i in 0..3 {
        let r = DiskReader::open(&d.path().join(format!("d{i}.img")), &pws[i]).unwrap();
        assert_eq!(r.header.position, i as u32 + 1);
        for (n, part) in r.manifest.parts.iter().enumerate() {
            let bytes = r.read_part(n).unwrap();
            let f = rebuilt.entry(part.path.clone()).or_insert_with(|| vec![0; part.blob_size as usize]);
            f[part.file_offset as usize..(part.file_offset + part.length) as usize].copy_from_slice(&bytes);
        }
        assert_eq!(sealed[i].manifest_md5.len(), 32);
        assert_eq!(sealed[i].header_sha256.len(), 64);
    }
    assert_eq!(rebuilt, set.files);

    // No key material on the disks: the passwords and derived keys appear nowhere.
    for (i, pw) in pws.iter().enumerate() {
        let raw = std::fs::read(d.path().join(format!("d{i}.img"))).unwrap();
        let keys = pw.keys();
        let text = pw.reveal();
        assert!(!raw.windows(32).any(|w| w == keys.encryption), "encryption key on disk");
        assert!(!raw.windows(55).any(|w| w == text.as_bytes()), "password on disk");
    }
}

#[test]
fn a_resumed_disk_is_byte_identical_to_an_uninterrupted_one() {
    let d = tempfile::tempdir().unwrap();
    let set = staging();
    let disks = vec![DiskSpec { id: "D0".into(), capacity: 64 * MIB }];
    let p = plan(&set.specs, &disks).unwrap();
    let pw = RecoveryPassword::from_bytes(&[9; 16]);
    let a = d.path().join("a.img");
    prepare(&set, &p.disks[0], &a, &pw, None).unwrap();
    for stop in [1u64, 3, 5] {
        let b = d.path().join(format!("b{stop}.img"));
        assert!(prepare(&set, &p.disks[0], &b, &pw, Some(stop)).is_none(), "the simulated crash happened");
        let (_, cp) = DiskWriter::resume(&b, &pw).unwrap();
        assert!(cp.extents < stop + CHECKPOINT_EXTENTS);
        prepare(&set, &p.disks[0], &b, &pw, None).unwrap();
        let (ba, bb) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        assert!(ba == bb, "disk resumed after {stop} extents differs from the uninterrupted one");
    }
}

#[test]
fn wrong_keys_foreign_and_used_disks_and_flipped_bits_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let set = staging();
    let p = plan(&set.specs, &[DiskSpec { id: "D0".into(), capacity: 64 * MIB }]).unwrap();
    let pw = RecoveryPassword::from_bytes(&[5; 16]);
    let img = d.path().join("d.img");
    let sealed = prepare(&set, &p.disks[0], &img, &pw, None).unwrap();
    // A reader gives the same drive-list fields as sealing did (a station resuming after the
    // seal reports them from the disk).
    assert_eq!(DiskReader::open(&img, &pw).unwrap().sealed().unwrap(), sealed);

    let other = RecoveryPassword::from_bytes(&[6; 16]);
    assert!(matches!(DiskReader::open(&img, &other), Err(DiskError::WrongKey { .. })));
    // A disk that already holds a seed is not overwritten.
    let e = DiskWriter::create(&img, 64 * MIB, &info(1, "D0"), &pw).err().unwrap();
    assert!(e.to_string().contains("already holds drive D0"), "{e}");
    // Something that is not a seedship disk.
    let junk = d.path().join("junk.img");
    std::fs::write(&junk, vec![0x5a; 8192]).unwrap();
    assert!(matches!(DiskReader::open(&junk, &pw), Err(DiskError::Foreign { .. })));
    // Probing tells blank, seedship and other disks apart; other data is never overwritten.
    let e = DiskWriter::create(&junk, 64 * MIB, &info(1, "DJ"), &pw).err().unwrap();
    assert!(e.to_string().contains("holds other data"), "{e}");
    assert!(probe(&junk).is_err());
    assert_eq!(probe(&img).unwrap().map(|h| h.drive_id), Some("D0".to_string()));
    let blank = d.path().join("blank.img");
    std::fs::File::create(&blank).unwrap().set_len(64 * MIB).unwrap();
    assert_eq!(probe(&blank).unwrap(), None);

    // An explicit wipe makes the disk usable for another seed, and says what was there.
    let reused = d.path().join("reused.img");
    std::fs::copy(&img, &reused).unwrap();
    let w = wipe(&reused, 64 * MIB, false).unwrap();
    assert_eq!(w.previous.map(|h| h.drive_id), Some("D0".to_string()));
    assert!(matches!(DiskReader::open(&reused, &pw), Err(DiskError::Foreign { .. })));
    DiskWriter::create(&reused, 64 * MIB, &info(1, "D9"), &other).unwrap();

    // A tampered header cannot make the reader allocate or read out of range.
    let tampered = d.path().join("tampered.img");
    std::fs::copy(&img, &tampered).unwrap();
    let f = OpenOptions::new().read(true).write(true).open(&tampered).unwrap();
    let mut h = read_header(&f, &tampered).unwrap();
    h.manifest_length = 1 << 40;
    f.write_all_at(&header_block(&h), 0).unwrap();
    let e = DiskReader::open(&tampered, &pw).err().unwrap().to_string();
    assert!(e.contains("out of range"), "{e}");

    // One flipped bit in an extent: the read-back names it.
    let r = DiskReader::open(&img, &pw).unwrap();
    let target = r.manifest.parts.iter().position(|x| x.length > MIB).unwrap();
    let at = r.manifest.parts[target].disk_offset + 100_000;
    drop(r);
    let f = OpenOptions::new().read(true).write(true).open(&img).unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ 1], at).unwrap();
    let r = DiskReader::open(&img, &pw).unwrap();
    let e = r.read_part(target).unwrap_err().to_string();
    assert!(e.contains("authentication failed") && e.contains("extent"), "{e}");
    // The read-back check catches it too, and passes every other part.
    let e = r.verify_part(target).unwrap_err().to_string();
    assert!(e.contains("authentication failed") && e.contains("extent"), "{e}");
    for i in (0..r.manifest.parts.len()).filter(|i| *i != target) {
        assert_eq!(r.verify_part(i).unwrap(), r.manifest.parts[i].length);
    }
}
