//! One-time enrollment tokens: an operator names the role, the name (or a prefix and '*') and
//! the site an agent may enroll as, and for how long; an agent redeems the token once with a
//! certificate signing request for an identity the token allows.

use seedship_proto::identity::{Role, SpiffeId, validate_label};
use serde::{Deserialize, Serialize};

use crate::clock::UnixMs;

/// A token as the coordinator keeps it (the secret itself only as a hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollToken {
    /// The first 12 hex characters of the secret's SHA-256: names the token in lists and the
    /// audit log without revealing it.
    pub id: String,
    pub role: Role,
    /// An exact agent name, or a prefix followed by '*'.
    pub name: String,
    pub site: Option<String>,
    pub created_by: String,
    pub reason: String,
    pub created_ms: UnixMs,
    pub expires_ms: UnixMs,
    pub used_ms: Option<UnixMs>,
    /// The identity that enrolled with it.
    pub used_by: Option<String>,
}

/// The longest a token may wait to be used.
pub const MAX_TOKEN_TTL_MS: i64 = 30 * 86_400_000;

/// Checks what an operator asks a token for: a role agents have, a name or a prefix pattern,
/// a lifetime from a minute to [`MAX_TOKEN_TTL_MS`].
pub fn token_problem(role: Role, name: &str, ttl_ms: i64) -> Option<String> {
    if !matches!(role, Role::Source | Role::Copy) {
        return Some(format!(
            "role {role}: tokens are for agents (source or copy); operators get certificates from `coordinator pki issue`"
        ));
    }
    let stem = name.strip_suffix('*').unwrap_or(name);
    if stem.contains('*') {
        return Some(format!("name {name:?}: '*' may only end a prefix (e.g. \"dpm-*\")"));
    }
    if name.ends_with('*') && stem.is_empty() {
        return Some("name \"*\" would allow any name; give a prefix (e.g. \"dpm-*\") or an exact name".into());
    }
    let checked = if name.ends_with('*') { format!("{stem}x") } else { stem.to_string() };
    if let Err(e) = validate_label("name", &checked) {
        return Some(e.to_string());
    }
    if !(60_000..=MAX_TOKEN_TTL_MS).contains(&ttl_ms) {
        return Some(format!("a token lives from 1 minute to 30 days, not {} s", ttl_ms / 1000));
    }
    None
}

/// Whether `name` is one the token's name or pattern allows.
pub fn name_allowed(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix) && name.len() > prefix.len(),
        None => pattern == name,
    }
}

/// Why `token` cannot enroll `id` at `now` (in words the agent's operator can act on), or
/// `None` when it can.
pub fn redeem_problem(token: &EnrollToken, id: &SpiffeId, trust_domain: &str, now: UnixMs) -> Option<String> {
    if let Some(when) = token.used_ms {
        return Some(format!(
            "enrollment token {} was used already (at {} by {}); ask an operator for a new one (seedctl enroll create)",
            token.id,
            seedship_proto::human::rfc3339(when),
            token.used_by.as_deref().unwrap_or("?")
        ));
    }
    if token.expires_ms < now {
        return Some(format!(
            "enrollment token {} expired at {}; ask an operator for a new one (seedctl enroll create)",
            token.id,
            seedship_proto::human::rfc3339(token.expires_ms)
        ));
    }
    if id.trust_domain != trust_domain {
        return Some(format!(
            "the request is for trust domain {}, the coordinator's is {trust_domain}",
            id.trust_domain
        ));
    }
    if id.role != token.role {
        return Some(format!(
            "enrollment token {} is for a {} agent, not a {} agent (run the enroll command of the other program, or ask for a {} token)",
            token.id, token.role, id.role, id.role
        ));
    }
    if !name_allowed(&token.name, &id.name) {
        return Some(format!("enrollment token {} allows the name {:?}, not {:?}", token.id, token.name, id.name));
    }
    None
}

/// How far an agent's clock may be from the coordinator's: certificates are valid from five
/// minutes before they are signed, so a clock within this of the coordinator's accepts them
/// at once and renews them in time.
pub const MAX_CLOCK_SKEW_MS: i64 = 5 * 60_000;

