//! Visitors: the anonymous browser identity behind cookies and CSRF tokens.
//!
//! Every page request gets a visitor id from the `herald_vid` cookie
//! (HttpOnly, SameSite=Lax; issued on first visit), and a CSRF token for it
//! ([`crate::auth::csrf`]). A valid session cookie
//! ([`crate::auth::session`]) makes the visitor that token's user.

use app::ssr::Visitor;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use herald::DisplayName;
use herald::room::Seen;

use crate::auth::session::{read_cookie, session_identity};
use crate::http::cookies::{self, NAME_COOKIE, SEEN_COOKIE, VISITOR_COOKIE};
use crate::ids::random_hex;
use crate::state::AppState;

/// The visitor id of the current request (32 hex characters).
#[derive(Debug, Clone)]
pub struct VisitorId(pub String);

fn is_visitor_id(value: &str) -> bool {
    value.len() == 32 && value.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// The guest name of a visitor without a chosen one: stable per visitor.
fn guest_name(visitor_id: &str) -> DisplayName {
    let seed = u64::from_str_radix(&visitor_id[..12], 16).unwrap_or_default();
    DisplayName::guest(seed)
}

/// Middleware: identifies the visitor and puts [`VisitorId`] and
/// [`Visitor`] into the request's extensions, issuing the cookie on a first
/// visit. A valid session cookie makes the visitor that token's user.
pub async fn identify(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let keys = &state.keys;
    let existing = read_cookie(request.headers(), VISITOR_COOKIE).filter(|id| is_visitor_id(id));
    let fresh = existing.is_none();
    let id = existing.unwrap_or_else(random_hex::<16>);
    let identity = session_identity(&state.tokens, request.headers()).and_then(Result::ok);
    let name = match &identity {
        Some(identity) => identity.display_name(),
        None => read_cookie(request.headers(), NAME_COOKIE)
            .and_then(|name| DisplayName::parse(&name).ok())
            .unwrap_or_else(|| guest_name(&id)),
    };
    let seen = read_cookie(request.headers(), SEEN_COOKIE).map(|raw| Seen::parse(&raw)).unwrap_or_default();
    let visitor = Visitor { name, csrf_token: keys.csrf_token(&id), form_client_id: random_hex::<8>(), identity, seen };
    request.extensions_mut().insert(VisitorId(id.clone()));
    request.extensions_mut().insert(visitor);

    let mut response = next.run(request).await;
    if fresh {
        response.headers_mut().append(header::SET_COOKIE, cookies::visitor(&id));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn visitor_ids_are_checked() {
        assert!(is_visitor_id(&"0a".repeat(16)));
        assert!(!is_visitor_id("0a"));
        assert!(!is_visitor_id(&"0A".repeat(16)));
        assert_eq!(guest_name(&"0".repeat(32)).as_str(), "guest-0000");
    }
}
