//! What the coordinator sends Azure: the `Microsoft.DataBox` job of a seed (customer disks:
//! each disk's serial with its manifest file, the manifest's MD5 in upper-case hex and its
//! BitLocker key; Data Box Disk: the order of Microsoft's disks), the `validateInputs` that comes before it, the datacenter address request,
//! and the job's tags. Pure: built from the intent, the drives and the settings.

use seedship_azure::databox::{Secret, Sku, model};

use super::config::AzureConfig;
use crate::domain::import::JobIntent;
use crate::domain::model::{DriveSpec, RecoveryPassword};

/// The tag that names the seed on the job (seen in the portal, and in lists).
pub const SEED_TAG: &str = "seedship-seed";

fn import_details(intent: &JobIntent, cfg: &AzureConfig) -> Vec<model::DataImportDetails> {
    vec![model::DataImportDetails {
        account_details: Some(model::DataAccountDetails::StorageAccount(model::StorageAccountDetails {
            data_account_type: Some("StorageAccount".into()),
            storage_account_id: Some(intent.storage_account_id.clone()),
            ..Default::default()
        })),
        log_collection_level: Some(cfg.log_level.clone()),
    }]
}

/// The PUT body of a customer-disk job: one storage account, every disk by serial (manifest
/// file, manifest hash, BitLocker key), the contact, the return address and carrier.
pub fn customer_disk_job(
    intent: &JobIntent,
    cfg: &AzureConfig,
    drives: Vec<(DriveSpec, RecoveryPassword)>,
) -> model::JobResource {
    let disks = drives
        .into_iter()
        .map(|(d, key)| {
            (
                d.drive_id,
                model::ImportDiskDetails {
                    manifest_file: Some(d.manifest_file),
                    manifest_hash: Some(d.manifest_hash.to_ascii_uppercase()),
                    bit_locker_key: Some(Secret(key.0)),
                    ..Default::default()
                },
            )
        })
        .collect();
    let details = model::DataBoxCustomerDiskJobDetails {
        job_details_type: Some(Sku::CustomerDisk.as_str().into()),
        contact_details: Some(cfg.return_address.contact()),
        shipping_address: Some(cfg.return_address.address()),
        data_import_details: Some(import_details(intent, cfg)),
        key_encryption_key: Some(model::KeyEncryptionKey {
            kek_type: Some("MicrosoftManaged".into()),
            ..Default::default()
        }),
        import_disk_details_collection: Some(disks),
        return_to_customer_package_details: Some(cfg.return_shipping.package()),
        enable_manifest_backup: Some(true),
        ..Default::default()
    };
    model::JobResource {
        location: Some(intent.location.clone()),
        tags: Some([(SEED_TAG.to_string(), intent.seed_id.clone())].into()),
        sku: Some(model::Sku { name: Some(Sku::CustomerDisk.as_str().into()), ..Default::default() }),
        properties: Some(model::JobProperties {
            transfer_type: Some("ImportToAzure".into()),
            details: Some(model::JobDetails::DataBoxCustomerDisk(details)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The PUT body of a Data Box Disk order: `intent.disks` disks of 8 TB, delivered to the
/// return address (where the copy station is), and one storage account to import into.
pub fn databox_disk_job(intent: &JobIntent, cfg: &AzureConfig) -> model::JobResource {
    let details = model::DataBoxDiskJobDetails {
        job_details_type: Some(Sku::DataBoxDisk.as_str().into()),
        contact_details: Some(cfg.return_address.contact()),
        shipping_address: Some(cfg.return_address.address()),
        data_import_details: Some(import_details(intent, cfg)),
        preferred_disks: Some([(seedship_azure::databox::DATABOX_DISK_TB.to_string(), i64::from(intent.disks))].into()),
        key_encryption_key: Some(model::KeyEncryptionKey {
            kek_type: Some("MicrosoftManaged".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    model::JobResource {
        location: Some(intent.location.clone()),
        tags: Some([(SEED_TAG.to_string(), intent.seed_id.clone())].into()),
        sku: Some(model::Sku { name: Some(Sku::DataBoxDisk.as_str().into()), ..Default::default() }),
        properties: Some(model::JobProperties {
            transfer_type: Some("ImportToAzure".into()),
            details: Some(model::JobDetails::DataBoxDisk(details)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The PATCH that brings a job's contact, return address and return carrier in line with the
/// settings, or `None` when they already are (the carrier's account number is never shown back,
/// so only its name is compared).
pub fn details_update(job: &model::JobResource, cfg: &AzureConfig) -> Option<model::JobResourceUpdateParameter> {
    let d = match job.properties.as_ref()?.details.as_ref()? {
        model::JobDetails::DataBoxCustomerDisk(d) => d,
        _ => return None,
    };
    let contact = cfg.return_address.contact();
    let address = cfg.return_address.address();
    let carrier = cfg.return_shipping.package();
    let same_contact = d.contact_details.as_ref().is_some_and(|c| {
        c.contact_name == contact.contact_name && c.phone == contact.phone && c.email_list == contact.email_list
    });
    let same_address = d.shipping_address.as_ref().is_some_and(|a| {
        a.street_address1 == address.street_address1
            && a.street_address2 == address.street_address2
            && a.city == address.city
            && a.state_or_province == address.state_or_province
            && a.country == address.country
            && a.postal_code == address.postal_code
            && a.company_name == address.company_name
    });
    let same_carrier =
        d.return_to_customer_package_details.as_ref().is_some_and(|r| r.carrier_name == carrier.carrier_name);
    if same_contact && same_address && same_carrier {
        return None;
    }
    Some(model::JobResourceUpdateParameter {
        properties: Some(model::UpdateJobProperties {
            details: Some(model::UpdateJobDetails {
                contact_details: Some(contact),
                shipping_address: Some(address),
                return_to_customer_package_details: Some(carrier),
                ..Default::default()
            }),
        }),
        ..Default::default()
    })
}

/// What `validateInputs` is asked before the PUT: the return address, the subscription, the
/// SKU in the region, the order limit, and the storage account.
pub fn validation(intent: &JobIntent, cfg: &AzureConfig, sku: Sku) -> model::ValidationRequest {
    use model::ValidationInputRequest as R;
    let device = Some(sku.as_str().to_string());
    let transfer = Some("ImportToAzure".to_string());
    model::ValidationRequest::JobCreationValidation(model::CreateJobValidations {
        validation_category: Some("JobCreationValidation".into()),
        individual_request_details: Some(vec![
            R::ValidateAddress(model::ValidateAddress {
                validation_type: Some("ValidateAddress".into()),
                shipping_address: Some(cfg.return_address.address()),
                device_type: device.clone(),
                ..Default::default()
            }),
            R::ValidateSubscriptionIsAllowedToCreateJob(model::SubscriptionIsAllowedToCreateJobValidationRequest {
                validation_type: Some("ValidateSubscriptionIsAllowedToCreateJob".into()),
            }),
            R::ValidateSkuAvailability(model::SkuAvailabilityValidationRequest {
                validation_type: Some("ValidateSkuAvailability".into()),
                device_type: device.clone(),
                transfer_type: transfer.clone(),
                country: Some(cfg.return_address.country.clone()),
                location: Some(intent.location.clone()),
                ..Default::default()
            }),
            R::ValidateCreateOrderLimit(model::CreateOrderLimitForSubscriptionValidationRequest {
                validation_type: Some("ValidateCreateOrderLimit".into()),
                device_type: device.clone(),
                ..Default::default()
            }),
            R::ValidateDataTransferDetails(model::DataTransferDetailsValidationRequest {
                validation_type: Some("ValidateDataTransferDetails".into()),
                data_import_details: Some(import_details(intent, cfg)),
                device_type: device,
                transfer_type: transfer,
                ..Default::default()
            }),
        ]),
    })
}

/// The datacenter address request of `regionConfiguration`.
pub fn address_request(location: &str, sku: Sku) -> model::RegionConfigurationRequest {
    model::RegionConfigurationRequest {
        datacenter_address_request: Some(model::DatacenterAddressRequest {
            storage_location: Some(location.into()),
            sku_name: Some(sku.as_str().into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}
