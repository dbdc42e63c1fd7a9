//! `POST /enroll`: an agent without a certificate redeems a one-time token with a certificate
//! request and its clock (JSON `{"token", "csr", "now_unix_ms"}`) and gets `{"certificate", "ca", "identity", "not_after",
//! "site"}`. The token is the credential; every answer, given or refused, is in the audit log.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::Web;

/// The address an enrolling agent called from (it has no identity yet).
#[derive(Debug, Clone, Copy)]
pub struct Remote(pub SocketAddr);

#[derive(serde::Deserialize)]
pub struct EnrollBody {
    token: String,
    csr: String,
    /// The agent's clock, checked against ours (`domain::enroll::MAX_CLOCK_SKEW_MS`).
    #[serde(default)]
    now_unix_ms: i64,
}

pub async fn enroll(
    State(web): State<Web>,
    Extension(Remote(peer)): Extension<Remote>,
    body: Option<Json<EnrollBody>>,
) -> Response {
    let actor = format!("anonymous@{}", peer.ip());
    let Some(ca) = web.enroll.clone() else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": "this coordinator does not enroll agents ([enroll] is not configured); ask an operator for a certificate" })),
        )
            .into_response();
    };
    let Some(Json(b)) = body else {
        web.core
            .audit_refusal(&actor, "Enroll", "refused: invalid argument", "the request is not JSON {token, csr}")
            .await;
        return (StatusCode::BAD_REQUEST, Json(json!({ "error": "send JSON {\"token\": ..., \"csr\": ...}" })))
            .into_response();
    };
    match web.core.enroll(&ca, &b.token, &b.csr, b.now_unix_ms).await {
        Ok(e) => (
            StatusCode::OK,
            Json(json!({
                "certificate": e.cert_pem, "ca": e.ca_pem, "identity": e.identity.uri(),
                "not_after": seedship_proto::human::rfc3339(e.not_after_ms), "not_after_unix_ms": e.not_after_ms,
                "site": e.site,
            })),
        )
            .into_response(),
        Err(e) => {
            tracing::warn!(%peer, error = %e, "enrollment refused");
            let outcome = format!("refused: {}", crate::observe::outcome(Some(e.code())));
            web.core.audit_refusal(&actor, "Enroll", &outcome, &e.to_string()).await;
            let status = match e.code() {
                tonic::Code::InvalidArgument => StatusCode::BAD_REQUEST,
                tonic::Code::PermissionDenied => StatusCode::FORBIDDEN,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            (status, Json(json!({ "error": e.to_string() }))).into_response()
        }
    }
}
