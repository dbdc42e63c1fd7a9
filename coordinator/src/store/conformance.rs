//! The store's contract, written once and run against every backend (`conformance_suite!`
//! makes one `#[tokio::test]` per test for a backend's store). Shipping records need a seed
//! whose import job exists: the tests write the intent and Azure's answer through the store,
//! as the Azure worker does.

use std::sync::Arc;

use seedship_proto::identity::{Role, SpiffeId};

use crate::domain::import::{JobIntent, JobPhase, JobSnapshot};
use crate::domain::lease::Fence;
use crate::domain::model::*;
use crate::domain::placement::Placement;
use crate::domain::seed::SeedState;
use crate::error::Error;
use crate::store::{LeaseTiming, Store};

pub fn idem(caller: &SpiffeId, id: &str, method: &'static str, fp: u8) -> Idem {
    Idem { caller: caller.uri(), request_id: id.into(), method, fingerprint: [fp; 32] }
}

fn seed(job: &str) -> NewSeed {
    NewSeed {
        job_name: job.into(),
        storage_account: "acct".into(),
        container: String::new(),
        subscription_id: "0f0e0d0c-0000-4000-8000-00000000abcd".into(),
        location: "westeurope".into(),
        staging_location: format!("/staging/{job}"),
        manifest_root: "ab".repeat(32),
        total_bytes: 100,
        file_count: 1,
        target_site: None,
        target_station: None,
        repository_id: "cd".repeat(16),
    }
}

/// Takes a seed through disk preparation (one drive) and marks its import job created.
pub async fn prepared_job(store: &dyn Store, job: &str) {
    let src = SpiffeId::new("t", Role::Source, "fs01").unwrap();
    let st = SpiffeId::new("t", Role::Copy, "st1").unwrap();
    let info = AgentInfo { site: None, hostname: "h".into(), version: "v".into(), virtualization: String::new() };
    store.register_agent(&idem(&st, &format!("{job}-a"), "RegisterAgent", 1), &st, &info, 1).await.unwrap();
    store
        .register_seed(
            &idem(&src, &format!("{job}-s"), "RegisterSeed", 1),
            &src,
            &seed(job),
            &Placement::default(),
            DiskKind::CustomerDisk,
            1,
        )
        .await
        .unwrap();
    prepare_and_create(store, job, &st).await;
}

/// Takes a queued seed through disk preparation (one drive, by `st`) and marks its import job
/// created.
async fn prepare_and_create(store: &dyn Store, job: &str, st: &SpiffeId) -> Lease {
    let t = LeaseTiming { now: 2, ttl_ms: 60_000 };
    let lease = store.claim_work(&idem(st, &format!("{job}-c"), "ClaimWork", 1), st, t).await.unwrap().unwrap();
    assert_eq!(lease.seed.spec.job_name, job);
    let fence = Fence { work_id: lease.work.work_id.clone(), generation: lease.work.generation };
    let drive = DriveSpec {
        drive_id: format!("D-{job}"),
        position: 1,
        capacity_bytes: 200,
        bytes_written: 100,
        manifest_file: "\\m.xml".into(),
        manifest_hash: "A".repeat(32),
        drive_header_hash: "B".repeat(32),
        status: DriveStatus::Prepared,
        status_reason: String::new(),
    };
    let key = Some(SealedKey(vec![7; 40]));
    store.report_drive(&idem(st, &format!("{job}-d"), "ReportDrive", 1), st, &fence, &drive, key, 3).await.unwrap();
    store.complete_work(&idem(st, &format!("{job}-f"), "CompleteWork", 1), st, &fence, 4).await.unwrap();
    let s = store.seed_detail(job).await.unwrap().unwrap().seed;
    let intent = JobIntent {
        kind: DiskKind::CustomerDisk,
        disks: 0,
        seed_id: s.seed_id.clone(),
        job_name: job.into(),
        subscription_id: s.spec.subscription_id.clone(),
        resource_group: "rg".into(),
        location: "westeurope".into(),
        storage_account_id: "/subscriptions/x/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/acct"
            .into(),
    };
    let rec = store.record_job_intent(&intent, 5).await.unwrap();
    assert_eq!(rec.phase, JobPhase::Intent);
    let snap = JobSnapshot { state: "AwaitingShipmentDetails".into(), ..Default::default() };
    store.job_created(&s.seed_id, &snap, &["Azure DC".to_string()], false, 5).await.unwrap();
    lease
}

fn shipping(job: &str, tracking: &str, drives: u32) -> NewShipping {
    NewShipping {
        job_name: job.into(),
        carrier: "DHL".into(),
        tracking_number: tracking.into(),
        drive_count: drives,
        ship_date: "2026-11-22".into(),
    }
}

pub async fn tracking_numbers_are_unique_and_two_racing_operators_get_one_winner(store: Arc<dyn Store>) {
    prepared_job(&*store, "job-a").await;
    prepared_job(&*store, "job-b").await;
    let alice = SpiffeId::new("t", Role::Operator, "alice").unwrap();
    let bob = SpiffeId::new("t", Role::Operator, "bob").unwrap();

    // The drive count must match the job.
    let e =
        store.reserve_shipping(&idem(&alice, "x1", "RecordShipping", 1), &alice, &shipping("job-a", "T1", 2), 6).await;
    assert!(matches!(e, Err(Error::FailedPrecondition(ref m)) if m.contains("1 drive")), "{e:?}");

    // Two operators race for one tracking number on two jobs: exactly one wins.
    let (s1, s2) = (store.clone(), store.clone());
    let (a1, b1) = (alice.clone(), bob.clone());
    let ra = tokio::spawn(async move {
        let r = s1
            .reserve_shipping(&idem(&a1, "r1", "RecordShipping", 2), &a1, &shipping("job-a", "1Z-RACE", 1), 7)
            .await?;
        s1.confirm_shipping(&r.seed_id, 8).await
    });
    let rb = tokio::spawn(async move {
        let r = s2
            .reserve_shipping(&idem(&b1, "r2", "RecordShipping", 3), &b1, &shipping("job-b", "1Z-RACE", 1), 7)
            .await?;
        s2.confirm_shipping(&r.seed_id, 8).await
    });
    let (ra, rb) = (ra.await.unwrap(), rb.await.unwrap());
    assert!(ra.is_ok() != rb.is_ok(), "exactly one must win: {ra:?} / {rb:?}");
    let loser = if ra.is_ok() { rb } else { ra };
    assert!(matches!(loser, Err(Error::AlreadyExists(ref m)) if m.contains("1Z-RACE")));

    // The winner's seed is shipped, with who did it in the history; the loser's is unchanged.
    let mut states = Vec::new();
    for job in ["job-a", "job-b"] {
        let detail = store.seed_detail(job).await.unwrap().unwrap();
        states.push(detail.seed.state);
        if detail.seed.state == SeedState::Shipped {
            let last = detail.history.last().unwrap();
            assert_eq!(last.event, "shipped");
            assert!(last.actor.contains("/operator/"), "{}", last.actor);
            assert_eq!(detail.shipping.unwrap().spec.tracking_number, "1Z-RACE");
        }
    }
    states.sort_by_key(|s| s.as_str());
    assert_eq!(states, vec![SeedState::ImportJobCreated, SeedState::Shipped]);
}

