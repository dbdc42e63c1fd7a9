//! The web dashboard in a real browser (headless Chromium): refused without a login, in with
//! a login link from seedctl, live updates without a reload, a seed's page, the stations, the
//! charts. Screenshots are kept in target/<profile>/seedship-artifacts/.

use std::time::Duration;

use seedship_e2e::browser::Browser;
use seedship_e2e::{Cluster, rid};
use seedship_proto::{client, pb};

const T: Duration = Duration::from_secs(45);

fn login_link(c: &mut Cluster, ops: &seedship_e2e::Identity) -> anyhow::Result<String> {
    let out = c.run("login-link", &mut c.seedctl(ops, &["login-link"]))?;
    anyhow::ensure!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout)?;
    Ok(text.lines().next().unwrap_or_default().trim().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_fleet_live_to_a_logged_in_operator_only() -> anyhow::Result<()> {
    let mut c = Cluster::start()?;
    let (fs, st, ops) = (c.issue("source", "fs01")?, c.issue("copy", "station-01")?, c.issue("operator", "alice")?);
    let (cp, lease) = seedship_e2e::claimed(&mut c, &fs, &st, &ops, "job-web").await?;
    // The station beats as a running agent does (the test coordinator calls it gone after 3 s
    // without one).
    let beating = {
        let cp = cp.clone();
        tokio::spawn(async move {
            loop {
                let _ = seedship_proto::agent::heartbeat(&cp, "preparing").await;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };
    let disk = pb::DiskProgress {
        position: 1,
        set_size: 1,
        drive_id: "DRV-WEB1".into(),
        phase: "copy".into(),
        done_bytes: 250_000,
        total_bytes: 1_000_000,
        rate_bytes_per_sec: 50_000,
        updated_unix_ms: 0,
    };
    let renew = |waiting: &str| pb::RenewLeaseRequest {
        request_id: rid(),
        work_id: lease.work_id.clone(),
        generation: lease.generation,
        waiting: waiting.into(),
        disks: vec![disk.clone()],
    };
    client::diskprep(cp.clone()).renew_lease(renew("")).await?;

    // No login: the page and every API say so, to a browser and to a script.
    let anon = c.web_client(None)?;
    let r = anon.get(format!("{}/", c.web_url())).send().await?;
    assert_eq!(r.status().as_u16(), 401);
    assert!(r.text().await?.contains("seedctl login-link"));
    for api in ["/api/overview", "/api/seeds/job-web", "/api/agents", "/api/charts", "/api/events"] {
        assert_eq!(anon.get(format!("{}{api}", c.web_url())).send().await?.status().as_u16(), 401, "{api}");
    }
    // An operator's certificate is a way in without a login link.
    let r = c.web_client(Some(&ops))?.get(format!("{}/api/overview", c.web_url())).send().await?;
    assert_eq!(r.status().as_u16(), 200);
    // A copy station's certificate is not an operator's.
    let r = c.web_client(Some(&st))?.get(format!("{}/api/overview", c.web_url())).send().await?;
    assert_eq!(r.status().as_u16(), 401);
    // The session cookie: HttpOnly, Secure, SameSite=Strict; a link works once.
    let link = login_link(&mut c, &ops)?;
    let r = anon.get(&link).send().await?;
    assert_eq!(r.status().as_u16(), 303);
    let cookie = r.headers().get("set-cookie").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    for flag in ["HttpOnly", "Secure", "SameSite=Strict"] {
        assert!(cookie.contains(flag), "{cookie}");
    }
    let session = cookie.split(';').next().unwrap_or_default().to_string();
    let forged = anon
        .post(format!("{}/api/seeds/job-web/actions", c.web_url()))
        .header("cookie", &session)
        .json(&serde_json::json!({ "action": "cancel", "reason": "not me" }))
        .send()
        .await?;
    assert_eq!(forged.status().as_u16(), 403, "an action without X-Seedship-Action is refused");
    let again = anon.get(&link).send().await?;
    assert_eq!(again.status().as_u16(), 403);
    assert!(again.text().await?.contains("used already"));

    let b = Browser::start().await?;
    let result = async {
        b.go(&format!("{}/", c.web_url())).await?;
        let page = b.text().await?;
        assert!(page.contains("Log in") && page.contains("seedctl login-link"), "{page}");
        b.screenshot("dashboard-refused").await?;

        b.go(&login_link(&mut c, &ops)?).await?;
        b.until(
            "the pipeline with the preparing seed",
            "const e = document.querySelector('#pipeline [data-state=preparing] b'); return !!e && e.textContent === '1'",
            T,
        )
        .await?;
        b.screenshot("dashboard-fleet").await?;

        // The station starts waiting for a person: the page shows it, without a reload.
        b.js("window.__noReload = 42; return true").await?;
        client::diskprep(cp.clone()).renew_lease(renew("insert 1 more disk")).await?;
        b.until(
            "the wait on the page",
            "return document.querySelector('#needs').innerText.includes('insert 1 more disk') && window.__noReload === 42",
            T,
        )
        .await?;
        b.screenshot("dashboard-live-update").await?;

        b.js("location.hash = '#/seed/job-web'; return true").await?;
        b.until(
            "the seed's page",
            "const s = document.querySelector('#seed-state'); const d = document.querySelector('#disks'); \
             return !!s && s.textContent === 'preparing' && !!d && d.innerText.includes('DRV-WEB1') && d.innerText.includes('ETA')",
            T,
        )
        .await?;
        let page = b.text().await?;
        assert!(page.contains("lease_claimed") && page.contains("station-01"), "the timeline: {page}");
        b.screenshot("dashboard-seed").await?;

        b.js("location.hash = '#/stations'; return true").await?;
        b.until(
            "the stations",
            "const a = [...document.querySelectorAll('[data-activity]')].map(e => e.textContent); return a.includes('waiting')",
            T,
        )
        .await?;
        b.screenshot("dashboard-stations").await?;

        b.js("location.hash = '#/charts'; return true").await?;
        b.until("the charts", "return !!document.querySelector('svg#by-stage rect')", T).await?;
        b.screenshot("dashboard-charts").await?;

        // Operator actions from the page: refused without a reason, then done and recorded.
        b.js("location.hash = '#/seed/job-web'; return true").await?;
        b.until("the actions", "return !!document.querySelector('[data-action=requeue]')", T).await?;
        b.js("document.querySelector('[data-action=requeue]').click(); return true").await?;
        b.until(
            "the refusal",
            "const r = document.querySelector('#action-result').textContent; return r.startsWith('refused') && r.includes('reason')",
            T,
        )
        .await?;
        b.js(
            "document.querySelector('#action-reason').value = 'bay 2 broken'; \
             document.querySelector('#action-station').value = 'station-01'; \
             document.querySelector('[data-action=requeue]').click(); return true",
        )
        .await?;
        b.until(
            "the re-queue",
            "return document.querySelector('#action-result').textContent.startsWith('done: queued_for_disk_prep') \
               && document.querySelector('#timeline').innerText.includes('bay 2 broken')",
            T,
        )
        .await?;
        b.screenshot("dashboard-action").await?;
        b.js("document.querySelector('[data-action=retry]').click(); return true").await?;
        b.until(
            "the retry refused",
            "return document.querySelector('#action-result').textContent.includes('nothing to retry')",
            T,
        )
        .await?;
        // Nothing is lost yet: a new offline round is refused, saying why.
        b.js("document.querySelector('[data-action=reship]').click(); return true").await?;
        b.until(
            "the new round refused",
            "return document.querySelector('#action-result').textContent.includes('nothing is lost')",
            T,
        )
        .await?;
        // The station's wait, acknowledged from the fleet page.
        b.js("location.hash = '#/'; return true").await?;
        b.until("the acknowledge button", "return !!document.querySelector('[data-ack]')", T).await?;
        b.js(
            "document.querySelector('#ack-reason').value = 'a disk is on its way'; \
             document.querySelector('[data-ack]').click(); return true",
        )
        .await?;
        b.until(
            "the acknowledgement",
            "return document.querySelector('#ack-result').textContent.includes('acknowledged') && !document.querySelector('[data-ack]')",
            T,
        )
        .await?;
        // Never a secret on any page: no key, no passkey, no token.
        let all = b.js("return document.documentElement.outerHTML").await?;
        assert!(!all.as_str().unwrap_or_default().contains(&link), "the page holds no login token");
        Ok::<_, anyhow::Error>(())
    }
    .await;
    b.close().await;
    beating.abort();
    result?;
    // The actions are on the record with who did them.
    let out = c.run("audit", &mut c.seedctl(&ops, &["--json", "audit", "list", "--limit", "1000"]))?;
    let audit: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let by_alice = |action: &str| {
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == action && e["actor"].as_str().unwrap().ends_with("/operator/alice"))
    };
    assert!(by_alice("RequeueWork") && by_alice("notification_acknowledged") && by_alice("dashboard_login"), "{audit}");
    c.finish()
}
