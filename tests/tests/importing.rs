//! The Azure side end to end: real coordinator and copy agent, the emulated Resource Manager
//! (`Microsoft.DataBox`) and datacenter over HTTPS. The customer-disk job is created from the
//! prepared disks, shipping is recorded, and the coordinator follows the job to the end;
//! deadlines, races, crashes, and a copy that waits for the customer. Every exchange with the
//! emulator is checked against Azure's document at the end of each test.

use std::time::Duration;

use seedship_azure::databox::model;
use seedship_e2e::azure::{Emulator, RG, SUB, wait_event, wait_seed_state};
use seedship_e2e::prep::{copy_agent, disk_size, escrowed_keys, image, prepare, stage, staging_bytes, station, text};
use seedship_e2e::{Cluster, Identity, Options, bin};
use seedship_proto::{client, pb};
use serde_json::json;

const T: Duration = Duration::from_secs(30);

/// A cluster whose coordinator talks to a fresh emulator (polling every second).
fn cluster() -> anyhow::Result<(Cluster, Emulator)> {
    cluster_with(false, "Error")
}

/// The same, the emulated datacenter copying into Azurite when `storage`; jobs ask Azure for
/// logs at `log_level` ("Error" or "Verbose").
fn cluster_with(storage: bool, log_level: &str) -> anyhow::Result<(Cluster, Emulator)> {
    cluster_args(storage, log_level, &[])
}

/// The same, the emulator started with `args` too.
fn cluster_args(storage: bool, log_level: &str, args: &[&str]) -> anyhow::Result<(Cluster, Emulator)> {
    let base = seedship_e2e::azure::kept_dir("seedship-azure-")?;
    let emu = Emulator::start_with(&base, storage, args)?;
    let c = emu.cluster(&format!("log_level = \"{log_level}\""))?;
    Ok((c, emu))
}

/// Drive id → image path, as the datacenter's "arrive" takes them.
fn images_by_drive(images: &[std::path::PathBuf]) -> std::collections::BTreeMap<String, std::path::PathBuf> {
    images.iter().map(|p| (seedship_e2e::ntfs::drive_id_of(p).expect("a seedship disk"), p.clone())).collect()
}

fn md5_of(data: &[u8]) -> Vec<u8> {
    use md5::Digest;
    md5::Md5::digest(data).to_vec()
}

