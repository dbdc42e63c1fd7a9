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

/// `podman run` as this machine allows it: its kernel lets a container lower its resource
/// limits but not raise them, and crun refuses its cgroup layout, so runc with limits under
/// the host's; the host's network (loopback only).
fn podman_run() -> Command {
    let mut c = Command::new("timeout");
    c.args(["120", "podman", "--runtime", "runc", "run", "--rm", "--network", "host"]).args([
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
    ]);
    c
}

/// The container images (deploy/container): built with `build.sh --offline` from this build's
/// binaries on a Debian base made from Debian's packages (no registry is reachable here), then
/// started as they would be: each runs as uid 10001, the coordinator image makes a PKI and
/// serves, and the agents' images register with it over mTLS.
#[test]
fn the_container_images_build_and_start_as_an_unprivileged_user() -> anyhow::Result<()> {
    let bins = bin("coordinator").parent().unwrap().to_path_buf();
    let o = Command::new("timeout")
        .arg("600")
        .arg(repo().join("deploy/container/build.sh"))
        .args(["--engine", "podman", "--offline", "--bin-dir"])
        .arg(&bins)
        .args(["--prefix", "localhost/seedship-test-", "--version", "ci"])
        .env(
            "SEEDSHIP_BUILD_FLAGS",
            "--isolation chroot --network host --ulimit nofile=1024:1024 --ulimit nproc=1024:1024",
        )
        .output()?;
    assert!(o.status.success(), "build.sh: {}", text(&o));
    let images: Vec<String> = String::from_utf8(o.stdout)?.lines().map(str::to_string).collect();
    assert_eq!(images.len(), 3, "{images:?}");
    let (coordinator, source, copy) = (&images[0], &images[1], &images[2]);
    for image in &images {
        let o = Command::new("podman").args(["image", "inspect", "--format", "{{.Config.User}}", image]).output()?;
        assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "10001:10001", "{image}: {}", text(&o));
        let o = podman_run().args(["--entrypoint", "id", image, "-u"]).output()?;
        assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "10001", "{image} runs as: {}", text(&o));
    }

    // The folders the containers write, owned by the user they run as.
    let d = tempfile::tempdir()?;
    let (etc, state) = (d.path().join("etc"), d.path().join("state"));
    for dir in [&etc, &state] {
        std::fs::create_dir_all(dir)?;
        std::os::unix::fs::chown(dir, Some(10001), Some(10001))?;
    }
    let vol = |host: &Path, at: &str| format!("{}:{at}", host.display());
    let o = podman_run()
        .args(["-v", &vol(&etc, "/etc/seedship"), coordinator])
        .args(["pki", "init", "--dir", "/etc/seedship/pki", "--trust-domain", "container.test"])
        .output()?;
    assert!(o.status.success(), "pki init in the image: {}", text(&o));
    use std::os::unix::fs::MetadataExt;
    let key = std::fs::metadata(etc.join("pki/ca.key"))?;
    assert_eq!((key.uid(), key.mode() & 0o777), (10001, 0o600), "the CA key: the image's user's, 0600");
    for (role, name) in [("source", "fs01"), ("copy", "station-01")] {
        let o = podman_run()
            .args(["-v", &vol(&etc, "/etc/seedship"), coordinator])
            .args(["pki", "issue", "--dir", "/etc/seedship/pki", "--role", role, "--name", name])
            .output()?;
        assert!(o.status.success(), "{}", text(&o));
    }
    std::fs::write(
        etc.join("coordinator.toml"),
        "listen = \"127.0.0.1:0\"\nready_file = \"/var/lib/seedship/ready.json\"\ndatabase = \"/var/lib/seedship/coordinator.db\"\n\
         trust_domain = \"container.test\"\nmaster_key_file = \"/etc/seedship/pki/master.key\"\n[tls]\n\
         ca_file = \"/etc/seedship/pki/ca.crt\"\ncert_file = \"/etc/seedship/pki/coordinator.crt\"\nkey_file = \"/etc/seedship/pki/coordinator.key\"\n\
         [telemetry]\nlog_format = \"json\"\n",
    )?;
    let name = format!("seedship-test-coordinator-{}", std::process::id());
    let mut serve = podman_run();
    serve.args(["-d", "--name", &name, "-v", &vol(&etc, "/etc/seedship:ro"), "-v", &vol(&state, "/var/lib/seedship")]);
    let o = serve.arg(coordinator).output()?;
    assert!(o.status.success(), "the coordinator image's default command: {}", text(&o));
    let stop = || {
        let _ = Command::new("timeout").args(["60", "podman", "rm", "-f", "-t", "5", &name]).output();
    };
    let ready = state.join("ready.json");
    let t0 = std::time::Instant::now();
    while !ready.exists() {
        if t0.elapsed() > std::time::Duration::from_secs(30) {
            let logs = Command::new("podman").args(["logs", &name]).output()?;
            stop();
            anyhow::bail!("the coordinator in its container did not get ready: {}", text(&logs));
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&ready)?)?;
    let addr = r["addr"].as_str().unwrap_or_default().to_string();
    // Each agent's image registers with it over mTLS, as its identity.
    for (image, program, name) in [(source, "source-agent", "fs01"), (copy, "copy-agent", "station-01")] {
        std::fs::write(
            etc.join(format!("{program}.toml")),
            format!(
                "[coordinator]\nurl = \"https://{addr}\"\nca_file = \"/etc/seedship/pki/ca.crt\"\n\
                 cert_file = \"/etc/seedship/pki/{name}.crt\"\nkey_file = \"/etc/seedship/pki/{name}.key\"\nserver_name = \"localhost\"\n{}",
                if program == "copy-agent" {
                    "[station]\ndisk_dir = \"/var/lib/seedship/disks\"\nstate_dir = \"/var/lib/seedship\"\n"
                } else {
                    ""
                }
            ),
        )?;
        let o = podman_run()
            .args(["-v", &vol(&etc, "/etc/seedship:ro"), image])
            .args(["--config", &format!("/etc/seedship/{program}.toml"), "register"])
            .output()?;
        if !o.status.success()
            || !text(&o).contains(&format!(
                "registered as spiffe://container.test/{}/{name}",
                if program == "copy-agent" { "copy" } else { "source" }
            ))
        {
            stop();
            anyhow::bail!("{program} in its image: {}", text(&o));
        }
    }
    // Its log, as a log shipper reads it: one JSON object a line.
    let logs = Command::new("timeout").args(["60", "podman", "logs", &name]).output()?;
    stop();
    let lines: Vec<String> = text(&logs).lines().filter(|l| !l.trim().is_empty()).map(str::to_string).collect();
    assert!(lines.len() >= 3, "{lines:?}");
    for l in &lines {
        let v: serde_json::Value = serde_json::from_str(l).map_err(|e| anyhow::anyhow!("{e}: {l}"))?;
        assert!(v["level"].is_string() && v["fields"].is_object(), "{l}");
    }
    assert!(lines.iter().any(|l| l.contains("agent registered")), "{lines:?}");
    // The station's image has the disk tools it runs.
    let o = podman_run()
        .args([
            "--entrypoint",
            "sh",
            copy,
            "-c",
            "for t in mkntfs ntfs-3g dislocker-fuse bdeinfo cryptsetup; do command -v $t; done",
        ])
        .output()?;
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 5, "{}", text(&o));
    // What the images weigh (docs/operations.md), then they go; the Debian base is kept for
    // the next run.
    for image in &images {
        let o = Command::new("podman").args(["image", "inspect", "--format", "{{.Size}}", image]).output()?;
        eprintln!("{image}: {} bytes", String::from_utf8_lossy(&o.stdout).trim());
    }
    let _ = Command::new("podman").args(["rmi", "-f"]).args(&images).arg("localhost/seedship-binaries:ci").output();
    Ok(())
}
