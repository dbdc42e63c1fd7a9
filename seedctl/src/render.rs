//! Tables and JSON for `seedctl`.

use seedship_proto::pb;
use serde_json::{Value, json};

use seedship_proto::human::rfc3339;

fn state_name(s: i32) -> String {
    seedship_proto::human::seed_state(s)
}

/// "customer_disk" or "databox_disk".
pub fn kind_name(k: i32) -> String {
    pb::DiskKind::try_from(k)
        .map(|k| k.as_str_name().trim_start_matches("DISK_KIND_").to_ascii_lowercase())
        .unwrap_or_else(|_| format!("unknown({k})"))
}

pub fn role_name(r: i32) -> String {
    pb::Role::try_from(r)
        .map(|r| r.as_str_name().trim_start_matches("ROLE_").to_ascii_lowercase())
        .unwrap_or_else(|_| format!("unknown({r})"))
}

/// "3d4h", "12m", "40s": how long ago, for people.
pub fn age(now_ms: i64, then_ms: i64) -> String {
    if then_ms == 0 {
        return "never".into();
    }
    let s = ((now_ms - then_ms).max(0)) / 1000;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86_399 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{}h", s / 86_400, (s % 86_400) / 3600),
    }
}

pub use seedship_proto::human::bytes as size;

pub fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let last = cells.len() - 1;
        cells
            .into_iter()
            .enumerate()
            .map(|(i, c)| if i == last { c } else { format!("{c:<w$}", w = widths[i]) })
            .collect::<Vec<_>>()
            .join("  ")
    };
    let mut out = vec![line(header.iter().map(|h| h.to_string()).collect())];
    let empty = rows.is_empty();
    out.extend(rows.into_iter().map(line));
    if empty {
        out.push("(none)".into());
    }
    out.join("\n")
}

pub fn seeds_table(seeds: &[pb::SeedSummary], now: i64) -> String {
    table(
        &["JOB", "SEED", "STATE", "DISKS", "AGE", "OWNER", "SIZE", "FILES", "WHY"],
        seeds
            .iter()
            .map(|s| {
                vec![
                    s.job_name.clone(),
                    s.seed_id.clone(),
                    state_name(s.state),
                    kind_name(s.disk_kind),
                    age(now, s.created_unix_ms),
                    s.owner.clone(),
                    size(s.total_bytes),
                    s.file_count.to_string(),
                    s.state_reason.clone(),
                ]
            })
            .collect(),
    )
}

pub fn seed_json(s: &pb::SeedSummary) -> Value {
    json!({
        "seed_id": s.seed_id, "job_name": s.job_name, "owner": s.owner,
        "state": state_name(s.state), "state_reason": s.state_reason,
        "created": rfc3339(s.created_unix_ms), "updated": rfc3339(s.updated_unix_ms),
        "created_unix_ms": s.created_unix_ms, "updated_unix_ms": s.updated_unix_ms,
        "total_bytes": s.total_bytes, "file_count": s.file_count,
        "storage_account": s.storage_account, "container": s.container,
        "subscription_id": s.subscription_id, "location": s.location,
        "staging_location": s.staging_location, "manifest_root": s.manifest_root,
        "target_site": s.target_site, "target_station": s.target_station,
        "allow_virtual_station": s.allow_virtual_station, "disk_kind": kind_name(s.disk_kind),
        "round_of": s.round_of,
    })
}

