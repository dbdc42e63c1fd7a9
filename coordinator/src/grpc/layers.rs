//! Status codes tonic picks that the contract words differently.
//!
//! tonic answers an oversized message with OUT_OF_RANGE and an undecodable one with INTERNAL;
//! our contract (and gRPC's own guidance for size limits) says RESOURCE_EXHAUSTED and
//! INVALID_ARGUMENT. Both come back as trailers-only responses, so the status is in the
//! response headers, where this map rewrites it.

use http::HeaderValue;

const OUT_OF_RANGE: &str = "11";
const INTERNAL: &str = "13";

fn message(resp: &http::Response<tonic::body::Body>) -> String {
    resp.headers().get("grpc-message").and_then(|v| v.to_str().ok()).map(|m| m.replace("%20", " ")).unwrap_or_default()
}

/// Rewrites tonic's codes for oversized and malformed requests.
pub fn rewrite_status(mut resp: http::Response<tonic::body::Body>) -> http::Response<tonic::body::Body> {
    let Some(code) = resp.headers().get("grpc-status").and_then(|v| v.to_str().ok()).map(str::to_string) else {
        return resp;
    };
    let msg = message(&resp);
    let new = match code.as_str() {
        OUT_OF_RANGE if msg.contains("message length too large") => Some("8"),
        INTERNAL if msg.contains("failed to decode Protobuf message") => Some("3"),
        _ => None,
    };
    if let Some(new) = new {
        resp.headers_mut().insert("grpc-status", HeaderValue::from_static(new));
    }
    resp
}
