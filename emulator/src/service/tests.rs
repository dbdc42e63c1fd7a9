//! The emulated service's rules, without HTTP: both job kinds through their stages, and what
//! Azure refuses.

use seedship_azure::databox::model::{self, JobDetails, JobResource};
use seedship_azure::databox::{CopyStatus, Secret, StageName};

use super::*;

const SUB: &str = "sub";
const RG: &str = "rg";
const T0: i64 = 1_780_000_000_000;

fn account() -> String {
    format!("/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Storage/storageAccounts/acct")
}

fn state() -> ServiceState {
    let mut s = ServiceState { lro_polls: 1, ..Default::default() };
    s.add_resource_group(SUB, RG);
    s
}

fn contact() -> Option<model::ContactDetails> {
    Some(model::ContactDetails {
        contact_name: Some("Ops".into()),
        phone: Some("+1 555".into()),
        email_list: Some(vec!["ops@example.com".into()]),
        ..Default::default()
    })
}

fn imports() -> Option<Vec<model::DataImportDetails>> {
    Some(vec![model::DataImportDetails {
        account_details: Some(model::DataAccountDetails::StorageAccount(model::StorageAccountDetails {
            data_account_type: Some("StorageAccount".into()),
            storage_account_id: Some(account()),
            ..Default::default()
        })),
        ..Default::default()
    }])
}

