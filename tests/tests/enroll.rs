//! Enrollment with one-time tokens: an operator makes a token with `seedctl enroll create`;
//! an agent that has nothing but its config, the token and the CA's fingerprint makes its own
//! key, enrolls at the console listener and then works over mTLS. Every refusal is clear and
//! audited. Real coordinator, seedctl and agents on loopback.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use seedship_e2e::prep::text;
use seedship_e2e::{Cluster, Identity, Options, bin};

fn cluster() -> anyhow::Result<Cluster> {
    Cluster::start_with(Options {
        offset_clock: true,
        extra_toml: "[enroll]\ncert_lifetime = \"2h\"\n".into(),
        ..Default::default()
    })
}

/// `seedctl --json enroll create`: (token, CA fingerprint, enroll URL).
fn create(c: &mut Cluster, ops: &Identity, role: &str, name: &str, site: &str) -> anyhow::Result<serde_json::Value> {
    let args = [
        "--json",
        "enroll",
        "create",
        "--role",
        role,
        "--name",
        name,
        "--site",
        site,
        "--ttl-seconds",
        "600",
        "--reason",
        "new servers in the lab",
    ];
    let o = c.run("enroll-create", &mut c.seedctl(ops, &args))?;
    anyhow::ensure!(o.status.success(), "{}", text(&o));
    Ok(serde_json::from_slice(&o.stdout)?)
}

/// An agent's config naming files that do not exist yet, in its own folder.
fn agent_dir(c: &Cluster, name: &str, site: &str, extra: &str) -> anyhow::Result<(PathBuf, PathBuf)> {
    let dir = c.path(name);
    std::fs::create_dir_all(&dir)?;
    let cfg = dir.join("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            "site = \"{site}\"\n[coordinator]\nurl = \"{}\"\nca_file = \"ca.crt\"\ncert_file = \"agent.crt\"\nkey_file = \"agent.key\"\nserver_name = \"localhost\"\n{extra}",
            c.url()
        ),
    )?;
    Ok((cfg, dir))
}

fn enroll(program: &str, cfg: &Path, url: &str, fingerprint: &str, token: &Path, name: &str) -> Command {
    let mut cmd = Command::new(bin(program));
    cmd.arg("--config")
        .arg(cfg)
        .args(["enroll", "--url", url, "--ca-fingerprint", fingerprint, "--token-file"])
        .arg(token)
        .args(["--name", name]);
    cmd
}

