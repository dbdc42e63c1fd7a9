//! Logging, tracing and OpenTelemetry for every seedship program.
//!
//! One call, [`init`], sets up:
//! - `tracing` output to stderr, human-readable or JSON, filtered by `RUST_LOG`-style directives;
//! - an OpenTelemetry tracer that gives every span a W3C trace id (logged as `trace_id`), and,
//!   when `otlp_endpoint` is set, exports spans and metrics over OTLP/gRPC. With no collector listening the
//!   exporter reports its failure and the program carries on.
//!
//! [`inject_headers`] and [`server_span`] carry the W3C `traceparent` from an agent's span to the
//! coordinator's request span, so one trace follows a request across processes.

pub mod failpoint;

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Telemetry settings, embedded as `[telemetry]` in each program's config.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// `text` (default) or `json`.
    pub log_format: LogFormat,
    /// Filter directives, e.g. `info` or `info,seedship=debug`. `RUST_LOG` overrides it.
    pub log_filter: String,
    /// OTLP/gRPC collector, e.g. `http://127.0.0.1:4317`. Unset: spans are not exported.
    pub otlp_endpoint: Option<String>,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig { log_format: LogFormat::Text, log_filter: "info".to_string(), otlp_endpoint: None }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid log filter {filter:?}: {detail}")]
    Filter { filter: String, detail: String },
    #[error("cannot set up the OTLP exporter for {endpoint}: {detail}")]
    Otlp { endpoint: String, detail: String },
}

/// Flushes and stops the tracer and meter providers when dropped.
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
    meters: Option<opentelemetry_sdk::metrics::SdkMeterProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        let _ = self.provider.shutdown_with_timeout(Duration::from_secs(2));
        if let Some(m) = &self.meters {
            let _ = m.shutdown_with_timeout(Duration::from_secs(2));
        }
    }
}

/// Installs the global subscriber, tracer provider and W3C propagator.
pub fn init(service: &'static str, cfg: &TelemetryConfig) -> Result<TelemetryGuard, TelemetryError> {
    let directives = std::env::var("RUST_LOG").unwrap_or_else(|_| cfg.log_filter.clone());
    // The exporter's own transport would otherwise log (and export) itself.
    let directives = format!("{directives},h2=warn,hyper=warn,tower=warn,opentelemetry_sdk=warn");
    let filter = EnvFilter::try_new(&directives)
        .map_err(|e| TelemetryError::Filter { filter: directives.clone(), detail: e.to_string() })?;

    let mut builder = SdkTracerProvider::builder()
        .with_resource(opentelemetry_sdk::Resource::builder().with_service_name(service).build());
    if let Some(endpoint) = &cfg.otlp_endpoint {
        use opentelemetry_otlp::WithExportConfig;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .with_timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| TelemetryError::Otlp { endpoint: endpoint.clone(), detail: e.to_string() })?;
        builder = builder.with_batch_exporter(exporter);
    }
    let provider = builder.build();
    // Metrics (e.g. the coordinator's import-job deadlines) go to the same collector.
    let meters = match &cfg.otlp_endpoint {
        Some(endpoint) => {
            use opentelemetry_otlp::WithExportConfig;
            let exporter = opentelemetry_otlp::MetricExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .with_timeout(Duration::from_secs(2))
                .build()
                .map_err(|e| TelemetryError::Otlp { endpoint: endpoint.clone(), detail: e.to_string() })?;
            let m = opentelemetry_sdk::metrics::SdkMeterProvider::builder()
                .with_resource(opentelemetry_sdk::Resource::builder().with_service_name(service).build())
                .with_periodic_exporter(exporter)
                .build();
            opentelemetry::global::set_meter_provider(m.clone());
            Some(m)
        }
        None => None,
    };
    let tracer = provider.tracer(service);
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());

    let otel_targets = tracing_subscriber::filter::Targets::new()
        .with_default(tracing::Level::TRACE)
        .with_target("h2", tracing::Level::ERROR)
        .with_target("hyper", tracing::Level::ERROR)
        .with_target("tonic", tracing::Level::ERROR)
        .with_target("tower", tracing::Level::ERROR)
        .with_target("opentelemetry", tracing::Level::ERROR);
    let otel = tracing_opentelemetry::layer().with_tracer(tracer).with_filter(otel_targets);

    let fmt = match cfg.log_format {
        LogFormat::Text => tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(false).boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr).boxed(),
    };
    // A second init (tests running in-process) keeps the first subscriber.
    let _ = tracing_subscriber::registry().with(filter).with(fmt).with(otel).try_init();
    Ok(TelemetryGuard { provider, meters })
}

/// The W3C trace id of a span, or `None` when it has no OpenTelemetry context.
pub fn trace_id(span: &tracing::Span) -> Option<String> {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

/// Records the span's trace id into its `trace_id` field (declared as `tracing::field::Empty`),
/// so log lines inside it show which trace they belong to.
pub fn record_trace_id(span: &tracing::Span) {
    if let Some(id) = trace_id(span) {
        span.record("trace_id", id.as_str());
    }
}

struct MapInjector<'a>(&'a mut HashMap<String, String>);
impl Injector for MapInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_string(), value);
    }
}

/// The propagation headers (`traceparent`, maybe `tracestate`) for the current span.
pub fn inject_headers() -> HashMap<String, String> {
    let mut map = HashMap::new();
    let cx = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&cx, &mut MapInjector(&mut map));
    map
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);
impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// A span for one incoming gRPC request, child of the caller's trace when the request carries
/// a `traceparent` header. Its `trace_id` field is filled in.
pub fn server_span(headers: &http::HeaderMap, path: &str) -> tracing::Span {
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    let span = tracing::info_span!("rpc", rpc = %path, trace_id = tracing::field::Empty);
    let _ = span.set_parent(parent);
    record_trace_id(&span);
    span
}
