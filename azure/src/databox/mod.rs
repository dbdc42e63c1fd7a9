//! `Microsoft.DataBox`, api-version 2025-02-01, as Azure Resource Manager sends and takes it:
//! the job kinds seedship ships seeds with (customer disks, `DataBoxCustomerDisk`; Microsoft's
//! disks, `DataBoxDisk`), and Azure's constants for them, in one place.
//!
//! [`model`] is generated from the official OpenAPI document (`azure/spec/`), one type per
//! definition. States stay strings there: [`StageName`], [`StageStatus`] and [`CopyStatus`] give
//! the known values, and a value Azure adds later is kept raw, never a parse error. Keys and
//! passkeys are [`Secret`]s, which `Debug` never shows.

pub mod copylog;
pub mod model;

use serde::{Deserialize, Serialize};

pub const API_VERSION: &str = "2025-02-01";
pub const PROVIDER: &str = "Microsoft.DataBox";
pub const JOB_TYPE: &str = "Microsoft.DataBox/jobs";

/// Disks in one customer-disk job: 1 to 10.
pub const MAX_CUSTOMER_DISKS: usize = 10;
/// Data Box Disk: 1 to 5 disks per order.
pub const MAX_DATABOX_DISKS: usize = 5;
/// The size of one Data Box Disk, as `preferredDisks` keys it (TB).
pub const DATABOX_DISK_TB: u32 = 8;
/// What one Data Box Disk holds (about 7 TB usable of 8).
pub const DATABOX_DISK_USABLE_BYTES: u64 = 7_000_000_000_000;
/// What Azure Backup's offline backup takes on Data Box Disk per server (after compression);
/// above it, Azure Backup documents Data Box (the appliance) instead.
pub const DATABOX_DISK_PER_SERVER_BYTES: u64 = 7_200_000_000_000;
/// Days from job creation to give the tracking number, or the job expires.
pub const SHIPMENT_DETAILS_DAYS: i64 = 14;

/// A secret string (a BitLocker key, a passkey, a carrier account): serialized as is, never
/// shown by `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The two kinds of job a seed ships with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sku {
    /// The operator's own disks (up to 10), BitLocker and a drive manifest on each.
    CustomerDisk,
    /// Microsoft's disks: ordered, delivered, unlocked with a passkey, filled, sent back.
    DataBoxDisk,
}

impl Sku {
    pub const ALL: [Sku; 2] = [Sku::CustomerDisk, Sku::DataBoxDisk];

    /// `sku.name` and `jobDetailsType`.
    pub fn as_str(self) -> &'static str {
        match self {
            Sku::CustomerDisk => "DataBoxCustomerDisk",
            Sku::DataBoxDisk => "DataBoxDisk",
        }
    }

    pub fn parse(s: &str) -> Option<Sku> {
        Sku::ALL.into_iter().find(|k| k.as_str().eq_ignore_ascii_case(s))
    }

    /// At most this many disks in one job.
    pub fn max_disks(self) -> usize {
        match self {
            Sku::CustomerDisk => MAX_CUSTOMER_DISKS,
            Sku::DataBoxDisk => MAX_DATABOX_DISKS,
        }
    }
}

/// A closed list of Azure's known values for an open string enum: `parse` gives `None` for a
/// value this version does not know (the caller keeps the raw string).
macro_rules! known_values {
    ($(#[$doc:meta])* $name:ident: $($variant:ident = $text:literal),+ $(,)?) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
            pub fn parse(s: &str) -> Option<$name> {
                $name::ALL.iter().copied().find(|v| v.as_str() == s)
            }
        }
    };
}

known_values! {
    /// A job's `status` and its stages' `stageName` (`StageName`).
    StageName:
    DeviceOrdered = "DeviceOrdered",
    DevicePrepared = "DevicePrepared",
    Dispatched = "Dispatched",
    Delivered = "Delivered",
    PickedUp = "PickedUp",
    AtAzureDc = "AtAzureDC",
    DataCopy = "DataCopy",
    Completed = "Completed",
    CompletedWithErrors = "CompletedWithErrors",
    Cancelled = "Cancelled",
    FailedIssueReportedAtCustomer = "Failed_IssueReportedAtCustomer",
    FailedIssueDetectedAtAzureDc = "Failed_IssueDetectedAtAzureDC",
    Aborted = "Aborted",
    CompletedWithWarnings = "CompletedWithWarnings",
    ReadyToDispatchFromAzureDc = "ReadyToDispatchFromAzureDC",
    ReadyToReceiveAtAzureDc = "ReadyToReceiveAtAzureDC",
    Created = "Created",
    ShippedToAzureDc = "ShippedToAzureDC",
    AwaitingShipmentDetails = "AwaitingShipmentDetails",
    PreparingToShipFromAzureDc = "PreparingToShipFromAzureDC",
    ShippedToCustomer = "ShippedToCustomer",
}

