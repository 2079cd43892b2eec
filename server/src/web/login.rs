//! Browser sessions for token users: `GET /login?token=…` and `POST /logout`.
//!
//! The session cookie (`herald_session`, HttpOnly, SameSite=Lax) holds the
//! token itself and expires with it, so the server keeps no session state:
//! every request and every Socket.IO handshake from that browser verifies
//! it again (see [`crate::auth::session`]).

use axum::Form;
use axum::extract::{Extension, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use cookie::{Cookie, SameSite};
use serde::Deserialize;

use crate::auth::session::SESSION_COOKIE;
use crate::state::AppState;
use crate::web::response::{expired_form, page, redirect_with_cookie};
use crate::web::visitor::VisitorId;

#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    token: Option<String>,
    /// Where to go after logging in: a path on this site.
    next: Option<String>,
}

/// `GET /login?token=…[&next=/r/room]`.
pub async fn login(State(state): State<AppState>, Query(query): Query<LoginQuery>) -> Response {
    let Some(token) = query.token.filter(|t| !t.is_empty()) else {
        return page(StatusCode::BAD_REQUEST, "Log in", "Open this page with a token: /login?token=…");
    };
    match state.tokens.verify_with_expiry(&token) {
        Ok((identity, exp)) => {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
            let lifetime = i64::try_from(exp.saturating_sub(now)).unwrap_or(i64::MAX);
            let cookie = Cookie::build((SESSION_COOKIE, token))
                .path("/")
                .max_age(cookie::time::Duration::seconds(lifetime))
                .http_only(true)
                .same_site(SameSite::Lax)
                .build();
            tracing::info!(user = %identity.user, "logged in");
            let next = query.next.filter(|n| is_local_path(n)).unwrap_or_else(|| "/".to_owned());
            redirect_with_cookie(&next, &cookie)
        }
        Err(err) => page(StatusCode::UNAUTHORIZED, "Log in failed", &format!("The token was refused: {err}.")),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct LogoutForm {
    csrf: String,
}

/// `POST /logout` (with the page's CSRF token).
pub async fn logout(
    State(state): State<AppState>,
    Extension(visitor_id): Extension<VisitorId>,
    Form(form): Form<LogoutForm>,
) -> Response {
    if !state.keys.verify_csrf(&visitor_id.0, &form.csrf) {
        return expired_form("Log out");
    }
    let cookie = Cookie::build((SESSION_COOKIE, ""))
        .path("/")
        .max_age(cookie::time::Duration::ZERO)
        .http_only(true)
        .same_site(SameSite::Lax)
        .build();
    redirect_with_cookie("/", &cookie)
}

/// Only a plain path on this site: it starts with one `/`, and holds no
/// backslash, whitespace or control character anywhere. Browsers strip tabs
/// and newlines from a URL and read `\` as `/`, so `/<TAB>/evil.example` or
/// `/\evil.example` would take the visitor to `//evil.example`, another
/// site; a scheme (`https://…`) or authority (`//…`) never starts with a
/// single `/`.
fn is_local_path(path: &str) -> bool {
    let mut chars = path.chars();
    chars.next() == Some('/')
        && chars.next() != Some('/')
        && !path.chars().any(|c| c == '\\' || c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_must_stay_on_this_site() {
        assert!(is_local_path("/r/lobby"));
        assert!(is_local_path("/"));
        assert!(is_local_path("/r/lobby?x=1#m-3"));
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "https://evil.example",
            "r/lobby",
            "/x\r\nSet-Cookie: a=b",
            "/\t/evil.example",
            "/\n/evil.example",
            "/ /evil.example",
            "/\u{a0}/evil.example",
            "/a\\b",
            "",
        ] {
            assert!(!is_local_path(bad), "{bad:?}");
        }
    }
}
