//! The emulated `Microsoft.ImportExport` service: the ARM rules of jobs and locations as pure
//! functions over a state that the emulator binary persists. The datacenter's own events
//! (a package arrives, drives are copied) come on top of this.
//!
//! Error codes for rules Azure enforces but does not document (see
//! `../shared/reference/azure-import-export.md` §6.7) are ours and stable:
//! `InvalidJobName`, `InvalidDriveList` (more than 10 drives, or a drive without its fields),
//! `DuplicateDrive` (a drive id already in an active job), `ReturnAddressRequired`,
//! `DeliveryPackageRequired`, `DuplicateTrackingNumber`, `InvalidJobState`, `JobNotFound`
//! (ARM's `ResourceNotFound` shape), `InvalidRequestContent`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::arm::{self, JobDetails, JobResponse, JobState, Location, PutJobParameters, Secret, UpdateJobParameters};

pub const MAX_DRIVES: usize = 10;

/// An answer the HTTP façade turns into a status code and ARM's error envelope.
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
    pub fn envelope(&self) -> arm::ErrorResponse {
        arm::ErrorResponse::new(self.code, self.message.clone())
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// One job as the service keeps it: the resource, and its drive keys apart from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredJob {
    pub subscription: String,
    pub resource_group: String,
    pub job: JobResponse,
    /// Drive id → BitLocker key; never in a GET.
    pub keys: BTreeMap<String, Secret>,
    pub created_ms: i64,
    /// When the PATCH to `Shipping` came.
    pub shipped_ms: Option<i64>,
}

impl StoredJob {
    pub fn details(&self) -> &JobDetails {
        self.job.properties.as_ref().expect("stored jobs have properties")
    }
    fn details_mut(&mut self) -> &mut JobDetails {
        self.job.properties.as_mut().expect("stored jobs have properties")
    }
    pub fn state(&self) -> &str {
        self.details().state.as_deref().unwrap_or("Creating")
    }
    fn active(&self) -> bool {
        !matches!(self.state(), "Completed" | "Closed" | "Canceled")
    }
}

/// The whole service state (what the emulator persists).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceState {
    /// Key: "subscription/resourceGroup/jobName", lowercase as ARM compares them.
    pub jobs: BTreeMap<String, StoredJob>,
}

fn key(sub: &str, rg: &str, job: &str) -> String {
    format!("{}/{}/{}", sub.to_ascii_lowercase(), rg.to_ascii_lowercase(), job.to_ascii_lowercase())
}

fn not_found(job: &str, rg: &str) -> ApiError {
    ApiError::new(
        404,
        "ResourceNotFound",
        format!("The Resource 'Microsoft.ImportExport/jobs/{job}' under resource group '{rg}' was not found."),
    )
}

/// The datacenters that take drives, with their shipping addresses (names as ARM's location
/// names; addresses made up for the emulator, in the shape the examples show).
pub fn locations() -> Vec<Location> {
    let loc = |name: &str, street: &str, city: &str, state: &str, postal: &str, country: &str| Location {
        id: Some(arm::paths::location_id(name)),
        name: Some(name.into()),
        kind: Some(arm::LOCATION_TYPE.into()),
        properties: Some(arm::LocationProperties {
            recipient_name: Some("Microsoft Azure Import/Export Service (emulated)".into()),
            street_address1: Some(street.into()),
            street_address2: Some(String::new()),
            city: Some(city.into()),
            state_or_province: Some(state.into()),
            postal_code: Some(postal.into()),
            country_or_region: Some(country.into()),
            phone: Some("+1 000 000 0000".into()),
            additional_shipping_information: Some(String::new()),
            supported_carriers: Some(vec!["DHL".into(), "FedEx".into(), "UPS".into(), "USPS".into()]),
            alternate_locations: Some(vec![name.into()]),
        }),
    };
    vec![
        loc("westeurope", "1 Emulated Datacenter Way", "Amsterdam", "NH", "1000 AA", "Netherlands"),
        loc("northeurope", "2 Emulated Datacenter Way", "Dublin", "D", "D01", "Ireland"),
        loc("eastus", "3 Emulated Datacenter Way", "Boydton", "VA", "23917", "USA"),
        loc("westus", "4 Emulated Datacenter Way", "Santa Clara", "CA", "95050", "USA"),
    ]
}

