//! What the emulated datacenter reads from an NTFS disk, as Azure reads it: customer disks
//! through their drive manifest (`<DriveManifest Version="2014-11-01">`), Data Box Disks
//! through their `BlockBlob\<container>\` folders. The images are real NTFS volumes (mkntfs,
//! written through an ntfs-3g mount); the datacenter reads them raw and copies into Azurite.

use std::collections::BTreeMap;
use std::path::PathBuf;

use md5::{Digest, Md5};
use seedship_azure::databox::model;
use seedship_bitlocker::volume::Method;
use seedship_disk::azure::manifest::{self, Access, DriveManifest, ManifestBlob};
use seedship_disk::key::RecoveryPassword;
use seedship_e2e::azure::{Emulator, RG, SUB, account_id};
use seedship_e2e::ntfs;
use serde_json::json;

const KEY: &str = "111111-222222-333333-444444-555555-666666-111111-222222";
const OTHER_KEY: &str = "222222-111111-444444-333333-666666-555555-222222-111111";

fn pattern(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// A customer disk's files under `\seedship\` of container `container`, and its manifest.
fn manifest_for(serial: &str, container: &str, files: &[(&str, &[u8])]) -> DriveManifest {
    DriveManifest {
        drive_id: serial.into(),
        access: Access::ContainerSas("?sv=2024-08-04&sr=c&sp=cw&sig=test".into()),
        client_creator: "seedship tests".into(),
        blobs: files
            .iter()
            .map(|(name, data)| {
                let mut b = manifest::Blocks::default();
                b.update(data);
                let (blocks, length) = b.finish();
                ManifestBlob {
                    blob_path: format!("{container}/{name}"),
                    file_path: format!("\\seedship\\{}", name.replace('/', "\\")),
                    length,
                    blocks,
                }
            })
            .collect(),
    }
}

/// A customer disk at `dir/<serial>.img`: NTFS holding `files` and `manifest` (as XML),
/// BitLocker-encrypted with `key` when given.
fn customer_disk(
    dir: &std::path::Path,
    serial: &str,
    files: &[(&str, &[u8])],
    xml: &str,
    key: Option<&str>,
) -> anyhow::Result<PathBuf> {
    let img = ntfs::format(&dir.join(format!("{serial}.img")), 32)?;
    let mut all: Vec<(String, &[u8])> = files.iter().map(|(n, d)| (format!("seedship/{n}"), *d)).collect();
    all.push(("DriveManifest.xml".into(), xml.as_bytes()));
    let refs: Vec<(&str, &[u8])> = all.iter().map(|(n, d)| (n.as_str(), *d)).collect();
    ntfs::write(&img, &refs)?;
    if let Some(key) = key {
        ntfs::encrypt(&img, serial, &RecoveryPassword::parse(key)?)?;
    }
    Ok(img)
}

fn copy_statuses(job: &model::JobResource) -> BTreeMap<String, String> {
    let Some(model::JobDetails::DataBoxCustomerDisk(d)) = job.properties.as_ref().and_then(|p| p.details.clone())
    else {
        panic!("not a customer-disk job")
    };
    d.copy_progress
        .unwrap_or_default()
        .into_iter()
        .map(|c| (c.serial_number.unwrap_or_default(), c.copy_status.unwrap_or_default()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customer_disks_are_read_through_their_drive_manifest_and_each_mismatch_gets_azures_code() -> anyhow::Result<()>
{
    let base = tempfile::Builder::new().prefix("seedship-media-").tempdir()?;
    let emu = Emulator::start_with(base.path(), true, &[])?;
    let dir = base.path().join("disks");
    std::fs::create_dir_all(&dir)?;
    let big = pattern(5 << 20, 1);
    let small = pattern(100_000, 2);
    let files: Vec<(&str, &[u8])> = vec![("data/00/big.bin", &big), ("small.bin", &small)];

    // Good; a manifest naming another drive; a manifest changed after its hash was taken; a
    // disk with nothing on it; a good disk with one bit flipped in a file afterwards; a good
    // NTFS disk never encrypted; one encrypted with another key; one with a password
    // protector only; one that unlocks but holds no NTFS.
    let mut disks = BTreeMap::new();
    let mut hashes = BTreeMap::new();
    for serial in ["NTFS-A", "NTFS-B", "NTFS-C", "NTFS-E", "NTFS-F", "NTFS-G"] {
        let drive_id = if serial == "NTFS-B" { "NTFS-OTHER" } else { serial };
        let xml = manifest_for(drive_id, "import-media", &files).to_xml();
        hashes.insert(serial, manifest::manifest_hash(xml.as_bytes()));
        let written = if serial == "NTFS-C" { xml.replace("seedship tests", "seedship test!") } else { xml };
        let key = match serial {
            "NTFS-F" => None,
            "NTFS-G" => Some(OTHER_KEY),
            _ => Some(KEY),
        };
        disks.insert(serial, customer_disk(&dir, serial, &files, &written, key)?);
    }
    let blank = dir.join("NTFS-D.img");
    std::fs::File::create(&blank)?.set_len(8 << 20)?;
    let password_only = dir.join("NTFS-H.img");
    std::fs::File::create(&password_only)?.set_len(8 << 20)?;
    seedship_bitlocker::volume::create_empty_password_only(&password_only, "Pass#word1", Method::XtsAes256, "NTFS-H")?;
    let no_ntfs = dir.join("NTFS-I.img");
    std::fs::File::create(&no_ntfs)?.set_len(8 << 20)?;
    seedship_bitlocker::volume::create_empty(
        &no_ntfs,
        &RecoveryPassword::parse(KEY)?,
        None,
        Method::XtsAes256,
        "NTFS-I",
    )?;
    for (serial, img) in [("NTFS-D", blank), ("NTFS-H", password_only), ("NTFS-I", no_ntfs)] {
        disks.insert(serial, img);
        hashes.insert(serial, "0123456789ABCDEF0123456789ABCDEF".into());
    }
    let keys = ntfs::Keys::from([("NTFS-E".to_string(), RecoveryPassword::parse(KEY)?)]);
    assert!(ntfs::flip_bit_in(&disks["NTFS-E"], &small[50_000..50_064], &keys)?, "small.bin is on the disk");

    let collection: serde_json::Map<String, serde_json::Value> = hashes
        .iter()
        .map(|(s, h)| {
            (s.to_string(), json!({"manifestFile": "\\DriveManifest.xml", "manifestHash": h, "bitLockerKey": KEY}))
        })
        .collect();
    let job: model::JobResource = serde_json::from_value(json!({
        "location": "westeurope",
        "sku": {"name": "DataBoxCustomerDisk"},
        "properties": {"transferType": "ImportToAzure", "details": {
            "jobDetailsType": "DataBoxCustomerDisk",
            "contactDetails": {"contactName": "Ops", "phone": "+31 20 000 0000", "emailList": ["ops@example.com"]},
            "shippingAddress": {"streetAddress1": "1 Dock", "city": "Amsterdam", "country": "NL", "postalCode": "1000 AA"},
            "dataImportDetails": [{"accountDetails": {"dataAccountType": "StorageAccount", "storageAccountId": account_id()}, "logCollectionLevel": "Verbose"}],
            "importDiskDetailsCollection": collection,
            "returnToCustomerPackageDetails": {"carrierName": "DHL", "carrierAccountNumber": "987654"}
        }}
    }))?;
    let arm = emu.arm()?;
    arm.put_job(SUB, RG, "job-ntfs", &job).await?;
    arm.mark_devices_shipped(SUB, RG, "job-ntfs", "DHL", "1234567890").await?;
    let images: BTreeMap<&str, &PathBuf> = disks.iter().map(|(s, p)| (*s, p)).collect();
    emu.dc("job-ntfs", "arrive", json!({ "images": images })).await?;
    let j = emu.dc("job-ntfs", "copy", json!({})).await?;
    assert_eq!(j["properties"]["status"], "CompletedWithErrors", "{j}");

    let statuses = copy_statuses(&emu.job("job-ntfs").await?.unwrap());
    assert_eq!(
        statuses,
        BTreeMap::from([
            ("NTFS-A".to_string(), "Completed".to_string()),
            ("NTFS-B".to_string(), "OtherUserError".to_string()),
            ("NTFS-C".to_string(), "MetadataFilesModifiedOrRemoved".to_string()),
            ("NTFS-D".to_string(), "UnsupportedDrive".to_string()),
            ("NTFS-E".to_string(), "CompletedWithErrors".to_string()),
            ("NTFS-F".to_string(), "UnsupportedDrive".to_string()),
            ("NTFS-G".to_string(), "OtherUserError".to_string()),
            ("NTFS-H".to_string(), "OtherUserError".to_string()),
            ("NTFS-I".to_string(), "UnsupportedDrive".to_string()),
        ])
    );
    // Each disk's copy log says why, with the datacenter's code.
    let blobs = emu.azurite.as_ref().unwrap().blobs()?;
    let logs = blobs.list("databoxcopylog").await?;
    let log_of = |serial: &str| {
        let name = logs.iter().find(|b| b.name.contains(&format!("_{serial}_CopyLog_"))).map(|b| b.name.clone());
        name.unwrap_or_else(|| panic!("no copy log for {serial}: {logs:?}"))
    };
    for (serial, code) in [
        ("NTFS-B", "ManifestDriveIdMismatch"),
        ("NTFS-C", "ManifestCorrupted"),
        ("NTFS-D", "BitLockerVolumeNotFound"),
        ("NTFS-E", "Corrupted: the block at offset 0 does not match its MD5"),
        ("NTFS-F", "BitLockerVolumeNotFound"),
        ("NTFS-G", "BitLockerKeyInvalid"),
        ("NTFS-H", "BitLockerProtectorNotFound"),
        ("NTFS-I", "VolumeNotNtfs"),
    ] {
        let text = String::from_utf8(blobs.download("databoxcopylog", &log_of(serial)).await?)?;
        assert!(text.contains(code), "{serial}: {text}");
    }
    // The good disk's files are blobs with their MD5, byte for byte.
    let listed = blobs.list("import-media").await?;
    for (name, data) in &files {
        let b = listed.iter().find(|b| b.name == *name).unwrap_or_else(|| panic!("{name} missing: {listed:?}"));
        let md5 = Md5::digest(data).to_vec();
        assert_eq!((b.size, b.md5.as_deref()), (data.len() as u64, Some(&md5[..])), "{name}");
        assert_eq!(blobs.download("import-media", name).await?, *data, "{name}'s bytes");
    }
    let report = emu.check_record()?;
    assert!(report.contains("; 0 problems"), "{report}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_box_disk_is_read_through_its_blockblob_folders_and_names_azure_would_change_are_refused()
-> anyhow::Result<()> {
    let base = tempfile::Builder::new().prefix("seedship-media-").tempdir()?;
    let emu = Emulator::start_with(base.path(), true, &[])?;
    let job: model::JobResource = serde_json::from_value(json!({
        "location": "westeurope",
        "sku": {"name": "DataBoxDisk"},
        "properties": {"transferType": "ImportToAzure", "details": {
            "jobDetailsType": "DataBoxDisk",
            "contactDetails": {"contactName": "Ops", "phone": "+31 20 000 0000", "emailList": ["ops@example.com"]},
            "shippingAddress": {"streetAddress1": "1 Dock", "city": "Amsterdam", "country": "NL", "postalCode": "1000 AA"},
            "dataImportDetails": [{"accountDetails": {"dataAccountType": "StorageAccount", "storageAccountId": account_id()}}],
            "preferredDisks": {"8": 1}
        }}
    }))?;
    emu.arm()?.put_job(SUB, RG, "job-dbd-ntfs", &job).await?;
    emu.dc("job-dbd-ntfs", "prepare", json!({})).await?;
    emu.dc("job-dbd-ntfs", "dispatch", json!({"carrier": "UPS", "tracking": "1Z999AA10123456784"})).await?;
    let dir = base.path().join("delivered");
    std::fs::create_dir_all(&dir)?;
    let d = emu.dc("job-dbd-ntfs", "deliver", json!({"dir": dir, "sizeBytes": 32u64 << 20})).await?;
    let (serial, img): (String, PathBuf) =
        serde_json::from_value::<BTreeMap<String, PathBuf>>(d["disks"].clone())?.into_iter().next().unwrap();
    // It arrives as a BitLocker volume: its key (listCredentials) opens it, and no other.
    let creds = emu.arm()?.list_credentials(SUB, RG, "job-dbd-ntfs").await?;
    let Some(model::JobSecrets::DataBoxDisk(secrets)) = creds.value.unwrap().remove(0).job_secrets else {
        panic!("no Data Box Disk secrets")
    };
    let key = secrets.disk_secrets.unwrap()[0].bit_locker_key.clone().unwrap();
    let keys = ntfs::Keys::from([(serial.clone(), RecoveryPassword::parse(key.expose())?)]);
    assert_eq!(seedship_bitlocker::volume::label(&img).as_deref(), Some(serial.as_str()));
    assert!(ntfs::open(&img, &ntfs::Keys::from([(serial.clone(), RecoveryPassword::parse(KEY)?)]), false).is_err());
    // The disk as the station leaves it: files under BlockBlob\<container>\, one directly in
    // BlockBlob\ ($root), one at the volume's root (not uploaded), one in a container Azure
    // would rename; written through the unlock.
    let a = pattern(4_500_000, 3);
    let opened = ntfs::open(&img, &keys, true)?;
    ntfs::write(
        opened.volume(),
        &[
            ("BlockBlob/import-dbd/data/00/a.bin", &a),
            ("BlockBlob/import-dbd/manifest.json", b"{}"),
            ("BlockBlob/loose.txt", b"root"),
            ("readme.txt", b"not uploaded"),
            ("BlockBlob/Bad_Container/x.bin", b"x"),
        ],
    )?;
    drop(opened);
    emu.dc("job-dbd-ntfs", "pickup", json!({"carrier": "UPS", "tracking": "1Z999AA10123456785"})).await?;
    emu.dc("job-dbd-ntfs", "arrive", json!({ "images": { &serial: &img } })).await?;
    let j = emu.dc("job-dbd-ntfs", "copy", json!({})).await?;
    assert_eq!(j["properties"]["status"], "CompletedWithErrors", "{j}");
    let blobs = emu.azurite.as_ref().unwrap().blobs()?;
    let listed = blobs.list("import-dbd").await?;
    let names: Vec<&str> = listed.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["data/00/a.bin", "manifest.json"]);
    assert_eq!(listed[0].md5.as_deref(), Some(&Md5::digest(&a)[..]));
    assert_eq!(blobs.download("import-dbd", "data/00/a.bin").await?, a);
    assert_eq!(blobs.download("$root", "loose.txt").await?, b"root");
    let logs = blobs.list("databoxcopylog").await?;
    let log = logs.iter().find(|b| b.name.contains("_CopyLog_")).expect("a copy log");
    let text = String::from_utf8(blobs.download("databoxcopylog", &log.name).await?)?;
    assert!(text.contains("Bad_Container/x.bin") && text.contains("FileNameInvalid"), "{text}");
    assert!(!text.contains("readme.txt"), "files outside BlockBlob are not uploaded: {text}");
    Ok(())
}

/// A cluster (coordinator, Azure emulator, Azurite) with `policy` as `[azure] disk_kind`.
fn chain_cluster(policy: &str) -> anyhow::Result<(seedship_e2e::Cluster, Emulator)> {
    let base = seedship_e2e::azure::kept_dir("seedship-chain-")?;
    let emu = Emulator::start_with(&base, true, &[])?;
    let c = emu.cluster(&format!("disk_kind = \"{policy}\""))?;
    Ok((c, emu))
}

/// Every staging file is a blob of the vault with the seed manifest's size and MD5.
async fn vault_holds(emu: &Emulator, staging: &std::path::Path, container: &str) -> anyhow::Result<()> {
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(staging.join("manifest.json"))?)?;
    let listed = emu.azurite.as_ref().unwrap().blobs()?.list(container).await?;
    for f in m["files"].as_array().unwrap() {
        let p = f["path"].as_str().unwrap();
        let b = listed.iter().find(|b| b.name == p).ok_or_else(|| anyhow::anyhow!("{p} is not in {container}"))?;
        anyhow::ensure!(b.size == f["size"].as_u64().unwrap(), "{p}'s size");
        anyhow::ensure!(b.md5.as_deref().map(hex::encode).as_deref() == f["md5"].as_str(), "{p}'s MD5");
    }
    Ok(())
}

const T: std::time::Duration = std::time::Duration::from_secs(60);

/// Customer disks, the whole chain: a seed staged by the source agent, prepared by a copy
/// station on three NTFS disks (placed whole, balanced), the job created with each disk's
/// manifest path and MD5, shipped, read by the datacenter through the drive manifests, verified
/// and copied into the server's vault: `seeded`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customer_disks_spanning_three_go_through_the_whole_chain_to_seeded() -> anyhow::Result<()> {
    use seedship_e2e::azure::wait_seed_state;
    use seedship_e2e::prep::{copy_agent, disk_size, image, ship, stage, station, text};
    let (mut c, emu) = chain_cluster("customer_disk")?;
    let ops = c.issue("operator", "alice")?;
    let staging = stage(&mut c, &ops, "job-cd3", 12, 11, "st-cd3").await?;
    let (cfg, dir) = station(&c, "st-cd3", "")?;
    let size = disk_size(&staging, 3);
    let images: Vec<PathBuf> = (1..=3).map(|i| image(&dir, &format!("disk{i}.img"), size)).collect();
    let o = c.run("copy-cd3", &mut copy_agent(&cfg))?;
    anyhow::ensure!(o.status.success(), "copy agent: {}", text(&o));
    assert_eq!(ntfs::mounts_under(&c.path("state-st-cd3")), Vec::<PathBuf>::new(), "every read-back locked again");
    let det = wait_seed_state(&c, &ops, "job-cd3", "import_job_created", T).await?;
    // The coordinator kept each disk's progress as the station reported it.
    let disks = det.work.as_ref().map(|w| w.disks.clone()).unwrap_or_default();
    assert_eq!(disks.iter().map(|d| d.position).collect::<Vec<_>>(), vec![1, 2, 3], "{disks:?}");
    assert!(disks.iter().all(|d| d.set_size == 3 && !d.drive_id.is_empty() && d.phase == "prepared"), "{disks:?}");
    let container = det.seed.unwrap().container;
    // BitLocker volumes, each naming its drive, that its escrowed key opens.
    let views = ntfs::check_set(&images, &staging, &container, &seedship_e2e::prep::escrowed_keys(&c))?;
    assert!(views.iter().all(|v| v.manifest.as_ref().is_some_and(|m| !m.blobs.is_empty())), "every disk holds files");
    ship(&mut c, &ops, "job-cd3", "DHL", "1000000333", 3)?;
    // The datacenter knows each disk by the drive its BitLocker description names.
    emu.dc("job-cd3", "arrive", json!({ "disks": images })).await?;
    let j = emu.dc("job-cd3", "copy", json!({})).await?;
    assert_eq!(j["properties"]["status"], "Completed", "{j}");
    wait_seed_state(&c, &ops, "job-cd3", "seeded", T).await?;
    vault_holds(&emu, &staging, "vault-src-job-cd3").await?;
    let report = emu.check_record()?;
    assert!(report.contains("; 0 problems"), "{report}");
    evidence_checks_out(&mut c, &ops, "job-cd3", 3)?;
    dashboard_shows_the_chain(&mut c, &ops, "job-cd3").await?;
    c.finish()
}

/// The dashboard, in a real browser, shows the seed's whole chain as it ran: seeded, its
/// disks and who prepared them, Azure's stage, the verification and the recovery point.
async fn dashboard_shows_the_chain(
    c: &mut seedship_e2e::Cluster,
    ops: &seedship_e2e::Identity,
    job: &str,
) -> anyhow::Result<()> {
    let out = c.run("login-link", &mut c.seedctl(ops, &["login-link"]))?;
    anyhow::ensure!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let link = String::from_utf8(out.stdout)?.lines().next().unwrap_or_default().to_string();
    let b = seedship_e2e::browser::Browser::start().await?;
    let r = async {
        b.go(&link).await?;
        b.js(&format!("location.hash = '#/seed/{job}'; return true")).await?;
        b.until(
            "the seeded seed's page",
            "const s = document.querySelector('#seed-state'); const d = document.querySelector('#disks'); \
             const v = document.querySelector('#verification'); \
             return !!s && s.textContent === 'seeded' && !!d && d.querySelectorAll('table')[0].rows.length === 4 \
               && !!v && !v.innerText.includes('no recovery point')",
            T,
        )
        .await?;
        let page = b.text().await?;
        for want in ["st-cd3", "vault_seeded", "verification_passed", "shipped", "Completed"] {
            assert!(page.contains(want), "the page shows {want}: {page}");
        }
        b.screenshot("dashboard-chain-seeded").await?;
        Ok::<_, anyhow::Error>(())
    }
    .await;
    b.close().await;
    r
}

/// The seed's evidence bundle: written by seedctl, checked by deploy/evidence/verify.sh with
/// tar, openssl and sha256sum only; it names each disk and who prepared it, holds no key, and
/// a changed file is found.
fn evidence_checks_out(
    c: &mut seedship_e2e::Cluster,
    ops: &seedship_e2e::Identity,
    job: &str,
    disks: usize,
) -> anyhow::Result<()> {
    use seedship_e2e::prep::text;
    let tar = c.path(&format!("evidence-{job}.tar"));
    let o = c.run("evidence", &mut c.seedctl(ops, &["evidence", job, "--out", tar.to_str().unwrap()]))?;
    anyhow::ensure!(o.status.success(), "seedctl evidence: {}", text(&o));
    let verify = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/evidence/verify.sh");
    let o = c.run("evidence-verify", std::process::Command::new(&verify).arg(&tar))?;
    assert!(o.status.success() && text(&o).contains("evidence verified"), "{}", text(&o));
    // What is inside.
    let dir = c.path("evidence-x");
    std::fs::create_dir_all(&dir)?;
    let o = c.run("untar", std::process::Command::new("tar").arg("-xf").arg(&tar).arg("-C").arg(&dir))?;
    assert!(o.status.success(), "{}", text(&o));
    let root = dir.join(format!("evidence-{job}"));
    let d: serde_json::Value = serde_json::from_slice(&std::fs::read(root.join("disks.json"))?)?;
    let list = d["disks"].as_array().unwrap();
    assert_eq!(list.len(), disks, "{d}");
    assert!(
        list.iter().all(|x| x["serial"].as_str().is_some_and(|s| !s.is_empty())
            && x["prepared_by"].as_str().unwrap().contains("/copy/")
            && x["manifest_hash_md5"].as_str().is_some_and(|h| h.len() == 32)),
        "{d}"
    );
    for f in [
        "shipping.json",
        "azure.json",
        "verification.json",
        "recovery-point.json",
        "audit.jsonl",
        "summary.html",
        "history.json",
    ] {
        assert!(root.join(f).is_file(), "{f} is in the bundle");
    }
    let azure: serde_json::Value = serde_json::from_slice(&std::fs::read(root.join("azure.json"))?)?;
    assert!(azure["stages"].as_array().is_some_and(|s| !s.is_empty()), "{azure}");
    // Each disk's copy log, as Azure wrote it, is in the bundle.
    let logs = azure["copy_logs"].as_array().cloned().unwrap_or_default();
    assert!(logs.len() >= disks && logs.iter().all(|l| l["file"].is_string()), "{azure}");
    for l in &logs {
        let text = std::fs::read_to_string(root.join(l["file"].as_str().unwrap()))?;
        assert!(text.starts_with("<?xml"), "{text}");
    }
    let point: serde_json::Value = serde_json::from_slice(&std::fs::read(root.join("recovery-point.json"))?)?;
    assert_eq!(point["kind"], "seed", "{point}");
    let html = std::fs::read_to_string(root.join("summary.html"))?;
    assert!(html.contains(&format!("Chain of custody: seed {job}")), "{html}");
    // No key or password anywhere in it.
    let all: Vec<u8> =
        seedship_e2e::walk(&root).iter().filter(|p| p.is_file()).flat_map(|p| std::fs::read(p).unwrap()).collect();
    let all = String::from_utf8_lossy(&all);
    for (_, pw) in seedship_e2e::prep::escrowed_keys(c) {
        assert!(!all.contains(&pw.reveal()), "a drive key is in the evidence bundle");
    }
    // One byte changed in one file: found.
    let p = root.join("shipping.json");
    let mut b = std::fs::read(&p)?;
    b[5] ^= 1;
    std::fs::write(&p, b)?;
    let bad = c.path("evidence-bad.tar");
    let o = c.run(
        "retar",
        std::process::Command::new("tar").arg("-cf").arg(&bad).arg("-C").arg(&dir).arg(format!("evidence-{job}")),
    )?;
    assert!(o.status.success(), "{}", text(&o));
    let o = c.run("evidence-verify-bad", std::process::Command::new(&verify).arg(&bad))?;
    assert!(!o.status.success() && text(&o).contains("shipping.json"), "{}", text(&o));
    Ok(())
}

/// Data Box Disk, the whole chain: ordered at registration, fulfilled by Microsoft with three
/// disks, delivered locked (BitLocker XTS-AES-128 holding NTFS) into the station's disk folder,
/// unlocked by the station with the order's passkey (dislocker, then ntfs-3g), written under
/// `BlockBlob\<container>\` (whole files, balanced), unmounted, read back, locked again, sent
/// back, read by the datacenter through the folders, verified and copied into the vault:
/// `seeded`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_box_disks_spanning_three_go_through_the_whole_chain_to_seeded() -> anyhow::Result<()> {
    use seedship_e2e::azure::wait_seed_state;
    use seedship_e2e::prep::{copy_agent, disk_size, ship, stage, station, text};
    let (mut c, emu) = chain_cluster("databox_disk")?;
    let ops = c.issue("operator", "alice")?;
    let (cfg, dir) = station(&c, "st-dbd3", "")?;
    let staging = stage(&mut c, &ops, "job-dbd3", 12, 12, "st-dbd3").await?;
    wait_seed_state(&c, &ops, "job-dbd3", "disks_ordered", T).await?;
    emu.dc("job-dbd3", "prepare", json!({ "disks": 3 })).await?;
    emu.dc("job-dbd3", "dispatch", json!({ "carrier": "UPS", "tracking": "1Z999AA10123456785" })).await?;
    let size = disk_size(&staging, 3);
    let delivered = emu.dc("job-dbd3", "deliver", json!({ "dir": dir, "sizeBytes": size })).await?;
    let disks: BTreeMap<String, PathBuf> = serde_json::from_value(delivered["disks"].clone())?;
    assert_eq!(disks.len(), 3, "{delivered}");
    let det = wait_seed_state(&c, &ops, "job-dbd3", "queued_for_disk_prep", T).await?;
    let container = det.seed.unwrap().container;
    let o = c.run("copy-dbd3", &mut copy_agent(&cfg))?;
    anyhow::ensure!(o.status.success(), "copy agent: {}", text(&o));
    let images: Vec<PathBuf> = disks.values().cloned().collect();
    let views = ntfs::check_set(&images, &staging, &container, &seedship_e2e::prep::escrowed_keys(&c))?;
    assert!(views.iter().all(|v| v.files.keys().any(|f| f.starts_with("\\BlockBlob\\"))), "every disk holds files");
    assert_eq!(ntfs::mounts_under(&c.path("state-st-dbd3")), Vec::<PathBuf>::new(), "every disk locked again");
    assert!(text(&o).contains("unlocked with the passkey"), "the station unlocked the disks itself: {}", text(&o));
    for image in disks.values() {
        let shown = image.display().to_string();
        assert!(
            text(&o).contains(&shown),
            "the final screen names each disk as it was attached ({shown}): {}",
            text(&o)
        );
    }
    // The passkey is a secret: in no log of the station or the coordinator.
    let creds = emu.arm()?.list_credentials(SUB, RG, "job-dbd3").await?;
    let Some(model::JobSecrets::DataBoxDisk(secrets)) = creds.value.unwrap().remove(0).job_secrets else {
        panic!("no Data Box Disk secrets")
    };
    let passkey = secrets.pass_key.unwrap();
    assert!(!text(&o).contains(passkey.expose()), "the passkey in the station's output");
    assert!(!c.coordinator_logs().contains(passkey.expose()), "the passkey in the coordinator's log");
    wait_seed_state(&c, &ops, "job-dbd3", "import_job_created", T).await?;
    ship(&mut c, &ops, "job-dbd3", "FedEx", "123456789333", 3)?;
    wait_seed_state(&c, &ops, "job-dbd3", "shipped", T).await?;
    emu.dc("job-dbd3", "pickup", json!({ "carrier": "FedEx", "tracking": "123456789333" })).await?;
    emu.dc("job-dbd3", "arrive", json!({ "disks": images })).await?;
    let j = emu.dc("job-dbd3", "copy", json!({})).await?;
    assert_eq!(j["properties"]["status"], "Completed", "{j}");
    wait_seed_state(&c, &ops, "job-dbd3", "seeded", T).await?;
    vault_holds(&emu, &staging, "vault-src-job-dbd3").await?;
    let report = emu.check_record()?;
    assert!(report.contains("; 0 problems"), "{report}");
    c.finish()
}
