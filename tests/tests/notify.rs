//! Notifications: a webhook receiver started here gets each notification exactly once, signed,
//! in Alertmanager's shape, also when the coordinator is killed between the event and its
//! delivery; e-mail reaches a real SMTP server (aiosmtpd) started here; an operator
//! acknowledges a notification once.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use seedship_e2e::{Cluster, Options, rid};
use seedship_proto::{client, pb};

const SECRET: &str = "webhook-secret-0123456789abcdef";

/// One accepted request: delivery id, timestamp, signature, body.
type Accepted = (String, String, String, Vec<u8>);

#[derive(Clone, Default)]
struct Receiver {
    /// (delivery id, timestamp, signature, body) of every request answered 200.
    accepted: Arc<Mutex<Vec<Accepted>>>,
    refused: Arc<Mutex<u32>>,
    /// Answer 503 while true.
    down: Arc<Mutex<bool>>,
}

async fn hook(
    axum::extract::State(r): axum::extract::State<Receiver>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::http::StatusCode {
    if *r.down.lock().unwrap() {
        *r.refused.lock().unwrap() += 1;
        return axum::http::StatusCode::SERVICE_UNAVAILABLE;
    }
    let h = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    r.accepted.lock().unwrap().push((
        h("x-seedship-delivery"),
        h("x-seedship-timestamp"),
        h("x-seedship-signature"),
        body.to_vec(),
    ));
    axum::http::StatusCode::OK
}

async fn start_receiver() -> anyhow::Result<(Receiver, u16)> {
    let r = Receiver::default();
    let app = axum::Router::new().route("/hook", axum::routing::post(hook)).with_state(r.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = l.local_addr()?.port();
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    Ok((r, port))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_gets_each_notification_once_across_a_coordinator_kill() -> anyhow::Result<()> {
    let (receiver, port) = start_receiver().await?;
    *receiver.down.lock().unwrap() = true;
    let dir = tempfile::tempdir()?;
    let secret = dir.path().join("webhook-secret");
    std::fs::write(&secret, SECRET)?;
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    let extra = format!(
        "[notify]\nexternal_url = \"https://dashboard.example\"\n[[notify.webhook]]\nname = \"ops\"\nurl = \"http://127.0.0.1:{port}/hook\"\nsecret_file = \"{}\"\nevents = [\"waiting_for_person\", \"failed\"]\n",
        secret.display()
    );
    let mut c = Cluster::start_with(Options { extra_toml: extra, ..Default::default() })?;
    c.allow_error("notification not delivered");
    let (fs, st, ops) = (c.issue("source", "fs01")?, c.issue("copy", "station-01")?, c.issue("operator", "alice")?);
    let (cp, lease) = seedship_e2e::claimed(&mut c, &fs, &st, &ops, "job-ntf").await?;
    // The station waits for a person: a notification, in the event's own transaction.
    client::diskprep(cp.clone())
        .renew_lease(pb::RenewLeaseRequest {
            request_id: rid(),
            work_id: lease.work_id.clone(),
            generation: lease.generation,
            waiting: "insert 1 more disk".into(),
            disks: vec![],
        })
        .await?;
    // The receiver is down: the coordinator tries, and is killed before it got through.
    seedship_e2e::wait_for("a refused attempt", Duration::from_secs(15), || {
        (*receiver.refused.lock().unwrap() >= 1).then_some(())
    })?;
    // Recorded as failed (its outcome committed: on PostgreSQL that can come a moment after
    // the receiver saw it), then the kill.
    seedship_e2e::wait_for("the failed attempt recorded", Duration::from_secs(15), || {
        let out = c.seedctl(&ops, &["--json", "notifications"]).output().ok()?;
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        (list[0]["deliveries"][0]["attempts"].as_u64()? >= 1).then_some(())
    })?;
    c.kill9_coordinator()?;
    *receiver.down.lock().unwrap() = false;
    c.start_coordinator()?;
    let got = seedship_e2e::wait_for("the delivery after the restart", Duration::from_secs(30), || {
        let a = receiver.accepted.lock().unwrap().clone();
        (!a.is_empty()).then_some(a)
    })?;
    // Nothing more comes for it, however long we wait (retries stop once delivered).
    tokio::time::sleep(Duration::from_secs(4)).await;
    let all = receiver.accepted.lock().unwrap().clone();
    assert_eq!(all.len(), 1, "exactly one delivery: {:?}", all.iter().map(|a| &a.0).collect::<Vec<_>>());
    let (delivery, ts, sig, body) = &got[0];
    // Signed: HMAC-SHA256 over "<timestamp>.<body>" with the shared secret.
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
    let mut msg = ts.as_bytes().to_vec();
    msg.push(b'.');
    msg.extend_from_slice(body);
    let want = format!("sha256={}", hex::encode(ring::hmac::sign(&key, &msg).as_ref()));
    assert_eq!(sig, &want, "the signature verifies with the secret");
    // Alertmanager's webhook shape, and ours beside it.
    let v: serde_json::Value = serde_json::from_slice(body)?;
    assert_eq!(v["version"], "4");
    assert_eq!(v["status"], "firing");
    assert_eq!(v["receiver"], "ops");
    assert_eq!(v["externalURL"], "https://dashboard.example");
    assert_eq!(v["alerts"][0]["labels"]["alertname"], "SeedshipWaitingForPerson");
    assert_eq!(v["alerts"][0]["labels"]["job"], "job-ntf");
    assert!(v["alerts"][0]["annotations"]["description"].as_str().unwrap().contains("insert 1 more disk"), "{v}");
    assert_eq!(v["seedship"]["version"], 1);
    assert_eq!(v["seedship"]["kind"], "waiting_for_person");
    assert_eq!(v["seedship"]["id"].to_string(), *delivery);
    // Recorded as delivered; acknowledged once, with a reason; not twice.
    let out = c.run("notifications", &mut c.seedctl(&ops, &["--json", "notifications"]))?;
    let list: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let n = &list[0];
    assert_eq!(n["deliveries"][0]["state"], "delivered", "{list}");
    assert!(n["deliveries"][0]["attempts"].as_u64().unwrap() >= 2, "{list}");
    let id = n["id"].to_string();
    let out = c.run("ack-no-reason", &mut c.seedctl(&ops, &["ack", &id, "--reason", " "]))?;
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("reason"), "{out:?}");
    let out = c.run("ack", &mut c.seedctl(&ops, &["ack", &id, "--reason", "disks ordered"]))?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = c.run("ack-again", &mut c.seedctl(&ops, &["ack", &id, "--reason", "again"]))?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("acknowledged already") && err.contains("alice"), "{err}");
    let out = c.run("open", &mut c.seedctl(&ops, &["--json", "notifications", "--open"]))?;
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");
    c.finish()
}

/// E-mail over SMTP to aiosmtpd (started here, writing a Maildir).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e_mail_reaches_an_smtp_server() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let maildir = dir.path().join("mail");
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut sink = std::process::Command::new(seedship_e2e::azure::python()?)
        .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
        .arg(&maildir)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("smtp.log"))?)
        .spawn()?;
    seedship_e2e::wait_for("the SMTP sink", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ())
    })?;
    let extra = format!(
        "[notify]\n[notify.email]\nsmtp = \"127.0.0.1:{port}\"\nfrom = \"seedship@example.org\"\nto = [\"ops@example.org\", \"oncall@example.org\"]\n"
    );
    let r = async {
        let mut c = Cluster::start_with(Options { extra_toml: extra, ..Default::default() })?;
        let (fs, st, ops) = (c.issue("source", "fs01")?, c.issue("copy", "station-01")?, c.issue("operator", "alice")?);
        // A station waiting for disks: a notification for every channel.
        let (cp, lease) = seedship_e2e::claimed(&mut c, &fs, &st, &ops, "job-mail").await?;
        client::diskprep(cp.clone())
            .renew_lease(pb::RenewLeaseRequest {
                request_id: rid(),
                work_id: lease.work_id,
                generation: lease.generation,
                waiting: "insert 2 more disks".into(),
                disks: vec![],
            })
            .await?;
        let mail = seedship_e2e::wait_for("the e-mail", Duration::from_secs(30), || {
            let rd = std::fs::read_dir(maildir.join("new")).ok()?;
            let f = rd.filter_map(|e| e.ok()).next()?;
            std::fs::read_to_string(f.path()).ok()
        })?;
        assert!(mail.contains("Subject: [seedship] Seed job-mail waits for a person"), "{mail}");
        assert!(
            mail.contains("To: ops@example.org, oncall@example.org") && mail.contains("insert 2 more disks"),
            "{mail}"
        );
        assert!(mail.contains("seedctl ack"), "{mail}");
        c.finish()
    }
    .await;
    let _ = sink.kill();
    let _ = sink.wait();
    r
}
