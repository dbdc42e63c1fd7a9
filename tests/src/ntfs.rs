//! NTFS disk images made with the real tools, for tests: `mkntfs` formats, `ntfs-3g` mounts,
//! the files go in through the mount, and the image is unmounted before anyone reads it.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

fn run(cmd: &mut Command) -> Result<()> {
    let o = cmd.output().with_context(|| format!("{cmd:?} (is ntfs-3g installed? tests/run.sh installs it)"))?;
    anyhow::ensure!(
        o.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    Ok(())
}

/// An image of `mib` MiB at `path`, formatted NTFS with 512-byte sectors.
pub fn format(path: &Path, mib: u64) -> Result<PathBuf> {
    std::fs::File::create(path)?.set_len(mib << 20)?;
    run(Command::new("mkntfs").args(["-F", "-Q", "-s", "512", "-L", "seedship"]).arg(path))?;
    Ok(path.to_path_buf())
}

/// Mounts `image` with ntfs-3g and writes `files` (`/`-separated paths from the volume's root)
/// through the mount, then unmounts.
pub fn write(image: &Path, files: &[(&str, &[u8])]) -> Result<()> {
    let mnt = image.with_extension("mnt");
    std::fs::create_dir_all(&mnt)?;
    run(Command::new("ntfs-3g").arg(image).arg(&mnt))?;
    let wrote = (|| -> Result<()> {
        for (path, data) in files {
            let p = mnt.join(path);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&p, data)?;
        }
        Ok(())
    })();
    run(Command::new("umount").arg(&mnt))?;
    wrote
}
