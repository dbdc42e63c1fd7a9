//! The emulated Azure Resource Manager API of Microsoft.ImportExport, over real HTTP: the
//! routes, status codes, error envelope, api-version and bearer checks, and persistence
//! across a restart. Request bodies come from the official examples (tests/fixtures).

use seedship_azure::arm::{GetBitLockerKeysResponse, JobResponse, ListJobsResponse, LocationsResponse};
use seedship_e2e::{http, start_emulator};
use serde_json::{Value, json};

const JOBS: &str = "/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.ImportExport/jobs";
const V: &str = "?api-version=2021-01-01";
const AUTH: (&str, &str) = ("Authorization", "Bearer test-token");

fn example_body(name: &str) -> Value {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/importexport").join(name);
    let v: Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
    v["parameters"]["body"].clone()
}

fn code(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["error"]["code"].as_str().unwrap_or_else(|| panic!("no ARM error envelope: {body}")).to_string()
}

/// Reads a response as the typed model and checks it writes back the same: the emulator
/// answers no field the model (and so Azure's description) does not have.
fn typed<T: serde::de::DeserializeOwned + serde::Serialize>(body: &str) -> T {
    let v: Value = serde_json::from_str(body).unwrap();
    let t: T = serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(serde_json::to_value(&t).unwrap(), v, "the emulator answered fields outside the model");
    t
}

