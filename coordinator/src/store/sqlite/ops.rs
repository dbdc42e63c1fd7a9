//! Every store operation of `store_operations` under its own name, with its arguments in the
//! order the trait gives them: what `impl_sqlite` calls. Most are the functions of the other
//! modules; the few below are written here.

pub use super::audit::list as audit_list;
pub use super::enroll::create as enroll_create;
pub use super::enroll::list as enroll_list;
pub use super::enroll::redeem as enroll_redeem;
pub use super::jobs::azure_unavailable;
pub use super::jobs::confirm_shipping;
pub use super::jobs::deadline_step;
pub use super::jobs::disks_delivered;
pub use super::jobs::drives_for_job;
pub use super::jobs::drop_shipping;
pub use super::jobs::followed_jobs;
pub use super::jobs::job_created;
pub use super::jobs::job_gone;
pub use super::jobs::job_refused;
pub use super::jobs::mirror_job;
pub use super::jobs::note_job;
pub use super::jobs::passkey;
pub use super::jobs::record_job_intent;
pub use super::jobs::reserve_shipping;
pub use super::jobs::seeds_awaiting_jobs;
pub use super::jobs::stale_reservations;
pub use super::notify::ack as notify_ack;
pub use super::notify::attempted as notify_attempted;
pub use super::notify::due as notify_due;
pub use super::notify::enqueue as notify_enqueue;
pub use super::notify::list as notify_list;
pub use super::reads::drive_key;
pub use super::reads::job;
pub use super::reads::list_agents;
pub use super::reads::list_drives;
pub use super::reads::list_events;
pub use super::reads::list_jobs;
pub use super::reads::list_own_seeds;
pub use super::reads::list_seeds;
pub use super::reads::metrics_facts;
pub use super::reads::seed_detail;
pub use super::reads::shipping_by_job as get_shipping;
pub use super::rekey::reseal as reseal_master;
pub use super::revoke::list as revocations;
pub use super::revoke::resolve as resolve_agent;
pub use super::revoke::revoke;
pub use super::rounds::merge_round;
pub use super::rounds::reship_lost;
pub use super::vaults::add_recovery_point;
pub use super::vaults::fail_seed;
pub use super::vaults::record_cleanup;
pub use super::vaults::recovery_points;
pub use super::vaults::vault_of;
pub use super::vaults::vault_seeded;
pub use super::verify::finish_verification;
pub use super::verify::repair_orders;
pub use super::verify::report_repair;
pub use super::verify::start_verification;
pub use super::verify::verification;
pub use super::web::change_token as web_change_token;
pub use super::web::create_login as web_create_login;
pub use super::web::redeem as web_redeem;
pub use super::web::session as web_session;
pub use super::writes::allow_virtual_station;
pub use super::writes::cancel_seed;
pub use super::writes::claim_work;
pub use super::writes::complete_work;
pub use super::writes::expire_leases;
pub use super::writes::heartbeat;
pub use super::writes::purge_requests;
pub use super::writes::record_disks;
pub use super::writes::register_agent;
pub use super::writes::register_seed;
pub use super::writes::release_work;
pub use super::writes::renew_lease;
pub use super::writes::report_drive;
pub use super::writes::report_progress;
pub use super::writes::requeue_work;
pub use super::writes::retry_work;
pub use super::writes::set_disk_kind;

use rusqlite::Connection;

use super::{db_err, rows};
use crate::clock::UnixMs;
use crate::domain::lease::Fence;
use crate::domain::model::{AuditRecord, PasskeyRecord};
use crate::error::Result;
use seedship_proto::identity::SpiffeId;

/// The sealed passkey of the seed whose work `station` holds with the live lease `fence`.
pub fn lease_passkey(c: &Connection, station: &SpiffeId, fence: &Fence, now: UnixMs) -> Result<PasskeyRecord> {
    let work = rows::load_work(c, &fence.work_id)?;
    work.check(&station.name, fence.generation, now)?;
    super::jobs::passkey(c, &work.seed_id)
}

pub fn audit(c: &dyn crate::store::sql::Db, r: &AuditRecord, now: UnixMs) -> Result<()> {
    super::audit::append(c, now, r)
}

pub fn audit_head(c: &Connection) -> Result<i64> {
    c.query_row("SELECT COALESCE(MAX(seq), 0) FROM audit_log", [], |r| r.get(0)).map_err(db_err)
}