known_values! {
    /// A stage's `stageStatus` (`StageStatus`).
    StageStatus:
    None = "None",
    InProgress = "InProgress",
    Succeeded = "Succeeded",
    Failed = "Failed",
    Cancelled = "Cancelled",
    Cancelling = "Cancelling",
    SucceededWithErrors = "SucceededWithErrors",
    WaitingForCustomerAction = "WaitingForCustomerAction",
    SucceededWithWarnings = "SucceededWithWarnings",
    WaitingForCustomerActionForKek = "WaitingForCustomerActionForKek",
    WaitingForCustomerActionForCleanUp = "WaitingForCustomerActionForCleanUp",
    CustomerActionPerformedForCleanUp = "CustomerActionPerformedForCleanUp",
    CustomerActionPerformed = "CustomerActionPerformed",
}

known_values! {
    /// A disk's `copyStatus` (customer disks) or `status` (Data Box Disk) (`CopyStatus`).
    CopyStatus:
    NotStarted = "NotStarted",
    InProgress = "InProgress",
    Completed = "Completed",
    CompletedWithErrors = "CompletedWithErrors",
    Failed = "Failed",
    NotReturned = "NotReturned",
    HardwareError = "HardwareError",
    DeviceFormatted = "DeviceFormatted",
    DeviceMetadataModified = "DeviceMetadataModified",
    StorageAccountNotAccessible = "StorageAccountNotAccessible",
    UnsupportedData = "UnsupportedData",
    DriveNotReceived = "DriveNotReceived",
    UnsupportedDrive = "UnsupportedDrive",
    OtherServiceError = "OtherServiceError",
    OtherUserError = "OtherUserError",
    DriveNotDetected = "DriveNotDetected",
    DriveCorrupted = "DriveCorrupted",
    MetadataFilesModifiedOrRemoved = "MetadataFilesModifiedOrRemoved",
}

known_values! {
    /// What `mitigate` answers a `WaitingForCustomerAction` with (`CustomerResolutionCode`).
    ResolutionCode:
    None = "None",
    MoveToCleanUpDevice = "MoveToCleanUpDevice",
    Resume = "Resume",
    Restart = "Restart",
    ReachOutToOperation = "ReachOutToOperation",
}

impl StageStatus {
    /// The service waits for the customer (`mitigate` answers it).
    pub fn waits_for_customer(self) -> bool {
        matches!(
            self,
            StageStatus::WaitingForCustomerAction
                | StageStatus::WaitingForCustomerActionForKek
                | StageStatus::WaitingForCustomerActionForCleanUp
        )
    }
}

impl CopyStatus {
    /// A disk whose copy ended without all its data (a failure of the disk or of the copy).
    pub fn is_failure(self) -> bool {
        !matches!(
            self,
            CopyStatus::NotStarted | CopyStatus::InProgress | CopyStatus::Completed | CopyStatus::CompletedWithErrors
        )
    }

    /// What an operator reads for it.
    pub fn describe(self) -> &'static str {
        match self {
            CopyStatus::NotStarted => "the copy has not started",
            CopyStatus::InProgress => "the copy is running",
            CopyStatus::Completed => "copied",
            CopyStatus::CompletedWithErrors => "copied with errors: some files were not (see the copy log)",
            CopyStatus::Failed => "the copy failed",
            CopyStatus::NotReturned => "the disk was not returned",
            CopyStatus::HardwareError => "the disk has a hardware error",
            CopyStatus::DeviceFormatted => "the disk was formatted",
            CopyStatus::DeviceMetadataModified => "the disk's metadata was changed",
            CopyStatus::StorageAccountNotAccessible => "the storage account could not be reached",
            CopyStatus::UnsupportedData => "the disk holds data Azure does not take",
            CopyStatus::DriveNotReceived => "the disk never arrived at the datacenter",
            CopyStatus::UnsupportedDrive => "the disk is not a kind Azure takes",
            CopyStatus::OtherServiceError => "the service failed",
            CopyStatus::OtherUserError => "a customer-side error",
            CopyStatus::DriveNotDetected => "the disk was not detected",
            CopyStatus::DriveCorrupted => "the disk is corrupted",
            CopyStatus::MetadataFilesModifiedOrRemoved => {
                "the drive manifest or metadata files were changed or removed"
            }
        }
    }
}

/// ARM resource ids and names of this provider.
pub mod paths {
    /// `/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.DataBox/jobs/{job}`
    pub fn job_id(subscription: &str, resource_group: &str, job: &str) -> String {
        format!("{}/jobs/{job}", rg_prefix(subscription, resource_group))
    }

    /// `/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.DataBox`
    pub fn rg_prefix(subscription: &str, resource_group: &str) -> String {
        format!("/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/{}", super::PROVIDER)
    }

    /// A job name both the API (`^[-\w\.]+$`, 3-24) and the portal (letters, digits and '-',
    /// a letter or digit first and last) take.
    pub fn valid_job_name(name: &str) -> bool {
        (3..=24).contains(&name.len())
            && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && name.chars().last().is_some_and(|c| c.is_ascii_alphanumeric())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    }
}

#[cfg(test)]
mod tests;