/// A location by ARM name ("westeurope") or display-ish name ("West Europe").
pub fn location(name: &str) -> Option<Location> {
    let want: String = name.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_ascii_lowercase();
    locations().into_iter().find(|l| l.name.as_deref() == Some(want.as_str()))
}

fn rfc3339(ms: i64) -> String {
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

impl ServiceState {
    /// PUT: create a job (201), or answer the same job again for the same body (200).
    pub fn put_job(
        &mut self,
        sub: &str,
        rg: &str,
        name: &str,
        body: PutJobParameters,
        caller: &str,
        now_ms: i64,
    ) -> ApiResult<(u16, JobResponse)> {
        if !arm::paths::valid_job_name(name) {
            return Err(ApiError::new(
                400,
                "InvalidJobName",
                format!(
                    "The job name '{name}' is invalid: use 2-64 letters, digits, '-' or '_', starting with a letter or digit."
                ),
            ));
        }
        let k = key(sub, rg, name);
        let loc_name = body.location.clone().unwrap_or_default();
        let loc = location(&loc_name).ok_or_else(|| {
            ApiError::new(
                400,
                "LocationNotAvailableForResourceType",
                format!("The location '{loc_name}' is not available for resource type 'Microsoft.ImportExport/jobs'."),
            )
        })?;
        let mut p = body
            .properties
            .clone()
            .ok_or_else(|| ApiError::new(400, "InvalidRequestContent", "The request content has no 'properties'."))?;
        if p.job_type.as_deref() != Some("Import") {
            return Err(ApiError::new(400, "InvalidRequestContent", "Only jobs of jobType 'Import' are emulated."));
        }
        if p.storage_account_id.as_deref().is_none_or(str::is_empty) {
            return Err(ApiError::new(400, "InvalidRequestContent", "'properties.storageAccountId' is required."));
        }
        let drives = p.drive_list.clone().unwrap_or_default();
        if drives.is_empty() || drives.len() > MAX_DRIVES {
            return Err(ApiError::new(
                400,
                "InvalidDriveList",
                format!("An import job has 1 to {MAX_DRIVES} drives; this request has {}.", drives.len()),
            ));
        }
        let mut keys = BTreeMap::new();
        for (i, d) in drives.iter().enumerate() {
            let id = d.drive_id.clone().unwrap_or_default();
            let missing = [
                ("driveId", d.drive_id.is_none()),
                ("bitLockerKey", d.bit_locker_key.is_none()),
                ("manifestFile", d.manifest_file.is_none()),
                ("manifestHash", d.manifest_hash.is_none()),
            ];
            if let Some((f, _)) = missing.iter().find(|(_, m)| *m) {
                return Err(ApiError::new(400, "InvalidDriveList", format!("driveList[{i}] has no '{f}'.")));
            }
            if keys.insert(id.clone(), d.bit_locker_key.clone().expect("checked")).is_some() {
                return Err(ApiError::new(400, "InvalidDriveList", format!("Drive '{id}' is listed twice.")));
            }
        }
        if let Some(existing) = self.jobs.get(&k) {
            // ARM's PUT is create-or-update; for a job already created only the same body is
            // answered again (the coordinator's retry after a crash).
            let same = existing.details().storage_account_id == p.storage_account_id
                && existing.keys == keys
                && existing.details().drive_list.as_ref().map(|l| l.len()) == Some(drives.len());
            if same {
                return Ok((200, existing.job.clone()));
            }
            return Err(ApiError::new(409, "Conflict", format!("A different job named '{name}' already exists.")));
        }
        for (other_key, other) in &self.jobs {
            if other.active()
                && let Some(dup) = keys.keys().find(|id| other.keys.contains_key(*id))
            {
                return Err(ApiError::new(
                    400,
                    "DuplicateDrive",
                    format!("Drive '{dup}' is already in active job '{}'.", other_key.rsplit('/').next().unwrap_or("")),
                ));
            }
        }
        // What the service fills in.
        let lp = loc.properties.clone().unwrap_or_default();
        p.shipping_information = Some(arm::ShippingInformation {
            recipient_name: lp.recipient_name,
            street_address1: lp.street_address1,
            street_address2: lp.street_address2,
            city: lp.city,
            state_or_province: lp.state_or_province,
            postal_code: lp.postal_code,
            country_or_region: lp.country_or_region,
            phone: lp.phone,
            additional_information: Some(String::new()),
        });
        p.state = Some(JobState::Creating.as_str().into());
        p.cancel_requested = Some(false);
        p.provisioning_state = Some("Succeeded".into());
        p.encryption_key.get_or_insert(arm::EncryptionKeyDetails {
            kek_type: Some("MicrosoftManaged".into()),
            ..Default::default()
        });
        p.drive_list = Some(
            drives
                .into_iter()
                .map(|mut d| {
                    d.bit_locker_key = None;
                    d.state = Some(arm::DriveState::Specified.as_str().into());
                    d
                })
                .collect(),
        );
        p.system_data = None;
        let at = rfc3339(now_ms);
        let job = JobResponse {
            system_data: Some(arm::SystemData {
                created_by: Some(caller.into()),
                created_by_type: Some("Application".into()),
                created_at: Some(at.clone()),
                last_modified_by: Some(caller.into()),
                last_modified_by_type: Some("Application".into()),
                last_modified_at: Some(at),
            }),
            properties: Some(p),
            identity: Some(arm::IdentityDetails { kind: Some("None".into()), ..Default::default() }),
            id: Some(arm::paths::job_id(sub, rg, name)),
            name: Some(name.into()),
            kind: Some(arm::JOB_TYPE.into()),
            location: loc.name.clone(),
            tags: body.tags,
        };
        self.jobs.insert(
            k,
            StoredJob {
                subscription: sub.into(),
                resource_group: rg.into(),
                job: job.clone(),
                keys,
                created_ms: now_ms,
                shipped_ms: None,
            },
        );
        Ok((201, job))
    }

    pub fn get_job(&self, sub: &str, rg: &str, name: &str) -> ApiResult<&StoredJob> {
        self.jobs.get(&key(sub, rg, name)).ok_or_else(|| not_found(name, rg))
    }

    /// PATCH: shipping details and `state: Shipping`, cancellation, return details.
    pub fn update_job(
        &mut self,
        sub: &str,
        rg: &str,
        name: &str,
        body: UpdateJobParameters,
        caller: &str,
        now_ms: i64,
    ) -> ApiResult<JobResponse> {
        let k = key(sub, rg, name);
        let tracking_in_use = |jobs: &BTreeMap<String, StoredJob>, t: &str| {
            jobs.iter()
                .find(|(jk, j)| {
                    **jk != k
                        && j.details()
                            .delivery_package
                            .as_ref()
                            .is_some_and(|d| d.tracking_number.eq_ignore_ascii_case(t))
                })
                .map(|(_, j)| j.job.name.clone().unwrap_or_default())
        };
        let u = body.properties.unwrap_or_default();
        if let Some(dp) = &u.delivery_package
            && let Some(other) = tracking_in_use(&self.jobs, &dp.tracking_number)
        {
            return Err(ApiError::new(
                400,
                "DuplicateTrackingNumber",
                format!("Tracking number '{}' is already used by job '{other}'.", dp.tracking_number),
            ));
        }
        let j = self.jobs.get_mut(&k).ok_or_else(|| not_found(name, rg))?;
        let state = j.state().to_string();
        // The official example sends `"state": ""`: no change.
        let to_shipping = u.state.as_deref() == Some("Shipping");
        if let Some(s) = &u.state
            && !s.is_empty()
            && s != "Shipping"
        {
            return Err(ApiError::new(
                400,
                "InvalidRequestContent",
                format!("'state' can only be set to 'Shipping', not '{s}'."),
            ));
        }
        if u.cancel_requested == Some(false) {
            return Err(ApiError::new(400, "InvalidRequestContent", "'cancelRequested', if specified, must be true."));
        }
        if u.cancel_requested == Some(true) && !matches!(state.as_str(), "Creating" | "Shipping") {
            return Err(ApiError::new(
                409,
                "InvalidJobState",
                format!("Job '{name}' is {state}; only a job that is Creating or Shipping can be cancelled."),
            ));
        }
        if (to_shipping || u.delivery_package.is_some()) && state != "Creating" && state != "Shipping" {
            return Err(ApiError::new(
                409,
                "InvalidJobState",
                format!("Job '{name}' is {state}; shipping can be recorded while it is Creating."),
            ));
        }
        if j.details().cancel_requested == Some(true) && to_shipping {
            return Err(ApiError::new(409, "InvalidJobState", format!("Job '{name}' is being cancelled.")));
        }
        // Work on a copy: a refused request changes nothing.
        let stored = j;
        let mut copy = stored.clone();
        let j = &mut copy;
        let d = j.details_mut();
        if let Some(v) = u.return_address {
            d.return_address = Some(v);
        }
        if let Some(v) = u.return_shipping {
            d.return_shipping = Some(v);
        }
        if let Some(v) = u.delivery_package {
            d.delivery_package = Some(v);
        }
        if let Some(v) = u.log_level {
            d.log_level = Some(v);
        }
        if let Some(v) = u.backup_drive_manifest {
            d.backup_drive_manifest = Some(v);
        }
        // A drive list in a PATCH updates drives' details (e.g. a BitLocker key entered
        // wrongly), before the drives arrive.
        if let Some(list) = u.drive_list {
            if !matches!(state.as_str(), "Creating" | "Shipping") {
                return Err(ApiError::new(
                    409,
                    "InvalidJobState",
                    format!("Job '{name}' is {state}; drive details can change while it is Creating or Shipping."),
                ));
            }
            for (i, nd) in list.into_iter().enumerate() {
                let id = nd.drive_id.clone().unwrap_or_default();
                if !j.keys.contains_key(&id) {
                    return Err(ApiError::new(
                        400,
                        "InvalidDriveList",
                        format!("driveList[{i}]: drive '{id}' is not in job '{name}'."),
                    ));
                }
                if let Some(k) = nd.bit_locker_key {
                    j.keys.insert(id.clone(), k);
                }
                let d = j.details_mut().drive_list.get_or_insert_with(Vec::new);
                if let Some(old) = d.iter_mut().find(|o| o.drive_id.as_deref() == Some(id.as_str())) {
                    if nd.manifest_hash.is_some() {
                        old.manifest_hash = nd.manifest_hash;
                    }
                    if nd.manifest_file.is_some() {
                        old.manifest_file = nd.manifest_file;
                    }
                }
            }
        }
        let d = j.details_mut();
        if to_shipping {
            if d.return_address.is_none() {
                return Err(ApiError::new(
                    400,
                    "ReturnAddressRequired",
                    "Set 'returnAddress' before the job can be Shipping.",
                ));
            }
            if d.delivery_package.is_none() {
                return Err(ApiError::new(
                    400,
                    "DeliveryPackageRequired",
                    "Set 'deliveryPackage' (carrier and tracking number) before the job can be Shipping.",
                ));
            }
            if state == "Creating" {
                d.state = Some(JobState::Shipping.as_str().into());
                j.shipped_ms = Some(now_ms);
            }
        }
        let d = j.details_mut();
        if u.cancel_requested == Some(true) {
            // Asynchronous, as Azure's: the flag now, the state at the next tick.
            d.cancel_requested = Some(true);
        }
        if let Some(t) = body.tags {
            j.job.tags = Some(t);
        }
        if let Some(sd) = j.job.system_data.as_mut() {
            sd.last_modified_by = Some(caller.into());
            sd.last_modified_at = Some(rfc3339(now_ms));
        }
        let out = j.job.clone();
        *stored = copy;
        Ok(out)
    }

    /// DELETE: only a job that is Creating, Completed, Closed or Canceled.
    pub fn delete_job(&mut self, sub: &str, rg: &str, name: &str) -> ApiResult<()> {
        let k = key(sub, rg, name);
        let j = self.jobs.get(&k).ok_or_else(|| not_found(name, rg))?;
        if !matches!(j.state(), "Creating" | "Completed" | "Closed" | "Canceled") {
            return Err(ApiError::new(
                409,
                "InvalidJobState",
                format!("Only jobs in the Creating or Completed states can be deleted; job '{name}' is {}.", j.state()),
            ));
        }
        self.jobs.remove(&k);
        Ok(())
    }

    /// The jobs of a subscription (or one of its resource groups). As Azure's list, without
    /// the drive list.
    pub fn list_jobs(&self, sub: &str, rg: Option<&str>) -> Vec<JobResponse> {
        self.jobs
            .values()
            .filter(|j| {
                j.subscription.eq_ignore_ascii_case(sub) && rg.is_none_or(|r| j.resource_group.eq_ignore_ascii_case(r))
            })
            .map(|j| {
                let mut r = j.job.clone();
                if let Some(p) = r.properties.as_mut() {
                    p.drive_list = None;
                }
                r
            })
            .collect()
    }

    /// The BitLocker key the job holds for `drive` (the datacenter unlocks the drive with it).
    pub fn drive_key(&self, sub: &str, rg: &str, name: &str, drive: &str) -> ApiResult<Secret> {
        let j = self.get_job(sub, rg, name)?;
        j.keys
            .get(drive)
            .cloned()
            .ok_or_else(|| ApiError::new(404, "DriveNotFound", format!("Drive '{drive}' is not in job '{name}'.")))
    }

    pub fn bitlocker_keys(&self, sub: &str, rg: &str, name: &str) -> ApiResult<arm::GetBitLockerKeysResponse> {
        let j = self.get_job(sub, rg, name)?;
        Ok(arm::GetBitLockerKeysResponse {
            value: Some(
                j.keys
                    .iter()
                    .map(|(id, k)| arm::DriveBitLockerKey {
                        bit_locker_key: Some(k.clone()),
                        drive_id: Some(id.clone()),
                    })
                    .collect(),
            ),
        })
    }
}

/// Days, in milliseconds, for the datacenter's timers.
pub const DAY_MS: i64 = 86_400_000;

fn drive_mut<'a>(j: &'a mut StoredJob, name: &str, drive: &str) -> ApiResult<&'a mut arm::DriveStatus> {
    j.details_mut()
        .drive_list
        .get_or_insert_with(Vec::new)
        .iter_mut()
        .find(|d| d.drive_id.as_deref() == Some(drive))
        .ok_or_else(|| ApiError::new(404, "DriveNotFound", format!("Job '{name}' has no drive '{drive}'.")))
}

