//! What the coordinator counts as it runs, for `/metrics`: lease operations with their
//! latency, and the bytes each copy station put on disks. Counted in this process (counters
//! start again at a restart, as Prometheus expects); everything that must survive a restart
//! is read from the database at each scrape instead (see `web::metrics`).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// Latency buckets for lease operations, seconds.
pub const LATENCY_BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

/// A histogram's cumulative state: one count per bucket (not cumulative), the count and sum.
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    pub buckets: Vec<u64>,
    pub count: u64,
    pub sum: f64,
}

impl Histogram {
    pub fn observe(&mut self, bounds: &[f64], v: f64) {
        if self.buckets.len() != bounds.len() {
            self.buckets = vec![0; bounds.len()];
        }
        if let Some(i) = bounds.iter().position(|b| v <= *b) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum += v;
    }
}

#[derive(Debug, Default)]
struct State {
    /// (operation, outcome) → calls.
    lease_ops: BTreeMap<(&'static str, &'static str), u64>,
    lease_latency: BTreeMap<&'static str, Histogram>,
    /// station → bytes its progress reports added.
    station_bytes: BTreeMap<String, u64>,
}

static STATE: Mutex<Option<State>> = Mutex::new(None);

fn with<T>(f: impl FnOnce(&mut State) -> T) -> T {
    let mut g = STATE.lock().unwrap_or_else(|p| p.into_inner());
    f(g.get_or_insert_with(State::default))
}

/// One lease operation (a copy station's call) that took `took` and ended as `outcome`
/// ("ok" or the gRPC code's name).
pub fn lease_op(op: &'static str, outcome: &'static str, took: Duration) {
    with(|s| {
        *s.lease_ops.entry((op, outcome)).or_default() += 1;
        s.lease_latency.entry(op).or_default().observe(&LATENCY_BUCKETS, took.as_secs_f64());
    });
}

/// `n` more bytes on disks at `station`.
pub fn station_bytes(station: &str, n: u64) {
    with(|s| *s.station_bytes.entry(station.to_string()).or_default() += n);
}

/// What is counted so far.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub lease_ops: Vec<(&'static str, &'static str, u64)>,
    pub lease_latency: Vec<(&'static str, Histogram)>,
    pub station_bytes: Vec<(String, u64)>,
}

pub fn snapshot() -> Snapshot {
    with(|s| Snapshot {
        lease_ops: s.lease_ops.iter().map(|((o, r), n)| (*o, *r, *n)).collect(),
        lease_latency: s.lease_latency.iter().map(|(o, h)| (*o, h.clone())).collect(),
        station_bytes: s.station_bytes.iter().map(|(k, v)| (k.clone(), *v)).collect(),
    })
}

/// A gRPC code's name as a metric label.
pub fn outcome(code: Option<tonic::Code>) -> &'static str {
    use tonic::Code::*;
    match code {
        None | Some(Ok) => "ok",
        Some(InvalidArgument) => "invalid_argument",
        Some(NotFound) => "not_found",
        Some(AlreadyExists) => "already_exists",
        Some(PermissionDenied) => "permission_denied",
        Some(FailedPrecondition) => "failed_precondition",
        Some(Unavailable) => "unavailable",
        Some(Unauthenticated) => "unauthenticated",
        Some(ResourceExhausted) => "resource_exhausted",
        Some(DeadlineExceeded) => "deadline_exceeded",
        Some(_) => "error",
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_histogram_puts_each_value_in_its_first_bucket() {
        let mut h = super::Histogram::default();
        for v in [0.0005, 0.003, 0.003, 9.0] {
            h.observe(&super::LATENCY_BUCKETS, v);
        }
        assert_eq!(h.buckets[0], 1);
        assert_eq!(h.buckets[2], 2);
        assert_eq!(h.buckets.iter().sum::<u64>(), 3, "9 s is above every bound: only in +Inf");
        assert_eq!(h.count, 4);
    }
}