fn customer_disk(serials: &[&str]) -> JobResource {
    let disks = serials
        .iter()
        .map(|s| {
            (
                s.to_string(),
                model::ImportDiskDetails {
                    manifest_file: Some("\\DriveManifest.xml".into()),
                    manifest_hash: Some("0123456789ABCDEF0123456789ABCDEF".into()),
                    bit_locker_key: Some(Secret(format!("key-of-{s}"))),
                    ..Default::default()
                },
            )
        })
        .collect();
    JobResource {
        location: Some("westeurope".into()),
        sku: Some(model::Sku { name: Some("DataBoxCustomerDisk".into()), ..Default::default() }),
        properties: Some(model::JobProperties {
            transfer_type: Some("ImportToAzure".into()),
            details: Some(JobDetails::DataBoxCustomerDisk(model::DataBoxCustomerDiskJobDetails {
                contact_details: contact(),
                data_import_details: imports(),
                import_disk_details_collection: Some(disks),
                return_to_customer_package_details: Some(model::PackageCarrierDetails {
                    carrier_name: Some("DHL".into()),
                    carrier_account_number: Some(Secret("987".into())),
                    ..Default::default()
                }),
                ..Default::default()
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn databox_disk(count: i64) -> JobResource {
    JobResource {
        location: Some("westeurope".into()),
        sku: Some(model::Sku { name: Some("DataBoxDisk".into()), ..Default::default() }),
        properties: Some(model::JobProperties {
            transfer_type: Some("ImportToAzure".into()),
            details: Some(JobDetails::DataBoxDisk(model::DataBoxDiskJobDetails {
                contact_details: contact(),
                shipping_address: Some(model::ShippingAddress {
                    street_address1: Some("1 Dock".into()),
                    country: Some("NL".into()),
                    ..Default::default()
                }),
                data_import_details: imports(),
                preferred_disks: Some([("8".to_string(), count)].into()),
                ..Default::default()
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn status(s: &ServiceState, job: &str) -> String {
    s.job(SUB, RG, job).unwrap().status().to_string()
}

fn copy_status(s: &ServiceState, job: &str, serial: &str) -> Option<String> {
    s.job(SUB, RG, job).unwrap().copy_status(serial)
}

#[test]
fn a_customer_disk_job_goes_from_shipment_details_to_completed() {
    let mut s = state();
    let (op, loc) = s.put_job(SUB, RG, "seed-1", customer_disk(&["A", "B"]), "me", T0).unwrap();
    assert_eq!(loc, "westeurope");
    assert_eq!(s.poll(SUB, &op).unwrap(), Poll::Running);
    assert!(matches!(s.poll(SUB, &op).unwrap(), Poll::DoneAt { .. }));
    assert_eq!(status(&s, "seed-1"), "AwaitingShipmentDetails");
    // Keys and the carrier account are kept apart, never in the resource.
    let (r, _) = s.get_job(SUB, RG, "seed-1", true).unwrap();
    let shown = serde_json::to_string(&r).unwrap();
    assert!(!shown.contains("key-of-A") && !shown.contains("987"), "{shown}");
    assert!(s.get_job(SUB, RG, "seed-1", false).unwrap().0.properties.unwrap().details.is_none());

    s.mark_shipped(SUB, RG, "seed-1", "FedEx", "T-1", T0 + 1).unwrap();
    assert_eq!(status(&s, "seed-1"), "ShippedToAzureDC");
    assert_eq!(s.cancel(SUB, RG, "seed-1", "too late", T0 + 2).unwrap_err().code, "CancelNotAllowed");
    s.arrive(SUB, RG, "seed-1", &["A".into()], T0 + 3).unwrap();
    assert_eq!(copy_status(&s, "seed-1", "B").as_deref(), Some("DriveNotReceived"));
    s.start_copy(SUB, RG, "seed-1", "A", 100, T0 + 4).unwrap();
    assert_eq!(status(&s, "seed-1"), "DataCopy");
    assert_eq!(s.start_copy(SUB, RG, "seed-1", "B", 100, T0 + 4).unwrap_err().code, "DiskNotReceived");
    s.finish_copy(SUB, RG, "seed-1", "A", CopyStatus::Completed, 100, 3, 0, Some("log".into()), None).unwrap();
    // One disk copied, one never received: completed with errors.
    assert_eq!(s.complete(SUB, RG, "seed-1", T0 + 5).unwrap(), StageName::CompletedWithErrors);
    let stages: Vec<String> =
        s.job(SUB, RG, "seed-1").unwrap().stages().iter().filter_map(|x| x.stage_name.clone()).collect();
    assert_eq!(stages, ["AwaitingShipmentDetails", "ShippedToAzureDC", "AtAzureDC", "DataCopy", "CompletedWithErrors"]);
    assert_eq!(s.job(SUB, RG, "seed-1").unwrap().props().is_deletable, Some(true));
}

#[test]
fn a_data_box_disk_order_is_prepared_delivered_and_gives_its_passkey_only_then() {
    let mut s = state();
    s.put_job(SUB, RG, "order-1", databox_disk(2), "me", T0).unwrap();
    assert_eq!(status(&s, "order-1"), "DeviceOrdered");
    assert_eq!(s.list_credentials(SUB, RG, "order-1").unwrap_err().code, "DevicesNotDelivered");
    assert!(s.prepare_disks(SUB, RG, "order-1", Some(6), T0 + 1).is_err(), "an order holds at most 5 disks");
    let serials = s.prepare_disks(SUB, RG, "order-1", None, T0 + 1).unwrap();
    assert_eq!(serials.len(), 2);
    s.dispatch(SUB, RG, "order-1", "UPS", "1Z", T0 + 2).unwrap();
    assert_eq!(s.list_credentials(SUB, RG, "order-1").unwrap_err().code, "DevicesNotDelivered");
    s.deliver(SUB, RG, "order-1", T0 + 3).unwrap();
    let creds = s.list_credentials(SUB, RG, "order-1").unwrap();
    let secrets = creds.value.unwrap().remove(0).job_secrets.unwrap();
    let model::JobSecrets::DataBoxDisk(d) = secrets else { panic!("{secrets:?}") };
    assert!(d.pass_key.is_some());
    assert_eq!(d.disk_secrets.unwrap().len(), 2);
    s.pick_up(SUB, RG, "order-1", "UPS", "1Z-back", T0 + 4).unwrap();
    s.arrive(SUB, RG, "order-1", &serials, T0 + 5).unwrap();
    for serial in &serials {
        s.start_copy(SUB, RG, "order-1", serial, 10, T0 + 6).unwrap();
        s.finish_copy(SUB, RG, "order-1", serial, CopyStatus::Completed, 10, 1, 0, None, None).unwrap();
    }
    assert_eq!(s.complete(SUB, RG, "order-1", T0 + 7).unwrap(), StageName::Completed);
    assert_eq!(s.mark_shipped(SUB, RG, "order-1", "x", "y", T0).unwrap_err().code, "InvalidOperationForSku");
}

#[test]
fn a_copy_waiting_for_the_customer_is_mitigated() {
    let mut s = state();
    s.put_job(SUB, RG, "seed-2", customer_disk(&["A"]), "me", T0).unwrap();
    let mitigation =
        model::MitigateJobRequest { customer_resolution_code: Some("Resume".into()), ..Default::default() };
    assert_eq!(s.mitigate(SUB, RG, "seed-2", mitigation.clone(), T0).unwrap_err().code, "NoActionRequired");
    s.mark_shipped(SUB, RG, "seed-2", "FedEx", "T-2", T0).unwrap();
    s.arrive(SUB, RG, "seed-2", &["A".into()], T0).unwrap();
    s.wait_for_customer(SUB, RG, "seed-2", Some("A"), T0 + 1).unwrap();
    let j = s.job(SUB, RG, "seed-2").unwrap();
    assert_eq!(j.stages().last().unwrap().stage_status.as_deref(), Some("WaitingForCustomerAction"));
    assert_eq!(j.props().error.as_ref().unwrap().code.as_deref(), Some("SsemUserCopyErrorWaitingForAction"));
    let bad = model::MitigateJobRequest { customer_resolution_code: Some("Nonsense".into()), ..Default::default() };
    assert_eq!(s.mitigate(SUB, RG, "seed-2", bad, T0).unwrap_err().code, "InvalidResolutionCode");
    s.mitigate(SUB, RG, "seed-2", mitigation, T0 + 2).unwrap();
    let j = s.job(SUB, RG, "seed-2").unwrap();
    assert_eq!(j.stages().last().unwrap().stage_status.as_deref(), Some("CustomerActionPerformed"));
    assert!(j.props().error.is_none());
}

#[test]
fn azure_refuses_what_it_should() {
    let mut s = state();
    let code = |r: ApiResult<(String, String)>| r.unwrap_err().code;
    assert_eq!(code(s.put_job(SUB, "other", "seed-x", customer_disk(&["A"]), "me", T0)), "ResourceGroupNotFound");
    assert_eq!(code(s.put_job(SUB, RG, "x", customer_disk(&["A"]), "me", T0)), "InvalidJobName");
    let eleven: Vec<String> = (0..11).map(|i| format!("D{i}")).collect();
    let refs: Vec<&str> = eleven.iter().map(String::as_str).collect();
    assert_eq!(code(s.put_job(SUB, RG, "seed-x", customer_disk(&refs), "me", T0)), "InvalidDiskCount");
    assert_eq!(code(s.put_job(SUB, RG, "seed-x", databox_disk(6), "me", T0)), "InvalidDiskCount");
    s.put_job(SUB, RG, "seed-a", customer_disk(&["A"]), "me", T0).unwrap();
    assert_eq!(code(s.put_job(SUB, RG, "seed-b", customer_disk(&["A"]), "me", T0)), "DuplicateDiskSerial");
    s.put_job(SUB, RG, "seed-b", customer_disk(&["B"]), "me", T0).unwrap();
    s.mark_shipped(SUB, RG, "seed-a", "FedEx", "SAME", T0).unwrap();
    assert_eq!(s.mark_shipped(SUB, RG, "seed-b", "FedEx", "SAME", T0).unwrap_err().code, "DuplicateTrackingNumber");
    // A PUT that changes the location of a job is refused; one that changes the contact applies.
    let mut moved = customer_disk(&["B"]);
    moved.location = Some("westus".into());
    assert_eq!(code(s.put_job(SUB, RG, "seed-b", moved, "me", T0)), "LocationCannotBeChanged");
    let mut again = customer_disk(&["B"]);
    if let Some(JobDetails::DataBoxCustomerDisk(d)) = again.properties.as_mut().and_then(|p| p.details.as_mut()) {
        d.contact_details.as_mut().unwrap().contact_name = Some("Night ops".into());
    }
    s.put_job(SUB, RG, "seed-b", again, "me", T0).unwrap();
    let (r, _) = s.get_job(SUB, RG, "seed-b", true).unwrap();
    let Some(JobDetails::DataBoxCustomerDisk(d)) = r.properties.unwrap().details else { panic!() };
    assert_eq!(d.contact_details.unwrap().contact_name.as_deref(), Some("Night ops"));
    // A stale ETag.
    let err = s.patch_job(SUB, RG, "seed-b", Default::default(), Some("\"stale\""), "me", T0).unwrap_err();
    assert_eq!(err.status, 412);
}

#[test]
fn a_job_without_shipment_details_is_deleted_after_14_days() {
    let mut s = state();
    s.put_job(SUB, RG, "seed-3", customer_disk(&["A"]), "me", T0).unwrap();
    s.put_job(SUB, RG, "seed-4", customer_disk(&["B"]), "me", T0).unwrap();
    s.mark_shipped(SUB, RG, "seed-4", "FedEx", "T-4", T0).unwrap();
    assert!(s.tick(T0 + 13 * DAY_MS).is_empty());
    let said = s.tick(T0 + 14 * DAY_MS);
    assert_eq!(said.len(), 1, "{said:?}");
    assert_eq!(s.job(SUB, RG, "seed-3").unwrap_err().status, 404);
    assert!(s.job(SUB, RG, "seed-4").is_ok());
    // A delete of what is gone is no error (the HTTP face answers 204).
    assert_eq!(s.delete_job(SUB, RG, "seed-3").unwrap(), None);
}
