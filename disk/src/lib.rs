//! What goes on a shipping disk (`docs/formats/media.md`), and how it is read back.
//!
//! - [`key`]: each drive's own random key, shown and escrowed as a BitLocker recovery
//!   password (48 digits in 8 groups of 6), the form the Azure Data Box job's `bitLockerKey`
//!   field takes.
//! - [`plan`]: the placement of a whole staging set over a disk set, whole files, balanced,
//!   checked against each disk's NTFS room and the Azure limit of 10 drives per job, before
//!   anything is written.
//! - [`azure`]: what the Azure datacenter reads: the customer disk's drive manifest
//!   (`<DriveManifest Version="2014-11-01">`, [`azure::manifest`]) and Azure's rules for
//!   container and blob names ([`azure::names`]).
//! - [`ntfs`]: the first data volume of a disk read raw as NTFS (the datacenter's view, and
//!   the copy station's read-back), independent of the mount that wrote it.

pub mod azure;
pub mod key;
pub mod ntfs;
pub mod plan;
