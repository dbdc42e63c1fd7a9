//! Blob storage through the official `azure_storage_blob` 1.x client.
//!
//! Against Azure, the client authenticates with Entra ID tokens (https only). That crate has
//! no Shared Key authentication, which Azurite and users with account keys need, so
//! [`SharedKeyPolicy`] signs each request (each try) with the account key, as the Storage
//! service's "Shared Key" scheme describes: the canonical headers and resource, HMAC-SHA256.

use std::sync::Arc;

use azure_core::credentials::TokenCredential;
use azure_core::http::policies::{Policy, PolicyResult};
use azure_core::http::{ClientOptions, Context, Request, RequestContent, Transport};
use azure_storage_blob::models::{BlobClientDownloadOptions, BlobClientGetPropertiesResultHeaders, BlockLookupList};
use azure_storage_blob::{BlobServiceClient, BlobServiceClientOptions};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

/// What went wrong talking to blob storage.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The service answered with an error status.
    #[error("blob storage answered {status} {code}")]
    Service { status: u16, code: String },
    /// No answer (connection refused, timeout).
    #[error("blob storage is unreachable: {0}")]
    Unreachable(String),
    #[error("{0}")]
    Other(String),
}

impl BlobError {
    pub fn is_transient(&self) -> bool {
        match self {
            BlobError::Service { status, .. } => *status == 429 || *status >= 500,
            BlobError::Unreachable(_) => true,
            BlobError::Other(_) => false,
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, BlobError::Service { status: 404, .. })
    }
}

fn map(e: azure_core::Error) -> BlobError {
    use azure_core::error::ErrorKind;
    match e.kind() {
        ErrorKind::HttpResponse { status, error_code, .. } => BlobError::Service {
            status: u16::from(*status),
            code: error_code.clone().unwrap_or_else(|| format!("HTTP{}", u16::from(*status))),
        },
        ErrorKind::Connection | ErrorKind::Io => BlobError::Unreachable(e.to_string()),
        _ => BlobError::Other(e.to_string()),
    }
}

pub type BlobResult<T> = Result<T, BlobError>;

/// Signs every request with a storage account key ("Shared Key" authorization).
pub struct SharedKeyPolicy {
    account: String,
    key: ring::hmac::Key,
}

impl std::fmt::Debug for SharedKeyPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedKeyPolicy").field("account", &self.account).finish_non_exhaustive()
    }
}

impl SharedKeyPolicy {
    /// `key` is the account key as Azure shows it (base64).
    pub fn new(account: &str, key: &str) -> BlobResult<SharedKeyPolicy> {
        let raw = B64
            .decode(key.trim())
            .map_err(|_| BlobError::Other(format!("the key of storage account {account} is not base64")))?;
        Ok(SharedKeyPolicy { account: account.into(), key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &raw) })
    }

    /// The string to sign for `request` (Shared Key, service version 2009-09-19 and later).
    fn string_to_sign(&self, request: &Request) -> String {
        let h = request.headers();
        let get = |name: &str| {
            h.iter().find(|(k, _)| k.as_str().eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str().to_string())
        };
        let length = match request.body().len() {
            Some(0) | None => get("content-length").filter(|v| v != "0").unwrap_or_default(),
            Some(n) => n.to_string(),
        };
        let mut s = format!("{}\n", request.method().as_ref().to_ascii_uppercase());
        for name in ["content-encoding", "content-language"] {
            s.push_str(&get(name).unwrap_or_default());
            s.push('\n');
        }
        s.push_str(&length);
        s.push('\n');
        for name in [
            "content-md5",
            "content-type",
            "date",
            "if-modified-since",
            "if-match",
            "if-none-match",
            "if-unmodified-since",
            "range",
        ] {
            s.push_str(&get(name).unwrap_or_default());
            s.push('\n');
        }
        let mut ms: Vec<(String, String)> = h
            .iter()
            .filter(|(k, _)| k.as_str().to_ascii_lowercase().starts_with("x-ms-"))
            .map(|(k, v)| (k.as_str().to_ascii_lowercase(), v.as_str().trim().to_string()))
            .collect();
        ms.sort();
        for (k, v) in ms {
            s.push_str(&format!("{k}:{v}\n"));
        }
        let url = request.url();
        s.push_str(&format!("/{}{}", self.account, url.path()));
        let mut q: std::collections::BTreeMap<String, Vec<String>> = std::collections::BTreeMap::new();
        for (k, v) in url.query_pairs() {
            q.entry(k.to_ascii_lowercase()).or_default().push(v.into_owned());
        }
        for (k, mut vs) in q {
            vs.sort();
            s.push_str(&format!("\n{k}:{}", vs.join(",")));
        }
        s
    }
}

