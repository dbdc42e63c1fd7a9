//! The HTTP face of the emulated Azure Resource Manager for `Microsoft.ImportExport`: the same
//! routes, JSON, status codes, error envelope and api-version check as Azure, over the pure
//! rules of `seedship_azure::emulator`. State is kept in a JSON file, written atomically after
//! every change, so the emulator survives restarts.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use seedship_azure::arm::{self, API_VERSION};
use seedship_azure::emulator::{self as rules, ApiError, ServiceState};
use serde::de::DeserializeOwned;

use crate::ingest::{DriveOrder, IngestJob, Storage, copy_drive};

/// What the emulator keeps: the service's state, the datacenter clock's offset, the disk
/// images in the packages that arrived, and each job's import so far.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Persisted {
    pub service: ServiceState,
    /// Added to the wall clock (datacenter command "advance the clock").
    #[serde(default)]
    pub clock_offset_ms: i64,
    /// Job name → drive id → the disk image that arrived for it.
    #[serde(default)]
    pub images: BTreeMap<String, BTreeMap<String, PathBuf>>,
    /// Job name → what the datacenter has imported of it.
    #[serde(default)]
    pub ingest: BTreeMap<String, IngestJob>,
}

pub struct Emulator {
    pub state: Mutex<Persisted>,
    pub file: PathBuf,
    /// Injected failures for the next ARM requests (throttling, server errors).
    pub faults: Mutex<Faults>,
    /// The storage accounts the datacenter copies into (Azurite); `None`: "copy" refuses.
    pub storage: Option<Storage>,
    /// One copy at a time (the datacenter's copy station).
    pub copying: tokio::sync::Mutex<()>,
}

/// The next `count` ARM requests answer `status` (429 with `Retry-After`, or a 5xx).
#[derive(Debug, Default, Clone, serde::Deserialize)]
pub struct Faults {
    pub status: u16,
    pub count: u32,
    #[serde(default)]
    pub retry_after_secs: u64,
    /// Only requests with this method (e.g. "PUT"); others pass.
    #[serde(default)]
    pub method: Option<String>,
    /// The request is carried out, and only its answer is lost (replaced by the fault): what a
    /// client sees when a connection drops after the service acted.
    #[serde(default)]
    pub after_apply: bool,
    /// The request hangs this long before its (injected) answer: Azure not answering.
    #[serde(default)]
    pub hang_secs: u64,
}

impl Emulator {
    pub fn open(file: &Path) -> Result<Emulator, String> {
        let state = match std::fs::read(file) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| format!("{}: not an emulator state file: {e}", file.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Persisted::default(),
            Err(e) => return Err(format!("{}: {e}", file.display())),
        };
        Ok(Emulator {
            state: Mutex::new(state),
            file: file.to_path_buf(),
            faults: Mutex::new(Faults::default()),
            storage: None,
            copying: tokio::sync::Mutex::new(()),
        })
    }

    /// The datacenter copies into these storage accounts.
    pub fn with_storage(mut self, storage: Storage) -> Emulator {
        self.storage = Some(storage);
        self
    }

    /// Saves the state after `f` changed the parts beside the service.
    fn update(&self, f: impl FnOnce(&mut Persisted)) -> Result<(), ApiError> {
        let mut s = self.state.lock().expect("lock");
        f(&mut s);
        self.save(&s)
    }

    pub fn now_ms(&self) -> i64 {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        wall + self.state.lock().expect("lock").clock_offset_ms
    }

