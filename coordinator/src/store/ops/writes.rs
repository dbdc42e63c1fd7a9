//! The write operations, each run by the writer inside its own savepoint.

use crate::store::sql::Row;
use seedship_proto::identity::SpiffeId;

use super::rows::*;
use crate::args;
use crate::clock::UnixMs;
use crate::domain::lease::{Fence, Release, SourceHost, StationHost, WorkItem, WorkState, vm_rule_allows};
use crate::domain::model::*;
use crate::domain::placement::Placement;
use crate::domain::seed::{SeedEvent, SeedState};
use crate::error::{Error, Result};
use crate::store::LeaseTiming;
use crate::store::sql::Db;

/// Actor name the coordinator uses for its own transitions.
pub const SWEEPER: &str = "coordinator/sweeper";
pub const COORDINATOR: &str = "coordinator";

fn random_suffix() -> Result<String> {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 6];
    ring::rand::SystemRandom::new().fill(&mut b).map_err(|_| Error::Internal("no system randomness".into()))?;
    Ok(hex::encode(b))
}

fn load_agent(c: &dyn Db, identity: &str) -> Result<Option<Agent>> {
    c.row(&format!("SELECT {AGENT_COLS} FROM agents WHERE identity = ?1"), args![identity], agent_row)
}

pub fn register_agent(c: &dyn Db, idem: &Idem, who: &SpiffeId, info: &AgentInfo, now: UnixMs) -> Result<Agent> {
    idempotent(c, idem, now, || {
        // An agent enrolled with a token for a site registers at that site only: a station's
        // site decides which seeds it may claim.
        if let Some(site) = super::enroll::enrolled_site(c, &who.uri())?
            && info.site.as_deref() != Some(site.as_str())
        {
            return Err(Error::PermissionDenied(format!(
                "{who} enrolled for site {site}, but says it is at site {}; set site = \"{site}\" in its configuration, or enroll it again with a token for its new site",
                info.site.as_deref().unwrap_or("(none)")
            )));
        }
        c.exec("INSERT INTO agents (identity, role, name, site, hostname, version, registered_ms, last_heartbeat_ms, status, virtualization) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, 'registered', ?8) \
             ON CONFLICT (identity) DO UPDATE SET site = excluded.site, hostname = excluded.hostname, \
             version = excluded.version, last_heartbeat_ms = excluded.last_heartbeat_ms, \
             virtualization = excluded.virtualization", args![who.uri(), who.role.as_str(), who.name, info.site, info.hostname, info.version, now, info.virtualization])?;
        load_agent(c, &who.uri())?.ok_or_else(|| Error::Internal("agent vanished after insert".into()))
    })
}

pub fn heartbeat(c: &dyn Db, idem: &Idem, who: &SpiffeId, status: &str, now: UnixMs) -> Result<UnixMs> {
    let beat = "UPDATE agents SET last_heartbeat_ms = ?9, status = ?8, reported_ms = COALESCE(reported_ms, ?9) \
                WHERE identity = ?7 RETURNING 1";
    if alone_recorded(c, idem, now, beat, args![who.uri(), status, now], &now)? {
        return Ok(now);
    }
    idempotent(c, idem, now, || {
        let n = c.exec(
            "UPDATE agents SET last_heartbeat_ms = ?2, status = ?3, reported_ms = COALESCE(reported_ms, ?2) \
                 WHERE identity = ?1",
            args![who.uri(), now, status],
        )?;
        if n == 0 {
            return Err(Error::FailedPrecondition(format!("agent {who} has not registered; call RegisterAgent first")));
        }
        Ok(now)
    })
}

/// Seeds still under way (neither ended nor in the vault): what a new one must agree with.
const UNDER_WAY: &str = "s.state NOT IN ('failed', 'cancelled', 'seeded', 'merged')";

