//! The Azure side of seedship.
//!
//! - [`databox`]: the Azure Resource Manager model of `Microsoft.DataBox`, api-version
//!   2025-02-01, generated from its official OpenAPI document (`azure/spec/`), with Azure's
//!   constants for the two job kinds and the format of the copy logs.
//! - [`client`]: the ARM client on the Azure SDK's pipeline (long-running operations followed
//!   as Azure answers them); [`credential`]: how it authenticates.
//! - [`blob`]: blob storage (official `azure_storage_blob`, plus a Shared Key policy).

pub mod blob;
pub mod client;
pub mod credential;
pub mod databox;