/// Why an agent whose clock says `agent_ms` while the coordinator's says `now_ms` may not get
/// a certificate, or `None` when the two are close enough. `agent_ms` of 0 is an agent that did
/// not say (refused: every seedship agent does).
pub fn skew_problem(agent_ms: i64, now_ms: i64) -> Option<String> {
    if agent_ms <= 0 {
        return Some("the request does not say the agent's time (client_time_unix_ms); update the agent".into());
    }
    let skew = agent_ms - now_ms;
    if skew.abs() <= MAX_CLOCK_SKEW_MS {
        return None;
    }
    Some(format!(
        "this host's clock is {} {} the coordinator's (tolerated: {} s either way); set the time right \
         (chrony, systemd-timesyncd or w32time) and try again",
        seedship_proto::human::duration(skew.unsigned_abs().div_ceil(1000)),
        if skew > 0 { "ahead of" } else { "behind" },
        MAX_CLOCK_SKEW_MS / 1000
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> EnrollToken {
        EnrollToken {
            id: "0123456789ab".into(),
            role: Role::Source,
            name: "dpm-*".into(),
            site: Some("lab".into()),
            created_by: "spiffe://t/operator/alice".into(),
            reason: "new servers".into(),
            created_ms: 0,
            expires_ms: 1000,
            used_ms: None,
            used_by: None,
        }
    }

    #[test]
    fn tokens_ask_for_agent_roles_names_and_sane_lifetimes() {
        assert_eq!(token_problem(Role::Source, "dpm-01", 3_600_000), None);
        assert_eq!(token_problem(Role::Copy, "station-*", 60_000), None);
        assert!(token_problem(Role::Operator, "alice", 3_600_000).unwrap().contains("for agents"));
        assert!(token_problem(Role::Source, "*", 3_600_000).unwrap().contains("any name"));
        assert!(token_problem(Role::Source, "a*b", 3_600_000).unwrap().contains("may only end"));
        assert!(token_problem(Role::Source, "Bad Name", 3_600_000).is_some());
        assert!(token_problem(Role::Source, "dpm-01", 1000).unwrap().contains("1 minute to 30 days"));
        assert!(token_problem(Role::Source, "dpm-01", MAX_TOKEN_TTL_MS + 1).is_some());
    }

    #[test]
    fn clocks_within_five_minutes_are_tolerated() {
        let now = 1_800_000_000_000;
        assert_eq!(skew_problem(now, now), None);
        assert_eq!(skew_problem(now + MAX_CLOCK_SKEW_MS, now), None);
        assert_eq!(skew_problem(now - MAX_CLOCK_SKEW_MS, now), None);
        let ahead = skew_problem(now + MAX_CLOCK_SKEW_MS + 1000, now).unwrap();
        assert!(ahead.contains("ahead of") && ahead.contains("tolerated: 300 s"), "{ahead}");
        assert!(skew_problem(now - 3_600_000, now).unwrap().contains("behind"));
        assert!(skew_problem(0, now).unwrap().contains("update the agent"));
    }

    #[test]
    fn a_token_enrolls_once_in_time_for_its_role_and_names() {
        let id = |role, name: &str| SpiffeId::new("t", role, name).unwrap();
        let t = token();
        assert_eq!(redeem_problem(&t, &id(Role::Source, "dpm-07"), "t", 500), None);
        assert!(redeem_problem(&t, &id(Role::Source, "dpm-"), "t", 500).unwrap().contains("allows the name"));
        assert!(redeem_problem(&t, &id(Role::Source, "mabs-1"), "t", 500).unwrap().contains("allows the name"));
        assert!(redeem_problem(&t, &id(Role::Copy, "dpm-07"), "t", 500).unwrap().contains("not a copy agent"));
        assert!(redeem_problem(&t, &id(Role::Source, "dpm-07"), "t", 1001).unwrap().contains("expired"));
        assert!(redeem_problem(&t, &id(Role::Source, "dpm-07"), "other", 500).unwrap().contains("trust domain"));
        let used = EnrollToken { used_ms: Some(400), used_by: Some("spiffe://t/source/dpm-01".into()), ..token() };
        assert!(redeem_problem(&used, &id(Role::Source, "dpm-07"), "t", 500).unwrap().contains("used already"));
        let exact = EnrollToken { name: "dpm-07".into(), ..token() };
        assert_eq!(redeem_problem(&exact, &id(Role::Source, "dpm-07"), "t", 500), None);
        assert!(redeem_problem(&exact, &id(Role::Source, "dpm-070"), "t", 500).is_some());
    }
}