pub async fn the_job_is_mirrored_into_the_history_and_the_seed_follows_azure(store: Arc<dyn Store>) {
    use crate::domain::import::{DeadlineKind, JobDrive};
    prepared_job(&*store, "job-m").await;
    let seed_id = store.seed_detail("job-m").await.unwrap().unwrap().seed.seed_id;
    // An intent written twice is the same intent; the job is created once.
    let again = store.followed_jobs().await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].phase, JobPhase::Created);

    // Azure unavailable: said once, with since when, on the seed.
    store.azure_unavailable(&seed_id, "Azure is unreachable: connection refused", 10).await.unwrap();
    store.azure_unavailable(&seed_id, "Azure is unreachable: connection refused", 20).await.unwrap();
    let det = store.seed_detail("job-m").await.unwrap().unwrap();
    assert!(
        det.seed.state_reason.starts_with("Azure unavailable since 1970-01-01T00:00:00Z"),
        "{}",
        det.seed.state_reason
    );
    assert_eq!(det.history.iter().filter(|h| h.event == "azure_unavailable").count(), 1);

    // A deadline step is announced once.
    assert!(store.deadline_step(&seed_id, DeadlineKind::TrackingNumber, 10, "4 day(s) left", 30).await.unwrap());
    assert!(!store.deadline_step(&seed_id, DeadlineKind::TrackingNumber, 10, "4 day(s) left", 31).await.unwrap());

    let drive = |state: &str, cs: &str| JobDrive {
        drive_id: "D-job-m".into(),
        state: state.into(),
        copy_status: cs.into(),
        ..Default::default()
    };
    let snap = |state: &str, d: JobDrive| JobSnapshot { state: state.into(), drives: vec![d], ..Default::default() };
    store.mirror_job(&seed_id, &snap("AtAzureDC", drive("NotStarted", "")), 40).await.unwrap();
    let det = store.seed_detail("job-m").await.unwrap().unwrap();
    assert_eq!(det.seed.state, SeedState::AtDatacenter);
    assert!(det.history.iter().any(|h| h.event == "azure_available"));
    assert!(det.seed.state_reason.contains("Azure job stage AtAzureDC"), "{}", det.seed.state_reason);
    let mut failed = drive("OtherUserError", "a customer-side error");
    failed.errors = vec![crate::domain::import::CopyError {
        path: "D-job-m".into(),
        category: "DiskError".into(),
        code: 1,
        message: "the BitLocker key of the disk does not unlock it (wrong key)".into(),
    }];
    let changes = store.mirror_job(&seed_id, &snap("CompletedWithErrors", failed.clone()), 50).await.unwrap();
    assert!(changes.iter().any(|c| c.contains("NotStarted -> OtherUserError")), "{changes:?}");
    let det = store.seed_detail("job-m").await.unwrap().unwrap();
    assert_eq!(det.seed.state, SeedState::Imported);
    assert!(
        det.seed
            .state_reason
            .contains("disk D-job-m OtherUserError: a customer-side error; D-job-m: the BitLocker key"),
        "{}",
        det.seed.state_reason
    );
    let job = det.job.unwrap();
    assert_eq!((job.azure_state.as_str(), job.drives[0].state.as_str()), ("CompletedWithErrors", "OtherUserError"));
    assert_eq!(job.drives[0].errors, failed.errors, "the copy log's entities are kept");
    // An unknown state is kept raw; nothing breaks.
    store.mirror_job(&seed_id, &snap("Teleporting", drive("OtherUserError", "x")), 60).await.unwrap();
    let det = store.seed_detail("job-m").await.unwrap().unwrap();
    assert_eq!(det.job.unwrap().azure_state, "Teleporting");
    assert!(det.history.iter().any(|h| h.event == "azure_unknown_state" && h.reason.contains("\"Teleporting\"")));
    // Gone in Azure after the import: noted, not failed.
    store.job_gone(&seed_id, 70).await.unwrap();
    let det = store.seed_detail("job-m").await.unwrap().unwrap();
    assert_eq!(det.seed.state, SeedState::Imported);
    assert!(det.history.iter().any(|h| h.event == "azure_job_gone"));
}

pub async fn a_drive_in_another_active_job_refuses_the_second_job(store: Arc<dyn Store>) {
    prepared_job(&*store, "job-x").await;
    // A second seed whose station reports the same drive serial.
    let src = SpiffeId::new("t", Role::Source, "fs02").unwrap();
    let st = SpiffeId::new("t", Role::Copy, "st2").unwrap();
    let info = AgentInfo { site: None, hostname: "h".into(), version: "v".into(), virtualization: String::new() };
    store.register_agent(&idem(&st, "a", "RegisterAgent", 1), &st, &info, 1).await.unwrap();
    store
        .register_seed(
            &idem(&src, "s", "RegisterSeed", 1),
            &src,
            &seed("job-y"),
            &Placement::default(),
            DiskKind::CustomerDisk,
            1,
        )
        .await
        .unwrap();
    let lease = store
        .claim_work(&idem(&st, "c", "ClaimWork", 1), &st, LeaseTiming { now: 2, ttl_ms: 60_000 })
        .await
        .unwrap()
        .unwrap();
    let fence = Fence { work_id: lease.work.work_id.clone(), generation: lease.work.generation };
    let drive = DriveSpec {
        drive_id: "D-job-x".into(),
        position: 1,
        capacity_bytes: 200,
        bytes_written: 100,
        manifest_file: "\\m".into(),
        manifest_hash: "A".repeat(32),
        drive_header_hash: "B".repeat(32),
        status: DriveStatus::Prepared,
        status_reason: String::new(),
    };
    store
        .report_drive(&idem(&st, "d", "ReportDrive", 1), &st, &fence, &drive, Some(SealedKey(vec![1; 40])), 3)
        .await
        .unwrap();
    store.complete_work(&idem(&st, "f", "CompleteWork", 1), &st, &fence, 4).await.unwrap();
    let s = store.seed_detail("job-y").await.unwrap().unwrap().seed;
    let intent = JobIntent {
        kind: DiskKind::CustomerDisk,
        disks: 0,
        seed_id: s.seed_id.clone(),
        job_name: "job-y".into(),
        subscription_id: "x".into(),
        resource_group: "rg".into(),
        location: "westeurope".into(),
        storage_account_id: "/a".into(),
    };
    let rec = store.record_job_intent(&intent, 5).await.unwrap();
    assert_eq!(rec.phase, JobPhase::Refused);
    assert!(rec.last_error.contains("already in active import job job-x"), "{}", rec.last_error);
    let s = store.seed_detail("job-y").await.unwrap().unwrap().seed;
    assert_eq!(s.state, SeedState::Failed);
    assert!(s.state_reason.contains("drive D-job-x is already in active import job job-x"), "{}", s.state_reason);
}