    fn save(&self, s: &Persisted) -> Result<(), ApiError> {
        let tmp = self.file.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            // The state holds the jobs' drive keys: the emulator's alone.
            let mut f = private_file(&tmp)?;
            std::io::Write::write_all(&mut f, &serde_json::to_vec_pretty(s).expect("serializes"))?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.file)?;
            // A bare file name's parent is "": the current directory.
            let dir = match self.file.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            std::fs::File::open(dir)?.sync_all()?;
            Ok(())
        };
        write().map_err(|e| ApiError {
            status: 500,
            code: "InternalServerError",
            message: format!("state not saved: {e}"),
        })
    }

    /// Runs `f` on the state and saves it when `f` succeeds.
    fn mutate<T>(&self, f: impl FnOnce(&mut ServiceState, i64) -> Result<T, ApiError>) -> Result<T, ApiError> {
        let now = self.now_ms();
        let mut s = self.state.lock().expect("lock");
        let mut copy = s.service.clone();
        let out = f(&mut copy, now)?;
        let before = std::mem::replace(&mut s.service, copy);
        if let Err(e) = self.save(&s) {
            s.service = before;
            return Err(e);
        }
        Ok(out)
    }
}

fn json(status: u16, body: &impl serde::Serialize) -> Response {
    let mut r = (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), axum::Json(body)).into_response();
    let h = r.headers_mut();
    h.insert("cache-control", "no-cache".parse().expect("header"));
    h.insert("x-ms-ratelimit-remaining-subscription-writes", "1199".parse().expect("header"));
    r
}

fn error(e: &ApiError) -> Response {
    json(e.status, &e.envelope())
}

/// ARM's checks on every request: a bearer token, and `api-version=2021-01-01`.
fn arm_checks(headers: &HeaderMap, q: &HashMap<String, String>) -> Result<(), ApiError> {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
    if !auth.starts_with("Bearer ") || auth.len() <= "Bearer ".len() {
        return Err(ApiError {
            status: 401,
            code: "AuthenticationFailed",
            message: "Authentication failed. The 'Authorization' header is missing or not a bearer token.".into(),
        });
    }
    match q.get("api-version") {
        None => Err(ApiError {
            status: 400,
            code: "MissingApiVersionParameter",
            message: "The api-version query parameter (?api-version=) is required for all requests.".into(),
        }),
        Some(v) if v != API_VERSION => Err(ApiError {
            status: 400,
            code: "InvalidApiVersionParameter",
            message: format!("The api-version '{v}' is invalid. The supported versions are '{API_VERSION}'."),
        }),
        Some(_) => Ok(()),
    }
}

fn body<T: DeserializeOwned>(b: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(b).map_err(|e| ApiError {
        status: 400,
        code: "InvalidRequestContent",
        message: format!("The request content was invalid and could not be deserialized: {e}"),
    })
}

/// Who called, for `systemData` (the token is not checked: there is no directory here).
fn caller(headers: &HeaderMap) -> String {
    headers.get("x-ms-client-principal-name").and_then(|v| v.to_str().ok()).unwrap_or("seedship").to_string()
}

type Emu = State<Arc<Emulator>>;
type Q = Query<HashMap<String, String>>;

macro_rules! checked {
    ($headers:expr, $q:expr, $body:expr) => {
        match arm_checks(&$headers, &$q).and_then(|_| $body) {
            Ok(r) => r,
            Err(e) => error(&e),
        }
    };
}

async fn list_locations(headers: HeaderMap, Query(q): Q) -> Response {
    checked!(headers, q, Ok(json(200, &arm::LocationsResponse { value: Some(rules::locations()) })))
}

async fn get_location(headers: HeaderMap, Query(q): Q, UrlPath(loc): UrlPath<String>) -> Response {
    checked!(
        headers,
        q,
        rules::location(&loc).map(|l| json(200, &l)).ok_or_else(|| ApiError {
            status: 404,
            code: "ResourceNotFound",
            message: format!("The location '{loc}' was not found."),
        })
    )
}

async fn list_sub(State(emu): Emu, headers: HeaderMap, Query(q): Q, UrlPath(sub): UrlPath<String>) -> Response {
    checked!(headers, q, {
        let s = emu.state.lock().expect("lock");
        Ok(json(200, &arm::ListJobsResponse { next_link: None, value: Some(s.service.list_jobs(&sub, None)) }))
    })
}

