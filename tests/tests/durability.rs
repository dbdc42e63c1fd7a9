//! kill -9 of the coordinator mid-sequence loses nothing that was answered.

use seedship_e2e::{Cluster, rid, seed_request};
use seedship_proto::{client, pb};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_kill_9() -> anyhow::Result<()> {
    let mut c = Cluster::start()?;
    let (fs, st, ops) = (c.issue("source", "fs01")?, c.issue("copy", "station-01")?, c.issue("operator", "alice")?);
    let src = c.connect(&fs).await?;
    let cp = c.connect(&st).await?;
    seedship_proto::agent::register(&cp, Some("hq"), "t").await?;
    client::seeds(src.clone()).register_seed(seed_request("job-a")).await?;
    client::seeds(src.clone()).register_seed(seed_request("job-b")).await?;
    let lease = client::diskprep(cp.clone())
        .claim_work(pb::ClaimWorkRequest { request_id: rid() })
        .await?
        .into_inner()
        .lease
        .unwrap();
    let progress_id = rid();
    let p = pb::ReportProgressRequest {
        request_id: progress_id.clone(),
        work_id: lease.work_id.clone(),
        generation: lease.generation,
        from_bytes: 0,
        to_bytes: 400_000,
        phase: "copy".into(),
        disks: Vec::new(),
    };
    client::diskprep(cp.clone()).report_progress(p.clone()).await?;

    // Mid-sequence: SIGKILL, no shutdown code runs. Then start it again on the same database.
    c.kill9_coordinator()?;
    c.start_coordinator()?;
    let cp = c.connect(&st).await?;
    let op = c.connect(&ops).await?;

    // Everything answered before the kill is there.
    let mut ops_c = client::operator(op);
    let seeds = ops_c.list_seeds(pb::ListSeedsRequest::default()).await?.into_inner().seeds;
    let mut jobs: Vec<_> = seeds.iter().map(|s| (s.job_name.clone(), s.state)).collect();
    jobs.sort();
    assert_eq!(
        jobs,
        vec![
            ("job-a".to_string(), pb::SeedState::Preparing as i32),
            ("job-b".to_string(), pb::SeedState::QueuedForDiskPrep as i32)
        ]
    );
    let d = ops_c.get_seed(pb::GetSeedRequest { seed: "job-a".into() }).await?.into_inner();
    let w = d.work.unwrap();
    assert_eq!((w.status.as_str(), w.generation, w.progress_bytes), ("leased", 1, 400_000));
    assert_eq!(d.history.len(), 3);
    let agents = ops_c.list_agents(pb::ListAgentsRequest::default()).await?.into_inner().agents;
    assert_eq!(agents.len(), 1);
    assert_eq!(agents[0].site, "hq");

    // The lease is still good, the stored answer of the progress report too (a retry after the
    // crash is not applied twice), and the position continues.
    let again = client::diskprep(cp.clone()).report_progress(p).await?.into_inner();
    assert_eq!(again.progress_bytes, 400_000);
    let next = pb::ReportProgressRequest {
        request_id: rid(),
        work_id: lease.work_id.clone(),
        generation: lease.generation,
        from_bytes: 400_000,
        to_bytes: 500_000,
        phase: "copy".into(),
        disks: Vec::new(),
    };
    assert_eq!(client::diskprep(cp.clone()).report_progress(next).await?.into_inner().progress_bytes, 500_000);
    // The generation never goes back: the next claim of it after a release is 2 (the released
    // seed goes behind the others, and waits out its back-off).
    client::diskprep(cp.clone())
        .release_work(pb::ReleaseWorkRequest {
            request_id: rid(),
            work_id: lease.work_id.clone(),
            generation: 1,
            reason: "test".into(),
            ..Default::default()
        })
        .await?;
    let e = client::diskprep(cp.clone())
        .renew_lease(pb::RenewLeaseRequest {
            request_id: rid(),
            work_id: lease.work_id.clone(),
            generation: 1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    let claim = || {
        let mut dp = client::diskprep(cp.clone());
        async move { dp.claim_work(pb::ClaimWorkRequest { request_id: rid() }).await.map(|r| r.into_inner().lease) }
    };
    let other = claim().await?.unwrap();
    assert_eq!((other.job_name.as_str(), other.generation), ("job-b", 1));
    let l2 = seedship_e2e::wait_for_async("job-a claimable again", std::time::Duration::from_secs(10), || async {
        claim().await.ok().flatten()
    })
    .await?;
    assert_eq!((l2.job_name.as_str(), l2.generation), ("job-a", 2));
    c.finish()
}
