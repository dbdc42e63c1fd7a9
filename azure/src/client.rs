//! The coordinator's Azure Resource Manager client for `Microsoft.DataBox` 2025-02-01, built on
//! the Azure SDK's core HTTP pipeline (`azure_core`): retries with backoff on throttling and
//! 5xx, bearer tokens from an `azure_identity` credential (or a fixed token for the emulator),
//! TLS through reqwest with rustls. The endpoint is configurable: Azure
//! (`https://management.azure.com`) or the emulator. The same code talks to both.
//!
//! Long-running operations (PUT, PATCH, DELETE of a job) are followed as Azure answers them:
//! `202` with an opaque `location` polled until it answers other than `202`; a `202` whose
//! location is the job itself means done; `Azure-AsyncOperation` is polled instead when sent,
//! and `Retry-After` is honoured. A monitor URL on another host than the endpoint is refused:
//! the bearer token goes nowhere else.

use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::{AccessToken, Secret as TokenSecret, TokenCredential, TokenRequestOptions};
use azure_core::http::policies::auth::BearerTokenAuthorizationPolicy;
use azure_core::http::{
    ClientOptions, Context, ExponentialRetryOptions, Method, Pipeline, PipelineSendOptions, Request, RetryOptions,
    Transport, Url,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::databox::{API_VERSION, model, paths};

/// What went wrong talking to Azure.
#[derive(Debug, thiserror::Error)]
pub enum ArmError {
    /// Azure answered with an error (ARM's envelope when it sent one).
    #[error("Azure answered {status} {code}: {message}")]
    Azure { status: u16, code: String, message: String },
    /// No answer (connection, TLS, timeout) after the pipeline's retries.
    #[error("Azure is unreachable: {0}")]
    Unreachable(String),
    /// An answer that is not what the API describes.
    #[error("Azure's answer could not be read: {0}")]
    Decode(String),
    #[error("{0}")]
    Config(String),
}

impl ArmError {
    /// Worth trying again later (throttling, server errors, no answer).
    pub fn is_transient(&self) -> bool {
        match self {
            ArmError::Azure { status, .. } => *status == 429 || *status >= 500,
            ArmError::Unreachable(_) => true,
            _ => false,
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, ArmError::Azure { status: 404, .. })
    }

    /// Azure's error code, when Azure answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ArmError::Azure { code, .. } => Some(code),
            _ => None,
        }
    }
}

pub type ArmResult<T> = Result<T, ArmError>;

/// A fixed bearer token (the emulator checks only that there is one).
#[derive(Debug)]
pub struct StaticToken(pub String);

#[async_trait::async_trait]
impl TokenCredential for StaticToken {
    async fn get_token(
        &self,
        _scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        Ok(AccessToken::new(
            TokenSecret::new(self.0.clone()),
            azure_core::time::OffsetDateTime::now_utc() + azure_core::time::Duration::hours(1),
        ))
    }
}

/// How to build the client.
#[derive(Debug, Clone)]
pub struct ArmOptions {
    /// Extra CA certificates (PEM) to trust, e.g. the emulator's.
    pub ca_pem: Option<Vec<u8>>,
    /// Retries on throttling, 5xx and transport errors.
    pub max_retries: u32,
    pub initial_delay: Duration,
    pub timeout: Duration,
    /// How long one long-running operation is followed before the call gives up (the
    /// operation goes on in Azure; a later GET sees its result).
    pub operation_timeout: Duration,
    /// The wait between polls when Azure sends no `Retry-After`: this, doubling, up to 10 s.
    pub poll_delay: Duration,
}