fn drive_state(d: &arm::DriveStatus) -> &str {
    d.state.as_deref().unwrap_or("Specified")
}

/// What the datacenter does, as commands (the emulator's `/_datacenter` routes call these).
impl ServiceState {
    fn job_mut(&mut self, sub: &str, rg: &str, name: &str) -> ApiResult<&mut StoredJob> {
        self.jobs.get_mut(&key(sub, rg, name)).ok_or_else(|| not_found(name, rg))
    }

    fn in_state(j: &StoredJob, name: &str, allowed: &[&str]) -> ApiResult<()> {
        if allowed.contains(&j.state()) {
            Ok(())
        } else {
            Err(ApiError::new(
                409,
                "InvalidJobState",
                format!("Job '{name}' is {}; this needs it {}.", j.state(), allowed.join(" or ")),
            ))
        }
    }

    /// The package arrives with `drives` in it: those are `Received`, the job's others
    /// `NeverReceived`. A drive id the job does not have is refused.
    pub fn package_arrives(&mut self, sub: &str, rg: &str, name: &str, drives: &[String]) -> ApiResult<JobResponse> {
        let mut j = self.job_mut(sub, rg, name)?.clone();
        Self::in_state(&j, name, &["Shipping"])?;
        for id in drives {
            drive_mut(&mut j, name, id)?;
        }
        for d in j.details_mut().drive_list.get_or_insert_with(Vec::new) {
            let got = d.drive_id.as_ref().is_some_and(|id| drives.contains(id));
            d.state =
                Some(if got { arm::DriveState::Received } else { arm::DriveState::NeverReceived }.as_str().into());
        }
        j.details_mut().state = Some(JobState::Received.as_str().into());
        let out = j.job.clone();
        *self.job_mut(sub, rg, name)? = j;
        Ok(out)
    }

