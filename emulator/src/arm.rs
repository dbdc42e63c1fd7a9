//! The Azure Resource Manager face of `Microsoft.DataBox` 2025-02-01: the same routes, JSON,
//! status codes, long-running-operation headers, ETags and error envelope as Azure, over the
//! pure rules of [`crate::service`].
//!
//! As ARM does, it matches path segments case-insensitively, checks the bearer token (a 401
//! carries `WWW-Authenticate`) and the api-version, answers an unknown resource group with
//! `404 ResourceGroupNotFound`, puts `x-ms-request-id` and `x-ms-correlation-request-id` on
//! every answer, and pages lists with `nextLink` and `$skipToken`. PUT, PATCH and DELETE are
//! long-running: `202` with an opaque `location` (about 3 KB, like Azure's signed monitor URLs)
//! polled until it answers otherwise; a create or update ends with a `202` whose location is
//! the job itself, a delete with `204`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use seedship_azure::databox::{API_VERSION, PROVIDER, model};
use serde::de::DeserializeOwned;

use crate::server::Emulator;
use crate::service::{ApiError, Poll};

/// ARM's error envelope for `e`.
pub fn error(e: &ApiError) -> Response {
    let body = model::ApiError {
        error: Some(model::ErrorDetail {
            code: Some(e.code.into()),
            message: Some(e.message.clone()),
            ..Default::default()
        }),
    };
    let mut r = json(e.status, &body);
    if e.status == 401 {
        r.headers_mut().insert(
            "www-authenticate",
            HeaderValue::from_static(
                "Bearer authorization_uri=\"https://login.microsoftonline.com/common\", error=\"invalid_token\", error_description=\"The authentication failed because of missing 'Authorization' header.\"",
            ),
        );
    }
    r
}

pub fn json(status: u16, body: &impl serde::Serialize) -> Response {
    let mut r = (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), axum::Json(body)).into_response();
    r.headers_mut().insert("cache-control", HeaderValue::from_static("no-cache"));
    r
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

fn body<T: DeserializeOwned>(b: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(b).map_err(|e| {
        ApiError::bad(
            "InvalidRequestContent",
            format!("The request content was invalid and could not be deserialized: {e}"),
        )
    })
}

/// ARM's checks on every request: a bearer token, and `api-version=2025-02-01`.
fn arm_checks(headers: &HeaderMap, q: &HashMap<String, String>) -> Result<(), ApiError> {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
    if !auth.starts_with("Bearer ") || auth.len() <= "Bearer ".len() {
        return Err(ApiError::new(
            401,
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing or not a bearer token.",
        ));
    }
    match q.get("api-version") {
        None => Err(ApiError::bad(
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        )),
        Some(v) if v != API_VERSION => Err(ApiError::bad(
            "InvalidApiVersionParameter",
            format!(
                "The api-version '{v}' is invalid. The supported versions are '{API_VERSION}' for resource type '{PROVIDER}/jobs'."
            ),
        )),
        Some(_) => Ok(()),
    }
}

/// Who called, for `systemData` (the token is not checked: there is no directory here).
fn caller(headers: &HeaderMap) -> String {
    headers.get("x-ms-client-principal-name").and_then(|v| v.to_str().ok()).unwrap_or("seedship").to_string()
}

/// Matches `path` against `pattern` (literal segments compared case-insensitively, `{x}`
/// captured); the captures in order.
fn matches(pattern: &str, segs: &[&str]) -> Option<Vec<String>> {
    let pat: Vec<&str> = pattern.trim_matches('/').split('/').collect();
    if pat.len() != segs.len() {
        return None;
    }
    let mut out = Vec::new();
    for (p, s) in pat.iter().zip(segs) {
        if p.starts_with('{') {
            if s.is_empty() {
                return None;
            }
            out.push(percent_decode(s));
        } else if !p.eq_ignore_ascii_case(s) {
            return None;
        }
    }
    Some(out)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query(uri: &http::Uri) -> HashMap<String, String> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(&v.replace('+', " ")))
        })
        .collect()
}

/// Random-looking opaque text (the monitors' signature values), from the state's counter.
fn opaque(seed: u64, len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut x = seed ^ 0x2545_F491_4F6C_DD1D;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ALPHABET[(x % 64) as usize] as char
        })
        .collect()
}

const RG: &str = "subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.DataBox";
const SUB: &str = "subscriptions/{sub}/providers/Microsoft.DataBox";

