//! Browser sessions for token users: `GET /login?token=…` and `POST /logout`.
//!
//! The session cookie (`herald_session`, HttpOnly, SameSite=Lax) holds the
//! token itself and expires with it, so the server keeps no session state:
//! every request and every Socket.IO handshake from that browser verifies
//! it again.

use axum::Form;
use axum::extract::{Extension, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use cookie::{Cookie, SameSite};
use herald::Identity;
use serde::Deserialize;

use crate::auth::{TokenError, Tokens};
use crate::state::AppState;
use crate::visitor::{VisitorId, read_cookie};

pub const SESSION_COOKIE: &str = "herald_session";

/// The identity of a request's session cookie: `None` without one, an error
/// for an invalid (say, expired) one.
pub fn session_identity(tokens: &Tokens, headers: &HeaderMap) -> Option<Result<Identity, TokenError>> {
    read_cookie(headers, SESSION_COOKIE).map(|token| tokens.verify(&token))
}

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

/// The answer to a plain form post whose CSRF token does not check out.
pub(crate) fn expired_form(title: &str) -> Response {
    page(StatusCode::FORBIDDEN, title, "This form has expired: go back, reload and try again.")
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

fn redirect_with_cookie(location: &str, cookie: &Cookie<'_>) -> Response {
    let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, location.to_owned())]).into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie.to_string()) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// A minimal HTML page for outcomes of plain forms (login, logout, marking
/// read) that have no page of their own to show an error on.
pub(crate) fn page(status: StatusCode, title: &str, text: &str) -> Response {
    let html = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" \
         content=\"width=device-width, initial-scale=1\"><title>{title} · Herald</title>\
         <link rel=\"stylesheet\" href=\"/pkg/herald.css\"></head><body><main class=\"plain-page\">\
         <h1>{title}</h1><p>{text}</p><p><a href=\"/\">Go to the lobby</a></p></main></body></html>",
        title = escape(title),
        text = escape(text)
    );
    (status, Html(html)).into_response()
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
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

    #[test]
    fn escapes_markup() {
        assert_eq!(escape(r#"<a href="x">'&'</a>"#), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
    }
}