#[async_trait::async_trait]
impl Policy for SharedKeyPolicy {
    async fn send(&self, ctx: &Context, request: &mut Request, next: &[Arc<dyn Policy>]) -> PolicyResult {
        let now = azure_core::time::OffsetDateTime::now_utc();
        request.insert_header("x-ms-date", azure_core::time::to_rfc7231(&now));
        let sig = ring::hmac::sign(&self.key, self.string_to_sign(request).as_bytes());
        request.insert_header("authorization", format!("SharedKey {}:{}", self.account, B64.encode(sig.as_ref())));
        next[0].send(ctx, request, &next[1..]).await
    }
}

/// How to authenticate to blob storage.
pub enum BlobAuth {
    /// Account name and key (base64): Azurite, or accounts with keys.
    SharedKey { account: String, key: String },
    /// Entra ID (https only).
    Token(Arc<dyn TokenCredential>),
    /// A shared access signature (the query string, without `?`): what an agent gets.
    Sas(String),
}

/// The service version our SAS tokens are signed for.
pub const SAS_VERSION: &str = "2021-08-06";

/// A service SAS for one container, signed with the account key: `permissions` in the
/// canonical order (`racwdl`), valid until `expiry_unix` seconds. Returns the query string.
pub fn container_sas(
    account: &str,
    key: &str,
    container: &str,
    permissions: &str,
    expiry_unix: i64,
) -> BlobResult<String> {
    let raw = B64
        .decode(key.trim())
        .map_err(|_| BlobError::Other(format!("the key of storage account {account} is not base64")))?;
    let expiry = time_fmt(expiry_unix);
    // sp, st, se, canonical resource, si, sip, spr, sv, sr, snapshot time, ses, rscc, rscd,
    // rsce, rscl, rsct (service SAS, version 2020-12-06 and later).
    let to_sign = [
        permissions,
        "",
        &expiry,
        &format!("/blob/{account}/{container}"),
        "",
        "",
        "",
        SAS_VERSION,
        "c",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
    ]
    .join("\n");
    let sig = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &raw), to_sign.as_bytes());
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    Ok(format!("sv={SAS_VERSION}&sr=c&sp={permissions}&se={}&sig={}", enc(&expiry), enc(&B64.encode(sig.as_ref()))))
}

/// `YYYY-MM-DDTHH:MM:SSZ`.
fn time_fmt(unix: i64) -> String {
    let t = azure_core::time::OffsetDateTime::from_unix_timestamp(unix)
        .unwrap_or(azure_core::time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// One storage account's blob service.
#[derive(Clone)]
pub struct BlobStore {
    service: Arc<BlobServiceClient>,
    endpoint: String,
}

impl std::fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobStore").field("endpoint", &self.endpoint).finish()
    }
}

/// A blob as listed: name, size, and the MD5 it carries (if set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    pub name: String,
    pub size: u64,
    pub md5: Option<Vec<u8>>,
}

