//! The web dashboard: a page that reads JSON from `/api/*` and follows `/api/events`
//! (server-sent events) to update itself without a reload. Read-only. The way in: an operator
//! certificate, or the session a single-use login link (`seedctl login-link`) opens, held in a
//! cookie that is `HttpOnly`, `Secure` and `SameSite=Strict`. Role checks are the gRPC API's:
//! operators only. Nothing here shows a secret.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Json, Redirect, Response};
use serde_json::{Value, json};

use super::{Peer, Web};
use crate::clock::rfc3339;
use crate::domain::seed::SeedState;

const COOKIE: &str = "seedship_session";

/// Throughput samples per station (unix ms, bytes/s), the last hour at one a 10 s.
#[derive(Default)]
pub struct Samples(Mutex<BTreeMap<String, VecDeque<(i64, u64)>>>);

impl Samples {
    pub fn push(&self, at: i64, rates: &[(String, u64)]) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for (station, r) in rates {
            let q = m.entry(station.clone()).or_default();
            q.push_back((at, *r));
            while q.len() > 360 {
                q.pop_front();
            }
        }
        // A station that stopped reporting gets a zero, so its line falls.
        for (station, q) in m.iter_mut() {
            if !rates.iter().any(|(s, _)| s == station) {
                q.push_back((at, 0));
                while q.len() > 360 {
                    q.pop_front();
                }
            }
        }
    }

    fn json(&self) -> Value {
        let m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        json!(
            m.iter()
                .map(
                    |(s, q)| json!({ "station": s, "points": q.iter().map(|(t, r)| json!([t, r])).collect::<Vec<_>>() })
                )
                .collect::<Vec<_>>()
        )
    }
}

/// Samples the stations' throughput every 10 s, for the chart.
pub async fn sample(web: Web, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        if let Ok(rates) = web.core.station_rates().await {
            web.samples.push(web.core.now(), &rates);
        }
    }
}

fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The operator asking: by certificate, or by session cookie.
async fn who(web: &Web, peer: &Peer, headers: &HeaderMap) -> Option<String> {
    if let Ok(id) = web.operator(peer, headers, false) {
        return Some(id);
    }
    let c = cookie(headers)?;
    // A session of an operator revoked since is over.
    web.core.web_session(&c).await.ok().flatten().filter(|id| !web.core.is_revoked(id))
}

fn secured(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

const LOGIN_PAGE: &str = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>seedship: log in</title>\
<link rel=\"stylesheet\" href=\"/app.css\"></head><body><main class=\"login\" id=\"login\"><h1>seedship</h1>\
<p>Log in to see the fleet: open a login link from <code>seedctl login-link</code> (it asks the coordinator over \
mTLS with your operator certificate), or present your operator certificate to this page.</p></main></body></html>";

pub async fn index(State(web): State<Web>, Extension(peer): Extension<Peer>, headers: HeaderMap) -> Response {
    match who(&web, &peer, &headers).await {
        Some(_) => secured(
            ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], include_str!("static/index.html")).into_response(),
        ),
        None => secured(
            (StatusCode::UNAUTHORIZED, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], LOGIN_PAGE)
                .into_response(),
        ),
    }
}

pub async fn app_js() -> Response {
    secured(([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], include_str!("static/app.js")).into_response())
}

pub async fn app_css() -> Response {
    secured(([(header::CONTENT_TYPE, "text/css; charset=utf-8")], include_str!("static/app.css")).into_response())
}

#[derive(serde::Deserialize)]
pub struct LoginQuery {
    token: String,
}

pub async fn login(State(web): State<Web>, Query(q): Query<LoginQuery>) -> Response {
    if q.token.len() != 64 || !q.token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return secured(
            (StatusCode::FORBIDDEN, "this is not a seedship login link; ask `seedctl login-link` for one\n")
                .into_response(),
        );
    }
    match web.core.redeem_login(&q.token).await {
        Ok((session, who)) => {
            tracing::info!(operator = %who, "dashboard session opened with a login link");
            let mut r = Redirect::to("/").into_response();
            let c = format!("{COOKIE}={session}; Path=/; Max-Age=28800; HttpOnly; Secure; SameSite=Strict");
            r.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&c).expect("cookie"));
            secured(r)
        }
        Err(e) => {
            tracing::warn!(error = %e, "a dashboard login link was refused");
            secured((StatusCode::FORBIDDEN, format!("{e}; ask `seedctl login-link` for a new one\n")).into_response())
        }
    }
}

