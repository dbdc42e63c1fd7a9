//! The audit log's hash chain, shared by the coordinator (which appends) and `seedctl audit
//! verify` (which checks what it exported, trusting nothing the coordinator says about it).
//!
//! Entry `n` carries the hash of entry `n - 1` (`prev_hash`; 64 zeros for the first) and its
//! own hash: SHA-256 over the JSON array `[seq, at_unix_ms, actor, action, target, outcome,
//! detail, prev_hash]`. An entry that was changed no longer matches its hash; one removed or
//! moved breaks the sequence and the next entry's `prev_hash`. Removing the newest entries
//! leaves a shorter chain that is intact: compare the head (its sequence number and hash) with
//! one kept elsewhere (an earlier export, a ticket), which is what `verify` prints.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The `prev_hash` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One entry, as stored, exported (one JSON object a line) and verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub seq: i64,
    pub at_unix_ms: i64,
    /// Who: a SPIFFE id, or `coordinator/<worker>` for the coordinator's own decisions.
    pub actor: String,
    /// What was done, e.g. `RegisterAgent`, `lease_claimed`, `drive_key_released`.
    pub action: String,
    /// What it was done to: a job name, a seed id, an identity; may be empty.
    pub target: String,
    /// How it ended: `ok`, a seed state change (`queued_for_disk_prep -> preparing`), or a
    /// refusal (`refused: permission_denied`).
    pub outcome: String,
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

/// What an entry says (everything but its place in the chain).
#[derive(Debug, Clone, Copy)]
pub struct Content<'a> {
    pub actor: &'a str,
    pub action: &'a str,
    pub target: &'a str,
    pub outcome: &'a str,
    pub detail: &'a str,
}

/// The hash of an entry's content and its predecessor's hash.
pub fn hash(seq: i64, at: i64, c: &Content, prev: &str) -> String {
    let body =
        serde_json::to_string(&(seq, at, c.actor, c.action, c.target, c.outcome, c.detail, prev)).expect("serializes");
    hex::encode(Sha256::digest(body.as_bytes()))
}

impl Entry {
    pub fn content(&self) -> Content<'_> {
        Content {
            actor: &self.actor,
            action: &self.action,
            target: &self.target,
            outcome: &self.outcome,
            detail: &self.detail,
        }
    }

    pub fn expected_hash(&self) -> String {
        hash(self.seq, self.at_unix_ms, &self.content(), &self.prev_hash)
    }
}

impl From<Entry> for crate::pb::AuditEntry {
    fn from(e: Entry) -> Self {
        crate::pb::AuditEntry {
            seq: e.seq,
            at_unix_ms: e.at_unix_ms,
            actor: e.actor,
            action: e.action,
            target: e.target,
            outcome: e.outcome,
            detail: e.detail,
            prev_hash: e.prev_hash,
            hash: e.hash,
        }
    }
}

impl From<crate::pb::AuditEntry> for Entry {
    fn from(e: crate::pb::AuditEntry) -> Self {
        Entry {
            seq: e.seq,
            at_unix_ms: e.at_unix_ms,
            actor: e.actor,
            action: e.action,
            target: e.target,
            outcome: e.outcome,
            detail: e.detail,
            prev_hash: e.prev_hash,
            hash: e.hash,
        }
    }
}

/// What is wrong with a chain, entry by entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The entry's content does not match its hash: changed after it was written.
    Changed { seq: i64 },
    /// Entries are missing before this one (the sequence jumps).
    Missing { after: i64, next: i64 },
    /// The entry comes after a later one: moved.
    OutOfPlace { seq: i64, after: i64 },
    /// The entry does not carry its predecessor's hash: one of the two was replaced whole.
    Broken { seq: i64 },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Changed { seq } => write!(f, "entry {seq} was changed: its content does not match its hash"),
            Problem::Missing { after, next } => {
                write!(f, "entries {}..{} are missing: entry {next} follows entry {after}", after + 1, next - 1)
            }
            Problem::OutOfPlace { seq, after } => {
                write!(f, "entry {seq} is out of place: it comes after entry {after}")
            }
            Problem::Broken { seq } => {
                write!(f, "entry {seq} does not carry the hash of entry {}: one of them was replaced", seq - 1)
            }
        }
    }
}

