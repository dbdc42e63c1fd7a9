//! Preparing the disks of one leased seed: plan, write (all disks in parallel), verify every
//! staging file while copying, read every disk back, report the drives, complete.
//!
//! Invariants:
//! - No extent is written under a key the coordinator has not acknowledged: a new disk gets
//!   its header, then its key is escrowed (the drive reported "preparing"), then data. A disk
//!   found with a header of this seed but no escrowed key has no data under that key and is
//!   started again.
//! - Writers stop before the next extent once the lease is lost or expired ([`Keeper`]).
//! - A resumed disk continues after its journal's last checkpoint with the key it started
//!   with, fetched back from the coordinator; synthetic nonces make rewritten extents
//!   identical, so no nonce ever covers two plaintexts.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use seedship_disk::format::{self, DiskError, DiskInfo, DiskReader, DiskWriter, DriveManifest, MANIFEST_FILE, Sealed};
use seedship_disk::key::RecoveryPassword;
use seedship_disk::plan::{self, DiskPlan, Plan};
use seedship_proto::agent::with_retry;
use seedship_proto::client::{self, Conn};
use seedship_proto::pb;
use tokio::sync::mpsc;
use tonic::{Code, Status};

use crate::board::Board;
use crate::config::Station;
use crate::disks::{self, Disk, Holds};
use crate::keeper::{Keeper, Stop};
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
}

impl From<Status> for Fail {
    fn from(s: Status) -> Self {
        Fail::Stop(Stop::Lost(format!("the coordinator refused: {}", s.message())))
    }
}

/// A disk taking part in this round, at its position.
struct Member {
    position: u32,
    drive_id: String,
    capacity: u64,
    path: PathBuf,
    /// Already a disk of this seed (resume), else blank.
    existing: Option<format::Header>,
}

impl Member {
    /// The fields every report of this drive carries.
    fn report(&self) -> pb::DriveReport {
        pb::DriveReport {
            drive_id: self.drive_id.clone(),
            position: self.position,
            capacity_bytes: self.capacity,
            manifest_file: MANIFEST_FILE.into(),
            ..Default::default()
        }
    }
}

enum Start {
    Write(Box<DiskWriter>, RecoveryPassword),
    Sealed(RecoveryPassword),
}

fn is_refusal(s: &Status) -> bool {
    matches!(s.code(), Code::FailedPrecondition | Code::PermissionDenied | Code::NotFound)
}

pub async fn prepare(ctx: &Ctx, lease: &pb::Lease, claimed_at: Instant) -> Outcome {
    let keeper = Keeper::new(lease, claimed_at, ctx.stop.clone());
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
        tracing::error!(reason = %reason, "staging set refused: it is not the one registered; the seed failed");
        Outcome::Refused(reason)
    } else {
        tracing::warn!(reason = %reason, "lease released: staging unreachable; the seed stays queued");
        Outcome::Released(reason)
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task panicked")
}