async fn job_view(c: &Cluster, ops: &Identity, job: &str) -> anyhow::Result<pb::GetJobResponse> {
    Ok(client::operator(c.connect(ops).await?).get_job(pb::GetJobRequest { job: job.into() }).await?.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_job_is_created_from_the_prepared_drives_shipped_imported_into_azurite_and_followed_to_completed()
-> anyhow::Result<()> {
    let (mut c, emu) = cluster_with(true, "Verbose")?;
    let ops = c.issue("operator", "alice")?;
    let (screen, images) = prepare(&mut c, &ops, "job-happy", 6, 2).await?;
    // The copy station's final screen shows the datacenter's address from Azure.
    assert!(screen.contains("Amsterdam"), "{screen}");

    // The coordinator creates the job from the prepared drives, with their escrowed keys.
    let det = wait_seed_state(&c, &ops, "job-happy", "import_job_created", T).await?;
    let s = det.seed.unwrap();
    assert!(
        s.state_reason.contains("Azure import job job-happy created") && s.state_reason.contains("Amsterdam"),
        "{}",
        s.state_reason
    );
    let job = emu.job("job-happy").await?.expect("the job is in Azure");
    assert_eq!(job.sku.as_ref().unwrap().name.as_deref(), Some("DataBoxCustomerDisk"));
    let p = job.properties.unwrap();
    let Some(model::JobDetails::DataBoxCustomerDisk(d)) = p.details else { panic!("not a customer-disk job") };
    let account = d.data_import_details.as_ref().unwrap()[0].account_details.clone();
    let Some(model::DataAccountDetails::StorageAccount(a)) = account else { panic!("not a storage account") };
    assert_eq!(
        a.storage_account_id.as_deref(),
        Some(&*format!(
            "/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Storage/storageAccounts/seedacct"
        ))
    );
    assert_eq!(d.data_import_details.unwrap()[0].log_collection_level.as_deref(), Some("Verbose"));
    assert_eq!(d.shipping_address.unwrap().city.as_deref(), Some("Utrecht"));
    assert_eq!(d.return_to_customer_package_details.unwrap().carrier_name.as_deref(), Some("DHL"));
    let disks = d.import_disk_details_collection.unwrap();
    assert_eq!(disks.len(), 2);
    let keys = escrowed_keys(&c);
    let creds = emu.arm()?.list_credentials(SUB, RG, "job-happy").await?;
    let Some(model::JobSecrets::DataBoxCustomerDisk(secrets)) = creds.value.unwrap().remove(0).job_secrets else {
        panic!("no disk secrets")
    };
    for k in secrets.disk_secrets.unwrap() {
        let id = k.disk_serial_number.clone().unwrap();
        assert_eq!(k.bit_locker_key.unwrap().expose(), keys[&id].reveal(), "disk {id}'s key is the escrowed one");
    }
    // Each disk's manifest path and MD5 are those of the drive manifest on its volume.
    let on_disk: std::collections::BTreeMap<String, String> = images
        .iter()
        .map(|i| {
            let v = seedship_e2e::ntfs::read_disk(i, &keys).unwrap();
            (v.id["drive_id"].as_str().unwrap().to_string(), v.manifest_md5.unwrap())
        })
        .collect();
    for (serial, d) in &disks {
        assert_eq!(d.manifest_file.as_deref(), Some("\\DriveManifest.xml"));
        assert_eq!(d.manifest_hash.as_ref(), on_disk.get(serial), "disk {serial}");
        assert!(d.bit_locker_key.is_none(), "Azure never shows the key");
    }
    let v = job_view(&c, &ops, "job-happy").await?;
    let j = v.job.unwrap();
    assert_eq!(
        (j.phase.as_str(), j.azure_state.as_str(), j.deadline.as_str()),
        ("created", "AwaitingShipmentDetails", "tracking_number")
    );
    assert_eq!(j.deadline_days_left, 14);
    assert!(j.shipping_address.iter().any(|l| l.contains("Amsterdam")), "{:?}", j.shipping_address);

    // Bad shipping input is refused, naming what is wrong, and changes nothing.
    for (args, want) in [
        (vec!["--carrier", "DHL", "--tracking", "1234567890", "--drives", "3"], "has 2 drive(s), not 3"),
        (vec!["--carrier", "Pigeon", "--tracking", "1234567890", "--drives", "2"], "not a carrier seedship knows"),
        (vec!["--carrier", "DHL", "--tracking", "12345", "--drives", "2"], "not a DHL tracking number"),
    ] {
        let mut a = vec!["ship", "--job", "job-happy", "--date", "2026-11-22"];
        a.extend(args);
        let o = c.run("seedctl-bad-ship", &mut c.seedctl(&ops, &a))?;
        assert!(!o.status.success() && text(&o).contains(want), "{want}: {}", text(&o));
    }
    assert_eq!(
        emu.job("job-happy").await?.unwrap().properties.unwrap().status.as_deref(),
        Some("AwaitingShipmentDetails")
    );

    // Shipping: recorded, sent to Azure, the seed is shipped; the tracking clock starts.
    let o = c.run(
        "seedctl-ship",
        &mut c.seedctl(
            &ops,
            &[
                "ship",
                "--job",
                "job-happy",
                "--carrier",
                "dhl",
                "--tracking",
                "1234567890",
                "--drives",
                "2",
                "--date",
                "2026-11-22",
            ],
        ),
    )?;
    assert!(o.status.success() && text(&o).contains("Azure confirmed"), "{}", text(&o));
    let p = emu.job("job-happy").await?.unwrap().properties.unwrap();
    assert_eq!(p.status.as_deref(), Some("ShippedToAzureDC"));
    let Some(model::JobDetails::DataBoxCustomerDisk(d)) = p.details else { panic!() };
    let dp = d.deliver_to_dc_package_details.unwrap();
    assert_eq!((dp.carrier_name.as_deref(), dp.tracking_id.as_deref()), (Some("DHL"), Some("1234567890")));
    wait_seed_state(&c, &ops, "job-happy", "shipped", T).await?;

    // The package arrives with both disks; the datacenter copies them into Azurite, one at a
    // time; the coordinator mirrors every step.
    let ids: Vec<String> = disks.keys().cloned().collect();
    let by_id = images_by_drive(&images);
    emu.dc("job-happy", "arrive", json!({ "images": by_id })).await?;
    wait_seed_state(&c, &ops, "job-happy", "at_datacenter", T).await?;
    let j = emu.dc("job-happy", "copy", json!({ "serial": ids[0], "complete": false })).await?;
    assert_eq!(j["properties"]["status"], "DataCopy", "{j}");
    wait_seed_state(&c, &ops, "job-happy", "importing", T).await?;
    // The source agent says what MARS says: waiting for the import job, with its state.
    let src_cfg = c.path("src-job-happy.toml");
    let o =
        c.run("status", std::process::Command::new(bin("source-agent")).arg("--config").arg(&src_cfg).arg("status"))?;
    assert!(text(&o).contains("waiting for the import job to complete (Azure job state: DataCopy)"), "{}", text(&o));
    let j = emu.dc("job-happy", "copy", json!({ "serial": ids[1] })).await?;
    assert_eq!(j["properties"]["status"], "Completed", "{j}");
    let det = wait_seed_state(&c, &ops, "job-happy", "imported", T).await?;
    let seed = det.seed.unwrap();
    assert!(seed.state_reason.contains("every disk was copied"), "{}", seed.state_reason);
    // The coordinator chose the import container from the seed's id.
    let container = seed.container.clone();
    assert_eq!(container, format!("import-{}", seed.seed_id));
    // Every staging file is a blob in the seed's container, with the seed manifest's MD5 set,
    // and its bytes have that MD5.
    let blobs = emu.azurite.as_ref().unwrap().blobs()?;
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(c.path("staging-job-happy/manifest.json"))?)?;
    let listed = blobs.list(&container).await?;
    let files = manifest["files"].as_array().unwrap();
    assert_eq!(listed.len(), files.len() + 1, "every file and manifest.json: {listed:?}");
    for f in files {
        let path = f["path"].as_str().unwrap();
        let want = hex::decode(f["md5"].as_str().unwrap())?;
        let b = listed.iter().find(|b| b.name == path).unwrap_or_else(|| panic!("{path} is not in Azurite"));
        assert_eq!((b.size, b.md5.as_deref()), (f["size"].as_u64().unwrap(), Some(&want[..])), "{path}");
        let data = blobs.download(&container, path).await?;
        assert_eq!(md5_of(&data), want, "{path}'s bytes");
    }
    let v = job_view(&c, &ops, "job-happy").await?;
    let jd = v.job.unwrap().drives;
    assert!(jd.iter().all(|d| d.verbose_log_uri.contains("databoxcopylog/job-happy_")), "verbose logs: {jd:?}");
    assert!(jd.iter().all(|d| d.state == "Completed" && d.copy_errors.is_empty()), "{jd:?}");
    let total: i64 = jd.iter().map(|d| d.bytes_succeeded).sum();
    assert!(total as u64 >= staging_bytes(&c.path("staging-job-happy")), "bytes copied are mirrored: {total}");
    emu.dc("job-happy", "ship-back", json!({ "carrier": "DHL", "tracking": "9876543210" })).await?;
    wait_event(&c, &ops, "job-happy", "Azure job state DataCopy -> Completed", T).await?;
    let v = job_view(&c, &ops, "job-happy").await?;
    let j = v.job.unwrap();
    assert_eq!(j.azure_state, "Completed");
    let events: Vec<&str> = v.history.iter().map(|e| e.event.as_str()).collect();
    for e in [
        "import_job_intent",
        "import_job_created",
        "shipped",
        "received",
        "import_started",
        "import_completed",
        "azure_drive_state",
    ] {
        assert!(events.contains(&e), "{e} missing from {events:?}");
    }
    // `seedctl job` (the old tool's "u:") and `seedctl jobs` show it.
    let o = c.run("seedctl-job", &mut c.seedctl(&ops, &["job", "job-happy"]))?;
    let t = text(&o);
    assert!(t.contains("Ship to    Microsoft") || t.contains("Amsterdam"), "{t}");
    assert!(t.contains("tracking 1234567890") && t.contains("Completed"), "{t}");
    let o = c.run("seedctl-jobs", &mut c.seedctl(&ops, &["jobs"]))?;
    assert!(text(&o).contains("job-happy") && text(&o).contains("Completed"), "{}", text(&o));
    let report = emu.check_record()?;
    assert!(report.contains("; 0 problems") && report.contains("Jobs_MarkDevicesShipped"), "{report}");
    c.finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_operators_race_for_one_tracking_number_and_azure_side_changes_are_surfaced() -> anyhow::Result<()> {
    let (mut c, emu) = cluster()?;
    let alice = c.issue("operator", "alice")?;
    let bob = c.issue("operator", "bob")?;
    for job in ["job-r1", "job-r2", "job-r3"] {
        prepare(&mut c, &alice, job, 2, 1).await?;
    }
    for job in ["job-r1", "job-r2", "job-r3"] {
        wait_seed_state(&c, &alice, job, "import_job_created", T).await?;
    }

    // Two operators, two jobs, one tracking number, at the same time: exactly one wins.
    let ship = |job: &str| {
        [
            "ship",
            "--job",
            job,
            "--carrier",
            "UPS",
            "--tracking",
            "1Z999AA10123456784",
            "--drives",
            "1",
            "--date",
            "2026-11-22",
        ]
        .map(String::from)
    };
    let (a, b) = (ship("job-r1"), ship("job-r2"));
    let (mut ca, mut cb) = (
        c.seedctl(&alice, &a.iter().map(String::as_str).collect::<Vec<_>>()),
        c.seedctl(&bob, &b.iter().map(String::as_str).collect::<Vec<_>>()),
    );
    let outs = c.run_all(vec![("ship-alice", &mut ca), ("ship-bob", &mut cb)])?;
    let won: Vec<bool> = outs.iter().map(|o| o.status.success()).collect();
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "exactly one wins: {} / {}", text(&outs[0]), text(&outs[1]));
    let loser = &outs[if won[0] { 1 } else { 0 }];
    assert!(text(loser).contains("already exists") && text(loser).contains("1Z999AA10123456784"), "{}", text(loser));
    let (winner, other) = if won[0] { ("job-r1", "job-r2") } else { ("job-r2", "job-r1") };
    wait_seed_state(&c, &alice, winner, "shipped", T).await?;
    let in_azure = |j: Option<model::JobResource>| {
        let p = j.unwrap().properties.unwrap();
        let Some(model::JobDetails::DataBoxCustomerDisk(d)) = p.details else { panic!() };
        (p.status.unwrap(), d.deliver_to_dc_package_details.and_then(|d| d.tracking_id))
    };
    assert_eq!(in_azure(emu.job(winner).await?), ("ShippedToAzureDC".into(), Some("1Z999AA10123456784".into())));
    assert_eq!(
        in_azure(emu.job(other).await?),
        ("AwaitingShipmentDetails".into(), None),
        "the loser changed nothing in Azure"
    );
    let d = job_view(&c, &alice, other).await?;
    assert!(d.job.unwrap().shipping.is_none(), "the loser recorded nothing");
    // Every shipping change says who made it.
    let e = wait_event(&c, &alice, winner, "shipped via UPS with tracking number 1Z999AA10123456784", T).await?;
    assert!(e.actor.contains("/operator/"), "{}", e.actor);

    // A job cancelled and deleted on the Azure side is detected and surfaced on the seed.
    emu.arm()?.cancel_job(SUB, RG, other, "cleaning up the portal").await?;
    emu.arm()?.delete_job(SUB, RG, other).await?;
    let det = wait_seed_state(&c, &alice, other, "failed", T).await?;
    let why = det.seed.unwrap().state_reason;
    // The coordinator may have seen the cancel before the delete.
    assert!(
        why.contains("no longer exists in resource group seedship-rg") || why.contains("cancelled in Azure"),
        "{why}"
    );

    // A job cancelled in Azure: the seed fails with the reason, and shipping is refused.
    emu.arm()?.cancel_job(SUB, RG, "job-r3", "ordered by mistake").await?;
    let det = wait_seed_state(&c, &alice, "job-r3", "failed", T).await?;
    assert!(det.seed.unwrap().state_reason.contains("cancelled in Azure"));
    let o = c.run(
        "ship-cancelled",
        &mut c.seedctl(
            &alice,
            &[
                "ship",
                "--job",
                "job-r3",
                "--carrier",
                "FedEx",
                "--tracking",
                "123456789012",
                "--drives",
                "1",
                "--date",
                "2026-11-22",
            ],
        ),
    )?;
    assert!(!o.status.success() && text(&o).contains("cancelled"), "{}", text(&o));
    let report = emu.check_record()?;
    assert!(report.contains("; 0 problems"), "{report}");
    c.finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_killed_between_the_intent_and_the_put_converges_on_exactly_one_job() -> anyhow::Result<()> {
    let (mut c, emu) = cluster()?;
    let ops = c.issue("operator", "alice")?;

    // 1. The PUT never reaches Azure (503s): the intent is written, Azure is "unavailable".
    emu.faults(json!({ "status": 503, "count": 100000, "method": "PUT" })).await?;
    prepare(&mut c, &ops, "job-k1", 2, 1).await?;
    wait_event(&c, &ops, "job-k1", "Azure does not answer", T).await?;
    let det = wait_seed_state(&c, &ops, "job-k1", "disks_prepared", T).await?;
    assert!(det.seed.unwrap().state_reason.starts_with("Azure unavailable since"));
    assert_eq!(emu.job_count().await?, 0);
    c.kill9_coordinator()?;
    emu.faults(json!({ "status": 503, "count": 0 })).await?;
    c.start_coordinator()?;
    wait_seed_state(&c, &ops, "job-k1", "import_job_created", T).await?;
    assert_eq!(emu.job_count().await?, 1);

    // 2. The PUT lands in Azure but its answer is lost; the coordinator dies before it learns.
    emu.faults(json!({ "status": 500, "count": 100000, "method": "PUT", "after_apply": true })).await?;
    prepare(&mut c, &ops, "job-k2", 2, 1).await?;
    wait_event(&c, &ops, "job-k2", "Azure does not answer", T).await?;
    assert!(emu.job("job-k2").await?.is_some(), "the PUT was carried out");
    c.kill9_coordinator()?;
    emu.faults(json!({ "status": 500, "count": 0 })).await?;
    c.start_coordinator()?;
    let det = wait_seed_state(&c, &ops, "job-k2", "import_job_created", T).await?;
    assert!(det.seed.unwrap().state_reason.contains("adopted"), "found, not created again");
    assert_eq!(emu.job_count().await?, 2, "one job per seed, never a second");
    wait_event(&c, &ops, "job-k2", "Azure answers again", T).await?;
    c.finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlines_warn_at_days_10_12_and_13_and_expire_at_14() -> anyhow::Result<()> {
    let (mut c, emu) = cluster()?;
    let ops = c.issue("operator", "alice")?;
    prepare(&mut c, &ops, "job-d1", 2, 1).await?;
    prepare(&mut c, &ops, "job-d2", 2, 1).await?;
    wait_seed_state(&c, &ops, "job-d1", "import_job_created", T).await?;
    wait_seed_state(&c, &ops, "job-d2", "import_job_created", T).await?;
    // job-d2 ships at once; job-d1 never does.
    let o = c.run(
        "ship-d2",
        &mut c.seedctl(
            &ops,
            &[
                "ship",
                "--job",
                "job-d2",
                "--carrier",
                "FedEx",
                "--tracking",
                "123456789012",
                "--drives",
                "1",
                "--date",
                "2026-11-22",
            ],
        ),
    )?;
    assert!(o.status.success(), "{}", text(&o));
    wait_seed_state(&c, &ops, "job-d2", "shipped", T).await?;

    emu.advance(&c, 9.0).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let v = job_view(&c, &ops, "job-d1").await?;
    assert!(!v.history.iter().any(|e| e.event == "deadline_warning"), "no warning before day 10");
    for (day, left) in [(10, 4), (12, 2), (13, 1)] {
        emu.advance(
            &c,
            if day == 10 {
                1.0
            } else if day == 12 {
                2.0
            } else {
                1.0
            },
        )
        .await?;
        let e = wait_event(&c, &ops, "job-d1", &format!("day {day}: {left} day(s) left to ship the disks"), T).await?;
        assert_eq!(e.actor, "coordinator/azure");
        wait_event(&c, &ops, "job-d2", &format!("day {day}: {left} day(s) left for the datacenter to receive"), T)
            .await?;
        let o = c.run("jobs", &mut c.seedctl(&ops, &["jobs"]))?;
        assert!(
            text(&o).contains(&format!("{left}d left to ship"))
                && text(&o).contains(&format!("{left}d left to arrive")),
            "{}",
            text(&o)
        );
    }
    assert!(c.coordinator_logs().contains("1 day(s) left to ship the disks"), "warned in the log");
    emu.advance(&c, 1.0).await?;
    let det = wait_seed_state(&c, &ops, "job-d1", "failed", T).await?;
    let why = det.seed.unwrap().state_reason;
    assert!(why.contains("no shipment details within 14 days") || why.contains("no longer exists"), "{why}");
    let det = wait_seed_state(&c, &ops, "job-d2", "failed", T).await?;
    let why = det.seed.unwrap().state_reason;
    assert!(why.contains("did not receive the disks within 14 days"), "{why}");
    // Azure's side: job-d1 was deleted (no shipment details in two weeks); job-d2 is still
    // waiting for its package.
    assert!(emu.job("job-d1").await?.is_none());
    let j = job_view(&c, &ops, "job-d2").await?.job.unwrap();
    assert_eq!(j.azure_state.as_str(), "ShippedToAzureDC");
    c.finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_disk_a_changed_manifest_damaged_blocks_and_a_drive_never_received_end_with_azures_codes()
-> anyhow::Result<()> {
    let (mut c, emu) = cluster_with(true, "Error")?;
    let ops = c.issue("operator", "alice")?;
    let (_, images) = prepare(&mut c, &ops, "job-bad", 6, 4).await?;
    wait_seed_state(&c, &ops, "job-bad", "import_job_created", T).await?;
    let by_id = images_by_drive(&images);
    // The drive with the most files is the one damaged (so some of it still imports).
    let keys = escrowed_keys(&c);
    let files = |id: &String| seedship_e2e::ntfs::read_disk(&by_id[id], &keys).unwrap().manifest.unwrap().blobs;
    let mut ids: Vec<String> = by_id.keys().cloned().collect();
    ids.sort_by_key(|id| (files(id).len(), id.clone()));
    assert!(files(&ids[3]).len() >= 2, "a drive with two files or more");
    // Drive 2's manifest is changed after it was written (its hash is in the job already).
    // (Through the unlocked volume: the change is encrypted like the rest.)
    let opened = seedship_e2e::ntfs::open(&by_id[&ids[1]], &keys, true)?;
    let raw = seedship_e2e::ntfs::cat(opened.volume(), "\\DriveManifest.xml")?;
    let changed = String::from_utf8(raw)?.replace("<ClientCreator>seedship", "<ClientCreator>someone");
    seedship_e2e::ntfs::write(opened.volume(), &[("DriveManifest.xml", changed.as_bytes())])?;
    drop(opened);
    // Drive 4 is damaged in transit: one bit of its largest file.
    let blobs4 = files(&ids[3]);
    let largest = blobs4.iter().max_by_key(|b| (b.length, b.blob_path.clone())).unwrap();
    let damaged = largest.blob_path.split_once('/').unwrap().1.to_string();
    let needle = seedship_e2e::ntfs::read_disk(&by_id[&ids[3]], &keys)?.files[&largest.file_path][1000..1064].to_vec();
    assert!(seedship_e2e::ntfs::flip_bit_in(&by_id[&ids[3]], &needle, &keys)?);
    let o = c.run(
        "ship",
        &mut c.seedctl(
            &ops,
            &[
                "ship",
                "--job",
                "job-bad",
                "--carrier",
                "FedEx",
                "--tracking",
                "123456789012",
                "--drives",
                "4",
                "--date",
                "2026-11-22",
            ],
        ),
    )?;
    assert!(o.status.success(), "{}", text(&o));
    // Disk 3 never arrives: it was packed in place of disk 1, which stayed behind (the
    // datacenter's key for disk 1 does not open disk 3's BitLocker volume).
    let mut arrived = by_id.clone();
    arrived.insert(ids[0].clone(), by_id[&ids[2]].clone());
    arrived.remove(&ids[2]);
    emu.dc("job-bad", "arrive", json!({ "images": arrived })).await?;
    let j = emu.dc("job-bad", "copy", json!({})).await?;
    assert_eq!(j["properties"]["status"], "CompletedWithErrors", "{j}");

    let det = wait_seed_state(&c, &ops, "job-bad", "imported", T).await?;
    let seed = det.seed.unwrap();
    let (why, container) = (seed.state_reason, seed.container);
    assert!(why.contains(&format!("disk {} OtherUserError", ids[0])), "{why}");
    assert!(why.contains("BitLockerKeyInvalid: the job's BitLocker key does not unlock the volume"), "{why}");
    assert!(why.contains(&format!("disk {} MetadataFilesModifiedOrRemoved", ids[1])), "{why}");
    assert!(why.contains("ManifestCorrupted"), "{why}");
    assert!(why.contains(&format!("disk {} DriveNotReceived", ids[2])), "{why}");
    assert!(why.contains(&format!("disk {} CompletedWithErrors", ids[3])), "{why}");
    let j = job_view(&c, &ops, "job-bad").await?.job.unwrap();
    let state_of = |id: &str| j.drives.iter().find(|d| d.drive_id == id).unwrap().clone();
    assert_eq!(state_of(&ids[0]).state, "OtherUserError");
    assert_eq!(state_of(&ids[2]).state, "DriveNotReceived");
    // The copy log is a blob in databoxcopylog, named as Azure names it, and it says why.
    let log_uri = state_of(&ids[0]).error_log_uri;
    let name = log_uri.rsplit('/').next().unwrap().to_string();
    assert!(
        log_uri.contains("/databoxcopylog/") && name.starts_with(&format!("job-bad_{}_CopyLog_", ids[0])),
        "{log_uri}"
    );
    let blobs = emu.azurite.as_ref().unwrap().blobs()?;
    let log = String::from_utf8(blobs.download("databoxcopylog", &name).await?)?;
    assert!(log.contains("BitLockerKeyInvalid") && log.contains("<CopyLog Summary"), "{log}");
    // The damaged file is the errored entity of its disk (read from the copy log by the
    // coordinator), and it is not in the storage account; the rest of that disk was imported.
    let errors = state_of(&ids[3]).copy_errors;
    assert!(
        errors
            .iter()
            .any(|e| e.path == format!("{container}/{damaged}") && e.category == "UploadErrorDataValidationError"),
        "{errors:?}"
    );
    assert!(state_of(&ids[3]).bytes_succeeded > 0, "the undamaged files were imported");
    let listed = blobs.list(&container).await?;
    assert!(!listed.iter().any(|b| b.name == damaged), "{damaged} must not be in Azurite: {listed:?}");
    // Operators see the reasons in `seedctl job`.
    let o = c.run("job", &mut c.seedctl(&ops, &["job", "job-bad"]))?;
    let t = text(&o);
    assert!(t.contains("ManifestCorrupted") && t.contains("DriveNotReceived"), "{t}");
    assert!(t.contains("Not imported (from the copy logs)") && t.contains(&damaged), "{t}");
    let report = emu.check_record()?;
    assert!(report.contains("; 0 problems"), "{report}");
    c.finish()
}

fn ship(c: &mut Cluster, ops: &Identity, job: &str, tracking: &str) -> anyhow::Result<()> {
    let o = c.run(
        "ship",
        &mut c.seedctl(
            ops,
            &[
                "ship",
                "--job",
                job,
                "--carrier",
                "FedEx",
                "--tracking",
                tracking,
                "--drives",
                "1",
                "--date",
                "2026-11-22",
            ],
        ),
    )?;
    anyhow::ensure!(o.status.success(), "{}", text(&o));
    Ok(())
}

/// The datacenter's copy stops for the customer (`WaitingForCustomerAction`): the seed and
/// `seedctl job` say so and what Azure offers; `seedctl mitigate` answers it (a bad resolution
/// is refused, naming it), the answer is in the history, and the copy goes on to the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_waiting_for_the_customer_is_answered_with_seedctl_mitigate() -> anyhow::Result<()> {
    let (mut c, emu) = cluster_with(true, "Error")?;
    let ops = c.issue("operator", "alice")?;
    let (_, images) = prepare(&mut c, &ops, "job-wait", 2, 1).await?;
    wait_seed_state(&c, &ops, "job-wait", "import_job_created", T).await?;
    ship(&mut c, &ops, "job-wait", "123456789012")?;
    emu.dc("job-wait", "arrive", json!({ "disks": images })).await?;
    wait_seed_state(&c, &ops, "job-wait", "at_datacenter", T).await?;
    // Answering when nothing waits is refused by Azure, and said.
    let o =
        c.run("mitigate-early", &mut c.seedctl(&ops, &["mitigate", "--job", "job-wait", "--resolution", "Resume"]))?;
    assert!(!o.status.success() && text(&o).contains("NoActionRequired"), "{}", text(&o));
    emu.dc("job-wait", "wait", json!({})).await?;
    let e = wait_event(&c, &ops, "job-wait", "Azure waits for a customer action in stage DataCopy", T).await?;
    assert!(e.reason.contains("SsemUserCopyErrorWaitingForAction") && e.reason.contains("Resume"), "{}", e.reason);
    let o = c.run("job", &mut c.seedctl(&ops, &["job", "job-wait"]))?;
    let t = text(&o);
    assert!(t.contains("DataCopy WaitingForCustomerAction") && t.contains("seedctl mitigate --job job-wait"), "{t}");
    let o = c.run("mitigate-bad", &mut c.seedctl(&ops, &["mitigate", "--job", "job-wait", "--resolution", "Pray"]))?;
    assert!(!o.status.success() && text(&o).contains("resolution") && text(&o).contains("Pray"), "{}", text(&o));
    let o = c.run("mitigate", &mut c.seedctl(&ops, &["mitigate", "--job", "job-wait", "--resolution", "Resume"]))?;
    assert!(o.status.success() && text(&o).contains("CustomerActionPerformed"), "{}", text(&o));
    let e = wait_event(&c, &ops, "job-wait", "answered Azure's wait with Resume", T).await?;
    assert!(e.actor.contains("/operator/alice"), "{}", e.actor);
    emu.dc("job-wait", "copy", json!({})).await?;
    wait_seed_state(&c, &ops, "job-wait", "imported", T).await?;
    let report = emu.check_record()?;
    assert!(report.contains("; 0 problems") && report.contains("Mitigate"), "{report}");
    c.finish()
}

/// A coordinator killed with -9 while it follows the PUT's long-running operation finds the job
/// when it starts again and adopts it: exactly one job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_killed_during_the_puts_long_running_operation_ends_with_exactly_one_job() -> anyhow::Result<()> {
    // Each operation answers "running" 6 times, 2 s apart (Retry-After): about 12 s.
    let (mut c, emu) = cluster_args(false, "Error", &["--lro-polls", "6", "--retry-after", "2"])?;
    let ops = c.issue("operator", "alice")?;
    prepare(&mut c, &ops, "job-lro", 2, 1).await?;
    // The PUT has landed (the job exists) and the coordinator polls its monitor.
    let t0 = std::time::Instant::now();
    let polled = || {
        std::fs::read_to_string(&emu.record).unwrap_or_default().lines().any(|l| {
            serde_json::from_str::<serde_json::Value>(l).is_ok_and(|v| {
                v["method"] == "GET" && v["url"].as_str().is_some_and(|u| u.contains("/operationResults/"))
            })
        })
    };
    while !polled() {
        anyhow::ensure!(t0.elapsed() < T, "the coordinator never polled the PUT's operation");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(emu.job_count().await?, 1);
    let d = client::operator(c.connect(&ops).await?)
        .get_seed(pb::GetSeedRequest { seed: "job-lro".into() })
        .await?
        .into_inner();
    assert_eq!(d.seed.unwrap().state, pb::SeedState::DisksPrepared as i32, "still following the operation");
    c.kill9_coordinator()?;
    c.start_coordinator()?;
    let det = wait_seed_state(&c, &ops, "job-lro", "import_job_created", T).await?;
    assert!(det.seed.unwrap().state_reason.contains("adopted"), "found after the restart, not created again");
    assert_eq!(emu.job_count().await?, 1, "exactly one job");
    let report = emu.check_record()?;
    assert!(report.contains("; 0 problems") && report.contains("(operation monitor)"), "{report}");
    c.finish()
}

/// `seedctl cancel` before shipping cancels the seed, its disk-prep work and its Azure job
/// (cancelled with the reason, then deleted); after shipping it is refused and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seed_is_cancelled_with_its_azure_job_before_shipping_and_not_after() -> anyhow::Result<()> {
    let (mut c, emu) = cluster()?;
    let ops = c.issue("operator", "alice")?;
    prepare(&mut c, &ops, "job-c1", 2, 1).await?;
    prepare(&mut c, &ops, "job-c2", 2, 1).await?;
    wait_seed_state(&c, &ops, "job-c1", "import_job_created", T).await?;
    wait_seed_state(&c, &ops, "job-c2", "import_job_created", T).await?;
    let o = c.run("cancel", &mut c.seedctl(&ops, &["cancel", "job-c1", "--reason", "ordered twice"]))?;
    assert!(o.status.success() && text(&o).contains("cancelled"), "{}", text(&o));
    let det = wait_seed_state(&c, &ops, "job-c1", "cancelled", T).await?;
    assert!(det.seed.unwrap().state_reason.contains("ordered twice"));
    assert!(emu.job("job-c1").await?.is_none(), "the Azure job was cancelled and deleted");
    // Shipped: refused, by the coordinator and by Azure alike; nothing changes.
    ship(&mut c, &ops, "job-c2", "223456789012")?;
    wait_seed_state(&c, &ops, "job-c2", "shipped", T).await?;
    let o = c.run("cancel-late", &mut c.seedctl(&ops, &["cancel", "job-c2", "--reason", "too late"]))?;
    assert!(!o.status.success() && text(&o).contains("until its disks are shipped"), "{}", text(&o));
    assert_eq!(emu.job("job-c2").await?.unwrap().properties.unwrap().status.as_deref(), Some("ShippedToAzureDC"));
    // No reason: refused, naming the field.
    let o = c.run("cancel-bare", &mut c.seedctl(&ops, &["cancel", "job-c2", "--reason", ""]))?;
    assert!(!o.status.success() && text(&o).contains("reason"), "{}", text(&o));
    let report = emu.check_record()?;
    assert!(
        report.contains("; 0 problems") && report.contains("Jobs_Cancel 1") && report.contains("Jobs_Delete"),
        "{report}"
    );
    c.finish()
}

/// The return address changes in the settings while a job waits for its disks: the coordinator
/// sends the new details with a PATCH carrying the ETag it read (If-Match), once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_return_address_reaches_the_open_job_with_if_match() -> anyhow::Result<()> {
    let (mut c, emu) = cluster()?;
    let ops = c.issue("operator", "alice")?;
    prepare(&mut c, &ops, "job-addr", 2, 1).await?;
    wait_seed_state(&c, &ops, "job-addr", "import_job_created", T).await?;
    let cfg = std::fs::read_to_string(&c.config)?;
    assert!(cfg.contains("city = \"Utrecht\""));
    std::fs::write(&c.config, cfg.replace("city = \"Utrecht\"", "city = \"Amersfoort\""))?;
    c.kill9_coordinator()?;
    c.start_coordinator()?;
    let e = wait_event(&c, &ops, "job-addr", "updated in Azure to the [azure.return_address]", T).await?;
    assert_eq!(e.actor, "coordinator/azure");
    let p = emu.job("job-addr").await?.unwrap().properties.unwrap();
    let Some(model::JobDetails::DataBoxCustomerDisk(d)) = p.details else { panic!() };
    assert_eq!(d.shipping_address.unwrap().city.as_deref(), Some("Amersfoort"));
    // One PATCH, with the ETag of the GET before it; no more once the job matches.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let patches: Vec<serde_json::Value> = std::fs::read_to_string(&emu.record)?
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["method"] == "PATCH")
        .collect();
    assert_eq!(patches.len(), 1, "{patches:?}");
    assert!(patches[0]["if_match"].as_str().is_some_and(|e| e.starts_with('"')), "{:?}", patches[0]);
    let report = emu.check_record()?;
    assert!(report.contains("; 0 problems") && report.contains("Jobs_Update 1"), "{report}");
    c.finish()
}

