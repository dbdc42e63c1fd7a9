//! The emulated Azure side of seedship, one crate: the rules of `Microsoft.DataBox` 2025-02-01
//! and of its datacenter ([`service`], pure), the Azure Resource Manager face ([`arm`]: path
//! segments matched case-insensitively, ARM's checks and headers, long-running operations,
//! paging, the record of every exchange), the datacenter's commands ([`datacenter`]) and its
//! copy of disks into blob storage ([`ingest`]; NTFS volumes read as Azure reads them in
//! [`ntfs_ingest`]), the process around them ([`server`]: state,
//! TLS), and the `seedship-emulator` binary.

pub mod arm;
pub mod datacenter;
pub mod ingest;
pub mod ntfs_ingest;
pub mod server;
pub mod service;
