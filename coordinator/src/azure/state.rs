//! What the coordinator reads from Azure, as the pure rules take it: a `Microsoft.DataBox` job
//! as a [`JobSnapshot`] (its stage, the stage's status, the job's error, each disk's copy
//! status, progress and logs), the datacenter address as lines, and `validateInputs`' refusals
//! as reasons. Strings stay as Azure sent them; nothing here decides.

use seedship_azure::databox::{CopyStatus, model};

use crate::domain::import::{JobDrive, JobSnapshot};
use crate::domain::model::RecoveryPassword;

/// What `listCredentials` gives for a Data Box Disk order: each disk's serial and key (the
/// BitLocker recovery password of its volume), and the passkey with whether the customer
/// chose it. Secrets; Debug never shows them.
#[derive(Debug, Clone)]
pub struct DiskCredentials {
    pub disks: Vec<(String, RecoveryPassword)>,
    pub passkey: Option<(RecoveryPassword, bool)>,
}

/// The Data Box Disk credentials of `list`, checked: every serial a valid drive id and once,
/// every key a BitLocker recovery password. `Err` says what is wrong (never a secret).
pub fn disk_credentials(list: &model::UnencryptedCredentialsList) -> Result<DiskCredentials, String> {
    let secrets = list
        .value
        .iter()
        .flatten()
        .find_map(|c| match &c.job_secrets {
            Some(model::JobSecrets::DataBoxDisk(s)) => Some(s),
            _ => None,
        })
        .ok_or("Azure's listCredentials gave no Data Box Disk secrets")?;
    if let Some(e) = &secrets.error {
        return Err(format!(
            "Azure could not give the disks' secrets: {}: {}",
            e.code.as_deref().unwrap_or(""),
            e.message.as_deref().unwrap_or("")
        ));
    }
    let mut disks: Vec<(String, RecoveryPassword)> = Vec::new();
    for d in secrets.disk_secrets.iter().flatten() {
        let serial = d.disk_serial_number.clone().unwrap_or_default();
        crate::domain::validate::drive_id(&serial)
            .map_err(|_| format!("Azure named a disk {serial:?}, which is not a usable disk serial"))?;
        if disks.iter().any(|(s, _)| *s == serial) {
            return Err(format!("Azure listed disk {serial} twice"));
        }
        let key = d.bit_locker_key.as_ref().map(|k| k.expose().to_string()).unwrap_or_default();
        crate::domain::validate::recovery_password(&key)
            .map_err(|_| format!("Azure's key for disk {serial} is not a BitLocker recovery password"))?;
        disks.push((serial, RecoveryPassword(key)));
    }
    if disks.is_empty() {
        return Err("Azure's listCredentials named no disks".into());
    }
    let passkey = secrets
        .pass_key
        .as_ref()
        .map(|k| (RecoveryPassword(k.expose().to_string()), secrets.is_passkey_user_defined.unwrap_or(false)));
    Ok(DiskCredentials { disks, passkey })
}

/// Each Data Box Disk's size in bytes as the job says it (`disksAndSizeDetails`, in TB).
pub fn disk_sizes(job: &model::JobResource) -> std::collections::BTreeMap<String, u64> {
    match job.properties.as_ref().and_then(|p| p.details.as_ref()) {
        Some(model::JobDetails::DataBoxDisk(d)) => d
            .disks_and_size_details
            .iter()
            .flatten()
            .map(|(s, tb)| (s.clone(), (*tb).max(0) as u64 * 1_000_000_000_000))
            .collect(),
        _ => Default::default(),
    }
}

