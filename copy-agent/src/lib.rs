//! The seedship copy agent, on a copy station: claims disk-prep work from the coordinator,
//! writes each seed onto shipping disks an Azure datacenter can import (NTFS volumes in
//! Azure's layouts, spanning them by plan), reads them back, and reports every drive. See
//! `docs/formats/media.md` for what it writes.

pub mod board;
pub mod config;
pub mod disks;
pub mod history;
pub mod keeper;
pub mod media;
pub mod prepare;
pub mod run;
pub mod set;
pub mod staging;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub use config::Config;