    /// A received drive starts copying.
    pub fn start_copy(&mut self, sub: &str, rg: &str, name: &str, drive: &str) -> ApiResult<JobResponse> {
        let mut j = self.job_mut(sub, rg, name)?.clone();
        Self::in_state(&j, name, &["Received", "Transferring"])?;
        let d = drive_mut(&mut j, name, drive)?;
        // Transferring: a copy the datacenter was doing when it stopped starts again.
        if !matches!(drive_state(d), "Received" | "Transferring") {
            return Err(ApiError::new(
                409,
                "InvalidDriveState",
                format!("Drive '{drive}' is {}, not Received.", drive_state(d)),
            ));
        }
        d.state = Some(arm::DriveState::Transferring.as_str().into());
        d.copy_status = Some("InProgress".into());
        d.percent_complete = Some(0);
        j.details_mut().state = Some(JobState::Transferring.as_str().into());
        let out = j.job.clone();
        *self.job_mut(sub, rg, name)? = j;
        Ok(out)
    }

    /// A copying drive is done: `Completed`, or `CompletedMoreInfo` with the reason as its copy
    /// status and an error log. When no drive is left to copy the job goes to `Packaging`.
    #[allow(clippy::too_many_arguments)]
    pub fn finish_copy(
        &mut self,
        sub: &str,
        rg: &str,
        name: &str,
        drive: &str,
        bytes: i64,
        failure: Option<&str>,
        error_log_uri: Option<String>,
    ) -> ApiResult<JobResponse> {
        let mut j = self.job_mut(sub, rg, name)?.clone();
        Self::in_state(&j, name, &["Transferring"])?;
        let d = drive_mut(&mut j, name, drive)?;
        if drive_state(d) != "Transferring" {
            return Err(ApiError::new(
                409,
                "InvalidDriveState",
                format!("Drive '{drive}' is {}, not Transferring.", drive_state(d)),
            ));
        }
        d.bytes_succeeded = Some(bytes);
        d.percent_complete = Some(100);
        match failure {
            None => {
                d.state = Some(arm::DriveState::Completed.as_str().into());
                d.copy_status = Some("Completed".into());
            }
            Some(why) => {
                d.state = Some(arm::DriveState::CompletedMoreInfo.as_str().into());
                d.copy_status = Some(why.into());
                d.error_log_uri = error_log_uri;
            }
        }
        let list = j.details().drive_list.clone().unwrap_or_default();
        let done = list
            .iter()
            .filter(|d| matches!(drive_state(d), "Completed" | "CompletedMoreInfo" | "NeverReceived"))
            .count();
        j.details_mut().percent_complete = Some((done * 100 / list.len().max(1)) as i64);
        if done == list.len() {
            j.details_mut().state = Some(JobState::Packaging.as_str().into());
        }
        let out = j.job.clone();
        *self.job_mut(sub, rg, name)? = j;
        Ok(out)
    }

