//! The boundary: protobuf messages become validated domain commands (`TryFrom`, naming the
//! bad field), and domain values become protobuf messages (`From`). Nothing past this file
//! sees `pb::*` types.

use seedship_proto::identity::Role;
use seedship_proto::pb;

use crate::clock::UnixMs;
use crate::domain::lease::{Fence, WorkItem};
use crate::domain::model::*;
use crate::domain::seed::SeedState;
use crate::domain::validate as v;
use crate::error::{Error, Result};
use crate::service::Cmd;

fn opt(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

fn cmd<T>(request_id: String, body: T) -> Result<Cmd<T>> {
    v::request_id(&request_id)?;
    Ok(Cmd { request_id, body })
}

fn fence(work_id: String, generation: u64) -> Result<Fence> {
    v::text("work_id", &work_id, 64)?;
    if work_id.is_empty() {
        return Err(Error::invalid("work_id", "is required"));
    }
    if generation == 0 {
        return Err(Error::invalid("generation", "must be the generation of a claimed lease (>= 1)"));
    }
    Ok(Fence { work_id, generation })
}

impl TryFrom<pb::RegisterAgentRequest> for Cmd<AgentInfo> {
    type Error = Error;
    fn try_from(r: pb::RegisterAgentRequest) -> Result<Self> {
        if !r.site.is_empty() {
            v::label("site", &r.site)?;
        }
        v::text("hostname", &r.hostname, 255)?;
        v::text("version", &r.version, 64)?;
        if !r.virtualization.is_empty() {
            v::label("virtualization", &r.virtualization)?;
        }
        cmd(
            r.request_id,
            AgentInfo { site: opt(r.site), hostname: r.hostname, version: r.version, virtualization: r.virtualization },
        )
    }
}

impl TryFrom<pb::HeartbeatRequest> for Cmd<String> {
    type Error = Error;
    fn try_from(r: pb::HeartbeatRequest) -> Result<Self> {
        v::text("status", &r.status, 200)?;
        cmd(r.request_id, r.status)
    }
}

impl TryFrom<pb::RegisterSeedRequest> for Cmd<NewSeed> {
    type Error = Error;
    fn try_from(r: pb::RegisterSeedRequest) -> Result<Self> {
        v::job_name(&r.job_name)?;
        v::storage_account(&r.storage_account)?;
        if !r.container.is_empty() {
            v::container(&r.container)?;
        }
        v::subscription_id(&r.subscription_id)?;
        v::location(&r.location)?;
        v::staging_location(&r.staging_location)?;
        v::hex_digest("manifest_root", &r.manifest_root, 32)?;
        v::hex_digest("repository_id", &r.repository_id, 16)?;
        v::count("total_bytes", r.total_bytes, v::MAX_SEED_BYTES)?;
        v::count("file_count", r.file_count, v::MAX_SEED_FILES)?;
        if !r.target_site.is_empty() {
            v::label("target_site", &r.target_site)?;
        }
        if !r.target_station.is_empty() {
            v::label("target_station", &r.target_station)?;
        }
        cmd(
            r.request_id,
            NewSeed {
                job_name: r.job_name,
                storage_account: r.storage_account,
                container: r.container,
                subscription_id: r.subscription_id.to_ascii_lowercase(),
                location: r.location,
                staging_location: r.staging_location,
                manifest_root: r.manifest_root,
                total_bytes: r.total_bytes,
                file_count: r.file_count,
                target_site: opt(r.target_site),
                target_station: opt(r.target_station),
                repository_id: r.repository_id,
            },
        )
    }
}

impl TryFrom<pb::ClaimWorkRequest> for Cmd<()> {
    type Error = Error;
    fn try_from(r: pb::ClaimWorkRequest) -> Result<Self> {
        cmd(r.request_id, ())
    }
}

impl TryFrom<pb::RenewLeaseRequest> for Cmd<(Fence, String)> {
    type Error = Error;
    fn try_from(r: pb::RenewLeaseRequest) -> Result<Self> {
        let f = fence(r.work_id, r.generation)?;
        v::text("waiting", &r.waiting, 500)?;
        cmd(r.request_id, (f, r.waiting))
    }
}

impl TryFrom<pb::ReportProgressRequest> for Cmd<(Fence, ProgressDelta)> {
    type Error = Error;
    fn try_from(r: pb::ReportProgressRequest) -> Result<Self> {
        let f = fence(r.work_id, r.generation)?;
        v::text("phase", &r.phase, 32)?;
        v::bytes("to_bytes", r.to_bytes)?;
        if r.to_bytes <= r.from_bytes {
            return Err(Error::invalid(
                "to_bytes",
                format!("must be greater than from_bytes ({}), got {}", r.from_bytes, r.to_bytes),
            ));
        }
        let d = ProgressDelta { from: r.from_bytes, to: r.to_bytes, phase: r.phase };
        cmd(r.request_id, (f, d))
    }
}

/// A drive report: request id, fence and the drive (with its key, kept out of `Debug`).
pub struct DriveCmd {
    pub request_id: String,
    pub fence: Fence,
    pub drive: DriveReport,
}

impl TryFrom<pb::ReportDriveRequest> for DriveCmd {
    type Error = Error;
    fn try_from(r: pb::ReportDriveRequest) -> Result<Self> {
        v::request_id(&r.request_id)?;
        let f = fence(r.work_id, r.generation)?;
        let d = r.drive.ok_or_else(|| Error::invalid("drive", "is required"))?;
        v::drive_id(&d.drive_id)?;
        if d.position == 0 || d.position > 10 {
            return Err(Error::invalid("drive.position", "must be 1-10 (an import job holds at most 10 drives)"));
        }
        v::bytes("drive.capacity_bytes", d.capacity_bytes)?;
        if d.capacity_bytes == 0 || d.bytes_written > d.capacity_bytes {
            return Err(Error::invalid(
                "drive.capacity_bytes",
                format!("must be above 0 and at least bytes_written ({})", d.bytes_written),
            ));
        }
        // A customer disk's drive manifest; none on a Data Box Disk (the store checks which).
        v::text("drive.manifest_file", &d.manifest_file, 260)?;
        let status = match d.status.as_str() {
            "" => DriveStatus::Prepared,
            s => DriveStatus::parse(s)
                .filter(|d| *d != DriveStatus::Delivered)
                .ok_or_else(|| Error::invalid("drive.status", format!("use preparing, prepared or bad; got {s:?}")))?,
        };
        v::text("drive.status_reason", &d.status_reason, 500)?;
        match status {
            DriveStatus::Prepared if d.manifest_file.is_empty() => {
                if !d.manifest_hash.is_empty() {
                    return Err(Error::invalid("drive.manifest_hash", "must be empty when there is no manifest_file"));
                }
                v::hex_any_case("drive.drive_header_hash", &d.drive_header_hash, 32, 128)?;
            }
            DriveStatus::Prepared => {
                v::hex_any_case("drive.manifest_hash", &d.manifest_hash, 32, 32)?;
                v::hex_any_case("drive.drive_header_hash", &d.drive_header_hash, 32, 128)?;
            }
            DriveStatus::Preparing | DriveStatus::Bad | DriveStatus::Delivered => {
                // Not sealed: the hashes are not known yet, or never will be.
                v::hex_any_case("drive.manifest_hash", &d.manifest_hash, 0, 32)?;
                v::hex_any_case("drive.drive_header_hash", &d.drive_header_hash, 0, 128)?;
            }
        }

        if status == DriveStatus::Bad && d.status_reason.trim().is_empty() {
            return Err(Error::invalid("drive.status_reason", "say why the drive is bad"));
        }
        let key = if d.recovery_password.is_empty() {
            None
        } else {
            v::recovery_password(&d.recovery_password)?;
            Some(RecoveryPassword(d.recovery_password))
        };
        Ok(DriveCmd {
            request_id: r.request_id,
            fence: f,
            drive: DriveReport {
                spec: DriveSpec {
                    drive_id: d.drive_id,
                    position: d.position,
                    capacity_bytes: d.capacity_bytes,
                    bytes_written: d.bytes_written,
                    manifest_file: d.manifest_file,
                    manifest_hash: d.manifest_hash.to_ascii_uppercase(),
                    drive_header_hash: d.drive_header_hash.to_ascii_uppercase(),
                    status,
                    status_reason: d.status_reason,
                },
                recovery_password: key,
            },
        })
    }
}

impl TryFrom<pb::CompleteWorkRequest> for Cmd<Fence> {
    type Error = Error;
    fn try_from(r: pb::CompleteWorkRequest) -> Result<Self> {
        let f = fence(r.work_id, r.generation)?;
        cmd(r.request_id, f)
    }
}

impl TryFrom<pb::ReleaseWorkRequest> for Cmd<(Fence, String, bool)> {
    type Error = Error;
    fn try_from(r: pb::ReleaseWorkRequest) -> Result<Self> {
        let f = fence(r.work_id, r.generation)?;
        v::text("reason", &r.reason, 500)?;
        if r.staging_invalid && r.reason.trim().is_empty() {
            return Err(Error::invalid("reason", "say which staging file is wrong"));
        }
        cmd(r.request_id, (f, r.reason, r.staging_invalid))
    }
}

impl TryFrom<pb::RecordShippingRequest> for Cmd<NewShipping> {
    type Error = Error;
    fn try_from(r: pb::RecordShippingRequest) -> Result<Self> {
        v::job_name(&r.job_name)?;
        v::text("carrier", &r.carrier, 64)?;
        if r.carrier.trim().is_empty() {
            return Err(Error::invalid("carrier", "is required"));
        }
        let carrier = v::carrier_tracking(&r.carrier, &r.tracking_number)?.to_string();
        if r.drive_count == 0 || r.drive_count > 10 {
            return Err(Error::invalid("drive_count", "must be 1-10"));
        }
        v::date("ship_date", &r.ship_date)?;
        cmd(
            r.request_id,
            NewShipping {
                job_name: r.job_name,
                carrier,
                tracking_number: r.tracking_number,
                drive_count: r.drive_count,
                ship_date: r.ship_date,
            },
        )
    }
}

/// The lease and drive of a `GetDriveKey` request.
pub fn lease_passkey_request(r: pb::GetLeasePasskeyRequest) -> Result<Fence> {
    fence(r.work_id, r.generation)
}

pub fn drive_key_request(r: pb::GetDriveKeyRequest) -> Result<(Fence, String)> {
    let f = fence(r.work_id, r.generation)?;
    v::drive_id(&r.drive_id)?;
    Ok((f, r.drive_id))
}

/// An operator's action on one seed, with the reason its history keeps.
fn seed_action(request_id: String, seed: String, reason: String, hint: &str) -> Result<Cmd<(String, String)>> {
    seed_key("seed", &seed)?;
    v::text("reason", &reason, 500)?;
    if reason.trim().is_empty() {
        return Err(Error::invalid("reason", format!("is required: {hint}, for the seed's history")));
    }
    cmd(request_id, (seed, reason))
}

impl TryFrom<pb::AllowVirtualStationRequest> for Cmd<(String, String)> {
    type Error = Error;
    fn try_from(r: pb::AllowVirtualStationRequest) -> Result<Self> {
        seed_action(r.request_id, r.seed, r.reason, "say why")
    }
}

impl TryFrom<pb::CancelSeedRequest> for Cmd<(String, String)> {
    type Error = Error;
    fn try_from(r: pb::CancelSeedRequest) -> Result<Self> {
        seed_action(r.request_id, r.seed, r.reason, "say why the seed is cancelled")
    }
}

impl TryFrom<pb::RetryWorkRequest> for Cmd<(String, String)> {
    type Error = Error;
    fn try_from(r: pb::RetryWorkRequest) -> Result<Self> {
        seed_action(r.request_id, r.seed, r.reason, "say what was fixed")
    }
}

impl TryFrom<pb::ReshipLostRequest> for Cmd<(String, String)> {
    type Error = Error;
    fn try_from(r: pb::ReshipLostRequest) -> Result<Self> {
        seed_action(r.request_id, r.seed, r.reason, "say why the files go on disks again")
    }
}

impl TryFrom<pb::RequeueWorkRequest> for Cmd<(String, crate::store::ops::Retarget, String)> {
    type Error = Error;
    fn try_from(r: pb::RequeueWorkRequest) -> Result<Self> {
        let label = |field: &'static str, v: &str| -> Result<Option<String>> {
            if v.is_empty() {
                return Ok(None);
            }
            seedship_proto::identity::validate_label(field, v).map_err(|e| Error::invalid(field, e.to_string()))?;
            Ok(Some(v.to_string()))
        };
        let station = label("target_station", &r.target_station)?;
        let site = label("target_site", &r.target_site)?;
        if r.any_station && (station.is_some() || site.is_some()) {
            return Err(Error::invalid("any_station", "give a station or a site, or any_station, not both"));
        }
        let to = if r.any_station {
            crate::store::ops::Retarget { station: Some(String::new()), site: Some(String::new()) }
        } else {
            crate::store::ops::Retarget { station, site }
        };
        let c = seed_action(r.request_id, r.seed, r.reason, "say why it goes back in the queue")?;
        let (seed, reason) = c.body;
        Ok(Cmd { request_id: c.request_id, body: (seed, to, reason) })
    }
}

