//! Keeps a lease alive while the disks are written, and reports `(from, to]` progress.
//!
//! The writers ask [`Keeper::alive`] before every extent. It answers no as soon as the
//! coordinator refused the lease (a newer generation, released, cancelled) or the lease's
//! time ran out without a successful renewal (the coordinator unreachable, or this process
//! paused past the TTL): a station that may have lost its lease never writes again.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use seedship_proto::agent::is_transient;
use seedship_proto::client::{self, Conn};
use seedship_proto::pb;
use tonic::Code;

#[derive(Debug)]
struct Inner {
    work_id: String,
    generation: u64,
    ttl: Duration,
    total: u64,
    /// Why the lease is lost; empty while held.
    lost: Mutex<String>,
    lost_flag: AtomicBool,
    stop: Arc<AtomicBool>,
    deadline: Mutex<Instant>,
    waiting: Mutex<String>,
    phase: Mutex<String>,
    /// Bytes on the disks (the station's count) and as recorded by the coordinator.
    done: AtomicU64,
    recorded: AtomicU64,
    /// Wakes the renewal task early (a wait began or ended).
    nudge: tokio::sync::Notify,
    /// The station's display, whose disks go with every renewal (the central view).
    board: Mutex<Option<Arc<crate::board::Board>>>,
}

/// Shared by the renewal task, the writer threads and the work's control flow.
#[derive(Debug, Clone)]
pub struct Keeper(Arc<Inner>);

impl Keeper {
    /// `stop` is the station's own stop flag (a signal); the keeper honours it too.
    pub fn new(lease: &pb::Lease, claimed_at: Instant, stop: Arc<AtomicBool>) -> Keeper {
        let ttl = Duration::from_millis(lease.ttl_ms.max(1));
        Keeper(Arc::new(Inner {
            work_id: lease.work_id.clone(),
            generation: lease.generation,
            ttl,
            total: lease.total_bytes,
            lost: Mutex::new(String::new()),
            lost_flag: AtomicBool::new(false),
            stop,
            deadline: Mutex::new(claimed_at + ttl),
            waiting: Mutex::new(String::new()),
            phase: Mutex::new("copy".into()),
            done: AtomicU64::new(0),
            recorded: AtomicU64::new(lease.progress_bytes),
            nudge: tokio::sync::Notify::new(),
            board: Mutex::new(None),
        }))
    }

    /// Sends `board`'s disks with every renewal and progress report.
    pub fn show(&self, board: Arc<crate::board::Board>) {
        *self.0.board.lock().expect("lock") = Some(board);
    }

    fn disks(&self) -> Vec<pb::DiskProgress> {
        self.0.board.lock().expect("lock").as_ref().map(|b| b.progress()).unwrap_or_default()
    }

    pub fn work_id(&self) -> &str {
        &self.0.work_id
    }

    pub fn generation(&self) -> u64 {
        self.0.generation
    }

    /// `Err(why)` once the lease is lost or expired, or a stop was asked for.
    pub fn alive(&self) -> Result<(), Stop> {
        if self.0.lost_flag.load(Ordering::SeqCst) {
            return Err(Stop::Lost(self.0.lost.lock().expect("lock").clone()));
        }
        if self.0.stop.load(Ordering::SeqCst) {
            return Err(Stop::Asked);
        }
        let deadline = *self.0.deadline.lock().expect("lock");
        if Instant::now() >= deadline {
            self.lose(format!("the lease ran out ({} ms TTL) without a successful renewal", self.0.ttl.as_millis()));
            return Err(Stop::Lost(self.0.lost.lock().expect("lock").clone()));
        }
        Ok(())
    }

    pub fn lose(&self, why: String) {
        let mut l = self.0.lost.lock().expect("lock");
        if l.is_empty() {
            tracing::warn!(work = %self.0.work_id, generation = self.0.generation, reason = %why, "lease lost; stopping every write");
            *l = why;
        }
        self.0.lost_flag.store(true, Ordering::SeqCst);
    }

    pub fn request_stop(&self) {
        self.0.stop.store(true, Ordering::SeqCst);
    }

    /// Says what the station waits for ("" when working); the coordinator hears it at once.
    pub fn set_waiting(&self, why: &str) {
        let mut w = self.0.waiting.lock().expect("lock");
        if *w != why {
            *w = why.to_string();
            self.0.nudge.notify_one();
        }
    }

    pub fn set_phase(&self, phase: &str) {
        *self.0.phase.lock().expect("lock") = phase.to_string();
    }

    /// Counts bytes now on the disks (for progress reports).
    pub fn add_done(&self, n: u64) {
        self.0.done.fetch_add(n, Ordering::Relaxed);
    }