/// The outcome of checking a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub entries: usize,
    pub problems: Vec<Problem>,
    /// The newest entry: sequence number and hash (compare with one kept elsewhere).
    pub head: Option<(i64, String)>,
}

/// Checks a whole log, `entries` in the order given (the order they were exported in): each
/// entry against its hash, the order, then the chain in sequence order (the first must be
/// entry 1, carrying [`GENESIS`]).
pub fn verify(entries: &[Entry]) -> Report {
    let mut problems = Vec::new();
    for e in entries {
        if e.hash != e.expected_hash() {
            problems.push(Problem::Changed { seq: e.seq });
        }
    }
    let mut newest = i64::MIN;
    for e in entries {
        if e.seq < newest {
            problems.push(Problem::OutOfPlace { seq: e.seq, after: newest });
        }
        newest = newest.max(e.seq);
    }
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    sorted.sort_by_key(|e| e.seq);
    let mut prev: Option<&Entry> = None;
    for e in sorted {
        match prev {
            None if e.seq > 1 => problems.push(Problem::Missing { after: 0, next: e.seq }),
            None if e.prev_hash != GENESIS => problems.push(Problem::Broken { seq: e.seq }),
            Some(p) if e.seq > p.seq + 1 => problems.push(Problem::Missing { after: p.seq, next: e.seq }),
            Some(p) if e.seq == p.seq + 1 && e.prev_hash != p.hash => problems.push(Problem::Broken { seq: e.seq }),
            _ => {}
        }
        prev = Some(e);
    }
    Report {
        entries: entries.len(),
        problems,
        head: entries.iter().max_by_key(|e| e.seq).map(|e| (e.seq, e.hash.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<Entry> {
        let mut out: Vec<Entry> = Vec::new();
        for seq in 1..=n {
            let prev = out.last().map(|e| e.hash.clone()).unwrap_or_else(|| GENESIS.to_string());
            let (actor, action) = ("spiffe://t/operator/alice".to_string(), format!("action{seq}"));
            let content = Content { actor: &actor, action: &action, target: "job-a", outcome: "ok", detail: "" };
            let h = hash(seq, 1000 + seq, &content, &prev);
            out.push(Entry {
                seq,
                at_unix_ms: 1000 + seq,
                actor,
                action,
                target: "job-a".into(),
                outcome: "ok".into(),
                detail: String::new(),
                prev_hash: prev,
                hash: h,
            });
        }
        out
    }

    #[test]
    fn an_intact_chain_has_no_problems_and_names_its_head() {
        let c = chain(5);
        let r = verify(&c);
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(r.head, Some((5, c[4].hash.clone())));
    }

    #[test]
    fn a_changed_a_removed_and_a_moved_entry_are_each_found() {
        let mut c = chain(6);
        c[2].detail = "edited".into();
        assert_eq!(verify(&c).problems, vec![Problem::Changed { seq: 3 }]);

        let mut c = chain(6);
        c.remove(3);
        assert_eq!(verify(&c).problems, vec![Problem::Missing { after: 3, next: 5 }]);

        let mut c = chain(6);
        c.swap(1, 2);
        assert_eq!(verify(&c).problems, vec![Problem::OutOfPlace { seq: 2, after: 3 }]);

        // Replaced whole, its hash made anew: the next entry's link gives it away.
        let mut c = chain(6);
        c[2].detail = "forged".into();
        c[2].hash = c[2].expected_hash();
        assert_eq!(verify(&c).problems, vec![Problem::Broken { seq: 4 }]);

        // Renumbered to hide a removal: the hashes give it away.
        let mut c = chain(6);
        c.remove(3);
        for e in c.iter_mut().skip(3) {
            e.seq -= 1;
        }
        let p = verify(&c).problems;
        assert!(p.contains(&Problem::Changed { seq: 4 }), "{p:?}");
    }
}