async fn list_rg(
    State(emu): Emu,
    headers: HeaderMap,
    Query(q): Q,
    UrlPath((sub, rg)): UrlPath<(String, String)>,
) -> Response {
    checked!(headers, q, {
        let s = emu.state.lock().expect("lock");
        Ok(json(200, &arm::ListJobsResponse { next_link: None, value: Some(s.service.list_jobs(&sub, Some(&rg))) }))
    })
}

async fn get_job(
    State(emu): Emu,
    headers: HeaderMap,
    Query(q): Q,
    UrlPath((sub, rg, job)): UrlPath<(String, String, String)>,
) -> Response {
    checked!(headers, q, {
        let s = emu.state.lock().expect("lock");
        s.service.get_job(&sub, &rg, &job).map(|j| json(200, &j.job))
    })
}

async fn put_job(
    State(emu): Emu,
    headers: HeaderMap,
    Query(q): Q,
    UrlPath((sub, rg, job)): UrlPath<(String, String, String)>,
    b: Bytes,
) -> Response {
    checked!(headers, q, {
        let p: arm::PutJobParameters = body(&b)?;
        let who = caller(&headers);
        emu.mutate(|s, now| s.put_job(&sub, &rg, &job, p, &who, now)).map(|(code, j)| json(code, &j))
    })
}

async fn patch_job(
    State(emu): Emu,
    headers: HeaderMap,
    Query(q): Q,
    UrlPath((sub, rg, job)): UrlPath<(String, String, String)>,
    b: Bytes,
) -> Response {
    checked!(headers, q, {
        let p: arm::UpdateJobParameters = body(&b)?;
        let who = caller(&headers);
        emu.mutate(|s, now| s.update_job(&sub, &rg, &job, p, &who, now)).map(|j| json(200, &j))
    })
}

async fn delete_job(
    State(emu): Emu,
    headers: HeaderMap,
    Query(q): Q,
    UrlPath((sub, rg, job)): UrlPath<(String, String, String)>,
) -> Response {
    checked!(headers, q, emu.mutate(|s, _| s.delete_job(&sub, &rg, &job)).map(|_| StatusCode::OK.into_response()))
}

async fn keys(
    State(emu): Emu,
    headers: HeaderMap,
    Query(q): Q,
    UrlPath((sub, rg, job)): UrlPath<(String, String, String)>,
) -> Response {
    checked!(headers, q, {
        let s = emu.state.lock().expect("lock");
        s.service.bitlocker_keys(&sub, &rg, &job).map(|k| json(200, &k))
    })
}

// The datacenter's commands: what the people and machines at the datacenter do. No bearer
// token (they are the emulator's operator's); JSON in, the job (or what happened) out.

#[derive(Debug, serde::Deserialize)]
pub struct ArriveBody {
    /// The drives in the package, by id.
    #[serde(default)]
    pub drives: Vec<String>,
    /// Drive id → the disk image that came for it (what "copy" reads).
    #[serde(default)]
    pub images: BTreeMap<String, PathBuf>,
    /// Disk images in the package, identified by reading each one's header (its label).
    #[serde(default)]
    pub disks: Vec<PathBuf>,
}

#[derive(Debug, serde::Deserialize)]
pub struct CorruptBody {
    pub drive: String,
    /// How many parts (files or pieces) to damage, largest first.
    #[serde(default = "one")]
    pub parts: usize,
}

