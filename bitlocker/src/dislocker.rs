//! Unlocking a BitLocker volume with dislocker (`dislocker-fuse`), an implementation we did
//! not write: how the station opens a Data Box Disk (as Microsoft's Linux unlock tool does,
//! with dislocker and ntfs-3g) and reads a customer disk back, and how the emulated
//! datacenter opens what arrives.
//!
//! The unlocked volume is the file `dislocker-file` under the mount point: NTFS to mount with
//! ntfs-3g or to read raw. The secret never appears on a command line or in an error: a
//! recovery password is typed into dislocker's own prompt on a pseudo-terminal that is its
//! controlling terminal (dislocker reads it from `/dev/tty`); a user password (the Data Box
//! passkey) is given on its standard input.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use seedship_disk::key::RecoveryPassword;

/// The name of the unlocked volume under a dislocker-fuse mount.
pub const FILE: &str = "dislocker-file";

/// What unlocks a volume.
pub enum Secret<'a> {
    /// The 48-digit recovery password (a numerical-password protector).
    Recovery(&'a RecoveryPassword),
    /// A user password (a password protector): the Data Box passkey.
    User(&'a str),
}

impl Secret<'_> {
    fn protector(&self) -> &'static str {
        match self {
            Secret::Recovery(_) => "numerical-password (recovery password)",
            Secret::User(_) => "password",
        }
    }
}

