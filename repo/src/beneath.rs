//! Files beneath a root that no name from outside can leave.
//!
//! Names that come from a snapshot, a seed manifest or another machine are resolved from an
//! open handle of the root with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`: a `..` that
//! would climb out, an absolute name, or a symbolic link anywhere on the way (one already in
//! the target, or one a forged snapshot made a moment before) is refused by the kernel rather
//! than followed. Entries are made, changed and removed relative to their parent directory's
//! handle (`mkdirat`, `symlinkat`, `linkat`, `unlinkat`, `fchownat(AT_SYMLINK_NOFOLLOW)`), and
//! a regular file's owner, mode and times are set on its open handle, so nothing set ever
//! lands on what a link points to.
//!
//! Needs Linux 5.6 or later (openat2).

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};

/// An open root directory; every method takes a path relative to it.
#[derive(Debug)]
pub struct Beneath {
    fd: OwnedFd,
    path: PathBuf,
}

fn errno(e: Errno) -> io::Error {
    io::Error::from(e)
}

/// Why a name was refused: the kernel's answer, said in our words.
fn refused(path: &Path, e: Errno) -> io::Error {
    match e {
        Errno::ELOOP => io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{}: a symbolic link is on the way; it is not followed (names stay inside their root)",
                path.display()
            ),
        ),
        Errno::EXDEV => io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: the name leads outside the root; refused", path.display()),
        ),
        Errno::ENOSYS => io::Error::other(
            "this kernel has no openat2 (Linux 5.6 or later is needed to keep names inside their root)",
        ),
        e => errno(e),
    }
}

/// Checks that `rel` is a plain relative name: no root, no `.` or `..`, not empty. Names
/// from outside are checked here first, so the error says which name and why before the
/// kernel is asked.
pub fn check_relative(rel: &Path) -> io::Result<()> {
    if rel.as_os_str().is_empty() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "an empty name"));
    }
    for c in rel.components() {
        match c {
            Component::Normal(_) => {}
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{:?} is not a plain relative name (no '/', '.' or '..' parts allowed)", rel),
                ));
            }
        }
    }
    Ok(())
}

impl Beneath {
    /// Opens `root` (the caller's own choice: it may itself be reached through links).
    pub fn open(root: &Path) -> io::Result<Beneath> {
        let fd = nix::fcntl::open(root, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|e| io::Error::new(errno(e).kind(), format!("{}: {}", root.display(), errno(e))))?;
        Ok(Beneath { fd, path: root.to_path_buf() })
    }

    /// The root as it was opened.
    pub fn root(&self) -> &Path {
        &self.path
    }

    /// `rel` under the root, for messages.
    pub fn display(&self, rel: &Path) -> PathBuf {
        self.path.join(rel)
    }

    fn how(flags: OFlag, mode: u32) -> OpenHow {
        OpenHow::new().flags(flags | OFlag::O_CLOEXEC).mode(Mode::from_bits_truncate(mode)).resolve(
            ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS,
        )
    }

    fn openat2(&self, rel: &Path, flags: OFlag, mode: u32) -> io::Result<OwnedFd> {
        let name: &Path = if rel.as_os_str().is_empty() { Path::new(".") } else { rel };
        nix::fcntl::openat2(self.fd.as_fd(), name, Self::how(flags, mode)).map_err(|e| refused(&self.display(rel), e))
    }

    /// Opens a file beneath the root (`O_NOFOLLOW` is implied for every part of the name).
    pub fn open_file(&self, rel: &Path, flags: OFlag, mode: u32) -> io::Result<File> {
        check_relative(rel)?;
        Ok(File::from(self.openat2(rel, flags, mode)?))
    }

    /// Opens a file beneath the root for reading.
    pub fn read(&self, rel: &Path) -> io::Result<File> {
        self.open_file(rel, OFlag::O_RDONLY, 0)
    }

    /// A handle of directory `rel` ("" for the root) to make and change entries in.
    pub fn dir(&self, rel: &Path) -> io::Result<OwnedFd> {
        if !rel.as_os_str().is_empty() {
            check_relative(rel)?;
        }
        self.openat2(rel, OFlag::O_PATH | OFlag::O_DIRECTORY, 0)
    }

