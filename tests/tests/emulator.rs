//! The coordinator's ARM client against the emulated `Microsoft.DataBox` over HTTPS: the long-
//! running operations, the typed refusals, the retries of throttling and server errors, the
//! emulator's state across a kill -9, and the client's settings.

use seedship_azure::client::{ArmClient, ArmError, ArmOptions, LroEnd, StaticToken};
use seedship_azure::databox::model;
use seedship_e2e::azure::{Emulator, RG, SUB, customer_disk_job_json};
use seedship_e2e::start_emulator;
use serde_json::json;

fn customer_disk_job(serial: &str) -> model::JobResource {
    serde_json::from_value(customer_disk_job_json(serial, "Ops")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_coordinators_arm_client_drives_the_emulator_over_https() -> anyhow::Result<()> {
    use std::sync::Arc;

    let d = tempfile::tempdir()?;
    let mut emu = Emulator::start(d.path())?;
    assert!(emu.url.starts_with("https://"), "{}", emu.url);
    let opts = ArmOptions {
        ca_pem: Some(std::fs::read(emu.ca())?),
        poll_delay: std::time::Duration::from_millis(20),
        ..Default::default()
    };
    let arm = ArmClient::new(&emu.url, Arc::new(StaticToken("test".into())), opts.clone())?;

    // The datacenter address before any job (regionConfiguration).
    let req = model::RegionConfigurationRequest {
        datacenter_address_request: Some(model::DatacenterAddressRequest {
            storage_location: Some("westeurope".into()),
            sku_name: Some("DataBoxCustomerDisk".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let r = arm.region_configuration(SUB, "westeurope", &req).await?;
    let Some(model::DatacenterAddressResponse::DatacenterAddressLocation(a)) = r.datacenter_address_response else {
        panic!("no address")
    };
    assert_eq!(a.city.as_deref(), Some("Amsterdam"));

    // Create: the operation is followed to its end, and the job is there with its details.
    assert_eq!(arm.put_job(SUB, RG, "job-arm", &customer_disk_job("SER-1")).await?, LroEnd::Done);
    let (j, etag) = arm.get_job(SUB, RG, "job-arm").await?;
    assert!(etag.is_some());
    assert_eq!(j.properties.as_ref().unwrap().status.as_deref(), Some("AwaitingShipmentDetails"));
    // The state (it holds disk keys) and the TLS key are the emulator's alone.
    use std::os::unix::fs::PermissionsExt;
    for f in [emu.state.clone(), emu.tls.join("server.key")] {
        assert_eq!(std::fs::metadata(&f)?.permissions().mode() & 0o777, 0o600, "{}", f.display());
    }
    assert_eq!(arm.put_job(SUB, RG, "job-arm", &customer_disk_job("SER-1")).await?, LroEnd::Done, "a retried PUT");
    assert_eq!(emu.job_count().await?, 1, "a retried PUT makes no second job");
    let creds = arm.list_credentials(SUB, RG, "job-arm").await?;
    let Some(model::JobSecrets::DataBoxCustomerDisk(c)) = creds.value.unwrap().remove(0).job_secrets else { panic!() };
    assert_eq!(c.disk_secrets.unwrap()[0].disk_serial_number.as_deref(), Some("SER-1"));
    arm.mark_devices_shipped(SUB, RG, "job-arm", "DHL", "1Z-ARM").await?;
    let jobs = arm.list_jobs(SUB, Some(RG)).await?;
    assert_eq!(jobs.len(), 1);
    assert!(jobs[0].properties.as_ref().unwrap().details.is_none(), "lists leave the details out");
    assert_eq!(
        arm.get_job(SUB, RG, "job-arm").await?.0.properties.unwrap().status.as_deref(),
        Some("ShippedToAzureDC")
    );

    // Azure's refusals become typed errors with the service's code and message.
    match arm.delete_job(SUB, RG, "job-arm").await {
        Err(ArmError::Azure { status: 400, code, message }) => {
            assert_eq!(code, "JobNotDeletable");
            assert!(message.contains("ShippedToAzureDC"), "{message}");
        }
        other => panic!("expected a 400, got {other:?}"),
    }
    match arm.cancel_job(SUB, RG, "job-arm", "changed my mind").await {
        Err(e) => assert_eq!(e.code(), Some("CancelNotAllowed"), "{e}"),
        Ok(()) => panic!("a shipped job was cancelled"),
    }
    let e = arm.get_job(SUB, RG, "nope").await.unwrap_err();
    assert!(e.is_not_found() && !e.is_transient(), "{e}");
    let e = arm.get_job(SUB, "no-such-rg", "job-arm").await.unwrap_err();
    assert_eq!((e.is_not_found(), e.code()), (true, Some("ResourceGroupNotFound")));

    // The emulator keeps its state across a kill -9.
    emu.kill9_and_restart()?;
    assert_eq!(
        arm.get_job(SUB, RG, "job-arm").await?.0.properties.unwrap().status.as_deref(),
        Some("ShippedToAzureDC")
    );

    // Throttling and server errors are retried by the pipeline; past its retries they are
    // typed, transient errors.
    emu.faults(json!({"status": 429, "count": 2, "retry_after_secs": 0})).await?;
    assert!(arm.region_configuration(SUB, "westeurope", &req).await.is_ok(), "two throttled answers are retried");
    emu.faults(json!({"status": 503, "count": 2})).await?;
    assert!(arm.get_job(SUB, RG, "job-arm").await.is_ok(), "two server errors are retried");
    let impatient = ArmClient::new(
        &emu.url,
        Arc::new(StaticToken("t".into())),
        ArmOptions { max_retries: 1, initial_delay: std::time::Duration::from_millis(10), ..opts.clone() },
    )?;
    emu.faults(json!({"status": 429, "count": 5, "retry_after_secs": 0})).await?;
    match impatient.get_job(SUB, RG, "job-arm").await {
        Err(e @ ArmError::Azure { status: 429, .. }) => assert!(e.is_transient(), "{e}"),
        other => panic!("expected a 429 after the retries, got {other:?}"),
    }
    emu.faults(json!({"status": 429, "count": 0})).await?;
    // Only https, and an endpoint that does not answer is "unreachable" (transient).
    assert!(matches!(
        ArmClient::new("http://127.0.0.1:1", Arc::new(StaticToken("t".into())), opts.clone()),
        Err(ArmError::Config(_))
    ));
    let url = emu.url.clone();
    drop(emu);
    let quick = ArmOptions { max_retries: 1, initial_delay: std::time::Duration::from_millis(10), ..opts };
    let gone = ArmClient::new(&url, Arc::new(StaticToken("t".into())), quick)?;
    let e = gone.get_job(SUB, RG, "job-arm").await.unwrap_err();
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
