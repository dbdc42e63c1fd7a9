//! A retry with the same request id gets the stored answer; reusing an id for something else
//! is ALREADY_EXISTS.

use seedship_e2e::{Cluster, rid, seed_request};
use seedship_proto::{client, pb};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_get_the_stored_answer_and_conflicts_are_refused() -> anyhow::Result<()> {
    let c = Cluster::start()?;
    let (fs, st, ops) = (c.issue("source", "fs01")?, c.issue("copy", "station-01")?, c.issue("operator", "alice")?);
    let (src, cp, op) = (c.connect(&fs).await?, c.connect(&st).await?, c.connect(&ops).await?);
    seedship_proto::agent::register(&cp, None, "t").await?;

    // RegisterSeed retried with the same id: one seed, same answer.
    let req = seed_request("job-idem");
    let a = client::seeds(src.clone()).register_seed(req.clone()).await?.into_inner();
    let b = client::seeds(src.clone()).register_seed(req.clone()).await?.into_inner();
    assert_eq!(a, b);
    assert!(a.created);
    // Same seed again under a new id: idempotent by job name (created = false).
    let mut again = req.clone();
    again.request_id = rid();
    let r = client::seeds(src.clone()).register_seed(again).await?.into_inner();
    assert!(!r.created);
    assert_eq!(r.seed.unwrap().seed_id, a.seed.as_ref().unwrap().seed_id);
    // Same id, different payload.
    let mut conflict = req.clone();
    conflict.total_bytes += 1;
    let e = client::seeds(src.clone()).register_seed(conflict).await.unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
    assert!(e.message().contains("request id"), "{}", e.message());
    // A different seed under a used job name.
    let mut other = seed_request("job-idem");
    other.manifest_root = "cd".repeat(32);
    let e = client::seeds(src.clone()).register_seed(other).await.unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    assert!(e.message().contains("job name"), "{}", e.message());

    // ClaimWork retried: the same lease, not a second generation.
    let id = rid();
    let l1 = client::diskprep(cp.clone())
        .claim_work(pb::ClaimWorkRequest { request_id: id.clone() })
        .await?
        .into_inner()
        .lease
        .unwrap();
    let l2 = client::diskprep(cp.clone())
        .claim_work(pb::ClaimWorkRequest { request_id: id.clone() })
        .await?
        .into_inner()
        .lease
        .unwrap();
    assert_eq!(l1, l2);
    assert_eq!(l1.generation, 1);

    // Progress retried with the same id applies once; the same id with another range conflicts.
    let p = pb::ReportProgressRequest {
        request_id: rid(),
        work_id: l1.work_id.clone(),
        generation: 1,
        from_bytes: 0,
        to_bytes: 100,
        phase: "copy".into(),
        disks: Vec::new(),
    };
    let r1 = client::diskprep(cp.clone()).report_progress(p.clone()).await?.into_inner();
    let r2 = client::diskprep(cp.clone()).report_progress(p.clone()).await?.into_inner();
    assert_eq!(r1, r2);
    assert_eq!(r1.progress_bytes, 100);
    let mut p2 = p.clone();
    p2.to_bytes = 200;
    let e = client::diskprep(cp.clone()).report_progress(p2).await.unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);

    // The history shows exactly one registration and one claim.
    let d = client::operator(op).get_seed(pb::GetSeedRequest { seed: "job-idem".into() }).await?.into_inner();
    assert_eq!(d.history.iter().filter(|e| e.event == "register").count(), 1);
    assert_eq!(d.history.iter().filter(|e| e.event == "lease_claimed").count(), 1);
    assert_eq!(d.work.unwrap().progress_bytes, 100);
    c.finish()
}
