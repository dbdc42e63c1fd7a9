//! The seedship copy agent, on a copy station: claims disk-prep work from the coordinator,
//! writes each seed onto encrypted shipping disks (spanning them by plan), verifies them, and
//! reports every drive. See `docs/formats/disk.md` for what it writes.

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
