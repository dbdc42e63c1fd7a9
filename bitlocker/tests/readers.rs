//! The BitLocker volumes we write, opened by readers we did not write: dislocker
//! (`dislocker-file`), libbde (`bdeinfo`) and cryptsetup (`bitlkDump`), with the recovery
//! password, and every file read back through an NTFS reader.

mod common;

use std::path::Path;
use std::process::Command;

use common::{ntfs_image, pattern};
use seedship_bitlocker::convert::encrypt_in_place;
use seedship_bitlocker::volume::{Layout, Method};
use seedship_disk::key::RecoveryPassword;

fn run(cmd: &mut Command) -> std::process::Output {
    cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e} (deploy/debian/install.sh installs it)"))
}

fn text(o: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// libbde, through its Python bindings (`tests/py/bde_read.py`, in the venv of
/// `deploy/python/install.sh`, named by `SEEDSHIP_PYTHON` as tests/run.sh sets it): the volume
/// on `img` unlocked with `secret` (given on standard input) and decrypted to `out`. Returns
/// whether it unlocked, and what libbde printed.
fn libbde(img: &Path, secret: &str, password: bool, out: &Path) -> (bool, String) {
    use std::io::Write;
    let python = std::env::var("SEEDSHIP_PYTHON")
        .expect("SEEDSHIP_PYTHON names the venv's python (tests/run.sh sets it: deploy/python/install.sh)");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/py/bde_read.py");
    let mut cmd = Command::new(python);
    cmd.arg(script).arg(img).arg(out);
    if password {
        cmd.arg("--password");
    }
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(format!("{secret}\n").as_bytes()).unwrap();
    let o = child.wait_with_output().unwrap();
    (o.status.success(), text(&o))
}

#[test]
fn dislocker_libbde_and_cryptsetup_open_our_xts_aes_256_volume_with_the_recovery_password_only() {
    opened_by_others(Method::XtsAes256, "AES-XTS 256-bit", 512);
}

#[test]
fn dislocker_libbde_and_cryptsetup_open_our_xts_aes_128_volume_with_the_recovery_password_only() {
    opened_by_others(Method::XtsAes128, "AES-XTS 128-bit", 256);
}

fn opened_by_others(method: Method, libbde_name: &str, key_bits: u32) {
    let d = tempfile::tempdir().unwrap();
    let files = vec![("seedship/data/00/pack", pattern(3 << 20, 1)), ("DriveManifest.xml", pattern(5000, 2))];
    // Not a whole number of 64 KiB: the tail is aligned all the same.
    let img = ntfs_image(d.path(), (32 << 20) + 12_800, &files);
    let pw = RecoveryPassword::generate().unwrap();
    encrypt_in_place(&img, &pw, method, "DRIVE-A", &d.path().join("convert.log")).unwrap();
    let raw = std::fs::read(&img).unwrap();
    assert_eq!(&raw[3..11], b"-FVE-FS-");
    assert!(raw.windows(64).all(|w| w != &files[0].1[1000..1064]), "no plaintext left on the volume");

    // dislocker decrypts the whole volume to a file; ntfs-3g's reader finds every file.
    let plain = d.path().join("plain.img");
    let o =
        run(Command::new("dislocker-file").arg("-V").arg(&img).arg(format!("-p{}", pw.reveal())).arg("--").arg(&plain));
    assert!(o.status.success(), "dislocker: {}", text(&o));
    for (name, data) in &files {
        let o = run(Command::new("ntfscat").arg(&plain).arg(name));
        assert!(o.status.success(), "ntfscat {name}: {}", text(&o));
        assert!(o.stdout == *data, "{name} differs after dislocker");
    }
    // A wrong password opens nothing.
    let wrong = RecoveryPassword::generate().unwrap();
    let o = run(Command::new("dislocker-file")
        .arg("-V")
        .arg(&img)
        .arg(format!("-p{}", wrong.reveal()))
        .arg("--")
        .arg(d.path().join("w.img")));
    assert!(
        !o.status.success()
            || !d.path().join("w.img").exists()
            || std::fs::metadata(d.path().join("w.img")).unwrap().len() == 0,
        "{}",
        text(&o)
    );

    // libbde reads the metadata and, with the recovery password, opens the VMK and the FVEK;
    // Debian's libbde (20190102) predates XTS, so it stops when it sets the sector keys. With a
    // wrong password it cannot open the keys.
    let o = run(Command::new("bdeinfo").arg(format!("-r{}", pw.reveal())).arg(&img));
    let right = text(&o);
    let o = run(Command::new("bdeinfo").arg(format!("-r{}", wrong.reveal())).arg(&img));
    let wrong_text = text(&o);
    assert!(!right.contains("Unable to unlock volume"), "bdeinfo, right password:\n{right}");
    assert!(right.contains(libbde_name) || right.contains("tweak key"), "bdeinfo, right password:\n{right}");
    assert!(wrong_text.contains("Unable to unlock volume"), "bdeinfo, wrong password:\n{wrong_text}");
    assert!(wrong_text.contains(libbde_name) && wrong_text.contains(": Recovery password"), "{wrong_text}");
    // The description names the drive, readable without a key (ours and libbde's reading).
    assert!(wrong_text.contains("Description\t\t\t: DRIVE-A seedship "), "{wrong_text}");
    assert_eq!(seedship_bitlocker::volume::label(&img).as_deref(), Some("DRIVE-A"));
    // A current libbde (libyal's Python bindings) decrypts both methods: every file reads back
    // through ntfs-3g's reader; a wrong password unlocks nothing.
    let bde = d.path().join("bde.img");
    let (ok, said) = libbde(&img, &pw.reveal(), false, &bde);
    assert!(ok && said.contains("\"unlocked\": true") && said.contains("DRIVE-A seedship"), "libbde: {said}");
    assert!(said.contains(&format!("\"encryption_method\": {}", method.code())), "libbde: {said}");
    for (name, data) in &files {
        let o = run(Command::new("ntfscat").arg(&bde).arg(name));
        assert!(o.status.success() && o.stdout == *data, "{name} after libbde: {}", text(&o));
    }
    let (ok, said) = libbde(&img, &wrong.reveal(), false, &d.path().join("bde-wrong.img"));
    assert!(!ok && said.contains("\"unlocked\": false"), "libbde, wrong password: {said}");
    if method == Method::XtsAes128 {
        // Debian's libbde decrypts XTS-AES-128 too: bdemount's view of the volume holds every file.
        let mnt = d.path().join("bde");
        std::fs::create_dir_all(&mnt).unwrap();
        let o = run(Command::new("bdemount").arg(format!("-r{}", pw.reveal())).arg(&img).arg(&mnt));
        assert!(o.status.success(), "bdemount: {}", text(&o));
        let read: Vec<bool> = files
            .iter()
            .map(|(name, data)| run(Command::new("ntfscat").arg(mnt.join("bde1")).arg(name)).stdout == *data)
            .collect();
        let _ = run(Command::new("umount").arg(&mnt));
        assert!(read.iter().all(|ok| *ok), "libbde's view differs: {read:?}");
    }
    // cryptsetup reads the metadata.
    let o = run(Command::new("cryptsetup").args(["bitlkDump"]).arg(&img));
    let dump = text(&o);
    assert!(o.status.success(), "bitlkDump: {dump}");
    assert!(dump.contains("VMK protected with recovery passphrase") && dump.contains("xts-plain64"), "{dump}");
    assert!(dump.contains(&format!("Cipher key:   \t{key_bits} bits")), "{dump}");
}

/// An empty BitLocker volume (no pass over its data area), unlocked read-write by dislocker's
/// FUSE layer, formatted with mkntfs and filled through ntfs-3g on top of it: then read back
/// by dislocker-file and ntfscat, and by libbde (XTS-AES-128).
#[test]
fn an_empty_volume_is_formatted_and_filled_through_dislocker_fuse_and_reads_back() {
    let d = tempfile::tempdir().unwrap();
    let img = d.path().join("disk.img");
    let size = (32u64 << 20) + 4096;
    std::fs::File::create(&img).unwrap().set_len(size).unwrap();
    let pw = RecoveryPassword::generate().unwrap();
    // As Microsoft's Data Box Disks: a recovery password and a passkey (a password protector).
    let passkey = "Pass#word1 x!";
    seedship_bitlocker::volume::create_empty(&img, &pw, Some(passkey), Method::XtsAes128, "DRIVE-C").unwrap();

    let (clear, mnt) = (d.path().join("clear"), d.path().join("mnt"));
    std::fs::create_dir_all(&clear).unwrap();
    std::fs::create_dir_all(&mnt).unwrap();
    let o =
        run(Command::new("dislocker-fuse").arg("-V").arg(&img).arg(format!("-p{}", pw.reveal())).arg("--").arg(&clear));
    assert!(o.status.success(), "dislocker-fuse: {}", text(&o));
    let volume = clear.join("dislocker-file");
    let files = vec![("seedship/data/00/pack", pattern(2 << 20, 3)), ("DriveManifest.xml", pattern(3000, 4))];
    // Everything through the mounts first; the mounts go before any assertion can fail.
    let wrote = (|| -> Result<(), String> {
        let o = run(Command::new("mkntfs")
            .args(["-F", "-Q", "-s", "512", "-L", "seedship"])
            .arg(&volume)
            .arg(Layout::ntfs_sectors(size).to_string()));
        if !o.status.success() {
            return Err(format!("mkntfs through dislocker: {}", text(&o)));
        }
        let o = run(Command::new("ntfs-3g").arg(&volume).arg(&mnt));
        if !o.status.success() {
            return Err(format!("ntfs-3g on dislocker: {}", text(&o)));
        }
        for (name, data) in &files {
            let p = mnt.join(name);
            std::fs::create_dir_all(p.parent().unwrap()).map_err(|e| e.to_string())?;
            std::fs::write(p, data).map_err(|e| e.to_string())?;
        }
        Ok(())
    })();
    let _ = run(Command::new("umount").arg(&mnt));
    let _ = run(Command::new("umount").arg(&clear));
    wrote.unwrap();

    let plain = d.path().join("plain.img");
    let o =
        run(Command::new("dislocker-file").arg("-V").arg(&img).arg(format!("-p{}", pw.reveal())).arg("--").arg(&plain));
    assert!(o.status.success(), "dislocker-file: {}", text(&o));
    for (name, data) in &files {
        let o = run(Command::new("ntfscat").arg(&plain).arg(name));
        assert!(o.status.success() && o.stdout == *data, "{name} after dislocker: {}", text(&o));
    }
    let raw = std::fs::read(&img).unwrap();
    assert!(raw.windows(64).all(|w| w != &files[0].1[1000..1064]), "nothing written in the clear");

    // The passkey opens it too: dislocker (-u) and libbde (-p); a wrong one is refused.
    use seedship_bitlocker::dislocker::{Secret, UnlockError, unlock};
    let u = unlock(&img, &clear, Secret::User(passkey), true).unwrap();
    let o = run(Command::new("ntfscat").arg(u.file()).arg(files[0].0));
    u.lock().unwrap();
    assert!(o.status.success() && o.stdout == files[0].1, "through the passkey: {}", text(&o));
    let e = unlock(&img, &clear, Secret::User("Pass#word2"), true).err().expect("a wrong passkey is refused");
    assert!(matches!(e, UnlockError::WrongKey(..)), "{e}");
    let o = run(Command::new("bdeinfo").arg(format!("-p{passkey}")).arg(&img));
    assert!(
        !text(&o).contains("Unable to unlock volume") && text(&o).contains("Password"),
        "bdeinfo -p:\n{}",
        text(&o)
    );
    let o = run(Command::new("bdeinfo").arg("-pPass#word2").arg(&img));
    assert!(text(&o).contains("Unable to unlock volume"), "bdeinfo, wrong passkey:\n{}", text(&o));
    let bde = d.path().join("bde.img");
    let (ok, said) = libbde(&img, passkey, true, &bde);
    assert!(ok, "libbde with the passkey: {said}");
    let o = run(Command::new("ntfscat").arg(&bde).arg(files[0].0));
    assert!(o.status.success() && o.stdout == files[0].1, "through libbde and the passkey: {}", text(&o));
}

#[test]
fn dislocker_fuse_unlocks_with_the_password_typed_on_its_terminal_and_names_each_refusal() {
    use seedship_bitlocker::dislocker::{Secret, UnlockError, unlock};
    let d = tempfile::tempdir().unwrap();
    let files = vec![("seedship/data/00/pack", pattern(1 << 20, 5))];
    // Not a whole number of 64 KiB: the tail is aligned all the same.
    let img = ntfs_image(d.path(), (32 << 20) + 12_800, &files);
    let plain_copy = d.path().join("plain-ntfs.img");
    std::fs::copy(&img, &plain_copy).unwrap();
    let pw = RecoveryPassword::generate().unwrap();
    encrypt_in_place(&img, &pw, Method::XtsAes256, "DRIVE-B", &d.path().join("convert.log")).unwrap();
    let at = d.path().join("clear");

    let u = unlock(&img, &at, Secret::Recovery(&pw), true).unwrap();
    let o = run(Command::new("ntfscat").arg(u.file()).arg(files[0].0));
    u.lock().unwrap();
    assert!(o.status.success() && o.stdout == files[0].1, "read through dislocker-fuse: {}", text(&o));
    assert!(!seedship_bitlocker::dislocker::is_unlocked(&at), "locked again");

    let other = RecoveryPassword::generate().unwrap();
    let wrong = unlock(&img, &at, Secret::Recovery(&other), true).err().expect("a wrong password is refused");
    assert!(matches!(wrong, UnlockError::WrongKey(..)), "{wrong}");
    let none = unlock(&img, &at, Secret::User("not-a-passkey"), true).err().expect("no password protector");
    assert!(matches!(none, UnlockError::NoProtector(..)), "{none}");
    let plain = unlock(&plain_copy, &at, Secret::Recovery(&pw), true).err().expect("not BitLocker");
    assert!(matches!(plain, UnlockError::NotBitLocker(..)), "{plain}");
    for e in [wrong, none, plain].map(|e| e.to_string()) {
        let digits = |p: &RecoveryPassword| p.reveal().replace('-', "");
        assert!(!e.contains(&digits(&pw)[..6]) && !e.contains(&digits(&other)[..6]), "{e}");
        assert!(!e.contains("not-a-passkey"), "{e}");
    }
}
