//! HTTP-level checks on Socket.IO transport requests (`/socket.io/`), made
//! before socketioxide sees them, on both transports:
//!
//! - **Origin allow-list.** A browser page on another site must not be able
//!   to open a connection that carries the visitor's session cookie
//!   (cross-site WebSocket hijacking). Requests whose `Origin` is neither
//!   Herald's own nor listed in `HERALD_ALLOWED_ORIGINS` get 403 with the
//!   reason. Requests without `Origin` come from programs, not browsers, and
//!   carry no ambient credentials; they pass.
//! - **No new sessions while shutting down** (503); existing long-polling
//!   sessions may still poll, to collect their goodbye.
//! - **Handshakes per address.** A request without `sid` starts an
//!   Engine.IO session, which lives (with its heartbeat) until it connects
//!   to Socket.IO or `HERALD_CONNECT_TIMEOUT` passes. Each takes a place
//!   under `HERALD_HANDSHAKES_PER_IP` for that long; past it the handshake
//!   gets 429 with the reason and `Retry-After`. (Sessions that do connect
//!   are then held to `HERALD_CONNECTIONS_PER_IP`.)
//! - **WebSocket message size.** Once an upgrade is accepted, the
//!   connection follows its client's frames and closes with 1009 at the
//!   header of a message over `HERALD_SOCKET_PAYLOAD_MAX_BYTES` (see
//!   [`crate::http::frames`]).
//! - **Upgrade tracking.** A WebSocket upgraded from long-polling names its
//!   socket in `sid`; once Socket.IO has accepted the upgrade (answered
//!   101), its TCP connection is recorded so a slow consumer can be cut (see
//!   [`crate::engine::fanout`]). Nothing is recorded for a request that was
//!   not accepted, and the record goes with the connection.
//! - **Goodbye to dismissed long-polling sessions.** A long-polling slow
//!   consumer's next poll is answered with `closing` (reason
//!   `slow_consumer`) and an Engine.IO close, so its client learns why and
//!   reconnects; the session itself ends with its heartbeat.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{Extensions, HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper::upgrade::OnUpgrade;
use socketioxide::socket::Sid;

use crate::config::{Origins, TrustedProxies};
use crate::engine::fanout::Transports;
use crate::http::admission::WindowCaps;
use crate::http::conn::PeerConn;
use crate::ops::lifecycle::Drain;
use crate::ops::metrics::{Metrics, Rejection};
use herald::protocol::Closing;

/// The path prefix socketioxide serves.
pub const SOCKET_PATH: &str = "/socket.io";

#[derive(Clone)]
pub struct TransportGuard {
    pub origins: Arc<Origins>,
    pub transports: Transports,
    pub metrics: Arc<Metrics>,
    pub drain: Drain,
    /// `HERALD_HANDSHAKES_PER_IP`.
    pub handshakes: WindowCaps,
    /// How long a handshake's place is held: `HERALD_CONNECT_TIMEOUT`.
    pub connect_timeout: Duration,
    pub trusted_proxies: TrustedProxies,
    /// `HERALD_SOCKET_PAYLOAD_MAX_BYTES`: the largest WebSocket message a
    /// client may send (see [`crate::http::frames`]).
    pub payload_max: u64,
}

/// Whether a request with these headers may use the transport.
pub fn origin_allowed(origins: &Origins, headers: &HeaderMap) -> Result<(), String> {
    let Some(origin) = headers.get(header::ORIGIN) else { return Ok(()) };
    let origin = origin.to_str().map_err(|_| "the Origin header is not valid text".to_owned())?;
    if *origins == Origins::Any {
        return Ok(());
    }
    let same_origin = origin
        .split_once("://")
        .map(|(_, host)| host)
        .zip(headers.get(header::HOST).and_then(|h| h.to_str().ok()))
        .is_some_and(|(origin_host, host)| origin_host.eq_ignore_ascii_case(host));
    let listed = matches!(origins, Origins::List(list) if list.iter().any(|o| o.eq_ignore_ascii_case(origin)));
    if same_origin || listed {
        Ok(())
    } else {
        Err(format!("origin {origin} is not allowed to connect (see HERALD_ALLOWED_ORIGINS)"))
    }
}

