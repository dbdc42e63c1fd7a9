//! Time as the domain sees it: injected, so tests can move it.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Milliseconds since the Unix epoch, UTC.
pub type UnixMs = i64;

pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> UnixMs;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> UnixMs {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
    }
}

/// A clock that only moves when told to; for tests.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    pub fn new(start: UnixMs) -> Self {
        ManualClock(Arc::new(AtomicI64::new(start)))
    }
    pub fn advance_ms(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> UnixMs {
        self.0.load(Ordering::SeqCst)
    }
}

/// The wall clock plus an offset read from a file (tests and demos fast-forward time with it).
/// The file holds an integer number of milliseconds; a missing or unreadable file is 0.
#[derive(Debug)]
pub struct OffsetFileClock {
    path: std::path::PathBuf,
    cached: std::sync::Mutex<(std::time::Instant, i64)>,
}

impl OffsetFileClock {
    pub fn new(path: std::path::PathBuf) -> Self {
        let offset = Self::read(&path);
        OffsetFileClock { path, cached: std::sync::Mutex::new((std::time::Instant::now(), offset)) }
    }

    fn read(path: &std::path::Path) -> i64 {
        std::fs::read_to_string(path).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0)
    }
}

impl Clock for OffsetFileClock {
    fn now_ms(&self) -> UnixMs {
        let mut c = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if c.0.elapsed() >= std::time::Duration::from_millis(200) {
            *c = (std::time::Instant::now(), Self::read(&self.path));
        }
        SystemClock.now_ms() + c.1
    }
}

/// Formats a time as RFC 3339 UTC with second precision, for people.
pub fn rfc3339(ms: UnixMs) -> String {
    seedship_proto::human::rfc3339(ms)
}