#[test]
fn the_arm_face_of_the_emulator_behaves_like_azure_and_keeps_its_state() -> anyhow::Result<()> {
    let d = tempfile::tempdir()?;
    let state = d.path().join("emulator.json");
    let log = d.path().join("emulator.log");
    let (mut child, addr, _) = start_emulator(&state, &log, None)?;
    let a = addr.as_str();

    // ARM's checks: a bearer token, then the api-version.
    let (s, b) = http(a, "GET", &format!("/providers/Microsoft.ImportExport/locations{V}"), &[], None)?;
    assert_eq!((s, code(&b).as_str()), (401, "AuthenticationFailed"));
    let (s, b) = http(a, "GET", "/providers/Microsoft.ImportExport/locations", &[AUTH], None)?;
    assert_eq!((s, code(&b).as_str()), (400, "MissingApiVersionParameter"));
    let (s, b) = http(a, "GET", "/providers/Microsoft.ImportExport/locations?api-version=2016-11-01", &[AUTH], None)?;
    assert_eq!((s, code(&b).as_str()), (400, "InvalidApiVersionParameter"));
    assert!(b.contains("2021-01-01"), "{b}");

    let (s, b) = http(a, "GET", &format!("/providers/Microsoft.ImportExport/locations{V}"), &[AUTH], None)?;
    assert_eq!(s, 200);
    let locs: LocationsResponse = typed(&b);
    assert!(locs.value.unwrap().iter().any(|l| l.name.as_deref() == Some("westeurope")));
    let (s, b) = http(a, "GET", &format!("/providers/Microsoft.ImportExport/locations/westeurope{V}"), &[AUTH], None)?;
    assert_eq!(s, 200);
    assert!(b.contains("\"streetAddress1\""), "{b}");

    // Create with the official example's body (its drive id and key), in an emulated location.
    let mut put = example_body("CreateJob.json");
    put["location"] = json!("westeurope");
    let drive = put["properties"]["driveList"][0]["driveId"].as_str().unwrap().to_string();
    let key = put["properties"]["driveList"][0]["bitLockerKey"].as_str().unwrap().to_string();
    let (s, b) = http(a, "PUT", &format!("{JOBS}/job-1{V}"), &[AUTH], Some(&put.to_string()))?;
    assert_eq!(s, 201, "{b}");
    assert!(!b.contains(&key), "a job never shows its keys");
    let j: JobResponse = typed(&b);
    let p = j.properties.unwrap();
    assert_eq!((p.state.as_deref(), j.name.as_deref()), (Some("Creating"), Some("job-1")));
    assert!(p.shipping_information.unwrap().street_address1.is_some());
    // The same PUT again is answered 200 (the coordinator's retry after a crash).
    let (s, _) = http(a, "PUT", &format!("{JOBS}/job-1{V}"), &[AUTH], Some(&put.to_string()))?;
    assert_eq!(s, 200);
    let (s, b) = http(a, "PUT", &format!("{JOBS}/job-1{V}"), &[AUTH], Some("{not json"))?;
    assert_eq!((s, code(&b).as_str()), (400, "InvalidRequestContent"));

    let (s, b) = http(a, "POST", &format!("{JOBS}/job-1/listBitLockerKeys{V}"), &[AUTH], None)?;
    assert_eq!(s, 200);
    let k: GetBitLockerKeysResponse = typed(&b);
    let k = &k.value.unwrap()[0];
    assert_eq!(
        (k.drive_id.as_deref(), k.bit_locker_key.as_ref().map(|s| s.0.as_str())),
        (Some(drive.as_str()), Some(key.as_str()))
    );

    // The example's update (log level, `"state": ""` for no change), then shipping.
    let (s, b) =
        http(a, "PATCH", &format!("{JOBS}/job-1{V}"), &[AUTH], Some(&example_body("UpdateJob.json").to_string()))?;
    assert_eq!(s, 200, "{b}");
    let j: JobResponse = typed(&b);
    assert_eq!(j.properties.unwrap().state.as_deref(), Some("Creating"));
    let ship = json!({"properties": {"state": "Shipping",
        "deliveryPackage": {"carrierName": "DHL", "trackingNumber": "1Z999", "driveCount": 1, "shipDate": "2026-11-22"}}});
    let (s, b) = http(a, "PATCH", &format!("{JOBS}/job-1{V}"), &[AUTH], Some(&ship.to_string()))?;
    assert_eq!(s, 200, "{b}");
    let j: JobResponse = typed(&b);
    assert_eq!(j.properties.unwrap().state.as_deref(), Some("Shipping"));

    // The list leaves drive lists out; a Shipping job cannot be deleted.
    let (s, b) = http(a, "GET", &format!("{JOBS}{V}"), &[AUTH], None)?;
    assert_eq!(s, 200);
    let l: ListJobsResponse = typed(&b);
    assert!(l.value.unwrap()[0].properties.as_ref().unwrap().drive_list.is_none());
    let (s, b) = http(a, "DELETE", &format!("{JOBS}/job-1{V}"), &[AUTH], None)?;
    assert_eq!((s, code(&b).as_str()), (409, "InvalidJobState"));
    let (s, b) = http(a, "GET", &format!("{JOBS}/nope{V}"), &[AUTH], None)?;
    assert_eq!((s, code(&b).as_str()), (404, "ResourceNotFound"));

    // The datacenter: the package arrives, the drive is copied, the drives go back.
    let dc = "/_datacenter/subscriptions/sub-1/resourceGroups/rg-1/jobs/job-1";
    let (s, b) = http(a, "POST", &format!("{dc}/arrive"), &[], Some(&json!({"drives": [drive]}).to_string()))?;
    assert_eq!(s, 200, "{b}");
    let (s, b) = http(a, "POST", &format!("{dc}/arrive"), &[], Some(r#"{"drives": 5}"#))?;
    assert_eq!((s, code(&b).as_str()), (400, "InvalidRequestContent"));
    http(a, "POST", &format!("{dc}/start-copy"), &[], Some(&json!({"drive": drive}).to_string()))?;
    let (s, b) = http(a, "GET", &format!("{JOBS}/job-1{V}"), &[AUTH], None)?;
    assert_eq!(s, 200);
    let j: JobResponse = typed(&b);
    assert_eq!(j.properties.unwrap().state.as_deref(), Some("Transferring"));
    let fin = json!({"drive": drive, "bytes": 1234, "failure": "ManifestCorrupted"});
    let (s, b) = http(a, "POST", &format!("{dc}/finish-copy"), &[], Some(&fin.to_string()))?;
    assert_eq!(s, 200, "{b}");
    assert!(b.contains("\"copyStatus\":\"ManifestCorrupted\"") && b.contains("CompletedMoreInfo"), "{b}");
    let back = json!({"carrier": "DHL", "tracking": "R-1", "date": "2026-12-01"});
    let (s, b) = http(a, "POST", &format!("{dc}/ship-back"), &[], Some(&back.to_string()))?;
    assert_eq!(s, 200, "{b}");
    let j: JobResponse = typed(&b);
    assert_eq!(j.properties.unwrap().state.as_deref(), Some("Closed"));

    // A restart keeps every job.
    child.kill()?;
    child.wait()?;
    let (mut child, addr, _) = start_emulator(&state, &log, None)?;
    let (s, b) = http(&addr, "GET", &format!("{JOBS}/job-1{V}"), &[AUTH], None)?;
    assert_eq!(s, 200);
    assert!(b.contains("\"state\":\"Closed\""), "{b}");
    // The clock: 90 days after creation a closed job is deleted.
    let (s, b) = http(&addr, "POST", "/_datacenter/clock/advance", &[], Some("{\"days\": 91}"))?;
    assert_eq!(s, 200, "{b}");
    assert!(b.contains("job-1: deleted after 90 days"), "{b}");
    let (s, _) = http(&addr, "GET", &format!("{JOBS}/job-1{V}"), &[AUTH], None)?;
    assert_eq!(s, 404);
    child.kill()?;
    child.wait()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_coordinators_arm_client_drives_the_emulator_over_https() -> anyhow::Result<()> {
    use std::sync::Arc;

    use seedship_azure::arm::{DeliveryPackageInformation, PutJobParameters, UpdateJobParameters, UpdateJobProperties};
    use seedship_azure::client::{ArmClient, ArmError, ArmOptions, StaticToken};

    let d = tempfile::tempdir()?;
    let tls = d.path().join("tls");
    let (mut child, _, url) =
        start_emulator(&d.path().join("emulator.json"), &d.path().join("emulator.log"), Some(&tls))?;
    assert!(url.starts_with("https://"), "{url}");
    let opts = ArmOptions { ca_pem: Some(std::fs::read(tls.join("ca.crt"))?), ..Default::default() };
    let arm = ArmClient::new(&url, Arc::new(StaticToken("test".into())), opts.clone())?;

    let locs = arm.locations().await?;
    assert!(locs.iter().any(|l| l.name.as_deref() == Some("westeurope")));
    let addr = arm.location("westeurope").await?.properties.unwrap().address_lines();
    assert!(addr.iter().any(|l| l.contains("Amsterdam")), "{addr:?}");

    let mut put: PutJobParameters = serde_json::from_value(example_body("CreateJob.json"))?;
    put.location = Some("westeurope".into());
    let (s, j) = arm.put_job("sub-1", "rg-1", "job-arm", &put).await?;
    assert_eq!((s, j.properties.unwrap().state.as_deref()), (201, Some("Creating")));
    // The state (it holds drive keys) and the TLS key are the emulator's alone.
    use std::os::unix::fs::PermissionsExt;
    for f in [d.path().join("emulator.json"), tls.join("server.key")] {
        assert_eq!(std::fs::metadata(&f)?.permissions().mode() & 0o777, 0o600, "{}", f.display());
    }
    assert_eq!(arm.put_job("sub-1", "rg-1", "job-arm", &put).await?.0, 200, "a retried PUT finds the same job");
    let keys = arm.bitlocker_keys("sub-1", "rg-1", "job-arm").await?;
    assert_eq!(keys.value.unwrap().len(), 1);
    let ship = UpdateJobParameters {
        tags: None,
        properties: Some(UpdateJobProperties {
            state: Some("Shipping".into()),
            delivery_package: Some(DeliveryPackageInformation {
                carrier_name: "DHL".into(),
                tracking_number: "1Z-ARM".into(),
                drive_count: Some(1),
                ship_date: Some("2026-11-22".into()),
            }),
            ..Default::default()
        }),
    };
    let j = arm.update_job("sub-1", "rg-1", "job-arm", &ship).await?;
    assert_eq!(j.properties.unwrap().state.as_deref(), Some("Shipping"));
    let jobs = arm.list_jobs("sub-1", Some("rg-1")).await?;
    assert_eq!(jobs.len(), 1);
    assert!(jobs[0].properties.as_ref().unwrap().drive_list.is_none());
    assert!(arm.get_job("sub-1", "rg-1", "job-arm").await?.properties.unwrap().drive_list.is_some());

    // Azure's refusals become typed errors with the service's code and message.
    match arm.delete_job("sub-1", "rg-1", "job-arm").await {
        Err(ArmError::Azure { status: 409, code, message }) => {
            assert_eq!(code, "InvalidJobState");
            assert!(message.contains("Shipping"), "{message}");
        }
        other => panic!("expected a 409, got {other:?}"),
    }
    let e = arm.get_job("sub-1", "rg-1", "nope").await.unwrap_err();
    assert!(e.is_not_found() && !e.is_transient(), "{e}");

    // Throttling and server errors are retried by the pipeline; past its retries they are
    // typed, transient errors.
    let ca = std::fs::read(tls.join("ca.crt"))?;
    let faults = |n: u32, status: u16| {
        let (url, ca) = (url.clone(), ca.clone());
        async move {
            let c = reqwest::Client::builder().add_root_certificate(reqwest::Certificate::from_pem(&ca)?).build()?;
            let b = json!({"status": status, "count": n, "retry_after_secs": 0});
            let r = c.post(format!("{url}/_datacenter/faults")).json(&b).send().await?;
            anyhow::ensure!(r.status().as_u16() == 204, "faults not set: {}", r.status());
            anyhow::Ok(())
        }
    };
    faults(2, 429).await?;
    assert!(arm.location("westeurope").await.is_ok(), "two throttled answers are retried");
    faults(2, 503).await?;
    assert!(arm.get_job("sub-1", "rg-1", "job-arm").await.is_ok(), "two server errors are retried");
    let impatient = ArmClient::new(
        &url,
        Arc::new(StaticToken("t".into())),
        ArmOptions { max_retries: 1, initial_delay: std::time::Duration::from_millis(10), ..opts.clone() },
    )?;
    faults(5, 429).await?;
    match impatient.locations().await {
        Err(e @ ArmError::Azure { status: 429, .. }) => assert!(e.is_transient(), "{e}"),
        other => panic!("expected a 429 after the retries, got {other:?}"),
    }
    faults(0, 429).await?;
    // Only https, and an endpoint that does not answer is "unreachable" (transient).
    assert!(matches!(
        ArmClient::new("http://127.0.0.1:1", Arc::new(StaticToken("t".into())), opts.clone()),
        Err(ArmError::Config(_))
    ));
    child.kill()?;
    child.wait()?;
    let quick = ArmOptions { max_retries: 1, initial_delay: std::time::Duration::from_millis(10), ..opts };
    let gone = ArmClient::new(&url, Arc::new(StaticToken("t".into())), quick)?;
    let e = gone.locations().await.unwrap_err();
    assert!(matches!(e, ArmError::Unreachable(_)) && e.is_transient(), "{e}");
    Ok(())
}

fn azure_toml(tls: &std::path::Path, credential: &str) -> String {
    seedship_e2e::azure::azure_table("https://127.0.0.1:1", &tls.join("ca.crt"), credential, "5m")
}

#[test]
fn the_coordinator_builds_its_arm_client_at_start_and_names_a_bad_credential() -> anyhow::Result<()> {
    let d = tempfile::tempdir()?;
    let tls = d.path().join("tls");
    let (mut emu, _, _) = start_emulator(&d.path().join("emulator.json"), &d.path().join("emulator.log"), Some(&tls))?;
    let c = seedship_e2e::Cluster::start_with(seedship_e2e::Options {
        extra_toml: azure_toml(&tls, r#"{ kind = "emulator" }"#),
        ..Default::default()
    })?;
    assert!(c.log_of("coordinator-1").contains("Azure Resource Manager client ready"), "{}", c.log_of("coordinator-1"));
    c.finish()?;

    // A credential whose secret file is missing stops the start-up, naming the file.
    let r = seedship_e2e::Cluster::start_with(seedship_e2e::Options {
        extra_toml: azure_toml(
            &tls,
            r#"{ kind = "client_secret", tenant_id = "72f988bf-86f1-41af-91ab-2d7cd011db47", client_id = "app", secret_file = "/nonexistent/arm-secret" }"#,
        ),
        ..Default::default()
    });
    let e = format!("{:#}", r.err().expect("the coordinator must not start"));
    assert!(e.contains("secret_file") && e.contains("/nonexistent/arm-secret"), "{e}");
    emu.kill()?;
    emu.wait()?;
    Ok(())
}