/// Handles every ARM request (the datacenter's routes are apart).
pub async fn handle(emu: Arc<Emulator>, method: Method, uri: http::Uri, headers: HeaderMap, b: Bytes) -> Response {
    let q = query(&uri);
    let path = uri.path().to_string();
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let base = base_url(&emu, &headers);
    match route(&emu, &method, &segs, &q, &headers, &b, &base) {
        Ok(r) => r,
        Err(e) => error(&e),
    }
}

fn base_url(emu: &Emulator, headers: &HeaderMap) -> String {
    let host = headers.get("host").and_then(|v| v.to_str().ok()).unwrap_or("127.0.0.1");
    format!("{}://{host}", if emu.options.plain_http { "http" } else { "https" })
}

/// The answer to a PUT, PATCH or DELETE that started operation `id`: 202 and its monitor.
fn accepted(emu: &Emulator, base: &str, sub: &str, location: &str, id: &str) -> Response {
    let mut r = StatusCode::ACCEPTED.into_response();
    let h = r.headers_mut();
    h.insert("location", monitor(emu, base, sub, location, id, "operationResults"));
    if emu.options.async_operation {
        h.insert("azure-asyncoperation", monitor(emu, base, sub, location, id, "operationStatuses"));
    }
    if let Some(s) = emu.options.retry_after_secs {
        h.insert("retry-after", HeaderValue::from(s));
    }
    h.insert("cache-control", HeaderValue::from_static("no-cache"));
    r
}

fn monitor(emu: &Emulator, base: &str, sub: &str, location: &str, id: &str, kind: &str) -> HeaderValue {
    let n = emu.now_ms() as u64 ^ id.len() as u64 ^ (emu.state.lock().expect("lock").service.counter << 20);
    let url = format!(
        "{base}/subscriptions/{sub}/providers/{PROVIDER}/locations/{location}/{kind}/{id}?api-version={API_VERSION}&t={}&c={}&s={}&h={}",
        638_000_000_000_000_000u64 + n % 1_000_000_000_000,
        opaque(n, 2900),
        opaque(n.rotate_left(17), 342),
        opaque(n.rotate_left(31), 43)
    );
    HeaderValue::from_str(&url).expect("ASCII")
}