async fn prepare_inner(ctx: &Ctx, lease: &pb::Lease, keeper: &Keeper) -> Result<Outcome, Fail> {
    let (loc, root) = (lease.staging_location.clone(), lease.manifest_root.clone());
    let roots = ctx.station.staging_roots.clone();
    let staging = Arc::new(blocking(move || Staging::open(&loc, &root, &roots)).await.map_err(Fail::Staging)?);
    tracing::info!(job = %lease.job_name, files = staging.files.len(), bytes = staging.manifest.total_bytes(), "staging set opened and checked against the registered manifest");
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
    let paths = disks::candidates(&ctx.station, &ctx.extra.lock().expect("lock"));
    let mut found: Vec<Disk> = blocking(move || paths.iter().map(|p| disks::probe(p)).collect()).await;
    let microsofts = is_databox_disk(lease);
    if microsofts {
        // Microsoft's disks are known by serial: a block device's own, or an image named
        // `<serial>.img`. Only the disks delivered for this job are written.
        for d in found.iter_mut() {
            if d.serial.is_none() && d.path.is_file() {
                d.serial = d.path.file_stem().and_then(|s| disks::drive_id_from_serial(&s.to_string_lossy()));
            }
        }
    }
    let state_dir = ctx.station.state_dir.clone();
    let mut record = SetRecord::load(&state_dir, &lease.work_id);
    let mut notes = Vec::new();
    let mut ours: HashMap<u32, &Disk> = HashMap::new();
    let mut blanks: Vec<&Disk> = Vec::new();
    for d in &found {
        match &d.holds {
            Holds::Blank if microsofts && !d.serial.as_ref().is_some_and(|s| lease.delivered_disks.contains(s)) => {
                notes.push(format!(
                    "{} is not one of the Data Box Disks Microsoft delivered for this job ({})",
                    d.path.display(),
                    lease.delivered_disks.join(", ")
                ))
            }
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
        // The station's record is gone but the disks are here: rebuild it from their headers.
        let n = ours.values().next().map(|d| header_of(d).set_size).unwrap_or(0);
        let mut disks = Vec::new();
        for p in 1..=n {
            let Some(d) = ours.get(&p) else {
                return Err(with_notes(format!(
                    "disk {p} of {n} of this seed is missing and this station has no record of it: attach it"
                )));
            };
            let h = header_of(d);
            disks.push(SetDisk {
                position: p,
                drive_id: h.drive_id.clone(),
                capacity: h.capacity,
                bad: None,
                replaced: vec![],
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
                        "none of the Data Box Disks delivered for this job is attached: attach {} (unlocked, blank)",
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
            let p = plan::plan(&staging.files, &specs).map_err(|e| with_notes(e.to_string()))?;
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
        if let Some(d) = ours.get(&pos).filter(|d| header_of(d).drive_id == entry.drive_id && entry.bad.is_none()) {
            members.push(Member {
                position: pos,
                drive_id: entry.drive_id.clone(),
                capacity: entry.capacity,
                path: d.path.clone(),
                existing: Some(header_of(d).clone()),
            });
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
            members.push(Member {
                position: pos,
                drive_id: e.drive_id.clone(),
                capacity: e.capacity,
                path: blanks[i].path.clone(),
                existing: None,
            });
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
    let plan = plan::plan(&staging.files, &rec.specs()).map_err(|e| e.to_string())?;
    Ok((members, plan))
}

/// The seed goes on Microsoft's Data Box Disks (the lease names the delivered ones).
fn is_databox_disk(lease: &pb::Lease) -> bool {
    lease.disk_kind == pb::DiskKind::DataboxDisk as i32
}

fn header_of(d: &Disk) -> &format::Header {
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
    report_drive(ctx, keeper, pb::DriveReport { status: "bad".into(), status_reason: why.clone(), ..m.report() })
        .await?;
    if let Some(mut rec) = SetRecord::load(&ctx.station.state_dir, &lease.work_id) {
        rec.at(m.position).bad = Some(why);
        if let Err(e) = rec.save(&ctx.station.state_dir) {
            tracing::warn!(error = %e, "cannot record the bad drive");
        }
    }
    Ok(())
}

/// Opens or creates one member's disk, with its key escrowed before any data.
async fn start(ctx: &Ctx, keeper: &Keeper, lease: &pb::Lease, m: &Member, set_size: u32) -> Result<Start, Fail> {
    let info = DiskInfo {
        drive_id: m.drive_id.clone(),
        seed_id: lease.seed_id.clone(),
        job_name: lease.job_name.clone(),
        position: m.position,
        set_size,
    };
    if let Some(h) = &m.existing {
        let r = client::diskprep(ctx.conn.clone())
            .get_drive_key(pb::GetDriveKeyRequest {
                work_id: keeper.work_id().into(),
                generation: keeper.generation(),
                drive_id: h.drive_id.clone(),
            })
            .await;
        match r {
            Ok(k) => {
                let pw = RecoveryPassword::parse(&k.into_inner().recovery_password).map_err(|e| {
                    Fail::Bad(format!("the coordinator's key for drive {} is unusable: {e}", h.drive_id))
                })?;
                if h.state == "sealed" {
                    return Ok(Start::Sealed(pw));
                }
                let (path, pw2) = (m.path.clone(), pw.clone());
                return match blocking(move || DiskWriter::resume(&path, &pw2)).await {
                    Ok((w, cp)) => {
                        tracing::info!(drive = %m.drive_id, extents = cp.extents, "resuming the disk after its last checkpoint");
                        Ok(Start::Write(Box::new(w), pw))
                    }
                    Err(e @ DiskError::WrongKey { .. }) => Err(Fail::Bad(format!(
                        "{e}: it is not the disk reported as drive {}; wipe it or attach the right one",
                        h.drive_id
                    ))),
                    Err(e) => Err(Fail::Bad(e.to_string())),
                };
            }
            Err(s) if s.code() == Code::NotFound => {
                // The header was written but the key never reached the coordinator, so no data
                // is under that key: start the disk again.
                tracing::info!(drive = %h.drive_id, "disk has a header but no escrowed key; starting it again");
                let (path, cap) = (m.path.clone(), m.capacity);
                blocking(move || format::wipe(&path, cap, false)).await.map_err(|e| Fail::Bad(e.to_string()))?;
            }
            Err(s) if s.code() == Code::PermissionDenied => {
                return Err(Fail::Bad(format!(
                    "{} holds drive {} of this seed, started by another station; wipe it to prepare it here",
                    m.path.display(),
                    h.drive_id
                )));
            }
            Err(s) => {
                keeper.lose(format!("the coordinator refused the key request: {}", s.message()));
                return Err(Fail::from(s));
            }
        }
    }
    // Our own disk: a fresh key, escrowed before any data. Microsoft's: the key Azure made
    // for it, already escrowed by the coordinator.
    let (pw, escrow) = if is_databox_disk(lease) {
        let r = client::diskprep(ctx.conn.clone())
            .get_drive_key(pb::GetDriveKeyRequest {
                work_id: keeper.work_id().into(),
                generation: keeper.generation(),
                drive_id: m.drive_id.clone(),
            })
            .await
            .map_err(|s| {
                keeper.lose(format!("the coordinator gave no key for Data Box Disk {}: {}", m.drive_id, s.message()));
                Fail::from(s)
            })?;
        let pw = RecoveryPassword::parse(&r.into_inner().recovery_password)
            .map_err(|e| Fail::Bad(format!("Azure's key for Data Box Disk {} is unusable: {e}", m.drive_id)))?;
        (pw, String::new())
    } else {
        let pw = RecoveryPassword::generate().map_err(|e| Fail::Bad(e.to_string()))?;
        let escrow = pw.reveal();
        (pw, escrow)
    };
    let (path, pw2, cap) = (m.path.clone(), pw.clone(), m.capacity);
    let w =
        blocking(move || DiskWriter::create(&path, cap, &info, &pw2)).await.map_err(|e| Fail::Bad(e.to_string()))?;
    report_drive(ctx, keeper, pb::DriveReport { recovery_password: escrow, status: "preparing".into(), ..m.report() })
        .await?;
    Ok(Start::Write(Box::new(w), pw))
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
    let mut starts = Vec::with_capacity(members.len());
    for m in members {
        match start(ctx, keeper, lease, m, set_size).await {
            Ok(s) => starts.push(s),
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
    let mut keys = Vec::new();
    for (i, (m, s)) in members.iter().zip(starts).enumerate() {
        let dp = plan.disks[m.position as usize - 1].clone();
        let (staging, keeper2, board) = (staging.clone(), keeper.clone(), ctx.board.clone());
        let info = (lease.seed_id.clone(), lease.job_name.clone(), lease.container.clone());
        match s {
            Start::Sealed(pw) => {
                board.phase(i, "sealed", dp.bytes);
                board.advance(i, dp.bytes, false);
                keeper.add_done(dp.bytes);
                keys.push(pw);
                tasks.push(None);
            }
            Start::Write(w, pw) => {
                keys.push(pw);
                tasks.push(Some(tokio::task::spawn_blocking(move || {
                    write_disk(*w, &dp, &staging, &keeper2, &board, i, info)
                })));
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

    // Files split over disks: check them whole.
    let split: Vec<String> = plan
        .disks
        .iter()
        .flat_map(|d| d.parts.iter().filter(|p| p.parts > 1 && p.part == 1).map(|p| p.path.clone()))
        .collect();
    if !split.is_empty() {
        let st = staging.clone();
        blocking(move || split.iter().try_for_each(|p| st.check_whole(p))).await.map_err(Fail::Staging)?;
    }

    // Read every disk back.
    keeper.set_phase("verify");
    ctx.board.job_phase("verify", "");
    let mut tasks = Vec::new();
    for (i, (m, pw)) in members.iter().zip(keys.iter()).enumerate() {
        let (path, pw, keeper2, board, staging) =
            (m.path.clone(), pw.clone(), keeper.clone(), ctx.board.clone(), staging.clone());
        let (id, pos) = (m.drive_id.clone(), m.position);
        board.phase(i, "verify", plan.disks[pos as usize - 1].bytes);
        tasks.push(tokio::task::spawn_blocking(move || {
            verify_disk(&path, &pw, &id, pos, &staging, &keeper2, &board, i)
        }));
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
    for (i, (m, s)) in members.iter().zip(sealed).enumerate() {
        report_drive(
            ctx,
            keeper,
            pb::DriveReport {
                bytes_written: s.bytes,
                manifest_hash: s.manifest_md5.to_ascii_uppercase(),
                drive_header_hash: s.header_sha256.to_ascii_uppercase(),
                status: "prepared".into(),
                ..m.report()
            },
        )
        .await?;
        ctx.board.phase(i, "prepared", 0);
        tracing::info!(drive = %m.drive_id, position = m.position, bytes = s.bytes, manifest_hash = %s.manifest_md5, "drive prepared and verified");
        out.push(Prepared {
            position: m.position,
            set_size,
            drive_id: m.drive_id.clone(),
            path: m.path.clone(),
            bytes: s.bytes,
            manifest_hash: s.manifest_md5.to_ascii_uppercase(),
        });
    }
    Ok(out)
}

/// Turns the failures of a parallel step into one outcome: a stop beats a staging problem,
/// which beats bad disks (each reported bad).
async fn settle(ctx: &Ctx, keeper: &Keeper, lease: &pb::Lease, fails: Vec<(&Member, Fail)>) -> Result<(), Fail> {
    if let Some(i) = fails.iter().position(|(_, f)| matches!(f, Fail::Stop(_))) {
        return Err(fails.into_iter().nth(i).expect("found").1);
    }
    if let Some(i) = fails.iter().position(|(_, f)| matches!(f, Fail::Staging(_))) {
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

/// Writes one disk (from its checkpoint), checks each whole file against the seed manifest,
/// and seals the disk.
fn write_disk(
    mut w: DiskWriter,
    dp: &DiskPlan,
    staging: &Staging,
    keeper: &Keeper,
    board: &Board,
    lane: usize,
    (seed_id, job_name, container): (String, String, String),
) -> Result<(), Fail> {
    let mut reader = Reader::new(staging);
    let gate = keeper.clone();
    w.set_gate(move || gate.alive().is_ok());
    let cause: std::cell::RefCell<Option<Fail>> = std::cell::RefCell::new(None);
    // Asked before every extent and before every checkpoint: no write once the lease is gone.
    let alive = || match keeper.alive() {
        Ok(()) => true,
        Err(s) => {
            *cause.borrow_mut() = Some(Fail::Stop(s));
            false
        }
    };
    let known = |path: &str| staging.md5_of(path);
    let r = format::write_plan_with(
        &mut w,
        dp,
        &staging.sizes,
        &known,
        |path, off, len| {
            if !alive() {
                return Err(std::io::Error::other("stopped"));
            }
            reader.read(path, off, len).map_err(|e| {
                *cause.borrow_mut() = Some(Fail::Staging(e));
                std::io::Error::other("staging")
            })
        },
        |n, fresh| {
            board.advance(lane, n, fresh);
            keeper.add_done(n);
            alive()
        },
    );
    let parts = match r {
        Ok(p) => p,
        Err(DiskError::Source { .. }) => {
            return Err(cause.into_inner().unwrap_or(Fail::Bad("staging read failed".into())));
        }
        // A write refused by the gate is a lost lease, not a bad disk.
        Err(e) => return Err(keeper.alive().err().map(Fail::Stop).unwrap_or(Fail::Bad(e.to_string()))),
    };
    for p in parts.iter().filter(|p| p.parts == 1) {
        staging.check(&p.path, p.length, &p.sha256, &p.md5).map_err(Fail::Staging)?;
    }
    keeper.alive().map_err(Fail::Stop)?;
    let h = w.header().clone();
    let manifest = DriveManifest {
        format: "seedship-drive-manifest".into(),
        version: 1,
        drive_id: h.drive_id,
        seed_id,
        job_name,
        position: h.position,
        set_size: h.set_size,
        container,
        parts,
    };
    w.seal(&manifest).map_err(|e| keeper.alive().err().map(Fail::Stop).unwrap_or(Fail::Bad(e.to_string())))?;
    Ok(())
}

/// Reads a sealed disk back: every extent decrypted and checked, every part against the
/// drive manifest and every whole file against the seed manifest.
#[allow(clippy::too_many_arguments)]
fn verify_disk(
    path: &std::path::Path,
    pw: &RecoveryPassword,
    drive_id: &str,
    position: u32,
    staging: &Staging,
    keeper: &Keeper,
    board: &Board,
    lane: usize,
) -> Result<Sealed, Fail> {
    let bad = |e: DiskError| Fail::Bad(format!("read-back failed: {e}"));
    format::evict(path).map_err(bad)?;
    let r = DiskReader::open(path, pw).map_err(bad)?;
    if r.manifest.drive_id != drive_id || r.manifest.position != position {
        return Err(Fail::Bad(format!(
            "read-back found drive {} at position {}, not {drive_id} at {position}",
            r.manifest.drive_id, r.manifest.position
        )));
    }
    // Two readers take alternate parts, so reading one part overlaps decrypting another.
    let parts = &r.manifest.parts;
    let reader = &r;
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..2)
            .map(|k| {
                s.spawn(move || -> Result<(), Fail> {
                    for (i, p) in parts.iter().enumerate().skip(k).step_by(2) {
                        keeper.alive().map_err(Fail::Stop)?;
                        reader.verify_part(i).map_err(bad)?;
                        // The sealed manifest must say what the seed manifest says of each whole file.
                        if p.parts == 1 {
                            staging
                                .check(&p.path, p.length, &p.sha256, &p.md5)
                                .map_err(|e| Fail::Bad(format!("read-back: {e}")))?;
                        }
                        board.advance(lane, p.length, true);
                    }
                    Ok(())
                })
            })
            .collect();
        hs.into_iter().try_for_each(|h| h.join().expect("read-back thread panicked"))
    })?;
    r.sealed().map_err(bad)
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

/// What [`bench`] measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchReport {
    pub disks: usize,
    pub bytes: u64,
    pub copy_seconds: f64,
    pub verify_seconds: f64,
}

/// Prepares a staging set onto blank disks exactly as `run` does (same plan, writer threads,
/// staging checks, seal and read-back), without a coordinator: keys are generated here and
/// thrown away. For benchmarks only; the disks are not shippable.
pub fn bench(staging: &std::path::Path, paths: &[PathBuf]) -> Result<BenchReport, String> {
    let bytes = std::fs::read(staging.join(seedship_repo::layout::MANIFEST)).map_err(|e| e.to_string())?;
    let m: seedship_repo::manifest::SeedManifest = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    let staging = std::path::absolute(staging).map_err(|e| format!("{}: {e}", staging.display()))?;
    let st = Staging::open(&staging.display().to_string(), &m.root, std::slice::from_ref(&staging))
        .map_err(|e| e.to_string())?;
    let found: Vec<Disk> = paths.iter().map(|p| disks::probe(p)).collect();
    let specs: Vec<plan::DiskSpec> = found
        .iter()
        .map(|d| match d.holds {
            Holds::Blank => Ok(plan::DiskSpec { id: disks::generated_id(), capacity: d.capacity }),
            _ => Err(format!("{} is not a blank disk", d.path.display())),
        })
        .collect::<Result<_, _>>()?;
    let p = plan::plan(&st.files, &specs).map_err(|e| e.to_string())?;
    let lease =
        pb::Lease { work_id: "bench".into(), ttl_ms: 10 * 86_400_000, total_bytes: u64::MAX, ..Default::default() };
    let keeper = Keeper::new(&lease, Instant::now(), Arc::new(AtomicBool::new(false)));
    let board = Board::new(std::path::Path::new("/nonexistent"));
    board.set_lanes(
        p.disks.iter().map(|d| (d.position, p.disks.len() as u32, d.id.clone(), String::new(), d.bytes)).collect(),
    );
    let mut keys = Vec::new();
    let mut writers = Vec::new();
    for (d, dp) in found.iter().zip(&p.disks) {
        let pw = RecoveryPassword::generate().map_err(|e| e.to_string())?;
        let info = DiskInfo {
            drive_id: dp.id.clone(),
            seed_id: "bench".into(),
            job_name: "bench".into(),
            position: dp.position,
            set_size: p.disks.len() as u32,
        };
        writers.push(DiskWriter::create(&d.path, d.capacity, &info, &pw).map_err(|e| e.to_string())?);
        keys.push(pw);
    }
    let t = Instant::now();
    std::thread::scope(|s| {
        let hs: Vec<_> = writers
            .into_iter()
            .zip(&p.disks)
            .enumerate()
            .map(|(i, (w, dp))| {
                let (st, keeper, board) = (&st, &keeper, &board);
                s.spawn(move || {
                    write_disk(w, dp, st, keeper, board, i, ("bench".into(), "bench".into(), "bench".into()))
                })
            })
            .collect();
        hs.into_iter().try_for_each(|h| h.join().expect("writer").map_err(|e| format!("{e:?}")))
    })?;
    let copy_seconds = t.elapsed().as_secs_f64();
    let t = Instant::now();
    std::thread::scope(|s| {
        let hs: Vec<_> = found
            .iter()
            .zip(&p.disks)
            .zip(&keys)
            .enumerate()
            .map(|(i, ((d, dp), pw))| {
                let (st, keeper, board) = (&st, &keeper, &board);
                s.spawn(move || verify_disk(&d.path, pw, &dp.id, dp.position, st, keeper, board, i))
            })
            .collect();
        hs.into_iter().try_for_each(|h| h.join().expect("verifier").map(|_| ()).map_err(|e| format!("{e:?}")))
    })?;
    Ok(BenchReport {
        disks: p.disks.len(),
        bytes: p.total_bytes,
        copy_seconds,
        verify_seconds: t.elapsed().as_secs_f64(),
    })
}
