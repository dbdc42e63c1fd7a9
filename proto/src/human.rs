//! Numbers for people, shared by every program's output.

/// A seed state as every program names it: `preparing`, `import_job_created`, ...;
/// `unknown(N)` for a number this build does not know.
pub fn seed_state(state: i32) -> String {
    crate::pb::SeedState::try_from(state)
        .map(|s| s.as_str_name().trim_start_matches("SEED_STATE_").to_ascii_lowercase())
        .unwrap_or_else(|_| format!("unknown({state})"))
}

/// Bytes in binary units: "512 B", "3.0 MiB".
pub fn bytes(b: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 { format!("{b} B") } else { format!("{v:.1} {}", UNITS[i]) }
}

/// A Unix time in milliseconds as RFC 3339 UTC to the second ("2026-11-22T10:00:00Z"); "-" for 0.
pub fn rfc3339(ms: i64) -> String {
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

#[cfg(test)]
mod tests {
    #[test]
    fn binary_units() {
        assert_eq!(super::bytes(512), "512 B");
        assert_eq!(super::bytes(3 * 1024 * 1024), "3.0 MiB");
        assert_eq!(super::bytes(1536), "1.5 KiB");
    }

    #[test]
    fn times_to_the_second() {
        assert_eq!(super::rfc3339(0), "-");
        assert_eq!(super::rfc3339(1_796_000_000_123), "2026-11-30T00:53:20Z");
    }
}

/// Time left for `left` bytes at `rate` bytes/s, as a display says it ("4m05s"), or "-"
/// while no rate is known.
pub fn eta(left: u64, rate: f64) -> String {
    if rate <= 0.0 {
        return "-".into();
    }
    duration((left as f64 / rate).ceil() as u64)
}

/// A span of seconds as a person reads it: "45s", "4m05s", "26h03m".
pub fn duration(s: u64) -> String {
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// One disk's line, as the station's display and the central views print it:
/// `disk 1/3 DRIVE  copy     1.2 GiB of 4.0 GiB (30%)  110 MiB/s  ETA 26s`.
pub fn disk_line(position: u32, set_size: u32, drive: &str, phase: &str, done: u64, total: u64, rate: f64) -> String {
    let pct = if total == 0 { 100 } else { (done as u128 * 100 / total as u128) as u64 };
    let speed = if rate > 0.0 { format!("{}/s", bytes(rate as u64)) } else { "-".into() };
    format!(
        "disk {position}/{set_size} {drive}  {phase:<8} {} of {} ({pct}%)  {speed}  ETA {}",
        bytes(done),
        bytes(total),
        eta(total.saturating_sub(done), rate)
    )
}

#[cfg(test)]
mod disk_tests {
    #[test]
    fn a_disk_line_has_bytes_rate_and_eta() {
        let l = super::disk_line(1, 3, "D1", "copy", 50 << 20, 150 << 20, (10 << 20) as f64);
        assert!(l.contains("disk 1/3 D1") && l.contains("(33%)") && l.contains("/s") && l.ends_with("ETA 10s"), "{l}");
        assert!(super::disk_line(1, 1, "D", "copy", 0, 10, 0.0).ends_with("-  ETA -"));
        assert_eq!(super::eta(7200, 1.0), "2h00m");
    }
}
