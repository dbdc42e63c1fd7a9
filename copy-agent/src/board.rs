//! The live display: every disk and the job, with bytes, throughput, ETA and phase. Printed
//! to stderr every `progress_interval`, and kept in `current.json` for `copy-agent status`.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use seedship_proto::human::bytes;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Lane {
    pub position: u32,
    pub set_size: u32,
    pub drive_id: String,
    pub path: String,
    /// "copy", "verify", "sealed", "prepared", "bad".
    pub phase: String,
    pub done: u64,
    pub total: u64,
    #[serde(skip)]
    since: Option<(Instant, u64)>,
}

#[derive(Debug, Default, Serialize)]
struct State {
    job_name: String,
    seed_id: String,
    work_id: String,
    phase: String,
    waiting: String,
    lanes: Vec<Lane>,
    started_unix_ms: i64,
}

#[derive(Debug)]
pub struct Board {
    state: Mutex<State>,
    file: PathBuf,
}

fn rate(done: u64, since: Option<(Instant, u64)>) -> Option<f64> {
    let (t, base) = since?;
    let secs = t.elapsed().as_secs_f64();
    (secs >= 0.5 && done > base).then(|| (done - base) as f64 / secs)
}

fn line(label: &str, phase: &str, done: u64, total: u64, r: Option<f64>) -> String {
    let pct = if total == 0 { 100 } else { (done as u128 * 100 / total as u128) as u64 };
    let speed = r.map(|r| format!("{}/s", bytes(r as u64))).unwrap_or_else(|| "-".into());
    format!(
        "{label}  {phase:<8} {} of {} ({pct}%)  {speed}  ETA {}",
        bytes(done),
        bytes(total),
        seedship_proto::human::eta(total.saturating_sub(done), r.unwrap_or(0.0))
    )
}

impl Board {
    pub fn new(state_dir: &std::path::Path) -> Board {
        Board { state: Mutex::new(State::default()), file: state_dir.join("current.json") }
    }

    pub fn start(&self, job: &str, seed: &str, work: &str) {
        let mut s = self.state.lock().expect("lock");
        *s = State {
            job_name: job.into(),
            seed_id: seed.into(),
            work_id: work.into(),
            phase: "starting".into(),
            started_unix_ms: crate::history::now_ms(),
            ..Default::default()
        };
    }

    pub fn set_lanes(&self, lanes: Vec<(u32, u32, String, String, u64)>) {
        let mut s = self.state.lock().expect("lock");
        s.lanes = lanes
            .into_iter()
            .map(|(position, set_size, drive_id, path, total)| Lane {
                position,
                set_size,
                drive_id,
                path,
                phase: "copy".into(),
                done: 0,
                total,
                since: None,
            })
            .collect();
    }

    /// Starts a phase on lane `i` (bytes count again from 0 of `total`).
    pub fn phase(&self, i: usize, phase: &str, total: u64) {
        let mut s = self.state.lock().expect("lock");
        if let Some(l) = s.lanes.get_mut(i) {
            l.phase = phase.into();
            l.done = 0;
            l.total = total;
            l.since = None;
        }
    }

    /// `n` more bytes on lane `i`; `counted` false for bytes found already done (not timed).
    pub fn advance(&self, i: usize, n: u64, counted: bool) {
        let mut s = self.state.lock().expect("lock");
        if let Some(l) = s.lanes.get_mut(i) {
            if counted && l.since.is_none() {
                l.since = Some((Instant::now(), l.done));
            }
            l.done += n;
        }
    }

    pub fn job_phase(&self, phase: &str, waiting: &str) {
        let mut s = self.state.lock().expect("lock");
        s.phase = phase.into();
        s.waiting = waiting.into();
    }

    /// The station's status for its heartbeat.
    pub fn status(&self) -> String {
        let s = self.state.lock().expect("lock");
        let status = match (s.job_name.is_empty(), s.waiting.is_empty()) {
            (true, _) => "idle".to_string(),
            (false, true) => format!("preparing {} ({})", s.job_name, s.phase),
            (false, false) => format!("waiting: {}", s.waiting),
        };
        status.chars().take(200).collect()
    }

    /// Whether a piece of work is in hand.
    pub fn active(&self) -> bool {
        !self.state.lock().expect("lock").job_name.is_empty()
    }

    /// Each disk as the display shows it, for the coordinator's central view.
    pub fn progress(&self) -> Vec<seedship_proto::pb::DiskProgress> {
        let s = self.state.lock().expect("lock");
        s.lanes
            .iter()
            .map(|l| seedship_proto::pb::DiskProgress {
                position: l.position,
                set_size: l.set_size,
                // Only an id the coordinator accepts (1-64 letters, digits, '-', '_', '.').
                drive_id: Some(&l.drive_id)
                    .filter(|d| d.len() <= 64 && d.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)))
                    .cloned()
                    .unwrap_or_default(),
                phase: l.phase.chars().take(32).collect(),
                done_bytes: l.done,
                total_bytes: l.total,
                rate_bytes_per_sec: rate(l.done, l.since).unwrap_or(0.0) as u64,
                updated_unix_ms: 0,
            })
            .collect()
    }

    pub fn lanes(&self) -> Vec<Lane> {
        self.state.lock().expect("lock").lanes.clone()
    }

    /// The display, one line for the job and one per disk.
    pub fn render(&self) -> String {
        let s = self.state.lock().expect("lock");
        if !s.waiting.is_empty() {
            return format!("job {}  waiting: {}", s.job_name, s.waiting);
        }
        let (done, total) = s.lanes.iter().fold((0, 0), |(d, t), l| (d + l.done, t + l.total));
        let r: f64 = s.lanes.iter().filter_map(|l| rate(l.done, l.since)).sum();
        let mut out = line(&format!("job {}", s.job_name), &s.phase, done, total, (r > 0.0).then_some(r));
        for l in &s.lanes {
            out.push('\n');
            out.push_str(&line(
                &format!("  disk {}/{} {}", l.position, l.set_size, l.drive_id),
                &l.phase,
                l.done,
                l.total,
                rate(l.done, l.since),
            ));
        }
        out
    }

    /// Writes `current.json` (atomically) for `copy-agent status`.
    /// The state stays locked until the file is written, so that a [`Board::clear`] racing
    /// with it cannot be undone by a write of what came before.
    pub fn save(&self) {
        let s = self.state.lock().expect("lock");
        let json = serde_json::to_vec_pretty(&*s).expect("serializes");
        if let Err(e) = seedship_repo::layout::write_atomic(&self.file, &json) {
            tracing::debug!(error = %e, "cannot write current.json");
        }
    }

    pub fn clear(&self) {
        let mut s = self.state.lock().expect("lock");
        *s = State::default();
        let _ = std::fs::remove_file(&self.file);
    }
}