/// A server's seeds and its vault hold one repository: another one's keys would replace the
/// vault's (and every restore, old and new, would fail). Refused before any disk is written.
fn check_one_repository(c: &dyn Db, owner: &str, spec: &NewSeed) -> Result<()> {
    let vault: Option<(String, String)> =
        c.row("SELECT container, repository_id FROM vaults WHERE server = ?1", args![owner], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    if let Some((container, repo)) = vault
        && repo != spec.repository_id
    {
        let held =
            if repo.is_empty() { "its first seed's repository".to_string() } else { format!("repository {repo}") };
        return Err(Error::FailedPrecondition(format!(
            "server {owner} already has a vault ({container}) holding {held}; this seed is repository {}, whose keys would replace the vault's. \
             Back up online into the vault instead (source-agent backup without --offline), or have an operator retire the vault first",
            spec.repository_id
        )));
    }
    let other: Option<(String, String)> = c.row(
        &format!(
            "SELECT s.job_name, s.state FROM seeds s WHERE s.owner = ?1 AND {UNDER_WAY} \
                 AND s.repository_id <> ?2 AND s.job_name <> ?3 LIMIT 1"
        ),
        args![owner, spec.repository_id, spec.job_name],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    if let Some((job, state)) = other {
        return Err(Error::FailedPrecondition(format!(
            "server {owner} has seed {job} ({state}) of another repository under way; both would seed one vault with different keys. \
             Wait until it is seeded and back up online, or cancel it first"
        )));
    }
    Ok(())
}

/// The seed's import container: the source's suggestion if the rules allow it, else the
/// coordinator's choice; never another seed's, never a vault's.
fn place_seed(c: &dyn Db, spec: &NewSeed, seed_id: &str, placement: &Placement) -> Result<String> {
    let container = if spec.container.is_empty() {
        placement.chosen(seed_id)
    } else {
        placement.allows(&spec.container).map_err(|why| Error::invalid("container", why))?;
        spec.container.clone()
    };
    let taken: bool = c.one(
        "SELECT EXISTS (SELECT 1 FROM seeds WHERE storage_account = ?1 AND container = ?2) \
             OR EXISTS (SELECT 1 FROM vaults WHERE account = ?1 AND (container = ?2 OR container LIKE ?2 || '/%'))",
        args![spec.storage_account, container],
        |r| r.get(0),
    )?;
    if taken {
        return Err(Error::invalid(
            "container",
            format!(
                "{container:?} is already in use in storage account {}; leave it empty and the coordinator chooses one",
                spec.storage_account
            ),
        ));
    }
    Ok(container)
}

pub fn register_seed(
    c: &dyn Db,
    idem: &Idem,
    owner: &SpiffeId,
    spec: &NewSeed,
    placement: &Placement,
    policy: DiskKind,
    now: UnixMs,
) -> Result<SeedRegistration> {
    idempotent(c, idem, now, || {
        let existing: Option<Seed> =
            c.row(&format!("SELECT {SEED_COLS} FROM seeds s WHERE s.job_name = ?1"), args![spec.job_name], seed_row)?;
        if let Some(seed) = existing {
            // The same seed again: the same details, and the container as chosen (or the same
            // suggestion).
            let same_place = spec.container.is_empty() || spec.container == seed.spec.container;
            let again = NewSeed { container: seed.spec.container.clone(), ..spec.clone() };
            if seed.owner == owner.name && same_place && seed.spec == again {
                return Ok(SeedRegistration { seed, created: false });
            }
            // Another tenant's seed is not named, nor its owner.
            return Err(Error::AlreadyExists(format!(
                "job name {:?} is already in use; choose a new job name",
                spec.job_name
            )));
        }
        let is_seed_id: bool =
            c.one("SELECT EXISTS (SELECT 1 FROM seeds WHERE seed_id = ?1)", args![spec.job_name], |r| r.get(0))?;
        if is_seed_id || spec.job_name.starts_with("sd-") {
            return Err(Error::invalid(
                "job_name",
                "names starting with \"sd-\" are seed ids, not job names; choose another job name",
            ));
        }
        check_one_repository(c, &owner.name, spec)?;
        let (seed_id, work_id) = new_ids()?;
        let container = place_seed(c, spec, &seed_id, placement)?;
        let (kind, why_kind) = crate::domain::import::kind_for(policy, spec.total_bytes);
        let reason = match &why_kind {
            None => format!("registered by {owner}, to be shipped on {}", kind.describe()),
            Some(why) => format!("registered by {owner}: {why}"),
        };
        let spec = NewSeed { container, ..spec.clone() };
        let seed = insert_seed(
            c,
            &SeedInsert {
                seed_id: &seed_id,
                work_id: &work_id,
                owner: &owner.name,
                actor: &owner.uri(),
                spec: &spec,
                kind,
                reason: &reason,
                round_of: None,
            },
            now,
        )?;
        Ok(SeedRegistration { seed, created: true })
    })
}

/// A seed to insert: registered by a source agent, or a round an operator started.
pub(super) struct SeedInsert<'a> {
    pub seed_id: &'a str,
    pub work_id: &'a str,
    pub owner: &'a str,
    pub actor: &'a str,
    /// With the import container chosen.
    pub spec: &'a NewSeed,
    pub kind: DiskKind,
    pub reason: &'a str,
    /// A round: the seed id of the seed it repairs.
    pub round_of: Option<&'a str>,
}

/// Inserts a seed with its disk-prep work: queued for customer disks; waiting for Microsoft's
/// disks (the Azure worker orders them) for Data Box Disk.
pub(super) fn insert_seed(c: &dyn Db, n: &SeedInsert<'_>, now: UnixMs) -> Result<Seed> {
    let spec = n.spec;
    c.exec(
        "INSERT INTO seeds (seed_id, job_name, owner, storage_account, container, subscription_id, location, \
         staging_location, manifest_root, total_bytes, file_count, target_site, target_station, state, \
         state_reason, created_ms, updated_ms, repository_id, kind, parent_seed) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?16, ?17, ?18, ?19)",
        args![
            n.seed_id,
            spec.job_name,
            n.owner,
            spec.storage_account,
            spec.container,
            spec.subscription_id,
            spec.location,
            spec.staging_location,
            spec.manifest_root,
            spec.total_bytes as i64,
            spec.file_count as i64,
            spec.target_site,
            spec.target_station,
            SeedState::Registered.as_str(),
            n.reason,
            now,
            spec.repository_id,
            n.kind.as_str(),
            n.round_of
        ],
    )?;
    insert_event(c, n.seed_id, now, n.actor, None, SeedState::Registered, "register", n.reason)?;
    c.exec(
        "INSERT INTO work_items (work_id, seed_id, state, generation, holder, lease_expires_ms, progress_bytes, \
         total_bytes, phase, target_site, target_station, queued_ms) \
         VALUES (?1, ?2, ?3, 0, NULL, 0, 0, ?4, '', ?5, ?6, ?7)",
        args![
            n.work_id,
            n.seed_id,
            match n.kind {
                DiskKind::CustomerDisk => WorkState::Queued.as_str(),
                DiskKind::DataboxDisk => WorkState::Waiting.as_str(),
            },
            spec.total_bytes as i64,
            spec.target_site,
            spec.target_station,
            now
        ],
    )?;
    let mut seed = require_seed(c, n.seed_id)?;
    if n.kind == DiskKind::DataboxDisk {
        // The Azure worker orders the disks; the work is queued once they are delivered.
        return Ok(seed);
    }
    let target = match (&spec.target_site, &spec.target_station) {
        (None, None) => "any copy station".to_string(),
        (site, station) => {
            format!("site {} / station {}", site.as_deref().unwrap_or("any"), station.as_deref().unwrap_or("any"))
        }
    };
    transition(
        c,
        &mut seed,
        Transition {
            event: SeedEvent::Queue,
            actor: COORDINATOR,
            reason: format!("waiting for a copy station to prepare the disks ({target})"),
        },
        now,
    )?;
    Ok(seed)
}

/// A fresh random suffix for a seed id (`sd-…`) and its work id (`wk-…`).
pub(super) fn new_ids() -> Result<(String, String)> {
    let suffix = random_suffix()?;
    Ok((format!("sd-{suffix}"), format!("wk-{suffix}")))
}

/// How many queued items the queue scan looks at at most, oldest first, how many it reads at
/// a time, and how many of those a station may take it gives to the claim (enough for many
/// stations claiming at the same moment).
const CLAIM_SCAN: usize = 1000;
const CLAIM_PAGE: usize = 96;
const CLAIM_CANDIDATES: usize = 64;

/// What [`claim_chosen`] answers when every candidate it was given was taken by other claims
/// in between: `Store::claim_work` reads the queue again.
pub const CANDIDATES_TAKEN: &str = "the queued work this claim chose was taken by other claims; retry";

/// A queued item with what the station rules need: its seed's consent to a virtual station
/// and its source's host; and its place in the queue.
struct Queued {
    work: WorkItem,
    allowed: bool,
    source: Option<SourceHost>,
    queued_ms: i64,
}

impl Queued {
    fn allows(&self, station: &SpiffeId, site: Option<&str>, host: &StationHost) -> bool {
        self.work.eligible_for(&station.name, site) && vm_rule_allows(self.source.as_ref(), host, self.allowed)
    }
}

/// The queued items `work` names (a table or a subquery, read as `w`), each with what the
/// rules need, then `tail` (conditions, order, lock). A scan of the queue pages inside the
/// subquery ([`claim_candidates`]), so seeds and sources are joined for that page only,
/// whatever the planner believes the queue's length to be.
fn queued_with_rules(
    c: &dyn Db,
    work: &str,
    args: &[&dyn crate::store::sql::ToValue],
    tail: &str,
) -> Result<Vec<Queued>> {
    Ok(queued_with(c, work, "", "", args, tail, |_| Ok(()))?.into_iter().map(|(q, ())| q).collect())
}

/// [`queued_with_rules`] with more columns (`cols`, after the queued item's) and `joins`
/// (before `tail`), read from each row by `rest` (the row and where `cols` start).
fn queued_with<T>(
    c: &dyn Db,
    work: &str,
    cols: &str,
    joins: &str,
    args: &[&dyn crate::store::sql::ToValue],
    tail: &str,
    mut rest: impl FnMut((&Row, usize)) -> Result<T>,
) -> Result<Vec<(Queued, T)>> {
    let n = WORK_COLS.split(',').count();
    c.rows(
        &format!(
            "SELECT {WORK_COLS}, s.allow_virtual_station, src.identity, src.virtualization, src.hostname, \
             w.queued_ms{cols} FROM {work} w JOIN seeds s ON s.seed_id = w.seed_id \
             LEFT JOIN agents src ON src.role = 'source' AND src.name = s.owner{joins} {tail}"
        ),
        args,
        |r| {
            let work = work_row(r)?;
            let allowed: bool = r.get(n)?;
            let source = match r.get::<Option<String>>(n + 1)? {
                None => None,
                Some(_) => Some(SourceHost {
                    virtualization: r.get::<Option<String>>(n + 2)?.unwrap_or_default(),
                    hostname: r.get::<Option<String>>(n + 3)?.unwrap_or_default(),
                }),
            };
            let queued = Queued { work, allowed, source, queued_ms: r.get(n + 4)? };
            Ok((queued, rest((r, n + 5))?))
        },
    )
}

/// The registered station's site and host, or FAILED_PRECONDITION.
fn station_host(c: &dyn Db, station: &SpiffeId) -> Result<(Option<String>, StationHost)> {
    let agent = load_agent(c, &station.uri())?.ok_or_else(|| {
        Error::FailedPrecondition(format!("copy station {station} has not registered; call RegisterAgent first"))
    })?;
    let host = StationHost { virtualization: agent.info.virtualization.clone(), hostname: agent.info.hostname.clone() };
    Ok((agent.info.site, host))
}

/// The queued work due at `now` that `station` may take, oldest first (at most
/// [`CLAIM_CANDIDATES`]), by the rules (`WorkItem::eligible_for`, `vm_rule_allows`). A read
/// of its own: the claim's write then reads only the rows it takes, so claims running at once
/// do not conflict over the scan of the queue.
pub fn claim_candidates(c: &dyn Db, station: &SpiffeId, now: UnixMs) -> Result<Vec<String>> {
    let Ok((site, host)) = station_host(c, station) else { return Ok(Vec::new()) };
    // Page by page (the queue's order, from where the last page ended), until enough are found
    // or the scan's bound is reached: most claims read one page.
    let (mut out, mut scanned, mut after) = (Vec::new(), 0, None::<(i64, String)>);
    while out.len() < CLAIM_CANDIDATES && scanned < CLAIM_SCAN {
        let after_last = if after.is_some() { "AND (queued_ms > ?2 OR (queued_ms = ?2 AND work_id > ?3))" } else { "" };
        let work = format!(
            "(SELECT * FROM work_items WHERE state = 'queued' AND not_before_ms <= ?1 {after_last} \
             ORDER BY queued_ms, work_id LIMIT {CLAIM_PAGE})"
        );
        let order = "ORDER BY w.queued_ms, w.work_id";
        let page = match &after {
            None => queued_with_rules(c, &work, args![now], order)?,
            Some((ms, id)) => queued_with_rules(c, &work, args![now, ms, id], order)?,
        };
        scanned += page.len();
        let last_page = page.len() < CLAIM_PAGE;
        after = page.last().map(|q| (q.queued_ms, q.work.work_id.clone()));
        out.extend(page.into_iter().filter(|q| q.allows(station, site.as_deref(), &host)).map(|q| q.work.work_id));
        if last_page {
            break;
        }
    }
    out.truncate(CLAIM_CANDIDATES);
    Ok(out)
}

/// How many items at the head of the queue [`claim_head`] looks at before it leaves the claim
/// to the scan ([`claim_candidates`]).
const HEAD_TRIES: usize = 4;

/// What [`claim_head`] answers when the head of the queue had nothing for the station (the
/// queue is empty, held by other claims, or its first items are not for this station):
/// `Store::claim_work` scans the queue instead. Nothing written, not remembered as the answer.
pub const HEAD_PASSED: &str = "no item at the head of the queue for this station; scan the queue";

/// Leases the oldest queued item, not being claimed by another at this moment (`SKIP LOCKED`
/// on PostgreSQL), when the station may take it; the next ones when it may not, up to
/// [`HEAD_TRIES`]. The common claim in one transaction that reads only the rows it looks at;
/// [`HEAD_PASSED`] when there was none (then the claim scans the queue).
pub fn claim_head(c: &dyn Db, idem: &Idem, station: &SpiffeId, t: LeaseTiming) -> Result<Option<Lease>> {
    idempotent(c, idem, t.now, || {
        // The station's site and host are read with the item (an unregistered station finds
        // none here, and is told so by the scan).
        let uri = station.uri();
        let mut passed: Vec<String> = Vec::new();
        while passed.len() < HEAD_TRIES {
            let not_in = if passed.is_empty() {
                String::new()
            } else {
                let list = (0..passed.len()).map(|i| format!("?{}", i + 3)).collect::<Vec<_>>().join(", ");
                format!("AND w.work_id NOT IN ({list})")
            };
            let mut params: Vec<&dyn crate::store::sql::ToValue> = vec![&t.now, &uri];
            params.extend(passed.iter().map(|id| id as &dyn crate::store::sql::ToValue));
            // The item's seed is read and locked with it (the claim changes its state).
            let found = queued_with(
                c,
                "work_items",
                &format!(", me.site, me.virtualization, me.hostname, {SEED_COLS}"),
                " CROSS JOIN agents me",
                &params,
                &format!(
                    "WHERE me.identity = ?2 AND w.state = 'queued' AND w.not_before_ms <= ?1 {not_in} \
                     ORDER BY w.queued_ms, w.work_id LIMIT 1{}",
                    c.dialect().skip_locked("w, s")
                ),
                |(r, i)| {
                    let host = StationHost { virtualization: r.get(i + 1)?, hostname: r.get(i + 2)? };
                    Ok((r.get::<Option<String>>(i)?, host, seed_row(&Row(r.0[i + 3..].to_vec()))?))
                },
            )?;
            let Some((q, (site, host, seed))) = found.into_iter().next() else { break };
            if q.allows(station, site.as_deref(), &host) {
                return take(c, station, t, q.work, Some(seed));
            }
            passed.push(q.work.work_id);
        }
        Err(Error::Unavailable(HEAD_PASSED.into()))
    })
}

/// Leases the first of `candidates` (from [`claim_candidates`]) that is still queued, still
/// allowed to `station` and not being claimed by another at this moment (its row locked, `FOR
/// UPDATE SKIP LOCKED` on PostgreSQL), or `None` when there were none. [`CANDIDATES_TAKEN`]
/// when others took every one in between (nothing written, not remembered as the answer).
pub fn claim_chosen(
    c: &dyn Db,
    idem: &Idem,
    station: &SpiffeId,
    t: LeaseTiming,
    candidates: &[String],
) -> Result<Option<Lease>> {
    idempotent(c, idem, t.now, || {
        let (site, host) = station_host(c, station)?;
        // The first candidate still queued and not being claimed by another at this moment, in
        // one statement (locked ones skipped inside the database, not one round trip each).
        let mut left: Vec<&String> = candidates.iter().collect();
        let mut item = None;
        while !left.is_empty() {
            let list = (0..left.len()).map(|i| format!("?{}", i + 2)).collect::<Vec<_>>().join(", ");
            let mut params: Vec<&dyn crate::store::sql::ToValue> = vec![&t.now];
            params.extend(left.iter().map(|id| *id as &dyn crate::store::sql::ToValue));
            let found = queued_with_rules(
                c,
                "work_items",
                &params,
                &format!(
                    "WHERE w.state = 'queued' AND w.not_before_ms <= ?1 AND w.work_id IN ({list}) \
                     ORDER BY w.queued_ms, w.work_id LIMIT 1{}",
                    c.dialect().skip_locked("w")
                ),
            )?;
            let Some(q) = found.into_iter().next() else { break };
            if q.allows(station, site.as_deref(), &host) {
                item = Some(q.work);
                break;
            }
            // The rules changed since the candidates were read: the next one.
            left.retain(|id| **id != q.work.work_id);
        }
        let Some(work) = item else {
            if candidates.is_empty() {
                return Ok(None);
            }
            return Err(Error::Unavailable(CANDIDATES_TAKEN.into()));
        };
        take(c, station, t, work, None)
    })
}

/// Leases `work` (queued, locked by this transaction, allowed to `station`) to `station`;
/// `seed` is its seed when the transaction read and locked it already.
fn take(
    c: &dyn Db,
    station: &SpiffeId,
    t: LeaseTiming,
    mut work: WorkItem,
    seed: Option<Seed>,
) -> Result<Option<Lease>> {
    work.claim(&station.name, t.now, t.ttl_ms)?;
    let mut seed = match seed {
        Some(s) => s,
        None => lock_seed(c, &work.seed_id)?,
    };
    transition(
        c,
        &mut seed,
        Transition {
            event: SeedEvent::LeaseClaimed,
            actor: &station.uri(),
            reason: format!(
                "copy station {} is preparing the disks (lease generation {})",
                station.name, work.generation
            ),
        },
        t.now,
    )?;
    save_work_after_transition(c, &work, seed.state)?;
    // Drives are reported only by a lease's holder: at the first lease there are none.
    if work.generation > 1 {
        // Microsoft's disks another station started are written again from the start (the
        // station must have them): back to delivered.
        c.put(
            "UPDATE drives SET status = 'delivered', status_reason = '' WHERE seed_id = ?1 AND delivered = 1 \
             AND reported_by <> ?2 AND status IN ('preparing', 'prepared')",
            args![work.seed_id, station.uri()],
        )?;
        // Drives another station reported are on disks this station does not have: they are
        // left behind (never shipped), and the history says so.
        let left = c.exec(
            "UPDATE drives SET status = 'bad', status_reason = ?3 WHERE seed_id = ?1 AND reported_by <> ?2 \
             AND status <> 'bad' AND delivered = 0",
            args![
                work.seed_id,
                station.uri(),
                format!("left behind: another copy station lost the lease; {} prepares the seed again", station.name)
            ],
        )?;
        if left > 0 {
            insert_event(
                c,
                &seed.seed_id,
                t.now,
                &station.uri(),
                Some(seed.state),
                seed.state,
                "drives_left_behind",
                &format!(
                    "{left} drive(s) reported by another copy station will not be shipped; {} starts over",
                    station.name
                ),
            )?;
        }
    }
    // Only Microsoft's disks are delivered, and only a round names its files.
    let delivered = if seed.kind == DiskKind::DataboxDisk { delivered_serials(c, &work.seed_id)? } else { Vec::new() };
    let files = if seed.round_of.is_some() { super::rounds::round_paths(c, &work.seed_id)? } else { Vec::new() };
    Ok(Some(Lease { work, seed, ttl_ms: t.ttl_ms, delivered, files, container_sas: None }))
}

/// The disks Microsoft delivered for a seed that are not bad, in order.
fn delivered_serials(c: &dyn Db, seed_id: &str) -> Result<Vec<String>> {
    c.rows("SELECT drive_id FROM drives WHERE seed_id = ?1 AND delivered = 1 AND status <> 'bad' ORDER BY position, drive_id", args![seed_id], |r| r.get(0))
}

pub fn renew_lease(
    c: &dyn Db,
    idem: &Idem,
    station: &SpiffeId,
    fence: &Fence,
    waiting: &str,
    t: LeaseTiming,
) -> Result<UnixMs> {
    let expires = t.now + t.ttl_ms;
    let renew = format!("UPDATE work_items SET lease_expires_ms = ?11 WHERE {} RETURNING 1", live_lease_sql());
    let live = args![fence.work_id, fence.generation as i64, station.name, t.now, expires];
    if waiting.is_empty() && alone_recorded(c, idem, t.now, &renew, live, &expires)? {
        return Ok(expires);
    }
    idempotent(c, idem, t.now, || {
        let mut work = lock_work(c, &fence.work_id)?;
        work.renew(&station.name, fence.generation, t.now, t.ttl_ms)?;
        // A wait is not a state change: the work's phase says it, and the history says why.
        let event = match (waiting.is_empty(), work.phase == WAITING) {
            (false, false) => {
                work.phase = WAITING.into();
                Some(("station_waiting", format!("copy station {} is waiting: {waiting}", station.name)))
            }
            (true, true) => {
                work.phase = "copy".into();
                Some(("station_resumed", format!("copy station {} is working again", station.name)))
            }
            _ => None,
        };
        save_work(c, &work)?;
        if let Some((name, reason)) = event {
            note_station(c, &work.seed_id, station, name, &reason, t.now)?;
        }
        Ok(work.lease_expires_ms)
    })
}

pub use crate::domain::lease::WAITING;

/// Records a station's wait (or its end) in the seed's history, and as the seed's reason, so
/// the seed list says what the operator needs to do. The state does not change.
fn note_station(c: &dyn Db, seed_id: &str, station: &SpiffeId, event: &str, reason: &str, now: UnixMs) -> Result<()> {
    let seed = lock_seed(c, seed_id)?;
    c.put("UPDATE seeds SET state_reason = ?2, updated_ms = ?3 WHERE seed_id = ?1", args![seed_id, reason, now])?;
    insert_event(c, seed_id, now, &station.uri(), Some(seed.state), seed.state, event, reason)
}

pub fn report_progress(
    c: &dyn Db,
    idem: &Idem,
    station: &SpiffeId,
    fence: &Fence,
    delta: &ProgressDelta,
    t: LeaseTiming,
) -> Result<(u64, UnixMs)> {
    // `WorkItem::progress`'s rules, and the releases before it were not this work's fault.
    let expires = t.now + t.ttl_ms;
    let apply = format!(
        "UPDATE work_items SET lease_expires_ms = ?11, progress_bytes = ?13, phase = ?14, releases = 0 \
         WHERE {} AND progress_bytes = ?12 AND ?13 > ?12 AND ?13 <= total_bytes RETURNING 1",
        live_lease_sql()
    );
    let (from, to) = (delta.from as i64, delta.to as i64);
    let live = args![fence.work_id, fence.generation as i64, station.name, t.now, expires, from, to, delta.phase];
    if alone_recorded(c, idem, t.now, &apply, live, &(delta.to, expires))? {
        return Ok((delta.to, expires));
    }
    idempotent(c, idem, t.now, || {
        let mut work = lock_work(c, &fence.work_id)?;
        let was_waiting = work.phase == WAITING;
        work.progress(&station.name, fence.generation, delta, t.now, t.ttl_ms)?;
        // Progress: the releases before it were not this work's fault.
        save_work_with(c, &work, ", releases = 0")?;
        if was_waiting {
            let reason = format!("copy station {} is working again", station.name);
            note_station(c, &work.seed_id, station, "station_resumed", &reason, t.now)?;
        }
        Ok((work.progress_bytes, work.lease_expires_ms))
    })
}

/// Replaces the disks' progress of the work `fence` names, from its live lease holder.
pub fn record_disks(c: &dyn Db, station: &SpiffeId, fence: &Fence, disks: &[DiskProgress], now: UnixMs) -> Result<()> {
    let work = load_work(c, &fence.work_id)?;
    work.check(&station.name, fence.generation, now)?;
    c.put("DELETE FROM disk_progress WHERE work_id = ?1", args![work.work_id])?;
    for d in disks {
        c.put(
            "INSERT INTO disk_progress (work_id, position, set_size, drive_id, station, phase, done_bytes, \
             total_bytes, rate_bytes_per_sec, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
             ON CONFLICT (work_id, position) DO NOTHING",
            args![
                work.work_id,
                d.position,
                d.set_size,
                d.drive_id,
                station.name,
                d.phase,
                d.done_bytes as i64,
                d.total_bytes as i64,
                d.rate_bytes_per_sec as i64,
                now
            ],
        )?;
    }
    Ok(())
}

pub fn report_drive(
    c: &dyn Db,
    idem: &Idem,
    station: &SpiffeId,
    fence: &Fence,
    d: &DriveSpec,
    key: Option<SealedKey>,
    now: UnixMs,
) -> Result<Drive> {
    idempotent(c, idem, now, || {
        // The work (locked), its seed, and the drive as it was reported before (delivered by
        // Microsoft, its key escrowed), in one statement.
        let (work, (seed, held)) = lock_work_with(
            c,
            &fence.work_id,
            &format!(", d.delivered, d.sealed_key IS NOT NULL, {SEED_COLS}"),
            "JOIN seeds s ON s.seed_id = w.seed_id LEFT JOIN drives d ON d.seed_id = w.seed_id AND d.drive_id = ?2",
            args![fence.work_id, d.drive_id],
            "w",
            |r, i| {
                let held = r.get::<Option<bool>>(i)?.map(|delivered| Ok((delivered, r.get(i + 1)?))).transpose()?;
                Ok((seed_row(&Row(r.0[i + 2..].to_vec()))?, held))
            },
        )?;
        work.check(&station.name, fence.generation, now)?;
        let delivered = held.is_some_and(|(d, _)| d);
        if seed.kind == DiskKind::DataboxDisk && !delivered {
            return Err(Error::FailedPrecondition(format!(
                "drive {} is not one of the Data Box Disks Microsoft delivered for job {}; write only those",
                d.drive_id, seed.spec.job_name
            )));
        }
        if d.status == DriveStatus::Prepared {
            match (seed.kind, d.manifest_file.is_empty()) {
                (DiskKind::CustomerDisk, true) => {
                    return Err(Error::invalid(
                        "drive.manifest_file",
                        "is required for a customer disk: the import job carries its drive manifest's path and MD5",
                    ));
                }
                (DiskKind::DataboxDisk, false) => {
                    return Err(Error::invalid(
                        "drive.manifest_file",
                        "must be empty for a Data Box Disk: Azure reads its BlockBlob folders, not a drive manifest",
                    ));
                }
                _ => {}
            }
        }
        if d.status == DriveStatus::Preparing && key.is_none() && !held.is_some_and(|(_, k)| k) {
            return Err(Error::invalid(
                "drive.recovery_password",
                "is required when a drive is reported preparing: the key is escrowed before data is written",
            ));
        }
        // Microsoft's disk keeps Azure's key, whatever a station sends.
        let key = if delivered { None } else { key };
        let key_sent = key.is_some();
        c.put(
            "INSERT INTO drives (seed_id, drive_id, position, capacity_bytes, bytes_written, manifest_file, \
             manifest_hash, drive_header_hash, sealed_key, reported_by, reported_ms, status, status_reason) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) \
             ON CONFLICT (seed_id, drive_id) DO UPDATE SET position = excluded.position, \
             capacity_bytes = excluded.capacity_bytes, bytes_written = excluded.bytes_written, \
             manifest_file = excluded.manifest_file, manifest_hash = excluded.manifest_hash, \
             drive_header_hash = excluded.drive_header_hash, \
             sealed_key = COALESCE(excluded.sealed_key, drives.sealed_key), \
             reported_by = excluded.reported_by, reported_ms = excluded.reported_ms, \
             status = excluded.status, status_reason = excluded.status_reason",
            args![
                work.seed_id,
                d.drive_id,
                d.position as i64,
                d.capacity_bytes as i64,
                d.bytes_written as i64,
                d.manifest_file,
                d.manifest_hash,
                d.drive_header_hash,
                key.map(|k| k.0),
                station.uri(),
                now,
                d.status.as_str(),
                d.status_reason
            ],
        )?;
        // The row as written: the answer, without reading it back.
        Ok(Drive {
            spec: d.clone(),
            seed_id: work.seed_id,
            job_name: seed.spec.job_name,
            reported_by: station.uri(),
            reported_ms: now,
            has_key: key_sent || held.is_some_and(|(_, k)| k),
        })
    })
}

fn drive_count(c: &dyn Db, seed_id: &str, status: DriveStatus) -> Result<u32> {
    c.one("SELECT COUNT(*) FROM drives WHERE seed_id = ?1 AND status = ?2", args![seed_id, status.as_str()], |r| {
        r.get::<u32>(0)
    })
}

pub fn complete_work(c: &dyn Db, idem: &Idem, station: &SpiffeId, fence: &Fence, now: UnixMs) -> Result<Seed> {
    idempotent(c, idem, now, || {
        // The work and its seed (both locked), and how many of its drives are prepared, still
        // preparing and unused, in one statement.
        let count =
            |n: usize| format!("(SELECT COUNT(*) FROM drives dc WHERE dc.seed_id = w.seed_id AND dc.status = ?{n})");
        let (mut work, ([drives, unfinished, unused], mut seed)) = lock_work_with(
            c,
            &fence.work_id,
            &format!(", {}, {}, {}, {SEED_COLS}", count(2), count(3), count(4)),
            "JOIN seeds s ON s.seed_id = w.seed_id",
            args![
                fence.work_id,
                DriveStatus::Prepared.as_str(),
                DriveStatus::Preparing.as_str(),
                DriveStatus::Delivered.as_str()
            ],
            "w, s",
            |r, i| Ok(([r.get::<u32>(i)?, r.get(i + 1)?, r.get(i + 2)?], seed_row(&Row(r.0[i + 3..].to_vec()))?)),
        )?;
        work.check(&station.name, fence.generation, now)?;
        if drives == 0 {
            return Err(Error::FailedPrecondition(format!(
                "work {} has no prepared drive; report every drive before completing",
                work.work_id
            )));
        }
        if unfinished > 0 {
            return Err(Error::FailedPrecondition(format!(
                "work {} still has {unfinished} drive(s) preparing; report each prepared or bad first",
                work.work_id
            )));
        }
        work.complete(&station.name, fence.generation, now)?;
        transition(
            c,
            &mut seed,
            Transition {
                event: SeedEvent::DisksPrepared,
                actor: &station.uri(),
                reason: format!("{drives} disk(s) prepared by copy station {}", station.name),
            },
            now,
        )?;
        save_work_after_transition(c, &work, seed.state)?;
        if seed.kind == DiskKind::DataboxDisk {
            // The Data Box Disk job exists since the order: the disks go back at once.
            let spare = if unused == 0 {
                String::new()
            } else {
                format!(" (and the {unused} unused one(s): every disk goes back)")
            };
            transition(
                c,
                &mut seed,
                Transition {
                    event: SeedEvent::ImportJobCreated,
                    actor: &station.uri(),
                    reason: format!(
                        "{drives} Data Box Disk(s) written by copy station {}; pack them{spare} in Microsoft's box with its return label, hand them to the carrier, and record the tracking number (`seedctl ship`)",
                        station.name
                    ),
                },
                now,
            )?;
        }
        Ok(seed)
    })
}

pub fn release_work(
    c: &dyn Db,
    idem: &Idem,
    station: &SpiffeId,
    fence: &Fence,
    release: &Release,
    now: UnixMs,
) -> Result<()> {
    let Release { reason, staging_invalid, backoff } = release;
    let (staging_invalid, backoff) = (*staging_invalid, *backoff);
    idempotent(c, idem, now, || {
        let mut work = load_work(c, &fence.work_id)?;
        let why = if reason.is_empty() { "no reason given" } else { reason };
        if staging_invalid {
            work.abandon(&station.name, fence.generation, now)?;
            save_work(c, &work)?;
            let mut seed = require_seed(c, &work.seed_id)?;
            let reason = format!(
                "copy station {} refused the staging set: {why}; stage the seed again and register the new one",
                station.name
            );
            return transition(c, &mut seed, Transition { event: SeedEvent::Fail, actor: &station.uri(), reason }, now);
        }
        work.release(&station.name, fence.generation, now)?;
        save_work(c, &work)?;
        // Behind the others, after a wait that grows with each release in a row; held for an
        // operator after too many.
        let releases: i64 =
            c.one("SELECT releases + 1 FROM work_items WHERE work_id = ?1", args![work.work_id], |r| r.get(0))?;
        let held = releases >= backoff.max_releases as i64;
        let not_before = now + backoff.wait_ms(releases as u32);
        c.exec(
            "UPDATE work_items SET releases = ?2, not_before_ms = ?3, queued_ms = ?4, \
             state = CASE WHEN ?5 <> 0 THEN 'held' ELSE state END WHERE work_id = ?1",
            args![work.work_id, releases, not_before, now, held],
        )?;
        let mut seed = require_seed(c, &work.seed_id)?;
        let reason = if held {
            format!(
                "held after {releases} releases in a row by copy stations (last by {}: {why}); fix the cause, then `seedctl retry {} --reason ...`",
                station.name, seed.spec.job_name
            )
        } else {
            format!(
                "released by copy station {}: {why}; back in the queue behind the others, claimable again in {} s (release {releases} of {})",
                station.name,
                (backoff.wait_ms(releases as u32) + 999) / 1000,
                backoff.max_releases
            )
        };
        transition(c, &mut seed, Transition { event: SeedEvent::LeaseLost, actor: &station.uri(), reason }, now)?;
        Ok(())
    })
}

pub fn expire_leases(c: &dyn Db, now: UnixMs) -> Result<Vec<ExpiredLease>> {
    let expired: Vec<WorkItem> = {
        c.rows(
            &format!("SELECT {WORK_COLS} FROM work_items w WHERE w.state = 'leased' AND w.lease_expires_ms <= ?1"),
            args![now],
            work_row,
        )?
    };
    let mut out = Vec::with_capacity(expired.len());
    for mut work in expired {
        let holder = work.holder.clone().unwrap_or_default();
        if !work.expire(now) {
            continue;
        }
        save_work(c, &work)?;
        let mut seed = require_seed(c, &work.seed_id)?;
        transition(
            c,
            &mut seed,
            Transition {
                event: SeedEvent::LeaseLost,
                actor: SWEEPER,
                reason: format!(
                    "lease generation {} held by copy station {holder} expired; waiting for a copy station",
                    work.generation
                ),
            },
            now,
        )?;
        debug_assert_eq!(work.state, WorkState::Queued);
        out.push(ExpiredLease { work_id: work.work_id, seed_id: work.seed_id, holder, generation: work.generation });
    }
    Ok(out)
}

/// Prepared drives of a seed (what its import job ships).
pub fn prepared_drives(c: &dyn Db, seed_id: &str) -> Result<u32> {
    drive_count(c, seed_id, DriveStatus::Prepared)
}

pub fn allow_virtual_station(
    c: &dyn Db,
    idem: &Idem,
    operator: &SpiffeId,
    seed: &str,
    reason: &str,
    now: UnixMs,
) -> Result<Seed> {
    idempotent(c, idem, now, || {
        let mut s = require_seed(c, seed)?;
        c.exec(
            "UPDATE seeds SET allow_virtual_station = 1, updated_ms = ?2 WHERE seed_id = ?1",
            args![s.seed_id, now],
        )?;
        // Not a state change: the history row keeps the state and says who allowed what, and why.
        insert_event(
            c,
            &s.seed_id,
            now,
            &operator.uri(),
            Some(s.state),
            s.state,
            "allow_virtual_station",
            &format!("a virtual copy station (or the source's own host) may prepare this seed: {reason}"),
        )?;
        s.allow_virtual_station = true;
        s.updated_ms = now;
        Ok(s)
    })
}

pub fn cancel_seed(
    c: &dyn Db,
    idem: &Idem,
    operator: &SpiffeId,
    seed: &str,
    reason: &str,
    now: UnixMs,
) -> Result<Seed> {
    idempotent(c, idem, now, || {
        let mut s = require_seed(c, seed)?;
        if s.state == SeedState::Cancelled {
            // The Azure worker saw the job cancelled first and cancelled the seed.
            let why = format!("cancelled by {operator}: {reason}");
            insert_event(c, &s.seed_id, now, &operator.uri(), Some(s.state), s.state, "operator_cancel", &why)?;
            return Ok(s);
        }
        if s.state.apply(SeedEvent::Cancel).is_err() {
            return Err(Error::FailedPrecondition(format!(
                "seed {} is {}; a seed can be cancelled until its disks are shipped",
                s.spec.job_name, s.state
            )));
        }
        c.exec("UPDATE work_items SET state = 'cancelled' WHERE seed_id = ?1 AND state IN ('queued', 'leased', 'held', 'waiting')", args![s.seed_id])?;
        transition(
            c,
            &mut s,
            Transition {
                event: SeedEvent::Cancel,
                actor: &operator.uri(),
                reason: format!("cancelled by {operator}: {reason}"),
            },
            now,
        )?;
        Ok(s)
    })
}

/// An operator's choice of what a seed is shipped on, after the rules of
/// [`crate::domain::import::kind_change_problem`]: to Microsoft's disks, queued work waits for
/// them (the Azure worker orders them); to customer disks, the seed is queued for disk prep.
pub fn set_disk_kind(
    c: &dyn Db,
    idem: &Idem,
    operator: &SpiffeId,
    seed: &str,
    kind: DiskKind,
    reason: &str,
    now: UnixMs,
) -> Result<Seed> {
    idempotent(c, idem, now, || {
        let mut s = require_seed(c, seed)?;
        let work = load_work_of_seed(c, &s.seed_id)?;
        let has_job: bool =
            c.one("SELECT EXISTS (SELECT 1 FROM import_jobs WHERE seed_id = ?1)", args![s.seed_id], |r| r.get(0))?;
        let facts = crate::domain::import::KindFacts {
            state: s.state,
            kind: s.kind,
            total_bytes: s.spec.total_bytes,
            has_job,
            ever_claimed: work.generation > 0,
        };
        if let Some(why) = crate::domain::import::kind_change_problem(&facts, kind) {
            return Err(Error::FailedPrecondition(format!(
                "seed {} cannot be switched to {}: {why}",
                s.spec.job_name,
                kind.describe()
            )));
        }
        if s.kind == kind {
            return Ok(s);
        }
        c.exec("UPDATE seeds SET kind = ?2 WHERE seed_id = ?1", args![s.seed_id, kind.as_str()])?;
        s.kind = kind;
        let why = format!("{operator} chose {}: {reason}", kind.describe());
        match kind {
            DiskKind::DataboxDisk => {
                c.exec(
                    "UPDATE work_items SET state = 'waiting' WHERE seed_id = ?1 AND state = 'queued'",
                    args![s.seed_id],
                )?;
                if s.state == SeedState::QueuedForDiskPrep {
                    transition(
                        c,
                        &mut s,
                        Transition { event: SeedEvent::Unqueue, actor: &operator.uri(), reason: why },
                        now,
                    )?;
                } else {
                    insert_event(c, &s.seed_id, now, &operator.uri(), Some(s.state), s.state, "disk_kind", &why)?;
                }
            }
            DiskKind::CustomerDisk => {
                c.exec(
                    "UPDATE work_items SET state = 'queued', queued_ms = ?2 WHERE seed_id = ?1 AND state = 'waiting'",
                    args![s.seed_id, now],
                )?;
                transition(
                    c,
                    &mut s,
                    Transition { event: SeedEvent::Queue, actor: &operator.uri(), reason: why },
                    now,
                )?;
            }
        }
        Ok(s)
    })
}

pub fn retry_work(c: &dyn Db, idem: &Idem, operator: &SpiffeId, seed: &str, reason: &str, now: UnixMs) -> Result<Seed> {
    idempotent(c, idem, now, || {
        let mut s = require_seed(c, seed)?;
        let n = c.exec(
            "UPDATE work_items SET state = 'queued', releases = 0, not_before_ms = 0, queued_ms = ?2 \
             WHERE seed_id = ?1 AND state = 'held'",
            args![s.seed_id, now],
        )?;
        if n == 0 {
            // The other failed step an operator can retry: Azure refused to create the import
            // job (a wrong account, a name taken, a check it failed), and the cause is fixed.
            let refused: Option<String> = c.row(
                "SELECT last_error FROM import_jobs WHERE seed_id = ?1 AND phase = 'refused'",
                args![s.seed_id],
                |r| r.get(0),
            )?;
            return match refused {
                Some(was) if s.state == SeedState::Failed => {
                    c.exec("DELETE FROM job_drives WHERE seed_id = ?1", args![s.seed_id])?;
                    c.exec("DELETE FROM import_jobs WHERE seed_id = ?1", args![s.seed_id])?;
                    let reason = format!(
                        "{operator} retries the import job Azure refused ({was}): {reason}; the coordinator creates it again"
                    );
                    transition(
                        c,
                        &mut s,
                        Transition { event: SeedEvent::RetryImportJob, actor: &operator.uri(), reason },
                        now,
                    )?;
                    Ok(s)
                }
                _ => Err(Error::FailedPrecondition(format!(
                    "seed {} is {}: nothing to retry (retry puts held disk-prep work back in the queue, or creates again an import job Azure refused)",
                    s.spec.job_name,
                    s.state.as_str()
                ))),
            };
        }
        let why = format!("{operator} put the held disk-prep work back in the queue: {reason}");
        say(c, &mut s, &operator.uri(), "work_retried", why, now)?;
        Ok(s)
    })
}

pub fn purge_requests(c: &dyn Db, before: UnixMs) -> Result<u64> {
    c.exec("DELETE FROM requests WHERE created_ms < ?1", args![before])
}

/// Where an operator sends a seed's disk-prep work: a station, a site, or any station.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Retarget {
    /// None: unchanged; Some(""): any.
    pub station: Option<String>,
    pub site: Option<String>,
}

