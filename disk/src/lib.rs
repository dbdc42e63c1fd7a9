//! The seedship shipping-disk format, version 1 (`docs/formats/disk.md`).
//!
//! - [`key`]: each drive's own random key, shown and escrowed as a BitLocker-style recovery
//!   password (48 digits in 8 groups of 6), the form the Azure Data Box job's
//!   `bitLockerKey` field takes; the keys derived from it; the key-check value a disk header
//!   carries so a wrong key is detected without holding key material.
//! - [`plan`]: the placement of a whole staging set over a disk set, balanced, splitting files
//!   across disks only where they do not fit, checked against each disk's capacity and the
//!   Azure limit of 10 drives per job, before anything is written.
//! - [`azure`]: what the Azure datacenter reads: the customer disk's drive manifest
//!   (`<DriveManifest Version="2014-11-01">`, [`azure::manifest`]) and Azure's rules for
//!   container and blob names ([`azure::names`]).
//! - [`ntfs`]: the first data volume of a disk read raw as NTFS (the datacenter's view, and
//!   the copy station's read-back), independent of the mount that wrote it.
//! - [`format`]: the disk itself: header, encrypted extents, journal, sealed drive manifest;
//!   [`format::DiskWriter`] (resumable, byte-identical after a crash) and the independent
//!   [`format::DiskReader`].

pub mod azure;
pub mod format;
pub mod key;
pub mod ntfs;
pub mod plan;