pub fn seed_detail_text(r: &pb::GetSeedResponse) -> String {
    let now = r.server_time_unix_ms;
    let Some(s) = &r.seed else { return String::new() };
    let mut out = vec![
        format!("Seed       {} ({})", s.job_name, s.seed_id),
        format!("State      {} — {}", state_name(s.state), s.state_reason),
        format!("Owner      {}", s.owner),
        format!(
            "Disks      {}",
            match pb::DiskKind::try_from(s.disk_kind) {
                Ok(pb::DiskKind::DataboxDisk) => "databox_disk (Microsoft's Data Box Disks)".to_string(),
                Ok(pb::DiskKind::CustomerDisk) => "customer_disk (the operator's own disks)".to_string(),
                _ => kind_name(s.disk_kind),
            }
        ),
        format!("Created    {} ({} ago)", rfc3339(s.created_unix_ms), age(now, s.created_unix_ms)),
        format!("Size       {} in {} files", size(s.total_bytes), s.file_count),
        format!(
            "Azure      account {} / container {} / {} / subscription {}",
            s.storage_account, s.container, s.location, s.subscription_id
        ),
        format!("Staging    {}", s.staging_location),
        format!("Manifest   {}", s.manifest_root),
    ];
    if !s.round_of.is_empty() {
        out.push(format!(
            "Round of   {} (a new offline round for the files its import lost; merged into it once imported)",
            s.round_of
        ));
    }
    for round in &r.rounds {
        out.push(format!(
            "Round      {} ({}): {} in {} files, {} — {}",
            round.job_name,
            round.seed_id,
            size(round.total_bytes),
            round.file_count,
            state_name(round.state),
            round.state_reason
        ));
    }
    if let Some(w) = &r.work {
        let pct = if w.total_bytes > 0 { w.progress_bytes as f64 * 100.0 / w.total_bytes as f64 } else { 0.0 };
        let lease = if w.status == "leased" {
            format!(
                ", held by {} (generation {}, expires in {}s)",
                w.holder,
                w.generation,
                ((w.lease_expires_unix_ms - now) / 1000).max(0)
            )
        } else {
            String::new()
        };
        out.push(format!(
            "Disk prep  {}{lease}; {} of {} ({pct:.1}%){}",
            w.status,
            size(w.progress_bytes),
            size(w.total_bytes),
            if w.phase.is_empty() { String::new() } else { format!(", phase {}", w.phase) }
        ));
        out.extend(disk_lines(&w.disks, now));
    }
    if !r.drives.is_empty() {
        out.push(String::new());
        out.push(drives_table(&r.drives));
    }
    if let Some(sh) = &r.shipping {
        out.push(String::new());
        out.push(shipping_text(sh));
    }
    out.push(String::new());
    let shown = r.history.len() as u64;
    if r.history_total > shown {
        let oldest = r.history.first().map(|e| e.event_id).unwrap_or(0);
        out.push(format!(
            "History (the newest {shown} of {} events; older ones: seedctl events --seed {} --before {oldest})",
            r.history_total,
            r.seed.as_ref().map(|s| s.job_name.as_str()).unwrap_or("JOB")
        ));
    } else {
        out.push("History".into());
    }
    out.push(events_table(&r.history));
    out.join("\n")
}

pub fn seed_detail_json(r: &pb::GetSeedResponse) -> Value {
    json!({
        "seed": r.seed.as_ref().map(seed_json),
        "work": r.work.as_ref().map(|w| json!({
            "work_id": w.work_id, "status": w.status, "holder": w.holder, "generation": w.generation,
            "lease_expires": rfc3339(w.lease_expires_unix_ms), "progress_bytes": w.progress_bytes,
            "total_bytes": w.total_bytes, "phase": w.phase,
            "disks": w.disks.iter().map(disk_json).collect::<Vec<_>>(),
        })),
        "drives": r.drives.iter().map(drive_json).collect::<Vec<_>>(),
        "shipping": r.shipping.as_ref().map(shipping_json),
        "history": r.history.iter().map(event_json).collect::<Vec<_>>(),
        "history_total": r.history_total,
        "rounds": r.rounds.iter().map(seed_json).collect::<Vec<_>>(),
    })
}

