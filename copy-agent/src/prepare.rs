//! Preparing the disks of one leased seed in Azure's layouts ([`crate::media`]): plan whole
//! files over the disks, write every disk in parallel through its NTFS mount (each staging
//! file checked against the seed manifest while it is copied), write the drive manifest
//! (customer disks), unmount, encrypt customer disks in place as BitLocker volumes, read
//! every disk back through an unlock by dislocker (customer disks) and a raw NTFS reader,
//! report the drives, complete.
//!
//! Invariants:
//! - No seed data goes on a customer disk whose key the coordinator has not acknowledged: a
//!   new disk is formatted and given its identity, then its key is escrowed (the drive
//!   reported "preparing"), then data. A disk found with an identity of this seed but no
//!   escrowed key holds no data and is formatted again. The key is the drive's BitLocker
//!   recovery password for the job: the volume is encrypted with it once written, and a
//!   resumed conversion gets it from the coordinator again (never from the station's disk).
//! - Writers stop before the next piece of 4 MiB once the lease is lost or expired
//!   ([`Keeper`]).
//! - A resumed disk skips the files its journal lists as written and the volume still holds
//!   at their size; everything is read back before the drive is reported prepared.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use seedship_disk::azure::manifest::Access;
use seedship_disk::key::RecoveryPassword;
use seedship_disk::plan::{self, DiskPlan, Plan};
use seedship_proto::agent::with_retry;
use seedship_proto::client::{self, Conn};
use seedship_proto::pb;
use tokio::sync::mpsc;
use tonic::{Code, Status};

use seedship_bitlocker::dislocker::{self, Secret, UnlockError};
use seedship_bitlocker::volume::Method;

use crate::board::Board;
use crate::config::Station;
use crate::disks::{self, Disk, Holds};
use crate::keeper::{Keeper, Stop};
use crate::media::{self, DiskId, Journal, Layout, MediaError, Mount};
use crate::set::{SetDisk, SetRecord};
use crate::staging::{Reader, Staging, StagingError};

/// What the station shares with every piece of work.
pub struct Ctx {
    pub conn: Conn,
    pub station: Station,
    pub board: Arc<Board>,
    pub stop: Arc<AtomicBool>,
    /// Disk paths typed at the prompt (interactive mode).
    pub typed: Mutex<Option<mpsc::UnboundedReceiver<PathBuf>>>,
    pub extra: Mutex<Vec<PathBuf>>,
}

/// One prepared drive, for the final screen.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub position: u32,
    pub set_size: u32,
    pub drive_id: String,
    pub path: PathBuf,
    pub bytes: u64,
    pub manifest_hash: String,
}

#[derive(Debug)]
pub enum Outcome {
    Completed {
        drives: Vec<Prepared>,
        address: Vec<String>,
        seed: Option<Box<pb::SeedSummary>>,
    },
    /// The lease was given back (e.g. staging unreachable); the seed waits for a station.
    Released(String),
    /// The staging set is not the one registered; the seed failed.
    Refused(String),
    Lost(String),
    Stopped,
}

/// What went wrong with one disk's round.
#[derive(Debug)]
enum Fail {
    Stop(Stop),
    Staging(StagingError),
    Bad(String),
    /// The seed cannot be prepared here now: the lease is given back, the seed stays queued.
    GiveBack(String),
}

impl From<Status> for Fail {
    fn from(s: Status) -> Self {
        Fail::Stop(Stop::Lost(format!("the coordinator refused: {}", s.message())))
    }
}

/// A disk taking part in this round, at its position.
#[derive(Clone)]
struct Member {
    position: u32,
    drive_id: String,
    capacity: u64,
    /// As the operator gave it (device, image or mount point).
    path: PathBuf,
    /// The raw volume.
    device: PathBuf,
    /// Mounted already by someone else (a delivered Data Box Disk).
    mounted_at: Option<PathBuf>,
    /// Already a disk of this seed (resume), else blank.
    existing: Option<DiskId>,
    /// The BitLocker recovery password its volume is encrypted with (customer disks; known
    /// once the disk is started).
    password: Option<RecoveryPassword>,
}

impl Member {
    /// The set's disk `entry`, found at `d`.
    fn at(entry: &SetDisk, d: &Disk, existing: Option<DiskId>) -> Member {
        Member {
            position: entry.position,
            drive_id: entry.drive_id.clone(),
            capacity: entry.capacity,
            path: d.path.clone(),
            device: d.device.clone(),
            mounted_at: d.mounted_at.clone(),
            existing,
            password: None,
        }
    }

    /// The fields every report of this drive carries.
    fn report(&self, layout: Layout) -> pb::DriveReport {
        pb::DriveReport {
            drive_id: self.drive_id.clone(),
            position: self.position,
            capacity_bytes: self.capacity,
            manifest_file: match layout {
                Layout::CustomerDisk => seedship_disk::azure::manifest::MANIFEST_PATH.into(),
                Layout::DataboxDisk => String::new(),
            },
            ..Default::default()
        }
    }

    /// Where the station mounts the volume itself.
    fn own_mount(&self, state_dir: &std::path::Path) -> PathBuf {
        state_dir.join("mnt").join(&self.drive_id)
    }

    /// Where dislocker unlocks the BitLocker volume.
    fn unlock_dir(&self, state_dir: &std::path::Path) -> PathBuf {
        state_dir.join("unlocked").join(&self.drive_id)
    }

    /// The volume mounted for writing: the delivered mount if it is still there, else the
    /// station's own.
    fn mount(&self, state_dir: &std::path::Path) -> Result<Mount, MediaError> {
        match &self.mounted_at {
            Some(at) if disks::mounted_device(at).is_some() => Ok(Mount::adopt(at)),
            _ => media::mount(&self.device, &self.own_mount(state_dir)),
        }
    }
}

/// Where a member's writing starts.
enum Start {
    /// Write what the journal lacks, then the manifest; then read back.
    Write,
    /// Written and unmounted before: read back only.
    Sealed,
}