/// The middleware; see the module docs.
pub async fn guard(State(guard): State<TransportGuard>, request: Request, next: Next) -> Response {
    if !request.uri().path().starts_with(SOCKET_PATH) {
        return next.run(request).await;
    }
    if let Err(reason) = origin_allowed(&guard.origins, request.headers()) {
        guard.metrics.rejected(Rejection::Origin);
        tracing::info!(%reason, "refused a Socket.IO request");
        return (StatusCode::FORBIDDEN, reason).into_response();
    }
    let query = request.uri().query().unwrap_or_default();
    let upgrade = query.split('&').any(|pair| pair == "transport=websocket");
    let sid = query.split('&').find_map(|pair| pair.strip_prefix("sid=")).and_then(|sid| sid.parse::<Sid>().ok());
    // While shutting down, sessions that exist may still poll (to collect
    // their goodbye), but no new session starts.
    if sid.is_none() && guard.drain.is_draining() {
        return (StatusCode::SERVICE_UNAVAILABLE, "the server is shutting down; reconnect in a moment").into_response();
    }
    let conn = PeerConn::of(request.extensions()).cloned();
    if sid.is_none()
        && let Some(conn) = &conn
    {
        let ip = guard.trusted_proxies.client_ip_of(conn.addr.ip(), request.headers());
        // Counted for the connect timeout: the session this starts lives at
        // most that long before it connects (and is then counted as a
        // connection) or is closed.
        if !guard.handshakes.admit(ip, Instant::now()) {
            guard.metrics.rejected(Rejection::HandshakesPerIp);
            tracing::info!("refused a Socket.IO handshake: too many from its address");
            let wait = guard.connect_timeout.as_secs().max(1);
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, wait.to_string())],
                "too many Socket.IO handshakes from this address; try again in a moment",
            )
                .into_response();
        }
    }
    if let Some(sid) = sid
        && !upgrade
        && request.method() == Method::GET
        && guard.transports.is_dismissed(&sid)
    {
        return goodbye_poll();
    }
    // A request that starts a session is kept by Engine.IO for the
    // session's life: give it a head of its own (see `own_head`).
    let request = if sid.is_none() { own_head(request) } else { request };
    let response = next.run(request).await;
    // Engine.IO answers a session it does not know with a JSON 400: behind
    // a load balancer that spreads one session's polls over nodes, these
    // climb (`herald_polls_unknown_session_total`).
    if sid.is_some()
        && !upgrade
        && response.status() == StatusCode::BAD_REQUEST
        && response.headers().get(header::CONTENT_TYPE).is_some_and(|t| t.as_bytes().starts_with(b"application/json"))
    {
        guard.metrics.unknown_session_poll();
    }
    if let (true, Some(conn), StatusCode::SWITCHING_PROTOCOLS) = (upgrade, conn, response.status()) {
        conn.kill.websocket(guard.payload_max);
        if let Some(sid) = sid {
            guard.transports.upgrading(sid, conn.kill);
        }
    }
    response
}

/// The request with its URI and the headers still read after this point
/// copied out of hyper's read buffer, and the other headers and extensions
/// dropped.
///
/// hyper parses a request head in place: header values and the URI are
/// slices of the connection's 16 KiB read buffer. Engine.IO keeps the
/// request that started a session (its `req_parts`) for as long as the
/// session lives, and with it that whole buffer: 16 KiB of every idle
/// connection's memory (measured with a heap profile, docs/ARCHITECTURE.md
/// "Performance"). Copies of the few hundred bytes actually used let it go,
/// and a browser's dozen other headers (user agent, languages, caches) are
/// not kept for hours either. Of the extensions, only the connection
/// (`PeerConn`, read by the socket handlers) and the upgrade (taken by
/// Engine.IO to open the WebSocket) are kept.
fn own_head(request: Request) -> Request {
    let (mut parts, body) = request.into_parts();
    let kept = parts.headers.iter().filter(|(name, _)| is_read_later(name)).count();
    let mut headers = HeaderMap::with_capacity(kept);
    for (name, value) in &parts.headers {
        if !is_read_later(name) {
            continue;
        }
        let mut copy = HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone());
        copy.set_sensitive(value.is_sensitive());
        headers.append(name.clone(), copy);
    }
    parts.headers = headers;
    parts.uri = owned_uri(&parts.uri);
    let mut extensions = Extensions::new();
    if let Some(conn) = parts.extensions.remove::<ConnectInfo<PeerConn>>() {
        extensions.insert(conn);
    }
    if let Some(upgrade) = parts.extensions.remove::<OnUpgrade>() {
        extensions.insert(upgrade);
    }
    parts.extensions = extensions;
    Request::from_parts(parts, body)
}

