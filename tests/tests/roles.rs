//! Authorization by role and ownership, from the client certificate.

use seedship_e2e::{Cluster, rid, seed_request};
use seedship_proto::{client, pb};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_and_ownership_are_enforced_and_refusals_logged() -> anyhow::Result<()> {
    let c = Cluster::start()?;
    let fs01 = c.issue("source", "fs01")?;
    let fs02 = c.issue("source", "fs02")?;
    let st1 = c.issue("copy", "station-01")?;
    let st2 = c.issue("copy", "station-02")?;
    let ops = c.issue("operator", "alice")?;
    let (src, src2, cp1, cp2, op) = (
        c.connect(&fs01).await?,
        c.connect(&fs02).await?,
        c.connect(&st1).await?,
        c.connect(&st2).await?,
        c.connect(&ops).await?,
    );

    // A source agent calling copy-agent RPCs.
    let e = client::diskprep(src.clone()).claim_work(pb::ClaimWorkRequest { request_id: rid() }).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    // A copy station registering a seed; an operator claiming work; a source reading the fleet.
    let e = client::seeds(cp1.clone()).register_seed(seed_request("job-x")).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = client::diskprep(op.clone()).claim_work(pb::ClaimWorkRequest { request_id: rid() }).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = client::operator(src.clone()).list_seeds(pb::ListSeedsRequest::default()).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);

    // Each source agent sees only its own seeds.
    client::seeds(src.clone()).register_seed(seed_request("job-fs01")).await?;
    client::seeds(src2.clone()).register_seed(seed_request("job-fs02")).await?;
    let own = client::seeds(src.clone()).list_own_seeds(pb::ListOwnSeedsRequest {}).await?.into_inner().seeds;
    assert_eq!(own.iter().map(|s| s.job_name.as_str()).collect::<Vec<_>>(), vec!["job-fs01"]);

    // One copy station acting on another's lease.
    seedship_proto::agent::register(&cp1, None, "t").await?;
    seedship_proto::agent::register(&cp2, None, "t").await?;
    let lease = client::diskprep(cp1.clone())
        .claim_work(pb::ClaimWorkRequest { request_id: rid() })
        .await?
        .into_inner()
        .lease
        .expect("work is queued");
    let e = client::diskprep(cp2.clone())
        .renew_lease(pb::RenewLeaseRequest {
            request_id: rid(),
            work_id: lease.work_id.clone(),
            generation: lease.generation,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let e = client::diskprep(cp2.clone())
        .report_progress(pb::ReportProgressRequest {
            request_id: rid(),
            work_id: lease.work_id.clone(),
            generation: lease.generation,
            from_bytes: 0,
            to_bytes: 10,
            phase: "copy".into(),
            disks: Vec::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    // The rightful holder is unaffected.
    client::diskprep(cp1.clone())
        .renew_lease(pb::RenewLeaseRequest {
            request_id: rid(),
            work_id: lease.work_id.clone(),
            generation: lease.generation,
            ..Default::default()
        })
        .await?;

    // Every role refusal is logged with the caller's identity.
    let logs = c.coordinator_logs();
    for who in
        ["spiffe://e2e.test/source/fs01", "spiffe://e2e.test/copy/station-01", "spiffe://e2e.test/operator/alice"]
    {
        assert!(
            logs.lines().any(|l| l.contains("permission denied") && l.contains(who)),
            "no logged refusal for {who}"
        );
    }
    c.finish()
}