    /// Records where a copied drive's verbose log is (jobs with log level `Verbose`).
    pub fn set_verbose_log(&mut self, sub: &str, rg: &str, name: &str, drive: &str, uri: String) -> ApiResult<()> {
        let mut j = self.job_mut(sub, rg, name)?.clone();
        drive_mut(&mut j, name, drive)?.verbose_log_uri = Some(uri);
        *self.job_mut(sub, rg, name)? = j;
        Ok(())
    }

    /// The drives go back: `ShippedBack`, the return package recorded; the job `Completed`
    /// when every drive completed, else `Closed`.
    pub fn ship_back(
        &mut self,
        sub: &str,
        rg: &str,
        name: &str,
        carrier: &str,
        tracking: &str,
        date: &str,
    ) -> ApiResult<JobResponse> {
        let mut j = self.job_mut(sub, rg, name)?.clone();
        Self::in_state(&j, name, &["Packaging"])?;
        let list = j.details_mut().drive_list.get_or_insert_with(Vec::new);
        let clean = list.iter().all(|d| drive_state(d) == "Completed");
        let mut back = 0;
        for d in list.iter_mut() {
            if drive_state(d) != "NeverReceived" {
                d.state = Some(arm::DriveState::ShippedBack.as_str().into());
                back += 1;
            }
        }
        let p = j.details_mut();
        p.return_package = Some(arm::PackageInformation {
            carrier_name: carrier.into(),
            tracking_number: tracking.into(),
            drive_count: back,
            ship_date: date.into(),
        });
        p.state = Some(if clean { JobState::Completed } else { JobState::Closed }.as_str().into());
        let out = j.job.clone();
        *self.job_mut(sub, rg, name)? = j;
        Ok(out)
    }