/// Why a volume was not unlocked. Never holds the secret.
#[derive(Debug, thiserror::Error)]
pub enum UnlockError {
    #[error("dislocker-fuse could not run ({0}); install dislocker (deploy/debian/install.sh)")]
    Missing(std::io::Error),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    /// The volume does not start with a BitLocker volume header.
    #[error("{0} is not a BitLocker volume")]
    NotBitLocker(String),
    /// BitLocker, but no protector of the kind the secret opens.
    #[error("{0} is a BitLocker volume without a {1} protector")]
    NoProtector(String, &'static str),
    /// The protector is there and the secret does not open it.
    #[error("the {1} does not unlock the BitLocker volume on {0}")]
    WrongKey(String, &'static str),
    #[error("dislocker could not unlock {0}: {1}")]
    Failed(String, String),
}

/// A volume unlocked by dislocker-fuse at `dir`; locked again (unmounted) on drop, best
/// effort, or by [`Unlocked::lock`].
pub struct Unlocked {
    dir: PathBuf,
    mounted: bool,
}

impl Unlocked {
    /// The decrypted volume.
    pub fn file(&self) -> PathBuf {
        self.dir.join(FILE)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Unmounts: every write through [`Unlocked::file`] is on the device after this. A mount
    /// still busy (a reader that has not quite let go, such as the ntfs-3g process of a volume
    /// mounted from the file, which exits after its own unmount returned) is retried for up to
    /// 10 seconds and then detached (`umount -l`), so that no unlocked volume is ever left
    /// behind; the error says so, and the caller decides whether that matters.
    pub fn lock(mut self) -> Result<(), UnlockError> {
        self.mounted = false;
        let mut said = String::new();
        let started = std::time::Instant::now();
        for attempt in 0.. {
            if attempt > 0 {
                if started.elapsed() >= std::time::Duration::from_secs(10) {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            let o = Command::new("umount").arg(&self.dir).output().map_err(|e| UnlockError::Io("umount".into(), e))?;
            if o.status.success() {
                return Ok(());
            }
            said = String::from_utf8_lossy(&o.stderr).trim().to_string();
            if !said.contains("busy") {
                break;
            }
        }
        release(&self.dir);
        Err(UnlockError::Failed(self.dir.display().to_string(), format!("umount failed ({said}); detached instead")))
    }

    /// Leaves the volume unlocked (someone else locks it).
    pub fn keep(mut self) {
        self.mounted = false;
    }
}

impl Drop for Unlocked {
    fn drop(&mut self) {
        if self.mounted {
            release(&self.dir);
        }
    }
}

/// Whether a dislocker-fuse mount of a volume is at `dir`.
pub fn is_unlocked(dir: &Path) -> bool {
    dir.join(FILE).is_file()
}

/// Undoes a leftover unlock at `dir`, if any (a station killed while a volume was unlocked):
/// unmounted, or detached (`umount -l`) when it is still busy; stacked mounts too.
pub fn release(dir: &Path) {
    for _ in 0..4 {
        let Ok(o) = Command::new("umount").arg(dir).output() else { return };
        if o.status.success() {
            continue;
        }
        let said = String::from_utf8_lossy(&o.stderr);
        if said.contains("not mounted") || said.contains("no mount point") || said.contains("No such file") {
            return;
        }
        let _ = Command::new("umount").arg("-l").arg(dir).output();
    }
}

/// Whether `device` starts with a BitLocker volume header (Windows 7 and later).
pub fn is_bitlocker(device: &Path) -> Result<bool, UnlockError> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(device).map_err(|e| UnlockError::Io(device.display().to_string(), e))?;
    let mut head = [0u8; 11];
    match f.read_exact_at(&mut head, 0) {
        Ok(()) => Ok(&head[3..11] == b"-FVE-FS-"),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(UnlockError::Io(device.display().to_string(), e)),
    }
}

/// Unlocks the BitLocker volume on `device` with dislocker-fuse at `at` (made if missing; a
/// mount left there is released first). `read_only` mounts it so (dislocker's `-r`).
pub fn unlock(device: &Path, at: &Path, secret: Secret<'_>, read_only: bool) -> Result<Unlocked, UnlockError> {
    // A dislocker started by a station that was killed may finish mounting at `at` after the
    // release: then it is released again and the unlock tried again.
    let mut tries = 0;
    loop {
        tries += 1;
        match unlock_once(device, at, &secret, read_only) {
            Err(UnlockError::Failed(_, why)) if why.contains("mountpoint is not empty") && tries < 4 => {
                std::thread::sleep(std::time::Duration::from_millis(250));
            }
            r => return r,
        }
    }
}

fn unlock_once(device: &Path, at: &Path, secret: &Secret<'_>, read_only: bool) -> Result<Unlocked, UnlockError> {
    let shown = device.display().to_string();
    if !is_bitlocker(device)? {
        return Err(UnlockError::NotBitLocker(shown));
    }
    release(at);
    std::fs::create_dir_all(at).map_err(|e| UnlockError::Io(at.display().to_string(), e))?;
    let (mut cmd, pty) = match *secret {
        Secret::Recovery(_) => {
            // util-linux's setsid -c makes its standard input (the pty) the controlling
            // terminal, where dislocker reads the recovery password from.
            let pty =
                nix::pty::openpty(None, None).map_err(|e| UnlockError::Io("a pseudo-terminal".into(), e.into()))?;
            let mut c = Command::new("setsid");
            c.arg("-c").arg("dislocker-fuse").stdin(Stdio::from(pty.slave));
            (c, Some(pty.master))
        }
        Secret::User(_) => {
            let mut c = Command::new("dislocker-fuse");
            c.stdin(Stdio::piped());
            (c, None)
        }
    };
    // -v: errors as well as critical messages (the secret is shown only at debug level).
    cmd.arg("-v").arg("-V").arg(device);
    cmd.arg(match *secret {
        Secret::Recovery(_) => "-p",
        Secret::User(_) => "-u",
    });
    if read_only {
        cmd.arg("-r");
    }
    // A UTF-8 locale: dislocker turns a password into UTF-16 with the locale's rules.
    cmd.arg("--").arg(at).env("LC_ALL", "C.UTF-8").stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(UnlockError::Missing)?;
    let mut out = Vec::new();
    match (secret, pty) {
        (Secret::Recovery(pw), Some(master)) => {
            // Typed once the prompt is shown (dislocker has turned echo off by then).
            let mut stdout = child.stdout.take().expect("piped");
            let mut b = [0u8; 256];
            while !String::from_utf8_lossy(&out).contains("recovery password:") {
                match stdout.read(&mut b) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => out.extend_from_slice(&b[..n]),
                }
            }
            let mut tty = std::fs::File::from(master);
            let _ = tty.write_all(pw.reveal().replace('-', "").as_bytes());
            let _ = stdout.read_to_end(&mut out);
        }
        (Secret::User(p), _) => {
            let mut stdin = child.stdin.take().expect("piped");
            let _ = stdin.write_all(format!("{p}\n").as_bytes());
        }
        _ => unreachable!("a pty for a recovery password"),
    }
    let o = child.wait_with_output().map_err(|e| UnlockError::Io("dislocker-fuse".into(), e))?;
    out.extend_from_slice(&o.stdout);
    out.extend_from_slice(&o.stderr);
    if o.status.success() && is_unlocked(at) {
        return Ok(Unlocked { dir: at.to_path_buf(), mounted: true });
    }
    release(at);
    Err(classify(&shown, secret, &String::from_utf8_lossy(&out)))
}

/// What dislocker's output says went wrong. Its echo of a typed password (and any run of
/// digits) is left out.
fn classify(device: &str, secret: &Secret<'_>, said: &str) -> UnlockError {
    let protector = secret.protector();
    // A protector that does not open fails its MAC check; none at all is not found.
    if said.contains("Can't decrypt correctly the VMK") || said.contains("The MACs don't match") {
        return UnlockError::WrongKey(device.into(), protector);
    }
    if said.contains("can't find a valid and matching VMK datum") {
        return UnlockError::NoProtector(device.into(), protector);
    }
    let said: Vec<String> = said
        .split(['\n', '\r'])
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.contains("password") && !l.contains("XXXXXX"))
        .map(scrub_digits)
        .collect();
    UnlockError::Failed(device.into(), said.join(" / "))
}

/// `s` with every run of six or more digits replaced by `…`.
fn scrub_digits(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut run = String::new();
    for c in s.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_digit() {
            run.push(c);
            continue;
        }
        out.push_str(if run.len() >= 6 { "…" } else { &run });
        run.clear();
        out.push(c);
    }
    out.pop();
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn digits_that_could_be_a_password_are_never_repeated() {
        assert_eq!(super::scrub_digits("2026 [ERROR] bloc 123456 and 12 0123456789x"), "2026 [ERROR] bloc … and 12 …x");
    }
}