impl TryFrom<pb::SetDiskKindRequest> for Cmd<(String, DiskKind, String)> {
    type Error = Error;
    fn try_from(r: pb::SetDiskKindRequest) -> Result<Self> {
        let kind = match pb::DiskKind::try_from(r.disk_kind) {
            Ok(pb::DiskKind::CustomerDisk) => DiskKind::CustomerDisk,
            Ok(pb::DiskKind::DataboxDisk) => DiskKind::DataboxDisk,
            _ => {
                return Err(Error::invalid(
                    "disk_kind",
                    "choose DISK_KIND_CUSTOMER_DISK (your own disks) or DISK_KIND_DATABOX_DISK (Microsoft's)",
                ));
            }
        };
        let c = seed_action(r.request_id, r.seed, r.reason, "say why the kind changes")?;
        let (seed, reason) = c.body;
        Ok(Cmd { request_id: c.request_id, body: (seed, kind, reason) })
    }
}

/// A `Mitigate` request's fields: a job, one of Azure's resolution codes, an optional disk.
pub fn mitigation(r: &pb::MitigateRequest) -> Result<()> {
    v::request_id(&r.request_id)?;
    seed_key("job", &r.job)?;
    use seedship_azure::databox::ResolutionCode;
    if ResolutionCode::parse(&r.resolution).is_none_or(|c| c == ResolutionCode::None) {
        return Err(Error::invalid(
            "resolution",
            format!("{:?} is not one of Resume, Restart, MoveToCleanUpDevice, ReachOutToOperation", r.resolution),
        ));
    }
    if !r.disk.is_empty() {
        v::text("disk", &r.disk, 64)?;
    }
    Ok(())
}