    /// The handle of `rel`'s parent directory and `rel`'s last name.
    fn parent(&self, rel: &Path) -> io::Result<(OwnedFd, OsString)> {
        check_relative(rel)?;
        let name = rel.file_name().map(OsStr::to_os_string).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("{} has no name", self.display(rel).display()))
        })?;
        let dir = self.dir(rel.parent().unwrap_or(Path::new("")))?;
        Ok((dir, name))
    }

    /// What is at `rel`, without following a link there; `None` when nothing is.
    pub fn lstat(&self, rel: &Path) -> io::Result<Option<FileStat>> {
        let (dir, name) = self.parent(rel)?;
        match nix::sys::stat::fstatat(&dir, name.as_os_str(), nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(st)),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(errno(e)),
        }
    }

    /// Makes directory `rel`; `Ok(false)` when a directory is already there. Anything else
    /// there (a file, a link) is an error naming it.
    pub fn mkdir(&self, rel: &Path, mode: u32) -> io::Result<bool> {
        let (dir, name) = self.parent(rel)?;
        match nix::sys::stat::mkdirat(&dir, name.as_os_str(), Mode::from_bits_truncate(mode)) {
            Ok(()) => Ok(true),
            Err(Errno::EEXIST) => {
                let st = nix::sys::stat::fstatat(&dir, name.as_os_str(), nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
                    .map_err(errno)?;
                match SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT {
                    SFlag::S_IFDIR => Ok(false),
                    SFlag::S_IFLNK => Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!("{} is a symbolic link in the target, not a directory", self.display(rel).display()),
                    )),
                    _ => Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!("{} exists in the target and is not a directory", self.display(rel).display()),
                    )),
                }
            }
            Err(e) => Err(errno(e)),
        }
    }

    /// Removes the non-directory at `rel` (a link itself, never what it points to).
    pub fn remove_file(&self, rel: &Path) -> io::Result<()> {
        let (dir, name) = self.parent(rel)?;
        nix::unistd::unlinkat(&dir, name.as_os_str(), nix::unistd::UnlinkatFlags::NoRemoveDir).map_err(errno)
    }

    /// Makes a symbolic link at `rel` pointing to `target` (which is stored, never followed).
    pub fn symlink(&self, target: &OsStr, rel: &Path) -> io::Result<()> {
        let (dir, name) = self.parent(rel)?;
        nix::unistd::symlinkat(target, &dir, name.as_os_str()).map_err(errno)
    }

    /// Sets the mode of the entry at `rel` (a FIFO or device: nothing that can be opened to
    /// `fchmod` without blocking). The parent is held open, so only the last name is looked up,
    /// and what is there was just made by the caller.
    pub fn set_mode(&self, rel: &Path, mode: u32) -> io::Result<()> {
        let (dir, name) = self.parent(rel)?;
        let st =
            nix::sys::stat::fstatat(&dir, name.as_os_str(), nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW).map_err(errno)?;
        if (SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT) == SFlag::S_IFLNK {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is a symbolic link", self.display(rel).display()),
            ));
        }
        nix::sys::stat::fchmodat(
            &dir,
            name.as_os_str(),
            Mode::from_bits_truncate(mode),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )
        .map_err(errno)
    }

    /// Makes a FIFO at `rel`.
    pub fn mkfifo(&self, rel: &Path, mode: u32) -> io::Result<()> {
        let (dir, name) = self.parent(rel)?;
        nix::unistd::mkfifoat(&dir, name.as_os_str(), Mode::from_bits_truncate(mode)).map_err(errno)
    }

    /// Makes `new` a hard link of `existing` (both beneath the root; a link at `existing` is
    /// linked itself, not followed).
    pub fn hard_link(&self, existing: &Path, new: &Path) -> io::Result<()> {
        let (odir, oname) = self.parent(existing)?;
        let (ndir, nname) = self.parent(new)?;
        nix::unistd::linkat(&odir, oname.as_os_str(), &ndir, nname.as_os_str(), nix::fcntl::AtFlags::empty())
            .map_err(errno)
    }

    /// Owner and times of the entry at `rel` itself (a link is not followed); the owner is
    /// best effort (only root can give files away).
    pub fn set_entry_meta(&self, rel: &Path, uid: u32, gid: u32, mtime_ns: i64) -> io::Result<()> {
        let (dir, name) = self.parent(rel)?;
        let _ = nix::unistd::fchownat(
            &dir,
            name.as_os_str(),
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        );
        let ts = timespec(mtime_ns);
        nix::sys::stat::utimensat(&dir, name.as_os_str(), &ts, &ts, nix::sys::stat::UtimensatFlags::NoFollowSymlink)
            .map_err(errno)
    }
}

fn timespec(ns: i64) -> nix::sys::time::TimeSpec {
    nix::sys::time::TimeSpec::new(ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000))
}

/// Owner (best effort), mode and times of an open file or directory.
pub fn set_meta(fd: impl AsFd, uid: u32, gid: u32, mode: u32, mtime_ns: i64) -> io::Result<()> {
    let _ =
        nix::unistd::fchown(fd.as_fd(), Some(nix::unistd::Uid::from_raw(uid)), Some(nix::unistd::Gid::from_raw(gid)));
    nix::sys::stat::fchmod(fd.as_fd(), Mode::from_bits_truncate(mode)).map_err(errno)?;
    let ts = timespec(mtime_ns);
    nix::sys::stat::futimens(fd.as_fd(), &ts, &ts).map_err(errno)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_and_dotdot_are_not_followed_out() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        let outside = d.path().join("outside");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("abs")).unwrap();
        std::os::unix::fs::symlink("../outside", root.join("rel")).unwrap();
        let b = Beneath::open(&root).unwrap();
        for name in ["abs/x", "rel/x", "../outside/x", "/tmp/x"] {
            let e = b.open_file(Path::new(name), OFlag::O_WRONLY | OFlag::O_CREAT, 0o600).unwrap_err();
            assert!(!e.to_string().is_empty(), "{name}");
        }
        assert!(b.mkdir(Path::new("abs"), 0o755).unwrap_err().to_string().contains("symbolic link"));
        assert!(b.dir(Path::new("rel")).is_err());
        assert!(b.hard_link(Path::new("abs"), Path::new("abs2")).is_ok(), "a link is linked, not followed");
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "nothing was made outside");
        // Plain names work.
        assert!(b.mkdir(Path::new("d"), 0o755).unwrap());
        assert!(!b.mkdir(Path::new("d"), 0o755).unwrap());
        let mut f = b.open_file(Path::new("d/f"), OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL, 0o600).unwrap();
        std::io::Write::write_all(&mut f, b"x").unwrap();
        set_meta(&f, 0, 0, 0o640, 1_000_000_000).unwrap();
        let m = std::fs::metadata(root.join("d/f")).unwrap();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777, 0o640);
    }
}
