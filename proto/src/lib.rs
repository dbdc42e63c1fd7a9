//! The seedship.v1 wire contract and what every program needs to speak it.
//!
//! - [`pb`]: the generated protobuf messages and tonic clients/servers.
//! - [`identity`]: SPIFFE identities (`spiffe://<trust-domain>/<role>/<name>`) and roles.
//! - [`client`]: the mTLS client configuration shared by agents and `seedctl`.
//! - [`keyfile`]: reading certificate and key files with clear errors and a permission check.

pub mod agent;
pub mod client;
pub mod config;
pub mod human;
pub mod identity;
pub mod keyfile;
pub mod signals;

/// Generated code for package `seedship.v1`.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("seedship.v1");

    impl std::fmt::Debug for GetDriveKeyResponse {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("GetDriveKeyResponse").field("recovery_password", &"<redacted>").finish()
        }
    }

    impl std::fmt::Debug for DriveReport {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("DriveReport")
                .field("drive_id", &self.drive_id)
                .field("position", &self.position)
                .field("capacity_bytes", &self.capacity_bytes)
                .field("bytes_written", &self.bytes_written)
                .field("manifest_file", &self.manifest_file)
                .field("manifest_hash", &self.manifest_hash)
                .field("drive_header_hash", &self.drive_header_hash)
                .field("recovery_password", &"<redacted>")
                .finish()
        }
    }
}

/// Largest gRPC message either side accepts (control messages are small).
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;
