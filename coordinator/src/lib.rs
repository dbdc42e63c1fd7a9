//! The seedship coordinator.
//!
//! | module | role |
//! |---|---|
//! | [`server`] | start-up: store, services, TLS listener, layers |
//! | [`grpc`] | thin tonic handlers and the proto <-> domain boundary |
//! | [`auth`] | identity from the client certificate; roles per RPC |
//! | [`domain`] | seed lifecycle, leases, validation, the domain service |
//! | [`store`] | the `Store` trait and its SQLite backend |
//! | [`sweeper`] | returns expired leases to the queue |
//! | [`jobs`] | the Azure worker: creates import jobs, follows them, deadlines, shipping |
//! | [`metrics`] | OpenTelemetry metrics |
//! | [`web`] | the operations console's HTTPS listener: `/metrics` |
//! | [`evidence`] | the signed evidence bundle of a seed (chain of custody) |
//! | [`observe`] | what this process counts for `/metrics` (lease calls, bytes written) |
//! | [`verifier`] | checks each imported seed against its manifest; asks for repairs |
//! | [`vaulter`] | copies a verified seed into its server's vault; the first recovery points |
//! | [`pki`] | `coordinator pki init/issue` |
//! | [`keys`] | sealing drive keys under the master key |
//! | [`config`] | the typed configuration |
//! | [`ops`] | the operator CLI (`seedctl`) rendering |

pub mod auth;
pub mod azure;
pub mod clock;
pub mod config;
pub mod domain;
pub mod error;
pub mod evidence;
pub mod grpc;
pub mod keys;
pub mod metrics;
pub mod notify;
pub mod observe;
pub mod pki;
pub mod server;
pub mod service;
pub mod store;
pub mod tls;
pub mod web;
pub mod workers;

pub use server::run;
