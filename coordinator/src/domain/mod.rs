//! The coordinator's rules, free of I/O: the seed lifecycle, disk-prep leases, the import
//! job (stages, deadlines, creation rules), placement, the domain types and their validation.
//! The use cases that load, decide with these rules and save are in [`crate::service`].

pub mod enroll;
pub mod import;
pub mod lease;
pub mod model;
pub mod notify;
pub mod placement;
pub mod round;
pub mod seed;
pub mod validate;