impl Default for ArmOptions {
    fn default() -> Self {
        ArmOptions {
            ca_pem: None,
            max_retries: 6,
            initial_delay: Duration::from_millis(200),
            timeout: Duration::from_secs(60),
            operation_timeout: Duration::from_secs(300),
            poll_delay: Duration::from_millis(500),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ArmClient {
    endpoint: Url,
    pipeline: Pipeline,
    operation_timeout: Duration,
    poll_delay: Duration,
}

/// An answer: status, headers (names lower-case) and body.
struct Answer {
    status: u16,
    headers: std::collections::HashMap<String, String>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// How a long-running operation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LroEnd {
    /// Done; the resource is at its URL (GET it).
    Done,
    /// A delete is done: the resource is gone.
    Deleted,
}

const SCOPE: &str = "https://management.azure.com/.default";

impl ArmClient {
    /// A client for `endpoint` (e.g. `https://management.azure.com`), authenticating with
    /// `credential`. ARM takes only https.
    pub fn new(endpoint: &str, credential: Arc<dyn TokenCredential>, options: ArmOptions) -> ArmResult<ArmClient> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let endpoint: Url =
            endpoint.parse().map_err(|e| ArmError::Config(format!("ARM endpoint {endpoint:?}: {e}")))?;
        if endpoint.scheme() != "https" {
            return Err(ArmError::Config(format!("ARM endpoint {endpoint} must be https")));
        }
        let mut http = reqwest::Client::builder().timeout(options.timeout).https_only(true);
        if let Some(pem) = &options.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| ArmError::Config(format!("ARM CA certificates: {e}")))?;
            for c in certs {
                http = http.add_root_certificate(c);
            }
        }
        let http = http.build().map_err(|e| ArmError::Config(format!("HTTP client: {e}")))?;
        let client_options = ClientOptions {
            transport: Some(Transport::new(Arc::new(http))),
            retry: RetryOptions::exponential(ExponentialRetryOptions {
                initial_delay: azure_core::time::Duration::try_from(options.initial_delay).unwrap_or_default(),
                max_retries: options.max_retries,
                ..Default::default()
            }),
            ..Default::default()
        };
        let auth = Arc::new(BearerTokenAuthorizationPolicy::new(credential, [SCOPE]));
        let pipeline = Pipeline::new(
            Some(env!("CARGO_PKG_NAME")),
            Some(env!("CARGO_PKG_VERSION")),
            client_options,
            Vec::new(),
            vec![auth],
            None,
        );
        Ok(ArmClient {
            endpoint,
            pipeline,
            operation_timeout: options.operation_timeout,
            poll_delay: options.poll_delay,
        })
    }

    fn url(&self, path: &str) -> ArmResult<Url> {
        let mut u = self.endpoint.join(path).map_err(|e| ArmError::Config(format!("{path}: {e}")))?;
        u.query_pairs_mut().append_pair("api-version", API_VERSION);
        Ok(u)
    }