#[allow(clippy::too_many_arguments)]
fn route(
    emu: &Arc<Emulator>,
    method: &Method,
    segs: &[&str],
    q: &HashMap<String, String>,
    headers: &HeaderMap,
    b: &Bytes,
    base: &str,
) -> Result<Response, ApiError> {
    arm_checks(headers, q)?;
    let m = |p: &str| matches(p, segs);
    let job = format!("{RG}/jobs/{{job}}");
    // Reads.
    if *method == Method::GET {
        if m("providers/Microsoft.DataBox/operations").is_some() {
            return Ok(json(200, &operations()));
        }
        if let Some(v) = m(&format!("{SUB}/jobs")) {
            return list(emu, base, &format!("/{}", segs.join("/")), &v[0], None, q);
        }
        if let Some(v) = m(&format!("{RG}/jobs")) {
            return list(emu, base, &format!("/{}", segs.join("/")), &v[0], Some(&v[1]), q);
        }
        if let Some(v) = m(&job) {
            let expand = q.get("$expand").is_some_and(|e| e.eq_ignore_ascii_case("details"));
            let s = emu.state.lock().expect("lock");
            let (r, etag) = s.service.get_job(&v[0], &v[1], &v[2], expand)?;
            let mut out = json(200, &r);
            out.headers_mut().insert("etag", HeaderValue::from_str(&etag).expect("ASCII"));
            return Ok(out);
        }
        for kind in ["operationResults", "operationStatuses"] {
            if let Some(v) = m(&format!("{SUB}/locations/{{loc}}/{kind}/{{id}}")) {
                let poll = emu.mutate(|s, _| s.poll(&v[0], &v[2]))?;
                return Ok(match (kind, poll) {
                    ("operationResults", Poll::Running) => accepted(emu, base, &v[0], &v[1], &v[2]),
                    ("operationResults", Poll::DoneAt { job_path }) => {
                        let mut r = StatusCode::ACCEPTED.into_response();
                        let url = format!("{base}{job_path}?api-version={API_VERSION}");
                        r.headers_mut().insert("location", HeaderValue::from_str(&url).expect("ASCII"));
                        r
                    }
                    ("operationResults", Poll::Deleted) => no_content(),
                    (_, p) => json(
                        200,
                        &serde_json::json!({
                            "id": format!("/subscriptions/{}/providers/{PROVIDER}/locations/{}/operationStatuses/{}", v[0], v[1], v[2]),
                            "name": v[2],
                            "status": if p == Poll::Running { "InProgress" } else { "Succeeded" },
                        }),
                    ),
                });
            }
        }
    }
    if let Some(v) = m(&job) {
        let (sub, rg, name) = (&v[0], &v[1], &v[2]);
        if *method == Method::PUT {
            let p: model::JobResource = body(b)?;
            let who = caller(headers);
            let (op, loc) = emu.mutate(|s, now| s.put_job(sub, rg, name, p, &who, now))?;
            return Ok(accepted(emu, base, sub, &loc, &op));
        }
        if *method == Method::PATCH {
            let p: model::JobResourceUpdateParameter = body(b)?;
            let who = caller(headers);
            let if_match = headers.get("if-match").and_then(|v| v.to_str().ok()).map(str::to_string);
            let (op, loc) = emu.mutate(|s, now| s.patch_job(sub, rg, name, p, if_match.as_deref(), &who, now))?;
            return Ok(accepted(emu, base, sub, &loc, &op));
        }
        if *method == Method::DELETE {
            return Ok(match emu.mutate(|s, _| s.delete_job(sub, rg, name))? {
                Some((op, loc)) => accepted(emu, base, sub, &loc, &op),
                None => no_content(),
            });
        }
    }
    if *method == Method::POST {
        if let Some(v) = m(&format!("{job}/cancel")) {
            let c: model::CancellationReason = body(b)?;
            emu.mutate(|s, now| s.cancel(&v[0], &v[1], &v[2], c.reason.as_deref().unwrap_or(""), now))?;
            return Ok(no_content());
        }
        if let Some(v) = m(&format!("{job}/markDevicesShipped")) {
            let p: model::MarkDevicesShippedRequest = body(b)?;
            let pkg = p.deliver_to_dc_package_details.unwrap_or_default();
            let (carrier, tracking) = (pkg.carrier_name.unwrap_or_default(), pkg.tracking_id.unwrap_or_default());
            emu.mutate(|s, now| s.mark_shipped(&v[0], &v[1], &v[2], &carrier, &tracking, now))?;
            return Ok(no_content());
        }
        if let Some(v) = m(&format!("{job}/listCredentials")) {
            let s = emu.state.lock().expect("lock");
            return Ok(json(200, &s.service.list_credentials(&v[0], &v[1], &v[2])?));
        }
        if let Some(v) = m(&format!("{job}/mitigate")) {
            let p: model::MitigateJobRequest = body(b)?;
            emu.mutate(|s, now| s.mitigate(&v[0], &v[1], &v[2], p, now))?;
            return Ok(no_content());
        }
        if let Some(v) = m(&format!("{job}/bookShipmentPickUp")) {
            let s = emu.state.lock().expect("lock");
            s.service.job(&v[0], &v[1], &v[2])?;
            let p: model::ShipmentPickUpRequest = body(b)?;
            return Ok(json(
                200,
                &model::ShipmentPickUpResponse {
                    confirmation_number: Some(format!("PU{:08}", s.service.counter)),
                    ready_by_time: p.end_time,
                },
            ));
        }
        for (prefix, sub_idx, rg) in [(SUB, 0usize, false), (RG, 0usize, true)] {
            if let Some(v) = m(&format!("{prefix}/locations/{{loc}}/validateInputs")) {
                if rg {
                    emu.state.lock().expect("lock").service.check_resource_group(&v[0], &v[1])?;
                }
                let loc = &v[if rg { 2 } else { 1 }];
                let p: model::ValidationRequest = body(b)?;
                let s = emu.state.lock().expect("lock");
                return Ok(json(200, &s.service.validate_inputs(&v[sub_idx], loc, &p)?));
            }
            if let Some(v) = m(&format!("{prefix}/locations/{{loc}}/regionConfiguration")) {
                if rg {
                    emu.state.lock().expect("lock").service.check_resource_group(&v[0], &v[1])?;
                }
                let loc = &v[if rg { 2 } else { 1 }];
                let p: model::RegionConfigurationRequest = body(b)?;
                let s = emu.state.lock().expect("lock");
                return Ok(json(200, &s.service.region_configuration(loc, &p)?));
            }
        }
    }
    Err(ApiError::new(
        404,
        "NoRegisteredProviderFound",
        format!(
            "No route for {method} /{} in the emulated {PROVIDER} API (api-version {API_VERSION}).",
            segs.join("/")
        ),
    ))
}

