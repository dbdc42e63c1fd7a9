//! The tamper-evident audit log: what goes in, and `seedctl audit verify` finding an entry
//! that was changed, removed or moved.

use seedship_e2e::{Cluster, rid, seed_request};
use seedship_proto::{client, pb};

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_decisions_and_refusals_are_chained_and_an_edited_row_is_found() -> anyhow::Result<()> {
    let mut c = Cluster::start()?;
    let (fs, st, ops) = (c.issue("source", "fs01")?, c.issue("copy", "station-01")?, c.issue("operator", "alice")?);
    let src = c.connect(&fs).await?;
    client::seeds(src.clone()).register_seed(seed_request("job-aud")).await?;
    let out = c.run("allow", &mut c.seedctl(&ops, &["allow-virtual-station", "job-aud", "--reason", "test lab"]))?;
    assert!(out.status.success(), "{}", stderr(&out));
    let cp = c.connect(&st).await?;
    seedship_proto::agent::register(&cp, None, "test").await?;
    client::diskprep(cp.clone()).claim_work(pb::ClaimWorkRequest { request_id: rid() }).await?;
    // A station reaching for the operator's API: refused, and on the record.
    let denied = client::operator(cp.clone()).list_seeds(pb::ListSeedsRequest::default()).await.unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    // An operator's refused action (cancel needs a reason) is on the record too.
    let refused = client::operator(c.connect(&ops).await?)
        .cancel_seed(pb::CancelSeedRequest { request_id: rid(), seed: "job-aud".into(), reason: String::new() })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);

    let list = |c: &mut Cluster, args: &[&str]| -> anyhow::Result<serde_json::Value> {
        let mut a = vec!["--json", "audit", "list"];
        a.extend_from_slice(args);
        let out = c.run("audit-list", &mut c.seedctl(&ops, &a))?;
        anyhow::ensure!(out.status.success(), "{}", stderr(&out));
        Ok(serde_json::from_str(&stdout(&out))?)
    };
    let all = seedship_e2e::wait_for("the refusals in the audit log", std::time::Duration::from_secs(10), || {
        let v = list(&mut c, &["--limit", "1000"]).ok()?;
        let n = v.as_array()?.iter().filter(|e| e["outcome"].as_str().unwrap_or("").starts_with("refused")).count();
        (n >= 2).then_some(v)
    })?;
    let entries = all.as_array().unwrap();
    let has = |actor: &str, action: &str, target: &str| {
        entries
            .iter()
            .any(|e| e["actor"].as_str().unwrap().ends_with(actor) && e["action"] == action && e["target"] == target)
    };
    assert!(has("/source/fs01", "RegisterSeed", "job-aud"), "the call: {all}");
    assert!(has("/source/fs01", "register", "job-aud"), "its event: {all}");
    assert!(has("/operator/alice", "AllowVirtualStation", "job-aud"), "{all}");
    assert!(has("/operator/alice", "allow_virtual_station", "job-aud"), "{all}");
    assert!(has("/copy/station-01", "lease_claimed", "job-aud"), "{all}");
    let denial = entries.iter().find(|e| e["action"] == "ListSeeds").expect("the denied read");
    assert!(denial["actor"].as_str().unwrap().ends_with("/copy/station-01"), "{denial}");
    assert_eq!(denial["outcome"], "refused: permission_denied");
    let cancel = entries.iter().find(|e| e["action"] == "CancelSeed").expect("the refused cancel");
    assert_eq!(cancel["outcome"], "refused: invalid_argument");
    assert!(cancel["detail"].as_str().unwrap().contains("reason"), "{cancel}");
    // One target's entries.
    let one = list(&mut c, &["--target", "job-aud"])?;
    assert!(one.as_array().unwrap().iter().all(|e| e["target"] == "job-aud"), "{one}");

    // Intact, online and exported.
    let out = c.run("verify", &mut c.seedctl(&ops, &["audit", "verify"]))?;
    assert!(out.status.success() && stdout(&out).contains("audit log intact"), "{}{}", stdout(&out), stderr(&out));
    let export = c.path("audit.jsonl");
    let out = c.run("export", &mut c.seedctl(&ops, &["audit", "export", "--out", export.to_str().unwrap()]))?;
    assert!(out.status.success(), "{}", stderr(&out));
    let verify_file = |c: &mut Cluster, f: &std::path::Path| -> anyhow::Result<std::process::Output> {
        c.run("verify-file", &mut c.seedctl(&ops, &["audit", "verify", "--file", f.to_str().unwrap()]))
    };
    let out = verify_file(&mut c, &export)?;
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<String> = std::fs::read_to_string(&export)?.lines().map(str::to_string).collect();
    assert!(lines.len() >= 8, "{lines:?}");

    // A removed entry, and two swapped ones, in an export.
    let cut = c.path("cut.jsonl");
    let mut l = lines.clone();
    l.remove(4);
    std::fs::write(&cut, l.join("\n"))?;
    let out = verify_file(&mut c, &cut)?;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("entries 5..5 are missing"), "{}", stderr(&out));
    let swapped = c.path("swapped.jsonl");
    let mut l = lines.clone();
    l.swap(5, 6);
    std::fs::write(&swapped, l.join("\n"))?;
    let out = verify_file(&mut c, &swapped)?;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("entry 6 is out of place: it comes after entry 7"), "{}", stderr(&out));
    assert!(stderr(&out).contains("1 problem(s)"), "a swap is one problem: {}", stderr(&out));

    // One row edited in the coordinator's database, as someone with the file would.
    let n = c.sql(|db| db.exec("UPDATE audit_log SET detail = 'nothing happened' WHERE seq = 3", &[]))?;
    assert_eq!(n, 1);
    let out = c.run("verify-edited", &mut c.seedctl(&ops, &["audit", "verify"]))?;
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("audit log NOT intact") && err.contains("entry 3 was changed"), "{err}");
    assert_eq!(err.matches("was changed").count(), 1, "only the edited entry: {err}");
    c.finish()
}
