//! The Azure side of seedship.
//!
//! - [`arm`]: the Azure Resource Manager model of `Microsoft.ImportExport`, api-version
//!   2021-01-01, field for field as its official OpenAPI description and examples have it.

pub mod arm;
pub mod client;
pub mod credential;
pub mod emulator;