/// A seed key (id or job name) from a read request.
pub fn seed_key(field: &str, s: &str) -> Result<()> {
    if s.is_empty() {
        return Err(Error::invalid(field, "is required (a seed id or job name)"));
    }
    v::text(field, s, 64)
}

pub fn optional_state(s: i32) -> Result<Option<SeedState>> {
    match pb::SeedState::try_from(s) {
        Ok(pb::SeedState::Unspecified) => Ok(None),
        Ok(st) => Ok(Some(state_from_pb(st))),
        Err(_) => Err(Error::invalid("state", format!("unknown seed state {s}"))),
    }
}

pub fn optional_role(r: i32) -> Result<Option<Role>> {
    match pb::Role::try_from(r) {
        Ok(pb::Role::Unspecified) => Ok(None),
        Ok(pb::Role::Source) => Ok(Some(Role::Source)),
        Ok(pb::Role::Copy) => Ok(Some(Role::Copy)),
        Ok(pb::Role::Operator) => Ok(Some(Role::Operator)),
        Err(_) => Err(Error::invalid("role", format!("unknown role {r}"))),
    }
}

pub fn limit(l: u32) -> Result<u32> {
    match l {
        0 => Ok(100),
        1..=1000 => Ok(l),
        _ => Err(Error::invalid("limit", format!("must be at most 1000, got {l}"))),
    }
}