/// Each disk a station reported, one line each (as the station's own display), with how old
/// the report is.
pub fn disk_lines(disks: &[pb::DiskProgress], now: i64) -> Vec<String> {
    disks
        .iter()
        .map(|d| {
            format!(
                "  {}  (reported {} ago)",
                seedship_proto::human::disk_line(
                    d.position,
                    d.set_size,
                    if d.drive_id.is_empty() { "-" } else { &d.drive_id },
                    &d.phase,
                    d.done_bytes,
                    d.total_bytes,
                    d.rate_bytes_per_sec as f64
                ),
                age(now, d.updated_unix_ms)
            )
        })
        .collect()
}

pub fn agents_table(agents: &[pb::Agent], now: i64) -> String {
    let mut out = table(
        &["ROLE", "NAME", "ACTIVITY", "WORK", "SITE", "HOST", "VIRT", "VERSION", "LAST HEARTBEAT", "STATUS"],
        agents
            .iter()
            .map(|a| {
                vec![
                    role_name(a.role),
                    a.name.clone(),
                    a.activity.clone(),
                    dash(&a.work_job),
                    if a.site.is_empty() { "-".into() } else { a.site.clone() },
                    a.hostname.clone(),
                    if a.virtualization.is_empty() { "?".into() } else { a.virtualization.clone() },
                    a.version.clone(),
                    if a.activity == "never reported" {
                        "never".into()
                    } else {
                        format!("{} ago", age(now, a.last_heartbeat_unix_ms))
                    },
                    a.status.clone(),
                ]
            })
            .collect(),
    );
    for a in agents.iter().filter(|a| !a.disks.is_empty()) {
        out.push_str(&format!("\n\n{} ({}):\n", a.name, a.work_job));
        out.push_str(&disk_lines(&a.disks, now).join("\n"));
    }
    out
}

fn disk_json(d: &pb::DiskProgress) -> Value {
    json!({
        "position": d.position, "set_size": d.set_size, "drive_id": d.drive_id, "phase": d.phase,
        "done_bytes": d.done_bytes, "total_bytes": d.total_bytes, "rate_bytes_per_sec": d.rate_bytes_per_sec,
        "updated": rfc3339(d.updated_unix_ms),
    })
}

pub fn agent_json(a: &pb::Agent) -> Value {
    json!({
        "identity": a.identity, "role": role_name(a.role), "name": a.name, "site": a.site,
        "hostname": a.hostname, "version": a.version, "virtualization": a.virtualization,
        "registered": rfc3339(a.registered_unix_ms), "last_heartbeat": rfc3339(a.last_heartbeat_unix_ms),
        "last_heartbeat_unix_ms": a.last_heartbeat_unix_ms, "status": a.status,
        "activity": a.activity, "work_job": a.work_job,
        "disks": a.disks.iter().map(disk_json).collect::<Vec<_>>(),
    })
}

pub fn drives_table(drives: &[pb::Drive]) -> String {
    table(
        &["JOB", "POS", "DRIVE", "STATUS", "CAPACITY", "WRITTEN", "MANIFEST HASH", "KEY", "REPORTED BY"],
        drives
            .iter()
            .map(|d| {
                vec![
                    d.job_name.clone(),
                    d.position.to_string(),
                    d.drive_id.clone(),
                    if d.status_reason.is_empty() {
                        d.status.clone()
                    } else {
                        format!("{}: {}", d.status, d.status_reason)
                    },
                    size(d.capacity_bytes),
                    size(d.bytes_written),
                    d.manifest_hash.clone(),
                    if d.has_key { "held".into() } else { "none".into() },
                    d.reported_by.clone(),
                ]
            })
            .collect(),
    )
}

pub fn drive_json(d: &pb::Drive) -> Value {
    json!({
        "drive_id": d.drive_id, "seed_id": d.seed_id, "job_name": d.job_name, "position": d.position,
        "capacity_bytes": d.capacity_bytes, "bytes_written": d.bytes_written,
        "manifest_file": d.manifest_file, "manifest_hash": d.manifest_hash,
        "drive_header_hash": d.drive_header_hash, "has_key": d.has_key,
        "status": d.status, "status_reason": d.status_reason,
        "reported_by": d.reported_by, "reported": rfc3339(d.reported_unix_ms),
    })
}

