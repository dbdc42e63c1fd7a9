//! The coordinator accepts only TLS 1.3 with a client certificate from its own CA.

use std::time::Duration;

use seedship_e2e::{Cluster, Identity, bin, rid, run_ok, wait_for};
use seedship_proto::pb;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity as TlsIdentity};

/// Tries one RPC with a hand-built TLS config; returns the error text if anything failed.
async fn try_register(url: &str, tls: ClientTlsConfig) -> Result<(), String> {
    let channel = Channel::from_shared(url.to_string())
        .map_err(|e| e.to_string())?
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| seedship_proto::client::error_chain(&e))?;
    let mut c = pb::agent_service_client::AgentServiceClient::new(channel);
    c.register_agent(pb::RegisterAgentRequest { request_id: rid(), ..Default::default() })
        .await
        .map(|_| ())
        .map_err(|s| format!("{s:?}"))
}

/// Waits until the coordinator has logged a refused handshake whose reason contains `why`.
fn refusal_logged(c: &Cluster, why: &str) -> anyhow::Result<()> {
    wait_for(&format!("a logged TLS refusal with {why:?}"), Duration::from_secs(5), || {
        c.coordinator_logs().lines().any(|l| l.contains("TLS handshake refused") && l.contains(why)).then_some(())
    })
}

fn ca(c: &Cluster) -> Certificate {
    Certificate::from_pem(std::fs::read(c.pki.join("ca.crt")).unwrap())
}

fn tls_identity(id: &Identity) -> TlsIdentity {
    TlsIdentity::from_pem(std::fs::read(&id.cert).unwrap(), std::fs::read(&id.key).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_clients_without_a_certificate_from_our_ca() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let c = Cluster::start()?;
    let good = c.issue("source", "fs01")?;

    // Control: our own certificate works, so the refusals below are about the certificate.
    let base = ClientTlsConfig::new().ca_certificate(ca(&c)).domain_name("localhost");
    try_register(&c.url(), base.clone().identity(tls_identity(&good))).await.map_err(anyhow::Error::msg)?;

    // 1. No client certificate.
    try_register(&c.url(), base.clone()).await.unwrap_err();
    refusal_logged(&c, "peer sent no certificates")?;

    // 2. A certificate from another CA (a second, unrelated PKI).
    let other = c.path("other-pki");
    run_ok(
        std::process::Command::new(bin("coordinator"))
            .args(["pki", "init", "--dir"])
            .arg(&other)
            .args(["--trust-domain", "e2e.test"]),
    )?;
    run_ok(
        std::process::Command::new(bin("coordinator"))
            .args(["pki", "issue", "--dir"])
            .arg(&other)
            .args(["--role", "source", "--name", "fs01"]),
    )?;
    let foreign = Identity { name: "fs01".into(), cert: other.join("fs01.crt"), key: other.join("fs01.key") };
    try_register(&c.url(), base.clone().identity(tls_identity(&foreign))).await.unwrap_err();
    // Same subject name as our CA, different key: the signature check is what refuses it.
    refusal_logged(&c, "invalid peer certificate")?;
    // seedctl with it says once, in words, what is wrong and what to check.
    let foreign_op = other.join("alice");
    run_ok(
        std::process::Command::new(bin("coordinator"))
            .args(["pki", "issue", "--dir"])
            .arg(&other)
            .args(["--role", "operator", "--name", "alice"]),
    )?;
    let alice = Identity {
        name: "alice".into(),
        cert: foreign_op.with_extension("crt"),
        key: foreign_op.with_extension("key"),
    };
    let mut c = c;
    let out = c.run("seedctl-foreign", &mut c.seedctl(&alice, &["seeds"]))?;
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    eprintln!("seedctl with a foreign certificate: {err}");
    assert!(!out.status.success(), "{err}");
    assert_eq!(err.matches("error").count(), 1, "one error, said once: {err}");
    assert!(err.contains("certificate") && err.contains("coordinator's CA"), "{err}");
    // So does an agent with it.
    let cfg = c.agent_config(&alice, None)?;
    let out = c.run(
        "copy-agent-foreign",
        std::process::Command::new(bin("copy-agent")).arg("--config").arg(&cfg).arg("register"),
    )?;
    let log = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "{log}");
    // Its log has the retries; the error a person reads is its last line.
    let err = log.lines().filter(|l| l.starts_with("error:")).collect::<Vec<_>>().join("\n");
    assert_eq!(err.matches("error").count(), 1, "one error, said once: {log}");
    assert!(err.contains("certificate") && err.contains("coordinator's CA"), "{log}");

    // 3. An expired certificate signed by our own CA.
    let (issuer, td) = coordinator::pki::load_ca(&c.pki)?;
    let id = seedship_proto::identity::SpiffeId::new(&td, seedship_proto::identity::Role::Source, "old")?;
    let (cert, key) = coordinator::pki::issue_leaf(&issuer, &id, &[], 30, -400)?;
    try_register(&c.url(), base.clone().identity(TlsIdentity::from_pem(cert, key))).await.unwrap_err();
    refusal_logged(&c, "certificate expired")?;

    // 4. A certificate signed by our own CA for an operator, but without the clientAuth
    //    extended key usage (none at all, or serverAuth only): not a client certificate.
    let id = seedship_proto::identity::SpiffeId::new(&td, seedship_proto::identity::Role::Operator, "noeku")?;
    for eku in [vec![], vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth]] {
        let (cert, key) = coordinator::pki::issue_leaf_with(&issuer, &id, &[], 30, 0, eku)?;
        let ch = tonic::transport::Channel::from_shared(c.url())?
            .tls_config(base.clone().identity(TlsIdentity::from_pem(cert, key)))?;
        let refused = match ch.connect().await {
            Err(_) => true,
            Ok(ch) => seedship_proto::pb::operator_service_client::OperatorServiceClient::new(ch)
                .list_seeds(seedship_proto::pb::ListSeedsRequest::default())
                .await
                .is_err(),
        };
        assert!(refused, "an operator certificate without clientAuth was accepted");
    }
    wait_for("the missing clientAuth logged", Duration::from_secs(5), || {
        c.coordinator_logs().contains("lacks the clientAuth extended key usage").then_some(())
    })?;

    // None of them got through to a handler.
    assert_eq!(c.coordinator_logs().matches("agent registered").count(), 1, "only the control call may succeed");
    c.finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_tls_1_2() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let c = Cluster::start()?;
    let id = c.issue("copy", "station-01")?;
    // A rustls client limited to TLS 1.2 with a valid client certificate.
    let (chain, _) = seedship_proto::keyfile::read_certs(&id.cert)?;
    let (key, _) = seedship_proto::keyfile::read_key(&id.key)?;
    let (roots_der, _) = seedship_proto::keyfile::read_certs(&c.pki.join("ca.crt"))?;
    let mut roots = rustls::RootCertStore::empty();
    for r in roots_der {
        roots.add(r)?;
    }
    let cfg = rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS12])
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)?;
    let tcp = tokio::net::TcpStream::connect(c.addr).await?;
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg));
    let name = rustls::pki_types::ServerName::try_from("localhost")?;
    let res = connector.connect(name, tcp).await;
    assert!(res.is_err(), "a TLS 1.2 handshake must be refused");
    refusal_logged(&c, "TLS")?;
    c.finish()
}