pub fn state_to_pb(s: SeedState) -> pb::SeedState {
    use pb::SeedState as P;
    match s {
        SeedState::Registered => P::Registered,
        SeedState::DisksOrdered => P::DisksOrdered,
        SeedState::QueuedForDiskPrep => P::QueuedForDiskPrep,
        SeedState::Preparing => P::Preparing,
        SeedState::DisksPrepared => P::DisksPrepared,
        SeedState::ImportJobCreated => P::ImportJobCreated,
        SeedState::Shipped => P::Shipped,
        SeedState::AtDatacenter => P::AtDatacenter,
        SeedState::Importing => P::Importing,
        SeedState::Imported => P::Imported,
        SeedState::Verifying => P::Verifying,
        SeedState::NeedsRepair => P::NeedsRepair,
        SeedState::SeedingVault => P::SeedingVault,
        SeedState::Seeded => P::Seeded,
        SeedState::Failed => P::Failed,
        SeedState::Cancelled => P::Cancelled,
        SeedState::Merged => P::Merged,
    }
}

pub fn kind_to_pb(k: DiskKind) -> pb::DiskKind {
    match k {
        DiskKind::CustomerDisk => pb::DiskKind::CustomerDisk,
        DiskKind::DataboxDisk => pb::DiskKind::DataboxDisk,
    }
}

fn state_from_pb(s: pb::SeedState) -> SeedState {
    SeedState::ALL.into_iter().find(|d| state_to_pb(*d) == s).unwrap_or(SeedState::Registered)
}

fn role_to_pb(r: Role) -> pb::Role {
    match r {
        Role::Source => pb::Role::Source,
        Role::Copy => pb::Role::Copy,
        Role::Operator => pb::Role::Operator,
        Role::Coordinator => pb::Role::Unspecified,
    }
}