pub async fn drives_escrow_their_key_first_and_work_completes_only_when_none_is_preparing(store: Arc<dyn Store>) {
    let src = SpiffeId::new("t", Role::Source, "fs01").unwrap();
    let st = SpiffeId::new("t", Role::Copy, "st1").unwrap();
    let info = AgentInfo { site: None, hostname: "h".into(), version: "v".into(), virtualization: String::new() };
    store.register_agent(&idem(&st, "a", "RegisterAgent", 1), &st, &info, 1).await.unwrap();
    store
        .register_seed(
            &idem(&src, "s", "RegisterSeed", 1),
            &src,
            &seed("job-w"),
            &Placement::default(),
            DiskKind::CustomerDisk,
            1,
        )
        .await
        .unwrap();
    let t = LeaseTiming { now: 2, ttl_ms: 60_000 };
    let lease = store.claim_work(&idem(&st, "c", "ClaimWork", 1), &st, t).await.unwrap().unwrap();
    let fence = Fence { work_id: lease.work.work_id.clone(), generation: lease.work.generation };
    let spec = |id: &str, status: DriveStatus, hash: &str| DriveSpec {
        drive_id: id.into(),
        position: 1,
        capacity_bytes: 200,
        bytes_written: 0,
        manifest_file: "\\m".into(),
        manifest_hash: hash.into(),
        drive_header_hash: hash.into(),
        status,
        status_reason: if status == DriveStatus::Bad { "EIO".into() } else { String::new() },
    };
    let key = SealedKey(vec![7; 40]);
    let rd = |n: &str| idem(&st, n, "ReportDrive", 1);
    store.report_drive(&rd("d1"), &st, &fence, &spec("D1", DriveStatus::Preparing, ""), Some(key), 3).await.unwrap();
    let e = store.complete_work(&idem(&st, "f1", "CompleteWork", 1), &st, &fence, 4).await;
    assert!(matches!(e, Err(Error::FailedPrecondition(ref m)) if m.contains("no prepared drive")), "{e:?}");
    // The final report carries no key: the escrowed one is kept. A customer disk's report
    // names its drive manifest.
    let a = "A".repeat(32);
    let bare = DriveSpec {
        manifest_file: String::new(),
        manifest_hash: String::new(),
        ..spec("D1", DriveStatus::Prepared, &a)
    };
    let e = store.report_drive(&rd("d2x"), &st, &fence, &bare, None, 5).await.unwrap_err();
    assert!(e.to_string().contains("is required for a customer disk"), "{e}");
    let d1 = store.report_drive(&rd("d2"), &st, &fence, &spec("D1", DriveStatus::Prepared, &a), None, 5).await.unwrap();
    assert!(d1.has_key && d1.spec.status == DriveStatus::Prepared);
    store
        .report_drive(&rd("d3"), &st, &fence, &spec("D2", DriveStatus::Preparing, ""), Some(SealedKey(vec![1])), 6)
        .await
        .unwrap();
    let e = store.complete_work(&idem(&st, "f2", "CompleteWork", 1), &st, &fence, 7).await;
    assert!(matches!(e, Err(Error::FailedPrecondition(ref m)) if m.contains("1 drive(s) preparing")), "{e:?}");
    let bad = store.report_drive(&rd("d4"), &st, &fence, &spec("D2", DriveStatus::Bad, ""), None, 8).await.unwrap();
    assert_eq!((bad.spec.status, bad.spec.status_reason.as_str()), (DriveStatus::Bad, "EIO"));
    // Each answer is the drive as stored (the answer is not read back).
    let listed = store.list_drives(Some("job-w")).await.unwrap();
    assert_eq!(listed, vec![d1.clone(), bad.clone()]);
    assert_eq!((d1.job_name.as_str(), d1.reported_by.as_str(), d1.reported_ms), ("job-w", st.uri().as_str(), 5));
    assert!(bad.has_key, "the key escrowed with D2's first report is kept");

    // A wait is recorded once, and its end once.
    for (n, w) in [("r1", "add 1 more disk of at least 1 GB"), ("r2", "add 1 more disk of at least 1 GB"), ("r3", "")] {
        store
            .renew_lease(&idem(&st, n, "RenewLease", 1), &st, &fence, w, LeaseTiming { now: 9, ttl_ms: 60_000 })
            .await
            .unwrap();
    }
    let events: Vec<String> =
        store.list_events(Some(&lease.seed.seed_id), 100, 0).await.unwrap().into_iter().map(|e| e.event).collect();
    assert_eq!(events.iter().filter(|e| *e == "station_waiting").count(), 1, "{events:?}");
    assert_eq!(events.iter().filter(|e| *e == "station_resumed").count(), 1, "{events:?}");
    store.complete_work(&idem(&st, "f3", "CompleteWork", 1), &st, &fence, 10).await.unwrap();
}

/// Data Box Disk in the store: a seed waits for Microsoft's disks (no station can claim it),
/// is ordered, gets the delivered disks with their keys, and only those disks are written;
/// Azure's key stays whatever a station sends; the job exists, so prepared means ready to ship.
pub async fn a_data_box_disk_seed_is_ordered_delivered_and_written_on_the_delivered_disks_only(store: Arc<dyn Store>) {
    let src = SpiffeId::new("t", Role::Source, "fs01").unwrap();
    let st = SpiffeId::new("t", Role::Copy, "st1").unwrap();
    let ops = SpiffeId::new("t", Role::Operator, "alice").unwrap();
    let info = AgentInfo { site: None, hostname: "h".into(), version: "v".into(), virtualization: String::new() };
    store.register_agent(&idem(&st, "a", "RegisterAgent", 1), &st, &info, 1).await.unwrap();
    let reg = store
        .register_seed(
            &idem(&src, "s", "RegisterSeed", 1),
            &src,
            &seed("job-dbd"),
            &Placement::default(),
            DiskKind::DataboxDisk,
            1,
        )
        .await
        .unwrap();
    let s = reg.seed;
    assert_eq!((s.state, s.kind), (SeedState::Registered, DiskKind::DataboxDisk));
    let t = LeaseTiming { now: 2, ttl_ms: 60_000 };
    assert!(
        store.claim_work(&idem(&st, "c0", "ClaimWork", 1), &st, t).await.unwrap().is_none(),
        "nothing to write on yet"
    );
    assert_eq!(store.seeds_awaiting_jobs().await.unwrap().len(), 1, "the order is due at once");

    // The operator cannot switch it back once the order exists.
    let intent = JobIntent {
        kind: DiskKind::DataboxDisk,
        disks: 1,
        seed_id: s.seed_id.clone(),
        job_name: "job-dbd".into(),
        subscription_id: s.spec.subscription_id.clone(),
        resource_group: "rg".into(),
        location: "westeurope".into(),
        storage_account_id: "/subscriptions/x/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/acct"
            .into(),
    };
    assert_eq!(store.record_job_intent(&intent, 3).await.unwrap().phase, JobPhase::Intent);
    let e = store
        .set_disk_kind(&idem(&ops, "k", "SetDiskKind", 1), &ops, "job-dbd", DiskKind::CustomerDisk, "x", 3)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("already ordered"), "{e}");
    let snap = JobSnapshot { state: "DeviceOrdered".into(), ..Default::default() };
    store.job_created(&s.seed_id, &snap, &[], false, 4).await.unwrap();
    let p = store.passkey("job-dbd").await.unwrap();
    assert!(p.sealed.is_none() && p.stage == "DeviceOrdered", "no passkey before delivery");
    assert_eq!(store.seed_detail("job-dbd").await.unwrap().unwrap().seed.state, SeedState::DisksOrdered);

    let delivered = vec![
        DeliveredDisk { serial: "MSD-1".into(), position: 1, capacity_bytes: 500, sealed_key: SealedKey(vec![1; 40]) },
        DeliveredDisk { serial: "MSD-2".into(), position: 2, capacity_bytes: 500, sealed_key: SealedKey(vec![2; 40]) },
    ];
    store.disks_delivered(&s.seed_id, &delivered, Some(&(SealedKey(vec![3; 40]), false)), 5).await.unwrap();
    assert!(store.passkey("job-dbd").await.unwrap().sealed.is_some());
    let lease = store.claim_work(&idem(&st, "c1", "ClaimWork", 1), &st, LeaseTiming { now: 6, ttl_ms: 60_000 }).await;
    let lease = lease.unwrap().expect("claimable once delivered");
    assert_eq!(lease.delivered, vec!["MSD-1".to_string(), "MSD-2".to_string()]);
    let fence = Fence { work_id: lease.work.work_id.clone(), generation: lease.work.generation };
    // Azure's key is handed to the lease holder although the station never reported the disk.
    assert_eq!(store.drive_key(&st, &fence, "MSD-1", 6).await.unwrap(), SealedKey(vec![1; 40]));

    // A Data Box Disk carries no drive manifest.
    let drive = |id: &str, status| DriveSpec {
        drive_id: id.into(),
        position: 1,
        capacity_bytes: 500,
        bytes_written: 100,
        manifest_file: String::new(),
        manifest_hash: String::new(),
        drive_header_hash: "B".repeat(32),
        status,
        status_reason: String::new(),
    };
    let e = store
        .report_drive(
            &idem(&st, "d0", "ReportDrive", 1),
            &st,
            &fence,
            &drive("MINE-1", DriveStatus::Preparing),
            Some(SealedKey(vec![9; 40])),
            7,
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("not one of the Data Box Disks"), "{e}");
    store
        .report_drive(
            &idem(&st, "d1", "ReportDrive", 1),
            &st,
            &fence,
            &drive("MSD-1", DriveStatus::Preparing),
            Some(SealedKey(vec![9; 40])),
            7,
        )
        .await
        .unwrap();
    assert_eq!(store.drive_key(&st, &fence, "MSD-1", 7).await.unwrap(), SealedKey(vec![1; 40]), "Azure's key stays");
    let with_manifest =
        DriveSpec { manifest_file: "\\DriveManifest.xml".into(), ..drive("MSD-1", DriveStatus::Prepared) };
    let e = store
        .report_drive(&idem(&st, "d2x", "ReportDrive", 1), &st, &fence, &with_manifest, None, 8)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("must be empty for a Data Box Disk"), "{e}");
    store
        .report_drive(&idem(&st, "d2", "ReportDrive", 1), &st, &fence, &drive("MSD-1", DriveStatus::Prepared), None, 8)
        .await
        .unwrap();
    let s = store.complete_work(&idem(&st, "f", "CompleteWork", 1), &st, &fence, 9).await.unwrap();
    assert_eq!(s.state, SeedState::ImportJobCreated, "the job exists since the order");
    assert!(s.state_reason.contains("1 unused one(s)"), "{}", s.state_reason);

    // The return shipment is recorded here only; the job's stage is left as Azure says it.
    let (ri, rec) = (idem(&ops, "r", "RecordShipping", 1), shipping("job-dbd", "T-DBD", 1));
    let r = store.reserve_shipping(&ri, &ops, &rec, 10).await.unwrap();
    store.confirm_shipping(&r.seed_id, 11).await.unwrap();
    let det = store.seed_detail("job-dbd").await.unwrap().unwrap();
    assert_eq!(det.seed.state, SeedState::Shipped);
    assert_eq!(det.job.unwrap().azure_state, "DeviceOrdered");
}

