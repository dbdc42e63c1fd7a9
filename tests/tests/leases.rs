//! Disk-prep leases: claim, renew, progress, expiry, re-claim with a higher generation, and
//! the stale holder fenced off.

use std::time::Duration;

use seedship_e2e::{Cluster, Options, rid, seed_request, wait_for_async};
use seedship_proto::{client, pb};
use tonic::Code;

type DiskPrep = pb::disk_prep_service_client::DiskPrepServiceClient<seedship_proto::client::Conn>;
type Operator = pb::operator_service_client::OperatorServiceClient<seedship_proto::client::Conn>;

fn progress(l: &pb::Lease, from: u64, to: u64) -> pb::ReportProgressRequest {
    pb::ReportProgressRequest {
        request_id: rid(),
        work_id: l.work_id.clone(),
        generation: l.generation,
        from_bytes: from,
        to_bytes: to,
        phase: "copy".into(),
        disks: Vec::new(),
    }
}

/// A prepared drive of `l`'s seed, at position 1, with a key.
fn prepared_drive(l: &pb::Lease, drive_id: &str) -> pb::ReportDriveRequest {
    pb::ReportDriveRequest {
        request_id: rid(),
        work_id: l.work_id.clone(),
        generation: l.generation,
        drive: Some(pb::DriveReport {
            drive_id: drive_id.into(),
            position: 1,
            capacity_bytes: 2_000_000,
            bytes_written: 1_000_000,
            manifest_file: "\\DriveManifest.xml".into(),
            manifest_hash: "0123456789abcdef0123456789abcdef".into(),
            drive_header_hash: "ABCDEF0123456789ABCDEF0123456789".into(),
            recovery_password: "000011-000022-000033-000044-000055-000066-000077-000088".into(),
            ..Default::default()
        }),
    }
}

