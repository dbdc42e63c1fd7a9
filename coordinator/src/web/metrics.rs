//! `/metrics`: what the operations team alerts on, in OpenMetrics text.
//!
//! Named as the ecosystem names things (`seedship_…_total`, `_seconds`, `_bytes`, as Velero's
//! `velero_backup_*`). Durable facts are read from the database at each scrape, so a
//! restart does not reset them: seeds by state, time spent per stage, verification and
//! repair outcomes, deadlines, recovery points, station heartbeats. What only this process
//! sees is counted in memory ([`crate::observe`]): lease operations with their latency,
//! Azure calls, bytes each station wrote.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `seedship_seeds` | gauge | `state` |
//! | `seedship_stage_duration_seconds` | histogram | `stage` |
//! | `seedship_bytes_in_transit_bytes` | gauge | |
//! | `seedship_diskprep_written_bytes_total` | counter | `station` |
//! | `seedship_diskprep_throughput_bytes_per_second` | gauge | `station` |
//! | `seedship_lease_operations_total` | counter | `operation`, `outcome` |
//! | `seedship_lease_operation_duration_seconds` | histogram | `operation` |
//! | `seedship_azure_requests_total` | counter | `operation`, `outcome` |
//! | `seedship_azure_unavailable_seconds` | gauge | `job` |
//! | `seedship_deadline_remaining_seconds` | gauge | `job`, `deadline` |
//! | `seedship_verified_files` | gauge | `status` |
//! | `seedship_repair_files` | gauge | `state` |
//! | `seedship_last_online_backup_timestamp_seconds` | gauge | `server` |
//! | `seedship_last_recovery_point_timestamp_seconds` | gauge | `server` |
//! | `seedship_agent_last_heartbeat_timestamp_seconds` | gauge | `role`, `agent` |
//! | `seedship_seeds_waiting_for_customer` | gauge | `job` |
//! | `seedship_seed_state_age_seconds` | gauge | `job`, `state` |
//! | `seedship_repair_blocked` | gauge | `job` |

use super::openmetrics::Text;
use crate::domain::seed::SeedState;
use crate::error::Result;
use crate::observe;
use crate::service::Coordinator;

/// Stage durations: a minute to a month.
const STAGE_BUCKETS: [f64; 10] = [
    60.0,
    300.0,
    900.0,
    3600.0,
    4.0 * 3600.0,
    86_400.0,
    3.0 * 86_400.0,
    7.0 * 86_400.0,
    14.0 * 86_400.0,
    30.0 * 86_400.0,
];

