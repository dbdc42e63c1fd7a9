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

/// Formats a time as RFC 3339 UTC with second precision, for people.
pub fn rfc3339(ms: UnixMs) -> String {
    if ms == 0 {
        return "-".to_string();
    }
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .map(|s| match s.find('.') {
            Some(dot) => format!("{}Z", &s[..dot]),
            None => s,
        })
        .unwrap_or_else(|| ms.to_string())
}