fn refused() -> Response {
    secured(
        (
            StatusCode::UNAUTHORIZED,
            Json(json!({ "error": "log in: `seedctl login-link`, or an operator certificate" })),
        )
            .into_response(),
    )
}

fn failed(e: crate::error::Error) -> Response {
    let status = match e {
        crate::error::Error::NotFound(_) => StatusCode::NOT_FOUND,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    secured((status, Json(json!({ "error": e.to_string() }))).into_response())
}

fn seed_json(s: &crate::domain::model::Seed) -> Value {
    json!({
        "job": s.spec.job_name, "seed_id": s.seed_id, "state": s.state.as_str(), "reason": s.state_reason,
        "server": s.owner, "kind": s.kind.as_str(), "updated": rfc3339(s.updated_ms), "bytes": s.spec.total_bytes,
        "files": s.spec.file_count, "round_of": s.round_of,
    })
}

pub async fn overview(State(web): State<Web>, Extension(peer): Extension<Peer>, headers: HeaderMap) -> Response {
    if who(&web, &peer, &headers).await.is_none() {
        return refused();
    }
    let core = &web.core;
    let r = async {
        let seeds = core.list_seeds(None, 500).await?;
        let (facts, jobs) = core.metrics_facts().await?;
        let open = core.notifications(true, 200).await?;
        Ok::<_, crate::error::Error>((seeds, facts, jobs, open))
    }
    .await;
    let (seeds, facts, jobs, open) = match r {
        Ok(x) => x,
        Err(e) => return failed(e),
    };
    let now = core.now();
    let by_state: Vec<Value> = SeedState::ALL
        .iter()
        .map(|st| json!({ "state": st.as_str(), "seeds": seeds.iter().filter(|s| s.state == *st).count() }))
        .collect();
    let mut needs: Vec<Value> = open
        .iter()
        .filter(|(n, _)| n.kind != crate::domain::notify::Kind::Seeded && n.kind != crate::domain::notify::Kind::Failed)
        .map(|(n, _)| json!({ "job": n.job_name, "kind": n.kind.as_str(), "why": n.reason, "since": rfc3339(n.created_ms), "notification": n.id }))
        .collect();
    for s in seeds.iter().filter(|s| s.state_reason.contains("held after")) {
        needs.push(json!({ "job": s.spec.job_name, "kind": "work_held", "why": s.state_reason, "since": rfc3339(s.updated_ms) }));
    }
    let failures: Vec<Value> = seeds
        .iter()
        .filter(|s| s.state == SeedState::Failed)
        .map(|s| json!({ "job": s.spec.job_name, "why": s.state_reason, "at": rfc3339(s.updated_ms) }))
        .collect();
    let mut deadlines: Vec<(i64, Value)> = jobs
        .iter()
        .filter_map(|j| {
            let d = j.deadline()?;
            Some((
                d.due_ms(),
                json!({ "job": j.intent.job_name, "deadline": d.kind.as_str(), "due": rfc3339(d.due_ms()),
                "seconds_left": (d.due_ms() - now) / 1000, "what": d.describe(now) }),
            ))
        })
        .collect();
    deadlines.sort_by_key(|(due, _)| *due);
    secured(
        Json(json!({
            "now": rfc3339(now),
            "seeds": seeds.iter().map(seed_json).collect::<Vec<_>>(),
            "by_state": by_state,
            "needs_person": needs,
            "failures": failures,
            "deadlines": deadlines.into_iter().map(|(_, v)| v).collect::<Vec<_>>(),
            "bytes_in_transit": facts.bytes_in_transit,
            "open_notifications": open.len(),
        }))
        .into_response(),
    )
}

pub async fn seed(
    State(web): State<Web>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    Path(job): Path<String>,
) -> Response {
    if who(&web, &peer, &headers).await.is_none() {
        return refused();
    }
    if crate::domain::validate::text("seed", &job, 64).is_err() {
        return failed(crate::error::Error::NotFound(format!("no seed {job:?}")));
    }
    let core = &web.core;
    let r = async {
        let d = core.seed_detail(&job).await?;
        let v = core.verification(&d.seed.seed_id).await?;
        let points = core.recovery_points(Some(&d.seed.owner)).await?;
        Ok::<_, crate::error::Error>((d, v, points))
    }
    .await;
    let (d, v, points) = match r {
        Ok(x) => x,
        Err(e) => return failed(e),
    };
    let count = |st: &str| v.files.iter().filter(|f| f.status == st).count();
    let disks: Vec<Value> = d
        .drives
        .iter()
        .map(|dr| {
            let live = d.disks.iter().find(|p| p.position == dr.spec.position);
            json!({
                "serial": dr.spec.drive_id, "position": dr.spec.position, "status": dr.spec.status.as_str(),
                "station": dr.reported_by.rsplit('/').next().unwrap_or_default(), "capacity": dr.spec.capacity_bytes,
                "written": dr.spec.bytes_written, "manifest_md5": dr.spec.manifest_hash,
                "phase": live.map(|p| p.phase.clone()), "done": live.map(|p| p.done_bytes), "total": live.map(|p| p.total_bytes),
                "rate": live.map(|p| p.rate_bytes_per_sec),
            })
        })
        .collect();
    let progress: Vec<Value> = d
        .disks
        .iter()
        .map(|p| {
            json!({ "position": p.position, "set_size": p.set_size, "serial": p.drive_id, "phase": p.phase,
            "done": p.done_bytes, "total": p.total_bytes, "rate": p.rate_bytes_per_sec,
            "eta": seedship_proto::human::eta(p.total_bytes.saturating_sub(p.done_bytes), p.rate_bytes_per_sec as f64),
            "reported": rfc3339(p.updated_ms) })
        })
        .collect();
    let azure = d.job.as_ref().map(|j| {
        json!({ "stage": j.azure_state, "stage_status": j.stage_status, "phase": j.phase.as_str(),
            "drives": j.drives.iter().map(|x| json!({ "serial": x.drive_id, "state": x.state, "copy_status": x.copy_status,
                "percent": x.percent_complete })).collect::<Vec<_>>() })
    });
    let history: Vec<Value> = d
        .history
        .iter()
        .map(|h| json!({ "at": rfc3339(h.at_ms), "actor": h.actor, "event": h.event, "to": h.to.as_str(), "reason": h.reason }))
        .collect();
    let points: Vec<Value> = points
        .iter()
        .map(|p| json!({ "snapshot": p.snapshot_id, "kind": p.kind, "at": rfc3339(p.created_ms) }))
        .collect();
    secured(
        Json(json!({
            "seed": seed_json(&d.seed),
            "work": d.work.as_ref().map(|w| json!({ "status": w.state.as_str(), "holder": w.holder, "progress": w.progress_bytes, "total": w.total_bytes })),
            "disks": disks,
            "progress": progress,
            "azure": azure,
            "verification": { "verified": count("verified"), "missing": count("missing"), "corrupted": count("corrupted"),
                "repairs": v.repairs.len(), "checked": v.checked_ms.map(rfc3339) },
            "recovery_points": points,
            "rounds": d.rounds.iter().map(seed_json).collect::<Vec<_>>(),
            "lost": v.repairs.iter().filter(|r| matches!(r.state.as_str(), "requested" | "reshipped" | "lost")).count(),
            "history": history,
        }))
        .into_response(),
    )
}

pub async fn agents(State(web): State<Web>, Extension(peer): Extension<Peer>, headers: HeaderMap) -> Response {
    if who(&web, &peer, &headers).await.is_none() {
        return refused();
    }
    let list = match web.core.list_agents(None).await {
        Ok(l) => l,
        Err(e) => return failed(e),
    };
    let (now, gone) = (web.core.now(), web.core.gone_after_ms());
    let agents: Vec<Value> = list
        .iter()
        .map(|a| {
            json!({ "name": a.name, "role": a.role.as_str(), "site": a.info.site, "host": a.info.hostname,
                "virtualization": a.info.virtualization, "version": a.info.version, "activity": a.activity(now, gone).as_str(),
                "last_heartbeat": rfc3339(a.last_heartbeat_ms), "status": a.status,
                "work": a.work.as_ref().map(|w| json!({ "job": w.job_name, "phase": w.phase,
                    "disks": w.disks.iter().map(|p| json!({ "position": p.position, "set_size": p.set_size, "serial": p.drive_id,
                        "phase": p.phase, "done": p.done_bytes, "total": p.total_bytes, "rate": p.rate_bytes_per_sec,
                        "eta": seedship_proto::human::eta(p.total_bytes.saturating_sub(p.done_bytes), p.rate_bytes_per_sec as f64) })).collect::<Vec<_>>() })) })
        })
        .collect();
    secured(Json(json!({ "agents": agents })).into_response())
}

pub async fn charts(State(web): State<Web>, Extension(peer): Extension<Peer>, headers: HeaderMap) -> Response {
    if who(&web, &peer, &headers).await.is_none() {
        return refused();
    }
    let (facts, _) = match web.core.metrics_facts().await {
        Ok(x) => x,
        Err(e) => return failed(e),
    };
    let stages: Vec<Value> = SeedState::ALL
        .iter()
        .filter_map(|st| {
            let stays: Vec<f64> = facts.stage_stays.iter().filter(|(s, _)| s == st.as_str()).map(|(_, v)| *v).collect();
            (!stays.is_empty()).then(|| {
                json!({ "stage": st.as_str(), "stays": stays.len(), "mean_seconds": stays.iter().sum::<f64>() / stays.len() as f64 })
            })
        })
        .collect();
    secured(
        Json(json!({ "stages": stages, "throughput": web.samples.json(), "bytes_in_transit": facts.bytes_in_transit }))
            .into_response(),
    )
}

/// Server-sent events: `change` whenever a seed event, a disk report or a notification is
/// added (checked every second), a comment every 15 s to keep the connection.
pub async fn events(State(web): State<Web>, Extension(peer): Extension<Peer>, headers: HeaderMap) -> Response {
    if who(&web, &peer, &headers).await.is_none() {
        return refused();
    }
    let core = web.core.clone();
    let stream = futures::stream::unfold((core, String::new()), |(core, last)| async move {
        let mut last = last;
        loop {
            let now = core.web_change_token().await.unwrap_or_default();
            if now != last {
                let ev = Event::default().event("change").data(now.clone());
                last = now;
                return Some((Ok::<_, Infallible>(ev), (core, last)));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    secured(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response())
}

#[derive(serde::Deserialize)]
pub struct ActionBody {
    action: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    station: String,
    #[serde(default)]
    site: String,
    #[serde(default)]
    anywhere: bool,
}

/// An action from the page: the same request, validation, rules and record (history, audit
/// log) as through the gRPC API, by the operator logged in. Needs the `X-Seedship-Action`
/// header (a page of another site cannot send it without the browser asking first; the
/// session cookie is SameSite=Strict besides).
async fn acting(
    web: &Web,
    peer: &Peer,
    headers: &HeaderMap,
) -> std::result::Result<seedship_proto::identity::SpiffeId, Response> {
    let Some(who) = who(web, peer, headers).await else { return Err(refused()) };
    if headers.get("x-seedship-action").is_none() {
        return Err(secured(
            (StatusCode::FORBIDDEN, Json(json!({ "error": "an action needs the X-Seedship-Action header" })))
                .into_response(),
        ));
    }
    who.parse().map_err(|_| {
        secured((StatusCode::FORBIDDEN, Json(json!({ "error": "only an operator acts" }))).into_response())
    })
}

async fn outcome(
    web: &Web,
    operator: &seedship_proto::identity::SpiffeId,
    action: &str,
    r: crate::error::Result<Value>,
) -> Response {
    match r {
        Ok(v) => secured(Json(v).into_response()),
        Err(e) => {
            web.core
                .audit_refusal(
                    &operator.uri(),
                    action,
                    &format!("refused: {}", crate::observe::outcome(Some(e.code()))),
                    &e.to_string(),
                )
                .await;
            let status = match e.code() {
                tonic::Code::InvalidArgument => StatusCode::BAD_REQUEST,
                tonic::Code::NotFound => StatusCode::NOT_FOUND,
                tonic::Code::FailedPrecondition | tonic::Code::AlreadyExists => StatusCode::CONFLICT,
                tonic::Code::PermissionDenied => StatusCode::FORBIDDEN,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            secured((status, Json(json!({ "error": e.to_string() }))).into_response())
        }
    }
}

pub async fn seed_action(
    State(web): State<Web>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    Path(job): Path<String>,
    Json(b): Json<ActionBody>,
) -> Response {
    use crate::service::Cmd;
    use seedship_proto::pb;
    let operator = match acting(&web, &peer, &headers).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let rid = seedship_proto::client::new_request_id();
    let core = &web.core;
    let done = |s: crate::domain::model::Seed| json!({ "job": s.spec.job_name, "state": s.state.as_str(), "reason": s.state_reason });
    let (name, r) = match b.action.as_str() {
        "cancel" => (
            "CancelSeed",
            async {
                let cmd = Cmd::try_from(pb::CancelSeedRequest { request_id: rid, seed: job, reason: b.reason })?;
                core.cancel_seed(&operator, cmd).await.map(done)
            }
            .await,
        ),
        "retry" => (
            "RetryWork",
            async {
                let cmd = Cmd::try_from(pb::RetryWorkRequest { request_id: rid, seed: job, reason: b.reason })?;
                core.retry_work(&operator, cmd).await.map(done)
            }
            .await,
        ),
        "requeue" => (
            "RequeueWork",
            async {
                let cmd = Cmd::try_from(pb::RequeueWorkRequest {
                    request_id: rid,
                    seed: job,
                    target_station: b.station,
                    target_site: b.site,
                    any_station: b.anywhere,
                    reason: b.reason,
                })?;
                core.requeue_work(&operator, cmd).await.map(done)
            }
            .await,
        ),
        "reship" => (
            "ReshipLost",
            async {
                let cmd = Cmd::try_from(pb::ReshipLostRequest { request_id: rid, seed: job, reason: b.reason })?;
                core.reship_lost(&operator, cmd).await.map(|r| {
                    json!({ "job": r.round.spec.job_name, "state": r.round.state.as_str(), "reason": r.round.state_reason,
                        "round_of": r.seed.spec.job_name, "files": r.files, "bytes": r.bytes })
                })
            }
            .await,
        ),
        other => (
            "DashboardAction",
            Err(crate::error::Error::invalid("action", format!("{other:?}: use cancel, retry, requeue or reship"))),
        ),
    };
    outcome(&web, &operator, name, r).await
}

#[derive(serde::Deserialize)]
pub struct AckBody {
    #[serde(default)]
    reason: String,
}

pub async fn ack(
    State(web): State<Web>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Json(b): Json<AckBody>,
) -> Response {
    let operator = match acting(&web, &peer, &headers).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let r = async {
        crate::domain::validate::text("reason", &b.reason, 500)?;
        if b.reason.trim().is_empty() {
            return Err(crate::error::Error::invalid("reason", "is required: say why (kept with the acknowledgement)"));
        }
        let n = web.core.ack_notification(&operator, id, &b.reason).await?;
        Ok(json!({ "notification": n.id, "kind": n.kind.as_str(), "job": n.job_name, "acknowledged": true }))
    }
    .await;
    outcome(&web, &operator, "AckNotification", r).await
}

pub fn samples() -> Arc<Samples> {
    Arc::new(Samples::default())
}