impl From<Seed> for pb::SeedSummary {
    fn from(s: Seed) -> Self {
        pb::SeedSummary {
            seed_id: s.seed_id,
            job_name: s.spec.job_name,
            owner: s.owner,
            state: state_to_pb(s.state) as i32,
            state_reason: s.state_reason,
            created_unix_ms: s.created_ms,
            updated_unix_ms: s.updated_ms,
            total_bytes: s.spec.total_bytes,
            file_count: s.spec.file_count,
            storage_account: s.spec.storage_account,
            container: s.spec.container,
            subscription_id: s.spec.subscription_id,
            location: s.spec.location,
            staging_location: s.spec.staging_location,
            manifest_root: s.spec.manifest_root,
            target_site: s.spec.target_site.unwrap_or_default(),
            target_station: s.spec.target_station.unwrap_or_default(),
            allow_virtual_station: s.allow_virtual_station,
            import_job_state: s.import_job_state,
            repository_id: s.spec.repository_id,
            disk_kind: kind_to_pb(s.kind) as i32,
            round_of: s.round_of.unwrap_or_default(),
        }
    }
}

/// A notification and its deliveries for the operator.
pub fn notification_to_pb(
    n: crate::domain::notify::Notification,
    deliveries: Vec<(String, String, u32, String)>,
) -> pb::Notification {
    let (acked_unix_ms, acked_by, ack_reason) = n.acked.unwrap_or_default();
    pb::Notification {
        id: n.id,
        kind: n.kind.as_str().to_string(),
        seed_id: n.seed_id,
        job_name: n.job_name,
        event: n.event,
        actor: n.actor,
        reason: n.reason,
        created_unix_ms: n.created_ms,
        acked_unix_ms,
        acked_by,
        ack_reason,
        deliveries: deliveries
            .into_iter()
            .map(|(channel, state, attempts, last_error)| pb::NotificationDelivery {
                channel,
                state,
                attempts,
                last_error,
            })
            .collect(),
    }
}

/// The disks' progress a station reports: at most 64, each named and within bounds.
pub fn disk_progress(list: Vec<pb::DiskProgress>) -> Result<Vec<DiskProgress>> {
    if list.len() > 64 {
        return Err(Error::invalid("disks", format!("at most 64 disks, got {}", list.len())));
    }
    let mut seen = std::collections::BTreeSet::new();
    list.into_iter()
        .map(|d| {
            if d.position == 0 || d.position > d.set_size || d.set_size > 64 {
                return Err(Error::invalid(
                    "disks.position",
                    format!("must be 1 to set_size (at most 64), got {} of {}", d.position, d.set_size),
                ));
            }
            if !seen.insert(d.position) {
                return Err(Error::invalid("disks.position", format!("disk {} is reported twice", d.position)));
            }
            if !d.drive_id.is_empty() {
                v::drive_id(&d.drive_id)?;
            }
            v::text("disks.phase", &d.phase, 32)?;
            v::bytes("disks.total_bytes", d.total_bytes)?;
            Ok(DiskProgress {
                position: d.position,
                set_size: d.set_size,
                drive_id: d.drive_id,
                phase: d.phase,
                done_bytes: d.done_bytes.min(d.total_bytes),
                total_bytes: d.total_bytes,
                rate_bytes_per_sec: d.rate_bytes_per_sec.min(1 << 40),
                updated_ms: 0,
            })
        })
        .collect()
}

impl From<DiskProgress> for pb::DiskProgress {
    fn from(d: DiskProgress) -> Self {
        pb::DiskProgress {
            position: d.position,
            set_size: d.set_size,
            drive_id: d.drive_id,
            phase: d.phase,
            done_bytes: d.done_bytes,
            total_bytes: d.total_bytes,
            rate_bytes_per_sec: d.rate_bytes_per_sec,
            updated_unix_ms: d.updated_ms,
        }
    }
}

/// An agent for the operator, with what it is doing at `now`.
pub fn agent_to_pb(a: Agent, now: UnixMs, gone_after_ms: i64) -> pb::Agent {
    let activity = a.activity(now, gone_after_ms).as_str().to_string();
    let (work_job, disks) = match a.work.clone() {
        Some(w) => (w.job_name, w.disks.into_iter().map(Into::into).collect()),
        None => (String::new(), Vec::new()),
    };
    pb::Agent { activity, work_job, disks, ..a.into() }
}

impl From<Agent> for pb::Agent {
    fn from(a: Agent) -> Self {
        pb::Agent {
            identity: a.identity,
            role: role_to_pb(a.role) as i32,
            name: a.name,
            site: a.info.site.unwrap_or_default(),
            hostname: a.info.hostname,
            version: a.info.version,
            registered_unix_ms: a.registered_ms,
            last_heartbeat_unix_ms: a.last_heartbeat_ms,
            status: a.status,
            virtualization: a.info.virtualization,
            ..Default::default()
        }
    }
}

