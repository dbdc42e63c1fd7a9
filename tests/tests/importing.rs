//! The Azure side end to end: real coordinator and copy agent, the emulated Resource Manager
//! and datacenter over HTTPS. The import job is created from the prepared drives, shipping is
//! recorded, and the coordinator follows the job to the end; deadlines, races and crashes.

use std::time::Duration;

use seedship_e2e::azure::{Emulator, RG, SUB, wait_event, wait_seed_state};
use seedship_e2e::prep::{copy_agent, disk_size, escrowed_keys, image, stage, staging_bytes, station, text};
use seedship_e2e::{Cluster, Identity, Options, bin};
use seedship_proto::{client, pb};
use serde_json::json;

const T: Duration = Duration::from_secs(30);

/// A cluster whose coordinator talks to a fresh emulator (polling every second).
fn cluster() -> anyhow::Result<(Cluster, Emulator)> {
    let base = tempfile::Builder::new().prefix("seedship-azure-").tempdir()?.keep();
    let emu = Emulator::start(&base)?;
    let c = Cluster::start_with(Options {
        extra_toml: emu.coordinator_toml("1s"),
        offset_clock: true,
        ..Default::default()
    })?;
    Ok((c, emu))
}

/// Stages `job` (`mib` of corpus), prepares it on `disks` image(s) with a copy station, and
/// returns the copy agent's output and the images.
async fn prepare(
    c: &mut Cluster,
    ops: &Identity,
    job: &str,
    mib: u32,
    disks: u64,
) -> anyhow::Result<(String, Vec<std::path::PathBuf>)> {
    let st_name = format!("st-{job}");
    let staging = stage(c, ops, job, mib, mib, &st_name).await?;
    let (cfg, dir) = station(c, &st_name, "")?;
    let size = disk_size(staging_bytes(&staging), disks);
    let images: Vec<_> = (1..=disks).map(|i| image(&dir, &format!("disk{i}.img"), size)).collect();
    let o = c.run(&format!("copy-{job}"), &mut copy_agent(&cfg))?;
    anyhow::ensure!(o.status.success(), "copy agent: {}", text(&o));
    Ok((String::from_utf8_lossy(&o.stdout).to_string(), images))
}

async fn job_view(c: &Cluster, ops: &Identity, job: &str) -> anyhow::Result<pb::GetJobResponse> {
    Ok(client::operator(c.connect(ops).await?).get_job(pb::GetJobRequest { job: job.into() }).await?.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_job_is_created_from_the_prepared_drives_shipped_and_followed_to_completed() -> anyhow::Result<()> {
    let (mut c, emu) = cluster()?;
    let ops = c.issue("operator", "alice")?;
    let (screen, _images) = prepare(&mut c, &ops, "job-happy", 6, 2).await?;
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
    let p = job.properties.unwrap();
    assert_eq!(
        p.storage_account_id.as_deref(),
        Some(&*format!(
            "/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Storage/storageAccounts/seedacct"
        ))
    );
    assert_eq!(p.return_address.unwrap().city, "Utrecht");
    assert_eq!(p.return_shipping.unwrap().carrier_name, "DHL");
    assert_eq!((p.diagnostics_path.as_deref(), p.log_level.as_deref()), (Some("waimportexport"), Some("Error")));
    let drives = p.drive_list.unwrap();
    assert_eq!(drives.len(), 2);
    let keys = escrowed_keys(&c);
    let azure_keys = emu.arm()?.bitlocker_keys(SUB, RG, "job-happy").await?.value.unwrap();
    for k in &azure_keys {
        let id = k.drive_id.clone().unwrap();
        assert_eq!(k.bit_locker_key.as_ref().unwrap().0, keys[&id].reveal(), "drive {id}'s key is the escrowed one");
    }
    for d in &drives {
        assert_eq!(d.manifest_file.as_deref(), Some("\\seedship\\DriveManifest.json"));
        assert_eq!(d.manifest_hash.as_ref().unwrap().len(), 32);
        assert!(d.drive_header_hash.is_some());
    }
    let v = job_view(&c, &ops, "job-happy").await?;
    let j = v.job.unwrap();
    assert_eq!(
        (j.phase.as_str(), j.azure_state.as_str(), j.deadline.as_str()),
        ("created", "Creating", "tracking_number")
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
    assert_eq!(emu.job("job-happy").await?.unwrap().properties.unwrap().state.as_deref(), Some("Creating"));

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
    assert_eq!(p.state.as_deref(), Some("Shipping"));
    let dp = p.delivery_package.unwrap();
    assert_eq!((dp.carrier_name.as_str(), dp.tracking_number.as_str(), dp.drive_count), ("DHL", "1234567890", Some(2)));
    wait_seed_state(&c, &ops, "job-happy", "shipped", T).await?;

    // The datacenter receives and copies; the coordinator mirrors every step.
    let ids: Vec<String> = drives.iter().map(|d| d.drive_id.clone().unwrap()).collect();
    emu.dc("job-happy", "arrive", json!({ "drives": ids })).await?;
    wait_seed_state(&c, &ops, "job-happy", "at_datacenter", T).await?;
    emu.dc("job-happy", "start-copy", json!({ "drive": ids[0] })).await?;
    wait_seed_state(&c, &ops, "job-happy", "importing", T).await?;
    // The source agent says what MARS says: waiting for the import job, with its state.
    let src_cfg = c.path("src-job-happy.toml");
    let o =
        c.run("status", std::process::Command::new(bin("source-agent")).arg("--config").arg(&src_cfg).arg("status"))?;
    assert!(
        text(&o).contains("waiting for the import job to complete (Azure job state: Transferring)"),
        "{}",
        text(&o)
    );
    emu.dc("job-happy", "finish-copy", json!({ "drive": ids[0], "bytes": 1000 })).await?;
    emu.dc("job-happy", "start-copy", json!({ "drive": ids[1] })).await?;
    emu.dc("job-happy", "finish-copy", json!({ "drive": ids[1], "bytes": 2000 })).await?;
    let det = wait_seed_state(&c, &ops, "job-happy", "imported", T).await?;
    assert!(det.seed.unwrap().state_reason.contains("every drive completed"));
    emu.dc("job-happy", "ship-back", json!({ "carrier": "DHL", "tracking": "9876543210", "date": "2026-12-01" }))
        .await?;
    wait_event(&c, &ops, "job-happy", "Azure job state Packaging -> Completed", T).await?;
    let v = job_view(&c, &ops, "job-happy").await?;
    let j = v.job.unwrap();
    assert_eq!(j.azure_state, "Completed");
    assert!(j.drives.iter().all(|d| d.state == "ShippedBack"), "{:?}", j.drives);
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
    assert!(t.contains("tracking 1234567890") && t.contains("ShippedBack"), "{t}");
    let o = c.run("seedctl-jobs", &mut c.seedctl(&ops, &["jobs"]))?;
    assert!(text(&o).contains("job-happy") && text(&o).contains("Completed"), "{}", text(&o));
    c.finish()
}
