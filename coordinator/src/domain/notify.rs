//! What the operations team is told, and how: which seed events become notifications, and the
//! body every channel carries (a versioned JSON document in Alertmanager's webhook shape, so
//! the receivers that take Alertmanager's take ours), signed with HMAC-SHA256.
//!
//! Body version 1 (`seedship.version`): Alertmanager's fields (`version` "4", `groupKey`,
//! `status`, `receiver`, `groupLabels`, `commonLabels`, `commonAnnotations`, `externalURL`,
//! `alerts[]` with `labels`, `annotations`, `startsAt`, `endsAt`, `fingerprint`), and
//! `seedship` with the notification itself (id, kind, seed, job, event, actor, reason, time).
//! A receiver deduplicates by `seedship.id` (also the `X-Seedship-Delivery` header): a
//! delivery whose answer was lost is sent again.

use serde_json::{Value, json};

use crate::clock::{UnixMs, rfc3339};
use crate::domain::seed::SeedState;

/// The body's version (`seedship.version`); a change that breaks receivers bumps it.
pub const BODY_VERSION: u32 = 1;

/// What a notification is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// One of Azure's 14-day clocks is running out (days 10, 12, 13) or ran out.
    DeadlineWarning,
    /// A seed failed.
    Failed,
    /// Something waits for a person: a station wants disks, Azure wants an answer.
    WaitingForPerson,
    /// A seed is in its vault: offline seeding done.
    Seeded,
    /// A repair cannot finish: the source no longer has a file the import lost.
    RepairBlocked,
}

impl Kind {
    pub const ALL: [Kind; 5] =
        [Kind::DeadlineWarning, Kind::Failed, Kind::WaitingForPerson, Kind::Seeded, Kind::RepairBlocked];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::DeadlineWarning => "deadline_warning",
            Kind::Failed => "failed",
            Kind::WaitingForPerson => "waiting_for_person",
            Kind::Seeded => "seeded",
            Kind::RepairBlocked => "repair_blocked",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    fn severity(self) -> &'static str {
        match self {
            Kind::Failed | Kind::RepairBlocked => "critical",
            Kind::DeadlineWarning | Kind::WaitingForPerson => "warning",
            Kind::Seeded => "info",
        }
    }

    fn alertname(self) -> &'static str {
        match self {
            Kind::DeadlineWarning => "SeedshipDeadlineWarning",
            Kind::Failed => "SeedshipSeedFailed",
            Kind::WaitingForPerson => "SeedshipWaitingForPerson",
            Kind::Seeded => "SeedshipSeeded",
            Kind::RepairBlocked => "SeedshipRepairBlocked",
        }
    }
}

/// The notification a seed event is, if any.
pub fn classify(event: &str, from: Option<SeedState>, to: SeedState) -> Option<Kind> {
    let entered = |s: SeedState| to == s && from != Some(s);
    match event {
        _ if entered(SeedState::Failed) => Some(Kind::Failed),
        _ if entered(SeedState::Seeded) => Some(Kind::Seeded),
        "deadline_warning" | "shipping_not_recorded" => Some(Kind::DeadlineWarning),
        "station_waiting" | "azure_waits_for_customer" => Some(Kind::WaitingForPerson),
        "data_lost" => Some(Kind::RepairBlocked),
        _ => None,
    }
}

/// A notification as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub id: i64,
    pub kind: Kind,
    pub seed_id: String,
    pub job_name: String,
    pub event: String,
    pub actor: String,
    pub state: String,
    pub reason: String,
    pub created_ms: UnixMs,
    pub acked: Option<(UnixMs, String, String)>,
}

/// The body sent to `receiver` (the channel's name).
pub fn body(n: &Notification, receiver: &str, external_url: &str) -> Value {
    let labels = json!({
        "alertname": n.kind.alertname(),
        "severity": n.kind.severity(),
        "job": n.job_name,
        "seed": n.seed_id,
        "kind": n.kind.as_str(),
    });
    let summary = match n.kind {
        Kind::DeadlineWarning => format!("Import job {}: a deadline is near", n.job_name),
        Kind::Failed => format!("Seed {} failed", n.job_name),
        Kind::WaitingForPerson => format!("Seed {} waits for a person", n.job_name),
        Kind::Seeded => format!("Seed {} is in its vault", n.job_name),
        Kind::RepairBlocked => format!("Seed {} cannot be repaired", n.job_name),
    };
    let annotations = json!({ "summary": summary, "description": n.reason });
    let status = if n.kind == Kind::Seeded { "resolved" } else { "firing" };
    let fingerprint = format!("{:016x}", n.id);
    json!({
        "version": "4",
        "groupKey": format!("seedship:{}", n.id),
        "truncatedAlerts": 0,
        "status": status,
        "receiver": receiver,
        "groupLabels": { "alertname": n.kind.alertname() },
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": external_url,
        "alerts": [{
            "status": status,
            "labels": labels,
            "annotations": annotations,
            "startsAt": rfc3339(n.created_ms),
            "endsAt": if status == "resolved" { rfc3339(n.created_ms) } else { "0001-01-01T00:00:00Z".to_string() },
            "generatorURL": external_url,
            "fingerprint": fingerprint,
        }],
        "seedship": {
            "version": BODY_VERSION,
            "id": n.id,
            "kind": n.kind.as_str(),
            "seed_id": n.seed_id,
            "job": n.job_name,
            "event": n.event,
            "actor": n.actor,
            "state": n.state,
            "reason": n.reason,
            "at": rfc3339(n.created_ms),
        },
    })
}

/// The signature header's value for `body` sent at `timestamp` (unix seconds):
/// `sha256=HEX(HMAC-SHA256(secret, "<timestamp>.<body>"))`.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    format!("sha256={}", hex::encode(ctx.sign().as_ref()))
}

/// How long a failed delivery waits before the next attempt: doubling from 2 s, at most 10 min.
pub fn retry_after_ms(attempts: u32) -> i64 {
    (2_000i64 << attempts.min(10)).min(600_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_become_notifications_once() {
        use SeedState::*;
        assert_eq!(classify("fail", Some(Preparing), Failed), Some(Kind::Failed));
        assert_eq!(classify("vault_seeded", Some(SeedingVault), Seeded), Some(Kind::Seeded));
        assert_eq!(classify("deadline_warning", Some(ImportJobCreated), ImportJobCreated), Some(Kind::DeadlineWarning));
        assert_eq!(classify("station_waiting", Some(Preparing), Preparing), Some(Kind::WaitingForPerson));
        assert_eq!(classify("azure_waits_for_customer", Some(Importing), Importing), Some(Kind::WaitingForPerson));
        assert_eq!(classify("data_lost", Some(NeedsRepair), NeedsRepair), Some(Kind::RepairBlocked));
        assert_eq!(classify("lease_claimed", Some(QueuedForDiskPrep), Preparing), None);
        // A note on an already-failed seed is not a second failure.
        assert_eq!(classify("azure_job_state", Some(Failed), Failed), None);
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_and_body() {
        // RFC 4231 test case 2 shape: key "Jefe", data "what do ya want for nothing?".
        let s = signature(b"Jefe", 0, b"what do ya want for nothing?");
        assert!(s.starts_with("sha256=") && s.len() == 7 + 64);
        let want = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"Jefe"),
            b"0.what do ya want for nothing?",
        );
        assert_eq!(s, format!("sha256={}", hex::encode(want.as_ref())));
        assert_eq!(retry_after_ms(0), 2_000);
        assert_eq!(retry_after_ms(20), 600_000);
    }
}
