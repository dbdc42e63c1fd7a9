//! The coordinator's server certificate renews itself (`[enroll] server_cert_lifetime`): with
//! a lifetime of seconds it is replaced many times while clients call, on connections open
//! before and made after, and no call fails; a restart, and a stop in the middle of writing a
//! renewal, lose nothing. Real coordinator and clients on loopback.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use seedship_e2e::{Cluster, Options};
use seedship_proto::{client, pb};

/// The serial of the certificate the console listener presents now (openssl s_client).
fn served_serial(c: &Cluster) -> anyhow::Result<String> {
    let s = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{}", c.web.port()), "-servername", "localhost"])
        .stdin(Stdio::null())
        .output()?;
    let mut x = Command::new("openssl")
        .args(["x509", "-noout", "-serial"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    std::io::Write::write_all(x.stdin.as_mut().unwrap(), &s.stdout)?;
    let o = x.wait_with_output()?;
    anyhow::ensure!(o.status.success(), "no certificate served: {}", String::from_utf8_lossy(&s.stderr));
    Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_certificate_renews_itself_without_a_failed_call() -> anyhow::Result<()> {
    let mut c = Cluster::start_with(Options {
        extra_toml: "[enroll]\nserver_cert_lifetime = \"6s\"\n".into(),
        ..Default::default()
    })?;
    let ops = c.issue("operator", "alice")?;
    let open = c.connect(&ops).await?;
    let mut serials = std::collections::BTreeSet::new();
    let (mut calls, t0) = (0, Instant::now());
    while t0.elapsed() < Duration::from_secs(14) {
        // The connection opened before, and a new one each round: every call answered.
        client::operator(open.clone()).list_seeds(pb::ListSeedsRequest::default()).await?;
        client::operator(c.connect(&ops).await?).list_seeds(pb::ListSeedsRequest::default()).await?;
        calls += 2;
        serials.insert(served_serial(&c)?);
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert!(serials.len() >= 3, "renewed at least twice in 14 s ({calls} calls): {serials:?}");
    let key = c.pki.join("coordinator.key");
    assert_eq!(std::fs::metadata(&key)?.permissions().mode() & 0o777, 0o600, "the new key is 0600");

    // A stop between writing the new key and putting the new certificate in place: the next
    // start finishes it (here: the certificate file is not the key's, `.next` is).
    c.kill9_coordinator()?;
    let cert = c.pki.join("coordinator.crt");
    let next = c.pki.join("coordinator.crt.next");
    std::fs::copy(&cert, &next)?;
    std::fs::copy(c.pki.join("alice.crt"), &cert)?;
    c.start_coordinator()?;
    assert!(!next.exists(), "the renewal is finished");
    client::operator(c.connect(&ops).await?).list_seeds(pb::ListSeedsRequest::default()).await?;
    c.finish()
}

/// A connection outlives the certificate it was opened with: once that has expired, every
/// call over it is refused (and audited), though the handshake was fine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_over_a_connection_whose_certificate_expired_is_refused() -> anyhow::Result<()> {
    let mut c =
        Cluster::start_with(Options { extra_toml: "[enroll]\ncert_lifetime = \"4s\"\n".into(), ..Default::default() })?;
    let ops = c.issue("operator", "alice")?;
    let (id, _) = c.enroll("source", "dpm-short", None)?;
    let open = c.connect(&id).await?;
    let heartbeat = |conn| async move {
        client::agents(conn)
            .heartbeat(pb::HeartbeatRequest { request_id: seedship_e2e::rid(), status: "idle".into() })
            .await
    };
    client::agents(open.clone())
        .register_agent(pb::RegisterAgentRequest { request_id: seedship_e2e::rid(), ..Default::default() })
        .await?;
    heartbeat(open.clone()).await?;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let err = heartbeat(open.clone()).await.expect_err("refused once the certificate expired");
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
    assert!(err.message().contains("spiffe://e2e.test/source/dpm-short expired at"), "{}", err.message());
    let err = client::agents(open)
        .register_agent(pb::RegisterAgentRequest { request_id: seedship_e2e::rid(), ..Default::default() })
        .await
        .expect_err("refused");
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    // A new connection with that certificate does not get past the handshake at all.
    assert!(client::agents(c.connect(&id).await?).heartbeat(pb::HeartbeatRequest::default()).await.is_err());
    let o = c.run("audit", &mut c.seedctl(&ops, &["--json", "audit", "list", "--limit", "100"]))?;
    let audit: serde_json::Value = serde_json::from_slice(&o.stdout)?;
    assert!(
        audit.as_array().unwrap().iter().any(|e| e["action"] == "RegisterAgent"
            && e["actor"] == "spiffe://e2e.test/source/dpm-short"
            && e["detail"].as_str().unwrap_or("").contains("expired at")),
        "the refusal is audited: {audit}"
    );
    c.finish()
}

/// Agents and the coordinator with certificates that live 8 seconds, through a whole seeding
/// (stage, prepare with a running station, import, verify, vault): every agent renews many
/// times, no call fails or is retried, and nothing is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_lived_certificates_rotate_many_times_through_a_seeding_with_no_failed_call() -> anyhow::Result<()> {
    use seedship_e2e::azure::{Emulator, kept_dir, wait_seed_state};
    use seedship_e2e::bin;
    use seedship_e2e::prep::{disk_size, image, ship, stage, station};
    const T: Duration = Duration::from_secs(90);
    let emu = Emulator::start_with_storage(&kept_dir("seedship-rotate-")?)?;
    let mut c = Cluster::start_with(Options {
        extra_toml: format!(
            "{}[enroll]\ncert_lifetime = \"8s\"\nserver_cert_lifetime = \"8s\"\n",
            emu.coordinator_toml("1s")
        ),
        ..Default::default()
    })?;
    let ops = c.issue("operator", "alice")?;
    let job = "job-rot";
    let staging = stage(&mut c, &ops, job, 6, 3, "st-rot").await?;
    let src_cfg = c.path(&format!("src-{job}.toml"));
    c.spawn("source-run", Command::new(bin("source-agent")).arg("--config").arg(&src_cfg).arg("run"))?;
    let (cfg, dir) = station(&c, "st-rot", "")?;
    let disk = image(&dir, "disk1.img", disk_size(&staging, 1));
    c.spawn("station-run", Command::new(bin("copy-agent")).arg("--config").arg(&cfg).arg("run"))?;
    wait_seed_state(&c, &ops, job, "import_job_created", T).await?;
    ship(&mut c, &ops, job, "DHL", "1000000777", 1)?;
    emu.dc(job, "arrive", serde_json::json!({ "disks": [disk] })).await?;
    emu.dc(job, "copy", serde_json::json!({})).await?;
    wait_seed_state(&c, &ops, job, "seeded", T).await?;

    // Many renewals each: wait for six if the seeding was quicker than that.
    let renewals = |c: &Cluster, name: &str| c.log_of(name).matches("renewed this agent's certificate").count();
    let t0 = Instant::now();
    while (renewals(&c, "source-run") < 6 || renewals(&c, "station-run") < 6) && t0.elapsed() < T {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for name in ["source-run", "station-run"] {
        let log = c.log_of(name);
        assert!(renewals(&c, name) >= 6, "{name} renewed {} times:\n{log}", renewals(&c, name));
        for bad in ["transient failure", "cannot renew", "cannot load", " ERROR ", "error:"] {
            assert!(!log.contains(bad), "{name} says {bad:?}:\n{log}");
        }
    }
    let logs = c.coordinator_logs();
    assert!(logs.matches("server certificate renewed").count() >= 3, "the server's too:\n{logs}");
    assert!(!logs.contains("whose certificate has expired"), "{logs}");
    let o = c.run("audit", &mut c.seedctl(&ops, &["--json", "audit", "list", "--limit", "10000"]))?;
    let audit: serde_json::Value = serde_json::from_slice(&o.stdout)?;
    let entries = audit.as_array().unwrap();
    let refused: Vec<_> =
        entries.iter().filter(|e| e["outcome"].as_str().unwrap_or("").starts_with("refused")).collect();
    assert!(refused.is_empty(), "nothing refused: {refused:?}");
    let renewed = entries.iter().filter(|e| e["action"] == "RenewCertificate" && e["outcome"] == "ok").count();
    assert!(renewed >= 12, "{renewed} renewals audited");
    c.finish()
}

/// A coordinator killed and down while a running agent's renewal is due: the agent keeps its
/// certificate and key (a matching pair, still accepted), retries, and renews again once the
/// coordinator is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_down_during_renewals_loses_the_agent_nothing() -> anyhow::Result<()> {
    use seedship_e2e::bin;
    let mut c =
        Cluster::start_with(Options { extra_toml: "[enroll]\ncert_lifetime = \"8s\"\n".into(), ..Default::default() })?;
    let (id, cfg) = c.enroll("source", "dpm-restart", None)?;
    c.spawn("agent-run", Command::new(bin("source-agent")).arg("--config").arg(&cfg).arg("run"))?;
    let renewals = |c: &Cluster| c.log_of("agent-run").matches("renewed this agent's certificate").count();
    let wait_for = |c: &Cluster, n: usize| {
        let t0 = Instant::now();
        while renewals(c) < n {
            anyhow::ensure!(
                t0.elapsed() < Duration::from_secs(30),
                "{} renewals:\n{}",
                renewals(c),
                c.log_of("agent-run")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(())
    };
    wait_for(&c, 1)?;
    c.kill9_coordinator()?;
    // Down for longer than the time to the next renewal: it fails and is retried.
    std::thread::sleep(Duration::from_secs(5));
    let key = std::fs::read_to_string(&id.key)?;
    let cert = std::fs::read(&id.cert)?;
    let kp = rcgen::KeyPair::from_pem(&key)?;
    let der = rustls_pemfile::certs(&mut cert.as_slice()).next().unwrap()?;
    let (_, x) = <x509_parser::certificate::X509Certificate as x509_parser::prelude::FromDer<_>>::from_der(&der)?;
    assert_eq!(x.public_key().subject_public_key.data.as_ref(), kp.public_key_raw(), "the key and certificate match");
    c.start_coordinator()?;
    let before = renewals(&c);
    wait_for(&c, before + 2)?;
    let log = c.log_of("agent-run");
    assert!(log.contains("cannot renew this agent's certificate yet; the current one still works"), "{log}");
    let o = c.run("register", Command::new(bin("source-agent")).arg("--config").arg(&cfg).arg("register"))?;
    assert!(o.status.success(), "{}", seedship_e2e::prep::text(&o));
    c.finish()
}
