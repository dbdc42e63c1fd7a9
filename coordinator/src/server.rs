//! Start-up: open the store, build the services and the TLS listener, serve until shutdown.

use std::future::Future;
use std::sync::Arc;

use seedship_proto::pb;
use tokio::net::TcpListener;
use tonic::transport::Server;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::util::MapResponseLayer;

use crate::auth::Auth;
use crate::azure::AzureSide;
use crate::clock::{Clock, OffsetFileClock, SystemClock};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::grpc::{Api, layers};
use crate::keys::MasterKey;
use crate::service::{Coordinator, Settings};

/// Runs the coordinator on `listener` until `shutdown` resolves.
pub async fn run(
    cfg: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let clock: Arc<dyn Clock> = match &cfg.clock_offset_file {
        Some(p) => {
            tracing::warn!(file = %p.display(), "the clock is offset by the number in this file (tests and demos only)");
            Arc::new(OffsetFileClock::new(p.clone()))
        }
        None => Arc::new(SystemClock),
    };
    run_with_clock(cfg, listener, shutdown, clock).await
}

pub async fn run_with_clock(
    cfg: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    clock: Arc<dyn Clock>,
) -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let server_cert = crate::tls::ServerCert::load(&cfg.tls.ca_file, &cfg.tls.cert_file, &cfg.tls.key_file)
        .map_err(Error::Internal)?;
    let tls = crate::tls::server_config(&cfg.tls.ca_file, server_cert.clone()).map_err(Error::Internal)?;
    let master_key = match &cfg.master_key_file {
        Some(p) => Some(Arc::new(MasterKey::load(p).map_err(Error::Internal)?)),
        None => None,
    };
    // The Azure side: the ARM clients are built now, so a bad credential stops the start-up
    // with its reason rather than failing the first job.
    let azure = match &cfg.azure {
        Some(a) => {
            let side = Arc::new(AzureSide::new(a.clone()).map_err(Error::Internal)?);
            tracing::info!(endpoint = %a.arm_endpoint, resource_group = %a.resource_group, "Azure Resource Manager client ready");
            Some(side)
        }
        None => None,
    };
    let store = crate::store::open(&cfg).await?;
    let mut core = Coordinator::new(
        store,
        clock,
        Settings {
            lease_ttl: cfg.leases.ttl,
            heartbeat_interval: cfg.leases.heartbeat_interval,
            release_backoff: crate::domain::lease::Backoff {
                base_ms: cfg.leases.release_backoff.as_millis() as i64,
                max_releases: cfg.leases.max_releases,
            },
        },
        master_key,
    );
    if let Some(side) = &azure {
        core = core.with_azure(side.clone());
    }
    if let Some(signer) = cfg.manifest_signer().map_err(Error::Internal)? {
        core = core.with_manifest_signer(signer);
    }
    core = core.with_placement(cfg.placement().map_err(Error::Internal)?);
    // Among several coordinators on PostgreSQL, this one is its host and address; on SQLite
    // (one coordinator per file) its host and file, so a restart takes the lease back at once.
    let here = listener.local_addr().map_err(|e| Error::Internal(format!("listener: {e}")))?;
    let instance = match &cfg.postgres {
        Some(_) => format!("{}/{here}", seedship_proto::agent::hostname()),
        None => format!("{}/{}", seedship_proto::agent::hostname(), cfg.database.display()),
    };
    core = core.with_leader(instance, cfg.workers.lease_ttl);
    let core = Arc::new(core);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let enroller = match &cfg.enroll {
        Some(e) => Some(Arc::new(crate::service::enroll::Enroller::load(&cfg.tls, e).map_err(Error::Internal)?)),
        None => None,
    };
    // The operations console, on its own listener.
    let web_addr = match &cfg.web {
        Some(w) => {
            let token = crate::web::load_token(w).map_err(Error::Internal)?;
            let l = TcpListener::bind(w.listen)
                .await
                .map_err(|e| Error::Internal(format!("cannot listen on {} for [web]: {e}", w.listen)))?;
            let addr = l.local_addr().map_err(|e| Error::Internal(format!("web listener: {e}")))?;
            let web = crate::web::Web {
                core: core.clone(),
                trust_domain: cfg.trust_domain.clone(),
                token,
                samples: crate::web::dashboard::samples(),
                enroll: enroller.clone(),
            };
            let (tls, timeout, stop) = (cfg.tls.clone(), cfg.server.handshake_timeout, stop_rx.clone());
            let cert = server_cert.clone();
            tokio::spawn(async move {
                if let Err(e) = crate::web::serve(web, &tls, cert, l, timeout, stop).await {
                    tracing::error!(error = %e, "the web console stopped");
                }
            });
            tracing::info!(%addr, "operations console listening (HTTPS: the dashboard and /metrics)");
            Some(addr)
        }
        None => None,
    };
    // The server certificate renews itself when [enroll] server_cert_lifetime says so.
    if let Some(e) = &cfg.enroll
        && let Some(lifetime) = e.server_cert_lifetime
    {
        let r = crate::workers::certs::Renewal::new(&cfg.tls, e, &cfg.trust_domain, lifetime, server_cert.clone())
            .map_err(Error::Internal)?;
        tokio::spawn(crate::workers::certs::run(Arc::downgrade(&core), Arc::new(r), stop_rx.clone()));
    }
    // The background workers run where the workers' lease is: taken (or found held) now, so
    // that their first rounds need not wait, and kept every third of its lifetime.
    if let Err(e) = core.hold_workers().await {
        tracing::warn!(error = %e, "the background workers' lease could not be taken yet; retrying");
    }
    tokio::spawn(crate::workers::leader::run(Arc::downgrade(&core), cfg.workers.lease_ttl / 3, stop_rx.clone()));
    // Revocations other coordinators made reach this one within 5 seconds.
    tokio::spawn(crate::workers::run_every(
        "revocations",
        std::time::Duration::from_secs(5),
        Arc::downgrade(&core),
        stop_rx.clone(),
        |core| async move { core.refresh_revoked().await },
    ));
    tokio::spawn(crate::workers::auditor::run(Arc::downgrade(&core), stop_rx.clone()));
    tokio::spawn(crate::workers::sweeper::run(
        Arc::downgrade(&core),
        cfg.leases.sweep_interval,
        cfg.server.idempotency_retention,
        stop_rx.clone(),
    ));
    let evidence = match crate::evidence::Signer::load(&cfg.tls.key_file, &cfg.tls.cert_file, &cfg.tls.ca_file) {
        Ok(s) => Some(Arc::new(s)),
        Err(e) => {
            tracing::warn!(error = %e, "evidence bundles cannot be signed; `seedctl evidence` will be refused");
            None
        }
    };
    let web_url = web_addr.map(|a| {
        cfg.web.as_ref().and_then(|w| w.public_url.clone()).unwrap_or_else(|| format!("https://localhost:{}", a.port()))
    });
    let enroll_ca_fingerprint = match &cfg.enroll {
        Some(_) => Some(seedship_proto::enroll::ca_fingerprint_file(&cfg.tls.ca_file).map_err(Error::Internal)?),
        None => None,
    };
    core.refresh_revoked().await.map_err(|e| Error::Internal(format!("cannot read the revocations: {e}")))?;
    let api = Api {
        auth: Auth::new(&cfg.trust_domain, core.revoked()),
        core: core.clone(),
        evidence,
        web_url,
        enroll_ca_fingerprint,
        enroller,
    };

    let channels = crate::notify::channels(&cfg.notify).map_err(Error::Internal)?;
    if !channels.is_empty() {
        let names: Vec<&str> = channels.iter().map(|c| c.name()).collect();
        tracing::info!(channels = ?names, "notifications on");
        tokio::spawn(crate::workers::notifier::run(
            Arc::downgrade(&core),
            Arc::new(channels),
            cfg.notify.external_url.clone(),
            stop_rx.clone(),
        ));
    }
    if let Some(side) = azure {
        tokio::spawn(crate::workers::jobs::run(Arc::downgrade(&core), side.clone(), stop_rx.clone()));
        tokio::spawn(crate::workers::verifier::run(Arc::downgrade(&core), side.clone(), stop_rx.clone()));
        tokio::spawn(crate::workers::vaulter::run(Arc::downgrade(&core), side, stop_rx));
    }

    let (health, health_svc) = tonic_health::server::health_reporter();
    health.set_serving::<pb::agent_service_server::AgentServiceServer<Api>>().await;
    health.set_serving::<pb::seed_service_server::SeedServiceServer<Api>>().await;
    health.set_serving::<pb::disk_prep_service_server::DiskPrepServiceServer<Api>>().await;
    health.set_serving::<pb::shipping_service_server::ShippingServiceServer<Api>>().await;
    health.set_serving::<pb::operator_service_server::OperatorServiceServer<Api>>().await;

    let addr = listener.local_addr().map_err(|e| Error::Internal(format!("listener: {e}")))?;
    let incoming = crate::tls::incoming(listener, tls, cfg.server.handshake_timeout);
    if let Some(ready) = &cfg.ready_file {
        write_ready_file(ready, addr, web_addr)?;
    }
    tracing::info!(%addr, database = %cfg.database_name(), trust_domain = %cfg.trust_domain, "coordinator listening (mTLS, TLS 1.3)");

    let max = cfg.server.max_message_bytes;
    macro_rules! svc {
        ($server:ty) => {
            <$server>::new(api.clone()).max_decoding_message_size(max).max_encoding_message_size(max)
        };
    }
    let limits = crate::grpc::limits::Limits {
        per_identity: cfg.server.max_requests_per_identity,
        sources: cfg.server.max_source_requests,
        body_timeout: cfg.server.body_timeout,
        max_body: max,
    };
    let result = Server::builder()
        .timeout(cfg.server.request_timeout)
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .max_concurrent_streams(cfg.server.max_streams_per_connection)
        .trace_fn(|req| seedship_telemetry::server_span(req.headers(), req.uri().path()))
        .layer(crate::grpc::limits::LimitLayer::new(limits))
        .layer(crate::grpc::audit::AuditLayer(core.clone()))
        .layer(GlobalConcurrencyLimitLayer::new(cfg.server.max_concurrent_requests))
        .layer(MapResponseLayer::new(layers::rewrite_status))
        .add_service(health_svc)
        .add_service(svc!(pb::agent_service_server::AgentServiceServer<Api>))
        .add_service(svc!(pb::seed_service_server::SeedServiceServer<Api>))
        .add_service(svc!(pb::disk_prep_service_server::DiskPrepServiceServer<Api>))
        .add_service(svc!(pb::shipping_service_server::ShippingServiceServer<Api>))
        .add_service(svc!(pb::operator_service_server::OperatorServiceServer<Api>))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await;
    let _ = stop_tx.send(true);
    tracing::info!("coordinator stopped");
    result.map_err(|e| Error::Internal(format!("server: {e}")))
}

/// Announces the bound address: written to a temporary file, then renamed, so a reader never
/// sees half of it.
fn write_ready_file(
    path: &std::path::Path,
    addr: std::net::SocketAddr,
    web: Option<std::net::SocketAddr>,
) -> Result<()> {
    let mut body = serde_json::json!({ "addr": addr.to_string(), "pid": std::process::id() });
    if let Some(w) = web {
        body["web"] = serde_json::Value::String(w.to_string());
    }
    let body = body.to_string();
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, body)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| Error::Internal(format!("cannot write ready file {}: {e}", path.display())))
}