fn one() -> usize {
    1
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct CopyBody {
    /// One drive; absent: every drive that is `Received`.
    #[serde(default)]
    pub drive: Option<String>,
}

#[derive(Debug, serde::Deserialize)]
pub struct DriveBody {
    pub drive: String,
    #[serde(default)]
    pub bytes: i64,
    /// Ends the drive `CompletedMoreInfo` with this as its copy status.
    #[serde(default)]
    pub failure: Option<String>,
}

#[derive(Debug, serde::Deserialize)]
pub struct ShipBackBody {
    pub carrier: String,
    pub tracking: String,
    pub date: String,
}

#[derive(Debug, serde::Deserialize)]
pub struct AdvanceBody {
    pub days: i64,
}

type JobPath = UrlPath<(String, String, String)>;

async fn dc_arrive(State(emu): Emu, UrlPath((sub, rg, job)): JobPath, b: Bytes) -> Response {
    let r = body::<ArriveBody>(&b).and_then(|mut a| {
        for d in std::mem::take(&mut a.disks) {
            let h = seedship_disk::format::probe(&d).ok().flatten().ok_or_else(|| {
                ApiError::new(400, "UnreadableDisk", format!("{} is not a seedship disk", d.display()))
            })?;
            a.drives.push(h.drive_id.clone());
            a.images.insert(h.drive_id, d);
        }
        let j = emu.mutate(|s, _| s.package_arrives(&sub, &rg, &job, &a.drives))?;
        emu.update(|p| {
            p.images.insert(job.to_ascii_lowercase(), a.images);
        })?;
        Ok(j)
    });
    r.map(|j| json(200, &j)).unwrap_or_else(|e| error(&e))
}

/// "Copy drives": really imports them. Each drive (one, or every `Received` one) is started,
/// copied into the storage account from its disk image, and finished `Completed` or
/// `CompletedMoreInfo` with the reason and an error log.
async fn dc_copy(State(emu): Emu, UrlPath((sub, rg, job)): JobPath, b: Bytes) -> Response {
    let r = async {
        let c: CopyBody = if b.is_empty() { CopyBody::default() } else { body(&b)? };
        let storage = emu.storage.clone().ok_or_else(|| ApiError {
            status: 409,
            code: "NoStorage",
            message: "the emulator was started without --storage-url: it has nowhere to copy to".into(),
        })?;
        let _one = emu.copying.lock().await;
        let (drives, details, images) = {
            let s = emu.state.lock().expect("lock");
            let j = s.service.get_job(&sub, &rg, &job)?;
            let list = j.details().drive_list.clone().unwrap_or_default();
            let drives: Vec<String> = list
                .iter()
                .filter(|d| c.drive.as_ref().is_none_or(|x| d.drive_id.as_ref() == Some(x)))
                // A drive left Transferring (the datacenter stopped mid-copy) is copied again.
                .filter(|d| c.drive.is_some() || matches!(d.state.as_deref(), Some("Received" | "Transferring")))
                .filter_map(|d| d.drive_id.clone())
                .collect();
            (drives, j.details().clone(), s.images.get(&job.to_ascii_lowercase()).cloned().unwrap_or_default())
        };
        let account =
            details.storage_account_id.as_deref().and_then(|id| id.rsplit('/').next()).unwrap_or_default().to_string();
        for drive in drives {
            emu.mutate(|s, _| s.start_copy(&sub, &rg, &job, &drive))?;
            let key = emu.state.lock().expect("lock").service.drive_key(&sub, &rg, &job, &drive)?;
            let listed = details.drive_list.iter().flatten().find(|d| d.drive_id.as_deref() == Some(&drive));
            let order = DriveOrder {
                job: job.clone(),
                drive_id: drive.clone(),
                image: images.get(&drive).cloned().unwrap_or_default(),
                key: key.0,
                manifest_hash: listed.and_then(|d| d.manifest_hash.clone()).unwrap_or_default(),
                account: account.clone(),
                diagnostics_path: details.diagnostics_path.clone().unwrap_or_else(|| "waimportexport".into()),
                verbose: details.log_level.as_deref() == Some("Verbose"),
            };
            let mut ingest =
                emu.state.lock().expect("lock").ingest.get(&job.to_ascii_lowercase()).cloned().unwrap_or_default();
            let out = if order.image.as_os_str().is_empty() {
                crate::ingest::DriveOutcome {
                    failure: Some("no disk image came for this drive".into()),
                    ..Default::default()
                }
            } else {
                copy_drive(&storage, &order, &mut ingest).await
            };
            tracing::info!(%job, %drive, bytes = out.bytes, failure = ?out.failure, "drive copied");
            emu.update(|p| {
                p.ingest.insert(job.to_ascii_lowercase(), ingest);
            })?;
            emu.mutate(|s, _| {
                s.finish_copy(&sub, &rg, &job, &drive, out.bytes, out.failure.as_deref(), out.error_log_uri.clone())?;
                match out.verbose_log_uri.clone() {
                    Some(uri) => s.set_verbose_log(&sub, &rg, &job, &drive, uri),
                    None => Ok(()),
                }
            })?;
        }
        let s = emu.state.lock().expect("lock");
        Ok::<_, ApiError>(s.service.get_job(&sub, &rg, &job)?.job.clone())
    }
    .await;
    r.map(|j| json(200, &j)).unwrap_or_else(|e| error(&e))
}

/// "Corrupt blocks": damages parts of a drive that arrived, before it is copied.
async fn dc_corrupt(State(emu): Emu, UrlPath((sub, rg, job)): JobPath, b: Bytes) -> Response {
    let r = body::<CorruptBody>(&b).and_then(|c| {
        let (image, key) = {
            let s = emu.state.lock().expect("lock");
            let key = s.service.drive_key(&sub, &rg, &job, &c.drive)?;
            let image = s.images.get(&job.to_ascii_lowercase()).and_then(|m| m.get(&c.drive)).cloned();
            (image, key)
        };
        let image = image.ok_or_else(|| {
            ApiError::new(409, "InvalidDriveState", format!("Drive '{}' has not arrived with a disk image.", c.drive))
        })?;
        let damaged = crate::ingest::corrupt_parts(&image, &key.0, c.parts)
            .map_err(|e| ApiError::new(409, "UnreadableDisk", e))?;
        tracing::info!(%job, drive = %c.drive, ?damaged, "disk damaged on purpose");
        Ok(serde_json::json!({ "drive": c.drive, "damaged": damaged }))
    });
    r.map(|v| json(200, &v)).unwrap_or_else(|e| error(&e))
}

/// The datacenter's view of a container: every blob with its size and MD5 (hex).
async fn dc_storage(State(emu): Emu, UrlPath((account, container)): UrlPath<(String, String)>) -> Response {
    let r = async {
        let storage = emu.storage.clone().ok_or_else(|| ApiError::new(409, "NoStorage", "no --storage-url"))?;
        let store = storage.account(&account).map_err(|e| ApiError::new(404, "StorageAccountNotFound", e))?;
        let blobs = store.list(&container).await.map_err(|e| ApiError::new(502, "StorageError", e.to_string()))?;
        let out: Vec<serde_json::Value> = blobs
            .into_iter()
            .map(|b| serde_json::json!({ "name": b.name, "size": b.size, "md5": b.md5.map(hex::encode) }))
            .collect();
        Ok::<_, ApiError>(serde_json::json!({ "account": account, "container": container, "blobs": out }))
    }
    .await;
    r.map(|v| json(200, &v)).unwrap_or_else(|e| error(&e))
}

async fn dc_start_copy(State(emu): Emu, UrlPath((sub, rg, job)): JobPath, b: Bytes) -> Response {
    let r = body::<DriveBody>(&b).and_then(|d| emu.mutate(|s, _| s.start_copy(&sub, &rg, &job, &d.drive)));
    r.map(|j| json(200, &j)).unwrap_or_else(|e| error(&e))
}

async fn dc_finish_copy(State(emu): Emu, UrlPath((sub, rg, job)): JobPath, b: Bytes) -> Response {
    let r = body::<DriveBody>(&b)
        .and_then(|d| emu.mutate(|s, _| s.finish_copy(&sub, &rg, &job, &d.drive, d.bytes, d.failure.as_deref(), None)));
    r.map(|j| json(200, &j)).unwrap_or_else(|e| error(&e))
}

async fn dc_ship_back(State(emu): Emu, UrlPath((sub, rg, job)): JobPath, b: Bytes) -> Response {
    let r = body::<ShipBackBody>(&b)
        .and_then(|p| emu.mutate(|s, _| s.ship_back(&sub, &rg, &job, &p.carrier, &p.tracking, &p.date)));
    r.map(|j| json(200, &j)).unwrap_or_else(|e| error(&e))
}

/// Moves the datacenter's clock forward, then applies its timers.
async fn dc_advance(State(emu): Emu, b: Bytes) -> Response {
    let r = body::<AdvanceBody>(&b).and_then(|a| {
        {
            let mut st = emu.state.lock().expect("lock");
            st.clock_offset_ms += a.days * rules::DAY_MS;
        }
        emu.mutate(|s, now| Ok(s.tick(now)))
    });
    r.map(|said| json(200, &serde_json::json!({ "now_unix_ms": emu.now_ms(), "events": said })))
        .unwrap_or_else(|e| error(&e))
}

async fn dc_tick(State(emu): Emu) -> Response {
    emu.mutate(|s, now| Ok(s.tick(now)))
        .map(|said| json(200, &serde_json::json!({ "now_unix_ms": emu.now_ms(), "events": said })))
        .unwrap_or_else(|e| error(&e))
}

async fn dc_faults(State(emu): Emu, b: Bytes) -> Response {
    match body::<Faults>(&b) {
        Ok(f) if f.status == 429 || (500..600).contains(&f.status) => {
            *emu.faults.lock().expect("lock") = f;
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(_) => {
            error(&ApiError { status: 400, code: "InvalidRequestContent", message: "status must be 429 or 5xx".into() })
        }
        Err(e) => error(&e),
    }
}

/// Answers ARM requests with an injected failure while any are left.
async fn inject(State(emu): Emu, req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let fault = if req.uri().path().starts_with("/_datacenter") {
        None
    } else {
        let mut f = emu.faults.lock().expect("lock");
        let applies = f.method.as_deref().is_none_or(|m| m.eq_ignore_ascii_case(req.method().as_str()));
        if f.count > 0 && applies {
            f.count -= 1;
            Some(f.clone())
        } else {
            None
        }
    };
    let Some(f) = fault else { return next.run(req).await };
    if f.hang_secs > 0 {
        tokio::time::sleep(std::time::Duration::from_secs(f.hang_secs)).await;
    }
    if f.after_apply {
        let done = next.run(req).await;
        tracing::info!(status = %done.status(), "request carried out; its answer replaced by an injected fault");
    }
    let (code, message) = if f.status == 429 {
        ("TooManyRequests", "The request is being throttled (emulated).")
    } else {
        ("InternalServerError", "The server had an error (emulated).")
    };
    let mut r = error(&ApiError { status: f.status, code, message: message.into() });
    if f.status == 429 {
        r.headers_mut().insert("retry-after", f.retry_after_secs.to_string().parse().expect("header"));
    }
    r
}

async fn fallback() -> Response {
    error(&ApiError {
        status: 404,
        code: "NoRegisteredProviderFound",
        message: "No route for this request in the emulated Microsoft.ImportExport API.".into(),
    })
}

pub fn router(emu: Arc<Emulator>) -> Router {
    const JOBS: &str = "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ImportExport/jobs";
    const DC: &str = "/_datacenter/subscriptions/{sub}/resourceGroups/{rg}/jobs";
    Router::new()
        .route("/providers/Microsoft.ImportExport/locations", get(list_locations))
        .route("/providers/Microsoft.ImportExport/locations/{loc}", get(get_location))
        .route("/subscriptions/{sub}/providers/Microsoft.ImportExport/jobs", get(list_sub))
        .route(JOBS, get(list_rg))
        .route(&format!("{JOBS}/{{job}}"), get(get_job).put(put_job).patch(patch_job).delete(delete_job))
        .route(&format!("{JOBS}/{{job}}/listBitLockerKeys"), post(keys))
        .route(&format!("{DC}/{{job}}/arrive"), post(dc_arrive))
        .route(&format!("{DC}/{{job}}/copy"), post(dc_copy))
        .route(&format!("{DC}/{{job}}/corrupt"), post(dc_corrupt))
        .route(&format!("{DC}/{{job}}/start-copy"), post(dc_start_copy))
        .route(&format!("{DC}/{{job}}/finish-copy"), post(dc_finish_copy))
        .route(&format!("{DC}/{{job}}/ship-back"), post(dc_ship_back))
        .route("/_datacenter/storage/{account}/{container}", get(dc_storage))
        .route("/_datacenter/clock/advance", post(dc_advance))
        .route("/_datacenter/tick", post(dc_tick))
        .route("/_datacenter/faults", post(dc_faults))
        .fallback(fallback)
        .layer(axum::middleware::from_fn_with_state(emu.clone(), inject))
        .with_state(emu)
}

/// The emulator's TLS: a CA of its own (`ca.crt` in `dir`, for clients to trust) and a
/// certificate for 127.0.0.1 and localhost, made on first start and kept.
pub fn tls(dir: &Path) -> Result<tokio_rustls::TlsAcceptor, String> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
    let err = |e: &dyn std::fmt::Display| format!("emulator TLS in {}: {e}", dir.display());
    let (cert_p, key_p, ca_p) = (dir.join("server.crt"), dir.join("server.key"), dir.join("ca.crt"));
    if !cert_p.exists() {
        std::fs::create_dir_all(dir).map_err(|e| err(&e))?;
        let ca_key = KeyPair::generate().map_err(|e| err(&e))?;
        let mut ca = CertificateParams::default();
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.distinguished_name.push(DnType::CommonName, "seedship Azure emulator CA");
        let ca_cert = ca.self_signed(&ca_key).map_err(|e| err(&e))?;
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().map_err(|e| err(&e))?;
        let mut p = CertificateParams::new(vec!["localhost".to_string()]).map_err(|e| err(&e))?;
        p.subject_alt_names.push(SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])));
        p.distinguished_name.push(DnType::CommonName, "seedship Azure emulator");
        let cert = p.signed_by(&key, &issuer).map_err(|e| err(&e))?;
        std::fs::write(&ca_p, ca_cert.pem()).map_err(|e| err(&e))?;
        std::io::Write::write_all(&mut private_file(&key_p).map_err(|e| err(&e))?, key.serialize_pem().as_bytes())
            .map_err(|e| err(&e))?;
        std::fs::write(&cert_p, cert.pem()).map_err(|e| err(&e))?;
    }
    let certs: Vec<_> =
        rustls_pemfile::certs(&mut std::io::BufReader::new(std::fs::File::open(&cert_p).map_err(|e| err(&e))?))
            .collect::<Result<_, _>>()
            .map_err(|e| err(&e))?;
    let key =
        rustls_pemfile::private_key(&mut std::io::BufReader::new(std::fs::File::open(&key_p).map_err(|e| err(&e))?))
            .map_err(|e| err(&e))?
            .ok_or_else(|| err(&"no private key"))?;
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| err(&e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| err(&e))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}

/// Serves `router` over TLS on `listener` until `stop` resolves.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    router: Router,
    stop: impl std::future::Future<Output = ()>,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::service::TowerToHyperService;
    tokio::pin!(stop);
    loop {
        let (tcp, _) = tokio::select! {
            _ = &mut stop => return,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
        };
        let (acceptor, router) = (acceptor.clone(), router.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else { return };
            let svc = TowerToHyperService::new(router);
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), svc)
                .await;
        });
    }
}

/// Creates (or truncates) `path` readable by its owner only (mode 0600, also when it existed).
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(f)
}