fn dash(s: &str) -> String {
    if s.is_empty() { "-".into() } else { s.to_string() }
}

/// The Azure side of a job in a few words: state, "unavailable since", or the refusal.
fn azure_cell(j: &pb::ImportJob) -> String {
    let mut s = match j.phase.as_str() {
        "intent" => "creating".to_string(),
        "refused" => "refused".to_string(),
        "gone" => "gone from Azure".to_string(),
        _ => dash(&j.azure_state),
    };
    if j.azure_unavailable_since_unix_ms > 0 {
        s.push_str(&format!(" (Azure unavailable since {})", rfc3339(j.azure_unavailable_since_unix_ms)));
    }
    s
}

fn deadline_cell(j: &pb::ImportJob) -> String {
    match j.deadline.as_str() {
        "" => "-".into(),
        "tracking_number" => format!("{}d left to ship", j.deadline_days_left),
        "delivery" => format!("{}d left to arrive", j.deadline_days_left),
        other => other.to_string(),
    }
}

pub fn jobs_table(jobs: &[pb::ImportJob]) -> String {
    table(
        &["JOB", "SEED STATE", "AZURE", "DRIVES", "LOCATION", "CARRIER", "TRACKING", "DEADLINE"],
        jobs.iter()
            .map(|j| {
                vec![
                    j.job_name.clone(),
                    state_name(j.seed_state),
                    azure_cell(j),
                    j.drive_count.to_string(),
                    j.location.clone(),
                    dash(&j.carrier),
                    dash(&j.tracking_number),
                    deadline_cell(j),
                ]
            })
            .collect(),
    )
}