/// A job (GET with `$expand=details`) as the coordinator mirrors it.
pub fn snapshot(job: &model::JobResource) -> JobSnapshot {
    let p = job.properties.clone().unwrap_or_default();
    let state = p.status.clone().unwrap_or_default();
    let error = p
        .error
        .as_ref()
        .map(|e| format!("{}: {}", e.code.as_deref().unwrap_or(""), e.message.as_deref().unwrap_or("")))
        .unwrap_or_default();
    let mut snap =
        JobSnapshot { state, error, cancel_requested: p.cancellation_reason.is_some(), ..Default::default() };
    let (stages, actions, drives, logs, tracking) = match p.details {
        Some(model::JobDetails::DataBoxCustomerDisk(d)) => {
            let drives = d
                .copy_progress
                .unwrap_or_default()
                .into_iter()
                .map(|c| {
                    disk(
                        c.serial_number,
                        c.copy_status,
                        c.bytes_processed,
                        c.total_bytes_to_process,
                        c.files_errored_out,
                    )
                })
                .collect::<Vec<_>>();
            // Disks Azure has no progress for yet: listed as not started.
            let mut drives = drives;
            for serial in d.import_disk_details_collection.iter().flat_map(|m| m.keys()) {
                if !drives.iter().any(|x| &x.drive_id == serial) {
                    drives.push(JobDrive { drive_id: serial.clone(), ..Default::default() });
                }
            }
            let tracking = d.deliver_to_dc_package_details.and_then(|p| p.tracking_id);
            (d.job_stages, d.actions, drives, d.copy_log_details, tracking)
        }
        Some(model::JobDetails::DataBoxDisk(d)) => {
            let drives = d
                .copy_progress
                .unwrap_or_default()
                .into_iter()
                .map(|c| {
                    let mut x = disk(c.serial_number, c.status, c.bytes_copied, None, None);
                    x.percent_complete = c.percent_complete;
                    x
                })
                .collect();
            let tracking = d.return_package.and_then(|p| p.tracking_id);
            (d.job_stages, d.actions, drives, d.copy_log_details, tracking)
        }
        _ => (None, None, Vec::new(), None, None),
    };
    snap.stage_status = stages
        .as_ref()
        .and_then(|s| s.iter().rev().find(|x| x.stage_name.as_deref() == Some(snap.state.as_str())).or(s.last()))
        .and_then(|s| s.stage_status.clone())
        .unwrap_or_default();
    snap.actions = actions.unwrap_or_default();
    snap.drives = drives;
    for log in logs.into_iter().flatten() {
        let (serial, error, verbose) = match log {
            model::CopyLogDetails::DataBoxCustomerDisk(l) => (l.serial_number, l.error_log_link, l.verbose_log_link),
            model::CopyLogDetails::DataBoxDisk(l) => (l.disk_serial_number, l.error_log_link, l.verbose_log_link),
            _ => continue,
        };
        if let Some(d) = snap.drives.iter_mut().find(|d| Some(&d.drive_id) == serial.as_ref()) {
            d.error_log_uri = error.unwrap_or_default();
            d.verbose_log_uri = verbose.unwrap_or_default();
        }
    }
    snap.drives.sort_by(|a, b| a.drive_id.cmp(&b.drive_id));
    let (done, total): (i64, i64) =
        snap.drives.iter().fold((0, 0), |(d, t), x| (d + x.percent_complete.unwrap_or(0), t + 100));
    snap.percent_complete = (total > 0).then(|| done * 100 / total);
    snap.delivery_tracking = tracking;
    snap
}

fn disk(
    serial: Option<String>,
    status: Option<String>,
    bytes: Option<i64>,
    total: Option<i64>,
    errored: Option<i64>,
) -> JobDrive {
    let status = status.unwrap_or_default();
    let known = CopyStatus::parse(&status);
    let mut what = known.map(|c| c.describe().to_string()).unwrap_or_default();
    if let Some(n) = errored.filter(|n| *n > 0) {
        what = format!("{what}; {n} file(s) errored");
    }
    let percent = match (known, bytes, total) {
        (Some(CopyStatus::Completed | CopyStatus::CompletedWithErrors), _, _) => Some(100),
        (_, Some(b), Some(t)) if t > 0 => Some((b * 100 / t).min(100)),
        _ => Some(0),
    };
    JobDrive {
        drive_id: serial.unwrap_or_default(),
        state: status,
        copy_status: what,
        percent_complete: percent,
        bytes_succeeded: bytes,
        ..Default::default()
    }
}

/// The storage account a job imports into (for adopting a job found after a crash).
pub fn storage_account(job: &model::JobResource) -> Option<String> {
    let imports = match job.properties.as_ref()?.details.as_ref()? {
        model::JobDetails::DataBoxCustomerDisk(d) => d.data_import_details.as_ref(),
        model::JobDetails::DataBoxDisk(d) => d.data_import_details.as_ref(),
        _ => None,
    }?;
    imports.iter().find_map(|i| match &i.account_details {
        Some(model::DataAccountDetails::StorageAccount(s)) => s.storage_account_id.clone(),
        _ => None,
    })
}

