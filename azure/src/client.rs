//! The coordinator's Azure Resource Manager client for `Microsoft.ImportExport`, built on the
//! Azure SDK's core HTTP pipeline (`azure_core`): retries with backoff on throttling and 5xx,
//! bearer tokens from an `azure_identity` credential (or a fixed token for the emulator),
//! TLS through reqwest with rustls. The endpoint is configurable: Azure
//! (`https://management.azure.com`) or the emulator. The same code talks to both.

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

use crate::arm::{self, API_VERSION};

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
}

impl Default for ArmOptions {
    fn default() -> Self {
        ArmOptions {
            ca_pem: None,
            max_retries: 6,
            initial_delay: Duration::from_millis(200),
            timeout: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ArmClient {
    endpoint: Url,
    pipeline: Pipeline,
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
        Ok(ArmClient { endpoint, pipeline })
    }

    fn url(&self, path: &str) -> ArmResult<Url> {
        let mut u = self.endpoint.join(path).map_err(|e| ArmError::Config(format!("{path}: {e}")))?;
        u.query_pairs_mut().append_pair("api-version", API_VERSION);
        Ok(u)
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> ArmResult<(u16, Option<T>)> {
        let mut req = Request::new(self.url(path)?, method);
        req.insert_header("accept", "application/json");
        if let Some(b) = body {
            req.insert_header("content-type", "application/json");
            req.set_body(serde_json::to_vec(b).expect("serializes"));
        }
        let opts = PipelineSendOptions { skip_checks: true, ..Default::default() };
        let resp = self
            .pipeline
            .send(&Context::new(), &mut req, Some(opts))
            .await
            .map_err(|e| ArmError::Unreachable(e.to_string()))?;
        let (status, _headers, body) = resp.deconstruct();
        let status = u16::from(status);
        if !(200..300).contains(&status) {
            let env: arm::ErrorResponse = serde_json::from_slice(body.as_ref()).unwrap_or_default();
            let e = env.error.unwrap_or_default();
            return Err(ArmError::Azure {
                status,
                code: e.code.unwrap_or_else(|| format!("HTTP{status}")),
                message: e
                    .message
                    .unwrap_or_else(|| String::from_utf8_lossy(body.as_ref()).chars().take(300).collect()),
            });
        }
        if body.as_ref().is_empty() {
            return Ok((status, None));
        }
        let v = serde_json::from_slice(body.as_ref()).map_err(|e| ArmError::Decode(format!("{path}: {e}")))?;
        Ok((status, Some(v)))
    }

    fn need<T>(path: &str, v: Option<T>) -> ArmResult<T> {
        v.ok_or_else(|| ArmError::Decode(format!("{path}: empty answer")))
    }

    fn job_path(sub: &str, rg: &str, job: &str) -> String {
        arm::paths::job_id(sub, rg, job)
    }

    pub async fn locations(&self) -> ArmResult<Vec<arm::Location>> {
        let p = format!("/providers/{}/locations", arm::PROVIDER);
        let (_, r) = self.call::<arm::LocationsResponse>(Method::Get, &p, None::<&()>).await?;
        Ok(Self::need(&p, r)?.value.unwrap_or_default())
    }

    pub async fn location(&self, name: &str) -> ArmResult<arm::Location> {
        let p = arm::paths::location_id(name);
        let (_, r) = self.call(Method::Get, &p, None::<&()>).await?;
        Self::need(&p, r)
    }

    /// Creates the job (201), or gets the same job back (200) when it exists with this body.
    pub async fn put_job(
        &self,
        sub: &str,
        rg: &str,
        job: &str,
        body: &arm::PutJobParameters,
    ) -> ArmResult<(u16, arm::JobResponse)> {
        let p = Self::job_path(sub, rg, job);
        let (s, r) = self.call(Method::Put, &p, Some(body)).await?;
        Ok((s, Self::need(&p, r)?))
    }

    pub async fn get_job(&self, sub: &str, rg: &str, job: &str) -> ArmResult<arm::JobResponse> {
        let p = Self::job_path(sub, rg, job);
        let (_, r) = self.call(Method::Get, &p, None::<&()>).await?;
        Self::need(&p, r)
    }

    pub async fn update_job(
        &self,
        sub: &str,
        rg: &str,
        job: &str,
        body: &arm::UpdateJobParameters,
    ) -> ArmResult<arm::JobResponse> {
        let p = Self::job_path(sub, rg, job);
        let (_, r) = self.call(Method::Patch, &p, Some(body)).await?;
        Self::need(&p, r)
    }

    pub async fn delete_job(&self, sub: &str, rg: &str, job: &str) -> ArmResult<()> {
        let p = Self::job_path(sub, rg, job);
        self.call::<serde_json::Value>(Method::Delete, &p, None::<&()>).await.map(|_| ())
    }

    /// Every job of a subscription or resource group (following `nextLink`). Lists leave the
    /// drive lists out: GET each job for those.
    pub async fn list_jobs(&self, sub: &str, rg: Option<&str>) -> ArmResult<Vec<arm::JobResponse>> {
        let p = match rg {
            Some(rg) => format!("/subscriptions/{sub}/resourceGroups/{rg}/providers/{}/jobs", arm::PROVIDER),
            None => format!("/subscriptions/{sub}/providers/{}/jobs", arm::PROVIDER),
        };
        let (_, r) = self.call::<arm::ListJobsResponse>(Method::Get, &p, None::<&()>).await?;
        let mut page = Self::need(&p, r)?;
        let mut out = page.value.take().unwrap_or_default();
        let mut guard = 0;
        while let Some(next) = page.next_link.take().filter(|n| !n.is_empty()) {
            guard += 1;
            if guard > 1000 {
                return Err(ArmError::Decode("more than 1000 pages of jobs".into()));
            }
            let u: Url = next.parse().map_err(|e| ArmError::Decode(format!("nextLink: {e}")))?;
            let path = format!("{}?{}", u.path(), u.query().unwrap_or(""));
            let (_, r) = self.call::<arm::ListJobsResponse>(Method::Get, &path, None::<&()>).await?;
            page = Self::need(&path, r)?;
            out.extend(page.value.take().unwrap_or_default());
        }
        Ok(out)
    }

    pub async fn bitlocker_keys(&self, sub: &str, rg: &str, job: &str) -> ArmResult<arm::GetBitLockerKeysResponse> {
        let p = format!("{}/listBitLockerKeys", Self::job_path(sub, rg, job));
        let (_, r) = self.call(Method::Post, &p, None::<&()>).await?;
        Self::need(&p, r)
    }
}
