//! The NTFS media writer against real volumes: mkntfs, an ntfs-3g mount, the raw read-back.
//! Needs ntfs-3g (`deploy/debian/install.sh`, which `tests/run.sh` runs).

use std::io::Write;
use std::path::{Path, PathBuf};

use copy_agent::media::{self, DiskId, Journal, Layout};
use md5::{Digest, Md5};
use seedship_disk::azure::manifest::{self, Access, DriveManifest};
use seedship_disk::ntfs::Volume;
use sha2::Sha256;

fn pattern(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn image(dir: &Path, name: &str, mib: u64) -> PathBuf {
    let p = dir.join(name);
    std::fs::File::create(&p).unwrap().set_len(mib << 20).unwrap();
    media::format(&p, None).unwrap();
    p
}

fn id(layout: Layout) -> DiskId {
    DiskId {
        drive_id: "SS-MEDIA01".into(),
        seed_id: "sd-1".into(),
        job_name: "job-1".into(),
        position: 1,
        set_size: 1,
        layout,
        container: "import-sd-1".into(),
    }
}

#[test]
fn a_customer_disk_is_written_with_its_manifest_read_back_raw_and_a_change_is_caught() {
    let d = tempfile::tempdir().unwrap();
    let img = image(d.path(), "disk.img", 48);
    let files: Vec<(String, Vec<u8>)> = vec![
        ("data/00/pack-a".into(), pattern(9 << 20, 1)),
        ("data/01/pack-b".into(), pattern(123_457, 2)),
        ("manifest.json".into(), b"{\"files\":[]}".to_vec()),
    ];
    let m = media::mount(&img, &d.path().join("mnt")).unwrap();
    m.write_id(&id(Layout::CustomerDisk)).unwrap();
    let mut journal = Journal::load(d.path(), "SS-MEDIA01");
    let mut written = Vec::new();
    let mut moved = 0u64;
    for (path, data) in &files {
        let rel = Layout::CustomerDisk.file_path("import-sd-1", path);
        let w = m
            .write_file(
                &rel,
                data.len() as u64,
                true,
                |at, n| Ok(data[at as usize..at as usize + n].to_vec()),
                |n| moved += n,
                |sha| {
                    assert_eq!(sha, hex::encode(Sha256::digest(data)), "the SHA-256 of the bytes written");
                    Ok(hex::encode(Md5::digest(data)))
                },
            )
            .unwrap();
        journal.record(d.path(), path, &w).unwrap();
        written.push((path.clone(), w));
    }
    assert_eq!(moved, files.iter().map(|(_, d)| d.len() as u64).sum::<u64>(), "progress counts every byte");
    let (mpath, mhash) =
        m.write_manifest("SS-MEDIA01", Access::ContainerSas("?sv=1&sig=s".into()), "import-sd-1", &written).unwrap();
    assert_eq!(mpath, "\\DriveManifest.xml");
    m.unmount().unwrap();

    // Recognised without mounting; every file reads back raw; the manifest lists them.
    assert_eq!(media::probe(&img), Some(id(Layout::CustomerDisk)));
    let expect: Vec<(String, u64, String)> =
        written.iter().map(|(_, w)| (w.rel.clone(), w.length, w.md5.clone())).collect();
    assert_eq!(media::read_back(&img, &expect, Some(&mhash), |_| {}).unwrap(), Vec::<String>::new());
    let mut v = Volume::open(&img).unwrap();
    let xml = v.read_all("\\DriveManifest.xml", 1 << 20).unwrap();
    let parsed = DriveManifest::parse(&xml).unwrap();
    assert_eq!(parsed.drive_id, "SS-MEDIA01");
    assert_eq!(parsed.blobs[0].blob_path, "import-sd-1/data/00/pack-a");
    assert_eq!(parsed.blobs[0].file_path, "\\seedship\\data\\00\\pack-a");
    assert_eq!(parsed.blobs[0].blocks.len(), 3, "9 MiB in 4 MiB blocks");
    assert_eq!(manifest::manifest_hash(&xml), mhash);
    let listed = std::process::Command::new("ntfsls").arg("-R").arg(&img).output().unwrap();
    assert!(String::from_utf8_lossy(&listed.stdout).contains("pack-a"), "ntfsls lists the files");

    // Another program changes a file; a bit flips on the image: both are named.
    let m = media::mount(&img, &d.path().join("mnt")).unwrap();
    let mut f = std::fs::OpenOptions::new().append(true).open(d.path().join("mnt/seedship/data/01/pack-b")).unwrap();
    f.write_all(b"!").unwrap();
    f.sync_all().unwrap();
    drop(f);
    let xml_path = d.path().join("mnt/DriveManifest.xml");
    let edited =
        std::fs::read_to_string(&xml_path).unwrap().replace("<ClientCreator>seedship", "<ClientCreator>another");
    std::fs::write(&xml_path, edited).unwrap();
    m.unmount().unwrap();
    let mut raw = std::fs::read(&img).unwrap();
    let a = &files[0].1;
    let at = raw.windows(64).position(|w| w == &a[5_000_000..5_000_064]).expect("pack-a is on the image");
    raw[at + 1] ^= 0x80;
    std::fs::write(&img, raw).unwrap();
    let bad = media::read_back(&img, &expect, Some(&mhash), |_| {}).unwrap();
    assert_eq!(bad.len(), 3, "{bad:?}");
    assert!(bad[0].starts_with("\\seedship\\data\\00\\pack-a: MD5"), "{bad:?}");
    assert!(bad[1].contains("pack-b: 123458 bytes on the disk, 123457 written"), "{bad:?}");
    assert_eq!(bad[2], "\\DriveManifest.xml: changed since it was written");

    // The journal survives the writer and says which files need not be written again.
    let journal = Journal::load(d.path(), "SS-MEDIA01");
    assert_eq!(journal.files.len(), 3);
    let m = media::mount(&img, &d.path().join("mnt")).unwrap();
    assert!(journal.done("data/00/pack-a", &m).is_some(), "same size: kept");
    assert!(journal.done("data/01/pack-b", &m).is_none(), "changed size: written again");
    assert!(journal.done("nope", &m).is_none());
    m.unmount().unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(Journal::path(d.path(), "SS-MEDIA01")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn a_data_box_disk_gets_the_blockblob_layout_and_a_failing_source_is_an_error() {
    let d = tempfile::tempdir().unwrap();
    let img = image(d.path(), "disk.img", 16);
    let m = media::mount(&img, &d.path().join("mnt")).unwrap();
    m.write_id(&id(Layout::DataboxDisk)).unwrap();
    let data = pattern(300_000, 3);
    let rel = Layout::DataboxDisk.file_path("import-sd-1", "data/00/x");
    assert_eq!(rel, "\\BlockBlob\\import-sd-1\\data\\00\\x");
    let md5 = hex::encode(Md5::digest(&data));
    let w = m
        .write_file(
            &rel,
            data.len() as u64,
            false,
            |at, n| Ok(data[at as usize..at as usize + n].to_vec()),
            |_| {},
            |_| Ok(md5.clone()),
        )
        .unwrap();
    assert!(w.blocks.is_empty(), "no drive manifest, no block list");
    let e = m
        .write_file(
            "\\BlockBlob\\import-sd-1\\y",
            10,
            false,
            |_, _| Err("staging is gone".into()),
            |_| {},
            |_| Ok(String::new()),
        )
        .unwrap_err();
    assert!(e.to_string().contains("staging is gone"), "{e}");
    let e = m
        .write_file("\\BlockBlob\\import-sd-1\\z", 10, false, |_, _| Ok(vec![0; 3]), |_| {}, |_| Ok(String::new()))
        .unwrap_err();
    assert!(e.to_string().contains("3 of 10 bytes"), "{e}");
    let e = m
        .write_file(
            "\\BlockBlob\\import-sd-1\\w",
            10,
            false,
            |_, _| Ok(vec![0; 10]),
            |_| {},
            |_| Err("w changed since registration".into()),
        )
        .unwrap_err();
    assert!(e.to_string().contains("changed since registration"), "{e}");
    m.unmount().unwrap();
    assert_eq!(media::read_back(&img, &[(w.rel, w.length, w.md5)], None, |_| {}).unwrap(), Vec::<String>::new());
    let files = Volume::open(&img).unwrap().files().unwrap();
    assert!(files.iter().any(|f| f.path == "\\BlockBlob\\import-sd-1\\data\\00\\x"), "{files:?}");

    // Not NTFS, or NTFS without an identity: not a seedship disk.
    let blank = d.path().join("blank.img");
    std::fs::File::create(&blank).unwrap().set_len(4 << 20).unwrap();
    assert_eq!(media::probe(&blank), None);
    let other = image(d.path(), "other.img", 8);
    assert_eq!(media::probe(&other), None);
}
