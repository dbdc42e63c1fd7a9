//! Bad input: clear errors, the right codes, nothing written.

use prost::Message;
use seedship_e2e::{Cluster, Options, bin, rid, seed_request};
use seedship_proto::{client, pb};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_oversized_and_invalid_requests_get_the_right_codes() -> anyhow::Result<()> {
    let c = Cluster::start()?;
    let fs = c.issue("source", "fs01")?;
    let conn = c.connect(&fs).await?;
    let channel = client::endpoint(&c.client_config(&fs))?.connect().await?;

    // Not protobuf at all.
    let e = seedship_e2e::raw::call(channel.clone(), "/seedship.v1.SeedService/RegisterSeed", vec![0xff; 64])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");

    // Over the 1 MiB limit.
    let mut big = seed_request("job-big");
    big.staging_location = "x".repeat(2 * 1024 * 1024);
    let e = seedship_e2e::raw::call(channel.clone(), "/seedship.v1.SeedService/RegisterSeed", big.encode_to_vec())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");

    // A bad field is named.
    let mut bad = seed_request("job bad");
    bad.job_name = "job bad".into();
    let e = client::seeds(conn.clone()).register_seed(bad).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("invalid job_name"), "{}", e.message());
    let mut bad = seed_request("job-ok");
    bad.manifest_root = "not-hex".into();
    let e = client::seeds(conn.clone()).register_seed(bad).await.unwrap_err();
    assert!(e.message().starts_with("invalid manifest_root"), "{}", e.message());

    // Nothing was written by any of them.
    let seeds = client::seeds(conn).list_own_seeds(pb::ListOwnSeedsRequest {}).await?.into_inner().seeds;
    assert!(seeds.is_empty(), "{seeds:?}");
    c.finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_database_gives_unavailable_and_writes_nothing() -> anyhow::Result<()> {
    // SQLite's own lock (PostgreSQL's counterpart is `tests/tests/postgres.rs`).
    let c = Cluster::start_with(Options { db_busy_timeout: "300ms", postgres: false, ..Default::default() })?;
    let (fs, ops) = (c.issue("source", "fs01")?, c.issue("operator", "alice")?);
    let (src, op) = (c.connect(&fs).await?, c.connect(&ops).await?);

    // Another process holds the write lock.
    let db = rusqlite::Connection::open(c.path("coordinator.db"))?;
    db.execute_batch("BEGIN EXCLUSIVE")?;
    let e = client::seeds(src.clone()).register_seed(seed_request("job-locked")).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    let e = client::agents(src.clone())
        .register_agent(pb::RegisterAgentRequest { request_id: rid(), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    db.execute_batch("ROLLBACK")?;

    // Nothing half-written: no seed, no agent, no history.
    let mut o = client::operator(op);
    assert!(o.list_seeds(pb::ListSeedsRequest::default()).await?.into_inner().seeds.is_empty());
    assert!(o.list_agents(pb::ListAgentsRequest::default()).await?.into_inner().agents.is_empty());
    assert!(o.list_events(pb::ListEventsRequest::default()).await?.into_inner().events.is_empty());
    // And the same call succeeds once the lock is gone.
    client::seeds(src).register_seed(seed_request("job-locked")).await?;
    c.finish()
}

#[test]
fn bad_config_and_key_files_are_named_at_start_up() -> anyhow::Result<()> {
    let mut c = Cluster::start()?;
    // An unknown field.
    let bad = c.path("bad.toml");
    std::fs::write(&bad, std::fs::read_to_string(&c.config)?.replace("trust_domain", "trust_domian"))?;
    let out =
        c.run("bad-config", std::process::Command::new(bin("coordinator")).args(["serve", "--config"]).arg(&bad))?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("bad.toml") && err.contains("trust_domian"), "{err}");

    // A world-readable private key.
    use std::os::unix::fs::PermissionsExt;
    let key = c.pki.join("coordinator.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644))?;
    let out =
        c.run("open-key", std::process::Command::new(bin("coordinator")).args(["serve", "--config"]).arg(&c.config))?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("coordinator.key") && err.contains("chmod 600"), "{err}");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;

    // An unreadable (missing) key file for an agent.
    let fs = c.issue("source", "fs01")?;
    let cfg = c.agent_config(&fs, None)?;
    std::fs::remove_file(&fs.key)?;
    let out = c.run(
        "agent-no-key",
        std::process::Command::new(bin("source-agent")).arg("--config").arg(&cfg).arg("register"),
    )?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("fs01.key"), "{err}");
    c.finish()
}
