//! Security headers, and the per-response nonce that lets the hydration
//! scripts run under a Content-Security-Policy without `unsafe-inline`.
//!
//! The middleware makes a fresh nonce for every request and passes it to the
//! page render in the request's extensions ([`CspNonce`]); the page context
//! hands it to Leptos, which stamps it on every inline script it writes, and
//! the same nonce goes into the response's policy. A script injected into a
//! page can't know it.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use cookie::Cookie;

use crate::config::TrustedProxies;
use crate::http::conn::PeerConn;
use crate::ids::random_bytes;

/// This response's CSP nonce.
#[derive(Clone)]
pub struct CspNonce(pub Arc<str>);

impl CspNonce {
    fn generate() -> Self {
        let bytes = random_bytes::<16>();
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

/// When Herald's cookies carry `Secure`.
#[derive(Debug, Clone)]
pub struct CookiePolicy {
    /// `HERALD_COOKIE_SECURE`: on every response, for a TLS proxy that
    /// doesn't say which scheme a request came over.
    pub always_secure: bool,
    /// The proxies whose `X-Forwarded-Proto` is believed.
    pub trusted_proxies: TrustedProxies,
}

impl CookiePolicy {
    /// Whether the browser reached Herald over HTTPS. Herald itself speaks
    /// plain HTTP, so only a trusted proxy can say so, with
    /// `X-Forwarded-Proto: https` (the first value of a list is the scheme
    /// the browser used).
    pub fn is_https(&self, peer: Option<std::net::IpAddr>, headers: &HeaderMap) -> bool {
        if !peer.is_some_and(|ip| self.trusted_proxies.contains(ip)) {
            return false;
        }
        headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .is_some_and(|scheme| scheme.trim().eq_ignore_ascii_case("https"))
    }
}

/// Marks every cookie a response sets `Secure` when its request came over
/// HTTPS (or `HERALD_COOKIE_SECURE` is on), so a session cookie set over TLS
/// is never sent in the clear.
pub async fn secure_cookies(State(policy): State<CookiePolicy>, request: Request, next: Next) -> Response {
    let peer = PeerConn::of(request.extensions()).map(|c| c.addr.ip());
    let secure = policy.always_secure || policy.is_https(peer, request.headers());
    let mut response = next.run(request).await;
    if secure {
        mark_cookies_secure(response.headers_mut());
    }
    response
}

fn mark_cookies_secure(headers: &mut HeaderMap) {
    let set: Vec<HeaderValue> = match headers.entry(header::SET_COOKIE) {
        header::Entry::Occupied(entry) => entry.remove_entry_mult().1.collect(),
        header::Entry::Vacant(_) => return,
    };
    for value in set {
        let already = value.to_str().ok().and_then(|v| Cookie::parse(v).ok()).is_some_and(|c| c.secure() == Some(true));
        let value = if already {
            value
        } else {
            let mut bytes = value.as_bytes().to_vec();
            bytes.extend_from_slice(b"; Secure");
            HeaderValue::from_bytes(&bytes).expect("a header value with an ASCII suffix is a header value")
        };
        headers.append(header::SET_COOKIE, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> CookiePolicy {
        CookiePolicy { always_secure: false, trusted_proxies: TrustedProxies::parse(&["10.0.0.0/8".into()]).unwrap() }
    }

    fn forwarded(proto: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-proto", HeaderValue::from_str(proto).unwrap());
        headers
    }

    #[test]
    fn only_a_trusted_proxy_says_a_request_came_over_https() {
        let proxy = Some("10.1.2.3".parse().unwrap());
        let stranger = Some("203.0.113.9".parse().unwrap());
        assert!(policy().is_https(proxy, &forwarded("https")));
        assert!(policy().is_https(proxy, &forwarded("HTTPS, http")), "the browser's scheme comes first");
        assert!(!policy().is_https(proxy, &forwarded("http")));
        assert!(!policy().is_https(proxy, &HeaderMap::new()));
        assert!(!policy().is_https(stranger, &forwarded("https")), "anyone can send the header");
        assert!(!policy().is_https(None, &forwarded("https")));
    }

    #[test]
    fn every_cookie_is_marked_secure_once() {
        let mut headers = HeaderMap::new();
        headers.append(header::SET_COOKIE, HeaderValue::from_static("a=1; Path=/; HttpOnly"));
        headers.append(header::SET_COOKIE, HeaderValue::from_static("b=2; Secure"));
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        mark_cookies_secure(&mut headers);
        let cookies: Vec<_> = headers.get_all(header::SET_COOKIE).iter().map(|v| v.to_str().unwrap()).collect();
        assert_eq!(cookies, ["a=1; Path=/; HttpOnly; Secure", "b=2; Secure"]);
        assert_eq!(headers[header::CONTENT_TYPE], "text/plain");
    }
}
