//! A conversion killed with SIGKILL at seeded random points (between chunks and inside them)
//! and resumed each time ends as a volume that dislocker opens with every file intact.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{ntfs_image, pattern};
use seedship_bitlocker::convert::{CHUNK, convert};
use seedship_bitlocker::volume::Method;
use seedship_disk::key::RecoveryPassword;

const CHILD: &str = "SEEDSHIP_CONVERT_CHILD";

/// Run as a child by the test below: converts the image it names, one line per chunk.
#[test]
fn convert_child() {
    let Ok(spec) = std::env::var(CHILD) else { return };
    let mut parts = spec.split('|');
    let (img, log, pw, method) = (
        PathBuf::from(parts.next().unwrap()),
        PathBuf::from(parts.next().unwrap()),
        RecoveryPassword::parse(parts.next().unwrap()).unwrap(),
        if parts.next() == Some("128") { Method::XtsAes128 } else { Method::XtsAes256 },
    );
    convert(&img, &pw, method, "CRASH-1", &log, |p| {
        println!("progress {} {}", p.done, p.total);
        Ok(())
    })
    .unwrap();
    println!("converted");
}

struct Lcg(u64);
impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[test]
fn a_conversion_killed_at_twenty_random_points_resumes_to_a_volume_dislocker_reads() {
    let seed = std::env::var("SEEDSHIP_KILL_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(20261203u64);
    eprintln!("kill points from seed {seed} (set SEEDSHIP_KILL_SEED to replay)");
    let mut rng = Lcg(seed);
    let (mut kills, mut round) = (0, 0);
    while kills < 20 {
        round += 1;
        assert!(round <= 12, "only {kills} kills landed in 12 conversions");
        let d = tempfile::tempdir().unwrap();
        let method = if round % 2 == 0 { Method::XtsAes128 } else { Method::XtsAes256 };
        let files: Vec<(String, Vec<u8>)> =
            (0..3).map(|i| (format!("pack{i}"), pattern((7 << 20) + i * 4099, round * 10 + i as u32))).collect();
        let size = 6 * CHUNK + 300 * 1024;
        let img = ntfs_image(d.path(), size, &files);
        let log = d.path().join("convert.log");
        let pw = RecoveryPassword::generate().unwrap();
        let spec = format!(
            "{}|{}|{}|{}",
            img.display(),
            log.display(),
            pw.reveal(),
            if method == Method::XtsAes128 { "128" } else { "256" }
        );
        loop {
            let mut child = Command::new(std::env::current_exe().unwrap())
                .args(["convert_child", "--exact", "--nocapture", "--test-threads", "1"])
                .env(CHILD, &spec)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            // Kill after a random number of chunks, a random moment into the next one.
            let lines = rng.below(3);
            let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
            let mut seen = 0;
            let mut done = false;
            while seen <= lines {
                match out.next() {
                    Some(Ok(l)) if l.starts_with("progress") => seen += 1,
                    Some(Ok(l)) if l.starts_with("converted") => done = true,
                    Some(Ok(_)) => continue,
                    _ => break,
                }
                if done {
                    break;
                }
            }
            std::thread::sleep(Duration::from_micros(rng.below(30_000)));
            let _ = child.kill();
            let status = child.wait().unwrap();
            let finished = done || out.any(|l| l.is_ok_and(|l| l.starts_with("converted")));
            if finished || status.success() {
                break;
            }
            kills += 1;
        }
        eprintln!("round {round} ({method:?}): {kills} kills so far");
        // Whatever state the kills left, one more call completes it (or finds it complete).
        convert(&img, &pw, method, "CRASH-1", &log, |_| Ok(())).unwrap();
        assert!(!log.exists(), "the log goes once the volume is complete");
        let plain = d.path().join("plain.img");
        let o = Command::new("dislocker-file")
            .arg("-V")
            .arg(&img)
            .arg(format!("-p{}", pw.reveal()))
            .arg("--")
            .arg(&plain)
            .output()
            .unwrap();
        assert!(o.status.success(), "dislocker-file: {}", String::from_utf8_lossy(&o.stderr));
        for (name, data) in &files {
            let o = Command::new("ntfscat").arg(&plain).arg(name).output().unwrap();
            assert!(o.status.success() && o.stdout == *data, "{name} differs after round {round}");
        }
    }
}
