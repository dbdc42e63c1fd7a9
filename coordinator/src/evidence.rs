//! The evidence bundle of one seed (chain of custody): what an auditor checks offline with
//! standard tools. The coordinator assembles it from its records and signs the list of hashes
//! with its own key (ECDSA P-256, the key of its TLS certificate), so a bundle cannot be made
//! or changed by whoever carries it. See `docs/operations.md` ("Evidence bundle") and
//! `deploy/evidence/verify.sh`.

use std::path::Path;

use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::clock::rfc3339;
use crate::error::{Error, Result};
use crate::service::Coordinator;

/// The coordinator's signing key and the certificates an auditor checks it with.
pub struct Signer {
    key: EcdsaKeyPair,
    cert_pem: Vec<u8>,
    ca_pem: Vec<u8>,
}

impl Signer {
    /// From the coordinator's TLS files (`[tls]`): an ECDSA P-256 key (what `coordinator pki
    /// init` makes).
    pub fn load(key_file: &Path, cert_file: &Path, ca_file: &Path) -> std::result::Result<Signer, String> {
        let (key, _) = seedship_proto::keyfile::read_key(key_file).map_err(|e| e.to_string())?;
        let rustls::pki_types::PrivateKeyDer::Pkcs8(der) = key else {
            return Err(format!("{}: evidence bundles are signed with a PKCS#8 ECDSA P-256 key", key_file.display()));
        };
        let key = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_ASN1_SIGNING,
            der.secret_pkcs8_der(),
            &ring::rand::SystemRandom::new(),
        )
        .map_err(|e| {
            format!("{}: not an ECDSA P-256 key ({e}); evidence bundles cannot be signed", key_file.display())
        })?;
        let (_, cert_pem) = seedship_proto::keyfile::read_certs(cert_file).map_err(|e| e.to_string())?;
        let (_, ca_pem) = seedship_proto::keyfile::read_certs(ca_file).map_err(|e| e.to_string())?;
        Ok(Signer { key, cert_pem, ca_pem })
    }

    fn sign(&self, data: &[u8]) -> Result<Vec<u8>> {
        self.key
            .sign(&ring::rand::SystemRandom::new(), data)
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| Error::Internal("signing the evidence bundle failed".into()))
    }
}