pub fn job_json(j: &pb::ImportJob) -> Value {
    let at = |ms: i64| if ms == 0 { Value::Null } else { Value::String(rfc3339(ms)) };
    json!({
        "job_name": j.job_name, "seed_id": j.seed_id, "state": state_name(j.seed_state),
        "state_reason": j.seed_reason, "phase": j.phase, "azure_state": j.azure_state,
        "percent_complete": j.percent_complete, "subscription_id": j.subscription_id,
        "resource_group": j.resource_group, "storage_account": j.storage_account, "location": j.location,
        "drive_count": j.drive_count, "carrier": j.carrier, "tracking_number": j.tracking_number,
        "intent": at(j.intent_unix_ms), "created": at(j.created_unix_ms), "shipped": at(j.shipped_unix_ms),
        "shipping_address": j.shipping_address,
        "deadline": if j.deadline.is_empty() { Value::Null } else { json!({
            "kind": j.deadline, "due": rfc3339(j.deadline_due_unix_ms), "days_left": j.deadline_days_left,
            "text": j.deadline_text,
        }) },
        "azure_unavailable_since": at(j.azure_unavailable_since_unix_ms), "last_error": j.last_error,
        "last_polled": at(j.last_polled_unix_ms),
        "stage_status": j.stage_status, "actions": j.actions, "azure_error": j.azure_error,
        "drives": j.drives.iter().map(|d| json!({
            "drive_id": d.drive_id, "state": d.state, "copy_status": d.copy_status,
            "percent_complete": d.percent_complete, "bytes_succeeded": d.bytes_succeeded,
            "error_log_uri": d.error_log_uri, "verbose_log_uri": d.verbose_log_uri, "manifest_uri": d.manifest_uri,
            "copy_errors": d.copy_errors.iter().map(|e| json!({
                "path": e.path, "category": e.category, "code": e.code, "message": e.message,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "shipping": j.shipping.as_ref().map(shipping_json),
    })
}

/// One job for operators, as the old tool's `u:` showed it: status, shipping address,
/// shipping details, deadline, drives and history.
pub fn job_detail_text(r: &pb::GetJobResponse) -> String {
    let Some(j) = &r.job else { return String::new() };
    let mut out = vec![
        format!("Job        {} (seed {})", j.job_name, j.seed_id),
        format!("Seed       {} — {}", state_name(j.seed_state), j.seed_reason),
        format!(
            "Azure      {}{}; resource group {}, subscription {}",
            azure_cell(j),
            if j.percent_complete > 0 { format!(", {}%", j.percent_complete) } else { String::new() },
            j.resource_group,
            j.subscription_id
        ),
    ];
    if !j.stage_status.is_empty() {
        out.push(format!("Stage      {} {}", j.azure_state, j.stage_status));
    }
    if !j.azure_error.is_empty() {
        out.push(format!("Azure says {}", j.azure_error));
    }
    if !j.actions.is_empty() {
        out.push(format!(
            "Waiting    Azure waits for you: answer with `seedctl mitigate --job {} --resolution {}` ({})",
            j.job_name,
            j.actions[0],
            j.actions.join(", ")
        ));
    }
    if !j.last_error.is_empty() {
        out.push(format!("Last error {}", j.last_error));
    }
    if j.created_unix_ms > 0 {
        out.push(format!("Created    {}", rfc3339(j.created_unix_ms)));
    }
    if !j.deadline_text.is_empty() {
        out.push(format!("Deadline   {}", j.deadline_text));
    }
    if j.shipping_address.is_empty() {
        out.push("Ship to    (known once Azure has created the job)".into());
    } else {
        out.push(format!("Ship to    {}", j.shipping_address[0]));
        out.extend(j.shipping_address[1..].iter().map(|l| format!("           {l}")));
    }
    match &j.shipping {
        Some(sh) => {
            out.push(shipping_text(sh));
        }
        None => out.push(format!(
            "Shipping   not recorded; run `seedctl ship --job {} --carrier … --tracking … --drives {} --date YYYY-MM-DD`",
            j.job_name, j.drive_count
        )),
    }
    out.push(String::new());
    out.push(table(
        &["DISK", "COPY STATUS", "MEANING", "PERCENT", "BYTES", "COPY LOG"],
        j.drives
            .iter()
            .map(|d| {
                vec![
                    d.drive_id.clone(),
                    dash(&d.state),
                    dash(&d.copy_status),
                    format!("{}%", d.percent_complete),
                    size(d.bytes_succeeded.max(0) as u64),
                    dash(&d.error_log_uri),
                ]
            })
            .collect(),
    ));
    let errored: Vec<Vec<String>> = j
        .drives
        .iter()
        .flat_map(|d| {
            d.copy_errors.iter().map(|e| {
                vec![d.drive_id.clone(), e.path.clone(), format!("{} ({})", e.category, e.code), e.message.clone()]
            })
        })
        .collect();
    if !errored.is_empty() {
        out.push(String::new());
        out.push("Not imported (from the copy logs)".into());
        out.push(table(&["DISK", "PATH", "CATEGORY", "MESSAGE"], errored));
    }
    out.push(String::new());
    out.push("History".into());
    out.push(events_table(&r.history));
    out.join("\n")
}

pub fn job_detail_json(r: &pb::GetJobResponse) -> Value {
    json!({
        "job": r.job.as_ref().map(job_json),
        "history": r.history.iter().map(event_json).collect::<Vec<_>>(),
    })
}

/// The import verification report: a summary, then every file that is not verified, then
/// the repairs and what became of them.
pub fn verification_text(r: &pb::GetVerificationResponse) -> String {
    let Some(s) = &r.seed else { return String::new() };
    let count = |st: &str| r.files.iter().filter(|f| f.status == st).count();
    let mut out = vec![
        format!("Seed       {} ({})", s.job_name, s.seed_id),
        format!("State      {} — {}", state_name(s.state), s.state_reason),
    ];
    if r.files.is_empty() {
        out.push("Verified   not yet (the import container is checked once the import is done)".into());
        return out.join("\n");
    }
    out.push(format!(
        "Verified   {} of {} file(s) at {}; {} missing, {} corrupted",
        count("verified"),
        r.files.len(),
        rfc3339(r.checked_unix_ms),
        count("missing"),
        count("corrupted")
    ));
    let bad: Vec<Vec<String>> = r
        .files
        .iter()
        .filter(|f| f.status != "verified")
        .map(|f| vec![f.path.clone(), f.status.clone(), size(f.size), f.detail.clone()])
        .collect();
    if !bad.is_empty() {
        out.push(String::new());
        out.push(table(&["FILE", "STATUS", "SIZE", "WHY"], bad));
    }
    if !r.repairs.is_empty() {
        out.push(String::new());
        out.push("Repairs (asked of the source agent)".into());
        out.push(table(
            &["FILE", "STATE", "UPDATED", "DETAIL"],
            r.repairs
                .iter()
                .map(|p| vec![p.path.clone(), p.state.clone(), rfc3339(p.updated_unix_ms), p.detail.clone()])
                .collect(),
        ));
    }
    out.join("\n")
}

pub fn verification_json(r: &pb::GetVerificationResponse) -> Value {
    json!({
        "seed": r.seed.as_ref().map(seed_json),
        "checked": if r.checked_unix_ms == 0 { Value::Null } else { Value::String(rfc3339(r.checked_unix_ms)) },
        "files": r.files.iter().map(|f| json!({"path": f.path, "size": f.size, "status": f.status, "detail": f.detail})).collect::<Vec<_>>(),
        "repairs": r.repairs.iter().map(|p| json!({"path": p.path, "state": p.state, "detail": p.detail, "updated": rfc3339(p.updated_unix_ms)})).collect::<Vec<_>>(),
    })
}

pub fn recovery_points_table(points: &[pb::RecoveryPoint]) -> String {
    table(
        &["SERVER", "VAULT", "SNAPSHOT", "KIND", "CREATED", "FROM SEED"],
        points
            .iter()
            .map(|p| {
                vec![
                    p.server.clone(),
                    p.container.clone(),
                    p.snapshot_id.chars().take(12).collect(),
                    p.kind.clone(),
                    rfc3339(p.created_unix_ms),
                    dash(&p.seed_id),
                ]
            })
            .collect(),
    )
}

pub fn recovery_point_json(p: &pb::RecoveryPoint) -> Value {
    json!({
        "server": p.server, "vault": p.container, "snapshot_id": p.snapshot_id, "kind": p.kind,
        "created": rfc3339(p.created_unix_ms), "seed_id": p.seed_id, "manifest_root": p.manifest_root,
    })
}

pub fn events_table(events: &[pb::SeedEvent]) -> String {
    table(
        &["TIME", "JOB", "EVENT", "FROM", "TO", "ACTOR", "REASON"],
        events
            .iter()
            .map(|e| {
                vec![
                    rfc3339(e.at_unix_ms),
                    e.job_name.clone(),
                    e.event.clone(),
                    if e.from_state == 0 { "-".into() } else { state_name(e.from_state) },
                    state_name(e.to_state),
                    e.actor.clone(),
                    if e.repeats > 1 {
                        format!("{} (x{}, last {})", e.reason, e.repeats, rfc3339(e.last_unix_ms))
                    } else {
                        e.reason.clone()
                    },
                ]
            })
            .collect(),
    )
}

pub fn event_json(e: &pb::SeedEvent) -> Value {
    json!({
        "event_id": e.event_id, "seed_id": e.seed_id, "job_name": e.job_name,
        "at": rfc3339(e.at_unix_ms), "at_unix_ms": e.at_unix_ms, "actor": e.actor,
        "from": if e.from_state == 0 { Value::Null } else { Value::String(state_name(e.from_state)) },
        "to": state_name(e.to_state), "event": e.event, "reason": e.reason,
        "repeats": e.repeats.max(1), "last": rfc3339(e.last_unix_ms.max(e.at_unix_ms)),
    })
}

pub fn shipping_text(r: &pb::ShippingRecord) -> String {
    let azure = if r.confirmed_unix_ms > 0 {
        format!("; Azure confirmed at {}", rfc3339(r.confirmed_unix_ms))
    } else {
        "; Azure has not confirmed it yet (the coordinator keeps sending it)".to_string()
    };
    format!(
        "Shipping   job {}: {} drive(s) via {}, tracking {}, shipped {} (recorded by {} at {}{azure})",
        r.job_name,
        r.drive_count,
        r.carrier,
        r.tracking_number,
        r.ship_date,
        r.recorded_by,
        rfc3339(r.recorded_unix_ms)
    )
}

pub fn shipping_json(r: &pb::ShippingRecord) -> Value {
    json!({
        "job_name": r.job_name, "seed_id": r.seed_id, "carrier": r.carrier,
        "tracking_number": r.tracking_number, "drive_count": r.drive_count, "ship_date": r.ship_date,
        "recorded_by": r.recorded_by, "recorded": rfc3339(r.recorded_unix_ms),
        "azure_confirmed": if r.confirmed_unix_ms > 0 { Value::String(rfc3339(r.confirmed_unix_ms)) } else { Value::Null },
    })
}

pub fn audit_table(entries: &[seedship_proto::audit::Entry]) -> String {
    table(
        &["SEQ", "WHEN (UTC)", "ACTOR", "ACTION", "TARGET", "OUTCOME", "DETAIL"],
        entries
            .iter()
            .map(|e| {
                vec![
                    e.seq.to_string(),
                    rfc3339(e.at_unix_ms),
                    e.actor.clone(),
                    e.action.clone(),
                    dash(&e.target),
                    e.outcome.clone(),
                    e.detail.chars().take(100).collect(),
                ]
            })
            .collect(),
    )
}

pub fn notifications_table(ns: &[pb::Notification]) -> String {
    table(
        &["ID", "WHEN (UTC)", "KIND", "JOB", "DELIVERY", "ACKNOWLEDGED", "REASON"],
        ns.iter()
            .map(|n| {
                let delivery = if n.deliveries.is_empty() {
                    "-".to_string()
                } else {
                    n.deliveries
                        .iter()
                        .map(|d| match d.state.as_str() {
                            "pending" if d.attempts > 0 => format!("{}: retrying ({} tries)", d.channel, d.attempts),
                            s => format!("{}: {s}", d.channel),
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                vec![
                    n.id.to_string(),
                    rfc3339(n.created_unix_ms),
                    n.kind.clone(),
                    n.job_name.clone(),
                    delivery,
                    if n.acked_unix_ms > 0 { format!("by {}", n.acked_by) } else { "no".into() },
                    n.reason.chars().take(90).collect(),
                ]
            })
            .collect(),
    )
}

pub fn notification_json(n: &pb::Notification) -> Value {
    json!({
        "id": n.id, "kind": n.kind, "seed_id": n.seed_id, "job_name": n.job_name, "event": n.event,
        "actor": n.actor, "reason": n.reason, "created": rfc3339(n.created_unix_ms),
        "acknowledged": (n.acked_unix_ms > 0).then(|| json!({
            "at": rfc3339(n.acked_unix_ms), "by": n.acked_by, "reason": n.ack_reason,
        })),
        "deliveries": n.deliveries.iter().map(|d| json!({
            "channel": d.channel, "state": d.state, "attempts": d.attempts, "last_error": d.last_error,
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_and_sizes_read_well() {
        assert_eq!(age(100_000, 40_000), "60s".replace("60s", "1m"));
        assert_eq!(age(10_000, 5_000), "5s");
        assert_eq!(age(90_000_000, 0), "never");
        assert_eq!(age(2 * 86_400_000 + 3_600_000, 1), "2d0h");
        assert_eq!(size(512), "512 B");
        assert_eq!(size(3 * 1024 * 1024), "3.0 MiB");
    }

    #[test]
    fn empty_tables_say_none() {
        assert!(seeds_table(&[], 0).ends_with("(none)"));
    }
}