    /// Sends one request (through the pipeline: retries, token) and reads the whole answer.
    async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
        headers: &[(&'static str, String)],
    ) -> ArmResult<Answer> {
        let mut req = Request::new(url, method);
        req.insert_header("accept", "application/json");
        for (k, v) in headers {
            req.insert_header(*k, v.clone());
        }
        if let Some(b) = body {
            req.insert_header("content-type", "application/json");
            req.set_body(b);
        }
        let opts = PipelineSendOptions { skip_checks: true, ..Default::default() };
        let op = calls::operation(&method, req.url().path());
        let resp = match self.pipeline.send(&Context::new(), &mut req, Some(opts)).await {
            Ok(r) => r,
            Err(e) => {
                calls::count(op, "unreachable");
                return Err(ArmError::Unreachable(e.to_string()));
            }
        };
        let (status, h, body) = resp.deconstruct();
        calls::count(op, calls::outcome(u16::from(status)));
        let headers = h.iter().map(|(k, v)| (k.as_str().to_ascii_lowercase(), v.as_str().to_string())).collect();
        Ok(Answer { status: u16::from(status), headers, body: body.as_ref().to_vec() })
    }

    /// An error answer as [`ArmError::Azure`] with ARM's code and message.
    fn refused(a: &Answer) -> ArmError {
        let env: model::ApiError = serde_json::from_slice(&a.body).unwrap_or_default();
        let e = env.error.unwrap_or_default();
        ArmError::Azure {
            status: a.status,
            code: e.code.unwrap_or_else(|| format!("HTTP{}", a.status)),
            message: e.message.unwrap_or_else(|| String::from_utf8_lossy(&a.body).chars().take(300).collect()),
        }
    }

    /// A call whose success has a JSON body (or none).
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
        headers: &[(&'static str, String)],
    ) -> ArmResult<(Answer, Option<T>)> {
        let bytes = body.map(|b| serde_json::to_vec(b).expect("serializes"));
        let a = self.send(method, self.url(path)?, bytes, headers).await?;
        if !(200..300).contains(&a.status) {
            return Err(Self::refused(&a));
        }
        if a.body.is_empty() {
            return Ok((a, None));
        }
        let v = serde_json::from_slice(&a.body).map_err(|e| ArmError::Decode(format!("{path}: {e}")))?;
        Ok((a, Some(v)))
    }

    fn need<T>(path: &str, v: Option<T>) -> ArmResult<T> {
        v.ok_or_else(|| ArmError::Decode(format!("{path}: empty answer")))
    }

    /// A monitor URL to poll: absolute, https, and on the endpoint's host (the token goes
    /// nowhere else).
    fn monitor(&self, raw: &str) -> ArmResult<Url> {
        let u: Url = self
            .endpoint
            .join(raw)
            .map_err(|e| ArmError::Decode(format!("the operation's monitor URL is not a URL ({e})")))?;
        if u.scheme() != "https"
            || u.host_str() != self.endpoint.host_str()
            || u.port_or_known_default() != self.endpoint.port_or_known_default()
        {
            return Err(ArmError::Decode(format!(
                "the operation's monitor is on {}, not on the Azure Resource Manager endpoint {}; not followed",
                u.origin().ascii_serialization(),
                self.endpoint.origin().ascii_serialization()
            )));
        }
        Ok(u)
    }

    /// Follows a long-running operation from its first answer until it ends.
    async fn follow(&self, resource: &str, first: Answer) -> ArmResult<LroEnd> {
        match first.status {
            202 | 201 => {}
            204 => return Ok(LroEnd::Deleted),
            s if (200..300).contains(&s) => return Ok(LroEnd::Done),
            _ => return Err(Self::refused(&first)),
        }
        // Azure-AsyncOperation first when sent, else the location.
        let (mut url, async_op) = match (first.header("azure-asyncoperation"), first.header("location")) {
            (Some(u), _) => (self.monitor(u)?, true),
            (None, Some(u)) => (self.monitor(u)?, false),
            (None, None) if first.status == 201 => return Ok(LroEnd::Done),
            (None, None) => return Err(ArmError::Decode("a 202 without a location to poll".into())),
        };
        let mut retry_after = first.header("retry-after").map(str::to_string);
        let mut delay = self.poll_delay;
        let deadline = tokio::time::Instant::now() + self.operation_timeout;
        let resource_path = resource.trim_end_matches('/').to_ascii_lowercase();
        loop {
            // A 202 whose location is the resource itself: done, GET it.
            if !async_op && url.path().trim_end_matches('/').eq_ignore_ascii_case(&resource_path) {
                return Ok(LroEnd::Done);
            }
            let wait = match retry_after.as_deref().and_then(|v| v.trim().parse::<u64>().ok()) {
                Some(s) => Duration::from_secs(s.min(60)),
                None => {
                    let d = delay;
                    delay = (delay * 2).min(Duration::from_secs(10));
                    d
                }
            };
            if tokio::time::Instant::now() + wait > deadline {
                return Err(ArmError::Unreachable(format!(
                    "the operation on {resource} was still running after {} s; Azure goes on with it",
                    self.operation_timeout.as_secs()
                )));
            }
            tokio::time::sleep(wait).await;
            let next = self.send(Method::Get, url.clone(), None, &[]).await?;
            retry_after = next.header("retry-after").map(str::to_string);
            if async_op {
                if next.status == 202 {
                    continue;
                }
                if next.status != 200 {
                    return Err(Self::refused(&next));
                }
                #[derive(serde::Deserialize)]
                struct Status {
                    status: String,
                    #[serde(default)]
                    error: Option<model::ErrorDetail>,
                }
                let st: Status = serde_json::from_slice(&next.body)
                    .map_err(|e| ArmError::Decode(format!("the operation's status: {e}")))?;
                match st.status.as_str() {
                    "Succeeded" => return Ok(LroEnd::Done),
                    "Failed" | "Canceled" | "Cancelled" => {
                        let e = st.error.unwrap_or_default();
                        return Err(ArmError::Azure {
                            status: 200,
                            code: e.code.unwrap_or_else(|| format!("Operation{}", st.status)),
                            message: e.message.unwrap_or_else(|| format!("the operation on {resource}: {}", st.status)),
                        });
                    }
                    _ => continue,
                }
            }
            match next.status {
                202 => {
                    if let Some(l) = next.header("location") {
                        url = self.monitor(l)?;
                    }
                }
                204 => return Ok(LroEnd::Deleted),
                s if (200..300).contains(&s) => return Ok(LroEnd::Done),
                _ => return Err(Self::refused(&next)),
            }
        }
    }

    /// `POST .../locations/{loc}/validateInputs` (subscription level).
    pub async fn validate_inputs(
        &self,
        sub: &str,
        location: &str,
        body: &model::ValidationRequest,
    ) -> ArmResult<model::ValidationResponse> {
        let p =
            format!("/subscriptions/{sub}/providers/{}/locations/{location}/validateInputs", crate::databox::PROVIDER);
        let (_, r) = self.call(Method::Post, &p, Some(body), &[]).await?;
        Self::need(&p, r)
    }

    /// `POST .../locations/{loc}/regionConfiguration` (subscription level).
    pub async fn region_configuration(
        &self,
        sub: &str,
        location: &str,
        body: &model::RegionConfigurationRequest,
    ) -> ArmResult<model::RegionConfigurationResponse> {
        let p = format!(
            "/subscriptions/{sub}/providers/{}/locations/{location}/regionConfiguration",
            crate::databox::PROVIDER
        );
        let (_, r) = self.call(Method::Post, &p, Some(body), &[]).await?;
        Self::need(&p, r)
    }

    /// Creates the job (or changes the one there) and follows the operation to its end.
    pub async fn put_job(&self, sub: &str, rg: &str, job: &str, body: &model::JobResource) -> ArmResult<LroEnd> {
        let p = paths::job_id(sub, rg, job);
        let a = self.send(Method::Put, self.url(&p)?, Some(serde_json::to_vec(body).expect("serializes")), &[]).await?;
        self.follow(&p, a).await
    }

    /// The job with its details (`$expand=details`), and its ETag.
    pub async fn get_job(&self, sub: &str, rg: &str, job: &str) -> ArmResult<(model::JobResource, Option<String>)> {
        let p = paths::job_id(sub, rg, job);
        let mut u = self.url(&p)?;
        u.query_pairs_mut().append_pair("$expand", "details");
        let a = self.send(Method::Get, u, None, &[]).await?;
        if a.status != 200 {
            return Err(Self::refused(&a));
        }
        let v = serde_json::from_slice(&a.body).map_err(|e| ArmError::Decode(format!("{p}: {e}")))?;
        Ok((v, a.header("etag").map(str::to_string)))
    }

    /// PATCH (with `If-Match` when given), followed to its end.
    pub async fn update_job(
        &self,
        sub: &str,
        rg: &str,
        job: &str,
        body: &model::JobResourceUpdateParameter,
        if_match: Option<&str>,
    ) -> ArmResult<LroEnd> {
        let p = paths::job_id(sub, rg, job);
        let headers: Vec<(&'static str, String)> =
            if_match.map(|e| vec![("if-match", e.to_string())]).unwrap_or_default();
        let a = self
            .send(Method::Patch, self.url(&p)?, Some(serde_json::to_vec(body).expect("serializes")), &headers)
            .await?;
        self.follow(&p, a).await
    }

    /// DELETE, followed to its end (a job already gone is no error).
    pub async fn delete_job(&self, sub: &str, rg: &str, job: &str) -> ArmResult<()> {
        let p = paths::job_id(sub, rg, job);
        let a = self.send(Method::Delete, self.url(&p)?, None, &[]).await?;
        if a.status == 404 {
            return Ok(());
        }
        self.follow(&p, a).await.map(|_| ())
    }

    pub async fn cancel_job(&self, sub: &str, rg: &str, job: &str, reason: &str) -> ArmResult<()> {
        let p = format!("{}/cancel", paths::job_id(sub, rg, job));
        let body = model::CancellationReason { reason: Some(reason.into()) };
        self.call::<serde_json::Value>(Method::Post, &p, Some(&body), &[]).await.map(|_| ())
    }

    /// `markDevicesShipped`: the customer's package (carrier and tracking id).
    pub async fn mark_devices_shipped(
        &self,
        sub: &str,
        rg: &str,
        job: &str,
        carrier: &str,
        tracking: &str,
    ) -> ArmResult<()> {
        let p = format!("{}/markDevicesShipped", paths::job_id(sub, rg, job));
        let body = model::MarkDevicesShippedRequest {
            deliver_to_dc_package_details: Some(model::PackageCarrierInfo {
                carrier_name: Some(carrier.into()),
                tracking_id: Some(tracking.into()),
            }),
        };
        self.call::<serde_json::Value>(Method::Post, &p, Some(&body), &[]).await.map(|_| ())
    }

    /// `listCredentials`: the job's secrets (disk keys, the Data Box Disk passkey).
    pub async fn list_credentials(
        &self,
        sub: &str,
        rg: &str,
        job: &str,
    ) -> ArmResult<model::UnencryptedCredentialsList> {
        let p = format!("{}/listCredentials", paths::job_id(sub, rg, job));
        let (_, r) = self.call(Method::Post, &p, None::<&()>, &[]).await?;
        Self::need(&p, r)
    }

    pub async fn mitigate(&self, sub: &str, rg: &str, job: &str, body: &model::MitigateJobRequest) -> ArmResult<()> {
        let p = format!("{}/mitigate", paths::job_id(sub, rg, job));
        self.call::<serde_json::Value>(Method::Post, &p, Some(body), &[]).await.map(|_| ())
    }

    /// Every job of a subscription or resource group (following `nextLink`), without details.
    pub async fn list_jobs(&self, sub: &str, rg: Option<&str>) -> ArmResult<Vec<model::JobResource>> {
        let p = match rg {
            Some(rg) => format!("{}/jobs", paths::rg_prefix(sub, rg)),
            None => format!("/subscriptions/{sub}/providers/{}/jobs", crate::databox::PROVIDER),
        };
        let (_, r) = self.call::<model::JobResourceList>(Method::Get, &p, None::<&()>, &[]).await?;
        let mut page = Self::need(&p, r)?;
        let mut out = page.value.take().unwrap_or_default();
        let mut guard = 0;
        while let Some(next) = page.next_link.take().filter(|n| !n.is_empty()) {
            guard += 1;
            if guard > 1000 {
                return Err(ArmError::Decode("more than 1000 pages of jobs".into()));
            }
            let u = self.monitor(&next)?;
            let a = self.send(Method::Get, u, None, &[]).await?;
            if a.status != 200 {
                return Err(Self::refused(&a));
            }
            page = serde_json::from_slice(&a.body).map_err(|e| ArmError::Decode(format!("nextLink: {e}")))?;
            out.extend(page.value.take().unwrap_or_default());
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_monitor_is_followed_only_on_the_endpoints_own_host() {
        let c =
            ArmClient::new("https://127.0.0.1:9443", Arc::new(StaticToken("t".into())), ArmOptions::default()).unwrap();
        let ok = "https://127.0.0.1:9443/subscriptions/s/providers/Microsoft.DataBox/locations/westus/operationResults/x?t=1";
        assert_eq!(c.monitor(ok).unwrap().as_str(), ok);
        for bad in [
            "https://evil.example/subscriptions/s/operationResults/x",
            "https://127.0.0.1:9444/subscriptions/s/operationResults/x",
            "http://127.0.0.1:9443/subscriptions/s/operationResults/x",
        ] {
            let e = c.monitor(bad).unwrap_err().to_string();
            assert!(e.contains("not followed") || e.contains("not on"), "{bad}: {e}");
        }
    }
}

/// Every call to Azure Resource Manager, counted by operation and outcome (for the
/// coordinator's `seedship_azure_requests_total`).
pub mod calls {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use azure_core::http::Method;

    static COUNTS: Mutex<BTreeMap<(&'static str, &'static str), u64>> = Mutex::new(BTreeMap::new());

    /// The operation a request is, by its method and the last segment of its path.
    pub fn operation(method: &Method, path: &str) -> &'static str {
        let last = path.trim_end_matches('/').rsplit('/').next().unwrap_or("");
        let action = |a: &'static str| last.eq_ignore_ascii_case(a).then_some(a);
        let known =
            ["validateInputs", "regionConfiguration", "listCredentials", "mitigate", "markDevicesShipped", "cancel"];
        if let Some(a) = known.iter().find_map(|a| action(a)) {
            return a;
        }
        if path.to_ascii_lowercase().contains("/operationresults/")
            || path.to_ascii_lowercase().contains("/operationstatuses/")
        {
            return "poll_operation";
        }
        match (method, last.eq_ignore_ascii_case("jobs")) {
            (Method::Get, true) => "list_jobs",
            (Method::Get, false) => "get_job",
            (Method::Put, _) => "put_job",
            (Method::Patch, _) => "update_job",
            (Method::Delete, _) => "delete_job",
            _ => "other",
        }
    }

    /// An HTTP status as an outcome: ok, refused (4xx), throttled (429), server_error (5xx).
    pub fn outcome(status: u16) -> &'static str {
        match status {
            200..=399 => "ok",
            429 => "throttled",
            400..=499 => "refused",
            _ => "server_error",
        }
    }

    pub fn count(op: &'static str, outcome: &'static str) {
        *COUNTS.lock().unwrap_or_else(|p| p.into_inner()).entry((op, outcome)).or_default() += 1;
    }

    /// (operation, outcome, calls), in order.
    pub fn snapshot() -> Vec<(&'static str, &'static str, u64)> {
        COUNTS.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|((o, r), n)| (*o, *r, *n)).collect()
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn requests_are_named_by_operation() {
            let job = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.DataBox/jobs/j1";
            assert_eq!(operation(&Method::Put, job), "put_job");
            assert_eq!(operation(&Method::Get, job), "get_job");
            assert_eq!(operation(&Method::Post, &format!("{job}/cancel")), "cancel");
            assert_eq!(operation(&Method::Post, &format!("{job}/listCredentials")), "listCredentials");
            assert_eq!(operation(&Method::Get, "/subscriptions/s/providers/Microsoft.DataBox/jobs"), "list_jobs");
            assert_eq!(outcome(201), "ok");
            assert_eq!(outcome(429), "throttled");
            assert_eq!(outcome(409), "refused");
            assert_eq!(outcome(503), "server_error");
        }
    }
}
