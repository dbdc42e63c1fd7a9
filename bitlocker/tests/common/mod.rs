//! What the BitLocker tests share: plain NTFS images made with the real tools, and data.

use std::path::{Path, PathBuf};
use std::process::Command;

use seedship_bitlocker::volume::Layout;

/// A plain NTFS volume (mkntfs, 512-byte sectors) on an image of `size` bytes at
/// `dir/disk.img`, ending where BitLocker's tail begins, holding `files` (written through an
/// ntfs-3g mount, then unmounted).
pub fn ntfs_image<N: AsRef<str>>(dir: &Path, size: u64, files: &[(N, Vec<u8>)]) -> PathBuf {
    let img = dir.join("disk.img");
    std::fs::File::create(&img).unwrap().set_len(size).unwrap();
    let ok = |c: &mut Command| {
        let o = c.output().unwrap_or_else(|e| panic!("{c:?}: {e} (deploy/debian/install.sh installs it)"));
        assert!(o.status.success(), "{c:?}: {}", String::from_utf8_lossy(&o.stderr));
    };
    ok(Command::new("mkntfs")
        .args(["-F", "-Q", "-s", "512", "-L", "seedship"])
        .arg(&img)
        .arg(Layout::ntfs_sectors(size).to_string()));
    let mnt = dir.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    ok(Command::new("ntfs-3g").arg(&img).arg(&mnt));
    for (name, data) in files {
        let p = mnt.join(name.as_ref());
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
    ok(Command::new("umount").arg(&mnt));
    img
}

/// `n` bytes of a xorshift sequence from `seed`.
pub fn pattern(n: usize, seed: u32) -> Vec<u8> {
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