impl From<Lease> for pb::Lease {
    fn from(l: Lease) -> Self {
        pb::Lease {
            work_id: l.work.work_id,
            seed_id: l.seed.seed_id,
            job_name: l.seed.spec.job_name,
            generation: l.work.generation,
            expires_unix_ms: l.work.lease_expires_ms,
            ttl_ms: l.ttl_ms as u64,
            progress_bytes: l.work.progress_bytes,
            total_bytes: l.work.total_bytes,
            staging_location: l.seed.spec.staging_location,
            manifest_root: l.seed.spec.manifest_root,
            storage_account: l.seed.spec.storage_account,
            container: l.seed.spec.container,
            location: l.seed.spec.location,
            file_count: l.seed.spec.file_count,
            disk_kind: kind_to_pb(l.seed.kind) as i32,
            delivered_disks: l.delivered,
            container_sas: l.container_sas.map(|s| s.0).unwrap_or_default(),
            files: l.files,
        }
    }
}

impl From<Drive> for pb::Drive {
    fn from(d: Drive) -> Self {
        pb::Drive {
            drive_id: d.spec.drive_id,
            seed_id: d.seed_id,
            job_name: d.job_name,
            position: d.spec.position,
            capacity_bytes: d.spec.capacity_bytes,
            bytes_written: d.spec.bytes_written,
            manifest_file: d.spec.manifest_file,
            manifest_hash: d.spec.manifest_hash,
            drive_header_hash: d.spec.drive_header_hash,
            reported_by: d.reported_by,
            reported_unix_ms: d.reported_ms,
            has_key: d.has_key,
            status: d.spec.status.as_str().into(),
            status_reason: d.spec.status_reason,
        }
    }
}

impl From<ShippingRecord> for pb::ShippingRecord {
    fn from(r: ShippingRecord) -> Self {
        pb::ShippingRecord {
            job_name: r.spec.job_name,
            seed_id: r.seed_id,
            carrier: r.spec.carrier,
            tracking_number: r.spec.tracking_number,
            drive_count: r.spec.drive_count,
            ship_date: r.spec.ship_date,
            recorded_by: r.recorded_by,
            recorded_unix_ms: r.recorded_ms,
            confirmed_unix_ms: r.confirmed_ms.unwrap_or(0),
        }
    }
}

impl From<HistoryEntry> for pb::SeedEvent {
    fn from(e: HistoryEntry) -> Self {
        pb::SeedEvent {
            event_id: e.event_id,
            seed_id: e.seed_id,
            job_name: e.job_name,
            at_unix_ms: e.at_ms,
            actor: e.actor,
            from_state: e.from.map(|s| state_to_pb(s) as i32).unwrap_or(0),
            to_state: state_to_pb(e.to) as i32,
            event: e.event,
            reason: e.reason,
            repeats: e.repeats,
            last_unix_ms: e.last_ms,
        }
    }
}

impl From<WorkItem> for pb::WorkStatus {
    fn from(w: WorkItem) -> Self {
        pb::WorkStatus {
            work_id: w.work_id,
            seed_id: w.seed_id,
            status: w.state.as_str().to_string(),
            holder: w.holder.unwrap_or_default(),
            generation: w.generation,
            lease_expires_unix_ms: w.lease_expires_ms,
            progress_bytes: w.progress_bytes,
            total_bytes: w.total_bytes,
            phase: w.phase,
            disks: Vec::new(),
        }
    }
}

impl TryFrom<pb::ReportRepairRequest> for Cmd<RepairReport> {
    type Error = Error;
    fn try_from(r: pb::ReportRepairRequest) -> Result<Self> {
        seed_key("seed_id", &r.seed_id)?;
        if r.uploaded.len() + r.lost.len() > 100_000 {
            return Err(Error::invalid("uploaded", "at most 100000 files in one report"));
        }
        for p in r.uploaded.iter().chain(r.lost.iter().map(|l| &l.path)) {
            v::text("path", p, 1024)?;
        }
        let lost = r.lost.into_iter().map(|l| (l.path, l.reason.chars().take(500).collect())).collect();
        cmd(r.request_id, RepairReport { seed_id: r.seed_id, uploaded: r.uploaded, lost })
    }
}

impl From<RepairOrder> for pb::RepairOrder {
    fn from(o: RepairOrder) -> Self {
        pb::RepairOrder {
            seed_id: o.seed.seed_id,
            job_name: o.seed.spec.job_name,
            staging_location: o.seed.spec.staging_location,
            blob_endpoint: o.endpoint,
            container: o.seed.spec.container,
            manifest_root: o.seed.spec.manifest_root,
            sas: o.sas,
            sas_expires_unix_ms: o.expires_ms,
            files: o
                .files
                .into_iter()
                .map(|f| pb::RepairFile { path: f.path, size: f.size, sha256: f.sha256, md5: f.md5 })
                .collect(),
        }
    }
}