/// The datacenter's address as lines, for a label or a screen.
pub fn address_lines(a: &model::DatacenterAddressResponse) -> Vec<String> {
    match a {
        model::DatacenterAddressResponse::DatacenterAddressLocation(l) => {
            let city = [l.city.as_deref(), l.state.as_deref(), l.zip.as_deref()]
                .into_iter()
                .flatten()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            [
                l.contact_person_name.clone(),
                l.company.clone(),
                l.street1.clone(),
                l.street2.clone(),
                l.street3.clone(),
                Some(city),
                l.country.clone(),
                l.phone.as_ref().map(|p| format!("phone {p}")),
                l.additional_shipping_information.clone(),
            ]
            .into_iter()
            .flatten()
            .filter(|s| !s.trim().is_empty())
            .collect()
        }
        model::DatacenterAddressResponse::DatacenterAddressInstruction(i) => {
            i.communication_instruction.iter().filter(|s| !s.trim().is_empty()).cloned().collect()
        }
        model::DatacenterAddressResponse::Other(_) => Vec::new(),
    }
}

/// The datacenter address a job names (`details.datacenterAddress`).
pub fn job_address(job: &model::JobResource) -> Vec<String> {
    let a = match job.properties.as_ref().and_then(|p| p.details.as_ref()) {
        Some(model::JobDetails::DataBoxCustomerDisk(d)) => d.datacenter_address.as_ref(),
        Some(model::JobDetails::DataBoxDisk(d)) => d.datacenter_address.as_ref(),
        _ => None,
    };
    a.map(address_lines).unwrap_or_default()
}

/// Each check of a `validateInputs` answer that is not valid, as "check: code: message".
pub fn refusals(r: &model::ValidationResponse) -> Vec<String> {
    use model::ValidationInputResponse as A;
    let mut out = Vec::new();
    for item in r.properties.iter().flat_map(|p| p.individual_response_details.iter().flatten()) {
        let (kind, status, error) = match item {
            A::ValidateAddress(a) => ("ValidateAddress", a.validation_status.clone(), a.error.clone()),
            A::ValidateSubscriptionIsAllowedToCreateJob(a) => {
                ("ValidateSubscriptionIsAllowedToCreateJob", a.status.clone(), a.error.clone())
            }
            A::ValidatePreferences(a) => ("ValidatePreferences", a.status.clone(), a.error.clone()),
            A::ValidateCreateOrderLimit(a) => ("ValidateCreateOrderLimit", a.status.clone(), a.error.clone()),
            A::ValidateSkuAvailability(a) => ("ValidateSkuAvailability", a.status.clone(), a.error.clone()),
            A::ValidateDataTransferDetails(a) => ("ValidateDataTransferDetails", a.status.clone(), a.error.clone()),
            A::Other(v) => {
                out.push(format!("an unknown check answered: {v}"));
                continue;
            }
        };
        if matches!(status.as_deref(), Some("Valid" | "Skipped")) {
            continue;
        }
        let e = error.unwrap_or_default();
        out.push(format!(
            "{kind}: {}{}",
            e.code.map(|c| format!("{c}: ")).unwrap_or_default(),
            e.message.unwrap_or_else(|| status.unwrap_or_else(|| "no status".into()))
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "000011-000022-000033-000044-000055-000066-000077-000088";

    fn list(disks: &[(&str, &str)]) -> model::UnencryptedCredentialsList {
        serde_json::from_value(serde_json::json!({"value": [{"jobName": "job-1", "jobSecrets": {
            "jobSecretsType": "DataBoxDisk",
            "passKey": "Pass#word1",
            "isPasskeyUserDefined": false,
            "diskSecrets": disks.iter().map(|(s, k)| serde_json::json!({"diskSerialNumber": s, "bitLockerKey": k})).collect::<Vec<_>>()
        }}]}))
        .unwrap()
    }

    #[test]
    fn delivered_disks_credentials_are_checked_and_never_shown() {
        let ok = disk_credentials(&list(&[("MSD-1", KEY), ("MSD-2", KEY)])).unwrap();
        assert_eq!(ok.disks.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>(), ["MSD-1", "MSD-2"]);
        assert_eq!(ok.passkey.as_ref().map(|(k, user)| (k.0.as_str(), *user)), Some(("Pass#word1", false)));
        let shown = format!("{ok:?}");
        assert!(!shown.contains("Pass#word1") && !shown.contains("000011"), "{shown}");
        for (disks, want) in [
            (vec![("MSD-1", KEY), ("MSD-1", KEY)], "listed disk MSD-1 twice"),
            (vec![("MSD-1", "123")], "not a BitLocker recovery password"),
            (vec![("../x", KEY)], "not a usable disk serial"),
            (vec![], "named no disks"),
        ] {
            let e = disk_credentials(&list(&disks)).unwrap_err();
            assert!(e.contains(want) && !e.contains("000011"), "{want}: {e}");
        }
        let empty = model::UnencryptedCredentialsList::default();
        assert!(disk_credentials(&empty).unwrap_err().contains("no Data Box Disk secrets"));
    }
}
