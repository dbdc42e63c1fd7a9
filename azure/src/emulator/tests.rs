use super::*;
use crate::arm::{DeliveryPackageInformation, DriveStatus, ReturnAddress, UpdateJobProperties};

const KEY: &str = "000011-000022-000033-000044-000055-000066-000077-000088";

fn put(drives: usize, prefix: &str) -> PutJobParameters {
    PutJobParameters {
        location: Some("West Europe".into()),
        tags: None,
        properties: Some(JobDetails {
            storage_account_id: Some(
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/acct".into(),
            ),
            job_type: Some("Import".into()),
            diagnostics_path: Some("waimportexport".into()),
            log_level: Some("Verbose".into()),
            drive_list: Some(
                (0..drives)
                    .map(|i| DriveStatus {
                        drive_id: Some(format!("{prefix}{i}")),
                        bit_locker_key: Some(Secret(KEY.into())),
                        manifest_file: Some("\\seedship\\DriveManifest.json".into()),
                        manifest_hash: Some("A".repeat(32)),
                        drive_header_hash: Some("B".repeat(64)),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
    }
}

fn ship(tracking: &str, with_address: bool) -> UpdateJobParameters {
    UpdateJobParameters {
        tags: None,
        properties: Some(UpdateJobProperties {
            state: Some("Shipping".into()),
            delivery_package: Some(DeliveryPackageInformation {
                carrier_name: "DHL".into(),
                tracking_number: tracking.into(),
                drive_count: Some(2),
                ship_date: Some("2026-11-22".into()),
            }),
            return_address: with_address.then(|| ReturnAddress {
                recipient_name: "Ops".into(),
                street_address1: "1 Main St".into(),
                city: "Utrecht".into(),
                postal_code: "3500".into(),
                country_or_region: "Netherlands".into(),
                phone: "+31 30 000 0000".into(),
                email: "ops@example.org".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

#[test]
fn a_job_is_created_once_with_the_datacenter_address_and_no_keys_shown() {
    let mut s = ServiceState::default();
    let (code, j) = s.put_job("sub", "rg", "job-1", put(2, "D"), "app", 1_795_000_000_000).unwrap();
    assert_eq!(code, 201);
    let p = j.properties.as_ref().unwrap();
    assert_eq!((p.state.as_deref(), p.cancel_requested), (Some("Creating"), Some(false)));
    assert_eq!(p.shipping_information.as_ref().unwrap().city.as_deref(), Some("Amsterdam"));
    assert_eq!(j.location.as_deref(), Some("westeurope"));
    assert!(
        p.drive_list
            .as_ref()
            .unwrap()
            .iter()
            .all(|d| d.bit_locker_key.is_none() && d.state.as_deref() == Some("Specified"))
    );
    assert!(!serde_json::to_string(&j).unwrap().contains(KEY));
    assert!(j.system_data.unwrap().created_at.unwrap().starts_with("2026-11-18T"));
    // The same PUT again: 200 and the same job; a different one: 409.
    assert_eq!(s.put_job("sub", "rg", "JOB-1", put(2, "D"), "app", 2).unwrap().0, 200);
    assert_eq!(s.put_job("sub", "rg", "job-1", put(3, "D"), "app", 2).unwrap_err().status, 409);
    // Keys only through listBitLockerKeys.
    let k = s.bitlocker_keys("sub", "rg", "job-1").unwrap();
    assert_eq!(k.value.unwrap().len(), 2);
    // A list leaves the drive list out.
    assert!(s.list_jobs("sub", None)[0].properties.as_ref().unwrap().drive_list.is_none());
    assert!(s.list_jobs("sub", Some("other")).is_empty());
}

#[test]
fn bad_jobs_are_refused_with_stable_codes() {
    let mut s = ServiceState::default();
    assert_eq!(s.put_job("sub", "rg", "bad name", put(1, "D"), "a", 1).unwrap_err().code, "InvalidJobName");
    assert_eq!(s.put_job("sub", "rg", "j", put(1, "D"), "a", 1).unwrap_err().code, "InvalidJobName");
    assert_eq!(s.put_job("sub", "rg", "job-x", put(11, "D"), "a", 1).unwrap_err().code, "InvalidDriveList");
    assert_eq!(s.put_job("sub", "rg", "job-x", put(0, "D"), "a", 1).unwrap_err().code, "InvalidDriveList");
    let mut nokey = put(1, "D");
    nokey.properties.as_mut().unwrap().drive_list.as_mut().unwrap()[0].bit_locker_key = None;
    let e = s.put_job("sub", "rg", "job-x", nokey, "a", 1).unwrap_err();
    assert!(e.code == "InvalidDriveList" && e.message.contains("bitLockerKey"), "{e:?}");
    let mut nowhere = put(1, "D");
    nowhere.location = Some("atlantis".into());
    assert_eq!(
        s.put_job("sub", "rg", "job-x", nowhere, "a", 1).unwrap_err().code,
        "LocationNotAvailableForResourceType"
    );
    s.put_job("sub", "rg", "job-a", put(2, "D"), "a", 1).unwrap();
    // A drive of an active job cannot be in another job.
    assert_eq!(s.put_job("sub", "rg", "job-b", put(1, "D"), "a", 1).unwrap_err().code, "DuplicateDrive");
    let e = s.get_job("sub", "rg", "nope").unwrap_err();
    assert_eq!((e.status, e.code), (404, "ResourceNotFound"));
    assert_eq!(
        serde_json::to_value(e.envelope()).unwrap()["error"]["code"],
        serde_json::Value::String("ResourceNotFound".into())
    );
}

#[test]
fn shipping_needs_a_return_address_and_a_tracking_number_no_other_job_has() {
    let mut s = ServiceState::default();
    s.put_job("sub", "rg", "job-a", put(2, "A"), "a", 1).unwrap();
    s.put_job("sub", "rg", "job-b", put(2, "B"), "a", 1).unwrap();
    assert_eq!(
        s.update_job("sub", "rg", "job-a", ship("T1", false), "a", 2).unwrap_err().code,
        "ReturnAddressRequired"
    );
    // Refused requests change nothing.
    assert_eq!(s.get_job("sub", "rg", "job-a").unwrap().state(), "Creating");
    assert!(s.get_job("sub", "rg", "job-a").unwrap().details().delivery_package.is_none());
    let j = s.update_job("sub", "rg", "job-a", ship("T1", true), "a", 3).unwrap();
    assert_eq!(j.properties.unwrap().state.as_deref(), Some("Shipping"));
    assert_eq!(s.get_job("sub", "rg", "job-a").unwrap().shipped_ms, Some(3));
    assert_eq!(
        s.update_job("sub", "rg", "job-b", ship("t1", true), "a", 4).unwrap_err().code,
        "DuplicateTrackingNumber"
    );
    // A Shipping job cannot be deleted; a Creating one can.
    assert_eq!(s.delete_job("sub", "rg", "job-a").unwrap_err().code, "InvalidJobState");
    s.delete_job("sub", "rg", "job-b").unwrap();
    assert_eq!(s.get_job("sub", "rg", "job-b").unwrap_err().status, 404);
}

#[test]
fn cancellation_is_a_flag_first() {
    let mut s = ServiceState::default();
    s.put_job("sub", "rg", "job-c", put(1, "C"), "a", 1).unwrap();
    let cancel = UpdateJobParameters {
        tags: None,
        properties: Some(UpdateJobProperties { cancel_requested: Some(true), ..Default::default() }),
    };
    let j = s.update_job("sub", "rg", "job-c", cancel, "a", 2).unwrap();
    let p = j.properties.unwrap();
    assert_eq!((p.cancel_requested, p.state.as_deref()), (Some(true), Some("Creating")));
    assert_eq!(s.update_job("sub", "rg", "job-c", ship("T9", true), "a", 3).unwrap_err().code, "InvalidJobState");
}

#[test]
fn times_are_rfc3339() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(rfc3339(1_795_369_859_957), "2026-11-22T17:50:59.957Z");
    assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
}

fn shipped(s: &mut ServiceState, name: &str, prefix: &str, drives: usize, tracking: &str) {
    s.put_job("sub", "rg", name, put(drives, prefix), "a", 0).unwrap();
    s.update_job("sub", "rg", name, ship(tracking, true), "a", DAY_MS).unwrap();
}

fn drive_states(j: &JobResponse) -> Vec<String> {
    j.properties.as_ref().unwrap().drive_list.as_ref().unwrap().iter().map(|d| d.state.clone().unwrap()).collect()
}

#[test]
fn the_datacenter_takes_a_job_through_receipt_copy_and_return() {
    let mut s = ServiceState::default();
    shipped(&mut s, "job-d", "E", 3, "T-D");
    // One drive is missing from the package.
    let j = s.package_arrives("sub", "rg", "job-d", &["E0".into(), "E1".into()]).unwrap();
    assert_eq!(drive_states(&j), ["Received", "Received", "NeverReceived"]);
    assert_eq!(s.package_arrives("sub", "rg", "job-d", &["E0".into()]).unwrap_err().code, "InvalidJobState");
    assert_eq!(s.start_copy("sub", "rg", "job-d", "E2").unwrap_err().code, "InvalidDriveState");
    s.start_copy("sub", "rg", "job-d", "E0").unwrap();
    s.start_copy("sub", "rg", "job-d", "E1").unwrap();
    s.finish_copy("sub", "rg", "job-d", "E0", 1000, None, None).unwrap();
    let j = s
        .finish_copy("sub", "rg", "job-d", "E1", 10, Some("BitLockerKeyInvalid"), Some("http://x/err.xml".into()))
        .unwrap();
    let p = j.properties.as_ref().unwrap();
    assert_eq!((p.state.as_deref(), p.percent_complete), (Some("Packaging"), Some(100)));
    let e1 = &p.drive_list.as_ref().unwrap()[1];
    assert_eq!(
        (e1.state.as_deref(), e1.copy_status.as_deref()),
        (Some("CompletedMoreInfo"), Some("BitLockerKeyInvalid"))
    );
    let j = s.ship_back("sub", "rg", "job-d", "DHL", "R-1", "2026-12-01").unwrap();
    assert_eq!(j.properties.as_ref().unwrap().state.as_deref(), Some("Closed"));
    assert_eq!(drive_states(&j), ["ShippedBack", "ShippedBack", "NeverReceived"]);
    assert_eq!(j.properties.unwrap().return_package.unwrap().drive_count, 2);
}

#[test]
fn a_clean_job_completes() {
    let mut s = ServiceState::default();
    shipped(&mut s, "job-ok", "F", 1, "T-OK");
    s.package_arrives("sub", "rg", "job-ok", &["F0".into()]).unwrap();
    s.start_copy("sub", "rg", "job-ok", "F0").unwrap();
    s.finish_copy("sub", "rg", "job-ok", "F0", 5, None, None).unwrap();
    let j = s.ship_back("sub", "rg", "job-ok", "DHL", "R-2", "2026-12-01").unwrap();
    assert_eq!(j.properties.unwrap().state.as_deref(), Some("Completed"));
}

#[test]
fn the_clock_enforces_the_14_day_rules_cancellation_and_the_90_day_deletion() {
    let mut s = ServiceState::default();
    s.put_job("sub", "rg", "job-idle", put(1, "G"), "a", 0).unwrap();
    shipped(&mut s, "job-lost", "H", 1, "T-L");
    s.put_job("sub", "rg", "job-cancel", put(1, "I"), "a", 0).unwrap();
    let cancel = UpdateJobParameters {
        tags: None,
        properties: Some(UpdateJobProperties { cancel_requested: Some(true), ..Default::default() }),
    };
    s.update_job("sub", "rg", "job-cancel", cancel, "a", 1).unwrap();
    let said = s.tick(2);
    assert_eq!(said, ["job-cancel: canceled"]);
    assert!(s.tick(14 * DAY_MS - 1).is_empty());
    let said = s.tick(14 * DAY_MS);
    assert_eq!(said, ["job-idle: deleted, no shipping information within 14 days"]);
    assert_eq!(s.get_job("sub", "rg", "job-idle").unwrap_err().status, 404);
    // Shipped on day 1: its drives are never received from day 15.
    assert!(s.tick(15 * DAY_MS - 1).is_empty());
    let said = s.tick(15 * DAY_MS);
    assert_eq!(said, ["job-lost: drives never received within 14 days of shipping; closed"]);
    let j = s.get_job("sub", "rg", "job-lost").unwrap();
    assert_eq!(drive_states(&j.job), ["NeverReceived"]);
    let said = s.tick(90 * DAY_MS);
    assert_eq!(said.len(), 2, "{said:?}");
    assert!(s.jobs.is_empty());
}

#[test]
fn every_answer_of_the_emulator_fits_the_official_openapi_description() {
    let spec = crate::openapi::Spec::official();
    let fits = |def: &str, v: &dyn erased::Json| {
        let bad = spec.check(def, &v.json());
        assert!(bad.is_empty(), "{def}: {bad:?}");
    };
    let mut s = ServiceState::default();
    let (_, created) = s.put_job("sub", "rg", "job-o", put(2, "O"), "a", 0).unwrap();
    fits("JobResponse", &created);
    // What the coordinator sends must fit too (the request bodies of this test are its shapes).
    fits("PutJobParameters", &put(2, "O"));
    fits("UpdateJobParameters", &ship("T-O", true));
    fits("JobResponse", &s.update_job("sub", "rg", "job-o", ship("T-O", true), "a", DAY_MS).unwrap());
    fits("JobResponse", &s.get_job("sub", "rg", "job-o").unwrap().job);
    fits("ListJobsResponse", &arm::ListJobsResponse { next_link: None, value: Some(s.list_jobs("sub", None)) });
    fits("GetBitLockerKeysResponse", &s.bitlocker_keys("sub", "rg", "job-o").unwrap());
    fits("LocationsResponse", &arm::LocationsResponse { value: Some(locations()) });
    s.package_arrives("sub", "rg", "job-o", &["O0".into()]).unwrap();
    s.start_copy("sub", "rg", "job-o", "O0").unwrap();
    let j = s.finish_copy("sub", "rg", "job-o", "O0", 5, Some("wrong key"), Some("http://x/e.xml".into())).unwrap();
    fits("JobResponse", &j);
    fits("JobResponse", &s.ship_back("sub", "rg", "job-o", "DHL", "R-9", "2026-12-01").unwrap());
    for e in [
        s.get_job("sub", "rg", "nope").unwrap_err(),
        s.put_job("sub", "rg", "bad name!", put(1, "Z"), "a", 0).unwrap_err(),
    ] {
        fits("ErrorResponse", &e.envelope());
    }
}

/// Anything serializable, as JSON (for the schema checks above).
mod erased {
    pub trait Json {
        fn json(&self) -> serde_json::Value;
    }
    impl<T: serde::Serialize> Json for T {
        fn json(&self) -> serde_json::Value {
            serde_json::to_value(self).expect("serializes")
        }
    }
}