fn refused(o: &Output, why: &str) {
    let t = text(o);
    assert!(!o.status.success() && t.contains(why), "expected a refusal saying {why:?}: {t}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_enrolls_once_with_its_token_and_every_misuse_is_refused_and_audited() -> anyhow::Result<()> {
    let mut c = cluster()?;
    let ops = c.issue("operator", "alice")?;
    let t = create(&mut c, &ops, "source", "dpm-*", "lab")?;
    let (token, fp) = (t["token"].as_str().unwrap().to_string(), t["ca_fingerprint"].as_str().unwrap().to_string());
    let fp = fp.as_str();
    assert!(token.starts_with("seedship-enroll-"));
    let url = c.web_url();
    let tok = c.path("token");
    std::fs::write(&tok, format!("{token}\n"))?;
    std::fs::set_permissions(&tok, std::fs::Permissions::from_mode(0o600))?;
    let (cfg, dir) = agent_dir(&c, "dpm-01", "lab", "")?;

    // A coordinator that is not the one pinned gets nothing: the token is not sent.
    let wrong = "00".repeat(32);
    let o = c.run("enroll-pin", &mut enroll("source-agent", &cfg, &url, &wrong, &tok, "dpm-01"))?;
    refused(&o, "the token was not sent");
    assert!(!dir.join("agent.key").exists(), "nothing written");
    // A name the token does not allow; a program of another role.
    let o = c.run("enroll-name", &mut enroll("source-agent", &cfg, &url, fp, &tok, "mabs-01"))?;
    refused(&o, "allows the name \"dpm-*\", not \"mabs-01\"");
    let (st_cfg, _) = agent_dir(&c, "st-x", "lab", "")?;
    let o = c.run("enroll-role", &mut enroll("copy-agent", &st_cfg, &url, fp, &tok, "dpm-01"))?;
    refused(&o, "is for a source agent, not a copy agent");
    // Not a token at all.
    let bad = c.path("bad-token");
    std::fs::write(&bad, "hunter2")?;
    let o = c.run("enroll-bad", &mut enroll("source-agent", &cfg, &url, fp, &bad, "dpm-01"))?;
    refused(&o, "not an enrollment token");

    // A clock an hour ahead (libfaketime) is refused, and the token is not spent.
    let mut ahead = Command::new("faketime");
    let cmd = enroll("source-agent", &cfg, &url, fp, &tok, "dpm-01");
    ahead.args(["-f", "+1h"]).arg(cmd.get_program()).args(cmd.get_args());
    let o = c.run("enroll-skewed", &mut ahead)?;
    refused(&o, "ahead of the coordinator's (tolerated: 300 s either way)");
    assert!(!dir.join("agent.key").exists(), "nothing written");

    // The right name: the agent's own key (0600), the certificate, the CA; then it works.
    let o = c.run("enroll-ok", &mut enroll("source-agent", &cfg, &url, fp, &tok, "dpm-01"))?;
    assert!(o.status.success() && text(&o).contains("enrolled as spiffe://e2e.test/source/dpm-01"), "{}", text(&o));
    assert_eq!(std::fs::metadata(dir.join("agent.key"))?.permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read(dir.join("ca.crt"))?, std::fs::read(c.pki.join("ca.crt"))?);
    let o = c.run("register", Command::new(bin("source-agent")).arg("--config").arg(&cfg).arg("register"))?;
    assert!(o.status.success(), "{}", text(&o));
    let o = c.run("status", Command::new(bin("source-agent")).arg("--config").arg(&cfg).arg("status"))?;
    assert!(o.status.success() && text(&o).contains("no seeds registered"), "{}", text(&o));
    // The certificate lives as [enroll] cert_lifetime says (2 h, from 5 minutes back).
    let cert = std::fs::read(dir.join("agent.crt"))?;
    let der = rustls_pemfile::certs(&mut cert.as_slice()).next().unwrap()?;
    let (_, x) = <x509_parser::certificate::X509Certificate as x509_parser::prelude::FromDer<_>>::from_der(&der)?;
    assert_eq!(x.validity().not_after.timestamp() - x.validity().not_before.timestamp(), 2 * 3600 + 300);

    // Once only.
    let (cfg2, _) = agent_dir(&c, "dpm-02", "lab", "")?;
    let o = c.run("enroll-again", &mut enroll("source-agent", &cfg2, &url, fp, &tok, "dpm-02"))?;
    refused(&o, "was used already");
    // The enrolled agent registers at its token's site only.
    let (moved, _) = agent_dir(&c, "dpm-01", "other", "")?;
    let o = c.run("register-moved", Command::new(bin("source-agent")).arg("--config").arg(&moved).arg("register"))?;
    refused(&o, "enrolled for site lab");
    // An expired token.
    let t2 = create(&mut c, &ops, "source", "dpm-02", "lab")?;
    let token2 = t2["token"].as_str().unwrap().to_string();
    std::fs::write(&tok, &token2)?;
    c.advance_clock(11.0 / 1440.0)?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let o = c.run("enroll-expired", &mut enroll("source-agent", &cfg2, &url, fp, &tok, "dpm-02"))?;
    refused(&o, "expired at");

    // The list shows who made and who used each token, never a token.
    let o = c.run("enroll-list", &mut c.seedctl(&ops, &["enroll", "list"]))?;
    let listing = text(&o);
    assert!(listing.contains("spiffe://e2e.test/source/dpm-01") && listing.contains("alice"), "{listing}");
    assert!(!listing.contains(&token) && !listing.contains(&token2), "no token in a list: {listing}");
    // Every enrollment and refusal is audited, with who created the token.
    let o = c.run("audit", &mut c.seedctl(&ops, &["--json", "audit", "list", "--limit", "1000"]))?;
    let audit: serde_json::Value = serde_json::from_slice(&o.stdout)?;
    let entries = audit.as_array().unwrap();
    let ok = entries.iter().find(|e| e["action"] == "Enroll" && e["outcome"] == "ok").expect("the enrollment");
    assert_eq!(ok["actor"], "spiffe://e2e.test/source/dpm-01");
    assert!(ok["detail"].as_str().unwrap().contains("created by spiffe://e2e.test/operator/alice"), "{ok}");
    let refusals: Vec<&str> = entries
        .iter()
        .filter(|e| e["action"] == "Enroll" && e["outcome"] != "ok")
        .map(|e| e["detail"].as_str().unwrap())
        .collect();
    for why in [
        "allows the name",
        "not a copy agent",
        "not an enrollment token",
        "ahead of the coordinator's",
        "used already",
        "expired at",
    ] {
        assert!(refusals.iter().any(|r| r.contains(why)), "{why:?} not audited: {refusals:?}");
    }
    let all = audit.to_string();
    assert!(!all.contains(&token) && !all.contains(&token2), "no token in the audit log");
    assert!(
        entries.iter().any(|e| e["action"] == "CreateEnrollToken" && e["actor"] == "spiffe://e2e.test/operator/alice")
    );
    c.finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_for_agents_and_a_coordinator_without_enroll_says_so() -> anyhow::Result<()> {
    let mut c = Cluster::start_with(Options { enroll: false, ..Default::default() })?;
    let ops = c.issue("operator", "alice")?;
    let args = ["enroll", "create", "--role", "source", "--name", "dpm-01", "--reason", "x"];
    let o = c.run("no-enroll", &mut c.seedctl(&ops, &args))?;
    refused(&o, "does not enroll agents");
    c.finish()?;
    let mut c = cluster()?;
    let ops = c.issue("operator", "alice")?;
    for (args, why) in [
        (["enroll", "create", "--role", "operator", "--name", "eve", "--reason", "x"], "tokens are for agents"),
        (["enroll", "create", "--role", "source", "--name", "*", "--reason", "x"], "would allow any name"),
        (["enroll", "create", "--role", "source", "--name", "dpm-01", "--reason", " "], "reason"),
    ] {
        let o = c.run("refused", &mut c.seedctl(&ops, &args))?;
        refused(&o, why);
    }
    // Only operators make tokens.
    let src = c.issue("source", "fs01")?;
    let o = c.run(
        "as-source",
        &mut c.seedctl(&src, &["enroll", "create", "--role", "source", "--name", "a", "--reason", "x"]),
    )?;
    refused(&o, "CreateEnrollToken is for role operator");
    c.finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_renews_its_certificate_over_its_current_one() -> anyhow::Result<()> {
    use seedship_proto::{client, pb};
    let mut c = Cluster::start()?;
    let ops = c.issue("operator", "alice")?;
    let (id, cfg) = c.enroll("source", "dpm-09", None)?;
    let (cert0, key0) = (std::fs::read(&id.cert)?, std::fs::read(&id.key)?);
    let o = c.run("renew", Command::new(bin("source-agent")).arg("--config").arg(&cfg).arg("renew"))?;
    assert!(o.status.success() && text(&o).contains("renewed spiffe://e2e.test/source/dpm-09"), "{}", text(&o));
    assert!(std::fs::read(&id.cert)? != cert0 && std::fs::read(&id.key)? != key0, "a new key and certificate");
    assert_eq!(std::fs::metadata(&id.key)?.permissions().mode() & 0o777, 0o600);
    let o = c.run("register", Command::new(bin("source-agent")).arg("--config").arg(&cfg).arg("register"))?;
    assert!(o.status.success(), "the new certificate works: {}", text(&o));

    // Over its certificate, a request for another identity is refused (and audited).
    let key = rcgen::KeyPair::generate()?;
    let mut p = rcgen::CertificateParams::default();
    p.subject_alt_names = vec![rcgen::SanType::URI("spiffe://e2e.test/source/dpm-10".try_into()?)];
    let csr_pem = p.serialize_request(&key)?.pem()?;
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
    let e = client::agents(c.connect(&id).await?)
        .renew_certificate(pb::RenewCertificateRequest { csr_pem, client_time_unix_ms: now_ms })
        .await
        .unwrap_err();
    assert!(e.code() == tonic::Code::PermissionDenied && e.message().contains("only its own"), "{e:?}");
    // A clock ten minutes behind is refused, saying by how much and what is tolerated.
    let key = rcgen::KeyPair::generate()?;
    let mut p = rcgen::CertificateParams::default();
    p.subject_alt_names = vec![rcgen::SanType::URI("spiffe://e2e.test/source/dpm-09".try_into()?)];
    let csr_pem = p.serialize_request(&key)?.pem()?;
    let e = client::agents(c.connect(&id).await?)
        .renew_certificate(pb::RenewCertificateRequest { csr_pem, client_time_unix_ms: now_ms - 600_000 })
        .await
        .unwrap_err();
    assert!(e.code() == tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("behind the coordinator's (tolerated: 300 s either way)"), "{}", e.message());

    // A stop between writing the key and putting the certificate in place: the next
    // connection finishes it.
    let next = PathBuf::from(format!("{}.next", id.cert.display()));
    std::fs::copy(&id.cert, &next)?;
    std::fs::copy(&ops.cert, &id.cert)?;
    let o = c.run("status", Command::new(bin("source-agent")).arg("--config").arg(&cfg).arg("status"))?;
    assert!(o.status.success() && !next.exists(), "{}", text(&o));

    let o = c.run("audit", &mut c.seedctl(&ops, &["--json", "audit", "list", "--limit", "1000"]))?;
    let audit: serde_json::Value = serde_json::from_slice(&o.stdout)?;
    let renewals: Vec<&serde_json::Value> =
        audit.as_array().unwrap().iter().filter(|e| e["action"] == "RenewCertificate").collect();
    assert!(
        renewals.iter().any(|e| e["outcome"] == "ok" && e["actor"] == "spiffe://e2e.test/source/dpm-09"),
        "{audit}"
    );
    for why in ["only its own", "behind the coordinator's"] {
        assert!(
            renewals.iter().any(|e| e["outcome"] != "ok" && e["detail"].as_str().unwrap_or("").contains(why)),
            "the refusal for {why:?} is audited: {audit}"
        );
    }
    c.finish()
}

/// The root's key offline: an issuing CA made with `coordinator pki intermediate` signs the
/// agents' certificates and the coordinator's own; certificates of the root and of the
/// issuing CA both work, and openssl verifies the new chains to the root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issuing_ca_signs_while_the_roots_key_is_offline() -> anyhow::Result<()> {
    use seedship_proto::{client, pb};
    let mut c = Cluster::start()?;
    let ops = c.issue("operator", "alice")?;
    let (_, root_signed) = c.enroll("source", "dpm-root", None)?;
    let issuing = c.pki.join("issuing");
    let mut make = Command::new(bin("coordinator"));
    make.args(["pki", "intermediate", "--root-dir"]).arg(&c.pki).arg("--dir").arg(&issuing);
    let o = c.run("intermediate", &mut make)?;
    assert!(o.status.success() && text(&o).contains("created issuing CA"), "{}", text(&o));
    assert_eq!(std::fs::metadata(issuing.join("issuing-ca.key"))?.permissions().mode() & 0o777, 0o600);
    // The root's key leaves the machine; the coordinator signs with the issuing CA.
    let offline = c.path("offline-root");
    std::fs::create_dir_all(&offline)?;
    std::fs::rename(c.pki.join("ca.key"), offline.join("ca.key"))?;
    c.kill9_coordinator()?;
    let toml = std::fs::read_to_string(&c.config)?;
    std::fs::write(
        &c.config,
        toml.replacen(
            "[enroll]\n",
            "[enroll]\nca_cert_file = \"pki/issuing/issuing-ca.crt\"\nserver_cert_lifetime = \"6s\"\n",
            1,
        ),
    )?;
    c.start_coordinator()?;

    let (id, cfg) = c.enroll("copy", "st-issued", None)?;
    let chain = std::fs::read_to_string(&id.cert)?;
    assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2, "the certificate and the issuing CA's: {chain}");
    let mut verify = Command::new("openssl");
    verify.arg("verify").arg("-CAfile").arg(c.pki.join("ca.crt")).arg("-untrusted").arg(&id.cert).arg(&id.cert);
    let o = c.run("openssl-verify", &mut verify)?;
    assert!(o.status.success() && text(&o).contains(": OK"), "{}", text(&o));
    let o = c.run("register", Command::new(bin("copy-agent")).arg("--config").arg(&cfg).arg("register"))?;
    assert!(o.status.success(), "{}", text(&o));
    let o = c.run("renew", Command::new(bin("copy-agent")).arg("--config").arg(&cfg).arg("renew"))?;
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(std::fs::read_to_string(&id.cert)?.matches("BEGIN CERTIFICATE").count(), 2);

    // The coordinator's own certificate comes from the issuing CA too (renewed at once: the
    // one from `pki init` outlives 6 s), and verifies to the root.
    let t0 = std::time::Instant::now();
    while !c.coordinator_logs().contains("server certificate renewed") {
        anyhow::ensure!(t0.elapsed() < Duration::from_secs(15), "the server certificate was not renewed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let served = Command::new("openssl")
        .args(["s_client", "-connect", &c.url().replace("https://", ""), "-servername", "localhost", "-CAfile"])
        .arg(c.pki.join("ca.crt"))
        .args(["-verify_return_error", "-showcerts"])
        .stdin(std::process::Stdio::null())
        .output()?;
    let served_text = text(&served);
    assert!(served_text.contains("Verify return code: 0 (ok)"), "{served_text}");
    assert!(served_text.contains("seedship issuing CA e2e.test"), "{served_text}");

    // Identities of the root keep working.
    client::operator(c.connect(&ops).await?).list_seeds(pb::ListSeedsRequest::default()).await?;
    let o =
        c.run("register-root", Command::new(bin("source-agent")).arg("--config").arg(&root_signed).arg("register"))?;
    assert!(o.status.success(), "{}", text(&o));

    // An issuing CA of another root is refused when the configuration is read, saying so.
    let other = c.path("other-pki");
    let mut init = Command::new(bin("coordinator"));
    init.args(["pki", "init", "--dir"]).arg(&other).args(["--trust-domain", "e2e.test"]);
    assert!(c.run("other-init", &mut init)?.status.success());
    let mut inter = Command::new(bin("coordinator"));
    inter.args(["pki", "intermediate", "--root-dir"]).arg(&other).arg("--dir").arg(other.join("issuing"));
    assert!(c.run("other-intermediate", &mut inter)?.status.success());
    let wrong = c.path("wrong.toml");
    std::fs::write(
        &wrong,
        std::fs::read_to_string(&c.config)?
            .replace("pki/issuing/issuing-ca.crt", &other.join("issuing/issuing-ca.crt").display().to_string()),
    )?;
    let mut check = Command::new(bin("coordinator"));
    check.args(["serve", "--print-config", "--config"]).arg(&wrong);
    let o = c.run("wrong-intermediate", &mut check)?;
    assert!(!o.status.success() && text(&o).contains("does not chain to a CA in"), "{}", text(&o));
    c.finish()
}