fn is_refusal(s: &Status) -> bool {
    matches!(s.code(), Code::FailedPrecondition | Code::PermissionDenied | Code::NotFound)
}

pub async fn prepare(ctx: &Ctx, lease: &pb::Lease, claimed_at: Instant) -> Outcome {
    let keeper = Keeper::new(lease, claimed_at, ctx.stop.clone());
    keeper.show(ctx.board.clone());
    let done = Arc::new(AtomicBool::new(false));
    let renewer = tokio::spawn(keeper.clone().run(ctx.conn.clone(), done.clone()));
    ctx.board.start(&lease.job_name, &lease.seed_id, &lease.work_id);
    let out = prepare_inner(ctx, lease, &keeper).await;
    done.store(true, Ordering::SeqCst);
    renewer.abort();
    let out = match out {
        Ok(o) => o,
        Err(Fail::Stop(Stop::Asked)) => Outcome::Stopped,
        Err(Fail::Stop(Stop::Lost(why))) => Outcome::Lost(why),
        Err(Fail::Staging(e)) => release(ctx, &keeper, e).await,
        Err(Fail::GiveBack(why)) => release(ctx, &keeper, StagingError::Unreachable(why)).await,
        Err(Fail::Bad(why)) => Outcome::Released(why),
    };
    ctx.board.clear();
    out
}