fn pretty(v: &Value) -> Vec<u8> {
    let mut b = serde_json::to_vec_pretty(v).expect("serializes");
    b.push(b'\n');
    b
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The files of the bundle of `seed`, in order; the last three are SHA256SUMS, its signature
/// and the certificates.
pub async fn bundle(core: &Coordinator, signer: &Signer, seed: &str) -> Result<Vec<(String, Vec<u8>)>> {
    let d = core.seed_detail(seed).await?;
    let s = &d.seed;
    let job = &s.spec.job_name;
    let mut history = core.list_events(Some(&s.seed_id), 1000, 0).await?;
    history.reverse();
    let verification = core.verification(&s.seed_id).await?;
    let points = core.recovery_points(Some(&s.owner)).await?;
    let first_point = points.iter().find(|p| p.seed_id.as_deref() == Some(s.seed_id.as_str()));
    let mut audit = Vec::new();
    let mut after = 0;
    loop {
        let page = core.audit_list(after, 1000, Some(job)).await?;
        let n = page.len();
        if let Some(l) = page.last() {
            after = l.seq;
        }
        audit.extend(page);
        if n < 1000 {
            break;
        }
    }
    let head_seq = core.audit_list_head().await?;
    let head = core.audit_list(head_seq - 1, 1, None).await?.pop();
    let now = core.now();

    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let seed_doc = json!({
        "bundle_version": 1,
        "made": rfc3339(now),
        "seed_id": s.seed_id, "job_name": job, "server": s.owner, "state": s.state.as_str(),
        "state_reason": s.state_reason, "kind": s.kind.as_str(),
        "storage_account": s.spec.storage_account, "container": s.spec.container,
        "location": s.spec.location, "subscription_id": s.spec.subscription_id,
        "manifest_root": s.spec.manifest_root, "total_bytes": s.spec.total_bytes, "file_count": s.spec.file_count,
        "registered": rfc3339(s.created_ms),
    });
    files.push(("seed.json".into(), pretty(&seed_doc)));
    // Each disk: its serial, who prepared it (the station's identity and the lease it held),
    // its manifest's hashes. Never its key: only that the coordinator holds one.
    let lease_by: Vec<(&str, String)> =
        history.iter().filter(|h| h.event == "lease_claimed").map(|h| (h.actor.as_str(), rfc3339(h.at_ms))).collect();
    let disks: Vec<Value> = d
        .drives
        .iter()
        .map(|dr| {
            json!({
                "serial": dr.spec.drive_id, "position": dr.spec.position,
                "capacity_bytes": dr.spec.capacity_bytes, "bytes_written": dr.spec.bytes_written,
                "manifest_file": dr.spec.manifest_file, "manifest_hash_md5": dr.spec.manifest_hash,
                "drive_header_hash": dr.spec.drive_header_hash, "status": dr.spec.status.as_str(),
                "prepared_by": dr.reported_by,
                "station": dr.reported_by.rsplit('/').next().unwrap_or_default(),
                "reported": rfc3339(dr.reported_ms),
                "key_escrowed": dr.has_key,
            })
        })
        .collect();
    files.push((
        "disks.json".into(),
        pretty(&json!({ "disks": disks, "leases": lease_by.iter().map(|(a, t)| json!({"station": a, "claimed": t})).collect::<Vec<_>>() })),
    ));
    files.push((
        "shipping.json".into(),
        pretty(
            &d.shipping
                .as_ref()
                .map(|sh| {
                    json!({
                        "carrier": sh.spec.carrier, "tracking_number": sh.spec.tracking_number,
                        "drive_count": sh.spec.drive_count, "ship_date": sh.spec.ship_date,
                        "recorded_by": sh.recorded_by, "recorded": rfc3339(sh.recorded_ms),
                        "confirmed_by_azure": sh.confirmed_ms.map(rfc3339),
                    })
                })
                .unwrap_or(Value::Null),
        ),
    ));
    let stages: Vec<Value> = history
        .iter()
        .filter(|h| h.event.starts_with("azure_") || h.actor.starts_with("coordinator/jobs"))
        .map(|h| json!({ "at": rfc3339(h.at_ms), "event": h.event, "what": h.reason, "seed_state": h.to.as_str() }))
        .collect();
    let job_doc = d.job.as_ref().map(|j| {
        json!({
            "job_name": j.intent.job_name, "azure_state": j.azure_state, "phase": j.phase.as_str(),
            "created": j.created_ms.map(rfc3339), "shipped": j.shipped_ms.map(rfc3339),
            "drives": j.drives.iter().map(|dr| json!({
                "serial": dr.drive_id, "state": dr.state, "copy_status": dr.copy_status,
                "percent_complete": dr.percent_complete, "bytes_succeeded": dr.bytes_succeeded,
                "error_log": dr.error_log_uri, "verbose_log": dr.verbose_log_uri,
            })).collect::<Vec<_>>(),
        })
    });
    // The copy logs Azure wrote (error log, and verbose log when asked for), read from the
    // seed's own storage account; one that cannot be read now is named with the reason.
    let mut logs = Vec::new();
    let mut log_files = Vec::new();
    if let (Some(side), Some(j)) = (core.azure(), d.job.as_ref()) {
        let account = j.intent.storage_account_id.rsplit('/').next().unwrap_or_default().to_string();
        for dr in &j.drives {
            for link in [&dr.error_log_uri, &dr.verbose_log_uri] {
                let Some(name) = crate::workers::jobs::log_name(link) else { continue };
                let got = match side.accounts.store(&account) {
                    Ok(store) => store.download(seedship_azure::databox::copylog::LOG_CONTAINER, &name).await,
                    Err(e) => Err(e),
                };
                match got {
                    Ok(bytes) => {
                        logs.push(json!({ "disk": dr.drive_id, "log": name, "file": format!("copylog-{name}") }));
                        log_files.push((format!("copylog-{name}"), bytes));
                    }
                    Err(e) => logs.push(json!({ "disk": dr.drive_id, "log": name, "not_read": e.to_string() })),
                }
            }
        }
    }
    files.push(("azure.json".into(), pretty(&json!({ "job": job_doc, "stages": stages, "copy_logs": logs }))));
    files.extend(log_files);
    files.push((
        "verification.json".into(),
        pretty(&json!({
            "checked": verification.checked_ms.map(rfc3339),
            "files": verification.files,
            "repairs": verification.repairs,
        })),
    ));
    files.push(("recovery-point.json".into(), pretty(&serde_json::to_value(first_point).expect("serializes"))));
    files.push(("history.json".into(), pretty(&serde_json::to_value(&history).expect("serializes"))));
    let mut audit_text = String::new();
    for e in &audit {
        audit_text.push_str(&serde_json::to_string(e).expect("serializes"));
        audit_text.push('\n');
    }
    files.push(("audit.jsonl".into(), audit_text.into_bytes()));
    files.push((
        "audit-head.txt".into(),
        match head {
            Some(h) => format!("audit log head when this bundle was made: entry {} {}\n", h.seq, h.hash),
            None => "audit log empty\n".into(),
        }
        .into_bytes(),
    ));
    files.push((
        "summary.html".into(),
        summary_html(&seed_doc, &disks, &d, &stages, &verification, first_point, audit.len(), now),
    ));

    // The hashes, in sha256sum's format, then the coordinator's signature over them.
    let mut sums = String::new();
    for (path, data) in &files {
        sums.push_str(&format!("{}  {path}\n", hex::encode(Sha256::digest(data))));
    }
    let sig = signer.sign(sums.as_bytes())?;
    files.push(("SHA256SUMS".into(), sums.into_bytes()));
    files.push(("SHA256SUMS.sig".into(), sig));
    files.push(("coordinator.crt".into(), signer.cert_pem.clone()));
    files.push(("ca.crt".into(), signer.ca_pem.clone()));
    files.push(("VERIFY.txt".into(), VERIFY.as_bytes().to_vec()));
    Ok(files)
}

/// How to check a bundle with standard tools (also `deploy/evidence/verify.sh`).
pub const VERIFY: &str = "How to check this bundle (OpenSSL and coreutils only):\n\n\
  openssl verify -CAfile ca.crt coordinator.crt          # the coordinator's certificate, from your CA\n\
  openssl x509 -in coordinator.crt -pubkey -noout > coordinator.pub\n\
  openssl dgst -sha256 -verify coordinator.pub -signature SHA256SUMS.sig SHA256SUMS   # \"Verified OK\"\n\
  sha256sum -c SHA256SUMS                                 # every file \"OK\"\n\n\
Check ca.crt itself against the copy of your seedship CA you keep (its fingerprint:\n\
openssl x509 -in ca.crt -noout -fingerprint -sha256). VERIFY.txt, SHA256SUMS.sig and the two\n\
certificates are not in SHA256SUMS: the signature covers the list, the CA covers the key.\n";

#[allow(clippy::too_many_arguments)]
fn summary_html(
    seed: &Value,
    disks: &[Value],
    d: &crate::domain::model::SeedDetail,
    stages: &[Value],
    v: &crate::domain::model::VerificationReport,
    point: Option<&crate::domain::model::RecoveryPoint>,
    audit_entries: usize,
    now: crate::clock::UnixMs,
) -> Vec<u8> {
    let s = |k: &str| esc(seed[k].as_str().unwrap_or_default());
    let mut h = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Evidence: seed {job}</title>\
         <style>body{{font-family:sans-serif;margin:2em;max-width:70em}}table{{border-collapse:collapse;margin:1em 0}}\
         td,th{{border:1px solid #999;padding:.3em .6em;text-align:left;font-size:.9em}}th{{background:#eee}}</style></head><body>\
         <h1>Chain of custody: seed {job}</h1><p>Made by the seedship coordinator at {made}. The files beside this one are the \
         record; this page summarises them. Check them with VERIFY.txt.</p>\
         <table><tr><th>Seed</th><td>{id}</td></tr><tr><th>Backup server</th><td>{server}</td></tr>\
         <tr><th>State</th><td>{state}: {reason}</td></tr><tr><th>Storage</th><td>{acct} / {cont} ({loc})</td></tr>\
         <tr><th>Seed manifest root</th><td><code>{root}</code></td></tr><tr><th>Registered</th><td>{reg}</td></tr></table>",
        job = s("job_name"),
        made = esc(&rfc3339(now)),
        id = s("seed_id"),
        server = s("server"),
        state = s("state"),
        reason = s("state_reason"),
        acct = s("storage_account"),
        cont = s("container"),
        loc = s("location"),
        root = s("manifest_root"),
        reg = s("registered"),
    );
    h.push_str("<h2>Disks</h2><table><tr><th>#</th><th>Serial</th><th>Prepared by</th><th>When</th><th>Manifest MD5</th><th>Status</th></tr>");
    for dk in disks {
        h.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
            dk["position"],
            esc(dk["serial"].as_str().unwrap_or_default()),
            esc(dk["prepared_by"].as_str().unwrap_or_default()),
            esc(dk["reported"].as_str().unwrap_or_default()),
            esc(dk["manifest_hash_md5"].as_str().unwrap_or_default()),
            esc(dk["status"].as_str().unwrap_or_default()),
        ));
    }
    h.push_str("</table><h2>Shipping</h2>");
    match &d.shipping {
        Some(sh) => h.push_str(&format!(
            "<p>{} {} drive(s) with {}, tracking number {}, recorded by {} at {}.</p>",
            esc(&sh.spec.ship_date),
            sh.spec.drive_count,
            esc(&sh.spec.carrier),
            esc(&sh.spec.tracking_number),
            esc(&sh.recorded_by),
            esc(&rfc3339(sh.recorded_ms))
        )),
        None => h.push_str("<p>No shipping record.</p>"),
    }
    h.push_str("<h2>Azure</h2><table><tr><th>When</th><th>What</th></tr>");
    for st in stages {
        h.push_str(&format!(
            "<tr><td>{}</td><td>{}</td></tr>",
            esc(st["at"].as_str().unwrap_or_default()),
            esc(st["what"].as_str().unwrap_or_default())
        ));
    }
    let count = |status: &str| v.files.iter().filter(|f| f.status == status).count();
    h.push_str(&format!(
        "</table><h2>Verification</h2><p>{} file(s) verified, {} missing, {} corrupted; {} repair(s){}.</p>",
        count("verified"),
        count("missing"),
        count("corrupted"),
        v.repairs.len(),
        v.checked_ms.map(|t| format!(", checked {}", rfc3339(t))).unwrap_or_default()
    ));
    h.push_str("<h2>Vault</h2>");
    match point {
        Some(p) => h.push_str(&format!(
            "<p>First recovery point {} ({}) made {}, manifest root <code>{}</code>.</p>",
            esc(&p.snapshot_id),
            esc(&p.kind),
            esc(&rfc3339(p.created_ms)),
            esc(&p.manifest_root)
        )),
        None => h.push_str("<p>Not in the vault yet.</p>"),
    }
    h.push_str(&format!(
        "<h2>History</h2><p>{} event(s) in history.json; {} audit entries about this seed in audit.jsonl.</p>\
         <p>This bundle helps show media handling for ISO/IEC 27001 A.7.10 (storage media) and NIST SP 800-88 \
         records; it is a record, not a claim of compliance.</p></body></html>\n",
        d.history_total, audit_entries
    ));
    h.into_bytes()
}
