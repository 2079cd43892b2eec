//! Browser sessions for token users: `GET /login?token=…` and `POST /logout`.
//!
//! The session cookie (`herald_session`, HttpOnly, SameSite=Lax) holds the
//! token itself and expires with it, so the server keeps no session state:
//! every request and every Socket.IO handshake from that browser verifies
//! it again (see [`crate::auth::session`]).

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use crate::http::cookies;
use crate::state::AppState;
use crate::web::form::{CsrfForm, FormError, Guarded};
use crate::web::response::{page, redirect_with_cookie};

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
            tracing::info!(user = %identity.user, "logged in");
            let next = query.next.filter(|n| is_local_path(n)).unwrap_or_else(|| "/".to_owned());
            redirect_with_cookie(&next, cookies::session(&token, lifetime))
        }
        Err(err) => page(StatusCode::UNAUTHORIZED, "Log in failed", &format!("The token was refused: {err}.")),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct LogoutForm {
    csrf: String,
}

impl Guarded for LogoutForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `POST /logout` (with the page's CSRF token).
pub async fn logout(form: Result<CsrfForm<LogoutForm>, FormError<LogoutForm>>) -> Response {
    match form {
        Ok(CsrfForm(_)) => redirect_with_cookie("/", cookies::session_ended()),
        Err(err) => err.answer("Log out"),
    }
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
