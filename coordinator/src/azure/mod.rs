//! The coordinator's Azure adapter: its settings ([`config`]), the job it asks Azure for
//! ([`body`]: the `Microsoft.DataBox` job of a seed, `validateInputs`, the datacenter address
//! request), and what it reads back ([`state`]: a job as the pure rules of
//! `domain/import.rs` take it). [`AzureSide`] holds the clients built from the settings.

pub mod body;
pub mod config;
pub mod state;

use std::time::{Duration, Instant};

use seedship_azure::client::{ArmClient, ArmOptions};
use seedship_azure::databox::{Sku, model};

pub use config::{AzureConfig, VaultConfig};

/// The coordinator's Azure side: its settings and two ARM clients.
pub struct AzureSide {
    pub cfg: AzureConfig,
    /// Blob storage (import containers, vaults, copy logs).
    pub accounts: seedship_azure::blob::Accounts,
    /// For background work: long timeouts, many retries.
    pub arm: ArmClient,
    /// For an operator's request that waits on the answer: a few quick retries.
    pub quick: ArmClient,
    /// Datacenter addresses by Azure location, as the worker last read them: a station's
    /// `CompleteWork` is answered from here and never waits on Azure.
    addresses: std::sync::Mutex<std::collections::HashMap<String, (Vec<String>, Instant)>>,
}

impl std::fmt::Debug for AzureSide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureSide").field("endpoint", &self.cfg.arm_endpoint).finish()
    }
}

impl AzureSide {
    pub fn new(cfg: AzureConfig) -> Result<AzureSide, String> {
        // Within a call: 4 retries (about 3 s); the worker retries calls after that. One
        // operation is followed for `operation_timeout`, so a slow one does not hold the worker.
        let arm = cfg.client_with(ArmOptions {
            max_retries: 4,
            operation_timeout: cfg.operation_timeout,
            ..Default::default()
        })?;
        let quick = cfg.client_with(ArmOptions {
            max_retries: 2,
            initial_delay: Duration::from_millis(200),
            timeout: Duration::from_secs(10),
            operation_timeout: Duration::from_secs(30),
            ..Default::default()
        })?;
        let accounts = cfg.accounts()?;
        Ok(AzureSide { cfg, accounts, arm, quick, addresses: Default::default() })
    }

    /// The datacenter address of `location` if it has been read (within a day).
    pub fn cached_address(&self, location: &str) -> Option<Vec<String>> {
        let a = self.addresses.lock().unwrap_or_else(|p| p.into_inner());
        a.get(location).filter(|(_, at)| at.elapsed() < Duration::from_secs(86_400)).map(|(l, _)| l.clone())
    }

    /// Reads the datacenter address of `location` for customer disks from Azure
    /// (`regionConfiguration` with a `datacenterAddressRequest`) into the cache.
    pub async fn refresh_address(&self, subscription: &str, location: &str) -> Result<Vec<String>, String> {
        let req = body::address_request(location, Sku::CustomerDisk);
        let r = self.arm.region_configuration(subscription, location, &req).await.map_err(|e| e.to_string())?;
        let lines = r.datacenter_address_response.as_ref().map(state::address_lines).unwrap_or_default();
        if lines.is_empty() {
            return Err(format!("Azure gave no datacenter address for location {location}"));
        }
        let mut a = self.addresses.lock().unwrap_or_else(|p| p.into_inner());
        a.insert(location.to_string(), (lines.clone(), Instant::now()));
        Ok(lines)
    }

    /// The datacenter address a created job names (`details.datacenterAddress`), into the
    /// cache of its location.
    pub fn remember_address(&self, location: &str, job: &model::JobResource) -> Vec<String> {
        let lines = state::job_address(job);
        if !lines.is_empty() {
            let mut a = self.addresses.lock().unwrap_or_else(|p| p.into_inner());
            a.insert(location.to_string(), (lines.clone(), Instant::now()));
        }
        lines
    }
}
