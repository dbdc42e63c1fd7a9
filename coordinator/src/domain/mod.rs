//! The coordinator's rules, free of I/O: the seed lifecycle, disk-prep leases, the domain
//! types and their validation, and the service that ties them to a [`crate::store::Store`].

pub mod import;
pub mod lease;
pub mod model;
pub mod placement;
pub mod seed;
pub mod service;
pub mod validate;