pub async fn render(core: &Coordinator) -> Result<String> {
    let (facts, jobs) = core.metrics_facts().await?;
    let now = core.now();
    let mut t = Text::default();

    t.family("seedship_seeds", "gauge", "", "Seeds by state.");
    for st in SeedState::ALL {
        let n = facts.seeds_by_state.iter().find(|(s, _)| s == st.as_str()).map(|(_, n)| *n).unwrap_or(0);
        t.sample("seedship_seeds", "", &[("state", st.as_str())], n as f64);
    }

    t.family(
        "seedship_seed_state_age_seconds",
        "gauge",
        "seconds",
        "How long each seed under way has been in its state.",
    );
    for (job, state, since) in &facts.seed_states {
        t.sample(
            "seedship_seed_state_age_seconds",
            "",
            &[("job", job), ("state", state)],
            ((now - since).max(0) / 1000) as f64,
        );
    }
    t.family(
        "seedship_repair_blocked",
        "gauge",
        "",
        "1 for a seed whose repair cannot finish: its source no longer has a lost file.",
    );
    for job in &facts.repair_blocked {
        t.sample("seedship_repair_blocked", "", &[("job", job)], 1.0);
    }

    t.family(
        "seedship_stage_duration_seconds",
        "histogram",
        "seconds",
        "Time seeds spent in each stage, for every stay that has ended.",
    );
    for st in SeedState::ALL {
        let mut h = observe::Histogram::default();
        for (_, secs) in facts.stage_stays.iter().filter(|(s, _)| s == st.as_str()) {
            h.observe(&STAGE_BUCKETS, *secs);
        }
        if h.count > 0 {
            t.histogram(
                "seedship_stage_duration_seconds",
                &[("stage", st.as_str())],
                &STAGE_BUCKETS,
                &h.buckets,
                h.count,
                h.sum,
            );
        }
    }

    t.family(
        "seedship_bytes_in_transit_bytes",
        "gauge",
        "bytes",
        "Bytes of seeds whose disks are prepared and not yet at the datacenter.",
    );
    t.sample("seedship_bytes_in_transit_bytes", "", &[], facts.bytes_in_transit as f64);

    let counted = observe::snapshot();
    t.family(
        "seedship_diskprep_written_bytes",
        "counter",
        "bytes",
        "Bytes copy stations reported on shipping disks (since this coordinator started).",
    );
    for (station, n) in &counted.station_bytes {
        t.sample("seedship_diskprep_written_bytes", "_total", &[("station", station)], *n as f64);
    }
    t.family(
        "seedship_diskprep_throughput_bytes_per_second",
        "gauge",
        "",
        "What each copy station writes now: the sum of its disks' rates as it last reported them.",
    );
    for (station, r) in &facts.station_rates {
        t.sample("seedship_diskprep_throughput_bytes_per_second", "", &[("station", station)], *r as f64);
    }

    t.family("seedship_lease_operations", "counter", "", "Copy stations' lease operations by outcome.");
    for (op, outcome, n) in &counted.lease_ops {
        t.sample("seedship_lease_operations", "_total", &[("operation", op), ("outcome", outcome)], *n as f64);
    }
    t.family(
        "seedship_lease_operation_duration_seconds",
        "histogram",
        "seconds",
        "How long the coordinator took to answer a lease operation.",
    );
    for (op, h) in &counted.lease_latency {
        t.histogram(
            "seedship_lease_operation_duration_seconds",
            &[("operation", op)],
            &observe::LATENCY_BUCKETS,
            &h.buckets,
            h.count,
            h.sum,
        );
    }

    t.family("seedship_azure_requests", "counter", "", "Calls to Azure Resource Manager by operation and outcome.");
    for (op, outcome, n) in seedship_azure::client::calls::snapshot() {
        t.sample("seedship_azure_requests", "_total", &[("operation", op), ("outcome", outcome)], n as f64);
    }
    t.family(
        "seedship_azure_unavailable_seconds",
        "gauge",
        "seconds",
        "How long Azure has not answered about an import job (absent while it answers).",
    );
    for j in jobs.iter().filter(|j| j.unavailable_since_ms.is_some()) {
        let since = j.unavailable_since_ms.unwrap_or(now);
        t.sample(
            "seedship_azure_unavailable_seconds",
            "",
            &[("job", &j.intent.job_name)],
            ((now - since).max(0) / 1000) as f64,
        );
    }
    t.family(
        "seedship_deadline_remaining_seconds",
        "gauge",
        "seconds",
        "Seconds left on an import job's running 14-day clock (negative once past).",
    );
    for j in &jobs {
        if let Some(d) = j.deadline() {
            t.sample(
                "seedship_deadline_remaining_seconds",
                "",
                &[("job", &j.intent.job_name), ("deadline", d.kind.as_str())],
                ((d.due_ms() - now) / 1000) as f64,
            );
        }
    }
    t.family(
        "seedship_seeds_waiting_for_customer",
        "gauge",
        "",
        "1 for an import job Azure holds until the customer answers (seedctl mitigate).",
    );
    for j in jobs.iter().filter(|j| j.waits_for_customer()) {
        t.sample("seedship_seeds_waiting_for_customer", "", &[("job", &j.intent.job_name)], 1.0);
    }

    t.family(
        "seedship_verified_files",
        "gauge",
        "",
        "Files of the latest import verification of each seed, by outcome.",
    );
    for (status, n) in &facts.verified_files {
        t.sample("seedship_verified_files", "", &[("status", status)], *n as f64);
    }
    t.family("seedship_repair_files", "gauge", "", "Files asked of source agents again, by what became of them.");
    for (state, n) in &facts.repairs {
        t.sample("seedship_repair_files", "", &[("state", state)], *n as f64);
    }

    t.family(
        "seedship_last_online_backup_timestamp_seconds",
        "gauge",
        "seconds",
        "When each server's newest online (incremental) recovery point was made.",
    );
    for (server, ms) in &facts.last_online_backup {
        t.sample("seedship_last_online_backup_timestamp_seconds", "", &[("server", server)], (*ms / 1000) as f64);
    }
    t.family(
        "seedship_last_recovery_point_timestamp_seconds",
        "gauge",
        "seconds",
        "When each server's newest recovery point (seed or online) was made.",
    );
    for (server, ms) in &facts.last_recovery_point {
        t.sample("seedship_last_recovery_point_timestamp_seconds", "", &[("server", server)], (*ms / 1000) as f64);
    }
    t.family(
        "seedship_agent_last_heartbeat_timestamp_seconds",
        "gauge",
        "seconds",
        "When each agent last sent a heartbeat.",
    );
    for (role, name, ms) in &facts.heartbeats {
        t.sample(
            "seedship_agent_last_heartbeat_timestamp_seconds",
            "",
            &[("role", role), ("agent", name)],
            (*ms / 1000) as f64,
        );
    }
    Ok(t.finish())
}
