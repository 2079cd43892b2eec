//! `POST /add_message`: the no-JavaScript way to send.
//!
//! The room page's form posts here. On success the browser is sent back to
//! the room with `303 See Other`; on failure the room page is rendered again
//! with the reason shown, the visitor's text kept, a 4xx/5xx status, and
//! nothing stored.
//!
//! Posts share the limits of the socket's `send`: `HERALD_SEND_RATE` and
//! `HERALD_SEND_BURST`, per visitor and per address
//! ([`FormRate`](crate::http::admission::FormRate)). Over either, the answer
//! is a small 429 page with the reason and `Retry-After`, not the room page:
//! a flood must not cost a history read per post.

use std::time::Duration;

use app::ssr::{FormRejection, Visitor};
use axum::body::Body;
use axum::extract::{ConnectInfo, Extension, State};
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use axum::response::Response;
use herald::RoomName;
use herald::protocol::SendRequest;
use serde::Deserialize;

use crate::access::Refusal;
use crate::chat::PostError;
use crate::http::admission::retry_after_secs;
use crate::http::conn::PeerConn;
use crate::http::cookies;
use crate::http::headers::CspNonce;
use crate::ids::random_hex;
use crate::ops::metrics::Rejection;
use crate::state::AppState;
use crate::web::form::{CsrfForm, FormError, Guarded};
use crate::web::response::{page, see_other};
use crate::web::visitor::VisitorId;

/// The form's fields. Missing fields read as empty, so that they are
/// reported like any other invalid value.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct AddMessageForm {
    room: String,
    name: String,
    body: String,
    csrf: String,
    client_id: String,
}

impl Guarded for AddMessageForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

pub async fn add_message(
    State(state): State<AppState>,
    Extension(visitor_id): Extension<VisitorId>,
    Extension(visitor): Extension<Visitor>,
    nonce: Option<Extension<CspNonce>>,
    peer: Option<Extension<ConnectInfo<PeerConn>>>,
    headers: HeaderMap,
    form: Result<CsrfForm<AddMessageForm>, FormError<AddMessageForm>>,
) -> Response {
    let (form, expired) = match form {
        Ok(CsrfForm(form)) => (form, false),
        Err(FormError::Expired(form)) => (form, true),
        Err(malformed) => return malformed.answer("Send"),
    };
    let room = RoomName::parse(&form.room).unwrap_or_else(|_| RoomName::lobby());
    // A private room the visitor may not enter answers as if it did not
    // exist, before anything of it is rendered.
    match state.access.check(&room, visitor.identity.as_ref()).await.allowed() {
        Ok(()) => {}
        Err(Refusal::Unavailable) => return access_unavailable(),
        Err(_) => return not_found(),
    }
    let reject = |status: StatusCode, error: String| {
        let rejection = FormRejection { error, name: form.name.clone(), body: form.body.clone() };
        render_rejected(&state, &room, visitor.clone(), nonce.clone().map(|n| n.0), rejection, status)
    };
    if expired {
        return reject(StatusCode::FORBIDDEN, "This form has expired. Send your message again.".into()).await;
    }
    let ip =
        peer.map(|Extension(ConnectInfo(peer))| state.cookies.trusted_proxies.client_ip_of(peer.addr.ip(), &headers));
    if let Err(wait) = state.form_rate.take(&visitor_id.0, ip) {
        state.metrics.rejected(Rejection::FormRate);
        return too_fast(wait);
    }
    let Some(_work) = state.drain.start() else {
        return reject(StatusCode::SERVICE_UNAVAILABLE, "The server is restarting. Send your message again.".into())
            .await;
    };
    // A form without an id still gets one, so the stored record is complete.
    let client_id = if form.client_id.is_empty() { random_hex::<8>() } else { form.client_id.clone() };
    let request = SendRequest {
        room: form.room.clone(),
        client_id,
        name: form.name.clone(),
        body: form.body.clone(),
        retry: true,
    };
    let message = match request.validate() {
        Ok(mut message) => {
            if let Some(identity) = &visitor.identity {
                message.name = identity.display_name();
                message.user = Some(identity.user.clone());
            }
            message
        }
        Err(err) => return reject(StatusCode::UNPROCESSABLE_ENTITY, capitalize(&err.reason)).await,
    };
    match state.chat.post(&message, true).await {
        Ok(stored) => {
            let location = format!("{}#m-{}", stored.room.page_path(), stored.seq);
            let mut response = see_other(&location);
            response.headers_mut().append(header::SET_COOKIE, cookies::display_name(&stored.name));
            response
        }
        Err(PostError::Invalid(reply)) => reject(StatusCode::UNPROCESSABLE_ENTITY, capitalize(&reply.reason)).await,
        Err(PostError::Store(err)) => {
            tracing::warn!(%err, room = %message.room, "form post: storing failed");
            reject(StatusCode::SERVICE_UNAVAILABLE, "Your message could not be stored. Try again.".into()).await
        }
    }
}

/// The answer to a post to a private room the visitor may not enter: the
/// same as for a room that does not exist.
pub(crate) fn not_found() -> Response {
    let text = "Nothing here. Room names are 1 to 64 characters of a–z, 0–9, “_” and “-”.";
    page(StatusCode::NOT_FOUND, "Nothing here", text)
}

fn access_unavailable() -> Response {
    let text = "This room's access check did not answer. Nothing was stored: go back and send again in a moment.";
    let mut response = page(StatusCode::SERVICE_UNAVAILABLE, "Try again", text);
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The answer to a post over the rate: nothing stored, and when to try again.
fn too_fast(wait: Duration) -> Response {
    let secs = retry_after_secs(wait);
    let text = format!(
        "You are sending messages faster than this server allows. Nothing was stored: wait {secs} s, \
         go back and send again."
    );
    let mut response = page(StatusCode::TOO_MANY_REQUESTS, "Too many messages", &text);
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Renders the room page for a rejected post, with `status`.
async fn render_rejected(
    state: &AppState,
    room: &RoomName,
    visitor: Visitor,
    nonce: Option<CspNonce>,
    rejection: FormRejection,
    status: StatusCode,
) -> Response {
    let mut request = Request::get(room.page_path()).body(Body::empty()).expect("a room path is a valid URI");
    request.extensions_mut().insert(visitor);
    // The re-rendered page answers this request: its scripts need this
    // response's CSP nonce.
    if let Some(nonce) = nonce {
        request.extensions_mut().insert(nonce);
    }
    request.extensions_mut().insert(rejection);
    let mut response = state.render_page(request).await;
    *response.status_mut() = status;
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map(|first| first.to_uppercase().chain(chars).collect()).unwrap_or_default()
}