impl BlobStore {
    /// A client for the blob service at `endpoint` (e.g. `https://acct.blob.core.windows.net/`,
    /// or Azurite's path-style `http://127.0.0.1:10000/devstoreaccount1/`).
    pub fn new(endpoint: &str, auth: BlobAuth) -> BlobResult<BlobStore> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut url: azure_core::http::Url =
            endpoint.parse().map_err(|e| BlobError::Other(format!("blob endpoint {endpoint:?}: {e}")))?;
        // The client appends container and blob as path segments: no trailing slash (a path of
        // "/" alone stays).
        if url.path().len() > 1 && url.path().ends_with('/') {
            let p = url.path().trim_end_matches('/').to_string();
            url.set_path(&p);
        }
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(120))
            .build()
            .map_err(|e| BlobError::Other(format!("HTTP client: {e}")))?;
        let mut client_options =
            ClientOptions { transport: Some(Transport::new(Arc::new(http))), ..Default::default() };
        let credential = match auth {
            BlobAuth::SharedKey { account, key } => {
                client_options.per_try_policies.push(Arc::new(SharedKeyPolicy::new(&account, &key)?));
                None
            }
            BlobAuth::Token(t) => Some(t),
            BlobAuth::Sas(q) => {
                url.set_query(Some(q.trim_start_matches('?')));
                None
            }
        };
        let opts = BlobServiceClientOptions { client_options, ..Default::default() };
        let service = BlobServiceClient::new(url.clone(), credential, Some(opts)).map_err(map)?;
        let mut shown = url.clone();
        shown.set_query(None);
        Ok(BlobStore { service: Arc::new(service), endpoint: shown.to_string() })
    }

    /// The URL of a blob (for logs and error-log links).
    pub fn blob_url(&self, container: &str, name: &str) -> String {
        format!("{}/{container}/{name}", self.endpoint.trim_end_matches('/'))
    }

    /// Creates the container unless it exists.
    pub async fn ensure_container(&self, container: &str) -> BlobResult<()> {
        match self.service.blob_container_client(container).create(None).await {
            Ok(_) => Ok(()),
            Err(e) => match map(e) {
                BlobError::Service { status: 409, .. } => Ok(()),
                other => Err(other),
            },
        }
    }

    /// Put Block: stages `data` under `block_id` (ids of one blob must have equal lengths).
    pub async fn stage_block(&self, container: &str, name: &str, block_id: &[u8], data: Vec<u8>) -> BlobResult<()> {
        let len = data.len() as u64;
        self.service
            .blob_client(container, name)
            .block_blob_client()
            .stage_block(block_id, len, RequestContent::from(data), None)
            .await
            .map(|_| ())
            .map_err(map)
    }

    /// Put Block List: commits `blocks` in order, with the blob's MD5 (Content-MD5) when given.
    pub async fn commit(
        &self,
        container: &str,
        name: &str,
        blocks: Vec<Vec<u8>>,
        md5: Option<Vec<u8>>,
    ) -> BlobResult<()> {
        let list = BlockLookupList { committed: Some(Vec::new()), latest: Some(blocks), uncommitted: Some(Vec::new()) };
        let opts = azure_storage_blob::models::BlockBlobClientCommitBlockListOptions {
            blob_content_md5: md5,
            ..Default::default()
        };
        self.service
            .blob_client(container, name)
            .block_blob_client()
            .commit_block_list(list.try_into().map_err(map)?, Some(opts))
            .await
            .map(|_| ())
            .map_err(map)
    }

    /// A small blob in one block (logs).
    pub async fn put_small(&self, container: &str, name: &str, data: Vec<u8>) -> BlobResult<()> {
        self.stage_block(container, name, b"0000", data).await?;
        self.commit(container, name, vec![b"0000".to_vec()], None).await
    }

    /// Size and MD5 of a blob, `None` if it does not exist.
    pub async fn properties(&self, container: &str, name: &str) -> BlobResult<Option<BlobInfo>> {
        match self.service.blob_client(container, name).get_properties(None).await {
            Ok(r) => Ok(Some(BlobInfo {
                name: name.into(),
                size: r.content_length().map_err(map)?.unwrap_or(0),
                md5: r.content_md5().map_err(map)?,
            })),
            Err(e) => match map(e) {
                e if e.is_not_found() => Ok(None),
                other => Err(other),
            },
        }
    }

    /// Every blob of a container, by name.
    pub async fn list(&self, container: &str) -> BlobResult<Vec<BlobInfo>> {
        use futures::TryStreamExt;
        let mut pages = self.service.blob_container_client(container).list_blobs(None).map_err(map)?.into_pages();
        let mut out = Vec::new();
        while let Some(page) = pages.try_next().await.map_err(map)? {
            let seg = page.into_model().map_err(map)?;
            for b in seg.blob_items {
                let props = b.properties.unwrap_or_default();
                out.push(BlobInfo {
                    name: b.name.unwrap_or_default(),
                    size: props.content_length.unwrap_or(0),
                    md5: props.content_md5,
                });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Copy Blob (server-side, within the service): `source_url` (readable: the same
    /// account, or a SAS in the URL) into `container/name`. Waits for a pending copy to end
    /// (polling its status for up to `wait`).
    pub async fn copy_from(
        &self,
        container: &str,
        name: &str,
        source_url: &str,
        wait: std::time::Duration,
    ) -> BlobResult<()> {
        use azure_storage_blob::models::{BlobClientStartCopyFromUrlResultHeaders, CopyStatus};
        let blob = self.service.blob_client(container, name);
        let started = blob.start_copy_from_url(source_url.to_string(), None).await.map_err(map)?;
        let mut status = started.copy_status().map_err(map)?;
        let deadline = std::time::Instant::now() + wait;
        loop {
            match status {
                Some(CopyStatus::Success) | None => return Ok(()),
                Some(CopyStatus::Failed) | Some(CopyStatus::Aborted) => {
                    return Err(BlobError::Other(format!("the copy of {name} into {container} did not succeed")));
                }
                _ => {}
            }
            if std::time::Instant::now() > deadline {
                return Err(BlobError::Other(format!("the copy of {name} into {container} is still pending")));
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            status = blob.get_properties(None).await.map_err(map)?.copy_status().map_err(map)?;
        }
    }

    /// Deletes a blob; a blob already gone is fine.
    pub async fn delete(&self, container: &str, name: &str) -> BlobResult<()> {
        match self.service.blob_client(container, name).delete(None).await {
            Ok(_) => Ok(()),
            Err(e) => match map(e) {
                e if e.is_not_found() => Ok(()),
                other => Err(other),
            },
        }
    }

    /// A whole blob's bytes.
    pub async fn download(&self, container: &str, name: &str) -> BlobResult<Vec<u8>> {
        let r = self.service.blob_client(container, name).download(None).await.map_err(map)?;
        Ok(r.body.collect().await.map_err(map)?.to_vec())
    }

    /// `len` bytes of a blob from `offset` into `buf` (resized to `len`; its memory is reused),
    /// in one request: splitting a range into parallel requests costs the service more (Azurite
    /// used twice the CPU for 4 MiB parts). Fewer bytes than asked (past the blob's end) is an
    /// error.
    pub async fn download_range(
        &self,
        container: &str,
        name: &str,
        offset: u64,
        len: u64,
        buf: &mut Vec<u8>,
    ) -> BlobResult<()> {
        buf.clear();
        buf.resize(len as usize, 0);
        if len == 0 {
            return Ok(());
        }
        let opts = BlobClientDownloadOptions {
            range: Some((offset..offset + len).into()),
            parallel: std::num::NonZero::new(1),
            partition_size: std::num::NonZero::new(len as usize),
            ..Default::default()
        };
        let r = self.service.blob_client(container, name).download_into(buf, Some(opts)).await.map_err(map)?;
        if r.len as u64 != len {
            return Err(BlobError::Other(format!(
                "{container}/{name}: {} bytes from offset {offset}, {len} were asked for",
                r.len
            )));
        }
        Ok(())
    }
}

/// Where a vault's repository is: a container of its own (no prefix), or a folder
/// (`prefix`, ending in '/') of a group's container.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VaultPlace {
    pub container: String,
    pub prefix: String,
}

impl VaultPlace {
    /// `container`, or `container/folder`: how the catalogue records it.
    pub fn path(&self) -> String {
        format!(
            "{}{}{}",
            self.container,
            if self.prefix.is_empty() { "" } else { "/" },
            self.prefix.trim_end_matches('/')
        )
    }

    /// The inverse of [`VaultPlace::path`] (a container name has no '/').
    pub fn parse(path: &str) -> VaultPlace {
        match path.split_once('/') {
            Some((c, f)) => VaultPlace { container: c.to_string(), prefix: format!("{f}/") },
            None => VaultPlace { container: path.to_string(), prefix: String::new() },
        }
    }

    /// The blob name of the repository file `name`.
    pub fn blob(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }
}

/// The storage accounts one can reach: a blob endpoint per account (`{account}` in the
/// template), and how to authenticate to each (an account key, or an Entra ID credential).
#[derive(Clone, Default)]
pub struct Accounts {
    /// e.g. `https://{account}.blob.core.windows.net`, or Azurite's `http://127.0.0.1:10000/{account}`.
    pub endpoint_template: String,
    /// Account → key (base64).
    pub keys: std::collections::BTreeMap<String, String>,
    /// For accounts without a key here.
    pub token: Option<Arc<dyn TokenCredential>>,
}

impl std::fmt::Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accounts")
            .field("endpoint_template", &self.endpoint_template)
            .field("accounts_with_keys", &self.keys.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Accounts {
    /// Reads `account=key` lines (base64 keys, as Azure shows them); `#` starts a comment.
    pub fn load_keys(path: &std::path::Path) -> Result<std::collections::BTreeMap<String, String>, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut keys = std::collections::BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (a, k) = line
                .split_once('=')
                .ok_or_else(|| format!("{} line {}: expected account=key", path.display(), n + 1))?;
            let (a, k) = (a.trim(), k.trim());
            if B64.decode(k).is_err() {
                return Err(format!("{} line {}: the key of {a} is not base64", path.display(), n + 1));
            }
            keys.insert(a.to_string(), k.to_string());
        }
        Ok(keys)
    }

    pub fn endpoint(&self, account: &str) -> String {
        self.endpoint_template.replace("{account}", account)
    }

    /// A client for `account`, with its key or the token credential.
    pub fn store(&self, account: &str) -> BlobResult<BlobStore> {
        let auth = match (self.keys.get(account), &self.token) {
            (Some(key), _) => BlobAuth::SharedKey { account: account.into(), key: key.clone() },
            (None, Some(t)) => BlobAuth::Token(t.clone()),
            (None, None) => {
                return Err(BlobError::Other(format!(
                    "no key and no Entra ID credential for storage account {account}"
                )));
            }
        };
        BlobStore::new(&self.endpoint(account), auth)
    }

    /// A SAS for one container of `account` (needs its key: user delegation SAS is not
    /// implemented).
    pub fn container_sas(
        &self,
        account: &str,
        container: &str,
        permissions: &str,
        expiry_unix: i64,
    ) -> BlobResult<String> {
        let key = self.keys.get(account).ok_or_else(|| {
            BlobError::Other(format!(
                "no key for storage account {account}: agents get container SAS tokens signed with the account key (user delegation SAS is not implemented)"
            ))
        })?;
        container_sas(account, key, container, permissions, expiry_unix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_string_to_sign_has_the_canonical_headers_and_resource() {
        let p = SharedKeyPolicy::new("devstoreaccount1", &B64.encode([7u8; 64])).unwrap();
        let url = "http://127.0.0.1:10000/devstoreaccount1/seeds/a%20b?comp=block&blockid=QUE%3D&timeout=30";
        let mut r = Request::new(url.parse().unwrap(), azure_core::http::Method::Put);
        r.insert_header("x-ms-version", "2026-04-06");
        r.insert_header("x-ms-date", "Sun, 22 Nov 2026 20:00:00 GMT");
        r.insert_header("content-type", "application/octet-stream");
        r.set_body(vec![1u8; 5]);
        let s = p.string_to_sign(&r);
        assert_eq!(
            s,
            "PUT\n\n\n5\n\napplication/octet-stream\n\n\n\n\n\n\n\
             x-ms-date:Sun, 22 Nov 2026 20:00:00 GMT\nx-ms-version:2026-04-06\n\
             /devstoreaccount1/devstoreaccount1/seeds/a%20b\nblockid:QUE=\ncomp:block\ntimeout:30"
        );
        assert!(SharedKeyPolicy::new("a", "not base64!").is_err());
    }
}
