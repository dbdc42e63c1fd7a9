//! `Microsoft.ImportExport` 2021-01-01 as Azure Resource Manager sends and takes it.
//!
//! Every field is optional on the wire (Azure omits what is not set) and is skipped when
//! `None`, so what we send has exactly the fields we set. States stay strings: an unknown
//! state from Azure is kept and shown as it came, never a parse error ([`JobState::parse`],
//! [`DriveState::parse`] give the known ones). Recovery passwords are never in `Debug`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub const API_VERSION: &str = "2021-01-01";
pub const PROVIDER: &str = "Microsoft.ImportExport";
pub const JOB_TYPE: &str = "Microsoft.ImportExport/jobs";
pub const LOCATION_TYPE: &str = "Microsoft.ImportExport/locations";

/// A secret string (a BitLocker key): serialized as is, never shown by `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A job as GET, PUT, PATCH and list answer it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobResponse {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_data: Option<SystemData>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub properties: Option<JobDetails>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<IdentityDetails>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, serde_json::Value>>,
}

/// ARM's `systemData` (in the examples, not in the definitions).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SystemData {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_by_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_modified_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_modified_by_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_modified_at: Option<String>,
}

/// The body of a job create (PUT).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PutJobParameters {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub properties: Option<JobDetails>,
}

/// The body of a job update (PATCH).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateJobParameters {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub properties: Option<UpdateJobProperties>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateJobProperties {
    /// If set, must be true: asks the service to cancel the job.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancel_requested: Option<bool>,
    /// If set, must be "Shipping": the package is on its way.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub return_address: Option<ReturnAddress>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub return_shipping: Option<ReturnShipping>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery_package: Option<DeliveryPackageInformation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup_drive_manifest: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drive_list: Option<Vec<DriveStatus>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobDetails {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_account_id: Option<String>,
    /// "Import" or "Export".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub return_address: Option<ReturnAddress>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub return_shipping: Option<ReturnShipping>,
    /// Where to ship the drives (the datacenter), set by the service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shipping_information: Option<ShippingInformation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery_package: Option<DeliveryPackageInformation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub return_package: Option<PackageInformation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diagnostics_path: Option<String>,
    /// "Error" or "Verbose".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup_drive_manifest: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancel_requested: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub percent_complete: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incomplete_blob_list_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drive_list: Option<Vec<DriveStatus>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub export: Option<Export>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provisioning_state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encryption_key: Option<EncryptionKeyDetails>,
    /// Not in the definitions; one of the official examples (ListJobsInSubscription) has it
    /// here as well as beside `properties`, so it is read and written back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_data: Option<SystemData>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DriveStatus {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drive_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bit_locker_key: Option<Secret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest_hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drive_header_hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub copy_status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub percent_complete: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verbose_log_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_log_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_succeeded: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReturnAddress {
    pub recipient_name: String,
    pub street_address1: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub street_address2: Option<String>,
    pub city: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_or_province: Option<String>,
    pub postal_code: String,
    pub country_or_region: String,
    pub phone: String,
    pub email: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReturnShipping {
    pub carrier_name: String,
    pub carrier_account_number: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShippingInformation {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipient_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub street_address1: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub street_address2: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_or_province: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country_or_region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub additional_information: Option<String>,
}

impl ShippingInformation {
    /// The address as lines for a label: recipient, street, city line, country, phone.
    pub fn address_lines(&self) -> Vec<String> {
        LocationProperties {
            recipient_name: self.recipient_name.clone(),
            street_address1: self.street_address1.clone(),
            street_address2: self.street_address2.clone(),
            city: self.city.clone(),
            state_or_province: self.state_or_province.clone(),
            postal_code: self.postal_code.clone(),
            country_or_region: self.country_or_region.clone(),
            phone: self.phone.clone(),
            ..Default::default()
        }
        .address_lines()
    }
}

/// The package the customer ships to the datacenter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryPackageInformation {
    pub carrier_name: String,
    pub tracking_number: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drive_count: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ship_date: Option<String>,
}