/// Whether a header of a session's first request is read once this guard
/// has passed it on: Engine.IO reads the WebSocket key (to answer the
/// upgrade) and the content type (of a polling request), and the connect
/// handler (`realtime::handshake`) reads the session cookie and, behind a
/// trusted proxy, `X-Forwarded-For`. A header a socket handler starts to
/// read must be added here, or it reads as absent.
fn is_read_later(name: &header::HeaderName) -> bool {
    name == header::COOKIE
        || name == header::SEC_WEBSOCKET_KEY
        || name == header::CONTENT_TYPE
        || name == "x-forwarded-for"
}

/// `uri` in memory of its own (a URI parsed from its own text owns it).
fn owned_uri(uri: &Uri) -> Uri {
    uri.to_string().parse().unwrap_or_else(|_| uri.clone())
}

/// A long-polling response (Engine.IO v4) carrying the Socket.IO event
/// `closing` for a slow consumer, then an Engine.IO close.
fn goodbye_poll() -> Response {
    let closing = serde_json::to_string(&Closing::slow_consumer()).expect("a Closing serialises");
    let payload = format!("42[\"closing\",{closing}]\u{1e}1");
    ([(header::CONTENT_TYPE, "text/plain; charset=UTF-8")], payload).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::conn::KillSwitch;
    use axum::extract::OriginalUri;

    #[test]
    fn a_kept_request_head_is_the_head_read_later_in_memory_of_its_own() {
        let buffer = axum::body::Bytes::from_static(b"/socket.io/?EIO=4&transport=websocket herald_session=abc; a=b");
        let uri = Uri::from_maybe_shared(buffer.slice(0..37)).unwrap();
        let mut request = Request::builder().uri(uri.clone()).body(axum::body::Body::empty()).unwrap();
        let mut cookie = HeaderValue::from_maybe_shared(buffer.slice(38..)).unwrap();
        cookie.set_sensitive(true);
        request.headers_mut().append(header::COOKIE, cookie.clone());
        request.headers_mut().append("x-forwarded-for", HeaderValue::from_static("1.2.3.4"));
        request.headers_mut().append("x-forwarded-for", HeaderValue::from_static("5.6.7.8"));
        request.headers_mut().append(header::SEC_WEBSOCKET_KEY, HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="));
        request.extensions_mut().insert(OriginalUri(uri.clone()));
        let peer = PeerConn { addr: "10.1.2.3:4567".parse().unwrap(), kill: KillSwitch::default() };
        request.extensions_mut().insert(ConnectInfo(peer));
        let before = request.headers().clone();
        request.headers_mut().append(header::USER_AGENT, HeaderValue::from_static("Mozilla/5.0 (X11; Linux x86_64)"));
        request.headers_mut().append(header::ACCEPT_LANGUAGE, HeaderValue::from_static("en-GB,en;q=0.9"));

        let owned = own_head(request);
        assert_eq!(owned.uri(), &uri);
        let kept = PeerConn::of(owned.extensions()).map(|c| c.addr);
        assert_eq!(kept, Some("10.1.2.3:4567".parse().unwrap()), "the connection stays");
        assert!(owned.extensions().get::<OriginalUri>().is_none(), "what nothing reads is dropped");
        assert_eq!(owned.headers(), &before, "every value read later, repeated ones too, in order, and nothing else");
        let copied = &owned.headers()[header::COOKIE];
        assert!(copied.is_sensitive(), "a secret stays out of logs");
        let range = buffer.as_ptr_range();
        assert!(!range.contains(&copied.as_bytes().as_ptr()), "the cookie is a copy, not a slice of the buffer");
        assert!(!range.contains(&owned.uri().query().unwrap().as_ptr()), "so is the URI");
    }

    fn headers(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, host.parse().unwrap());
        if let Some(origin) = origin {
            h.insert(header::ORIGIN, origin.parse().unwrap());
        }
        h
    }

    #[test]
    fn same_origin_listed_and_originless_requests_pass() {
        let same = Origins::SameOrigin;
        assert!(origin_allowed(&same, &headers(None, "chat.example:3000")).is_ok());
        assert!(origin_allowed(&same, &headers(Some("http://chat.example:3000"), "chat.example:3000")).is_ok());
        assert!(origin_allowed(&same, &headers(Some("https://evil.example"), "chat.example:3000")).is_err());
        assert!(origin_allowed(&same, &headers(Some("null"), "chat.example:3000")).is_err());
        let listed = Origins::List(vec!["https://app.example".into()]);
        assert!(origin_allowed(&listed, &headers(Some("https://app.example"), "chat.example")).is_ok());
        assert!(origin_allowed(&listed, &headers(Some("https://app.example.evil"), "chat.example")).is_err());
        assert!(origin_allowed(&Origins::Any, &headers(Some("https://evil.example"), "chat.example")).is_ok());
    }
}
