//! The datacenter's commands: what the people and machines of Azure (and the carriers) do,
//! under `/_datacenter/`. No bearer token (they are the emulator's operator's); JSON in, the
//! job (with its details) or what happened out. The whole router, with the ARM face and the
//! injected faults, is [`router`].
//!
//! | command | what happens |
//! |---|---|
//! | `POST /_datacenter/resource-groups` `{subscription, resourceGroup}` | the resource group exists |
//! | `POST /_datacenter/jobs/{sub}/{rg}/{job}/prepare` `{disks?}` | Data Box Disk: disks picked (the order's count, or `disks`), serials and keys made |
//! | `.../dispatch` `{carrier, tracking}` | Data Box Disk: the disks leave |
//! | `.../deliver` `{dir, sizeBytes}` | Data Box Disk: the disks arrive as images `dir/<serial>.img`: BitLocker XTS-AES-128 volumes (seedship's writer) that the disk's `bitLockerKey` and the order's passkey unlock, holding NTFS (mkntfs) with the folders `BlockBlob`, `PageBlob`, `AzureFile`, `DataBoxDiskImport` (made through dislocker-fuse and ntfs-3g) |
//! | `.../pickup` `{carrier, tracking}` | Data Box Disk: the carrier collects the filled disks |
//! | `.../arrive` `{disks: [image], images: {serial: image}}` | the package reaches the datacenter; a disk in `disks` is known by its drive manifest's `DriveId`, else by its name `<serial>.img`; a disk left out is `DriveNotReceived` |
//! | `.../copy` `{serial?, complete?}` | each received disk copied into blob storage (the copy log in `databoxcopylog`); then the job completes unless `complete: false` |
//! | `.../fail` `{serial, status}` | a disk's copy ends with that copy status |
//! | `.../wait` `{serial?}` | the copy waits for a customer action (`mitigate`) |
//! | `.../complete` | the copy ends: the job's final state follows from its disks |
//! | `.../ship-back` `{carrier, tracking}` | the disks go back |
//! | `GET /_datacenter/storage/{account}/{container}` | blobs with size and MD5 |
//! | `POST /_datacenter/clock/advance` `{days}`, `POST /_datacenter/tick` | the service's timers |
//! | `POST /_datacenter/faults` | the next ARM requests fail (429/5xx, hang, answer lost) |

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use seedship_azure::databox::{CopyStatus, Sku};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::arm::{error, json};
use crate::ingest::{DiskOrder, DiskOutcome, copy_disk};
use crate::server::{Emulator, Faults};
use crate::service::{ApiError, DAY_MS};

type Emu = State<Arc<Emulator>>;
type JobPath = UrlPath<(String, String, String)>;

fn body<T: DeserializeOwned + Default>(b: &Bytes) -> Result<T, ApiError> {
    if b.is_empty() {
        return Ok(T::default());
    }
    serde_json::from_slice(b).map_err(|e| ApiError::bad("InvalidRequestContent", format!("{e}")))
}

fn job_key(sub: &str, rg: &str, job: &str) -> String {
    format!("{}/{}/{}", sub.to_ascii_lowercase(), rg.to_ascii_lowercase(), job.to_ascii_lowercase())
}

/// The job as a GET with `$expand=details` shows it.
fn show(emu: &Emulator, sub: &str, rg: &str, job: &str) -> Result<Response, ApiError> {
    let s = emu.state.lock().expect("lock");
    Ok(json(200, &s.service.get_job(sub, rg, job, true)?.0))
}