/// The package the datacenter ships back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PackageInformation {
    pub carrier_name: String,
    pub tracking_number: String,
    pub drive_count: i64,
    pub ship_date: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Export {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blob_list: Option<BlobList>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blob_list_blob_path: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlobList {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blob_path: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blob_path_prefix: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EncryptionKeyDetails {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kek_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kek_url: Option<String>,
    #[serde(rename = "kekVaultResourceID", skip_serializing_if = "Option::is_none")]
    pub kek_vault_resource_id: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentityDetails {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListJobsResponse {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_link: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Vec<JobResponse>>,
}

/// An Azure datacenter location that takes drives, with its shipping address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Location {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub properties: Option<LocationProperties>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocationProperties {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipient_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub street_address1: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub street_address2: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_or_province: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country_or_region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub additional_shipping_information: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub supported_carriers: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alternate_locations: Option<Vec<String>>,
}

impl LocationProperties {
    /// The address as lines, for a label or a screen.
    pub fn address_lines(&self) -> Vec<String> {
        let city = [self.city.as_deref(), self.state_or_province.as_deref(), self.postal_code.as_deref()]
            .into_iter()
            .flatten()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        [
            self.recipient_name.clone(),
            self.street_address1.clone(),
            self.street_address2.clone(),
            Some(city),
            self.country_or_region.clone(),
            self.phone.as_ref().map(|p| format!("phone {p}")),
        ]
        .into_iter()
        .flatten()
        .filter(|s| !s.trim().is_empty())
        .collect()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocationsResponse {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Vec<Location>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetBitLockerKeysResponse {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Vec<DriveBitLockerKey>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DriveBitLockerKey {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bit_locker_key: Option<Secret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drive_id: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListOperationsResponse {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Vec<Operation>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    pub name: String,
    pub display: OperationDisplay,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationDisplay {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// ARM's error envelope: `{"error": {"code", "message", "target", "details", "innererror"}}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorResponse {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrorInfo {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Vec<ErrorDetail>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub innererror: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl ErrorResponse {
    pub fn new(code: &str, message: impl Into<String>) -> ErrorResponse {
        ErrorResponse {
            error: Some(ErrorInfo { code: Some(code.into()), message: Some(message.into()), ..Default::default() }),
        }
    }
}

/// The job states of an import job, in order; Azure may add others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Creating,
    Shipping,
    Received,
    Transferring,
    Packaging,
    Completed,
    Closed,
}

impl JobState {
    pub const ALL: [JobState; 7] = [
        JobState::Creating,
        JobState::Shipping,
        JobState::Received,
        JobState::Transferring,
        JobState::Packaging,
        JobState::Completed,
        JobState::Closed,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Creating => "Creating",
            JobState::Shipping => "Shipping",
            JobState::Received => "Received",
            JobState::Transferring => "Transferring",
            JobState::Packaging => "Packaging",
            JobState::Completed => "Completed",
            JobState::Closed => "Closed",
        }
    }
    /// `None` for a state this version does not know (keep the raw string).
    pub fn parse(s: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|j| j.as_str() == s)
    }
}

/// The states of a drive of an import job; Azure may add others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriveState {
    Specified,
    Received,
    NeverReceived,
    Transferring,
    Completed,
    CompletedMoreInfo,
    ShippedBack,
}

impl DriveState {
    pub const ALL: [DriveState; 7] = [
        DriveState::Specified,
        DriveState::Received,
        DriveState::NeverReceived,
        DriveState::Transferring,
        DriveState::Completed,
        DriveState::CompletedMoreInfo,
        DriveState::ShippedBack,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            DriveState::Specified => "Specified",
            DriveState::Received => "Received",
            DriveState::NeverReceived => "NeverReceived",
            DriveState::Transferring => "Transferring",
            DriveState::Completed => "Completed",
            DriveState::CompletedMoreInfo => "CompletedMoreInfo",
            DriveState::ShippedBack => "ShippedBack",
        }
    }
    pub fn parse(s: &str) -> Option<DriveState> {
        DriveState::ALL.into_iter().find(|d| d.as_str() == s)
    }
}

/// ARM resource ids and paths of this provider.
pub mod paths {
    /// `/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ImportExport/jobs/{job}`
    pub fn job_id(subscription: &str, resource_group: &str, job: &str) -> String {
        format!(
            "/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/{}/jobs/{job}",
            super::PROVIDER
        )
    }

    /// `/providers/Microsoft.ImportExport/locations/{location}`
    pub fn location_id(location: &str) -> String {
        format!("/providers/{}/locations/{location}", super::PROVIDER)
    }

    /// A job name Azure takes: 2-64 characters, letters, digits, '-' and '_', starting with a
    /// letter or digit.
    pub fn valid_job_name(name: &str) -> bool {
        (2..=64).contains(&name.len())
            && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    }
}

#[cfg(test)]
mod tests;
