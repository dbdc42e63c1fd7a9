//! The deployment files in `deploy/`: the systemd units pass `systemd-analyze verify` and
//! keep their `systemd-analyze security` exposure at or under what docs/operations.md
//! records; the example configurations load in the programs that read them.

use std::path::{Path, PathBuf};
use std::process::Command;

use seedship_e2e::bin;
use seedship_e2e::prep::text;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The units, with ExecStart= pointing at the binaries this build made (verify checks that
/// the command exists), in a temporary folder.
fn units() -> anyhow::Result<(tempfile::TempDir, Vec<PathBuf>)> {
    let dir = tempfile::tempdir()?;
    let mut out = Vec::new();
    for name in ["seedship-coordinator.service", "seedship-source-agent.service", "seedship-copy-agent.service"] {
        let text = std::fs::read_to_string(repo().join("deploy/systemd").join(name))?;
        let bin_dir = bin("coordinator").parent().unwrap().to_path_buf();
        let p = dir.path().join(name);
        std::fs::write(&p, text.replace("/usr/local/bin/", &format!("{}/", bin_dir.display())))?;
        out.push(p);
    }
    Ok((dir, out))
}

#[test]
fn the_service_units_verify_and_keep_their_exposure() -> anyhow::Result<()> {
    let (_d, units) = units()?;
    let o = Command::new("systemd-analyze").arg("verify").args(&units).output()?;
    assert!(o.status.success() && o.stderr.is_empty() && o.stdout.is_empty(), "verify: {}", text(&o));
    // The exposure each unit is allowed (0 best, 10 worst); recorded in docs/operations.md.
    for (unit, most) in [(&units[0], 1.2), (&units[1], 2.3), (&units[2], 3.4)] {
        let o = Command::new("systemd-analyze").args(["security", "--offline=yes"]).arg(unit).output()?;
        let t = text(&o);
        let line = t.lines().find(|l| l.contains("Overall exposure level")).unwrap_or_default();
        let score: f64 = line
            .split(": ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no exposure level for {}: {t}", unit.display()));
        assert!(score <= most, "{}: exposure {score} > {most}:\n{t}", unit.display());
    }
    // What each unit promises, by name.
    let coordinator = std::fs::read_to_string(&units[0])?;
    for want in
        ["CapabilityBoundingSet=\n", "NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes", "User=seedship"]
    {
        assert!(coordinator.contains(want), "coordinator unit lacks {want:?}");
    }
    let copy = std::fs::read_to_string(&units[2])?;
    for want in ["DevicePolicy=closed", "DeviceAllow=block-sd rw", "DeviceAllow=/dev/fuse rw", "ProtectSystem=strict"] {
        assert!(copy.contains(want), "copy-agent unit lacks {want:?}");
    }
    Ok(())
}

/// Runs `cmd`, returning (exit code, output).
fn run(cmd: &mut Command) -> anyhow::Result<(i32, String)> {
    let o = cmd.env_remove("SEEDSHIP_ENROLL_TOKEN").env_remove("SEEDSHIP_CONFIG").output()?;
    Ok((o.status.code().unwrap_or(-1), text(&o)))
}

#[test]
fn the_example_configurations_load_and_unknown_keys_are_refused() -> anyhow::Result<()> {
    let d = tempfile::tempdir()?;
    let pki = d.path().join("pki");
    let o = Command::new(bin("coordinator"))
        .args(["pki", "init", "--dir"])
        .arg(&pki)
        .args(["--trust-domain", "example.org", "--server-name", "localhost"])
        .output()?;
    assert!(o.status.success(), "{}", text(&o));
    let o = Command::new(bin("coordinator"))
        .args(["pki", "issue", "--dir"])
        .arg(&pki)
        .args(["--role", "operator", "--name", "alice"])
        .output()?;
    assert!(o.status.success(), "{}", text(&o));
    // Each example, with its paths moved into the temporary folder and its coordinator on
    // loopback; then again with a key that does not exist.
    let example = |name: &str, extra: &str| -> anyhow::Result<PathBuf> {
        let t = std::fs::read_to_string(repo().join("deploy/examples").join(name))?
            .replace("/etc/seedship/pki/", &format!("{}/", pki.display()))
            .replace("/home/alice/.config/seedship/", &format!("{}/", pki.display()))
            .replace("/var/lib/seedship-coordinator/", &format!("{}/", d.path().display()))
            .replace("https://coordinator.example.org:7443", "https://127.0.0.1:9");
        let p = d.path().join(format!("{}{name}", if extra.is_empty() { "" } else { "bad-" }));
        std::fs::write(&p, format!("{t}{extra}"))?;
        Ok(p)
    };
    let (code, out) = run(Command::new(bin("coordinator"))
        .args(["serve", "--print-config", "--config"])
        .arg(example("coordinator.toml", "")?))?;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("[enroll]") && out.contains("trust_domain = \"example.org\""), "{out}");
    let (code, out) = run(Command::new(bin("coordinator"))
        .args(["serve", "--print-config", "--config"])
        .arg(example("coordinator.toml", "\n[tls2]\nx = 1\n")?))?;
    assert!(code == 2 && out.contains("unknown field `tls2`"), "{out}");
    for (program, file) in [("source-agent", "source-agent.toml"), ("copy-agent", "copy-agent.toml")] {
        // `enroll` without a token stops right after loading the configuration.
        let enroll = |cfg: PathBuf| {
            let mut c = Command::new(bin(program));
            c.arg("--config").arg(cfg).args([
                "enroll",
                "--url",
                "https://127.0.0.1:9",
                "--ca-fingerprint",
                &"ab".repeat(32),
            ]);
            c
        };
        let (code, out) = run(&mut enroll(example(file, "")?))?;
        assert!(code == 2 && out.contains("give the enrollment token"), "{program}: {out}");
        let (code, out) = run(&mut enroll(example(file, "\n[coordinator2]\n")?))?;
        assert!(code == 2 && out.contains("unknown field `coordinator2`"), "{program}: {out}");
    }
    // seedctl reads its files and dials the (absent) coordinator on loopback.
    let (code, out) = run(Command::new(bin("seedctl")).arg("--config").arg(example("seedctl.toml", "")?).arg("seeds"))?;
    assert!(code != 0 && !out.contains("unknown field") && out.contains("127.0.0.1:9"), "{out}");
    let (code, out) =
        run(Command::new(bin("seedctl")).arg("--config").arg(example("seedctl.toml", "colour = 1\n")?).arg("seeds"))?;
    assert!(code == 2 && out.contains("unknown field `colour`"), "{out}");
    Ok(())
}