/// The PUT's operation never ends within the worker's patience (`operation_timeout`): the seed
/// says Azure is unavailable, the worker goes on, and the next round finds the job and adopts
/// it: one job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_whose_operation_outlasts_the_worker_is_adopted_at_the_next_round() -> anyhow::Result<()> {
    let base = seedship_e2e::azure::kept_dir("seedship-azure-")?;
    let emu = Emulator::start_with(&base, false, &["--lro-polls", "100000", "--retry-after", "1"])?;
    let mut c = emu.cluster("operation_timeout = \"3s\"")?;
    let ops = c.issue("operator", "alice")?;
    prepare(&mut c, &ops, "job-slow", 2, 1).await?;
    wait_event(&c, &ops, "job-slow", "still running after 3 s", T).await?;
    let det = wait_seed_state(&c, &ops, "job-slow", "import_job_created", T).await?;
    assert!(det.seed.unwrap().state_reason.contains("adopted"), "found, not created again");
    assert_eq!(emu.job_count().await?, 1, "one job");
    c.finish()
}

/// Azure's validateInputs refuses the job (the seed's storage account does not exist): the seed
/// fails with each refused check named, and no job is created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_refused_by_validate_inputs_names_each_check_and_is_not_created() -> anyhow::Result<()> {
    let base = seedship_e2e::azure::kept_dir("seedship-azure-")?;
    // The emulated subscription has one storage account, and it is not the seed's.
    let keys = base.join("other-keys.txt");
    std::fs::write(&keys, "otheracct=b3RoZXI=\n")?;
    let emu = Emulator::start_with(
        &base,
        false,
        &["--storage-url", "http://127.0.0.1:9", "--storage-keys", keys.to_str().unwrap()],
    )?;
    let mut c = Cluster::start_with(Options { extra_toml: emu.coordinator_toml("1s"), ..Default::default() })?;
    let ops = c.issue("operator", "alice")?;
    prepare(&mut c, &ops, "job-val", 2, 1).await?;
    let det = wait_seed_state(&c, &ops, "job-val", "failed", T).await?;
    let why = det.seed.unwrap().state_reason;
    assert!(
        why.contains("Azure's validateInputs refused the job: ValidateDataTransferDetails: StorageAccountNotFound")
            && why.contains("'seedacct'"),
        "{why}"
    );
    assert_eq!(emu.job_count().await?, 0, "nothing was created");
    let o = c.run("jobs", &mut c.seedctl(&ops, &["jobs"]))?;
    assert!(text(&o).contains("job-val") && text(&o).contains("refused"), "{}", text(&o));
    // Retrying a failed step: the operator fixed something and asks again; the job is asked
    // for again (here Azure refuses again: the account still is not there).
    let o = c.run("retry", &mut c.seedctl(&ops, &["retry", "job-val", "--reason", "account created"]))?;
    assert!(o.status.success(), "{}", text(&o));
    let det = seedship_e2e::get_seed(&c, &ops, "job-val").await?;
    assert!(
        det.history.iter().any(|h| h.event == "retry_import_job" && h.reason.contains("account created")),
        "{det:?}"
    );
    seedship_e2e::wait_for_async("Azure refusing again", T, || async {
        let d = seedship_e2e::get_seed(&c, &ops, "job-val").await.ok()?;
        (d.history.iter().filter(|h| h.event == "fail").count() == 2).then_some(())
    })
    .await?;
    let report = emu.check_record()?;
    assert!(report.contains("; 0 problems") && report.contains("Service_ValidateInputs 2"), "{report}");
    // A seed that did not fail on a refused job has nothing to retry.
    let o = c.run("retry-nothing", &mut c.seedctl(&ops, &["retry", "no-such-job", "--reason", "x"]))?;
    assert!(!o.status.success());
    c.finish()
}

