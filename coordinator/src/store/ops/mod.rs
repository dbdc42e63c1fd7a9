//! The store's operations, written once against [`Db`](super::sql::Db) and run by both
//! backends: every operation of `store_operations` under its own name, with its arguments in
//! the order the trait gives them (what `impl_sqlite` and `impl_pg` call). Most are the
//! functions of the modules below; the few at the end are written here.

mod audit;
pub(crate) mod carry;
mod enroll;
mod jobs;
mod leader;
mod notify;
mod reads;
mod rekey;
mod revoke;
mod rounds;
mod rows;
mod vaults;
mod verify;
mod web;
mod writes;

pub use notify::Listed as NotificationListed;
pub use rekey::Resealed;
pub use writes::Retarget;
pub use writes::{CANDIDATES_TAKEN, HEAD_PASSED};

pub use self::enroll::create as enroll_create;
pub use self::enroll::list as enroll_list;
pub use self::enroll::redeem as enroll_redeem;
pub use self::jobs::azure_unavailable;
pub use self::jobs::confirm_shipping;
pub use self::jobs::deadline_step;
pub use self::jobs::disks_delivered;
pub use self::jobs::drives_for_job;
pub use self::jobs::drop_shipping;
pub use self::jobs::followed_jobs;
pub use self::jobs::job_created;
pub use self::jobs::job_gone;
pub use self::jobs::job_refused;
pub use self::jobs::mirror_job;
pub use self::jobs::note_job;
pub use self::jobs::passkey;
pub use self::jobs::record_job_intent;
pub use self::jobs::reserve_shipping;
pub use self::jobs::seeds_awaiting_jobs;
pub use self::jobs::stale_reservations;
pub use self::leader::check as check_worker_fence;
pub use self::leader::take as take_worker_lease;
pub use self::notify::ack as notify_ack;
pub use self::notify::attempted as notify_attempted;
pub use self::notify::due as notify_due;
pub use self::notify::enqueue as notify_enqueue;
pub use self::notify::list as notify_list;
pub use self::reads::drive_key;
pub use self::reads::job;
pub use self::reads::list_agents;
pub use self::reads::list_drives;
pub use self::reads::list_events;
pub use self::reads::list_jobs;
pub use self::reads::list_own_seeds;
pub use self::reads::list_seeds;
pub use self::reads::seed_detail;
pub use self::reads::shipping_by_job as get_shipping;
pub use self::reads::{metrics_facts, station_rates};
pub use self::rekey::reseal as reseal_master;
pub use self::revoke::list as revocations;
pub use self::revoke::resolve as resolve_agent;
pub use self::revoke::revoke;
pub use self::rounds::merge_round;
pub use self::rounds::reship_lost;
pub use self::vaults::add_recovery_point;
pub use self::vaults::fail_seed;
pub use self::vaults::record_cleanup;
pub use self::vaults::recovery_points;
pub use self::vaults::vault_of;
pub use self::vaults::vault_seeded;
pub use self::verify::finish_verification;
pub use self::verify::repair_orders;
pub use self::verify::report_repair;
pub use self::verify::start_verification;
pub use self::verify::verification;
pub use self::web::change_token as web_change_token;
pub use self::web::create_login as web_create_login;
pub use self::web::redeem as web_redeem;
pub use self::web::session as web_session;
pub use self::writes::allow_virtual_station;
pub use self::writes::cancel_seed;
pub use self::writes::claim_candidates;
pub use self::writes::claim_chosen;
pub use self::writes::claim_head;
pub use self::writes::complete_work;
pub use self::writes::expire_leases;
pub use self::writes::heartbeat;
pub use self::writes::purge_requests;
pub use self::writes::record_disks;
pub use self::writes::register_agent;
pub use self::writes::register_seed;
pub use self::writes::release_work;
pub use self::writes::renew_lease;
pub use self::writes::report_drive;
pub use self::writes::report_progress;
pub use self::writes::requeue_work;
pub use self::writes::retry_work;
pub use self::writes::set_disk_kind;

use crate::clock::UnixMs;
use crate::domain::lease::Fence;
use crate::domain::model::{AuditRecord, PasskeyRecord};
use crate::error::Result;
use crate::store::sql::Db;
use seedship_proto::identity::SpiffeId;

/// The sealed passkey of the seed whose work `station` holds with the live lease `fence`.
pub fn lease_passkey(c: &dyn Db, station: &SpiffeId, fence: &Fence, now: UnixMs) -> Result<PasskeyRecord> {
    let work = rows::load_work(c, &fence.work_id)?;
    work.check(&station.name, fence.generation, now)?;
    jobs::passkey(c, &work.seed_id)
}

pub fn audit(c: &dyn Db, r: &AuditRecord, now: UnixMs) -> Result<()> {
    audit::append(c, now, r)
}

/// The newest entry's sequence number, once every recorded entry joined the chain.
pub fn audit_head(c: &dyn Db) -> Result<i64> {
    audit::chain_all(c)?;
    c.value("SELECT COALESCE(MAX(seq), 0) FROM audit_log", &[])
}

/// Entries after `after`, once every recorded entry joined the chain ([`audit::list`]).
pub fn audit_list(
    c: &dyn Db,
    after: i64,
    limit: u32,
    target: Option<&str>,
) -> Result<Vec<seedship_proto::audit::Entry>> {
    audit::chain_all(c)?;
    audit::list(c, after, limit, target)
}

/// Links up to [`audit::CHAIN_BATCH`] recorded audit entries into the chain: how many joined.
pub fn chain_audit(c: &dyn Db) -> Result<u64> {
    audit::chain(c).map(|n| n as u64)
}

pub use audit::CHAIN_BATCH as AUDIT_CHAIN_BATCH;
