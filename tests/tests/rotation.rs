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