/// Azure not answering does not hold up a copy station: its finished work is recorded at once
/// and it prints the drives and their labels, with the address "pending" until the
/// coordinator's Azure worker reads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_station_finishes_while_azure_hangs() -> anyhow::Result<()> {
    let (mut c, emu) = cluster()?;
    let ops = c.issue("operator", "alice")?;
    // Every ARM POST (regionConfiguration: the address) hangs for 30 s, from before the seed
    // exists (no address is cached).
    emu.faults(json!({ "status": 503, "count": 100000, "method": "POST", "hang_secs": 30 })).await?;
    let t = std::time::Instant::now();
    let (out, _) = prepare(&mut c, &ops, "job-hang", 4, 1).await?;
    let took = t.elapsed();
    assert!(out.contains("Ship to:") && out.contains("address pending"), "{out}");
    assert!(out.contains("DRIVE ID") || out.contains("drive"), "{out}");
    // The station did not wait on Azure (before: 8 tries of a 10 s request timeout, then
    // "lease lost").
    assert!(took < Duration::from_secs(25), "the station took {took:?}");
    let d = client::operator(c.connect(&ops).await?)
        .get_seed(pb::GetSeedRequest { seed: "job-hang".into() })
        .await?
        .into_inner();
    assert_eq!(d.seed.unwrap().state, pb::SeedState::DisksPrepared as i32);
    emu.faults(json!({ "status": 503, "count": 0 })).await?;
    c.allow_error("address");
    c.finish()
}

