//! The coordinator's use cases: the one way into the store. A validated request from an
//! authenticated caller, or a background worker's step, becomes store operations here, with
//! the clock, lease timing and keys. Split by subject: [`seeds`] (agents, seeds and disk-prep
//! leases), [`shipping`] (import jobs, shipping, Azure's waits), [`vault`] (verification,
//! repair, the vault, recovery points, clean-up). The rules themselves are in `domain/`.

pub mod enroll;
pub mod leader;
mod revoke;
mod seeds;
mod shipping;
pub use shipping::PASSKEY_AAD;
mod vault;

use std::sync::Arc;
use std::time::Duration;

use seedship_proto::identity::{Role, SpiffeId};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::azure::AzureSide;
use crate::clock::{Clock, UnixMs};
use crate::domain::lease::Fence;
use crate::domain::model::*;
use crate::domain::placement::Placement;
use crate::domain::seed::SeedState;
use crate::error::{Error, Result};
use crate::keys::MasterKey;
use crate::store::{LeaseTiming, Store};

/// Timing the service hands out.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub lease_ttl: Duration,
    pub heartbeat_interval: Duration,
    /// How released work waits before it can be claimed again, and when it is held.
    pub release_backoff: crate::domain::lease::Backoff,
}

pub struct Coordinator {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    settings: Settings,
    master_key: Option<Arc<MasterKey>>,
    /// The Azure side, when `[azure]` is configured.
    azure: Option<Arc<AzureSide>>,
    /// `[imports] keys_file`: signs drive manifests' SAS without (or beside) the Azure side.
    signer: Option<seedship_azure::blob::Accounts>,
    /// Where seeds' import containers go.
    placement: Placement,
    /// Revoked identities (shared with the gRPC API's `Auth` and the console).
    revoked: Arc<crate::auth::Revoked>,
    /// The background workers' lease (several coordinators on one database).
    leader: leader::Leader,
}

/// A mutating request as the service receives it: the caller's request id and the payload.
#[derive(Debug, Clone)]
pub struct Cmd<T> {
    pub request_id: String,
    pub body: T,
}

fn fingerprint<T: Serialize>(method: &str, body: &T) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(method.as_bytes());
    h.update([0]);
    h.update(serde_json::to_vec(body).unwrap_or_default());
    h.finalize().into()
}

impl Coordinator {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        settings: Settings,
        master_key: Option<Arc<MasterKey>>,
    ) -> Self {
        Coordinator {
            store,
            clock,
            settings,
            master_key,
            azure: None,
            placement: Placement::default(),
            signer: None,
            revoked: Arc::default(),
            leader: leader::Leader::default(),
        }
    }

    /// As `instance` among several coordinators, with a workers' lease of `ttl`.
    pub fn with_leader(mut self, instance: String, ttl: Duration) -> Self {
        self.leader = leader::Leader::new(instance, ttl);
        self
    }

    /// With keys that sign drive manifests' SAS when the Azure side has none for an account.
    pub fn with_manifest_signer(mut self, signer: seedship_azure::blob::Accounts) -> Self {
        self.signer = Some(signer);
        self
    }

    /// With the configured import-container rules (default: `import-{seed}`).
    pub fn with_placement(mut self, placement: Placement) -> Self {
        self.placement = placement;
        self
    }

    /// With the Azure side: shipping is sent to Azure, and addresses come from it.
    pub fn with_azure(mut self, azure: Arc<AzureSide>) -> Self {
        self.azure = Some(azure);
        self
    }

    /// The revoked identities this coordinator refuses.
    pub fn revoked(&self) -> Arc<crate::auth::Revoked> {
        self.revoked.clone()
    }

    pub fn settings(&self) -> Settings {
        self.settings
    }

    /// The Azure side, when `[azure]` is configured.
    pub fn azure(&self) -> Option<&Arc<AzureSide>> {
        self.azure.as_ref()
    }

    pub fn now(&self) -> UnixMs {
        self.clock.now_ms()
    }

    fn idem<T: Serialize>(&self, caller: &SpiffeId, method: &'static str, cmd: &Cmd<T>) -> Idem {
        Idem {
            caller: caller.uri(),
            request_id: cmd.request_id.clone(),
            method,
            fingerprint: fingerprint(method, &cmd.body),
        }
    }

    /// Logs a refusal of `who` (role checks are logged in `auth`; ownership checks here).
    fn audit<T>(who: &SpiffeId, rpc: &str, r: Result<T>) -> Result<T> {
        if let Err(Error::PermissionDenied(why)) = &r {
            tracing::warn!(caller = %who, rpc, reason = %why, "permission denied: not the caller's to act on");
        }
        r
    }

    fn timing(&self) -> LeaseTiming {
        LeaseTiming { now: self.now(), ttl_ms: self.settings.lease_ttl.as_millis() as i64 }
    }
}
