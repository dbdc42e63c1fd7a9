//! The rules of the emulated `Microsoft.DataBox` service and of its datacenter: pure functions
//! over [`ServiceState`], which the HTTP face persists after every change. Time comes in as
//! `now_ms`; nothing here does I/O.
//!
//! The job kinds are the two seedship ships with: customer disks (`DataBoxCustomerDisk`) and
//! Microsoft's disks (`DataBoxDisk`). Their stages:
//!
//! ```text
//! DataBoxCustomerDisk: AwaitingShipmentDetails -markDevicesShipped-> ShippedToAzureDC -arrive-> AtAzureDC
//! DataBoxDisk:         DeviceOrdered -prepare-> DevicePrepared -dispatch-> Dispatched -deliver-> Delivered
//!                      -pickup-> PickedUp -arrive-> AtAzureDC
//! both:                AtAzureDC -copy-> DataCopy -> Completed | CompletedWithErrors | CompletedWithWarnings
//!                      | Failed_IssueDetectedAtAzureDC;  cancel (while cancellable) -> Cancelled
//! ```
//!
//! A customer-disk job with no shipment details after 14 days is deleted, as Azure does.
//! Error codes for rules Azure enforces without documenting a code are ours and stable (see
//! `docs/emulator.md`).

use std::collections::{BTreeMap, BTreeSet};

use seedship_azure::databox::model::{
    self, CopyLogDetails, DataBoxCustomerDiskCopyLogDetails, DataBoxCustomerDiskCopyProgress,
    DataBoxDiskCopyLogDetails, DataBoxDiskCopyProgress, DatacenterAddressLocationResponse, DatacenterAddressResponse,
    JobDetails, JobProperties, JobResource, JobResourceUpdateParameter, JobSecrets, JobStages, PackageShippingDetails,
};
use seedship_azure::databox::{
    self as databox, CopyStatus, MAX_CUSTOMER_DISKS, MAX_DATABOX_DISKS, ResolutionCode, Secret, Sku, StageName,
    StageStatus,
};
use serde::{Deserialize, Serialize};

pub const DAY_MS: i64 = 86_400_000;

/// An answer the HTTP face turns into a status code and ARM's error envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into() }
    }
    pub fn bad(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(400, code, message)
    }
    pub fn conflict(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(409, code, message)
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// What an LRO is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OperationKind {
    Create,
    Update,
    Delete,
}

/// A long-running operation, as its status monitor answers it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Operation {
    pub subscription: String,
    pub resource_group: String,
    pub job: String,
    pub location: String,
    pub kind: OperationKind,
    /// Polls still answered "running" (202 with a fresh monitor URL) before it is done.
    pub polls_left: u32,
}

/// What polling a status monitor says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Poll {
    /// Still running: 202, and the monitor again (with fresh signature values).
    Running,
    /// A create or update is done: 202 whose location is the job itself (as Azure answers).
    DoneAt { job_path: String },
    /// A delete is done: 204.
    Deleted,
}

/// One job as the service keeps it: the resource as GET answers it (with its details), and its
/// secrets apart from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredJob {
    pub subscription: String,
    pub resource_group: String,
    pub name: String,
    pub sku: String,
    pub resource: JobResource,
    /// Disk serial → BitLocker key (given in the PUT for customer disks; made for Data Box Disk).
    pub disk_keys: BTreeMap<String, Secret>,
    /// The Data Box Disk passkey (the customer's, or made).
    pub passkey: Option<Secret>,
    pub passkey_user_defined: bool,
    /// The return carrier's account number (customer disks), never in a GET.
    pub carrier_account: Option<Secret>,
    /// Changes with every change of the job: the `ETag`.
    pub version: u64,
    pub created_ms: i64,
    /// Disks the datacenter received (by serial).
    pub received: BTreeSet<String>,
}

impl StoredJob {
    pub fn sku(&self) -> Option<Sku> {
        Sku::parse(&self.sku)
    }
    fn props(&self) -> &JobProperties {
        self.resource.properties.as_ref().expect("stored jobs have properties")
    }
    fn props_mut(&mut self) -> &mut JobProperties {
        self.resource.properties.as_mut().expect("stored jobs have properties")
    }
    pub fn status(&self) -> &str {
        self.props().status.as_deref().unwrap_or("")
    }
    pub fn stage(&self) -> Option<StageName> {
        StageName::parse(self.status())
    }
    pub fn etag(&self) -> String {
        format!("\"{}-{}\"", self.created_ms, self.version)
    }
    pub fn details(&self) -> &JobDetails {
        self.props().details.as_ref().expect("stored jobs have details")
    }
    fn details_mut(&mut self) -> &mut JobDetails {
        self.props_mut().details.as_mut().expect("stored jobs have details")
    }
    fn stages_mut(&mut self) -> &mut Vec<JobStages> {
        let v = match self.details_mut() {
            JobDetails::DataBoxCustomerDisk(d) => &mut d.job_stages,
            JobDetails::DataBoxDisk(d) => &mut d.job_stages,
            _ => unreachable!("only the two emulated kinds are stored"),
        };
        v.get_or_insert_with(Vec::new)
    }
    pub fn stages(&self) -> &[JobStages] {
        let v = match self.details() {
            JobDetails::DataBoxCustomerDisk(d) => &d.job_stages,
            JobDetails::DataBoxDisk(d) => &d.job_stages,
            _ => &None,
        };
        v.as_deref().unwrap_or(&[])
    }
    fn active(&self) -> bool {
        !matches!(
            self.stage(),
            Some(
                StageName::Completed
                    | StageName::CompletedWithErrors
                    | StageName::CompletedWithWarnings
                    | StageName::Cancelled
                    | StageName::Aborted
                    | StageName::FailedIssueDetectedAtAzureDc
                    | StageName::FailedIssueReportedAtCustomer
            )
        )
    }
    /// The disk serials of the job: the customer's (from the PUT), or Microsoft's once prepared.
    pub fn serials(&self) -> Vec<String> {
        self.disk_keys.keys().cloned().collect()
    }
    /// Enters `stage` (`status`), closing the stage before it as succeeded.
    fn enter(&mut self, stage: StageName, status: StageStatus, now_ms: i64) {
        let now = rfc3339(now_ms);
        let stages = self.stages_mut();
        for s in stages.iter_mut() {
            if s.stage_status.as_deref() == Some(StageStatus::InProgress.as_str()) {
                s.stage_status = Some(StageStatus::Succeeded.as_str().into());
            }
        }
        stages.push(JobStages {
            stage_name: Some(stage.as_str().into()),
            display_name: Some(display_name(stage).into()),
            stage_status: Some(status.as_str().into()),
            stage_time: Some(now),
            ..Default::default()
        });
        let cancellable =
            matches!(stage, StageName::AwaitingShipmentDetails | StageName::DeviceOrdered | StageName::DevicePrepared);
        self.props_mut().status = Some(stage.as_str().into());
        self.props_mut().is_cancellable = Some(cancellable);
        self.props_mut().is_cancellable_without_fee = Some(cancellable);
        let deletable = !self.active();
        self.props_mut().is_deletable = Some(deletable);
        self.version += 1;
    }
    /// The copy progress of one disk, made on first use.
    fn set_copy(&mut self, serial: &str, f: impl FnOnce(&mut CopyEntry)) {
        match self.details_mut() {
            JobDetails::DataBoxCustomerDisk(d) => {
                let list = d.copy_progress.get_or_insert_with(Vec::new);
                let i = match list.iter().position(|c| c.serial_number.as_deref() == Some(serial)) {
                    Some(i) => i,
                    None => {
                        list.push(DataBoxCustomerDiskCopyProgress {
                            serial_number: Some(serial.into()),
                            copy_status: Some(CopyStatus::NotStarted.as_str().into()),
                            transfer_type: Some("ImportToAzure".into()),
                            data_account_type: Some("StorageAccount".into()),
                            bytes_processed: Some(0),
                            files_processed: Some(0),
                            files_errored_out: Some(0),
                            ..Default::default()
                        });
                        list.len() - 1
                    }
                };
                let c = &mut list[i];
                let mut e = CopyEntry {
                    status: c.copy_status.clone().unwrap_or_default(),
                    bytes: c.bytes_processed.unwrap_or(0),
                    total_bytes: c.total_bytes_to_process.unwrap_or(0),
                    files: c.files_processed.unwrap_or(0),
                    errored: c.files_errored_out.unwrap_or(0),
                    actions: c.actions.clone().unwrap_or_default(),
                };
                f(&mut e);
                c.copy_status = Some(e.status);
                c.bytes_processed = Some(e.bytes);
                c.total_bytes_to_process = Some(e.total_bytes);
                c.files_processed = Some(e.files);
                c.total_files_to_process = Some(e.files + e.errored);
                c.files_errored_out = Some(e.errored);
                c.actions = (!e.actions.is_empty()).then_some(e.actions);
            }
            JobDetails::DataBoxDisk(d) => {
                let list = d.copy_progress.get_or_insert_with(Vec::new);
                let i = match list.iter().position(|c| c.serial_number.as_deref() == Some(serial)) {
                    Some(i) => i,
                    None => {
                        list.push(DataBoxDiskCopyProgress {
                            serial_number: Some(serial.into()),
                            status: Some(CopyStatus::NotStarted.as_str().into()),
                            bytes_copied: Some(0),
                            percent_complete: Some(0),
                            ..Default::default()
                        });
                        list.len() - 1
                    }
                };
                let c = &mut list[i];
                let mut e = CopyEntry {
                    status: c.status.clone().unwrap_or_default(),
                    bytes: c.bytes_copied.unwrap_or(0),
                    total_bytes: 0,
                    files: 0,
                    errored: 0,
                    actions: c.actions.clone().unwrap_or_default(),
                };
                f(&mut e);
                c.status = Some(e.status.clone());
                c.bytes_copied = Some(e.bytes);
                c.percent_complete = Some(match CopyStatus::parse(&e.status) {
                    Some(CopyStatus::Completed | CopyStatus::CompletedWithErrors) => 100,
                    _ if e.total_bytes > 0 => (e.bytes * 100 / e.total_bytes).min(100),
                    _ => 0,
                });
                c.actions = (!e.actions.is_empty()).then_some(e.actions);
            }
            _ => {}
        }
        self.version += 1;
    }
    fn copy_status(&self, serial: &str) -> Option<String> {
        match self.details() {
            JobDetails::DataBoxCustomerDisk(d) => d
                .copy_progress
                .iter()
                .flatten()
                .find(|c| c.serial_number.as_deref() == Some(serial))
                .and_then(|c| c.copy_status.clone()),
            JobDetails::DataBoxDisk(d) => d
                .copy_progress
                .iter()
                .flatten()
                .find(|c| c.serial_number.as_deref() == Some(serial))
                .and_then(|c| c.status.clone()),
            _ => None,
        }
    }
}