fn list(
    emu: &Emulator,
    base: &str,
    path: &str,
    sub: &str,
    rg: Option<&str>,
    q: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let skip = match q.get("$skipToken") {
        None => 0,
        Some(t) => t
            .parse::<usize>()
            .map_err(|_| ApiError::bad("InvalidSkipToken", format!("'{t}' is not a skip token of this list.")))?,
    };
    let take = emu.options.page_size.max(1);
    let s = emu.state.lock().expect("lock");
    let (value, more) = s.service.list_jobs(sub, rg, skip, take)?;
    let next_link = more.then(|| format!("{base}{path}?api-version={API_VERSION}&$skipToken={}", skip + take));
    Ok(json(200, &model::JobResourceList { value: Some(value), next_link }))
}

/// `GET /providers/Microsoft.DataBox/operations`.
fn operations() -> model::OperationList {
    let op = |name: &str, resource: &str, operation: &str, description: &str| model::Operation {
        name: Some(format!("{PROVIDER}/{name}")),
        display: Some(model::OperationDisplay {
            provider: Some(PROVIDER.into()),
            resource: Some(resource.into()),
            operation: Some(operation.into()),
            description: Some(description.into()),
        }),
        origin: Some("user".into()),
        is_data_action: Some(false),
        ..Default::default()
    };
    model::OperationList {
        value: Some(vec![
            op("jobs/read", "Jobs", "Read jobs", "Lists or gets the jobs."),
            op("jobs/write", "Jobs", "Create or update jobs", "Creates or updates a job."),
            op("jobs/delete", "Jobs", "Delete jobs", "Deletes a job."),
            op("jobs/cancel/action", "Jobs", "Cancel", "Cancels a job."),
            op(
                "jobs/listCredentials/action",
                "Jobs",
                "List credentials",
                "Lists the unencrypted credentials of a job.",
            ),
            op("jobs/markDevicesShipped/action", "Jobs", "Mark devices shipped", "Marks the devices of a job shipped."),
            op("jobs/mitigate/action", "Jobs", "Mitigate", "Answers a job waiting for a customer action."),
            op("locations/validateInputs/action", "Locations", "Validate inputs", "Validates the inputs of a new job."),
            op(
                "locations/regionConfiguration/action",
                "Locations",
                "Region configuration",
                "Gets the configuration of a region.",
            ),
            op("locations/operationResults/read", "Locations", "Read operation results", "Gets an operation's result."),
        ]),
        next_link: None,
    }
}

/// ARM's headers on every answer, and the record of the exchange (`--record`).
pub async fn around(
    axum::extract::State(emu): axum::extract::State<Arc<Emulator>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let n = {
        let mut s = emu.state.lock().expect("lock");
        s.service.counter += 1;
        s.service.counter
    };
    let request_id = format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        emu.now_ms() as u32,
        n & 0xffff,
        n & 0xfff,
        (n >> 4) & 0xfff,
        n
    );
    let correlation = req
        .headers()
        .get("x-ms-correlation-request-id")
        .or_else(|| req.headers().get("x-ms-client-request-id"))
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_str(&request_id).expect("ASCII"));
    let (method, uri) = (req.method().clone(), req.uri().clone());
    let if_match = req.headers().get("if-match").and_then(|v| v.to_str().ok()).map(str::to_string);
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 16 << 20).await.unwrap_or_default();
    let req = axum::extract::Request::from_parts(parts, Body::from(bytes.clone()));
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    h.insert("x-ms-request-id", HeaderValue::from_str(&request_id).expect("ASCII"));
    h.insert("x-ms-correlation-request-id", correlation);
    h.insert("x-ms-routing-request-id", HeaderValue::from_str(&format!("EMULATED:{request_id}")).expect("ASCII"));
    let Some(record) = &emu.record else { return r };
    let (parts, body) = r.into_parts();
    let out = axum::body::to_bytes(body, 64 << 20).await.unwrap_or_default();
    let headers: serde_json::Map<String, serde_json::Value> = [
        "location",
        "azure-asyncoperation",
        "retry-after",
        "x-ms-request-id",
        "x-ms-correlation-request-id",
        "www-authenticate",
        "etag",
    ]
    .iter()
    .filter_map(|k| parts.headers.get(*k).and_then(|v| v.to_str().ok()).map(|v| (k.to_string(), v.into())))
    .collect();
    let line = serde_json::json!({
        "method": method.as_str(),
        "url": uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"),
        "request": serde_json::from_slice::<serde_json::Value>(&bytes).ok(),
        "status": parts.status.as_u16(),
        "response": serde_json::from_slice::<serde_json::Value>(&out).ok(),
        "headers": headers,
        "if_match": if_match,
    });
    if let Ok(mut f) = record.lock() {
        let _ = std::io::Write::write_all(&mut *f, format!("{line}\n").as_bytes());
    }
    Response::from_parts(parts, Body::from(out))
}