/// Gives the lease back: unreachable staging keeps the seed queued, an invalid one fails it.
async fn release(ctx: &Ctx, keeper: &Keeper, e: StagingError) -> Outcome {
    let (reason, invalid) = match &e {
        StagingError::Unreachable(w) => (w.clone(), false),
        StagingError::Invalid(w) => (w.clone(), true),
    };
    let reason: String = reason.chars().take(500).collect();
    let r = with_retry("ReleaseWork", 5, |rid| {
        let mut c = client::diskprep(ctx.conn.clone());
        let req = pb::ReleaseWorkRequest {
            request_id: rid,
            work_id: keeper.work_id().into(),
            generation: keeper.generation(),
            reason: reason.clone(),
            staging_invalid: invalid,
        };
        async move { c.release_work(req).await }
    })
    .await;
    if let Err(s) = r {
        tracing::warn!(code = ?s.code(), error = %s.message(), "could not release the lease; it will expire");
    }
    if invalid {
        tracing::error!(reason = %reason, "staging set refused; the seed failed");
        Outcome::Refused(reason)
    } else {
        tracing::warn!(reason = %reason, "lease released; the seed stays queued");
        Outcome::Released(reason)
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task panicked")
}

async fn prepare_inner(ctx: &Ctx, lease: &pb::Lease, keeper: &Keeper) -> Result<Outcome, Fail> {
    let (loc, root) = (lease.staging_location.clone(), lease.manifest_root.clone());
    let roots = ctx.station.staging_roots.clone();
    let only = lease.files.clone();
    let staging = Arc::new(blocking(move || Staging::open(&loc, &root, &roots, &only)).await.map_err(Fail::Staging)?);
    let shipping: u64 = staging.files.iter().map(|f| f.size).sum();
    if lease.files.is_empty() {
        tracing::info!(job = %lease.job_name, files = staging.files.len(), bytes = shipping, "staging set opened and checked against the registered manifest");
    } else {
        tracing::info!(job = %lease.job_name, files = staging.files.len(), bytes = shipping, "a round of lost files: only these staging files are checked and shipped");
    }
    // Names Azure would change or refuse fail the seed before anything is written.
    media::check_names(&lease.container, &staging.files).map_err(|why| Fail::Staging(StagingError::Invalid(why)))?;
    if layout(lease) == Layout::CustomerDisk && lease.container_sas.is_empty() {
        return Err(Fail::GiveBack(
            "the coordinator gave no SAS for the drive manifest, which Azure needs to import a customer disk: \
             give it the storage account's key ([azure.storage] or [imports] keys_file)"
                .into(),
        ));
    }
    let mut last_wait = String::new();
    loop {
        keeper.alive().map_err(Fail::Stop)?;
        let (members, plan) = match assemble(ctx, lease, &staging).await {
            Ok(v) => v,
            Err(why) => {
                wait(ctx, keeper, &why, &mut last_wait).await?;
                continue;
            }
        };
        if !last_wait.is_empty() {
            last_wait.clear();
            keeper.set_waiting("");
            ctx.board.job_phase("copy", "");
            tracing::info!("disks found; continuing");
        }
        match round(ctx, lease, keeper, &staging, &members, &plan).await {
            Ok(drives) => return complete(ctx, keeper, drives).await,
            Err(Fail::Bad(why)) => {
                tracing::warn!(reason = %why, "a disk failed; waiting for a replacement");
                continue;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Says what the station waits for (coordinator, display, log), then waits a poll interval
/// or for a path typed at the prompt.
async fn wait(ctx: &Ctx, keeper: &Keeper, why: &str, last: &mut String) -> Result<(), Fail> {
    let why: String = why.chars().take(500).collect();
    if *last != why {
        tracing::warn!(waiting = %why, "waiting for the operator");
        keeper.set_waiting(&why);
        ctx.board.job_phase("waiting", &why);
        eprintln!("copy-agent: waiting: {why}");
        if ctx.typed.lock().expect("lock").is_some() {
            eprintln!("copy-agent: attach the disk(s), then type each one's path and Enter (Enter alone looks again)");
        }
        *last = why;
    }
    let mut rx = ctx.typed.lock().expect("lock").take();
    let sleep = tokio::time::sleep(ctx.station.poll_interval);
    tokio::pin!(sleep);
    let mut got = None;
    match rx.as_mut() {
        Some(r) => {
            tokio::select! {
                _ = &mut sleep => {}
                p = r.recv() => got = p,
            }
        }
        None => sleep.await,
    }
    *ctx.typed.lock().expect("lock") = rx;
    if let Some(p) = got
        && !p.as_os_str().is_empty()
    {
        ctx.extra.lock().expect("lock").push(p);
    }
    keeper.alive().map_err(Fail::Stop)
}

/// Finds the disks for this seed and the plan over them, or says what is missing.
async fn assemble(ctx: &Ctx, lease: &pb::Lease, staging: &Staging) -> Result<(Vec<Member>, Plan), String> {
    let state_dir = ctx.station.state_dir.clone();
    let mut record = SetRecord::load(&state_dir, &lease.work_id);
    let mut extra = ctx.extra.lock().expect("lock").clone();
    extra.extend(record.as_ref().map(|r| r.devices()).unwrap_or_default());
    let mut paths = disks::candidates(&ctx.station, &extra);
    let mut unlocked = Vec::new();
    if is_databox_disk(lease) {
        // Microsoft's disks arrive locked: unlocked here with the order's passkey, as
        // Microsoft's Linux tool does (dislocker, then ntfs-3g), each then seen at its mount.
        unlocked = unlock_delivered(ctx, lease, &paths).await?;
        paths.retain(|p| !unlocked.iter().any(|(locked, _)| locked == p));
        paths.extend(unlocked.iter().map(|(_, mnt)| mnt.clone()));
    }
    let found: Vec<Disk> = blocking(move || {
        let mut seen = std::collections::HashSet::new();
        paths
            .iter()
            .map(|p| disks::probe(p))
            // A disk the station unlocked is shown as the operator attached it, not its mount.
            .map(|mut d| {
                if let Some((locked, _)) = unlocked.iter().find(|(_, mnt)| *mnt == d.path) {
                    d.path = locked.clone();
                }
                d
            })
            // A delivered disk still mounted is seen at its mount point and at its device.
            .filter(|d| seen.insert(std::fs::canonicalize(&d.device).unwrap_or_else(|_| d.device.clone())))
            .collect()
    })
    .await;
    let microsofts = is_databox_disk(lease);
    let mut notes = Vec::new();
    let mut ours: HashMap<u32, &Disk> = HashMap::new();
    let mut restart: HashMap<u32, &Disk> = HashMap::new();
    // Written disks of the set that no longer show their identity in the clear: being
    // encrypted, or encrypted (the station's journal says they were written and unmounted).
    let mut locked: HashMap<u32, &Disk> = HashMap::new();
    let mut blanks: Vec<&Disk> = Vec::new();
    for d in &found {
        match &d.holds {
            Holds::Unusable(_) if written(record.as_ref(), d, &state_dir).is_some() => {
                locked.insert(written(record.as_ref(), d, &state_dir).expect("checked"), d);
            }
            // A disk of the set without its identity: the station was stopped while formatting
            // it. It holds no data of the seed; it is formatted again.
            Holds::Unusable(_) | Holds::Blank if restartable(record.as_ref(), d).is_some() => {
                restart.insert(restartable(record.as_ref(), d).expect("checked"), d);
            }
            Holds::Blank if microsofts && d.mounted_at.is_none() => notes.push(format!(
                "{} is not a mounted Data Box Disk: this seed goes on the Data Box Disks Microsoft delivered ({}), \
                 unlocked and mounted",
                d.path.display(),
                lease.delivered_disks.join(", ")
            )),
            Holds::Blank if microsofts && !d.serial.as_ref().is_some_and(|s| lease.delivered_disks.contains(s)) => {
                notes.push(format!(
                    "{} is not one of the Data Box Disks Microsoft delivered for this job ({})",
                    d.path.display(),
                    lease.delivered_disks.join(", ")
                ))
            }
            Holds::Blank if !microsofts && d.mounted_at.is_some() => notes.push(format!(
                "{} is a mounted folder; customer disks are given as block devices or image files",
                d.path.display()
            )),
            Holds::Blank => blanks.push(d),
            Holds::Seedship(h) if h.seed_id == lease.seed_id => {
                if record.as_ref().is_some_and(|r| r.is_bad(&h.drive_id)) {
                    notes.push(format!(
                        "{} holds drive {}, which failed; it is not used",
                        d.path.display(),
                        h.drive_id
                    ));
                } else if let Some(other) = ours.insert(h.position, d) {
                    return Err(format!(
                        "{} and {} both claim to be disk {} of this seed; remove one",
                        other.path.display(),
                        d.path.display(),
                        h.position
                    ));
                }
            }
            Holds::Seedship(h) => notes.push(format!(
                "{} holds drive {} of seed {} (job {}); wipe it explicitly (copy-agent wipe) to reuse it",
                d.path.display(),
                h.drive_id,
                h.seed_id,
                h.job_name
            )),
            Holds::Unusable(why) => notes.push(format!("{}: {why}", d.path.display())),
        }
    }
    for n in &notes {
        tracing::debug!(note = %n, "disk not used");
    }
    let with_notes = |msg: String| {
        if notes.is_empty() { msg } else { format!("{msg} (not used: {})", notes.join("; ")) }
    };

    if record.is_none() && !ours.is_empty() {
        // The station's record is gone but the disks are here: rebuild it from their identities.
        let n = ours.values().next().map(|d| id_of(d).set_size).unwrap_or(0);
        let mut disks = Vec::new();
        for p in 1..=n {
            let Some(d) = ours.get(&p) else {
                return Err(with_notes(format!(
                    "disk {p} of {n} of this seed is missing and this station has no record of it: attach it"
                )));
            };
            disks.push(SetDisk {
                position: p,
                drive_id: id_of(d).drive_id.clone(),
                capacity: d.capacity,
                bad: None,
                replaced: vec![],
                device: Some(d.device.clone()),
            });
        }
        record = Some(SetRecord {
            work_id: lease.work_id.clone(),
            seed_id: lease.seed_id.clone(),
            job_name: lease.job_name.clone(),
            disks,
        });
    }
    let mut used = vec![false; blanks.len()];
    let mut rec = match record {
        Some(r) => r,
        None => {
            if blanks.is_empty() {
                return Err(with_notes(if microsofts {
                    format!(
                        "none of the Data Box Disks delivered for this job is attached: unlock and mount {}",
                        lease.delivered_disks.join(", ")
                    )
                } else {
                    "no blank shipping disk: attach the disks for this seed".into()
                }));
            }
            let specs: Vec<plan::DiskSpec> = blanks
                .iter()
                .map(|d| plan::DiskSpec {
                    id: d.serial.clone().unwrap_or_else(disks::generated_id),
                    capacity: d.capacity,
                })
                .collect();
            let p = plan::plan_whole(&staging.files, &specs).map_err(|e| with_notes(e.to_string()))?;
            tracing::info!(disks = p.disks.len(), bytes = p.total_bytes, "placement planned");
            let disks = p
                .disks
                .iter()
                .map(|d| SetDisk {
                    position: d.position,
                    drive_id: d.id.clone(),
                    capacity: d.capacity,
                    bad: None,
                    replaced: vec![],
                    device: None,
                })
                .collect();
            SetRecord {
                work_id: lease.work_id.clone(),
                seed_id: lease.seed_id.clone(),
                job_name: lease.job_name.clone(),
                disks,
            }
        }
    };
    let mut members = Vec::new();
    let mut missing = Vec::new();
    let n = rec.set_size();
    for pos in 1..=n {
        let entry = rec.at(pos).clone();
        if let Some(d) = ours.get(&pos).filter(|d| id_of(d).drive_id == entry.drive_id && entry.bad.is_none()) {
            rec.at(pos).device = Some(d.device.clone());
            members.push(Member::at(&entry, d, Some(id_of(d).clone())));
            continue;
        }
        if let Some(d) = locked.get(&pos).filter(|_| entry.bad.is_none()) {
            let id = DiskId {
                drive_id: entry.drive_id.clone(),
                seed_id: lease.seed_id.clone(),
                job_name: lease.job_name.clone(),
                position: pos,
                set_size: n,
                layout: layout(lease),
                container: lease.container.clone(),
            };
            members.push(Member::at(&entry, d, Some(id)));
            continue;
        }
        if let Some(d) = restart.get(&pos).filter(|_| entry.bad.is_none()) {
            members.push(Member::at(&entry, d, None));
            continue;
        }
        // A blank disk at least as large takes the position (with the planned capacity).
        if let Some(i) = (0..blanks.len()).find(|i| !used[*i] && blanks[*i].capacity >= entry.capacity) {
            used[i] = true;
            let e = rec.at(pos);
            if let Some(bad) = e.bad.take() {
                tracing::info!(position = pos, old = %e.drive_id, reason = %bad, "replacing a bad drive");
                let old = std::mem::take(&mut e.drive_id);
                e.replaced.push(old);
                e.drive_id = blanks[i].serial.clone().unwrap_or_else(disks::generated_id);
            } else if let Some(serial) = &blanks[i].serial {
                e.drive_id = serial.clone();
            }
            e.device = Some(blanks[i].device.clone());
            members.push(Member::at(e, blanks[i], None));
            continue;
        }
        missing.push(match &entry.bad {
            Some(why) => format!(
                "drive {} (disk {pos} of {n}) failed ({why}): attach a blank replacement of at least {} bytes",
                entry.drive_id, entry.capacity
            ),
            None => format!(
                "disk {pos} of {n} (drive {}) is missing: attach it, or a blank disk of at least {} bytes",
                entry.drive_id, entry.capacity
            ),
        });
    }
    rec.save(&state_dir).map_err(|e| format!("cannot record the disk set in {}: {e}", state_dir.display()))?;
    if !missing.is_empty() {
        return Err(with_notes(missing.join("; ")));
    }
    let plan = plan::plan_whole(&staging.files, &rec.specs()).map_err(|e| e.to_string())?;
    Ok((members, plan))
}

/// The position of the set whose disk `d` was when the station last saw it (same device, and
/// same serial where it has one), for a disk that no longer shows its identity.
fn restartable(record: Option<&SetRecord>, d: &Disk) -> Option<u32> {
    let canon = |p: &std::path::Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    record?
        .disks
        .iter()
        .find(|e| {
            e.bad.is_none()
                && e.device.as_deref().is_some_and(|dev| canon(dev) == canon(&d.device))
                && d.serial.as_ref().is_none_or(|s| *s == e.drive_id)
        })
        .map(|e| e.position)
}

/// Unlocks each locked Data Box Disk among `paths` that Microsoft delivered for this seed, with
/// the order's passkey from the coordinator (asked once, only when such a disk is there), and
/// mounts its NTFS volume with ntfs-3g at `state_dir/mnt/<serial>`. A disk unlocked before (a
/// restarted station) is used as it is. Returns (locked disk, mount point) for each.
async fn unlock_delivered(ctx: &Ctx, lease: &pb::Lease, paths: &[PathBuf]) -> Result<Vec<(PathBuf, PathBuf)>, String> {
    let delivered = lease.delivered_disks.clone();
    let p = paths.to_vec();
    let locked: Vec<(PathBuf, String)> = blocking(move || {
        p.into_iter()
            .filter_map(|p| disks::locked_serial(&p).filter(|s| delivered.contains(s)).map(|s| (p, s)))
            .collect()
    })
    .await;
    if locked.is_empty() {
        return Ok(Vec::new());
    }
    let passkey = client::diskprep(ctx.conn.clone())
        .get_lease_passkey(pb::GetLeasePasskeyRequest { work_id: lease.work_id.clone(), generation: lease.generation })
        .await
        .map_err(|s| format!("the coordinator gave no passkey for the delivered Data Box Disks: {}", s.message()))?
        .into_inner()
        .passkey;
    let state_dir = ctx.station.state_dir.clone();
    blocking(move || {
        let mut out = Vec::new();
        for (disk, serial) in locked {
            let (clear, mnt) = (state_dir.join("unlocked").join(&serial), state_dir.join("mnt").join(&serial));
            if !dislocker::is_unlocked(&clear) {
                media::release(&mnt);
                // Stays unlocked past this call: locked again once the disk is done.
                dislocker::unlock(&disk, &clear, Secret::User(&passkey), false)
                    .map_err(|e| {
                        format!("Data Box Disk {serial} ({}): {e}; check the order's passkey", disk.display())
                    })?
                    .keep();
                tracing::info!(%serial, disk = %disk.display(), "Data Box Disk unlocked with the passkey");
            }
            if disks::mounted_device(&mnt).is_none() {
                media::mount(&clear.join(dislocker::FILE), &mnt)
                    .map_err(|e| format!("Data Box Disk {serial}: its unlocked volume does not mount: {e}"))?
                    .keep();
            }
            out.push((disk, mnt));
        }
        Ok(out)
    })
    .await
}

/// The position of the set whose disk `d` was when the station last saw it, if the station's
/// journal says that disk was written and unmounted: its identity is encrypted now (or being
/// encrypted), and it resumes from the journal.
fn written(record: Option<&SetRecord>, d: &Disk, state_dir: &std::path::Path) -> Option<u32> {
    let pos = restartable(record, d)?;
    let drive = &record?.disks[pos as usize - 1].drive_id;
    Journal::load(state_dir, drive).sealed.is_some().then_some(pos)
}

/// The seed goes on Microsoft's Data Box Disks (the lease names the delivered ones).
fn is_databox_disk(lease: &pb::Lease) -> bool {
    lease.disk_kind == pb::DiskKind::DataboxDisk as i32
}

fn layout(lease: &pb::Lease) -> Layout {
    if is_databox_disk(lease) { Layout::DataboxDisk } else { Layout::CustomerDisk }
}

fn id_of(d: &Disk) -> &DiskId {
    match &d.holds {
        Holds::Seedship(h) => h,
        _ => unreachable!("only seedship disks are ours"),
    }
}

async fn report_drive(ctx: &Ctx, keeper: &Keeper, drive: pb::DriveReport) -> Result<(), Fail> {
    with_retry("ReportDrive", 8, |rid| {
        let mut c = client::diskprep(ctx.conn.clone());
        let req = pb::ReportDriveRequest {
            request_id: rid,
            work_id: keeper.work_id().into(),
            generation: keeper.generation(),
            drive: Some(drive.clone()),
        };
        async move { c.report_drive(req).await }
    })
    .await
    .map(|_| ())
    .map_err(|s| {
        keeper.lose(format!("the coordinator refused a drive report: {}", s.message()));
        Fail::from(s)
    })
}

/// Marks a drive bad at the coordinator and in the station's record.
async fn mark_bad(ctx: &Ctx, keeper: &Keeper, lease: &pb::Lease, m: &Member, why: &str) -> Result<(), Fail> {
    let why: String = why.chars().take(500).collect();
    tracing::error!(drive = %m.drive_id, position = m.position, path = %m.path.display(), reason = %why, "drive marked bad");
    eprintln!("copy-agent: drive {} (disk {}) is bad: {why}", m.drive_id, m.position);
    report_drive(
        ctx,
        keeper,
        pb::DriveReport { status: "bad".into(), status_reason: why.clone(), ..m.report(layout(lease)) },
    )
    .await?;
    let state_dir = ctx.station.state_dir.clone();
    let own = m.own_mount(&state_dir);
    blocking(move || media::release(&own)).await;
    if let Some(mut rec) = SetRecord::load(&state_dir, &lease.work_id) {
        rec.at(m.position).bad = Some(why);
        if let Err(e) = rec.save(&state_dir) {
            tracing::warn!(error = %e, "cannot record the bad drive");
        }
    }
    Ok(())
}

/// Opens or creates one member's disk: a new customer disk is formatted and given its
/// identity, and its key escrowed before any data. Returns where its writing starts, and its
/// recovery password (customer disks).
async fn start(
    ctx: &Ctx,
    keeper: &Keeper,
    lease: &pb::Lease,
    m: &Member,
    set_size: u32,
) -> Result<(Start, Option<RecoveryPassword>), Fail> {
    let state_dir = ctx.station.state_dir.clone();
    let layout = layout(lease);
    let id = DiskId {
        drive_id: m.drive_id.clone(),
        seed_id: lease.seed_id.clone(),
        job_name: lease.job_name.clone(),
        position: m.position,
        set_size,
        layout,
        container: lease.container.clone(),
    };
    if m.existing.is_some() {
        let resume = move |sd: PathBuf, drive: String| {
            let j = Journal::load(&sd, &drive);
            let done = j.sealed.is_some() && (j.encrypted || layout == Layout::DataboxDisk);
            if done { Start::Sealed } else { Start::Write }
        };
        if layout == Layout::DataboxDisk {
            // Microsoft's disk, with Azure's key: nothing to ask.
            let (sd, drive) = (state_dir.clone(), m.drive_id.clone());
            return Ok((blocking(move || resume(sd, drive)).await, None));
        }
        let r = client::diskprep(ctx.conn.clone())
            .get_drive_key(pb::GetDriveKeyRequest {
                work_id: keeper.work_id().into(),
                generation: keeper.generation(),
                drive_id: m.drive_id.clone(),
            })
            .await;
        match r {
            Ok(r) => {
                let pw = RecoveryPassword::parse(&r.into_inner().recovery_password).map_err(|e| {
                    Fail::Stop(Stop::Lost(format!("the coordinator gave an unusable recovery password: {e}")))
                })?;
                let (sd, drive) = (state_dir.clone(), m.drive_id.clone());
                let s = blocking(move || resume(sd, drive)).await;
                tracing::info!(drive = %m.drive_id, sealed = matches!(s, Start::Sealed), "resuming the disk from the station's journal");
                return Ok((s, Some(pw)));
            }
            Err(s) if s.code() == Code::NotFound => {
                // The identity was written but the key never reached the coordinator, so no
                // data is on the disk: start it again.
                tracing::info!(drive = %m.drive_id, "disk has an identity but no escrowed key; starting it again");
            }
            Err(s) if s.code() == Code::PermissionDenied => {
                return Err(Fail::Bad(format!(
                    "{} holds drive {} of this seed, started by another station; wipe it to prepare it here",
                    m.path.display(),
                    m.drive_id
                )));
            }
            Err(s) => {
                keeper.lose(format!("the coordinator refused the key request: {}", s.message()));
                return Err(Fail::from(s));
            }
        }
    }
    let bad = |e: MediaError| Fail::Bad(e.to_string());
    match layout {
        Layout::CustomerDisk => {
            let pw = RecoveryPassword::generate().map_err(|e| Fail::Bad(e.to_string()))?;
            let m2 = m.clone();
            blocking(move || -> Result<(), MediaError> {
                media::release(&m2.own_mount(&state_dir));
                dislocker::release(&m2.unlock_dir(&state_dir));
                Journal::reset(&state_dir, &m2.drive_id)?;
                media::format_for_bitlocker(&m2.device)?;
                let mount = m2.mount(&state_dir)?;
                mount.write_id(&id)?;
                mount.unmount()
            })
            .await
            .map_err(bad)?;
            report_drive(
                ctx,
                keeper,
                pb::DriveReport { recovery_password: pw.reveal(), status: "preparing".into(), ..m.report(layout) },
            )
            .await?;
            return Ok((Start::Write, Some(pw)));
        }
        Layout::DataboxDisk => {
            let m2 = m.clone();
            blocking(move || -> Result<(), MediaError> {
                Journal::reset(&state_dir, &m2.drive_id)?;
                let mount = m2.mount(&state_dir)?;
                mount.write_id(&id)?;
                mount.keep();
                Ok(())
            })
            .await
            .map_err(bad)?;
            report_drive(ctx, keeper, pb::DriveReport { status: "preparing".into(), ..m.report(layout) }).await?;
        }
    }
    Ok((Start::Write, None))
}

/// What one disk's writer needs.
struct Job {
    member: Member,
    plan: DiskPlan,
    layout: Layout,
    container: String,
    /// The drive manifest's access to the import container (customer disks).
    sas: String,
    state_dir: PathBuf,
    lane: usize,
}

/// One pass over the set: start, write, verify. `Fail::Bad` after marking a drive bad.
async fn round(
    ctx: &Ctx,
    lease: &pb::Lease,
    keeper: &Keeper,
    staging: &Arc<Staging>,
    members: &[Member],
    plan: &Plan,
) -> Result<Vec<Prepared>, Fail> {
    let set_size = members.len() as u32;
    let layout = layout(lease);
    let mut starts = Vec::with_capacity(members.len());
    let mut passwords = Vec::with_capacity(members.len());
    for m in members {
        match start(ctx, keeper, lease, m, set_size).await {
            Ok((s, pw)) => {
                starts.push(s);
                passwords.push(pw);
            }
            Err(Fail::Bad(why)) => {
                mark_bad(ctx, keeper, lease, m, &why).await?;
                return Err(Fail::Bad(why));
            }
            Err(e) => return Err(e),
        }
    }
    ctx.board.set_lanes(
        members
            .iter()
            .map(|m| {
                let total = plan.disks[m.position as usize - 1].bytes;
                (m.position, set_size, m.drive_id.clone(), m.path.display().to_string(), total)
            })
            .collect(),
    );
    ctx.board.job_phase("copy", "");
    keeper.set_phase("copy");
    keeper.reset_done();

    // Copy: every disk in its own thread.
    let mut tasks = Vec::new();
    // Each member with its recovery password (customer disks), for the encryption and the
    // read-back.
    let mut armed = members.to_vec();
    for (m, pw) in armed.iter_mut().zip(passwords) {
        m.password = pw;
    }
    let members = &armed[..];
    for (i, (m, s)) in members.iter().zip(starts).enumerate() {
        let dp = plan.disks[m.position as usize - 1].clone();
        let (staging, keeper2, board) = (staging.clone(), keeper.clone(), ctx.board.clone());
        match s {
            Start::Sealed => {
                board.phase(i, "sealed", dp.bytes);
                board.advance(i, dp.bytes, false);
                keeper.add_done(dp.bytes);
                tasks.push(None);
            }
            Start::Write => {
                let job = Job {
                    member: m.clone(),
                    plan: dp,
                    layout,
                    container: lease.container.clone(),
                    sas: lease.container_sas.clone(),
                    state_dir: ctx.station.state_dir.clone(),
                    lane: i,
                };
                tasks.push(Some(tokio::task::spawn_blocking(move || write_disk(&job, &staging, &keeper2, &board))));
            }
        }
    }
    let mut fails = Vec::new();
    for (m, t) in members.iter().zip(tasks) {
        if let Some(t) = t {
            match t.await.expect("writer thread panicked") {
                Ok(()) => {}
                Err(f) => fails.push((m, f)),
            }
        }
    }
    settle(ctx, keeper, lease, fails).await?;

    // Read every disk back.
    keeper.set_phase("verify");
    ctx.board.job_phase("verify", "");
    let mut tasks = Vec::new();
    for (i, m) in members.iter().enumerate() {
        let (keeper2, board, staging) = (keeper.clone(), ctx.board.clone(), staging.clone());
        let (m2, dp, sd) = (m.clone(), plan.disks[m.position as usize - 1].clone(), ctx.station.state_dir.clone());
        board.phase(i, "verify", dp.bytes);
        tasks.push(tokio::task::spawn_blocking(move || verify_disk(&m2, &dp, &sd, &staging, &keeper2, &board, i)));
    }
    let mut sealed = Vec::new();
    let mut fails = Vec::new();
    for (m, t) in members.iter().zip(tasks) {
        match t.await.expect("verify thread panicked") {
            Ok(s) => sealed.push(s),
            Err(f) => fails.push((m, f)),
        }
    }
    settle(ctx, keeper, lease, fails).await?;

    // Report each drive prepared, with the drive-list fields.
    let mut out = Vec::new();
    for (i, (m, j)) in members.iter().zip(sealed).enumerate() {
        let manifest_hash =
            j.sealed.as_ref().and_then(|s| s.manifest.as_ref()).map(|(_, h)| h.clone()).unwrap_or_default();
        report_drive(
            ctx,
            keeper,
            pb::DriveReport {
                bytes_written: j.bytes(),
                manifest_hash: manifest_hash.clone(),
                drive_header_hash: j.content_hash(),
                status: "prepared".into(),
                ..m.report(layout)
            },
        )
        .await?;
        ctx.board.phase(i, "prepared", 0);
        tracing::info!(drive = %m.drive_id, position = m.position, bytes = j.bytes(), files = j.files.len(), manifest_hash = %manifest_hash, "drive prepared and verified");
        out.push(Prepared {
            position: m.position,
            set_size,
            drive_id: m.drive_id.clone(),
            path: m.path.clone(),
            bytes: j.bytes(),
            manifest_hash,
        });
    }
    if layout == Layout::DataboxDisk {
        // Locked again, as they go back to Microsoft: unmounted, then the unlock undone.
        let (ms, sd) = (members.to_vec(), ctx.station.state_dir.clone());
        blocking(move || {
            for m in ms {
                media::release(&m.own_mount(&sd));
                dislocker::release(&m.unlock_dir(&sd));
            }
        })
        .await;
    }
    Ok(out)
}

/// Turns the failures of a parallel step into one outcome: a stop beats a staging problem or
/// a station that cannot go on (the lease is given back), which beat bad disks (each reported
/// bad).
async fn settle(ctx: &Ctx, keeper: &Keeper, lease: &pb::Lease, fails: Vec<(&Member, Fail)>) -> Result<(), Fail> {
    if let Some(i) = fails.iter().position(|(_, f)| matches!(f, Fail::Stop(_))) {
        return Err(fails.into_iter().nth(i).expect("found").1);
    }
    if let Some(i) = fails.iter().position(|(_, f)| matches!(f, Fail::Staging(_) | Fail::GiveBack(_))) {
        return Err(fails.into_iter().nth(i).expect("found").1);
    }
    let mut first = None;
    for (m, f) in fails {
        if let Fail::Bad(why) = f {
            mark_bad(ctx, keeper, lease, m, &why).await?;
            first.get_or_insert(why);
        }
    }
    match first {
        Some(why) => Err(Fail::Bad(why)),
        None => Ok(()),
    }
}

/// Writes one disk: every planned staging file the journal lacks (each checked against the
/// seed manifest as it is copied, then journaled), the drive manifest (customer disks), and
/// the unmount that makes the volume complete; then encrypts a customer disk's volume in
/// place. Each step is skipped when the journal has it done.
fn write_disk(job: &Job, staging: &Staging, keeper: &Keeper, board: &Board) -> Result<(), Fail> {
    let mut journal = Journal::load(&job.state_dir, &job.member.drive_id);
    if journal.sealed.is_none() {
        write_files(job, staging, keeper, board, &mut journal)?;
    }
    match &job.member.password {
        Some(pw) if !journal.encrypted => encrypt_disk(job, pw, keeper, board, &mut journal),
        _ => Ok(()),
    }
}

/// Encrypts the written, unmounted volume in place with XTS-AES-256 (what the Import/Export
/// tool uses), resuming a conversion a crash interrupted; then journals it encrypted.
fn encrypt_disk(
    job: &Job,
    pw: &RecoveryPassword,
    keeper: &Keeper,
    board: &Board,
    journal: &mut Journal,
) -> Result<(), Fail> {
    let m = &job.member;
    let log = Journal::conversion_log(&job.state_dir, &m.drive_id);
    let stop: std::cell::RefCell<Option<Stop>> = std::cell::RefCell::new(None);
    let mut shown = None;
    let r = seedship_bitlocker::convert::convert(&m.device, pw, Method::XtsAes256, &m.drive_id, &log, |p| {
        match shown {
            None => {
                board.phase(job.lane, "encrypt", p.total);
                board.advance(job.lane, p.done, false);
            }
            Some(before) => board.advance(job.lane, p.done - before, true),
        }
        shown = Some(p.done);
        keeper.alive().map_err(|s| {
            let why = s.to_string();
            *stop.borrow_mut() = Some(s);
            why
        })
    });
    match r {
        Ok(_) => {}
        Err(seedship_bitlocker::volume::BitLockerError::Stopped(why)) => {
            return Err(Fail::Stop(stop.into_inner().unwrap_or(Stop::Lost(why))));
        }
        Err(e) => {
            return Err(keeper
                .alive()
                .err()
                .map(Fail::Stop)
                .unwrap_or_else(|| Fail::Bad(format!("encrypting the disk failed: {e}"))));
        }
    }
    journal.encrypted = true;
    journal.save(&job.state_dir).map_err(|e| Fail::Stop(Stop::Lost(e.to_string())))?;
    tracing::info!(drive = %m.drive_id, "disk encrypted: a BitLocker volume (XTS-AES-256) its recovery password opens");
    Ok(())
}

/// The files and the manifest of [`write_disk`], then the unmount; journals the disk sealed.
fn write_files(
    job: &Job,
    staging: &Staging,
    keeper: &Keeper,
    board: &Board,
    journal: &mut Journal,
) -> Result<(), Fail> {
    let m = &job.member;
    // A disk that cannot be mounted or written is bad, unless the lease is what stopped it.
    let bad = |e: MediaError| keeper.alive().err().map(Fail::Stop).unwrap_or_else(|| Fail::Bad(e.to_string()));
    let mount = m.mount(&job.state_dir).map_err(bad)?;
    let mut reader = Reader::new(staging);
    let mut files = Vec::new();
    let mut kept = 0;
    for part in &job.plan.parts {
        keeper.alive().map_err(Fail::Stop)?;
        if let Some(w) = journal.done(&part.path, &mount) {
            board.advance(job.lane, w.length, false);
            keeper.add_done(w.length);
            files.push((part.path.clone(), w));
            kept += 1;
            continue;
        }
        let rel = job.layout.file_path(&job.container, &part.path);
        let cause: std::cell::RefCell<Option<Fail>> = std::cell::RefCell::new(None);
        let w = mount.write_file(
            &rel,
            part.length,
            job.layout == Layout::CustomerDisk,
            |at, n| {
                if let Err(s) = keeper.alive() {
                    *cause.borrow_mut() = Some(Fail::Stop(s));
                    return Err("stopped".into());
                }
                reader.read(&part.path, at, n).map_err(|e| {
                    let why = e.to_string();
                    *cause.borrow_mut() = Some(Fail::Staging(e));
                    why
                })
            },
            |n| {
                board.advance(job.lane, n, true);
                keeper.add_done(n);
            },
            |sha| {
                staging.check(&part.path, part.length, sha).map_err(|e| {
                    let why = e.to_string();
                    *cause.borrow_mut() = Some(Fail::Staging(e));
                    why
                })
            },
        );
        let w = match w {
            Ok(w) => w,
            Err(MediaError::Source(why)) => return Err(cause.into_inner().unwrap_or(Fail::Bad(why))),
            Err(e) => return Err(bad(e)),
        };
        journal.record(&job.state_dir, &part.path, &w).map_err(|e| Fail::Stop(Stop::Lost(e.to_string())))?;
        files.push((part.path.clone(), w));
    }
    keeper.alive().map_err(Fail::Stop)?;
    let manifest = match job.layout {
        Layout::CustomerDisk => Some(
            mount
                .write_manifest(&m.drive_id, Access::ContainerSas(job.sas.clone()), &job.container, &files)
                .map_err(bad)?,
        ),
        Layout::DataboxDisk => None,
    };
    mount.unmount().map_err(bad)?;
    tracing::info!(drive = %m.drive_id, files = files.len(), kept, "disk written and unmounted (kept: files the journal had)");
    journal.sealed = Some(media::Sealed { manifest });
    journal.save(&job.state_dir).map_err(|e| Fail::Stop(Stop::Lost(e.to_string())))?;
    Ok(())
}

/// Reads a written disk back from the raw volume, with an NTFS reader that shares nothing
/// with the mount: every file's size and MD5 against the journal and the seed manifest, and
/// the drive manifest's MD5. Returns the journal, sealed.
fn verify_disk(
    m: &Member,
    dp: &DiskPlan,
    state_dir: &std::path::Path,
    staging: &Staging,
    keeper: &Keeper,
    board: &Board,
    lane: usize,
) -> Result<Journal, Fail> {
    let journal = Journal::load(state_dir, &m.drive_id);
    let Some(sealed) = journal.sealed.clone() else {
        return Err(Fail::Bad("the station's journal of the disk is gone; it is written again".into()));
    };
    // Every planned file is in the journal, with the seed manifest's MD5.
    for p in &dp.parts {
        match (journal.files.get(&p.path), staging.md5_of(&p.path)) {
            (Some(e), Some(md5)) if e.md5.eq_ignore_ascii_case(&md5) && e.length == p.length => {}
            _ => {
                return Err(Fail::Bad(format!(
                    "the station's journal does not match the seed manifest for {}; the disk is written again",
                    p.path
                )));
            }
        }
    }
    seedship_telemetry::failpoint::eval("read-back");
    let bad = |e: MediaError| Fail::Bad(format!("read-back failed: {e}"));
    media::evict(&m.device).map_err(bad)?;
    keeper.alive().map_err(Fail::Stop)?;
    // A customer disk is read through dislocker's unlock with its recovery password: a
    // BitLocker implementation we did not write decrypts what ours encrypted.
    let unlocked = match &m.password {
        Some(pw) => Some(dislocker::unlock(&m.device, &m.unlock_dir(state_dir), Secret::Recovery(pw), true).map_err(
            |e| match e {
                // The disk's own fault: not BitLocker, no protector, a key that does not open it.
                UnlockError::NotBitLocker(_) | UnlockError::NoProtector(..) | UnlockError::WrongKey(..) => {
                    Fail::Bad(format!("the read-back found the disk does not unlock: {e}"))
                }
                // The station's: dislocker missing or failing; the work is given back.
                e => Fail::GiveBack(format!("the read-back cannot unlock the disk: {e}")),
            },
        )?),
        None => None,
    };
    let volume = unlocked.as_ref().map(|u| u.file()).unwrap_or_else(|| m.device.clone());
    let manifest_hash = sealed.manifest.as_ref().map(|(_, h)| h.as_str());
    let diffs =
        media::read_back(&volume, &journal.expected(), manifest_hash, |n| board.advance(lane, n, true)).map_err(bad);
    if let Some(u) = unlocked
        && let Err(e) = u.lock()
    {
        tracing::warn!(disk = %m.device.display(), "locking the disk again after the read-back: {e}");
    }
    let diffs = diffs?;
    keeper.alive().map_err(Fail::Stop)?;
    if !diffs.is_empty() {
        let more = if diffs.len() > 3 { format!(" (and {} more)", diffs.len() - 3) } else { String::new() };
        return Err(Fail::Bad(format!(
            "the read-back found the disk differs from what was written: {}{more}",
            diffs.iter().take(3).cloned().collect::<Vec<_>>().join("; ")
        )));
    }
    Ok(journal)
}

async fn complete(ctx: &Ctx, keeper: &Keeper, drives: Vec<Prepared>) -> Result<Outcome, Fail> {
    keeper.flush(ctx.conn.clone()).await;
    let r = with_retry("CompleteWork", 8, |rid| {
        let mut c = client::diskprep(ctx.conn.clone());
        let req = pb::CompleteWorkRequest {
            request_id: rid,
            work_id: keeper.work_id().into(),
            generation: keeper.generation(),
        };
        async move { c.complete_work(req).await }
    })
    .await;
    match r {
        Ok(r) => {
            let r = r.into_inner();
            Ok(Outcome::Completed { drives, address: r.shipping_address, seed: r.seed.map(Box::new) })
        }
        Err(s) if is_refusal(&s) => Err(Fail::Stop(Stop::Lost(format!("CompleteWork refused: {}", s.message())))),
        Err(s) => Err(Fail::Stop(Stop::Lost(format!("CompleteWork failed: {}", s.message())))),
    }
}
