//! tonic service implementations. Each method reads like a sentence: authorize the caller
//! from its certificate, convert the request, call the domain service, convert the answer.
//! Roles allowed per RPC are the `const`s at the top of each file.

pub mod agents;
pub mod audit;
pub mod convert;
pub mod diskprep;
pub mod layers;
pub mod limits;
pub mod operator;
pub mod seeds;
pub mod shipping;

use std::sync::Arc;

use crate::auth::Auth;
use crate::service::Coordinator;

/// Shared by every service: the authorizer and the domain service.
#[derive(Clone)]
pub struct Api {
    pub auth: Auth,
    pub core: Arc<Coordinator>,
    /// Signs evidence bundles (the coordinator's TLS key); None when that key cannot.
    pub evidence: Option<Arc<crate::evidence::Signer>>,
    /// The dashboard's base URL (`[web] public_url`, or https://localhost:<port>).
    pub web_url: Option<String>,
    /// `[enroll]` is on: the CA certificate's SHA-256 (hex), which enrolling agents check.
    pub enroll_ca_fingerprint: Option<String>,
    /// `[enroll]` is on: the CA that signs agents' renewed certificates.
    pub enroller: Option<Arc<crate::service::enroll::Enroller>>,
}
