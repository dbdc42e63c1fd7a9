//! The Azure side of seedship.
//!
//! - [`arm`]: the Azure Resource Manager model of `Microsoft.ImportExport`, api-version
//!   2021-01-01, field for field as its official OpenAPI description and examples have it.
//! - [`client`]: the ARM client on the Azure SDK's pipeline; [`credential`]: how it authenticates.
//! - [`blob`]: blob storage (official `azure_storage_blob`, plus a Shared Key policy).
//! - [`emulator`]: the rules of the emulated service and datacenter.
//! - [`openapi`]: checks JSON bodies against the official OpenAPI description.

pub mod arm;
pub mod blob;
pub mod client;
pub mod credential;
pub mod databox;
pub mod emulator;
pub mod openapi;