pub async fn the_operator_switches_a_queued_seed_to_microsofts_disks_and_back(store: Arc<dyn Store>) {
    let src = SpiffeId::new("t", Role::Source, "fs01").unwrap();
    let st = SpiffeId::new("t", Role::Copy, "st1").unwrap();
    let ops = SpiffeId::new("t", Role::Operator, "alice").unwrap();
    let info = AgentInfo { site: None, hostname: "h".into(), version: "v".into(), virtualization: String::new() };
    store.register_agent(&idem(&st, "a", "RegisterAgent", 1), &st, &info, 1).await.unwrap();
    store
        .register_seed(
            &idem(&src, "s", "RegisterSeed", 1),
            &src,
            &seed("job-k"),
            &Placement::default(),
            DiskKind::CustomerDisk,
            1,
        )
        .await
        .unwrap();
    let s = store
        .set_disk_kind(&idem(&ops, "k1", "SetDiskKind", 1), &ops, "job-k", DiskKind::DataboxDisk, "no disks on site", 2)
        .await
        .unwrap();
    assert_eq!((s.state, s.kind), (SeedState::Registered, DiskKind::DataboxDisk));
    let t = LeaseTiming { now: 3, ttl_ms: 60_000 };
    assert!(store.claim_work(&idem(&st, "c0", "ClaimWork", 1), &st, t).await.unwrap().is_none());
    let s = store
        .set_disk_kind(&idem(&ops, "k2", "SetDiskKind", 1), &ops, "job-k", DiskKind::CustomerDisk, "disks found", 4)
        .await
        .unwrap();
    assert_eq!((s.state, s.kind), (SeedState::QueuedForDiskPrep, DiskKind::CustomerDisk));
    let t = LeaseTiming { now: 5, ttl_ms: 60_000 };
    assert!(store.claim_work(&idem(&st, "c1", "ClaimWork", 1), &st, t).await.unwrap().is_some());
    // Once a station has started, the kind stays.
    let e = store
        .set_disk_kind(&idem(&ops, "k3", "SetDiskKind", 1), &ops, "job-k", DiskKind::DataboxDisk, "x", 6)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("before a copy station starts"), "{e}");
    let events: Vec<String> =
        store.seed_detail("job-k").await.unwrap().unwrap().history.into_iter().map(|h| h.event).collect();
    assert!(events.contains(&"unqueue".to_string()) && events.contains(&"queue".to_string()), "{events:?}");
}

fn lost_file(path: &str, size: u64) -> (VerifiedFile, RepairFile) {
    (
        VerifiedFile {
            path: path.into(),
            size,
            status: "missing".into(),
            detail: "not in the import container".into(),
        },
        RepairFile {
            path: path.into(),
            size,
            sha256: "11".repeat(32),
            md5: "22".repeat(16),
            state: "requested".into(),
            detail: "not in the import container".into(),
            updated_ms: 0,
        },
    )
}

/// The seed's import job completes: the seed is imported.
async fn imported(store: &dyn Store, job: &str, now: i64) -> String {
    let id = store.seed_detail(job).await.unwrap().unwrap().seed.seed_id;
    let snap = JobSnapshot { state: "Completed".into(), ..Default::default() };
    store.mirror_job(&id, &snap, now).await.unwrap();
    assert_eq!(store.seed_detail(job).await.unwrap().unwrap().seed.state, SeedState::Imported);
    id
}