/// The parts of a disk's copy progress both kinds have.
pub struct CopyEntry {
    pub status: String,
    pub bytes: i64,
    pub total_bytes: i64,
    pub files: i64,
    pub errored: i64,
    pub actions: Vec<String>,
}

fn display_name(s: StageName) -> &'static str {
    match s {
        StageName::DeviceOrdered => "Ordered",
        StageName::DevicePrepared => "Processed",
        StageName::Dispatched => "Dispatched",
        StageName::Delivered => "Delivered",
        StageName::PickedUp => "Picked up",
        StageName::AtAzureDc => "Received",
        StageName::DataCopy => "Data copy in progress",
        StageName::Completed => "Completed",
        StageName::CompletedWithErrors => "Completed with errors",
        StageName::CompletedWithWarnings => "Completed with warnings",
        StageName::Cancelled => "Canceled",
        StageName::AwaitingShipmentDetails => "Awaiting shipment details",
        StageName::ShippedToAzureDc => "Shipped",
        StageName::FailedIssueDetectedAtAzureDc => "Failed: issue detected at the Azure datacenter",
        _ => "",
    }
}

/// The datacenters that take disks (ARM location names), with their emulated addresses.
pub const REGIONS: &[(&str, &str, &str, &str, &str, &str)] = &[
    ("westeurope", "1 Emulated Datacenter Way", "Amsterdam", "NH", "1000 AA", "NL"),
    ("northeurope", "2 Emulated Datacenter Way", "Dublin", "D", "D01", "IE"),
    ("eastus", "3 Emulated Datacenter Way", "Boydton", "VA", "23917", "US"),
    ("westus", "4 Emulated Datacenter Way", "Santa Clara", "CA", "95050", "US"),
];

fn region(
    name: &str,
) -> Option<&'static (&'static str, &'static str, &'static str, &'static str, &'static str, &'static str)> {
    let want: String = name.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_ascii_lowercase();
    REGIONS.iter().find(|r| r.0 == want)
}

/// The datacenter address of `location` for `sku`, as `regionConfiguration` and the job give it.
pub fn datacenter_address(location: &str, sku: Sku) -> Option<DatacenterAddressResponse> {
    let r = region(location)?;
    Some(DatacenterAddressResponse::DatacenterAddressLocation(DatacenterAddressLocationResponse {
        datacenter_address_type: Some("DatacenterAddressLocation".into()),
        contact_person_name: Some(format!("Azure {} (emulated)", sku.as_str())),
        company: Some("Microsoft Azure (emulated)".into()),
        street1: Some(r.1.into()),
        city: Some(r.2.into()),
        state: Some(r.3.into()),
        zip: Some(r.4.into()),
        country: Some(r.5.into()),
        phone: Some("+1 000 000 0000".into()),
        address_type: Some("Commercial".into()),
        supported_carriers_for_return_shipment: Some(vec!["DHL".into(), "FedEx".into(), "UPS".into()]),
        data_center_azure_location: Some(r.0.into()),
        ..Default::default()
    }))
}

/// The whole service state (what the emulator persists).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceState {
    /// "subscription/resourcegroup", lowercase: the resource groups that exist.
    pub resource_groups: BTreeSet<String>,
    /// The storage accounts that exist (names); empty: any is taken.
    pub storage_accounts: BTreeSet<String>,
    /// Key: "subscription/resourcegroup/job", lowercase as ARM compares them.
    pub jobs: BTreeMap<String, StoredJob>,
    /// Status monitors of long-running operations, by id.
    pub operations: BTreeMap<String, Operation>,
    /// How many polls an operation answers "running" before it is done.
    pub lro_polls: u32,
    /// Counter for operation ids, disk serials and keys (deterministic per state).
    pub counter: u64,
}

fn key(sub: &str, rg: &str, job: &str) -> String {
    format!("{}/{}/{}", sub.to_ascii_lowercase(), rg.to_ascii_lowercase(), job.to_ascii_lowercase())
}

fn not_found(job: &str, rg: &str) -> ApiError {
    ApiError::new(
        404,
        "ResourceNotFound",
        format!("The Resource '{}/{job}' under resource group '{rg}' was not found.", databox::JOB_TYPE),
    )
}

/// `Z`-suffixed RFC 3339 with milliseconds.
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z", rem / 3600, rem % 3600 / 60, rem % 60, ms.rem_euclid(1000))
}

/// A 48-digit recovery password made from `seed` (emulated keys for Microsoft's disks).
fn recovery_password(seed: u64) -> String {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    (0..8)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Each BitLocker group is a multiple of 11 below 720896.
            format!("{:06}", (x % 65_536) * 11)
        })
        .collect::<Vec<_>>()
        .join("-")
}

fn require<T>(v: Option<T>, what: &str) -> ApiResult<T> {
    v.ok_or_else(|| ApiError::bad("InvalidRequestContent", format!("'{what}' is required.")))
}

fn check_contact(c: Option<&model::ContactDetails>) -> ApiResult<()> {
    let c = require(c, "properties.details.contactDetails")?;
    require(c.contact_name.as_deref().filter(|s| !s.trim().is_empty()), "contactDetails.contactName")?;
    require(c.phone.as_deref().filter(|s| !s.trim().is_empty()), "contactDetails.phone")?;
    require(c.email_list.as_ref().filter(|l| !l.is_empty()), "contactDetails.emailList")?;
    Ok(())
}

fn check_address(a: Option<&model::ShippingAddress>, what: &str) -> ApiResult<()> {
    let a = require(a, what)?;
    require(a.street_address1.as_deref().filter(|s| !s.trim().is_empty()), &format!("{what}.streetAddress1"))?;
    require(a.country.as_deref().filter(|s| !s.trim().is_empty()), &format!("{what}.country"))?;
    Ok(())
}

/// The one storage account of the import (`dataImportDetails`).
fn storage_account(imports: Option<&Vec<model::DataImportDetails>>) -> ApiResult<String> {
    let imports = imports.map(Vec::as_slice).unwrap_or_default();
    if imports.len() != 1 {
        return Err(ApiError::bad(
            "InvalidStorageAccountCount",
            format!("An import job has exactly one storage account; this request names {}.", imports.len()),
        ));
    }
    match &imports[0].account_details {
        Some(model::DataAccountDetails::StorageAccount(s)) => s
            .storage_account_id
            .clone()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ApiError::bad("InvalidRequestContent", "'storageAccountId' is required.")),
        _ => Err(ApiError::bad(
            "InvalidDataAccountType",
            "The emulated service imports into a storage account (dataAccountType 'StorageAccount').",
        )),
    }
}