impl From<VerificationReport> for pb::GetVerificationResponse {
    fn from(r: VerificationReport) -> Self {
        pb::GetVerificationResponse {
            seed: Some(r.seed.into()),
            files: r
                .files
                .into_iter()
                .map(|f| pb::VerifiedFile { path: f.path, size: f.size, status: f.status, detail: f.detail })
                .collect(),
            repairs: r
                .repairs
                .into_iter()
                .map(|f| pb::RepairStatus {
                    path: f.path,
                    state: f.state,
                    detail: f.detail,
                    updated_unix_ms: f.updated_ms,
                })
                .collect(),
            checked_unix_ms: r.checked_ms.unwrap_or(0),
        }
    }
}

impl From<RecoveryPoint> for pb::RecoveryPoint {
    fn from(p: RecoveryPoint) -> Self {
        pb::RecoveryPoint {
            server: p.server,
            snapshot_id: p.snapshot_id,
            kind: p.kind,
            seed_id: p.seed_id.unwrap_or_default(),
            manifest_root: p.manifest_root,
            created_unix_ms: p.created_ms,
            container: p.container,
        }
    }
}

/// An import job for operators; `now` gives the days left on the running deadline.
pub fn job_to_pb(j: ImportJob, now: UnixMs) -> pb::ImportJob {
    let r = j.record;
    let deadline = r.deadline();
    pb::ImportJob {
        job_name: j.job_name,
        seed_id: j.seed_id,
        seed_state: state_to_pb(j.seed_state) as i32,
        storage_account: j.storage_account,
        location: j.location,
        drive_count: j.drive_count,
        tracking_number: j.shipping.as_ref().map(|s| s.spec.tracking_number.clone()).unwrap_or_default(),
        carrier: j.shipping.as_ref().map(|s| s.spec.carrier.clone()).unwrap_or_default(),
        seed_reason: j.seed_reason,
        phase: r.phase.as_str().into(),
        azure_state: r.azure_state,
        percent_complete: r.percent_complete.unwrap_or(0),
        subscription_id: r.intent.subscription_id,
        resource_group: r.intent.resource_group,
        intent_unix_ms: r.intent_ms,
        created_unix_ms: r.created_ms.unwrap_or(0),
        shipped_unix_ms: r.shipped_ms.unwrap_or(0),
        shipping_address: r.shipping_address,
        deadline: deadline.map(|d| d.kind.as_str().to_string()).unwrap_or_default(),
        deadline_due_unix_ms: deadline.map(|d| d.due_ms()).unwrap_or(0),
        deadline_days_left: deadline.map(|d| d.days_left(now) as i32).unwrap_or(0),
        deadline_text: deadline.map(|d| d.describe(now)).unwrap_or_default(),
        azure_unavailable_since_unix_ms: r.unavailable_since_ms.unwrap_or(0),
        last_error: r.last_error,
        last_polled_unix_ms: r.last_polled_ms.unwrap_or(0),
        drives: r
            .drives
            .into_iter()
            .map(|d| pb::ImportJobDrive {
                drive_id: d.drive_id,
                state: d.state,
                copy_status: d.copy_status,
                percent_complete: d.percent_complete.unwrap_or(0),
                bytes_succeeded: d.bytes_succeeded.unwrap_or(0),
                error_log_uri: d.error_log_uri,
                verbose_log_uri: d.verbose_log_uri,
                manifest_uri: d.manifest_uri,
                copy_errors: d
                    .errors
                    .into_iter()
                    .map(|e| pb::CopyError { path: e.path, category: e.category, code: e.code, message: e.message })
                    .collect(),
            })
            .collect(),
        shipping: j.shipping.map(Into::into),
        stage_status: r.stage_status,
        actions: r.actions,
        azure_error: r.azure_error,
    }
}

impl TryFrom<pb::CreateEnrollTokenRequest> for crate::service::enroll::NewToken {
    type Error = Error;
    fn try_from(r: pb::CreateEnrollTokenRequest) -> Result<Self> {
        let role =
            optional_role(r.role)?.ok_or_else(|| Error::invalid("role", "give the agent's role: source or copy"))?;
        v::text("reason", &r.reason, 500)?;
        if r.reason.trim().is_empty() {
            return Err(Error::invalid("reason", "is required: say who or what the token is for, for the audit log"));
        }
        let site = if r.site.is_empty() {
            None
        } else {
            seedship_proto::identity::validate_label("site", &r.site)
                .map_err(|e| Error::invalid("site", e.to_string()))?;
            Some(r.site)
        };
        Ok(crate::service::enroll::NewToken {
            role,
            name: r.name,
            site,
            ttl_ms: (r.ttl_seconds.min(i64::MAX as u64 / 1000) as i64) * 1000,
            reason: r.reason,
        })
    }
}