pub async fn a_new_offline_round_ships_exactly_the_lost_files_and_its_import_verifies_the_seed_again(
    store: Arc<dyn Store>,
) {
    let ops = SpiffeId::new("t", Role::Operator, "alice").unwrap();
    let st = SpiffeId::new("t", Role::Copy, "st1").unwrap();
    prepared_job(&*store, "job-r").await;
    let reship = |id: &'static str, seed: &'static str| {
        let store = &store;
        let ops = ops.clone();
        async move {
            store.reship_lost(&idem(&ops, id, "ReshipLost", 1), &ops, seed, "2 TB over the uplink: weeks", 100).await
        }
    };
    // Not imported yet: nothing is lost.
    let e = reship("r0", "job-r").await.unwrap_err();
    assert!(matches!(&e, Error::FailedPrecondition(w) if w.contains("nothing is lost")), "{e}");
    let id = imported(&*store, "job-r", 10).await;
    store.start_verification(&id, 11).await.unwrap();
    let (ok, _) = lost_file("config", 5);
    let ok = VerifiedFile { status: "verified".into(), detail: String::new(), ..ok };
    let (f1, r1) = lost_file("data/ab/ab01", 40);
    let (f2, r2) = lost_file("data/cd/cd02", 60);
    store.finish_verification(&id, &[ok, f1, f2], &[r1, r2], 12).await.unwrap();
    assert_eq!(store.repair_orders("fs01").await.unwrap()[0].1.len(), 2, "asked of the source agent");

    // The operator ships them on disks instead: a round of exactly those files.
    let r = reship("r1", "job-r").await.unwrap();
    assert_eq!((r.round.spec.job_name.as_str(), r.files, r.bytes), ("job-r-r2", 2, 100));
    assert_eq!(r.round.state, SeedState::QueuedForDiskPrep);
    assert_eq!(r.round.round_of.as_deref(), Some("job-r"));
    assert_eq!((r.round.spec.container.as_str(), r.round.owner.as_str()), (r.seed.spec.container.as_str(), "fs01"));
    assert!(r.seed.state_reason.contains("new offline round, job job-r-r2") && r.seed.state_reason.contains("alice"));
    assert_eq!(r.seed.state, SeedState::NeedsRepair);
    // The same request again is the same answer; the source agent is no longer asked.
    assert_eq!(reship("r1", "job-r").await.unwrap(), r);
    assert!(store.repair_orders("fs01").await.unwrap().is_empty());
    // One round at a time; a round is not reshipped itself.
    let e = reship("r2", "job-r").await.unwrap_err();
    assert!(
        matches!(&e, Error::FailedPrecondition(w) if w.contains("round job-r-r2") && w.contains("under way")),
        "{e}"
    );
    let e = reship("r3", "job-r-r2").await.unwrap_err();
    assert!(matches!(&e, Error::FailedPrecondition(w) if w.contains("itself a round of job-r")), "{e}");
    let det = store.seed_detail("job-r").await.unwrap().unwrap();
    assert_eq!(det.rounds.iter().map(|s| s.spec.job_name.as_str()).collect::<Vec<_>>(), ["job-r-r2"]);

    // The round ends without an import: the seed says so, and a new round may start.
    store.cancel_seed(&idem(&ops, "c1", "CancelSeed", 1), &ops, "job-r-r2", "disks lost", 110).await.unwrap();
    let s = store.seed_detail("job-r").await.unwrap().unwrap().seed;
    assert!(s.state_reason.contains("offline round job-r-r2 ended cancelled"), "{}", s.state_reason);
    let r = reship("r4", "job-r").await.unwrap();
    assert_eq!((r.round.spec.job_name.as_str(), r.files), ("job-r-r3", 2));

    // A station's lease names the round's files only; the round is prepared and imported.
    let lease = prepare_and_create(&*store, "job-r-r3", &st).await;
    assert_eq!(lease.files, ["data/ab/ab01", "data/cd/cd02"]);
    assert_eq!(lease.work.total_bytes, 100);
    let round = imported(&*store, "job-r-r3", 130).await;
    // Merged: the seed that lost the files is verified again, whole.
    let m = store.merge_round(&round, 131).await.unwrap();
    assert_eq!(m.state, SeedState::Merged);
    let det = store.seed_detail("job-r").await.unwrap().unwrap();
    assert_eq!(det.seed.state, SeedState::Verifying);
    assert!(
        det.seed.state_reason.contains("offline round job-r-r3 is imported (2 file(s))"),
        "{}",
        det.seed.state_reason
    );
    let states: Vec<String> = det.rounds.iter().map(|r| format!("{}={}", r.spec.job_name, r.state)).collect();
    assert_eq!(states, ["job-r-r2=cancelled", "job-r-r3=merged"]);
    let v = store.verification("job-r").await.unwrap().unwrap();
    assert!(
        v.repairs.iter().all(|r| r.state == "imported" && r.detail == "imported by offline round job-r-r3"),
        "{:?}",
        v.repairs
    );
    // Verifying now: nothing is lost until the verification says so.
    let e = reship("r5", "job-r").await.unwrap_err();
    assert!(matches!(&e, Error::FailedPrecondition(w) if w.contains("being verified")), "{e}");
    // A seed of its own is not merged.
    let e = store.merge_round(&id, 140).await.unwrap_err();
    assert!(matches!(&e, Error::FailedPrecondition(w) if w.contains("not a round")), "{e}");
}

/// Leases are fenced by their generation, progress moves only as `(from, to]` from where it
/// is, and a retried request gets the stored answer (applied once); a request id reused for
/// something else is refused.
pub async fn leases_are_fenced_progress_is_from_to_and_a_retry_is_applied_once(store: Arc<dyn Store>) {
    let src = SpiffeId::new("t", Role::Source, "fs01").unwrap();
    let (st1, st2) = (SpiffeId::new("t", Role::Copy, "st1").unwrap(), SpiffeId::new("t", Role::Copy, "st2").unwrap());
    let info = AgentInfo { site: None, hostname: "h".into(), version: "v".into(), virtualization: String::new() };
    for st in [&st1, &st2] {
        store.register_agent(&idem(st, "a", "RegisterAgent", 1), st, &info, 1).await.unwrap();
    }
    let (reg, place, kind) = (idem(&src, "s", "RegisterSeed", 1), Placement::default(), DiskKind::CustomerDisk);
    let (f, g) = (seed("job-f"), seed("job-g"));
    let first = store.register_seed(&reg, &src, &f, &place, kind, 1).await.unwrap();
    let again = store.register_seed(&reg, &src, &f, &place, kind, 2).await.unwrap();
    assert_eq!(again.seed.seed_id, first.seed.seed_id, "a retry gets the stored answer");
    let reused = idem(&src, "s", "RegisterSeed", 9);
    let e = store.register_seed(&reused, &src, &g, &place, kind, 3).await;
    assert!(matches!(e, Err(Error::AlreadyExists(ref m)) if m.contains("already used")), "{e:?}");
    assert!(store.seed_detail("job-g").await.unwrap().is_none(), "nothing of the refused request was applied");

    let t = |now| LeaseTiming { now, ttl_ms: 1_000 };
    let lease = store.claim_work(&idem(&st1, "c1", "ClaimWork", 1), &st1, t(10)).await.unwrap().unwrap();
    let g1 = Fence { work_id: lease.work.work_id.clone(), generation: lease.work.generation };
    assert!(store.claim_work(&idem(&st2, "c2", "ClaimWork", 1), &st2, t(11)).await.unwrap().is_none(), "one holder");
    let delta = |from, to| ProgressDelta { from, to, phase: "copy".into() };
    let p1 = idem(&st1, "p1", "ReportProgress", 1);
    assert_eq!(store.report_progress(&p1, &st1, &g1, &delta(0, 40), t(20)).await.unwrap().0, 40);
    assert_eq!(store.report_progress(&p1, &st1, &g1, &delta(0, 40), t(21)).await.unwrap().0, 40, "applied once");
    let e = store.report_progress(&idem(&st1, "p2", "ReportProgress", 1), &st1, &g1, &delta(0, 50), t(22)).await;
    assert!(matches!(e, Err(Error::FailedPrecondition(ref m)) if m.contains("is at 40 bytes")), "{e:?}");
    let e = store.report_progress(&idem(&st1, "p3", "ReportProgress", 1), &st1, &g1, &delta(40, 40), t(23)).await;
    assert!(matches!(e, Err(Error::InvalidArgument { .. })), "{e:?}");
    let e = store.report_progress(&idem(&st1, "p4", "ReportProgress", 1), &st1, &g1, &delta(40, 101), t(24)).await;
    assert!(matches!(e, Err(Error::InvalidArgument { .. })), "beyond the total: {e:?}");
    let e = store.report_progress(&idem(&st2, "p5", "ReportProgress", 1), &st2, &g1, &delta(40, 50), t(25)).await;
    assert!(matches!(e, Err(Error::PermissionDenied(_))), "another station's lease: {e:?}");

    // The lease runs out: back in the queue with its progress; the next holder's generation is
    // higher, and the old holder is refused whatever it tries.
    assert_eq!(store.expire_leases(2_000).await.unwrap().len(), 1);
    let lease2 = store.claim_work(&idem(&st2, "c3", "ClaimWork", 1), &st2, t(2_001)).await.unwrap().unwrap();
    assert!(lease2.work.generation > g1.generation);
    assert_eq!(lease2.work.progress_bytes, 40, "progress is kept for the next holder");
    let e = store.renew_lease(&idem(&st1, "r1", "RenewLease", 1), &st1, &g1, "", t(2_002)).await;
    assert!(matches!(e, Err(Error::FailedPrecondition(ref m)) if m.contains("superseded")), "{e:?}");
    let e = store.report_progress(&idem(&st1, "p6", "ReportProgress", 1), &st1, &g1, &delta(40, 60), t(2_003)).await;
    assert!(matches!(e, Err(Error::FailedPrecondition(ref m)) if m.contains("superseded")), "{e:?}");
    let g2 = Fence { work_id: lease2.work.work_id.clone(), generation: lease2.work.generation };
    let p7 = idem(&st2, "p7", "ReportProgress", 1);
    assert_eq!(store.report_progress(&p7, &st2, &g2, &delta(40, 60), t(2_004)).await.unwrap().0, 60);
    let history = store.seed_detail("job-f").await.unwrap().unwrap().history;
    assert!(
        history.iter().any(|h| h.event == "lease_lost" && h.reason.contains("expired")),
        "the expiry is in the history: {history:?}"
    );
    // The seed's state machine, step by step, in its history.
    use SeedState::*;
    let path: Vec<SeedState> = history.iter().map(|h| h.to).collect();
    assert_eq!(path, vec![Registered, QueuedForDiskPrep, Preparing, QueuedForDiskPrep, Preparing]);
}

