//! The browser session: the `herald_session` cookie, which holds a user's
//! token itself (HttpOnly, SameSite=Lax) and expires with it, so the server
//! keeps no session state. Pages, forms and Socket.IO handshakes all read
//! it here, and verify it every time.

use axum::http::{HeaderMap, header};
use cookie::Cookie;
use herald::Identity;

use crate::auth::tokens::{TokenError, Tokens};

pub const SESSION_COOKIE: &str = "herald_session";

/// The identity of a request's session cookie: `None` without one, an error
/// for an invalid (say, expired) one.
pub fn session_identity(tokens: &Tokens, headers: &HeaderMap) -> Option<Result<Identity, TokenError>> {
    read_cookie(headers, SESSION_COOKIE).map(|token| tokens.verify(&token))
}

/// Reads a cookie's (percent-decoded) value from request headers.
pub fn read_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(Cookie::split_parse_encoded)
        .filter_map(Result::ok)
        .find(|cookie| cookie.name() == name)
        .map(|cookie| cookie.value().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn reads_encoded_cookies() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("a=1; herald_name=Ada%20L%C3%B8velace"));
        assert_eq!(read_cookie(&headers, "herald_name").as_deref(), Some("Ada Løvelace"));
        assert_eq!(read_cookie(&headers, "missing"), None);
    }
}