fn renew(l: &pb::Lease) -> pb::RenewLeaseRequest {
    pb::RenewLeaseRequest {
        request_id: rid(),
        work_id: l.work_id.clone(),
        generation: l.generation,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_lifecycle_expiry_and_fencing() -> anyhow::Result<()> {
    let c = Cluster::start_with(Options { lease_ttl: "2s", sweep_interval: "200ms", ..Default::default() })?;
    let (fs, a, b, ops) = (
        c.issue("source", "fs01")?,
        c.issue("copy", "station-a")?,
        c.issue("copy", "station-b")?,
        c.issue("operator", "alice")?,
    );
    let (src, ca, cb, op) = (c.connect(&fs).await?, c.connect(&a).await?, c.connect(&b).await?, c.connect(&ops).await?);
    seedship_proto::agent::register(&ca, None, "t").await?;
    seedship_proto::agent::register(&cb, None, "t").await?;
    let seed = client::seeds(src).register_seed(seed_request("job-lease")).await?.into_inner().seed.unwrap();
    assert_eq!(seed.state, pb::SeedState::QueuedForDiskPrep as i32);

    // Claim: generation 1.
    let la = client::diskprep(ca.clone())
        .claim_work(pb::ClaimWorkRequest { request_id: rid() })
        .await?
        .into_inner()
        .lease
        .unwrap();
    assert_eq!((la.generation, la.progress_bytes, la.total_bytes), (1, 0, 1_000_000));
    // Nothing else to claim.
    assert!(
        client::diskprep(cb.clone())
            .claim_work(pb::ClaimWorkRequest { request_id: rid() })
            .await?
            .into_inner()
            .lease
            .is_none()
    );

    // Renew extends the expiry; progress moves by checked deltas.
    let e1 = client::diskprep(ca.clone()).renew_lease(renew(&la)).await?.into_inner().expires_unix_ms;
    assert!(e1 >= la.expires_unix_ms);
    let p = client::diskprep(ca.clone()).report_progress(progress(&la, 0, 250_000)).await?.into_inner();
    assert_eq!(p.progress_bytes, 250_000);
    let e = client::diskprep(ca.clone()).report_progress(progress(&la, 0, 300_000)).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "a wrong `from` is refused: {e:?}");
    assert!(e.message().contains("250000"), "the refusal tells the recorded position: {}", e.message());

    // Station A goes silent. The sweeper returns the work to the queue after the TTL.
    let mut ops_c = client::operator(op.clone());
    wait_for_async("the lease to expire and be swept", Duration::from_secs(10), || {
        let mut ops_c = ops_c.clone();
        async move {
            let d = ops_c.get_seed(pb::GetSeedRequest { seed: "job-lease".into() }).await.ok()?.into_inner();
            (d.work?.status == "queued").then_some(())
        }
    })
    .await?;

    // Station B claims it: a higher generation, the progress is kept.
    let lb = client::diskprep(cb.clone())
        .claim_work(pb::ClaimWorkRequest { request_id: rid() })
        .await?
        .into_inner()
        .lease
        .unwrap();
    assert_eq!(lb.work_id, la.work_id);
    assert_eq!(lb.generation, 2);
    assert_eq!(lb.progress_bytes, 250_000);

    // The stale holder is refused everywhere, and cannot rewind progress.
    for e in [
        client::diskprep(ca.clone()).renew_lease(renew(&la)).await.unwrap_err(),
        client::diskprep(ca.clone()).report_progress(progress(&la, 250_000, 260_000)).await.unwrap_err(),
        client::diskprep(ca.clone())
            .complete_work(pb::CompleteWorkRequest {
                request_id: rid(),
                work_id: la.work_id.clone(),
                generation: la.generation,
            })
            .await
            .unwrap_err(),
    ] {
        assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
        assert!(e.message().contains("stale"), "{}", e.message());
    }
    client::diskprep(cb.clone()).report_progress(progress(&lb, 250_000, 1_000_000)).await?;

    // Complete needs a drive report first; then the seed moves to "disks prepared".
    let e = client::diskprep(cb.clone())
        .complete_work(pb::CompleteWorkRequest {
            request_id: rid(),
            work_id: lb.work_id.clone(),
            generation: lb.generation,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    client::diskprep(cb.clone()).report_drive(prepared_drive(&lb, "WD-1234")).await?;
    let done = client::diskprep(cb.clone())
        .complete_work(pb::CompleteWorkRequest {
            request_id: rid(),
            work_id: lb.work_id.clone(),
            generation: lb.generation,
        })
        .await?
        .into_inner()
        .seed
        .unwrap();
    assert_eq!(done.state, pb::SeedState::DisksPrepared as i32);

    // The history tells the story, with actors and reasons.
    let d = ops_c.get_seed(pb::GetSeedRequest { seed: seed.seed_id.clone() }).await?.into_inner();
    let events: Vec<(&str, &str)> = d.history.iter().map(|e| (e.event.as_str(), e.actor.as_str())).collect();
    assert_eq!(
        events,
        vec![
            ("register", "spiffe://e2e.test/source/fs01"),
            ("queue", "coordinator"),
            ("lease_claimed", "spiffe://e2e.test/copy/station-a"),
            ("lease_lost", "coordinator/sweeper"),
            ("lease_claimed", "spiffe://e2e.test/copy/station-b"),
            ("disks_prepared", "spiffe://e2e.test/copy/station-b"),
        ]
    );
    assert!(d.history[3].reason.contains("expired"), "{}", d.history[3].reason);
    // The drive key is held, and never shown.
    assert!(d.drives[0].has_key);
    let dump = format!("{d:?}");
    assert!(!dump.contains("000011-000022"), "the recovery password leaked into the operator view");
    assert!(!c.coordinator_logs().contains("000011-000022"), "the recovery password leaked into the logs");
    c.finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_targeted_at_a_site_goes_only_to_its_stations() -> anyhow::Result<()> {
    let c = Cluster::start()?;
    let (fs, east, west) = (c.issue("source", "fs01")?, c.issue("copy", "east-1")?, c.issue("copy", "west-1")?);
    let (src, ce, cw) = (c.connect(&fs).await?, c.connect(&east).await?, c.connect(&west).await?);
    seedship_proto::agent::register(&ce, Some("east"), "t").await?;
    seedship_proto::agent::register(&cw, Some("west"), "t").await?;
    let mut req = seed_request("job-east");
    req.target_site = "east".into();
    client::seeds(src).register_seed(req).await?;
    assert!(
        client::diskprep(cw).claim_work(pb::ClaimWorkRequest { request_id: rid() }).await?.into_inner().lease.is_none()
    );
    let l = client::diskprep(ce).claim_work(pb::ClaimWorkRequest { request_id: rid() }).await?.into_inner().lease;
    assert_eq!(l.map(|l| l.job_name).as_deref(), Some("job-east"));
    c.finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_holder_gets_back_only_the_keys_of_drives_it_reported() -> anyhow::Result<()> {
    let c = Cluster::start_with(Options { lease_ttl: "2s", sweep_interval: "200ms", ..Default::default() })?;
    let (fs, a, b) = (c.issue("source", "fs01")?, c.issue("copy", "station-a")?, c.issue("copy", "station-b")?);
    let (src, ca, cb) = (c.connect(&fs).await?, c.connect(&a).await?, c.connect(&b).await?);
    seedship_proto::agent::register(&ca, None, "t").await?;
    seedship_proto::agent::register(&cb, None, "t").await?;
    client::seeds(src).register_seed(seed_request("job-keys")).await?;
    let drive = |id: &str, pw: &str| pb::DriveReport {
        drive_id: id.into(),
        position: 1,
        capacity_bytes: 2_000_000,
        bytes_written: 1_000,
        manifest_file: "\\DriveManifest.xml".into(),
        manifest_hash: "0123456789abcdef0123456789abcdef".into(),
        drive_header_hash: "ABCDEF0123456789ABCDEF0123456789".into(),
        recovery_password: pw.into(),
        ..Default::default()
    };
    let key = |l: &pb::Lease, d: &str| pb::GetDriveKeyRequest {
        work_id: l.work_id.clone(),
        generation: l.generation,
        drive_id: d.into(),
    };
    const PW_A: &str = "000011-000022-000033-000044-000055-000066-000077-000088";
    const PW_B: &str = "000099-000110-000121-000132-000143-000154-000165-000176";

    let la = client::diskprep(ca.clone())
        .claim_work(pb::ClaimWorkRequest { request_id: rid() })
        .await?
        .into_inner()
        .lease
        .unwrap();
    client::diskprep(ca.clone())
        .report_drive(pb::ReportDriveRequest {
            request_id: rid(),
            work_id: la.work_id.clone(),
            generation: la.generation,
            drive: Some(drive("WD-A", PW_A)),
        })
        .await?;
    // The holder gets its key back (after a restart, say).
    let got = client::diskprep(ca.clone()).get_drive_key(key(&la, "WD-A")).await?.into_inner();
    assert_eq!(got.recovery_password, PW_A);
    let e = client::diskprep(ca.clone()).get_drive_key(key(&la, "WD-NONE")).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    // The lease expires; station B takes over.
    let mut op_wait = 0;
    let lb = loop {
        if let Some(l) = client::diskprep(cb.clone())
            .claim_work(pb::ClaimWorkRequest { request_id: rid() })
            .await?
            .into_inner()
            .lease
        {
            break l;
        }
        op_wait += 1;
        anyhow::ensure!(op_wait < 200, "the lease was never swept");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(lb.generation, 2);
    // A's drive key is not B's to have; A's stale lease gets nothing either.
    let e = client::diskprep(cb.clone()).get_drive_key(key(&lb, "WD-A")).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let e = client::diskprep(ca.clone()).get_drive_key(key(&la, "WD-A")).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    client::diskprep(cb.clone())
        .report_drive(pb::ReportDriveRequest {
            request_id: rid(),
            work_id: lb.work_id.clone(),
            generation: lb.generation,
            drive: Some(drive("WD-B", PW_B)),
        })
        .await?;
    assert_eq!(
        client::diskprep(cb.clone()).get_drive_key(key(&lb, "WD-B")).await?.into_inner().recovery_password,
        PW_B
    );

    // Keys appear in no log, and each release was logged.
    let logs = c.coordinator_logs();
    assert!(!logs.contains("000011-000022") && !logs.contains("000099-000110"), "a key leaked into the logs");
    assert_eq!(logs.matches("drive key released to its lease holder").count(), 2);
    c.finish()
}

/// Registers `conn` as an agent with an explicit host name and virtualization.
async fn register_as(conn: &seedship_proto::client::Conn, host: &str, virt: &str) -> anyhow::Result<()> {
    client::agents(conn.clone())
        .register_agent(pb::RegisterAgentRequest {
            request_id: rid(),
            site: String::new(),
            hostname: host.into(),
            version: "t".into(),
            virtualization: virt.into(),
        })
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_virtual_source_gets_a_physical_station_on_another_host_unless_an_operator_allows() -> anyhow::Result<()> {
    let c = Cluster::start()?;
    let (fs, vm_st, same_host, phys, ops) = (
        c.issue("source", "vm-fs01")?,
        c.issue("copy", "virtual-station")?,
        c.issue("copy", "same-host")?,
        c.issue("copy", "physical")?,
        c.issue("operator", "alice")?,
    );
    let (src, cv, cs, cp, op) = (
        c.connect(&fs).await?,
        c.connect(&vm_st).await?,
        c.connect(&same_host).await?,
        c.connect(&phys).await?,
        c.connect(&ops).await?,
    );
    register_as(&src, "hyperv-guest-7", "microsoft").await?;
    register_as(&cv, "copy-vm", "kvm").await?;
    register_as(&cs, "hyperv-guest-7", "none").await?;
    register_as(&cp, "copy-box", "none").await?;
    client::seeds(src.clone()).register_seed(seed_request("job-vm")).await?;
    let claim = |conn: &seedship_proto::client::Conn| {
        let mut d = client::diskprep(conn.clone());
        async move { d.claim_work(pb::ClaimWorkRequest { request_id: rid() }).await.map(|r| r.into_inner().lease) }
    };
    // Neither a virtual station nor the source's own host may take it; a physical one may.
    assert!(claim(&cv).await?.is_none(), "a virtual station took a VM's seed");
    assert!(claim(&cs).await?.is_none(), "the source's own host took its seed");
    let l = claim(&cp).await?.expect("the physical station on another host gets it");
    assert_eq!(l.job_name, "job-vm");

    // A lab has no physical station: an operator allows it for one seed, on the record.
    client::seeds(src.clone()).register_seed(seed_request("job-lab")).await?;
    assert!(claim(&cv).await?.is_none());
    let e = client::operator(op.clone())
        .allow_virtual_station(pb::AllowVirtualStationRequest {
            request_id: rid(),
            seed: "job-lab".into(),
            reason: " ".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "a reason is required");
    let s = client::operator(op.clone())
        .allow_virtual_station(pb::AllowVirtualStationRequest {
            request_id: rid(),
            seed: "job-lab".into(),
            reason: "lab without a physical copy station".into(),
        })
        .await?
        .into_inner()
        .seed
        .unwrap();
    assert!(s.allow_virtual_station);
    let l = claim(&cv).await?.expect("allowed now");
    assert_eq!(l.job_name, "job-lab");
    let d = client::operator(op).get_seed(pb::GetSeedRequest { seed: "job-lab".into() }).await?.into_inner();
    let ev = d.history.iter().find(|e| e.event == "allow_virtual_station").expect("recorded in the history");
    assert_eq!(ev.actor, "spiffe://e2e.test/operator/alice");
    assert!(ev.reason.contains("lab without a physical copy station"), "{}", ev.reason);
    c.finish()
}

/// A seed whose staging a station cannot read does not hold the head of the queue: each
/// release puts it behind the others with a growing wait, and after `max_releases` in a row it
/// is held, with the reason, until an operator retries it. Its history stays short.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_seed_goes_behind_the_others_backs_off_and_is_held() -> anyhow::Result<()> {
    let c = Cluster::start_with(Options { release_backoff: "400ms", max_releases: 3, ..Default::default() })?;
    let (fs, st, ops) = (c.issue("source", "fs01")?, c.issue("copy", "st-a")?, c.issue("operator", "alice")?);
    let station = c.connect(&st).await?;
    seedship_proto::agent::register(&station, None, "t").await?;
    let mut dp = client::diskprep(station);
    let mut op = client::operator(c.connect(&ops).await?);
    let mut seeds = client::seeds(c.connect(&fs).await?);
    seeds.register_seed(seed_request("job-bad")).await?;
    seeds.register_seed(seed_request("job-good")).await?;
    let claim = |dp: &mut DiskPrep| {
        let mut dp = dp.clone();
        async move { dp.claim_work(pb::ClaimWorkRequest { request_id: rid() }).await.map(|r| r.into_inner().lease) }
    };
    let release = |dp: &mut DiskPrep, l: &pb::Lease| {
        let mut dp = dp.clone();
        let req = pb::ReleaseWorkRequest {
            request_id: rid(),
            work_id: l.work_id.clone(),
            generation: l.generation,
            reason: "staging location cannot be read".into(),
            staging_invalid: false,
        };
        async move { dp.release_work(req).await }
    };

    // The older seed first; released, it goes behind the good one, which is claimed next.
    let bad = claim(&mut dp).await?.unwrap();
    assert_eq!(bad.job_name, "job-bad");
    release(&mut dp, &bad).await?;
    let good = claim(&mut dp).await?.unwrap();
    assert_eq!(good.job_name, "job-good", "a released seed goes behind the others");
    assert!(claim(&mut dp).await?.is_none(), "the released seed waits before it can be claimed again");

    // Released again and again: the wait grows, and after the third it is held.
    for n in 2..=3u32 {
        let l = wait_for_async("the released seed to be claimable", Duration::from_secs(10), || {
            let mut dp = dp.clone();
            async move { claim(&mut dp).await.ok().flatten() }
        })
        .await?;
        assert_eq!(l.job_name, "job-bad");
        release(&mut dp, &l).await?;
        let d = op.get_seed(pb::GetSeedRequest { seed: "job-bad".into() }).await?.into_inner();
        assert!(d.seed.unwrap().state_reason.contains(&format!("held after {n} releases")) == (n == 3));
    }
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert!(claim(&mut dp).await?.is_none(), "held work is not handed out");
    let d = op.get_seed(pb::GetSeedRequest { seed: "job-bad".into() }).await?.into_inner();
    assert_eq!(d.work.as_ref().unwrap().status, "held");
    let why = d.seed.unwrap().state_reason;
    assert!(why.contains("held after 3 releases") && why.contains("seedctl retry job-bad"), "{why}");
    assert!(d.history_total < 20, "{} events for three releases", d.history_total);

    // An operator retries it: back in the queue, and claimed.
    let e = op
        .retry_work(pb::RetryWorkRequest { request_id: rid(), seed: "job-good".into(), reason: "x".into() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    op.retry_work(pb::RetryWorkRequest { request_id: rid(), seed: "job-bad".into(), reason: "share mounted".into() })
        .await?;
    let l = claim(&mut dp).await?.expect("claimable after the retry");
    assert_eq!(l.job_name, "job-bad");
    c.finish()
}

/// Identical events in a row are one history row with a count; a seed's detail carries only
/// its newest events, and older ones are paged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_events_are_coalesced_and_long_histories_are_paged() -> anyhow::Result<()> {
    let c = Cluster::start()?;
    let (fs, ops) = (c.issue("source", "fs01")?, c.issue("operator", "alice")?);
    client::seeds(c.connect(&fs).await?).register_seed(seed_request("job-h")).await?;
    let mut op = client::operator(c.connect(&ops).await?);
    let allow = |op: &mut Operator, why: String| {
        let mut op = op.clone();
        async move {
            op.allow_virtual_station(pb::AllowVirtualStationRequest {
                request_id: rid(),
                seed: "job-h".into(),
                reason: why,
            })
            .await
        }
    };
    for _ in 0..5 {
        allow(&mut op, "same reason".into()).await?;
    }
    let d = op.get_seed(pb::GetSeedRequest { seed: "job-h".into() }).await?.into_inner();
    let same: Vec<_> = d.history.iter().filter(|e| e.event == "allow_virtual_station").collect();
    assert_eq!(same.len(), 1, "{:?}", d.history);
    assert_eq!(same[0].repeats, 5);
    for i in 0..230 {
        allow(&mut op, format!("reason {i}")).await?;
    }
    let d = op.get_seed(pb::GetSeedRequest { seed: "job-h".into() }).await?.into_inner();
    assert_eq!(d.history.len(), 200, "one page");
    assert!(d.history_total >= 233, "{}", d.history_total);
    assert!(d.history.last().unwrap().reason.contains("reason 229"), "the newest last");
    let oldest = d.history.first().unwrap().event_id;
    let older = op
        .list_events(pb::ListEventsRequest { seed: "job-h".into(), limit: 1000, before_event_id: oldest })
        .await?
        .into_inner()
        .events;
    assert_eq!(older.len() as u64 + 200, d.history_total);
    c.finish()
}

/// An operator takes a seed's work from the station that holds it and sends it to another:
/// the first is refused at its next call (it stops writing), only the target may claim it, and
/// the history says who did it and why. Once the disks are prepared, it is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_requeues_work_for_another_station_and_not_after_the_disks_are_prepared() -> anyhow::Result<()> {
    let mut c = Cluster::start()?;
    let (fs, a, b, ops) = (
        c.issue("source", "fs01")?,
        c.issue("copy", "station-a")?,
        c.issue("copy", "station-b")?,
        c.issue("operator", "alice")?,
    );
    let src = c.connect(&fs).await?;
    register_as(&src, "fs-host", "none").await?;
    client::seeds(src).register_seed(seed_request("job-rq")).await?;
    let (ca, cb) = (c.connect(&a).await?, c.connect(&b).await?);
    register_as(&ca, "host-a", "none").await?;
    register_as(&cb, "host-b", "none").await?;
    let mut da = client::diskprep(ca.clone());
    let lease = da.claim_work(pb::ClaimWorkRequest { request_id: rid() }).await?.into_inner().lease.expect("a lease");
    da.renew_lease(renew(&lease)).await?;

    // Refused without a reason, and with a station and "anywhere" at once.
    let out = c.run("requeue-bare", &mut c.seedctl(&ops, &["requeue", "job-rq", "--reason", ""]))?;
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("reason"), "{out:?}");
    // To station-b, from station-a.
    let out = c.run(
        "requeue",
        &mut c.seedctl(&ops, &["requeue", "job-rq", "--station", "station-b", "--reason", "station-a's bay is broken"]),
    )?;
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        said.contains("for copy station station-b") && said.contains("taken from copy station station-a"),
        "{said}"
    );
    let e = da.renew_lease(renew(&lease)).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "the old holder stops: {e:?}");
    assert!(
        da.claim_work(pb::ClaimWorkRequest { request_id: rid() }).await?.into_inner().lease.is_none(),
        "not station-a's any more"
    );
    let mut db = client::diskprep(cb.clone());
    let l2 = db.claim_work(pb::ClaimWorkRequest { request_id: rid() }).await?.into_inner().lease.expect("station-b's");
    assert!(l2.generation > lease.generation);
    let d = seedship_e2e::get_seed(&c, &ops, "job-rq").await?;
    let ev = d.history.iter().find(|h| h.reason.contains("re-queued")).expect("the re-queue in the history");
    assert!(ev.actor.ends_with("/operator/alice") && ev.reason.contains("bay is broken"), "{ev:?}");

    // Finished: the disks are prepared; re-queueing now is refused with the reason.
    db.report_drive(prepared_drive(&l2, "WD-RQ1")).await?;
    db.complete_work(pb::CompleteWorkRequest {
        request_id: rid(),
        work_id: l2.work_id.clone(),
        generation: l2.generation,
    })
    .await?;
    let out = c.run("requeue-late", &mut c.seedctl(&ops, &["requeue", "job-rq", "--anywhere", "--reason", "again"]))?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("disks_prepared") && err.contains("prepared already"), "{err}");
    c.finish()
}

/// The lease benchmark (`seedship-loadgen`, docs/benchmarks.md) runs end to end on the store
/// under test, at a load small enough for a debug build: its warm-up, a phase as fast as
/// answered and a paced one, the disk's flushes timed beside each, and the peer; and its table
/// gives each phase's figures.
#[test]
fn the_lease_benchmark_runs_each_phase_and_reports_it() {
    let (backend, store, coordinators) = match std::env::var("SEEDSHIP_TEST_DATABASE").as_deref() {
        Ok("postgres") => ("postgres", "PostgreSQL", 2),
        _ => ("sqlite", "SQLite", 1),
    };
    let args = ["--stations", "2", "--agents", "4", "--duration", "1", "--seeds", "1000", "--rate", "100"];
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_seedship-loadgen"))
        .args(["--backend", backend, "--warmup", "1"])
        .args(args)
        .output()
        .expect("the load generator starts");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("warmed up"), "the warm-up ran first: {stderr}");
    for load in ["as fast as answered", "100/s offered"] {
        let head = format!("| {store} | {coordinators} | 2 | {load} |");
        let row = stdout.lines().find(|l| l.starts_with(&head)).unwrap_or_else(|| panic!("no {head} row: {stdout}"));
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let ops: f64 = cells[6].parse().unwrap_or_else(|_| panic!("lease ops/s in {row}"));
        assert!(ops > 0.0, "lease operations were answered: {row}");
        let (p99, max) = cells[15].split_once(" / ").unwrap_or_else(|| panic!("disk flush p99 / max in {row}"));
        let (p99, max): (f64, f64) = (p99.parse().expect("flush p99"), max.parse().expect("flush max"));
        assert!(max > 0.0 && p99 <= max, "the disk's flushes were timed: {row}");
    }
    assert!(stdout.contains(" peer ("), "the peer ran beside it: {stdout}");
}