/// The calls that say "still here" (renewals, progress, heartbeats; on PostgreSQL one
/// statement when nothing else is to be done, `ops::rows::alone_recorded`) do all the full
/// operation does: the lease runs until now + its time, progress ends a wait in the seed's
/// history, a heartbeat is the agent's last, a copy sent again gets its first answer and
/// changes nothing, and a request id used before, a lapsed lease or an agent never
/// registered are refused.
pub async fn liveness_calls_extend_the_lease_end_a_wait_and_answer_a_copy_once(store: Arc<dyn Store>) {
    let src = SpiffeId::new("t", Role::Source, "fs01").unwrap();
    let st = SpiffeId::new("t", Role::Copy, "st1").unwrap();
    let info = AgentInfo { site: None, hostname: "h".into(), version: "v".into(), virtualization: String::new() };
    store.register_agent(&idem(&st, "a", "RegisterAgent", 1), &st, &info, 1).await.unwrap();
    let reg = idem(&src, "s", "RegisterSeed", 1);
    let kind = DiskKind::CustomerDisk;
    let seed_id = store.register_seed(&reg, &src, &seed("job-l"), &Placement::default(), kind, 1).await.unwrap();
    let seed_id = seed_id.seed.seed_id;
    let t = |now| LeaseTiming { now, ttl_ms: 1_000 };
    let lease = store.claim_work(&idem(&st, "c", "ClaimWork", 1), &st, t(10)).await.unwrap().unwrap();
    let fence = Fence { work_id: lease.work.work_id.clone(), generation: lease.work.generation };

    let r1 = idem(&st, "r1", "RenewLease", 1);
    assert_eq!(store.renew_lease(&r1, &st, &fence, "", t(500)).await.unwrap(), 1_500);
    assert_eq!(store.renew_lease(&r1, &st, &fence, "", t(600)).await.unwrap(), 1_500, "a copy: the first answer");
    assert!(store.expire_leases(1_499).await.unwrap().is_empty(), "renewed until 1,500");
    assert_eq!(store.expire_leases(1_500).await.unwrap().len(), 1, "until 1,500: the copy renewed nothing");
    let e = store.renew_lease(&idem(&st, "r0", "RenewLease", 1), &st, &fence, "", t(1_501)).await.unwrap_err();
    assert!(matches!(&e, Error::FailedPrecondition(m) if m.contains("no longer held")), "{e}");

    let lease = store.claim_work(&idem(&st, "c2", "ClaimWork", 1), &st, t(1_600)).await.unwrap().unwrap();
    let fence = Fence { work_id: lease.work.work_id.clone(), generation: lease.work.generation };
    let delta = |from, to| ProgressDelta { from, to, phase: "copy".into() };
    let p1 = idem(&st, "p1", "ReportProgress", 1);
    assert_eq!(store.report_progress(&p1, &st, &fence, &delta(0, 10), t(1_700)).await.unwrap(), (10, 2_700));
    let reused = idem(&st, "p1", "RenewLease", 1);
    let e = store.renew_lease(&reused, &st, &fence, "", t(1_710)).await.unwrap_err();
    assert!(matches!(&e, Error::AlreadyExists(m) if m.contains("already used")), "{e}");

    // A wait, then progress: the wait's end is in the history, once.
    let r2 = idem(&st, "r2", "RenewLease", 1);
    assert_eq!(store.renew_lease(&r2, &st, &fence, "add 1 more disk", t(1_800)).await.unwrap(), 2_800);
    let p2 = idem(&st, "p2", "ReportProgress", 1);
    assert_eq!(store.report_progress(&p2, &st, &fence, &delta(10, 20), t(1_900)).await.unwrap(), (20, 2_900));
    let p3 = idem(&st, "p3", "ReportProgress", 1);
    assert_eq!(store.report_progress(&p3, &st, &fence, &delta(20, 30), t(1_950)).await.unwrap(), (30, 2_950));
    let events: Vec<String> =
        store.list_events(Some(&seed_id), 100, 0).await.unwrap().into_iter().map(|e| e.event).collect();
    assert_eq!(events.iter().filter(|e| *e == "station_waiting").count(), 1, "{events:?}");
    assert_eq!(events.iter().filter(|e| *e == "station_resumed").count(), 1, "{events:?}");
    assert!(store.expire_leases(2_949).await.unwrap().is_empty(), "the refused call at 1,710 renewed nothing");
    assert_eq!(store.expire_leases(2_950).await.unwrap().len(), 1, "the last progress ran to 2,950");
    let p4 = idem(&st, "p4", "ReportProgress", 1);
    let e = store.report_progress(&p4, &st, &fence, &delta(30, 40), t(2_961)).await.unwrap_err();
    assert!(matches!(&e, Error::FailedPrecondition(m) if m.contains("no longer held")), "{e}");
    let back = store.claim_work(&idem(&st, "c3", "ClaimWork", 1), &st, t(3_000)).await.unwrap().unwrap();
    assert_eq!(back.work.progress_bytes, 30, "the progress the refused calls did not move");

    let h1 = idem(&st, "h1", "Heartbeat", 1);
    assert_eq!(store.heartbeat(&h1, &st, "copying", 4_000).await.unwrap(), 4_000);
    assert_eq!(store.heartbeat(&h1, &st, "copying", 4_100).await.unwrap(), 4_000, "a copy: the first answer");
    let agents = store.list_agents(Some(Role::Copy)).await.unwrap();
    let me = agents.iter().find(|a| a.name == "st1").unwrap();
    assert_eq!((me.last_heartbeat_ms, me.status.as_str(), me.reported), (4_000, "copying", true));
    let stranger = SpiffeId::new("t", Role::Copy, "st9").unwrap();
    let e = store.heartbeat(&idem(&stranger, "h", "Heartbeat", 1), &stranger, "idle", 4_200).await.unwrap_err();
    assert!(matches!(&e, Error::FailedPrecondition(m) if m.contains("has not registered")), "{e}");
}