/// Data Box Disk end to end: the coordinator's policy puts the seed on Microsoft's disks; the
/// order is placed at registration (DataBoxDisk, one 8 TB disk, to the return address); the
/// passkey is refused before delivery; once delivered, the disks' keys are escrowed from
/// `listCredentials` and the copy station writes the delivered disk (only it) with Azure's
/// key; the return shipment is recorded locally; the datacenter copies it into Azurite, and
/// every blob matches the seed manifest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn microsofts_disks_are_ordered_delivered_unlocked_written_in_their_blockblob_folders_and_imported()
-> anyhow::Result<()> {
    let base = seedship_e2e::azure::kept_dir("seedship-azure-")?;
    let emu = Emulator::start_with(&base, true, &[])?;
    let mut c = emu.cluster("disk_kind = \"databox_disk\"")?;
    let ops = c.issue("operator", "alice")?;
    let (cfg, dir) = station(&c, "st-job-dbd", "")?;
    let staging = stage(&mut c, &ops, "job-dbd", 6, 7, "st-job-dbd").await?;

    // Ordered at registration: a DataBoxDisk job of one 8 TB disk, delivered to the return address.
    let det = wait_seed_state(&c, &ops, "job-dbd", "disks_ordered", T).await?;
    let s = det.seed.unwrap();
    assert_eq!(s.disk_kind, pb::DiskKind::DataboxDisk as i32);
    assert!(s.state_reason.contains("Data Box Disk order job-dbd created"), "{}", s.state_reason);
    let job = emu.job("job-dbd").await?.expect("the order is in Azure");
    assert_eq!(job.sku.as_ref().unwrap().name.as_deref(), Some("DataBoxDisk"));
    let Some(model::JobDetails::DataBoxDisk(d)) = job.properties.unwrap().details else { panic!("not Data Box Disk") };
    assert_eq!(d.preferred_disks, Some([("8".to_string(), 1)].into()));
    assert_eq!(d.shipping_address.unwrap().city.as_deref(), Some("Utrecht"));
    let o = c.run("seedctl-seed", &mut c.seedctl(&ops, &["seed", "job-dbd"]))?;
    assert!(text(&o).contains("databox_disk (Microsoft's Data Box Disks)"), "{}", text(&o));

    // Before delivery: no passkey (Azure gives it then), and the kind can no longer change.
    let o = c.run("seedctl-passkey-early", &mut c.seedctl(&ops, &["passkey", "job-dbd"]))?;
    assert!(!o.status.success() && text(&o).contains("once the disks are delivered"), "{}", text(&o));
    let o = c.run(
        "seedctl-kind",
        &mut c.seedctl(&ops, &["kind", "job-dbd", "customer_disk", "--reason", "changed my mind"]),
    )?;
    assert!(!o.status.success() && text(&o).contains("already ordered"), "{}", text(&o));

    // Microsoft prepares, dispatches and delivers the disk to the copy station (an NTFS
    // volume with its BlockBlob, PageBlob and AzureFile folders); a disk of our own beside
    // it is not touched.
    let serials = emu.dc("job-dbd", "prepare", json!({})).await?;
    emu.dc("job-dbd", "dispatch", json!({ "carrier": "UPS", "tracking": "1Z999AA10123456784" })).await?;
    let size = disk_size(&staging, 1);
    let ours = image(&dir, "spare.img", size);
    let dock = c.path("delivered");
    std::fs::create_dir_all(&dock)?;
    let delivered = emu.dc("job-dbd", "deliver", json!({ "dir": dock, "sizeBytes": size })).await?;
    let disks: std::collections::BTreeMap<String, std::path::PathBuf> =
        serde_json::from_value(delivered["disks"].clone())?;
    assert_eq!(disks.len(), 1, "{serials} {delivered}");
    let (serial, disk) = disks.into_iter().next().unwrap();
    let det = wait_seed_state(&c, &ops, "job-dbd", "queued_for_disk_prep", T).await?;
    assert!(det.seed.unwrap().state_reason.contains(&serial));
    let o = c.run("seedctl-passkey", &mut c.seedctl(&ops, &["passkey", "job-dbd"]))?;
    assert!(o.status.success() && text(&o).contains("#pk"), "{}", text(&o));
    // The disk's key is Azure's, escrowed, and never in the coordinator's log.
    let keys = escrowed_keys(&c);
    let creds = emu.arm()?.list_credentials(SUB, RG, "job-dbd").await?;
    let Some(model::JobSecrets::DataBoxDisk(secrets)) = creds.value.unwrap().remove(0).job_secrets else {
        panic!("no Data Box Disk secrets")
    };
    let azure_key = secrets.disk_secrets.unwrap()[0].bit_locker_key.clone().unwrap();
    assert_eq!(keys[&serial].reveal(), azure_key.expose());
    let passkey = secrets.pass_key.unwrap();
    let logs = c.coordinator_logs();
    assert!(!logs.contains(azure_key.expose()) && !logs.contains(passkey.expose()), "a secret in the log");

    // The disk arrives locked (BitLocker); the operator unlocks it with the passkey as
    // Microsoft's Linux tool does (dislocker-fuse, then ntfs-3g) into the station's disk
    // folder. The station writes it, and only it, into BlockBlob\<container>\, unmounts it and
    // reads it back; the screen says how it goes back.
    let folders = seedship_e2e::ntfs::top_level(&disk, &keys)?;
    assert!(["BlockBlob", "PageBlob", "AzureFile"].iter().all(|f| folders.contains(&f.to_string())), "{folders:?}");
    use seedship_bitlocker::dislocker::{Secret, unlock};
    let unlocked = unlock(&disk, &c.path("operator-unlock"), Secret::User(passkey.expose()), false)?;
    seedship_e2e::ntfs::mount(&unlocked.file(), &dir.join(&serial))?;
    let o = c.run("copy-job-dbd", &mut copy_agent(&cfg))?;
    let _ = std::process::Command::new("umount").arg(dir.join(&serial)).output();
    unlocked.lock()?;
    assert!(o.status.success(), "copy agent: {}", text(&o));
    assert!(text(&o).contains("Microsoft's return label"), "{}", text(&o));
    let container = client::operator(c.connect(&ops).await?)
        .get_seed(pb::GetSeedRequest { seed: "job-dbd".into() })
        .await?
        .into_inner()
        .seed
        .unwrap()
        .container;
    let views = seedship_e2e::ntfs::check_set(std::slice::from_ref(&disk), &staging, &container, &keys)?;
    assert_eq!(
        (views[0].id["drive_id"].as_str(), views[0].id["layout"].as_str()),
        (Some(serial.as_str()), Some("databox_disk"))
    );
    assert!(views[0].manifest.is_none(), "a Data Box Disk has no drive manifest");
    assert!(std::fs::read(&ours)?.iter().all(|b| *b == 0), "our own disk is left blank");
    assert!(!seedship_e2e::ntfs::is_mounted(&dir.join(&serial)), "the station unmounted the disk");
    let det = wait_seed_state(&c, &ops, "job-dbd", "import_job_created", T).await?;
    assert!(det.seed.unwrap().state_reason.contains("Microsoft's box"));

    // The return shipment: recorded here (Azure has no markDevicesShipped for Microsoft's
    // disks); the carrier's pick-up, the datacenter's copy into Azurite, Completed.
    ship(&mut c, &ops, "job-dbd", "123456789013")?;
    wait_seed_state(&c, &ops, "job-dbd", "shipped", T).await?;
    emu.dc("job-dbd", "pickup", json!({ "carrier": "FedEx", "tracking": "123456789013" })).await?;
    emu.dc("job-dbd", "arrive", json!({ "disks": [disk] })).await?;
    wait_seed_state(&c, &ops, "job-dbd", "at_datacenter", T).await?;
    let j = emu.dc("job-dbd", "copy", json!({})).await?;
    assert_eq!(j["properties"]["status"], "Completed", "{j}");
    let det = wait_seed_state(&c, &ops, "job-dbd", "imported", T).await?;
    let seed = det.seed.unwrap();
    assert!(seed.state_reason.contains("every disk was copied"), "{}", seed.state_reason);
    let blobs = emu.azurite.as_ref().unwrap().blobs()?;
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(staging.join("manifest.json"))?)?;
    let listed = blobs.list(&seed.container).await?;
    let files = manifest["files"].as_array().unwrap();
    assert_eq!(listed.len(), files.len() + 1, "every file and manifest.json: {listed:?}");
    for f in files {
        let path = f["path"].as_str().unwrap();
        let want = hex::decode(f["md5"].as_str().unwrap())?;
        let b = listed.iter().find(|b| b.name == path).unwrap_or_else(|| panic!("{path} is not in Azurite"));
        assert_eq!((b.size, b.md5.as_deref()), (f["size"].as_u64().unwrap(), Some(&want[..])), "{path}");
        assert_eq!(md5_of(&blobs.download(&seed.container, path).await?), want, "{path}'s bytes");
    }
    let v = job_view(&c, &ops, "job-dbd").await?;
    let events: Vec<&str> = v.history.iter().map(|e| e.event.as_str()).collect();
    for e in ["disks_ordered", "disks_delivered", "passkey_released", "import_job_created", "shipped", "received"] {
        assert!(events.contains(&e), "{e} missing from {events:?}");
    }
    let report = emu.check_record()?;
    assert!(report.contains("; 0 problems") && report.contains("Jobs_ListCredentials"), "{report}");
    assert!(!report.contains("Jobs_MarkDevicesShipped"), "no markDevicesShipped for Microsoft's disks: {report}");
    c.finish()
}