/// Puts a seed's disk-prep work back in the queue, from any station that holds it (its lease
/// ends: the holder is refused at its next call and stops writing) or from held, optionally
/// for another station or site. Only before the disks are prepared.
pub fn requeue_work(
    c: &dyn Db,
    idem: &Idem,
    operator: &SpiffeId,
    seed: &str,
    to: &Retarget,
    reason: &str,
    now: UnixMs,
) -> Result<Seed> {
    idempotent(c, idem, now, || {
        let mut s = require_seed(c, seed)?;
        if !matches!(s.state, SeedState::QueuedForDiskPrep | SeedState::Preparing) {
            let why = match s.state {
                SeedState::Registered | SeedState::DisksOrdered => "its disk-prep work is not in the queue yet",
                SeedState::Failed | SeedState::Cancelled | SeedState::Seeded => "it has ended",
                _ => "its disks are prepared already; cancel it and stage a new seed to prepare them again",
            };
            return Err(Error::FailedPrecondition(format!(
                "seed {} is {}: its disk-prep work cannot be re-queued ({why})",
                s.spec.job_name,
                s.state.as_str()
            )));
        }
        let mut work = super::rows::load_work_of_seed(c, &s.seed_id)?;
        let holder = work.holder.clone();
        work.revoke();
        save_work(c, &work)?;
        let station = to.station.as_ref().map(|v| if v.is_empty() { None } else { Some(v.clone()) });
        let site = to.site.as_ref().map(|v| if v.is_empty() { None } else { Some(v.clone()) });
        if let Some(st) = &station {
            c.exec("UPDATE work_items SET target_station = ?2 WHERE work_id = ?1", args![work.work_id, st])?;
            c.exec("UPDATE seeds SET target_station = ?2 WHERE seed_id = ?1", args![s.seed_id, st])?;
        }
        if let Some(si) = &site {
            c.exec("UPDATE work_items SET target_site = ?2 WHERE work_id = ?1", args![work.work_id, si])?;
            c.exec("UPDATE seeds SET target_site = ?2 WHERE seed_id = ?1", args![s.seed_id, si])?;
        }
        c.exec("UPDATE work_items SET state = 'queued', releases = 0, not_before_ms = 0, queued_ms = ?2 WHERE work_id = ?1", args![work.work_id, now])?;
        let whom = match (&station, &site) {
            (Some(Some(st)), _) => format!("for copy station {st}"),
            (_, Some(Some(si))) => format!("for the copy stations of site {si}"),
            (Some(None), _) | (_, Some(None)) => "for any copy station".to_string(),
            _ => "for the same stations as before".to_string(),
        };
        let from = holder.map(|h| format!(", taken from copy station {h}")).unwrap_or_default();
        let why = format!("{operator} re-queued the disk-prep work {whom}{from}: {reason}");
        work_taken_back(c, &mut s, &operator.uri(), "work_requeued", why, now)?;
        require_seed(c, &s.seed_id)
    })
}
