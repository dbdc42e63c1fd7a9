//! The NTFS reader against volumes made by the real tools: `mkntfs` formats an image, `ntfs-3g`
//! mounts it and the files are written through the mount, then the image is read back raw.
//! Needs `mkntfs` and `ntfs-3g` (Debian's `ntfs-3g`; `tests/run.sh` installs it).

use std::path::{Path, PathBuf};
use std::process::Command;

use md5::{Digest, Md5};
use seedship_disk::azure::manifest::{self, Access, DriveManifest, ManifestBlob};
use seedship_disk::ntfs::{Entry, Volume, VolumeError};

fn run(cmd: &mut Command) {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e} (is ntfs-3g installed?)"));
    assert!(
        o.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A fresh NTFS image of `mib` MiB with 512-byte sectors.
fn image(dir: &Path, mib: u64) -> PathBuf {
    let p = dir.join("disk.img");
    std::fs::File::create(&p).unwrap().set_len(mib << 20).unwrap();
    run(Command::new("mkntfs").args(["-F", "-Q", "-s", "512", "-L", "seedship"]).arg(&p));
    p
}

/// Mounts `img` with ntfs-3g, lets `f` write through the mount, unmounts.
fn through_mount(img: &Path, f: impl FnOnce(&Path)) {
    let m = img.with_extension("mnt");
    std::fs::create_dir_all(&m).unwrap();
    run(Command::new("ntfs-3g").arg(img).arg(&m));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&m)));
    run(Command::new("umount").arg(&m));
    r.unwrap();
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    let mut x = seed as u32 | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn md5(b: &[u8]) -> String {
    hex::encode_upper(Md5::digest(b))
}

fn read_md5(v: &mut Volume, path: &str) -> String {
    let mut h = Md5::new();
    v.read(path, |b| h.update(b)).unwrap();
    hex::encode_upper(h.finalize())
}

#[test]
fn files_written_through_ntfs_3g_read_back_raw_with_their_manifest_and_a_flipped_bit_shows() {
    let d = tempfile::tempdir().unwrap();
    let img = image(d.path(), 64);
    let big = pattern(5 << 20, 7);
    let small = b"hello, datacenter\n".to_vec();
    let mut blocks = manifest::Blocks::default();
    blocks.update(&big);
    let (bl, len) = blocks.finish();
    let m = DriveManifest {
        drive_id: "SS-TEST0001".into(),
        access: Access::ContainerSas("?sv=2024&sr=c&sig=x".into()),
        client_creator: "seedship test".into(),
        blobs: vec![ManifestBlob {
            blob_path: "import-sd-1/data/00/big.bin".into(),
            file_path: "\\seedship\\data\\00\\big.bin".into(),
            length: len,
            blocks: bl,
        }],
    };
    let xml = m.to_xml();
    through_mount(&img, |mnt| {
        std::fs::create_dir_all(mnt.join("seedship/data/00")).unwrap();
        std::fs::write(mnt.join("seedship/data/00/big.bin"), &big).unwrap();
        std::fs::write(mnt.join("seedship/small.txt"), &small).unwrap();
        std::fs::write(mnt.join("seedship/empty"), b"").unwrap();
        std::fs::write(mnt.join("DriveManifest.xml"), xml.as_bytes()).unwrap();
    });

    let mut v = Volume::open(&img).unwrap();
    let files = v.files().unwrap();
    assert_eq!(
        files,
        vec![
            Entry { path: "\\DriveManifest.xml".into(), size: xml.len() as u64 },
            Entry { path: "\\seedship\\data\\00\\big.bin".into(), size: big.len() as u64 },
            Entry { path: "\\seedship\\empty".into(), size: 0 },
            Entry { path: "\\seedship\\small.txt".into(), size: small.len() as u64 },
        ]
    );
    assert_eq!(read_md5(&mut v, "\\seedship\\data\\00\\big.bin"), md5(&big));
    assert_eq!(v.read_all("\\seedship\\small.txt", 1024).unwrap(), small);
    let back = v.read_all(manifest::MANIFEST_PATH, manifest::MAX_MANIFEST_BYTES).unwrap();
    assert_eq!(manifest::manifest_hash(&back), manifest::manifest_hash(xml.as_bytes()));
    assert_eq!(DriveManifest::parse(&back).unwrap(), m);
    assert!(matches!(v.read("\\seedship\\nope", |_| {}), Err(VolumeError::NotFound(_))));
    assert!(v.read_all("\\seedship\\small.txt", 4).is_err(), "a bound on what is read");

    // Another NTFS implementation lists the same volume.
    let o = Command::new("ntfsls").arg("-R").arg(&img).output().unwrap();
    let listed = String::from_utf8_lossy(&o.stdout);
    assert!(listed.contains("DriveManifest.xml") && listed.contains("big.bin"), "{listed}");

    // One bit flipped in the image, inside big.bin's data: the read-back sees it.
    let mut raw = std::fs::read(&img).unwrap();
    let at = raw.windows(64).position(|w| w == &big[1_000_000..1_000_064]).expect("the data is on the image");
    raw[at + 10] ^= 0x01;
    std::fs::write(&img, &raw).unwrap();
    let mut v = Volume::open(&img).unwrap();
    assert_ne!(read_md5(&mut v, "\\seedship\\data\\00\\big.bin"), md5(&big));
}