fn account_name(storage_account_id: &str) -> &str {
    storage_account_id.rsplit('/').next().unwrap_or_default()
}

impl ServiceState {
    pub fn add_resource_group(&mut self, sub: &str, rg: &str) {
        self.resource_groups.insert(format!("{}/{}", sub.to_ascii_lowercase(), rg.to_ascii_lowercase()));
    }

    /// ARM's answer for a resource group that does not exist.
    pub fn check_resource_group(&self, sub: &str, rg: &str) -> ApiResult<()> {
        if self.resource_groups.contains(&format!("{}/{}", sub.to_ascii_lowercase(), rg.to_ascii_lowercase())) {
            return Ok(());
        }
        Err(ApiError::new(404, "ResourceGroupNotFound", format!("Resource group '{rg}' could not be found.")))
    }

    fn next(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    fn start_operation(&mut self, sub: &str, rg: &str, job: &str, location: &str, kind: OperationKind) -> String {
        let n = self.next();
        let id =
            format!("{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}", n as u32, n % 0xffff, n % 0xfff, (n >> 12) % 0xfff, n);
        let id = if kind == OperationKind::Delete { format!("{id}-deleteorder") } else { id };
        self.operations.insert(
            id.clone(),
            Operation {
                subscription: sub.into(),
                resource_group: rg.into(),
                job: job.into(),
                location: location.to_ascii_lowercase(),
                kind,
                polls_left: self.lro_polls,
            },
        );
        id
    }

    pub fn job(&self, sub: &str, rg: &str, name: &str) -> ApiResult<&StoredJob> {
        self.check_resource_group(sub, rg)?;
        self.jobs.get(&key(sub, rg, name)).ok_or_else(|| not_found(name, rg))
    }

    fn job_mut(&mut self, sub: &str, rg: &str, name: &str) -> ApiResult<&mut StoredJob> {
        self.check_resource_group(sub, rg)?;
        self.jobs.get_mut(&key(sub, rg, name)).ok_or_else(|| not_found(name, rg))
    }

    /// PUT: creates the job, or changes the one there (what may change after creation).
    /// Answers the operation's id (202 and its monitor).
    pub fn put_job(
        &mut self,
        sub: &str,
        rg: &str,
        name: &str,
        body: JobResource,
        caller: &str,
        now_ms: i64,
    ) -> ApiResult<(String, String)> {
        self.check_resource_group(sub, rg)?;
        if !databox::paths::valid_job_name(name) {
            return Err(ApiError::bad(
                "InvalidJobName",
                format!(
                    "The job name '{name}' is invalid: use 3 to 24 letters, digits or '-', starting and ending with a letter or digit."
                ),
            ));
        }
        let loc_name = require(body.location.clone(), "location")?;
        let loc = region(&loc_name).ok_or_else(|| {
            ApiError::bad(
                "LocationNotAvailableForResourceType",
                format!(
                    "The provided location '{loc_name}' is not available for resource type '{}'.",
                    databox::JOB_TYPE
                ),
            )
        })?;
        let sku_name = require(body.sku.as_ref().and_then(|s| s.name.clone()), "sku.name")?;
        let sku = Sku::parse(&sku_name).ok_or_else(|| {
            ApiError::bad(
                "SkuNotAvailable",
                format!("The SKU '{sku_name}' is not emulated: use DataBoxCustomerDisk or DataBoxDisk."),
            )
        })?;
        let mut props = require(body.properties.clone(), "properties")?;
        if props.transfer_type.as_deref() != Some("ImportToAzure") {
            return Err(ApiError::bad("InvalidTransferType", "Only 'ImportToAzure' jobs are emulated."));
        }
        let details = require(props.details.take(), "properties.details")?;
        if details.tag() != Some(sku.as_str()) {
            return Err(ApiError::bad(
                "InvalidJobDetailsType",
                format!("'jobDetailsType' must be '{}' for SKU '{}'.", sku.as_str(), sku.as_str()),
            ));
        }
        let k = key(sub, rg, name);
        if let Some(existing) = self.jobs.get(&k) {
            return self.put_existing(
                sub,
                rg,
                name,
                existing.clone(),
                sku,
                &loc_name,
                body.tags,
                details,
                caller,
                now_ms,
            );
        }
        let mut disk_keys = BTreeMap::new();
        let mut carrier_account = None;
        let mut passkey = None;
        let mut passkey_user_defined = false;
        let stored_details = match details {
            JobDetails::DataBoxCustomerDisk(mut d) => {
                check_contact(d.contact_details.as_ref())?;
                let account = storage_account(d.data_import_details.as_ref())?;
                self.check_account(&account)?;
                let disks = d.import_disk_details_collection.clone().unwrap_or_default();
                if disks.is_empty() || disks.len() > MAX_CUSTOMER_DISKS {
                    return Err(ApiError::bad(
                        "InvalidDiskCount",
                        format!(
                            "A customer-disk job has 1 to {MAX_CUSTOMER_DISKS} disks; this request has {}.",
                            disks.len()
                        ),
                    ));
                }
                for (serial, disk) in &disks {
                    let missing = [
                        ("manifestFile", disk.manifest_file.is_none()),
                        ("manifestHash", disk.manifest_hash.is_none()),
                        ("bitLockerKey", disk.bit_locker_key.is_none()),
                    ];
                    if let Some((f, _)) = missing.iter().find(|(_, m)| *m) {
                        return Err(ApiError::bad(
                            "InvalidDiskDetails",
                            format!("importDiskDetailsCollection['{serial}'] has no '{f}'."),
                        ));
                    }
                    let hash = disk.manifest_hash.as_deref().unwrap_or_default();
                    if hash.len() != 32 || !hash.chars().all(|c| c.is_ascii_hexdigit()) {
                        return Err(ApiError::bad(
                            "InvalidManifestHash",
                            format!(
                                "importDiskDetailsCollection['{serial}'].manifestHash is not an MD5 in hex: '{hash}'."
                            ),
                        ));
                    }
                    if let Some(other) = self
                        .jobs
                        .values()
                        .find(|j| j.active() && j.sku() == Some(Sku::CustomerDisk) && j.disk_keys.contains_key(serial))
                    {
                        return Err(ApiError::conflict(
                            "DuplicateDiskSerial",
                            format!("Disk '{serial}' is already in job '{}', which is still active.", other.name),
                        ));
                    }
                    disk_keys.insert(serial.clone(), disk.bit_locker_key.clone().expect("checked"));
                }
                let ret = require(d.return_to_customer_package_details.clone(), "returnToCustomerPackageDetails")?;
                require(ret.carrier_name.clone(), "returnToCustomerPackageDetails.carrierName")?;
                carrier_account = ret.carrier_account_number.clone();
                // What a GET shows: no keys, no carrier account.
                for disk in d.import_disk_details_collection.iter_mut().flat_map(|m| m.values_mut()) {
                    disk.bit_locker_key = None;
                }
                if let Some(r) = d.return_to_customer_package_details.as_mut() {
                    r.carrier_account_number = None;
                }
                d.enable_manifest_backup.get_or_insert(false);
                d.copy_progress = Some(Vec::new());
                JobDetails::DataBoxCustomerDisk(d)
            }
            JobDetails::DataBoxDisk(mut d) => {
                check_contact(d.contact_details.as_ref())?;
                check_address(d.shipping_address.as_ref(), "shippingAddress")?;
                let account = storage_account(d.data_import_details.as_ref())?;
                self.check_account(&account)?;
                let mut count = 0i64;
                for (size, n) in d.preferred_disks.iter().flatten() {
                    if size.parse::<u32>() != Ok(databox::DATABOX_DISK_TB) {
                        return Err(ApiError::bad(
                            "InvalidDiskSize",
                            format!(
                                "preferredDisks: Data Box Disks are {} TB; '{size}' is not offered.",
                                databox::DATABOX_DISK_TB
                            ),
                        ));
                    }
                    count += n;
                }
                if count < 1 || count > MAX_DATABOX_DISKS as i64 {
                    return Err(ApiError::bad(
                        "InvalidDiskCount",
                        format!(
                            "A Data Box Disk order has 1 to {MAX_DATABOX_DISKS} disks; this request asks for {count}."
                        ),
                    ));
                }
                passkey_user_defined = d.passkey.is_some();
                passkey = d.passkey.take();
                d.copy_progress = Some(Vec::new());
                JobDetails::DataBoxDisk(d)
            }
            _ => unreachable!("the tag was checked against the SKU"),
        };
        let id = databox::paths::job_id(sub, rg, name);
        let mut resource = JobResource {
            location: Some(loc.0.into()),
            tags: body.tags.clone(),
            sku: Some(model::Sku {
                name: Some(sku.as_str().into()),
                model: (sku == Sku::CustomerDisk).then(|| sku.as_str().into()),
                ..Default::default()
            }),
            identity: Some(model::ResourceIdentity { r#type: Some("None".into()), ..Default::default() }),
            properties: Some(JobProperties {
                transfer_type: Some("ImportToAzure".into()),
                is_shipping_address_editable: Some(sku == Sku::DataBoxDisk),
                reverse_shipping_details_update: Some("NotSupported".into()),
                reverse_transport_preference_update: Some("NotSupported".into()),
                is_prepare_to_ship_enabled: Some(false),
                start_time: Some(rfc3339(now_ms)),
                delivery_type: Some("NonScheduled".into()),
                details: Some(stored_details),
                ..Default::default()
            }),
            name: Some(name.into()),
            id: Some(id),
            r#type: Some(databox::JOB_TYPE.into()),
            system_data: Some(model::SystemData {
                created_by: Some(caller.into()),
                created_by_type: Some("User".into()),
                created_at: Some(rfc3339(now_ms)),
                last_modified_by: Some(caller.into()),
                last_modified_by_type: Some("User".into()),
                last_modified_at: Some(rfc3339(now_ms)),
            }),
        };
        if let Some(JobDetails::DataBoxCustomerDisk(d)) = resource.properties.as_mut().and_then(|p| p.details.as_mut())
        {
            d.datacenter_address = datacenter_address(loc.0, sku);
        }
        let mut job = StoredJob {
            subscription: sub.into(),
            resource_group: rg.into(),
            name: name.into(),
            sku: sku.as_str().into(),
            resource,
            disk_keys,
            passkey,
            passkey_user_defined,
            carrier_account,
            version: 0,
            created_ms: now_ms,
            received: BTreeSet::new(),
        };
        match sku {
            Sku::CustomerDisk => job.enter(StageName::AwaitingShipmentDetails, StageStatus::InProgress, now_ms),
            Sku::DataBoxDisk => job.enter(StageName::DeviceOrdered, StageStatus::InProgress, now_ms),
        }
        self.jobs.insert(k, job);
        let op = self.start_operation(sub, rg, name, loc.0, OperationKind::Create);
        Ok((op, loc.0.to_string()))
    }

    fn check_account(&self, storage_account_id: &str) -> ApiResult<()> {
        let name = account_name(storage_account_id);
        if self.storage_accounts.is_empty() || self.storage_accounts.contains(name) {
            return Ok(());
        }
        Err(ApiError::bad(
            "StorageAccountNotFound",
            format!("The storage account '{name}' ({storage_account_id}) was not found."),
        ))
    }

    /// A PUT on a job that exists: the same kind and place, and only what may still change.
    #[allow(clippy::too_many_arguments)]
    fn put_existing(
        &mut self,
        sub: &str,
        rg: &str,
        name: &str,
        existing: StoredJob,
        sku: Sku,
        location: &str,
        tags: Option<BTreeMap<String, String>>,
        details: JobDetails,
        caller: &str,
        now_ms: i64,
    ) -> ApiResult<(String, String)> {
        let here = existing.resource.location.clone().unwrap_or_default();
        if region(location).map(|r| r.0) != Some(here.as_str()) {
            return Err(ApiError::bad(
                "LocationCannotBeChanged",
                format!("The job '{name}' is in '{here}'; its location cannot be changed to '{location}'."),
            ));
        }
        if existing.sku() != Some(sku) {
            return Err(ApiError::bad(
                "SkuCannotBeChanged",
                format!("The job '{name}' is of SKU '{}'; its SKU cannot be changed.", existing.sku),
            ));
        }
        let update = JobResourceUpdateParameter {
            tags,
            properties: Some(model::UpdateJobProperties {
                details: Some(match &details {
                    JobDetails::DataBoxCustomerDisk(d) => model::UpdateJobDetails {
                        contact_details: d.contact_details.clone(),
                        shipping_address: d.shipping_address.clone(),
                        return_to_customer_package_details: d.return_to_customer_package_details.clone(),
                        preferences: d.preferences.clone(),
                        ..Default::default()
                    },
                    JobDetails::DataBoxDisk(d) => model::UpdateJobDetails {
                        contact_details: d.contact_details.clone(),
                        shipping_address: d.shipping_address.clone(),
                        preferences: d.preferences.clone(),
                        ..Default::default()
                    },
                    _ => model::UpdateJobDetails::default(),
                }),
            }),
            ..Default::default()
        };
        // The disks of a customer-disk job may change only before it is shipped.
        if let JobDetails::DataBoxCustomerDisk(d) = &details {
            let wanted: BTreeMap<String, Secret> = d
                .import_disk_details_collection
                .iter()
                .flatten()
                .filter_map(|(s, x)| x.bit_locker_key.clone().map(|k| (s.clone(), k)))
                .collect();
            if wanted != existing.disk_keys {
                if existing.stage() != Some(StageName::AwaitingShipmentDetails) {
                    return Err(ApiError::conflict(
                        "InvalidJobState",
                        format!("The disks of job '{name}' cannot change in state '{}'.", existing.status()),
                    ));
                }
                if wanted.is_empty() || wanted.len() > MAX_CUSTOMER_DISKS {
                    return Err(ApiError::bad(
                        "InvalidDiskCount",
                        format!(
                            "A customer-disk job has 1 to {MAX_CUSTOMER_DISKS} disks; this request has {}.",
                            wanted.len()
                        ),
                    ));
                }
                let j = self.job_mut(sub, rg, name)?;
                j.disk_keys = wanted;
                if let JobDetails::DataBoxCustomerDisk(stored) = j.details_mut() {
                    let mut shown = d.import_disk_details_collection.clone().unwrap_or_default();
                    for x in shown.values_mut() {
                        x.bit_locker_key = None;
                    }
                    stored.import_disk_details_collection = Some(shown);
                }
                j.version += 1;
            }
        }
        self.apply_update(sub, rg, name, update, caller, now_ms)?;
        let op = self.start_operation(sub, rg, name, &here, OperationKind::Create);
        Ok((op, here))
    }

    /// GET: the job; `properties.details` only with `$expand=details`, as Azure answers.
    pub fn get_job(&self, sub: &str, rg: &str, name: &str, expand_details: bool) -> ApiResult<(JobResource, String)> {
        let j = self.job(sub, rg, name)?;
        let mut r = j.resource.clone();
        if !expand_details && let Some(p) = r.properties.as_mut() {
            p.details = None;
        }
        Ok((r, j.etag()))
    }

    fn apply_update(
        &mut self,
        sub: &str,
        rg: &str,
        name: &str,
        body: JobResourceUpdateParameter,
        caller: &str,
        now_ms: i64,
    ) -> ApiResult<()> {
        let j = self.job_mut(sub, rg, name)?;
        let shipped = !matches!(
            j.stage(),
            Some(StageName::AwaitingShipmentDetails | StageName::DeviceOrdered | StageName::DevicePrepared)
        );
        if let Some(d) = body.properties.and_then(|p| p.details) {
            if let Some(c) = &d.contact_details {
                check_contact(Some(c))?;
            }
            if d.shipping_address.is_some() && shipped && j.sku() == Some(Sku::DataBoxDisk) {
                return Err(ApiError::conflict(
                    "InvalidJobState",
                    format!("The shipping address of job '{name}' cannot change in state '{}'.", j.status()),
                ));
            }
            let carrier = d.return_to_customer_package_details.as_ref().and_then(|r| r.carrier_account_number.clone());
            match j.details_mut() {
                JobDetails::DataBoxCustomerDisk(x) => {
                    if let Some(c) = d.contact_details {
                        x.contact_details = Some(c);
                    }
                    if let Some(a) = d.shipping_address {
                        x.shipping_address = Some(a);
                    }
                    if let Some(mut r) = d.return_to_customer_package_details {
                        r.carrier_account_number = None;
                        x.return_to_customer_package_details = Some(r);
                    }
                    if let Some(p) = d.preferences {
                        x.preferences = Some(p);
                    }
                }
                JobDetails::DataBoxDisk(x) => {
                    if let Some(c) = d.contact_details {
                        x.contact_details = Some(c);
                    }
                    if let Some(a) = d.shipping_address {
                        x.shipping_address = Some(a);
                    }
                    if let Some(p) = d.preferences {
                        x.preferences = Some(p);
                    }
                }
                _ => {}
            }
            if carrier.is_some() {
                j.carrier_account = carrier;
            }
        }
        if let Some(t) = body.tags {
            j.resource.tags = Some(t);
        }
        if let Some(sd) = j.resource.system_data.as_mut() {
            sd.last_modified_by = Some(caller.into());
            sd.last_modified_at = Some(rfc3339(now_ms));
        }
        j.version += 1;
        Ok(())
    }

    /// PATCH (with `If-Match` when given): an LRO, like the PUT.
    #[allow(clippy::too_many_arguments)]
    pub fn patch_job(
        &mut self,
        sub: &str,
        rg: &str,
        name: &str,
        body: JobResourceUpdateParameter,
        if_match: Option<&str>,
        caller: &str,
        now_ms: i64,
    ) -> ApiResult<(String, String)> {
        let j = self.job(sub, rg, name)?;
        if let Some(want) = if_match.filter(|w| *w != "*")
            && want != j.etag()
        {
            return Err(ApiError::new(
                412,
                "PreconditionFailed",
                format!("The job '{name}' changed: its ETag is {}, not {want}. Read it again.", j.etag()),
            ));
        }
        let loc = j.resource.location.clone().unwrap_or_default();
        self.apply_update(sub, rg, name, body, caller, now_ms)?;
        let op = self.start_operation(sub, rg, name, &loc, OperationKind::Update);
        Ok((op, loc))
    }

    /// DELETE: `None` when the job is already gone (204); else the operation (202).
    pub fn delete_job(&mut self, sub: &str, rg: &str, name: &str) -> ApiResult<Option<(String, String)>> {
        self.check_resource_group(sub, rg)?;
        let Some(j) = self.jobs.get(&key(sub, rg, name)) else { return Ok(None) };
        if j.active() {
            return Err(ApiError::bad(
                "JobNotDeletable",
                format!(
                    "The job '{name}' is in state '{}': cancel it, or wait until it is completed, before deleting it.",
                    j.status()
                ),
            ));
        }
        let loc = j.resource.location.clone().unwrap_or_default();
        let op = self.start_operation(sub, rg, name, &loc, OperationKind::Delete);
        Ok(Some((op, loc)))
    }

    /// Polls a status monitor. Deleting happens when its operation completes.
    pub fn poll(&mut self, sub: &str, id: &str) -> ApiResult<Poll> {
        let op =
            self.operations.get_mut(id).filter(|o| o.subscription.eq_ignore_ascii_case(sub)).ok_or_else(|| {
                ApiError::new(404, "OperationNotFound", format!("The operation '{id}' was not found."))
            })?;
        if op.polls_left > 0 {
            op.polls_left -= 1;
            return Ok(Poll::Running);
        }
        let op = op.clone();
        match op.kind {
            OperationKind::Delete => {
                self.jobs.remove(&key(&op.subscription, &op.resource_group, &op.job));
                Ok(Poll::Deleted)
            }
            OperationKind::Create | OperationKind::Update => {
                Ok(Poll::DoneAt { job_path: databox::paths::job_id(&op.subscription, &op.resource_group, &op.job) })
            }
        }
    }

    /// The jobs of a subscription or resource group, in name order, `skip` then `take` of them,
    /// without details (as Azure lists them); and whether more follow.
    pub fn list_jobs(
        &self,
        sub: &str,
        rg: Option<&str>,
        skip: usize,
        take: usize,
    ) -> ApiResult<(Vec<JobResource>, bool)> {
        if let Some(rg) = rg {
            self.check_resource_group(sub, rg)?;
        }
        let prefix = match rg {
            Some(rg) => format!("{}/{}/", sub.to_ascii_lowercase(), rg.to_ascii_lowercase()),
            None => format!("{}/", sub.to_ascii_lowercase()),
        };
        let all: Vec<&StoredJob> = self.jobs.iter().filter(|(k, _)| k.starts_with(&prefix)).map(|(_, j)| j).collect();
        let page = all
            .iter()
            .skip(skip)
            .take(take)
            .map(|j| {
                let mut r = j.resource.clone();
                if let Some(p) = r.properties.as_mut() {
                    p.details = None;
                }
                r
            })
            .collect();
        Ok((page, all.len() > skip + take))
    }

    /// `cancel`: while nothing is shipped.
    pub fn cancel(&mut self, sub: &str, rg: &str, name: &str, reason: &str, now_ms: i64) -> ApiResult<()> {
        if reason.trim().is_empty() {
            return Err(ApiError::bad("InvalidRequestContent", "'reason' is required."));
        }
        let j = self.job_mut(sub, rg, name)?;
        if j.props().is_cancellable != Some(true) {
            return Err(ApiError::bad(
                "CancelNotAllowed",
                format!("The job '{name}' cannot be cancelled in state '{}'.", j.status()),
            ));
        }
        j.props_mut().cancellation_reason = Some(reason.into());
        j.enter(StageName::Cancelled, StageStatus::Succeeded, now_ms);
        Ok(())
    }

    /// `markDevicesShipped`: the customer's package is on its way (customer disks).
    pub fn mark_shipped(
        &mut self,
        sub: &str,
        rg: &str,
        name: &str,
        carrier: &str,
        tracking: &str,
        now_ms: i64,
    ) -> ApiResult<()> {
        if carrier.trim().is_empty() || tracking.trim().is_empty() {
            return Err(ApiError::bad(
                "InvalidRequestContent",
                "'deliverToDcPackageDetails.carrierName' and '.trackingId' are required.",
            ));
        }
        let j = self.job(sub, rg, name)?;
        if j.sku() != Some(Sku::CustomerDisk) {
            return Err(ApiError::bad(
                "InvalidOperationForSku",
                format!("markDevicesShipped is for customer disks; job '{name}' is '{}'.", j.sku),
            ));
        }
        if j.stage() != Some(StageName::AwaitingShipmentDetails) {
            return Err(ApiError::conflict(
                "InvalidJobState",
                format!("The job '{name}' is in state '{}', not awaiting shipment details.", j.status()),
            ));
        }
        let this = key(sub, rg, name);
        if let Some((_, other)) = self.jobs.iter().find(|(k, o)| {
            **k != this
                && matches!(o.details(), JobDetails::DataBoxCustomerDisk(d)
                    if d.deliver_to_dc_package_details.as_ref().and_then(|p| p.tracking_id.as_deref()) == Some(tracking))
        }) {
            return Err(ApiError::conflict(
                "DuplicateTrackingNumber",
                format!("The tracking number '{tracking}' is already used by job '{}'.", other.name),
            ));
        }
        let j = self.job_mut(sub, rg, name)?;
        if let JobDetails::DataBoxCustomerDisk(d) = j.details_mut() {
            d.deliver_to_dc_package_details = Some(model::PackageCarrierInfo {
                carrier_name: Some(carrier.into()),
                tracking_id: Some(tracking.into()),
            });
        }
        j.enter(StageName::ShippedToAzureDc, StageStatus::InProgress, now_ms);
        Ok(())
    }

    /// `listCredentials`: the disks' keys (customer disks), or the passkey and the disks' keys
    /// (Data Box Disk; only once the disks are delivered).
    pub fn list_credentials(&self, sub: &str, rg: &str, name: &str) -> ApiResult<model::UnencryptedCredentialsList> {
        let j = self.job(sub, rg, name)?;
        let disk_secrets = |j: &StoredJob| {
            j.disk_keys
                .iter()
                .map(|(s, k)| model::DiskSecret {
                    disk_serial_number: Some(s.clone()),
                    bit_locker_key: Some(k.clone()),
                })
                .collect::<Vec<_>>()
        };
        let secrets = match j.sku() {
            Some(Sku::CustomerDisk) => JobSecrets::DataBoxCustomerDisk(model::CustomerDiskJobSecrets {
                job_secrets_type: Some(Sku::CustomerDisk.as_str().into()),
                disk_secrets: Some(disk_secrets(j)),
                carrier_account_number: j.carrier_account.clone(),
                ..Default::default()
            }),
            Some(Sku::DataBoxDisk) => {
                let delivered =
                    j.stages().iter().any(|s| s.stage_name.as_deref() == Some(StageName::Delivered.as_str()));
                if !delivered {
                    return Err(ApiError::conflict(
                        "DevicesNotDelivered",
                        format!(
                            "The passkey of job '{name}' is given once its disks are delivered; the job is in state '{}'.",
                            j.status()
                        ),
                    ));
                }
                JobSecrets::DataBoxDisk(model::DataBoxDiskJobSecrets {
                    job_secrets_type: Some(Sku::DataBoxDisk.as_str().into()),
                    disk_secrets: Some(disk_secrets(j)),
                    pass_key: j.passkey.clone(),
                    is_passkey_user_defined: Some(j.passkey_user_defined),
                    ..Default::default()
                })
            }
            None => JobSecrets::Other(serde_json::Value::Null),
        };
        Ok(model::UnencryptedCredentialsList {
            value: Some(vec![model::UnencryptedCredentials {
                job_name: Some(j.name.clone()),
                job_secrets: Some(secrets),
            }]),
            next_link: None,
        })
    }

    /// `mitigate`: answers a stage waiting for the customer, for the job or per disk.
    pub fn mitigate(
        &mut self,
        sub: &str,
        rg: &str,
        name: &str,
        req: model::MitigateJobRequest,
        now_ms: i64,
    ) -> ApiResult<()> {
        let j = self.job_mut(sub, rg, name)?;
        let waiting = j
            .stages()
            .last()
            .and_then(|s| s.stage_status.as_deref())
            .and_then(StageStatus::parse)
            .is_some_and(StageStatus::waits_for_customer);
        if !waiting {
            return Err(ApiError::conflict(
                "NoActionRequired",
                format!("The job '{name}' is not waiting for a customer action (state '{}').", j.status()),
            ));
        }
        let codes: Vec<(Option<String>, String)> =
            match (&req.customer_resolution_code, &req.serial_number_customer_resolution_map) {
                (Some(c), None) => vec![(None, c.clone())],
                (None, Some(m)) if !m.is_empty() => m.iter().map(|(s, c)| (Some(s.clone()), c.clone())).collect(),
                _ => {
                    return Err(ApiError::bad(
                        "InvalidRequestContent",
                        "Give either 'customerResolutionCode' or 'serialNumberCustomerResolutionMap'.",
                    ));
                }
            };
        for (serial, code) in &codes {
            if ResolutionCode::parse(code).is_none_or(|c| c == ResolutionCode::None) {
                return Err(ApiError::bad("InvalidResolutionCode", format!("'{code}' is not a resolution code.")));
            }
            if let Some(s) = serial
                && !j.disk_keys.contains_key(s)
            {
                return Err(ApiError::bad("InvalidSerialNumber", format!("Disk '{s}' is not in job '{name}'.")));
            }
        }
        let code = codes[0].1.clone();
        for s in j.serials() {
            j.set_copy(&s, |c| c.actions.clear());
        }
        if let Some(last) = j.stages_mut().last_mut() {
            last.stage_status = Some(StageStatus::CustomerActionPerformed.as_str().into());
        }
        j.props_mut().error = None;
        let last = model::LastMitigationActionOnJob {
            action_date_time_in_utc: Some(rfc3339(now_ms)),
            is_performed_by_customer: Some(true),
            customer_resolution: Some(code),
        };
        match j.details_mut() {
            JobDetails::DataBoxCustomerDisk(d) => {
                d.last_mitigation_action_on_job = Some(last);
                d.actions = None;
            }
            JobDetails::DataBoxDisk(d) => {
                d.last_mitigation_action_on_job = Some(last);
                d.actions = None;
            }
            _ => {}
        }
        j.version += 1;
        Ok(())
    }

    /// `validateInputs`: each sub-request answered Valid or Invalid with its reason.
    pub fn validate_inputs(
        &self,
        sub: &str,
        location: &str,
        req: &model::ValidationRequest,
    ) -> ApiResult<model::ValidationResponse> {
        let model::ValidationRequest::JobCreationValidation(v) = req else {
            return Err(ApiError::bad("InvalidValidationCategory", "Only 'JobCreationValidation' is emulated."));
        };
        let mut results = Vec::new();
        let mut all_valid = true;
        let invalid = |code: &str, message: String| {
            Some(model::CloudError { code: Some(code.into()), message: Some(message), ..Default::default() })
        };
        for item in v.individual_request_details.iter().flatten() {
            use model::ValidationInputRequest as R;
            use model::ValidationInputResponse as A;
            let status =
                |e: &Option<model::CloudError>| Some(if e.is_some() { "Invalid" } else { "Valid" }.to_string());
            let answer = match item {
                R::ValidateAddress(a) => {
                    let error = match a.shipping_address.as_ref() {
                        None => invalid("AddressRequired", "There is no shipping address.".into()),
                        Some(s) if s.street_address1.as_deref().is_none_or(|x| x.trim().is_empty()) => {
                            invalid("InvalidAddress", "The address has no street.".into())
                        }
                        Some(s) if s.country.as_deref().is_none_or(|x| x.trim().is_empty()) => {
                            invalid("InvalidAddress", "The address has no country.".into())
                        }
                        Some(_) => None,
                    };
                    A::ValidateAddress(model::AddressValidationProperties {
                        validation_type: Some("ValidateAddress".into()),
                        validation_status: Some(if error.is_some() { "Invalid" } else { "Valid" }.into()),
                        error,
                        ..Default::default()
                    })
                }
                R::ValidateSubscriptionIsAllowedToCreateJob(_) => A::ValidateSubscriptionIsAllowedToCreateJob(
                    model::SubscriptionIsAllowedToCreateJobValidationResponseProperties {
                        validation_type: Some("ValidateSubscriptionIsAllowedToCreateJob".into()),
                        status: Some("Valid".into()),
                        ..Default::default()
                    },
                ),
                R::ValidatePreferences(_) => A::ValidatePreferences(model::PreferencesValidationResponseProperties {
                    validation_type: Some("ValidatePreferences".into()),
                    status: Some("Valid".into()),
                    ..Default::default()
                }),
                R::ValidateCreateOrderLimit(r) => {
                    let active = self
                        .jobs
                        .values()
                        .filter(|j| {
                            j.subscription.eq_ignore_ascii_case(sub)
                                && j.active()
                                && r.device_type.as_deref() == Some(j.sku.as_str())
                        })
                        .count();
                    let error = (active >= 100)
                        .then(|| invalid("OrderLimitReached", format!("{active} active orders: the limit is 100.")))
                        .flatten();
                    A::ValidateCreateOrderLimit(model::CreateOrderLimitForSubscriptionValidationResponseProperties {
                        validation_type: Some("ValidateCreateOrderLimit".into()),
                        status: status(&error),
                        error,
                    })
                }
                R::ValidateSkuAvailability(r) => {
                    let sku_ok = r.device_type.as_deref().and_then(Sku::parse).is_some();
                    let loc_ok = r.location.as_deref().or(Some(location)).and_then(region).is_some();
                    let error = if !sku_ok {
                        invalid(
                            "SkuNotAvailable",
                            format!("The SKU '{}' is not available.", r.device_type.clone().unwrap_or_default()),
                        )
                    } else if !loc_ok {
                        invalid(
                            "LocationNotAvailable",
                            format!("'{}' takes no orders.", r.location.clone().unwrap_or_default()),
                        )
                    } else {
                        None
                    };
                    A::ValidateSkuAvailability(model::SkuAvailabilityValidationResponseProperties {
                        validation_type: Some("ValidateSkuAvailability".into()),
                        status: status(&error),
                        error,
                    })
                }
                R::ValidateDataTransferDetails(r) => {
                    let mut error = None;
                    for d in r.data_import_details.iter().flatten() {
                        if let Some(model::DataAccountDetails::StorageAccount(s)) = &d.account_details
                            && let Err(e) = self.check_account(s.storage_account_id.as_deref().unwrap_or_default())
                        {
                            error = invalid(e.code, e.message);
                        }
                    }
                    if r.data_import_details.as_ref().is_none_or(|d| d.len() != 1) {
                        error = invalid(
                            "InvalidStorageAccountCount",
                            "An import names exactly one storage account.".into(),
                        );
                    }
                    A::ValidateDataTransferDetails(model::DataTransferDetailsValidationResponseProperties {
                        validation_type: Some("ValidateDataTransferDetails".into()),
                        status: status(&error),
                        error,
                    })
                }
                R::Other(_) => {
                    return Err(ApiError::bad("InvalidValidationType", "An unknown 'validationType' was given."));
                }
            };
            let valid = match &answer {
                A::ValidateAddress(a) => a.validation_status.as_deref() == Some("Valid"),
                A::ValidateSubscriptionIsAllowedToCreateJob(a) => a.status.as_deref() == Some("Valid"),
                A::ValidatePreferences(a) => a.status.as_deref() == Some("Valid"),
                A::ValidateCreateOrderLimit(a) => a.status.as_deref() == Some("Valid"),
                A::ValidateSkuAvailability(a) => a.status.as_deref() == Some("Valid"),
                A::ValidateDataTransferDetails(a) => a.status.as_deref() == Some("Valid"),
                A::Other(_) => false,
            };
            all_valid &= valid;
            results.push(answer);
        }
        Ok(model::ValidationResponse {
            properties: Some(model::ValidationResponseProperties {
                status: Some(if all_valid { "AllValidToProceed" } else { "InputsRevisitRequired" }.into()),
                individual_response_details: Some(results),
            }),
        })
    }

    /// `regionConfiguration`: the datacenter's address for a SKU (what seedship asks).
    pub fn region_configuration(
        &self,
        location: &str,
        req: &model::RegionConfigurationRequest,
    ) -> ApiResult<model::RegionConfigurationResponse> {
        let mut out = model::RegionConfigurationResponse::default();
        if let Some(r) = &req.datacenter_address_request {
            let sku_name = r.sku_name.clone().unwrap_or_default();
            let sku = Sku::parse(&sku_name)
                .ok_or_else(|| ApiError::bad("SkuNotAvailable", format!("The SKU '{sku_name}' is not emulated.")))?;
            let storage = r.storage_location.clone().unwrap_or_else(|| location.into());
            out.datacenter_address_response = Some(datacenter_address(&storage, sku).ok_or_else(|| {
                ApiError::bad("LocationNotAvailable", format!("'{storage}' has no datacenter that takes disks."))
            })?);
        }
        if req.schedule_availability_request.is_some() {
            out.schedule_availability_response =
                Some(model::ScheduleAvailabilityResponse { available_dates: Some(Vec::new()) });
        }
        if req.transport_availability_request.is_some() {
            out.transport_availability_response = Some(model::TransportAvailabilityResponse {
                transport_availability_details: Some(vec![model::TransportAvailabilityDetails {
                    shipment_type: Some("CustomerManaged".into()),
                }]),
            });
        }
        Ok(out)
    }

    // ---- The datacenter: what its people and machines do. ----

    fn dc_job(&mut self, sub: &str, rg: &str, name: &str, sku: Sku, want: &[StageName]) -> ApiResult<&mut StoredJob> {
        let j = self.job_mut(sub, rg, name)?;
        if j.sku() != Some(sku) {
            return Err(ApiError::conflict("InvalidOperationForSku", format!("Job '{name}' is '{}'.", j.sku)));
        }
        if !want.is_empty() && !j.stage().is_some_and(|s| want.contains(&s)) {
            return Err(ApiError::conflict(
                "InvalidJobState",
                format!(
                    "Job '{name}' is in state '{}'; this needs {:?}.",
                    j.status(),
                    want.iter().map(|s| s.as_str()).collect::<Vec<_>>()
                ),
            ));
        }
        Ok(j)
    }

    /// Data Box Disk: the disks are picked and prepared; each gets a serial and a key, and the
    /// order a passkey (unless the customer gave one). Returns the serials.
    pub fn prepare_disks(
        &mut self,
        sub: &str,
        rg: &str,
        name: &str,
        disks: Option<u32>,
        now_ms: i64,
    ) -> ApiResult<Vec<String>> {
        if disks.is_some_and(|d| d == 0 || d as usize > MAX_DATABOX_DISKS) {
            return Err(ApiError::bad(
                "InvalidRequestContent",
                format!("'disks' must be 1 to {MAX_DATABOX_DISKS} (an order holds at most {MAX_DATABOX_DISKS} disks)."),
            ));
        }
        let n = self.next();
        let j = self.dc_job(sub, rg, name, Sku::DataBoxDisk, &[StageName::DeviceOrdered])?;
        let JobDetails::DataBoxDisk(d) = j.details() else { unreachable!("checked") };
        let ordered: i64 = d.preferred_disks.iter().flatten().map(|(_, n)| *n).sum();
        let count = disks.map(i64::from).unwrap_or(ordered);
        let mut serials = Vec::new();
        for i in 0..count.max(1) as u64 {
            let serial = format!("EMUDBD{:06}{:02}", n % 1_000_000, i);
            j.disk_keys.insert(serial.clone(), Secret(recovery_password(n * 100 + i)));
            serials.push(serial);
        }
        if j.passkey.is_none() {
            j.passkey = Some(Secret(format!("Emu{:012}#pk", (n * 7_919) % 1_000_000_000_000)));
        }
        j.enter(StageName::DevicePrepared, StageStatus::InProgress, now_ms);
        Ok(serials)
    }

    /// Data Box Disk: the disks leave the datacenter with a carrier.
    pub fn dispatch(
        &mut self,
        sub: &str,
        rg: &str,
        name: &str,
        carrier: &str,
        tracking: &str,
        now_ms: i64,
    ) -> ApiResult<()> {
        let j = self.dc_job(sub, rg, name, Sku::DataBoxDisk, &[StageName::DevicePrepared])?;
        let sizes: BTreeMap<String, i64> =
            j.disk_keys.keys().map(|s| (s.clone(), databox::DATABOX_DISK_TB as i64)).collect();
        if let JobDetails::DataBoxDisk(d) = j.details_mut() {
            d.delivery_package = Some(PackageShippingDetails {
                carrier_name: Some(carrier.into()),
                tracking_id: Some(tracking.into()),
                tracking_url: Some(format!("https://carrier.invalid/track/{tracking}")),
            });
            d.disks_and_size_details = Some(sizes);
        }
        j.enter(StageName::Dispatched, StageStatus::InProgress, now_ms);
        Ok(())
    }

    /// Data Box Disk: the disks reach the customer (who may now ask for the passkey).
    pub fn deliver(&mut self, sub: &str, rg: &str, name: &str, now_ms: i64) -> ApiResult<Vec<String>> {
        let j = self.dc_job(sub, rg, name, Sku::DataBoxDisk, &[StageName::Dispatched])?;
        j.enter(StageName::Delivered, StageStatus::InProgress, now_ms);
        Ok(j.serials())
    }

    /// Data Box Disk: the carrier picks the filled disks up from the customer.
    pub fn pick_up(
        &mut self,
        sub: &str,
        rg: &str,
        name: &str,
        carrier: &str,
        tracking: &str,
        now_ms: i64,
    ) -> ApiResult<()> {
        let j = self.dc_job(sub, rg, name, Sku::DataBoxDisk, &[StageName::Delivered])?;
        if let JobDetails::DataBoxDisk(d) = j.details_mut() {
            d.return_package = Some(PackageShippingDetails {
                carrier_name: Some(carrier.into()),
                tracking_id: Some(tracking.into()),
                tracking_url: Some(format!("https://carrier.invalid/track/{tracking}")),
            });
        }
        j.enter(StageName::PickedUp, StageStatus::InProgress, now_ms);
        Ok(())
    }

    /// The package reaches the datacenter holding `serials` (a disk of the job left out was not
    /// received: `DriveNotReceived`). A serial the job does not have is refused.
    pub fn arrive(&mut self, sub: &str, rg: &str, name: &str, serials: &[String], now_ms: i64) -> ApiResult<()> {
        let j = self.job(sub, rg, name)?;
        let want = match j.sku() {
            Some(Sku::CustomerDisk) => StageName::ShippedToAzureDc,
            _ => StageName::PickedUp,
        };
        let sku = j.sku().unwrap_or(Sku::CustomerDisk);
        let j = self.dc_job(sub, rg, name, sku, &[want])?;
        for s in serials {
            if !j.disk_keys.contains_key(s) {
                return Err(ApiError::bad("UnknownDisk", format!("Disk '{s}' is not in job '{name}'.")));
            }
        }
        j.received = serials.iter().cloned().collect();
        for s in j.serials() {
            let got = j.received.contains(&s);
            j.set_copy(&s, |c| {
                c.status = if got { CopyStatus::NotStarted } else { CopyStatus::DriveNotReceived }.as_str().into();
            });
        }
        j.enter(StageName::AtAzureDc, StageStatus::Succeeded, now_ms);
        Ok(())
    }

    /// The copy of one disk starts (the job enters `DataCopy` with its first disk).
    pub fn start_copy(
        &mut self,
        sub: &str,
        rg: &str,
        name: &str,
        serial: &str,
        total_bytes: i64,
        now_ms: i64,
    ) -> ApiResult<()> {
        let j = self.job_mut(sub, rg, name)?;
        if !matches!(j.stage(), Some(StageName::AtAzureDc | StageName::DataCopy)) {
            return Err(ApiError::conflict(
                "InvalidJobState",
                format!("Job '{name}' is in state '{}', not at the datacenter.", j.status()),
            ));
        }
        if !j.received.contains(serial) {
            return Err(ApiError::conflict(
                "DiskNotReceived",
                format!("Disk '{serial}' of job '{name}' was not received."),
            ));
        }
        if j.stage() == Some(StageName::AtAzureDc) {
            j.enter(StageName::DataCopy, StageStatus::InProgress, now_ms);
        }
        j.set_copy(serial, |c| {
            c.status = CopyStatus::InProgress.as_str().into();
            c.total_bytes = total_bytes;
        });
        Ok(())
    }

    /// The copy of one disk ends with `status`, and its logs.
    #[allow(clippy::too_many_arguments)]
    pub fn finish_copy(
        &mut self,
        sub: &str,
        rg: &str,
        name: &str,
        serial: &str,
        status: CopyStatus,
        bytes: i64,
        files: i64,
        errored: i64,
        error_log: Option<String>,
        verbose_log: Option<String>,
    ) -> ApiResult<()> {
        let j = self.job_mut(sub, rg, name)?;
        if j.copy_status(serial).as_deref() != Some(CopyStatus::InProgress.as_str()) {
            return Err(ApiError::conflict(
                "InvalidDiskState",
                format!("Disk '{serial}' of job '{name}' is not being copied."),
            ));
        }
        j.set_copy(serial, |c| {
            c.status = status.as_str().into();
            c.bytes = bytes;
            c.files = files;
            c.errored = errored;
        });
        let log = match j.details() {
            JobDetails::DataBoxCustomerDisk(_) => {
                CopyLogDetails::DataBoxCustomerDisk(DataBoxCustomerDiskCopyLogDetails {
                    copy_log_details_type: Some(Sku::CustomerDisk.as_str().into()),
                    serial_number: Some(serial.into()),
                    error_log_link: error_log,
                    verbose_log_link: verbose_log,
                })
            }
            _ => CopyLogDetails::DataBoxDisk(DataBoxDiskCopyLogDetails {
                copy_log_details_type: Some(Sku::DataBoxDisk.as_str().into()),
                disk_serial_number: Some(serial.into()),
                error_log_link: error_log,
                verbose_log_link: verbose_log,
            }),
        };
        let logs = match j.details_mut() {
            JobDetails::DataBoxCustomerDisk(d) => &mut d.copy_log_details,
            JobDetails::DataBoxDisk(d) => &mut d.copy_log_details,
            _ => unreachable!("only the two emulated kinds are stored"),
        };
        let logs = logs.get_or_insert_with(Vec::new);
        logs.retain(|l| match l {
            CopyLogDetails::DataBoxCustomerDisk(x) => x.serial_number.as_deref() != Some(serial),
            CopyLogDetails::DataBoxDisk(x) => x.disk_serial_number.as_deref() != Some(serial),
            _ => true,
        });
        logs.push(log);
        Ok(())
    }

    /// The copy stops for the customer: the stage waits (`WaitingForCustomerAction`) and the
    /// disk (or every disk) offers `actions`.
    pub fn wait_for_customer(
        &mut self,
        sub: &str,
        rg: &str,
        name: &str,
        serial: Option<&str>,
        now_ms: i64,
    ) -> ApiResult<()> {
        let j = self.job_mut(sub, rg, name)?;
        if !matches!(j.stage(), Some(StageName::AtAzureDc | StageName::DataCopy)) {
            return Err(ApiError::conflict(
                "InvalidJobState",
                format!("Job '{name}' is in state '{}', not copying.", j.status()),
            ));
        }
        if j.stage() == Some(StageName::AtAzureDc) {
            j.enter(StageName::DataCopy, StageStatus::InProgress, now_ms);
        }
        let actions =
            vec![ResolutionCode::Resume.as_str().to_string(), ResolutionCode::MoveToCleanUpDevice.as_str().to_string()];
        for s in j.serials() {
            if serial.is_none_or(|x| x == s) {
                let a = actions.clone();
                j.set_copy(&s, |c| c.actions = a);
            }
        }
        if let Some(last) = j.stages_mut().last_mut() {
            last.stage_status = Some(StageStatus::WaitingForCustomerAction.as_str().into());
        }
        j.props_mut().error = Some(model::CloudError {
            code: Some("SsemUserCopyErrorWaitingForAction".into()),
            message: Some(format!(
                "The copy stopped for a customer action{}.",
                serial.map(|s| format!(" on disk '{s}'")).unwrap_or_default()
            )),
            target: Some("CopyIntervention".into()),
            ..Default::default()
        });
        match j.details_mut() {
            JobDetails::DataBoxCustomerDisk(d) => d.actions = Some(actions),
            JobDetails::DataBoxDisk(d) => d.actions = Some(actions),
            _ => {}
        }
        j.version += 1;
        Ok(())
    }

    /// Ends the copy: the job's final state follows from its disks.
    pub fn complete(&mut self, sub: &str, rg: &str, name: &str, now_ms: i64) -> ApiResult<StageName> {
        let j = self.job_mut(sub, rg, name)?;
        if !matches!(j.stage(), Some(StageName::AtAzureDc | StageName::DataCopy)) {
            return Err(ApiError::conflict(
                "InvalidJobState",
                format!("Job '{name}' is in state '{}', not copying.", j.status()),
            ));
        }
        let statuses: Vec<Option<CopyStatus>> =
            j.serials().iter().map(|s| j.copy_status(s).as_deref().and_then(CopyStatus::parse)).collect();
        if statuses.iter().any(|s| matches!(s, Some(CopyStatus::InProgress))) {
            return Err(ApiError::conflict("CopyInProgress", format!("A disk of job '{name}' is still being copied.")));
        }
        let copied = statuses
            .iter()
            .filter(|s| matches!(s, Some(CopyStatus::Completed | CopyStatus::CompletedWithErrors)))
            .count();
        let clean = statuses.iter().all(|s| matches!(s, Some(CopyStatus::Completed)));
        let stage = if clean {
            StageName::Completed
        } else if copied == 0 {
            StageName::FailedIssueDetectedAtAzureDc
        } else {
            StageName::CompletedWithErrors
        };
        let status = match stage {
            StageName::Completed => StageStatus::Succeeded,
            StageName::CompletedWithErrors => StageStatus::SucceededWithErrors,
            _ => StageStatus::Failed,
        };
        j.enter(stage, status, now_ms);
        Ok(stage)
    }

    /// The disks go back to the customer.
    pub fn ship_back(
        &mut self,
        sub: &str,
        rg: &str,
        name: &str,
        carrier: &str,
        tracking: &str,
        _now_ms: i64,
    ) -> ApiResult<()> {
        let j = self.job_mut(sub, rg, name)?;
        if j.active() {
            return Err(ApiError::conflict(
                "InvalidJobState",
                format!("Job '{name}' is still in state '{}'.", j.status()),
            ));
        }
        let pkg = PackageShippingDetails {
            carrier_name: Some(carrier.into()),
            tracking_id: Some(tracking.into()),
            tracking_url: Some(format!("https://carrier.invalid/track/{tracking}")),
        };
        match j.details_mut() {
            JobDetails::DataBoxCustomerDisk(d) => d.return_package = Some(pkg),
            JobDetails::DataBoxDisk(d) => d.return_package = Some(pkg),
            _ => {}
        }
        j.version += 1;
        Ok(())
    }

    /// The service's timers: a customer-disk job still awaiting shipment details 14 days after
    /// it was made is deleted; a finished job is deleted after 90 days. Returns what happened.
    pub fn tick(&mut self, now_ms: i64) -> Vec<String> {
        let mut said = Vec::new();
        self.jobs.retain(|_, j| {
            let age = now_ms - j.created_ms;
            if j.stage() == Some(StageName::AwaitingShipmentDetails) && age >= databox::SHIPMENT_DETAILS_DAYS * DAY_MS {
                said.push(format!("{}: deleted, no shipment details within 14 days", j.name));
                return false;
            }
            if !j.active() && age >= 90 * DAY_MS {
                said.push(format!("{}: deleted, 90 days after it ended", j.name));
                return false;
            }
            true
        });
        said
    }

    /// The key the datacenter unlocks a disk with.
    pub fn disk_key(&self, sub: &str, rg: &str, name: &str, serial: &str) -> ApiResult<Secret> {
        self.job(sub, rg, name)?
            .disk_keys
            .get(serial)
            .cloned()
            .ok_or_else(|| ApiError::bad("UnknownDisk", format!("Disk '{serial}' is not in job '{name}'.")))
    }
}

#[cfg(test)]
mod tests;