/// A copy station's lease for a customer-disk seed carries the SAS its drive manifest needs
/// (`<ContainerSas>`): for that seed's import container only, create and write only. With it a
/// station can add a blob there, but cannot read or list, nor write into another container.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_carries_a_create_and_write_only_sas_for_its_own_import_container() -> anyhow::Result<()> {
    let (mut c, emu) = cluster_with(true, "Error")?;
    let ops = c.issue("operator", "alice")?;
    stage(&mut c, &ops, "job-sas", 1, 3, "st-job-sas").await?;
    let st = c.issue("copy", "st-job-sas")?;
    let conn = c.connect(&st).await?;
    seedship_proto::agent::register(&conn, None, "t").await?;
    let lease = client::diskprep(conn)
        .claim_work(pb::ClaimWorkRequest { request_id: seedship_e2e::rid() })
        .await?
        .into_inner()
        .lease
        .expect("the seed is queued for this station");
    let sas = lease.container_sas.clone();
    assert!(sas.contains("sr=c") && sas.contains("sp=cw") && sas.contains("se="), "{sas}");
    assert!(!c.coordinator_logs().contains(&sas), "the SAS is never logged");
    let azurite = emu.azurite.as_ref().unwrap();
    let with_sas = seedship_azure::blob::BlobStore::new(
        &format!("{}/seedacct/", azurite.url),
        seedship_azure::blob::BlobAuth::Sas(sas.trim_start_matches('?').to_string()),
    )?;
    let blobs = azurite.blobs()?;
    blobs.ensure_container(&lease.container).await?;
    blobs.ensure_container("another").await?;
    with_sas.put_small(&lease.container, "written-with-the-sas", b"x".to_vec()).await?;
    assert_eq!(blobs.download(&lease.container, "written-with-the-sas").await?, b"x");
    assert!(with_sas.download(&lease.container, "written-with-the-sas").await.is_err(), "no read");
    assert!(with_sas.list(&lease.container).await.is_err(), "no list");
    assert!(with_sas.put_small("another", "x", b"x".to_vec()).await.is_err(), "no other container");
    c.finish()
}