/// Liveness calls from many stations at the same moment (on PostgreSQL committed together on
/// the shared connections, `pg/live.rs`) are each answered with their own outcome and each
/// applied; a copy of a request already answered among them (its statement fails at its
/// record's insert, which rolls its batch back) gets its first answer and costs the others
/// nothing.
pub async fn liveness_calls_at_once_are_each_applied_and_a_copy_among_them_fails_alone(store: Arc<dyn Store>) {
    let src = SpiffeId::new("t", Role::Source, "fs01").unwrap();
    let info = AgentInfo { site: None, hostname: "h".into(), version: "v".into(), virtualization: String::new() };
    let stations: Vec<SpiffeId> = (0..12).map(|i| SpiffeId::new("t", Role::Copy, &format!("st{i}")).unwrap()).collect();
    let t = |now| LeaseTiming { now, ttl_ms: 1_000 };
    let mut fences = Vec::new();
    for (i, st) in stations.iter().enumerate() {
        store.register_agent(&idem(st, "a", "RegisterAgent", 1), st, &info, 1).await.unwrap();
        let reg = idem(&src, &format!("s{i}"), "RegisterSeed", 1);
        let job = format!("job-b{i}");
        store.register_seed(&reg, &src, &seed(&job), &Placement::default(), DiskKind::CustomerDisk, 1).await.unwrap();
        let lease = store.claim_work(&idem(st, "c", "ClaimWork", 1), st, t(10)).await.unwrap().unwrap();
        fences.push(Fence { work_id: lease.work.work_id.clone(), generation: lease.work.generation });
    }
    let dup = idem(&stations[0], "dup", "RenewLease", 1);
    assert_eq!(store.renew_lease(&dup, &stations[0], &fences[0], "", t(100)).await.unwrap(), 1_100);
    for round in 0..3u64 {
        let mut calls = Vec::new();
        for (i, st) in stations.iter().enumerate() {
            let (s, st, fence) = (store.clone(), st.clone(), fences[i].clone());
            calls.push(tokio::spawn(async move {
                let store = s;
                let now = 200 + 100 * round as i64;
                let r = idem(&st, &format!("r{round}"), "RenewLease", 1);
                let renewed = store.renew_lease(&r, &st, &fence, "", t(now)).await?;
                let delta = ProgressDelta { from: 10 * round, to: 10 * round + 10, phase: "copy".into() };
                let p = idem(&st, &format!("p{round}"), "ReportProgress", 1);
                let progressed = store.report_progress(&p, &st, &fence, &delta, t(now + 50)).await?;
                Ok::<_, Error>((renewed, progressed))
            }));
            // The copy, sent again among them: its first answer.
            let (s, st, fence) = (store.clone(), stations[0].clone(), fences[0].clone());
            calls.push(tokio::spawn(async move {
                let copy = s.renew_lease(&idem(&st, "dup", "RenewLease", 1), &st, &fence, "", t(900)).await?;
                Ok((copy, (0, 0)))
            }));
        }
        for (k, call) in calls.into_iter().enumerate() {
            let got = call.await.unwrap().unwrap();
            let now = 200 + 100 * round as i64;
            if k % 2 == 1 {
                assert_eq!(got.0, 1_100, "a copy gets the first answer");
            } else {
                assert_eq!(got, (now + 1_000, (10 * round + 10, now + 1_050)), "station {}", k / 2);
            }
        }
    }
    // Every station's last progress ran its lease to 1,450 + 1,000; none stopped earlier.
    assert!(store.expire_leases(1_449).await.unwrap().is_empty());
    assert_eq!(store.expire_leases(1_450).await.unwrap().len(), stations.len());
    for (i, st) in stations.iter().enumerate() {
        let back = store.claim_work(&idem(st, "c2", "ClaimWork", 1), st, t(2_000)).await.unwrap().unwrap();
        assert_eq!(back.work.progress_bytes, 30, "station {i}: three reports of 10 bytes, each applied once");
    }
}

/// Stations claiming at the same moment take different work (on PostgreSQL: `SKIP LOCKED`,
/// and a lost race runs again), and one request sent twice at once is applied once.
pub async fn racing_claims_take_each_item_once_and_a_doubled_request_is_applied_once(store: Arc<dyn Store>) {
    let src = SpiffeId::new("t", Role::Source, "fs01").unwrap();
    let info = AgentInfo { site: None, hostname: "h".into(), version: "v".into(), virtualization: String::new() };
    let stations: Vec<SpiffeId> = (0..12).map(|i| SpiffeId::new("t", Role::Copy, &format!("st{i}")).unwrap()).collect();
    for st in &stations {
        store.register_agent(&idem(st, "a", "RegisterAgent", 1), st, &info, 1).await.unwrap();
    }
    for i in 0..6 {
        let reg = idem(&src, &format!("s{i}"), "RegisterSeed", 1);
        store
            .register_seed(&reg, &src, &seed(&format!("job-r{i}")), &Placement::default(), DiskKind::CustomerDisk, 2)
            .await
            .unwrap();
    }
    let claims = stations.iter().map(|st| {
        let (store, st) = (store.clone(), st.clone());
        tokio::spawn(async move {
            store.claim_work(&idem(&st, "c", "ClaimWork", 1), &st, LeaseTiming { now: 10, ttl_ms: 60_000 }).await
        })
    });
    let mut taken = Vec::new();
    let mut held = None;
    for (c, st) in claims.collect::<Vec<_>>().into_iter().zip(&stations) {
        if let Some(lease) = c.await.unwrap().unwrap() {
            taken.push(lease.work.work_id.clone());
            held = Some((st.clone(), lease));
        }
    }
    taken.sort();
    let n = taken.len();
    taken.dedup();
    assert_eq!((n, taken.len()), (6, 6), "six items, each leased once, to twelve stations claiming at once");

    // A claim sent again after its answer, with work queued meanwhile: the same lease again,
    // and the new work is left for the next claim.
    let (st, lease) = held.unwrap();
    let reg = idem(&src, "s6", "RegisterSeed", 1);
    let late = store
        .register_seed(&reg, &src, &seed("job-r6"), &Placement::default(), DiskKind::CustomerDisk, 3)
        .await
        .unwrap();
    let t = LeaseTiming { now: 12, ttl_ms: 60_000 };
    let again = store.claim_work(&idem(&st, "c", "ClaimWork", 1), &st, t).await.unwrap().expect("the stored lease");
    assert_eq!(
        (again.work.work_id.as_str(), again.work.generation),
        (lease.work.work_id.as_str(), lease.work.generation),
        "a claim sent again gets its first answer"
    );
    let free = stations.iter().find(|s| !s.name.eq(&st.name)).unwrap();
    let next = store.claim_work(&idem(free, "c-next", "ClaimWork", 1), free, t).await.unwrap();
    assert_eq!(
        next.map(|l| l.seed.seed_id),
        Some(late.seed.seed_id),
        "the work queued meanwhile was not taken by the copy"
    );

    // A station sends one progress report twice at the same moment: applied once, and both
    // copies get its answer.
    let fence = Fence { work_id: lease.work.work_id.clone(), generation: lease.work.generation };
    let delta = ProgressDelta { from: 0, to: 30, phase: "copy".into() };
    let both = (0..2).map(|_| {
        let (store, st, fence, delta) = (store.clone(), st.clone(), fence.clone(), delta.clone());
        tokio::spawn(async move {
            let p = idem(&st, "p-twice", "ReportProgress", 1);
            store.report_progress(&p, &st, &fence, &delta, LeaseTiming { now: 11, ttl_ms: 60_000 }).await
        })
    });
    for r in both.collect::<Vec<_>>() {
        assert_eq!(r.await.unwrap().expect("each copy of a doubled report gets the answer").0, 30);
    }

    // A source sends one registration twice at the same moment (a retry racing the first).
    let reg = idem(&src, "twice", "RegisterSeed", 1);
    let both = (0..2).map(|_| {
        let (store, src, reg) = (store.clone(), src.clone(), reg.clone());
        tokio::spawn(async move {
            store.register_seed(&reg, &src, &seed("job-twice"), &Placement::default(), DiskKind::CustomerDisk, 3).await
        })
    });
    let mut ids = Vec::new();
    for r in both.collect::<Vec<_>>() {
        match r.await.unwrap() {
            Ok(r) => ids.push(r.seed.seed_id),
            // The loser of the race on SQLite's one writer cannot lose; on PostgreSQL it runs
            // again and finds the winner's answer. Nothing else is acceptable.
            Err(e) => panic!("a doubled request failed: {e}"),
        }
    }
    assert_eq!(ids[0], ids[1], "both copies of the request get the one seed");
    let history = store.seed_detail("job-twice").await.unwrap().unwrap().history;
    assert_eq!(history.iter().filter(|h| h.event == "register").count(), 1, "registered once: {history:?}");
}

