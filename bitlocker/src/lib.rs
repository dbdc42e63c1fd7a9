//! BitLocker volumes written from Linux: what Azure's customer-disk import unlocks with the
//! job's recovery password (`bitLockerKey`), and what Microsoft's Data Box Disks are.
//!
//! Written from the published descriptions of the format (libyal/libbde's "BitLocker Drive
//! Encryption (BDE) format" and the structures dislocker reads); every field we set, and
//! why, is in `docs/formats/bitlocker.md`. The proof that it is BitLocker is that readers we
//! did not write (dislocker, libbde, cryptsetup) open it: `bitlocker/tests/`.
//!
//! - [`keys`]: the recovery password stretched into the key that protects the volume master
//!   key (VMK), and BitLocker's AES-CCM key wrapping.
//! - [`convert`]: a written NTFS volume encrypted in place, resumable after a crash.
//! - [`dislocker`]: unlocking with dislocker-fuse, the reader the station and the emulated
//!   datacenter use.
//! - [`volume`]: the volume header, the three FVE metadata blocks with their validation, the
//!   protectors, the backup of the NTFS boot sectors, and XTS-AES over the sectors.

pub mod convert;
pub mod dislocker;
pub mod keys;
pub mod volume;