    pub fn reset_done(&self) {
        self.0.done.store(0, Ordering::Relaxed);
    }

    fn extend(&self, sent: Instant) {
        *self.0.deadline.lock().expect("lock") = sent + self.0.ttl;
    }

    /// How often to renew: well inside the TTL.
    pub fn interval(&self) -> Duration {
        (self.0.ttl / 4).clamp(Duration::from_millis(100), Duration::from_secs(5))
    }

    /// Renews (or reports progress, which renews too) until the lease is lost or `done` is set.
    pub async fn run(self, conn: Conn, done: Arc<AtomicBool>) {
        let mut c = client::diskprep(conn);
        while !done.load(Ordering::SeqCst) && !self.0.lost_flag.load(Ordering::SeqCst) {
            self.tick(&mut c).await;
            tokio::select! {
                _ = tokio::time::sleep(self.interval()) => {}
                _ = self.0.nudge.notified() => {}
            }
        }
    }

    /// Reports the progress not yet recorded (e.g. before completing the work).
    pub async fn flush(&self, conn: Conn) {
        if !self.0.lost_flag.load(Ordering::SeqCst) {
            self.tick(&mut client::diskprep(conn)).await;
        }
    }

    /// One renewal: a progress report when there is progress to report, else a renewal.
    async fn tick(&self, c: &mut pb::disk_prep_service_client::DiskPrepServiceClient<Conn>) {
        let sent = Instant::now();
        let from = self.0.recorded.load(Ordering::SeqCst);
        let to = self.0.done.load(Ordering::Relaxed).min(self.0.total);
        let phase = self.0.phase.lock().expect("lock").clone();
        let waiting = self.0.waiting.lock().expect("lock").clone();
        let disks = self.disks();
        let r = if to > from && waiting.is_empty() {
            c.report_progress(pb::ReportProgressRequest {
                request_id: client::new_request_id(),
                work_id: self.0.work_id.clone(),
                generation: self.0.generation,
                from_bytes: from,
                to_bytes: to,
                phase,
                disks,
            })
            .await
            .map(|r| {
                self.0.recorded.store(r.into_inner().progress_bytes, Ordering::SeqCst);
            })
        } else {
            c.renew_lease(pb::RenewLeaseRequest {
                request_id: client::new_request_id(),
                work_id: self.0.work_id.clone(),
                generation: self.0.generation,
                waiting,
                disks,
            })
            .await
            .map(|_| ())
        };
        match r {
            Ok(()) => self.extend(sent),
            Err(s) if s.code() == Code::FailedPrecondition && s.message().starts_with("progress on work") => {
                // An earlier report landed but its answer was lost: take the recorded position.
                if let Some(at) = recorded_position(s.message()) {
                    self.0.recorded.store(at, Ordering::SeqCst);
                }
            }
            Err(s) if is_transient(&s) => {
                tracing::warn!(code = ?s.code(), error = %s.message(), "lease renewal failed; retrying");
            }
            Err(s) => self.lose(format!("the coordinator refused the lease: {}", s.message())),
        }
    }
}

/// Why writing stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    Lost(String),
    Asked,
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::Lost(why) => write!(f, "lease lost: {why}"),
            Stop::Asked => f.write_str("stop requested"),
        }
    }
}

/// "progress on work W is at N bytes, not F; ..." → N.
fn recorded_position(msg: &str) -> Option<u64> {
    msg.split(" is at ").nth(1)?.split(' ').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(ttl_ms: u64) -> pb::Lease {
        pb::Lease { work_id: "w".into(), generation: 3, ttl_ms, total_bytes: 100, ..Default::default() }
    }

    #[test]
    fn a_lease_not_renewed_in_time_is_lost_for_good() {
        let k = Keeper::new(&lease(50), Instant::now(), Default::default());
        assert_eq!(k.alive(), Ok(()));
        std::thread::sleep(Duration::from_millis(60));
        assert!(matches!(k.alive(), Err(Stop::Lost(ref w)) if w.contains("ran out")));
        // A late renewal does not bring it back.
        k.extend(Instant::now());
        assert!(k.alive().is_err());
    }

    #[test]
    fn refusals_and_stops_are_told_apart() {
        let k = Keeper::new(&lease(60_000), Instant::now(), Default::default());
        k.request_stop();
        assert_eq!(k.alive(), Err(Stop::Asked));
        let k = Keeper::new(&lease(60_000), Instant::now(), Default::default());
        k.lose("stale".into());
        k.lose("second reason is not kept".into());
        assert_eq!(k.alive(), Err(Stop::Lost("stale".into())));
        assert_eq!(recorded_position("progress on work w is at 4096 bytes, not 0; report (4096, to]"), Some(4096));
    }
}
