//! SPIFFE identities: who a caller is, taken from the URI SAN of its client certificate.

use std::fmt;
use std::str::FromStr;

/// What a caller may do; the middle path segment of its SPIFFE id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A backup server running source-agent.
    Source,
    /// A copy station running copy-agent.
    Copy,
    /// A member of the operations team.
    Operator,
    /// The coordinator itself (its server certificate).
    Coordinator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Source => "source",
            Role::Copy => "copy",
            Role::Operator => "operator",
            Role::Coordinator => "coordinator",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "source" => Ok(Role::Source),
            "copy" => Ok(Role::Copy),
            "operator" => Ok(Role::Operator),
            "coordinator" => Ok(Role::Coordinator),
            other => Err(IdentityError::UnknownRole(other.to_string())),
        }
    }
}

/// A parsed `spiffe://<trust-domain>/<role>/<name>` identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SpiffeId {
    pub trust_domain: String,
    pub role: Role,
    pub name: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentityError {
    #[error("not a spiffe:// URI: {0:?}")]
    NotSpiffe(String),
    #[error("spiffe id {0:?} must have the form spiffe://<trust-domain>/<role>/<name>")]
    Shape(String),
    #[error("unknown role {0:?} (expected source, copy or operator)")]
    UnknownRole(String),
    #[error(
        "invalid {what} {value:?}: use 1-63 lowercase letters, digits, '-' or '.', starting with a letter or digit"
    )]
    BadLabel { what: &'static str, value: String },
}

/// Checks one name or trust-domain label: 1-63 characters of `[a-z0-9.-]`, not starting with
/// a punctuation character. Names end up in paths, URIs and logs, so keep them boring.
pub fn validate_label(what: &'static str, value: &str) -> Result<(), IdentityError> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && value.as_bytes()[0].is_ascii_alphanumeric();
    if ok { Ok(()) } else { Err(IdentityError::BadLabel { what, value: value.to_string() }) }
}

impl SpiffeId {
    pub fn new(trust_domain: &str, role: Role, name: &str) -> Result<Self, IdentityError> {
        validate_label("trust domain", trust_domain)?;
        validate_label("name", name)?;
        Ok(SpiffeId { trust_domain: trust_domain.to_string(), role, name: name.to_string() })
    }

    pub fn uri(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "spiffe://{}/{}/{}", self.trust_domain, self.role, self.name)
    }
}

impl FromStr for SpiffeId {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rest = s.strip_prefix("spiffe://").ok_or_else(|| IdentityError::NotSpiffe(s.to_string()))?;
        let parts: Vec<&str> = rest.split('/').collect();
        let [td, role, name] = parts.as_slice() else {
            return Err(IdentityError::Shape(s.to_string()));
        };
        SpiffeId::new(td, role.parse()?, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let id: SpiffeId = "spiffe://seedship.local/copy/station-01".parse().unwrap();
        assert_eq!(id.role, Role::Copy);
        assert_eq!(id.name, "station-01");
        assert_eq!(id.to_string(), "spiffe://seedship.local/copy/station-01");
    }

    #[test]
    fn rejects_bad_shapes() {
        assert!(matches!("https://x/copy/a".parse::<SpiffeId>(), Err(IdentityError::NotSpiffe(_))));
        assert!(matches!("spiffe://x/copy".parse::<SpiffeId>(), Err(IdentityError::Shape(_))));
        assert!(matches!("spiffe://x/copy/a/b".parse::<SpiffeId>(), Err(IdentityError::Shape(_))));
        assert!(matches!("spiffe://x/admin/a".parse::<SpiffeId>(), Err(IdentityError::UnknownRole(_))));
        assert!(matches!("spiffe://x/copy/Station".parse::<SpiffeId>(), Err(IdentityError::BadLabel { .. })));
        assert!(matches!("spiffe://x/copy/-a".parse::<SpiffeId>(), Err(IdentityError::BadLabel { .. })));
    }
}
