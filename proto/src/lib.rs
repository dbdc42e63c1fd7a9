//! The seedship.v1 wire contract and what every program needs to speak it.
//!
//! - [`pb`]: the generated protobuf messages and tonic clients/servers.
//! - [`identity`]: SPIFFE identities (`spiffe://<trust-domain>/<role>/<name>`) and roles.
//! - [`client`]: the mTLS client configuration shared by agents and `seedctl`.
//! - [`keyfile`]: reading certificate and key files with clear errors and a permission check.
//! - [`stdout`]: a command's output, ending quietly when its reader goes away (`| head`).

pub mod agent;
pub mod audit;
pub mod cli;
pub mod client;
pub mod config;
pub mod enroll;
pub mod human;
pub mod identity;
pub mod keyfile;
pub mod signals;
pub mod stdout;

/// Generated code for package `seedship.v1`.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("seedship.v1");

    impl std::fmt::Debug for GetDriveKeyResponse {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("GetDriveKeyResponse").field("recovery_password", &"<redacted>").finish()
        }
    }

    impl std::fmt::Debug for GetPasskeyResponse {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("GetPasskeyResponse")
                .field("passkey", &"<redacted>")
                .field("user_defined", &self.user_defined)
                .finish()
        }
    }

    impl std::fmt::Debug for GetLeasePasskeyResponse {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("GetLeasePasskeyResponse").field("passkey", &"<redacted>").finish()
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

/// The exit code of every seedship program for a command line or a configuration it cannot
/// use (clap's own code for a usage error). 1 is a failure of the work itself.
pub const EXIT_USAGE: u8 = 2;

/// Largest gRPC message either side accepts (control messages are small).
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

#[cfg(test)]
mod tests {
    use super::pb;

    #[test]
    fn messages_that_carry_a_key_or_a_passkey_never_show_it_in_debug() {
        let secret = "111111-222222-333333-444444-555555-666666-111111-222222";
        let shown = [
            format!("{:?}", pb::GetDriveKeyResponse { recovery_password: secret.into() }),
            format!("{:?}", pb::GetPasskeyResponse { passkey: secret.into(), user_defined: true }),
            format!("{:?}", pb::GetLeasePasskeyResponse { passkey: secret.into() }),
            format!("{:?}", pb::DriveReport { recovery_password: secret.into(), ..Default::default() }),
        ];
        for s in shown {
            assert!(!s.contains("111111") && s.contains("<redacted>"), "{s}");
        }
    }
}