impl From<crate::domain::enroll::EnrollToken> for pb::EnrollToken {
    fn from(t: crate::domain::enroll::EnrollToken) -> Self {
        pb::EnrollToken {
            id: t.id,
            role: role_to_pb(t.role) as i32,
            name: t.name,
            site: t.site.unwrap_or_default(),
            created_by: t.created_by,
            reason: t.reason,
            created_unix_ms: t.created_ms,
            expires_unix_ms: t.expires_ms,
            used_unix_ms: t.used_ms.unwrap_or(0),
            used_by: t.used_by.unwrap_or_default(),
        }
    }
}

impl TryFrom<pb::RevokeAgentRequest> for Cmd<(String, Option<Role>, String)> {
    type Error = Error;
    fn try_from(r: pb::RevokeAgentRequest) -> Result<Self> {
        v::text("agent", &r.agent, 300)?;
        if r.agent.trim().is_empty() {
            return Err(Error::invalid("agent", "name the agent (its name or spiffe:// id)"));
        }
        let role = optional_role(r.role)?;
        v::text("reason", &r.reason, 500)?;
        if r.reason.trim().is_empty() {
            return Err(Error::invalid("reason", "is required: say why, for the audit log"));
        }
        cmd(r.request_id, (r.agent, role, r.reason))
    }
}

impl From<Revocation> for pb::Revocation {
    fn from(r: Revocation) -> Self {
        pb::Revocation {
            identity: r.identity,
            revoked_by: r.revoked_by,
            reason: r.reason,
            revoked_unix_ms: r.revoked_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed_req() -> pb::RegisterSeedRequest {
        pb::RegisterSeedRequest {
            request_id: "r1".into(),
            job_name: "job-1".into(),
            storage_account: "acct1".into(),
            container: "seeds".into(),
            subscription_id: "0f0e0d0c-0000-4000-8000-00000000abcd".into(),
            location: "westeurope".into(),
            staging_location: "/staging/job-1".into(),
            manifest_root: "ab".repeat(32),
            total_bytes: 10,
            file_count: 1,
            target_site: String::new(),
            target_station: String::new(),
            repository_id: "cd".repeat(16),
        }
    }

    fn field(r: Result<impl Sized>) -> String {
        match r {
            Err(Error::InvalidArgument { field, .. }) => field,
            Err(e) => panic!("expected InvalidArgument, got {e:?}"),
            Ok(_) => panic!("expected InvalidArgument, got Ok"),
        }
    }

    #[test]
    fn every_bad_seed_field_is_named() {
        assert!(Cmd::<NewSeed>::try_from(seed_req()).is_ok());
        type Mutate = Box<dyn Fn(&mut pb::RegisterSeedRequest)>;
        let cases: Vec<(&str, Mutate)> = vec![
            ("request_id", Box::new(|r| r.request_id.clear())),
            ("job_name", Box::new(|r| r.job_name = "a b".into())),
            ("storage_account", Box::new(|r| r.storage_account = "A".into())),
            ("container", Box::new(|r| r.container = "-x-".into())),
            ("subscription_id", Box::new(|r| r.subscription_id = "x".into())),
            ("location", Box::new(|r| r.location = "West Europe".into())),
            ("staging_location", Box::new(|r| r.staging_location.clear())),
            ("manifest_root", Box::new(|r| r.manifest_root = "zz".into())),
            ("total_bytes", Box::new(|r| r.total_bytes = 0)),
            ("total_bytes", Box::new(|r| r.total_bytes = u64::MAX)),
            ("file_count", Box::new(|r| r.file_count = 0)),
            ("file_count", Box::new(|r| r.file_count = u64::MAX)),
            ("repository_id", Box::new(|r| r.repository_id.clear())),
            ("target_site", Box::new(|r| r.target_site = "Not Ok".into())),
        ];
        for (name, f) in cases {
            let mut r = seed_req();
            f(&mut r);
            assert_eq!(field(Cmd::<NewSeed>::try_from(r)), name);
        }
    }

    #[test]
    fn progress_and_fence_fields_are_named() {
        let mk = |generation, from, to| pb::ReportProgressRequest {
            request_id: "r".into(),
            work_id: "wk-1".into(),
            generation,
            from_bytes: from,
            to_bytes: to,
            phase: "copy".into(),
            disks: Vec::new(),
        };
        assert_eq!(field(Cmd::<(Fence, ProgressDelta)>::try_from(mk(0, 0, 1))), "generation");
        assert_eq!(field(Cmd::<(Fence, ProgressDelta)>::try_from(mk(1, 5, 5))), "to_bytes");
        assert!(Cmd::<(Fence, ProgressDelta)>::try_from(mk(1, 0, 5)).is_ok());
    }
}