    /// The datacenter's clock: a cancel requested takes effect; a job left `Creating` 14 days is
    /// deleted; drives not received 14 days after shipping are `NeverReceived` (and with none
    /// received the job is `Closed`); a finished job is deleted after 90 days. Returns what
    /// happened, one line per change.
    pub fn tick(&mut self, now_ms: i64) -> Vec<String> {
        let mut said = Vec::new();
        let mut gone = Vec::new();
        for (k, j) in self.jobs.iter_mut() {
            let name = j.job.name.clone().unwrap_or_default();
            let state = j.state().to_string();
            if j.details().cancel_requested == Some(true) && matches!(state.as_str(), "Creating" | "Shipping") {
                j.details_mut().state = Some("Canceled".into());
                said.push(format!("{name}: canceled"));
                continue;
            }
            match state.as_str() {
                "Creating" if now_ms - j.created_ms >= 14 * DAY_MS => {
                    gone.push(k.clone());
                    said.push(format!("{name}: deleted, no shipping information within 14 days"));
                }
                "Shipping" if j.shipped_ms.is_some_and(|t| now_ms - t >= 14 * DAY_MS) => {
                    for d in j.details_mut().drive_list.get_or_insert_with(Vec::new) {
                        d.state = Some(arm::DriveState::NeverReceived.as_str().into());
                    }
                    j.details_mut().state = Some(JobState::Closed.as_str().into());
                    said.push(format!("{name}: drives never received within 14 days of shipping; closed"));
                }
                "Completed" | "Closed" | "Canceled" if now_ms - j.created_ms >= 90 * DAY_MS => {
                    gone.push(k.clone());
                    said.push(format!("{name}: deleted after 90 days"));
                }
                _ => {}
            }
        }
        for k in gone {
            self.jobs.remove(&k);
        }
        said
    }
}

#[cfg(test)]
mod tests;