/// The background workers' lease: one holder at a time, renewed by its holder, taken over only
/// once it ran out, with a higher generation that fences the former holder out; eight
/// coordinators taking a new lease at once get one holder.
pub async fn the_workers_lease_has_one_holder_and_its_generation_fences_a_former_one(store: Arc<dyn Store>) {
    let a = store.take_worker_lease("w", "coord-a", 0, 1_000).await.unwrap().expect("a free lease");
    assert_eq!(a.generation, 1);
    assert!(store.take_worker_lease("w", "coord-b", 500, 1_000).await.unwrap().is_none(), "held by a");
    store.check_worker_fence(&a, 600).await.unwrap();
    let renewed = store.take_worker_lease("w", "coord-a", 900, 1_000).await.unwrap().unwrap();
    assert_eq!((renewed.generation, renewed.expires_ms), (1, 1_900), "renewed, same generation");
    assert!(store.take_worker_lease("w", "coord-b", 1_899, 1_000).await.unwrap().is_none(), "not yet run out");
    let b = store.take_worker_lease("w", "coord-b", 1_900, 1_000).await.unwrap().expect("run out: taken over");
    assert_eq!(b.generation, 2);
    let e = store.check_worker_fence(&renewed, 1_901).await.unwrap_err();
    assert!(
        matches!(e, Error::FailedPrecondition(ref m) if m.contains("coord-b") && m.contains("generation 2")),
        "{e:?}"
    );
    assert!(store.take_worker_lease("w", "coord-a", 1_950, 1_000).await.unwrap().is_none(), "b holds it now");
    let e = store.check_worker_fence(&b, 4_000).await.unwrap_err();
    assert!(matches!(e, Error::FailedPrecondition(ref m) if m.contains("ran out")), "{e:?}");

    let takes = (0..8).map(|i| {
        let store = store.clone();
        tokio::spawn(async move { store.take_worker_lease("race", &format!("coord-{i}"), 10, 1_000).await })
    });
    let mut holders = 0;
    for t in takes.collect::<Vec<_>>() {
        match t.await.unwrap() {
            Ok(Some(f)) => {
                assert_eq!(f.generation, 1);
                holders += 1;
            }
            Ok(None) => {}
            // PostgreSQL: a race lost past its retries is UNAVAILABLE, and takes nothing.
            Err(Error::Unavailable(_)) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(holders, 1, "one holder of a lease eight coordinators took at once");
}

/// Audit entries recorded by many operations at once, and more than one chaining step's
/// worth, all join one unbroken chain, in one order, each once; a reader sees every entry
/// recorded before it read, and nothing is left waiting.
pub async fn audit_entries_recorded_at_once_join_one_unbroken_chain(store: Arc<dyn Store>) {
    let record = |i: usize| AuditRecord {
        actor: format!("spiffe://t/operator/op{}", i % 7),
        action: "Test".into(),
        target: format!("job-{i}"),
        outcome: "ok".into(),
        detail: format!("entry {i}"),
    };
    let n = crate::store::ops::AUDIT_CHAIN_BATCH + 37;
    let writers = (0..8).map(|w| {
        let store = store.clone();
        tokio::spawn(async move {
            for i in (w..n).step_by(8) {
                store.audit(record(i), 1_000 + i as i64).await.unwrap();
            }
        })
    });
    // A chaining step (the sweeper's) runs while they record.
    let chainer = {
        let store = store.clone();
        tokio::spawn(async move {
            for _ in 0..5 {
                match store.chain_audit().await {
                    Ok(_) | Err(Error::Unavailable(_)) => {}
                    Err(e) => panic!("{e}"),
                }
                tokio::task::yield_now().await;
            }
        })
    };
    for w in writers.collect::<Vec<_>>() {
        w.await.unwrap();
    }
    chainer.await.unwrap();
    assert_eq!(store.audit_head().await.unwrap(), n as i64, "every entry recorded joined, once");
    let entries = store.audit_list(0, 10_000, None).await.unwrap();
    assert_eq!(entries.len(), n);
    let report = seedship_proto::audit::verify(&entries);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let mut details: Vec<&str> = entries.iter().map(|e| e.detail.as_str()).collect();
    details.sort();
    details.dedup();
    assert_eq!(details.len(), n, "each entry once");
    assert_eq!(store.chain_audit().await.unwrap(), 0, "nothing left waiting");
    store.audit(record(n), 5_000).await.unwrap();
    let one = store.audit_list(n as i64, 10, Some(&format!("job-{n}"))).await.unwrap();
    assert_eq!(one.len(), 1, "a reader sees an entry recorded just before: {one:?}");
    assert_eq!(one[0].prev_hash, entries[n - 1].hash, "linked after the newest");
}

/// One `#[tokio::test]` per conformance test, each on a fresh store from `$open` (an async
/// fn giving the store and whatever must outlive it, such as its folder).
#[macro_export]
#[doc(hidden)]
macro_rules! conformance_suite {
    ($open:path) => {
        $crate::conformance_suite!(@each $open; tracking_numbers_are_unique_and_two_racing_operators_get_one_winner, the_job_is_mirrored_into_the_history_and_the_seed_follows_azure, a_drive_in_another_active_job_refuses_the_second_job, drives_escrow_their_key_first_and_work_completes_only_when_none_is_preparing, a_data_box_disk_seed_is_ordered_delivered_and_written_on_the_delivered_disks_only, the_operator_switches_a_queued_seed_to_microsofts_disks_and_back, a_new_offline_round_ships_exactly_the_lost_files_and_its_import_verifies_the_seed_again, leases_are_fenced_progress_is_from_to_and_a_retry_is_applied_once, liveness_calls_extend_the_lease_end_a_wait_and_answer_a_copy_once, liveness_calls_at_once_are_each_applied_and_a_copy_among_them_fails_alone, racing_claims_take_each_item_once_and_a_doubled_request_is_applied_once, the_workers_lease_has_one_holder_and_its_generation_fences_a_former_one, audit_entries_recorded_at_once_join_one_unbroken_chain);
    };
    (@each $open:path; $($t:ident),*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $t() {
            let (store, _keep) = $open().await;
            $crate::store::conformance::$t(store).await;
        }
    )*};
}
