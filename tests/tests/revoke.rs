//! Revocation: `seedctl agents revoke` makes the coordinator refuse an identity on every call,
//! on a connection already open too; a revoked station's work goes back in the queue and its
//! drive keys are no longer given to it; the revocation is listed, audited and survives a
//! restart. Real coordinator, seedctl and agents on loopback.

use std::time::{Duration, Instant};

use seedship_e2e::prep::text;
use seedship_e2e::{Cluster, rid};
use seedship_proto::{client, pb};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_station_is_refused_on_its_open_connection_and_its_work_goes_back() -> anyhow::Result<()> {
    let mut c = Cluster::start()?;
    let ops = c.issue("operator", "alice")?;
    let fs = c.issue("source", "fs01")?;
    let (st, st_cfg) = c.enroll("copy", "station-01", None)?;
    let (cp, lease) = seedship_e2e::claimed(&mut c, &fs, &st, &ops, "job-rev").await?;
    let renew = |cp: seedship_proto::client::Conn| {
        let lease = lease.clone();
        async move {
            client::diskprep(cp)
                .renew_lease(pb::RenewLeaseRequest {
                    request_id: rid(),
                    work_id: lease.work_id.clone(),
                    generation: lease.generation,
                    waiting: String::new(),
                    disks: vec![],
                })
                .await
        }
    };
    renew(cp.clone()).await?;

    // Refusals first: one's own identity; a name nobody has.
    let o = c.run(
        "revoke-self",
        &mut c.seedctl(&ops, &["agents", "revoke", "alice", "--role", "operator", "--reason", "x"]),
    )?;
    assert!(!o.status.success() && text(&o).contains("cannot revoke their own identity"), "{}", text(&o));
    let o = c.run("revoke-nobody", &mut c.seedctl(&ops, &["agents", "revoke", "nobody", "--reason", "x"]))?;
    assert!(!o.status.success() && text(&o).contains("no registered agent is named \"nobody\""), "{}", text(&o));

    let o =
        c.run("revoke", &mut c.seedctl(&ops, &["agents", "revoke", "station-01", "--reason", "stolen from the van"]))?;
    let t = text(&o);
    assert!(o.status.success() && t.contains("spiffe://e2e.test/copy/station-01 is revoked"), "{t}");
    assert!(t.contains("its work is back in the queue: job-rev"), "{t}");
    // The station's open connection is refused within 60 s (here at once: this coordinator
    // made the revocation), and so is every other call it makes.
    let t0 = Instant::now();
    loop {
        match renew(cp.clone()).await {
            Err(s) if s.code() == tonic::Code::PermissionDenied && s.message().contains("is revoked") => break,
            r => {
                anyhow::ensure!(t0.elapsed() < Duration::from_secs(60), "still answered after 60 s: {r:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    let key = client::diskprep(cp.clone())
        .get_drive_key(pb::GetDriveKeyRequest {
            work_id: lease.work_id.clone(),
            generation: lease.generation,
            drive_id: "ANY".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(key.code(), tonic::Code::PermissionDenied, "no drive key for a revoked station: {key:?}");
    let det =
        seedship_e2e::azure::wait_seed_state(&c, &ops, "job-rev", "queued_for_disk_prep", Duration::from_secs(10))
            .await?;
    assert!(det.seed.unwrap().state_reason.contains("was revoked by spiffe://e2e.test/operator/alice"));
    // It cannot enroll again under that name.
    let again = c.enroll("copy", "station-01", None).unwrap_err().to_string();
    assert!(again.contains("is revoked; it cannot enroll again"), "{again}");

    // Listed and audited, and still refused after a restart, on a new connection.
    let o = c.run("revoked", &mut c.seedctl(&ops, &["agents", "revoked"]))?;
    assert!(
        text(&o).contains("spiffe://e2e.test/copy/station-01") && text(&o).contains("stolen from the van"),
        "{}",
        text(&o)
    );
    c.kill9_coordinator()?;
    c.start_coordinator()?;
    let fresh = c.connect(&st).await?;
    let e = seedship_proto::agent::heartbeat(&fresh, "idle").await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    // Nor may it renew its certificate to outlive the revocation.
    let mut renew_cmd = std::process::Command::new(seedship_e2e::bin("copy-agent"));
    let o = c.run("renew-revoked", renew_cmd.arg("--config").arg(&st_cfg).arg("renew"))?;
    assert!(!o.status.success() && text(&o).contains("is revoked"), "{}", text(&o));
    let o = c.run("audit", &mut c.seedctl(&ops, &["--json", "audit", "list", "--limit", "1000"]))?;
    let audit: serde_json::Value = serde_json::from_slice(&o.stdout)?;
    assert!(
        audit.as_array().unwrap().iter().any(|e| e["action"] == "RevokeAgent"
            && e["actor"] == "spiffe://e2e.test/operator/alice"
            && e["target"] == "spiffe://e2e.test/copy/station-01"),
        "{audit}"
    );
    assert!(
        audit.as_array().unwrap().iter().any(|e| e["action"] == "RenewCertificate"
            && e["actor"] == "spiffe://e2e.test/copy/station-01"
            && e["outcome"] != "ok"),
        "the refused renewal is audited: {audit}"
    );
    // Others are unaffected.
    client::operator(c.connect(&ops).await?).list_seeds(pb::ListSeedsRequest::default()).await?;
    c.allow_error("refused a revoked identity");
    c.finish()
}