#[test]
fn the_first_partition_of_an_mbr_or_gpt_disk_is_read_and_anything_else_is_volume_not_ntfs() {
    let d = tempfile::tempdir().unwrap();
    let img = image(d.path(), 16);
    through_mount(&img, |mnt| std::fs::write(mnt.join("a.txt"), b"a").unwrap());
    let volume = std::fs::read(&img).unwrap();
    let lba = 2048u32;

    // An MBR with one NTFS partition at 1 MiB.
    let mut mbr = vec![0u8; (lba as usize) * 512];
    mbr[446 + 4] = 0x07;
    mbr[446 + 8..446 + 12].copy_from_slice(&lba.to_le_bytes());
    mbr[446 + 12..446 + 16].copy_from_slice(&((volume.len() / 512) as u32).to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xAA;
    let mbr_img = d.path().join("mbr.img");
    std::fs::write(&mbr_img, [mbr.clone(), volume.clone()].concat()).unwrap();
    let mut v = Volume::open(&mbr_img).unwrap();
    assert_eq!(v.read_all("\\a.txt", 10).unwrap(), b"a");

    // A GPT (protective MBR, header at LBA 1, entries at LBA 2) with a basic data partition.
    let mut gpt = vec![0u8; (lba as usize) * 512];
    gpt[446 + 4] = 0xEE;
    gpt[510] = 0x55;
    gpt[511] = 0xAA;
    gpt[512..520].copy_from_slice(b"EFI PART");
    gpt[512 + 72..512 + 80].copy_from_slice(&2u64.to_le_bytes());
    gpt[512 + 80..512 + 84].copy_from_slice(&128u32.to_le_bytes());
    gpt[512 + 84..512 + 88].copy_from_slice(&128u32.to_le_bytes());
    let basic = [0xA2, 0xA0, 0xD0, 0xEB, 0xE5, 0xB9, 0x33, 0x44, 0x87, 0xC0, 0x68, 0xB6, 0xB7, 0x26, 0x99, 0xC7];
    gpt[1024..1040].copy_from_slice(&basic);
    gpt[1024 + 32..1024 + 40].copy_from_slice(&(lba as u64).to_le_bytes());
    let gpt_img = d.path().join("gpt.img");
    std::fs::write(&gpt_img, [gpt, volume.clone()].concat()).unwrap();
    assert_eq!(Volume::open(&gpt_img).unwrap().read_all("\\a.txt", 10).unwrap(), b"a");

    // Not NTFS: a blank disk, a first partition of another kind, a table pointing nowhere.
    let blank = d.path().join("blank.img");
    std::fs::write(&blank, vec![0u8; 1 << 20]).unwrap();
    let mut fat = mbr.clone();
    fat[446 + 4] = 0x0C;
    let fat_img = d.path().join("fat.img");
    std::fs::write(&fat_img, [fat, vec![0u8; 1 << 20]].concat()).unwrap();
    let short = d.path().join("short.img");
    std::fs::write(&short, &mbr[..512]).unwrap();
    for p in [&blank, &fat_img, &short] {
        let e = Volume::open(p).err().expect("refused");
        assert!(e.to_string().starts_with("VolumeNotNtfs"), "{}: {e}", p.display());
    }
}