fn answer(r: Result<Response, ApiError>) -> Response {
    r.unwrap_or_else(|e| error(&e))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResourceGroupBody {
    subscription: String,
    resource_group: String,
}

async fn resource_group(State(emu): Emu, b: Bytes) -> Response {
    answer(body::<ResourceGroupBody>(&b).and_then(|r| {
        emu.mutate(|s, _| {
            s.add_resource_group(&r.subscription, &r.resource_group);
            Ok(())
        })?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }))
}

#[derive(Debug, Default, Deserialize)]
struct CarrierBody {
    #[serde(default)]
    carrier: String,
    #[serde(default)]
    tracking: String,
}

#[derive(Debug, Default, Deserialize)]
struct PrepareBody {
    /// How many disks fulfil the order (Microsoft may ship more, smaller disks than the
    /// order's preferred ones); default: the order's count.
    #[serde(default)]
    disks: Option<u32>,
}

async fn prepare(State(emu): Emu, UrlPath((sub, rg, job)): JobPath, b: Bytes) -> Response {
    answer(body::<PrepareBody>(&b).and_then(|p| {
        emu.mutate(|s, now| s.prepare_disks(&sub, &rg, &job, p.disks, now))?;
        show(&emu, &sub, &rg, &job)
    }))
}

async fn dispatch(State(emu): Emu, UrlPath((sub, rg, job)): JobPath, b: Bytes) -> Response {
    answer(body::<CarrierBody>(&b).and_then(|c| {
        emu.mutate(|s, now| s.dispatch(&sub, &rg, &job, &c.carrier, &c.tracking, now))?;
        show(&emu, &sub, &rg, &job)
    }))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeliverBody {
    /// Where the delivered disks appear (the copy station's disk folder).
    dir: PathBuf,
    /// Each disk's size (sparse).
    #[serde(default)]
    size_bytes: u64,
}

/// Data Box Disk: the disks arrive at the customer as empty (sparse) images named by serial.
async fn deliver(State(emu): Emu, UrlPath((sub, rg, job)): JobPath, b: Bytes) -> Response {
    answer(body::<DeliverBody>(&b).and_then(|d| {
        if d.dir.as_os_str().is_empty() {
            return Err(ApiError::bad("InvalidRequestContent", "'dir' (where the disks are delivered) is required."));
        }
        let serials = emu.mutate(|s, now| s.deliver(&sub, &rg, &job, now))?;
        let size = if d.size_bytes == 0 { seedship_azure::databox::DATABOX_DISK_USABLE_BYTES } else { d.size_bytes };
        // Each disk is BitLocker with its own key, and the order's passkey opens every one.
        let (keys, passkey) = {
            let s = emu.state.lock().expect("lock");
            let j = s.service.job(&sub, &rg, &job)?;
            let keys: BTreeMap<String, String> =
                j.disk_keys.iter().map(|(k, v)| (k.clone(), v.expose().to_string())).collect();
            (keys, j.passkey.as_ref().map(|p| p.expose().to_string()).unwrap_or_default())
        };
        let mut disks = BTreeMap::new();
        for serial in serials {
            let path = d.dir.join(format!("{serial}.img"));
            let key = keys.get(&serial).map(String::as_str).unwrap_or_default();
            crate::ntfs_ingest::make_databox_disk(&path, size, &serial, key, &passkey)
                .map_err(|e| ApiError::new(500, "DeliveryFailed", format!("{}: {e}", path.display())))?;
            disks.insert(serial, path);
        }
        Ok(json(200, &serde_json::json!({ "disks": disks })))
    }))
}

async fn pickup(State(emu): Emu, UrlPath((sub, rg, job)): JobPath, b: Bytes) -> Response {
    answer(body::<CarrierBody>(&b).and_then(|c| {
        emu.mutate(|s, now| s.pick_up(&sub, &rg, &job, &c.carrier, &c.tracking, now))?;
        show(&emu, &sub, &rg, &job)
    }))
}

#[derive(Debug, Default, Deserialize)]
struct ArriveBody {
    /// Disk images in the package, each known by its drive manifest's `DriveId` or its name.
    #[serde(default)]
    disks: Vec<PathBuf>,
    /// Serial → the disk image that came for it.
    #[serde(default)]
    images: BTreeMap<String, PathBuf>,
}

async fn arrive(State(emu): Emu, UrlPath((sub, rg, job)): JobPath, b: Bytes) -> Response {
    answer(body::<ArriveBody>(&b).and_then(|mut a| {
        for d in std::mem::take(&mut a.disks) {
            let serial = crate::ntfs_ingest::serial_of(&d).ok_or_else(|| {
                ApiError::bad(
                    "UnreadableDisk",
                    format!(
                        "{} carries no serial the datacenter can read from it; name its serial in 'images' ({{serial: image}})",
                        d.display()
                    ),
                )
            })?;
            a.images.insert(serial, d);
        }
        let serials: Vec<String> = a.images.keys().cloned().collect();
        emu.mutate(|s, now| s.arrive(&sub, &rg, &job, &serials, now))?;
        emu.update(|p| {
            p.images.insert(job_key(&sub, &rg, &job), a.images);
        })?;
        show(&emu, &sub, &rg, &job)
    }))
}

#[derive(Debug, Deserialize)]
struct CopyBody {
    /// One disk; absent: every received disk not copied yet.
    #[serde(default)]
    serial: Option<String>,
    /// Complete the job after the copy (default).
    #[serde(default = "yes")]
    complete: bool,
}

impl Default for CopyBody {
    fn default() -> Self {
        CopyBody { serial: None, complete: true }
    }
}

fn yes() -> bool {
    true
}

/// "Copy": really imports the disks into the job's storage account.
async fn copy(State(emu): Emu, UrlPath((sub, rg, job)): JobPath, b: Bytes) -> Response {
    let r = async {
        let c: CopyBody = body(&b)?;
        let storage = emu.storage.clone().ok_or_else(|| {
            ApiError::conflict("NoStorage", "the emulator was started without --storage-url: it has nowhere to copy to")
        })?;
        let _one = emu.copying.lock().await;
        let k = job_key(&sub, &rg, &job);
        let (orders, verbose) = {
            let s = emu.state.lock().expect("lock");
            let j = s.service.job(&sub, &rg, &job)?;
            let images = s.images.get(&k).cloned().unwrap_or_default();
            let (account, verbose, hashes) = match j.details() {
                seedship_azure::databox::model::JobDetails::DataBoxCustomerDisk(d) => (
                    import_account(d.data_import_details.as_ref()),
                    verbose(d.data_import_details.as_ref()),
                    d.import_disk_details_collection
                        .iter()
                        .flatten()
                        .map(|(s, x)| (s.clone(), (x.manifest_hash.clone(), x.manifest_file.clone())))
                        .collect::<BTreeMap<_, _>>(),
                ),
                seedship_azure::databox::model::JobDetails::DataBoxDisk(d) => (
                    import_account(d.data_import_details.as_ref()),
                    verbose(d.data_import_details.as_ref()),
                    BTreeMap::new(),
                ),
                _ => return Err(ApiError::conflict("InvalidOperationForSku", "not an emulated kind")),
            };
            let orders: Vec<DiskOrder> = j
                .received
                .iter()
                .filter(|s| c.serial.as_ref().is_none_or(|x| x == *s))
                .map(|serial| DiskOrder {
                    order: j.name.clone(),
                    job_id: format!("{:016x}", j.created_ms),
                    serial: serial.clone(),
                    image: images.get(serial).cloned().unwrap_or_default(),
                    key: j.disk_keys.get(serial).map(|k| k.expose().to_string()).unwrap_or_default(),
                    manifest_hash: hashes.get(serial).and_then(|(h, _)| h.clone()),
                    manifest_file: hashes.get(serial).and_then(|(_, f)| f.clone()),
                    sku: j.sku().unwrap_or(Sku::CustomerDisk),
                    account: account.clone(),
                    verbose,
                })
                .collect();
            (orders, verbose)
        };
        let _ = verbose;
        for order in orders {
            let total = std::fs::metadata(&order.image).map(|m| m.len() as i64).unwrap_or(0);
            emu.mutate(|s, now| s.start_copy(&sub, &rg, &job, &order.serial, total, now))?;
            let mut ingest = emu.state.lock().expect("lock").ingest.get(&k).cloned().unwrap_or_default();
            let out: DiskOutcome = copy_disk(&storage, &order, &mut ingest).await;
            tracing::info!(%job, serial = %order.serial, status = out.status.as_str(), bytes = out.bytes, failure = ?out.failure, "disk copied");
            emu.update(|p| {
                p.ingest.insert(k.clone(), ingest);
            })?;
            emu.mutate(|s, _| {
                s.finish_copy(
                    &sub,
                    &rg,
                    &job,
                    &order.serial,
                    out.status,
                    out.bytes,
                    out.files,
                    out.errored.len() as i64,
                    out.error_log.clone(),
                    out.verbose_log.clone(),
                )
            })?;
        }
        if c.complete {
            emu.mutate(|s, now| s.complete(&sub, &rg, &job, now))?;
        }
        show(&emu, &sub, &rg, &job)
    }
    .await;
    answer(r)
}

fn import_account(d: Option<&Vec<seedship_azure::databox::model::DataImportDetails>>) -> String {
    use seedship_azure::databox::model::DataAccountDetails;
    d.and_then(|v| v.first())
        .and_then(|x| match &x.account_details {
            Some(DataAccountDetails::StorageAccount(s)) => s.storage_account_id.clone(),
            _ => None,
        })
        .map(|id| id.rsplit('/').next().unwrap_or_default().to_string())
        .unwrap_or_default()
}

fn verbose(d: Option<&Vec<seedship_azure::databox::model::DataImportDetails>>) -> bool {
    d.and_then(|v| v.first()).and_then(|x| x.log_collection_level.as_deref()) == Some("Verbose")
}

#[derive(Debug, Default, Deserialize)]
struct FailBody {
    serial: String,
    status: String,
}

/// A disk's copy ends with a failure status (a real `CopyStatus` value).
async fn fail(State(emu): Emu, UrlPath((sub, rg, job)): JobPath, b: Bytes) -> Response {
    answer(body::<FailBody>(&b).and_then(|f| {
        let status = CopyStatus::parse(&f.status).filter(|s| s.is_failure()).ok_or_else(|| {
            ApiError::bad("InvalidCopyStatus", format!("'{}' is not a failure copy status.", f.status))
        })?;
        emu.mutate(|s, now| {
            s.start_copy(&sub, &rg, &job, &f.serial, 0, now)?;
            s.finish_copy(&sub, &rg, &job, &f.serial, status, 0, 0, 0, None, None)
        })?;
        show(&emu, &sub, &rg, &job)
    }))
}

#[derive(Debug, Default, Deserialize)]
struct WaitBody {
    #[serde(default)]
    serial: Option<String>,
}

async fn wait(State(emu): Emu, UrlPath((sub, rg, job)): JobPath, b: Bytes) -> Response {
    answer(body::<WaitBody>(&b).and_then(|w| {
        emu.mutate(|s, now| s.wait_for_customer(&sub, &rg, &job, w.serial.as_deref(), now))?;
        show(&emu, &sub, &rg, &job)
    }))
}

async fn complete(State(emu): Emu, UrlPath((sub, rg, job)): JobPath) -> Response {
    answer(emu.mutate(|s, now| s.complete(&sub, &rg, &job, now)).and_then(|_| show(&emu, &sub, &rg, &job)))
}

async fn ship_back(State(emu): Emu, UrlPath((sub, rg, job)): JobPath, b: Bytes) -> Response {
    answer(body::<CarrierBody>(&b).and_then(|c| {
        emu.mutate(|s, now| s.ship_back(&sub, &rg, &job, &c.carrier, &c.tracking, now))?;
        show(&emu, &sub, &rg, &job)
    }))
}

/// The datacenter's view of a container: every blob with its size and MD5 (hex).
async fn storage(State(emu): Emu, UrlPath((account, container)): UrlPath<(String, String)>) -> Response {
    let r = async {
        let storage = emu.storage.clone().ok_or_else(|| ApiError::conflict("NoStorage", "no --storage-url"))?;
        let store = storage.account(&account).map_err(|e| ApiError::new(404, "StorageAccountNotFound", e))?;
        let blobs = store.list(&container).await.map_err(|e| ApiError::new(502, "StorageError", e.to_string()))?;
        let out: Vec<serde_json::Value> = blobs
            .into_iter()
            .map(|b| serde_json::json!({ "name": b.name, "size": b.size, "md5": b.md5.map(hex::encode) }))
            .collect();
        Ok::<_, ApiError>(json(200, &serde_json::json!({ "account": account, "container": container, "blobs": out })))
    }
    .await;
    answer(r)
}

#[derive(Debug, Default, Deserialize)]
struct AdvanceBody {
    days: i64,
}

/// Moves the service's clock forward, then applies its timers.
async fn advance(State(emu): Emu, b: Bytes) -> Response {
    answer(body::<AdvanceBody>(&b).and_then(|a| {
        emu.update(|p| p.clock_offset_ms += a.days * DAY_MS)?;
        let said = emu.mutate(|s, now| Ok(s.tick(now)))?;
        Ok(json(200, &serde_json::json!({ "now_unix_ms": emu.now_ms(), "events": said })))
    }))
}

async fn tick(State(emu): Emu) -> Response {
    answer(
        emu.mutate(|s, now| Ok(s.tick(now)))
            .map(|said| json(200, &serde_json::json!({ "now_unix_ms": emu.now_ms(), "events": said }))),
    )
}

async fn faults(State(emu): Emu, b: Bytes) -> Response {
    match body::<Faults>(&b) {
        Ok(f) if f.status == 429 || (500..600).contains(&f.status) => {
            *emu.faults.lock().expect("lock") = f;
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(_) => error(&ApiError::bad("InvalidRequestContent", "status must be 429 or 5xx")),
        Err(e) => error(&e),
    }
}

/// Answers ARM requests with an injected failure while any are left.
async fn inject(State(emu): Emu, req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let fault = {
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
    let mut r = error(&ApiError::new(f.status, code, message));
    if f.status == 429 {
        r.headers_mut().insert("retry-after", f.retry_after_secs.to_string().parse().expect("header"));
    }
    r
}

async fn arm_face(
    State(emu): Emu,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
    b: Bytes,
) -> Response {
    crate::arm::handle(emu, method, uri, headers, b).await
}

/// The whole emulator: the ARM face (every path outside `/_datacenter`, with ARM's headers, the
/// record and the injected faults) and the datacenter's commands.
pub fn router(emu: Arc<Emulator>) -> Router {
    const JOB: &str = "/_datacenter/jobs/{sub}/{rg}/{job}";
    let arm = Router::new()
        .fallback(arm_face)
        .layer(axum::middleware::from_fn_with_state(emu.clone(), inject))
        .layer(axum::middleware::from_fn_with_state(emu.clone(), crate::arm::around))
        .with_state(emu.clone());
    Router::new()
        .route("/_datacenter/resource-groups", post(resource_group))
        .route(&format!("{JOB}/prepare"), post(prepare))
        .route(&format!("{JOB}/dispatch"), post(dispatch))
        .route(&format!("{JOB}/deliver"), post(deliver))
        .route(&format!("{JOB}/pickup"), post(pickup))
        .route(&format!("{JOB}/arrive"), post(arrive))
        .route(&format!("{JOB}/copy"), post(copy))
        .route(&format!("{JOB}/fail"), post(fail))
        .route(&format!("{JOB}/wait"), post(wait))
        .route(&format!("{JOB}/complete"), post(complete))
        .route(&format!("{JOB}/ship-back"), post(ship_back))
        .route("/_datacenter/storage/{account}/{container}", get(storage))
        .route("/_datacenter/clock/advance", post(advance))
        .route("/_datacenter/tick", post(tick))
        .route("/_datacenter/faults", post(faults))
        .with_state(emu)
        .fallback_service(arm)
}
