//! What an Azure datacenter reads from a shipped disk: the drive manifest of a customer disk
//! ([`manifest`]) and Azure's rules for container and blob names ([`names`]).

pub mod manifest;
pub mod names;
