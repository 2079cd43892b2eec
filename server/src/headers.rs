//! Security headers, and the per-response nonce that lets the hydration
//! scripts run under a Content-Security-Policy without `unsafe-inline`.
//!
//! The middleware makes a fresh nonce for every request and passes it to the
//! page render in the request's extensions ([`CspNonce`]); the page context
//! hands it to Leptos, which stamps it on every inline script it writes, and
//! the same nonce goes into the response's policy. A script injected into a
//! page can't know it.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use rand::RngCore;

/// This response's CSP nonce.
#[derive(Clone)]
pub struct CspNonce(pub Arc<str>);

impl CspNonce {
    fn generate() -> Self {
        let mut bytes = [0u8; 16];
        rand::rng().fill_bytes(&mut bytes);
        Self(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes).into())
    }
}

/// The policy for HTML pages: scripts only from Herald or carrying the
/// nonce, WebAssembly compilation for the client, styles and everything
/// else from Herald only, no framing, forms only back to Herald.
pub fn content_security_policy(nonce: &str) -> String {
    format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; style-src 'self'; \
         img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
         frame-ancestors 'none'"
    )
}

/// The longest path segment served: file systems refuse longer names, and
/// the static file service would log each such request as an error.
const SEGMENT_MAX: usize = 255;

/// Answers `404` to paths no route or file can match (a segment longer than
/// any file name), before they reach the file service.
pub async fn reject_impossible_paths(request: Request, next: Next) -> Response {
    if request.uri().path().split('/').any(|segment| segment.len() > SEGMENT_MAX) {
        return (axum::http::StatusCode::NOT_FOUND, "not found").into_response();
    }
    next.run(request).await
}

/// Adds the security headers; see the module docs.
pub async fn security_headers(mut request: Request, next: Next) -> Response {
    let nonce = CspNonce::generate();
    request.extensions_mut().insert(nonce.clone());
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("strict-origin-when-cross-origin"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    let is_html =
        headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("text/html"));
    if is_html && let Ok(policy) = HeaderValue::from_str(&content_security_policy(&nonce.0)) {
        headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    response
}
