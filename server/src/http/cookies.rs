//! Every cookie Herald sets, built in one place: the visitor id, the
//! remembered display name, the rooms read and the login session. All are `Path=/` and
//! `SameSite=Lax`; whether they carry `Secure` is decided for every response
//! at once, by [`crate::http::headers::secure_cookies`].

use axum::http::HeaderValue;
use cookie::{Cookie, SameSite};
use herald::DisplayName;

use crate::auth::session::SESSION_COOKIE;

pub const VISITOR_COOKIE: &str = "herald_vid";
pub const NAME_COOKIE: &str = "herald_name";
pub const SEEN_COOKIE: &str = "herald_seen";
const LONG_LIVED: cookie::time::Duration = cookie::time::Duration::days(365);

/// The `Set-Cookie` value of the visitor id (HttpOnly: no script reads it).
pub fn visitor(id: &str) -> HeaderValue {
    set(VISITOR_COOKIE, id, LONG_LIVED, true)
}

/// The `Set-Cookie` value remembering a display name. It is not HttpOnly:
/// the page's script fills the name field from it.
pub fn display_name(name: &DisplayName) -> HeaderValue {
    set(NAME_COOKIE, name.as_str(), LONG_LIVED, false)
}

/// The `Set-Cookie` value remembering the rooms read and how far. Not
/// HttpOnly: the live page moves it on as messages arrive.
pub fn seen(seen: &herald::room::Seen) -> HeaderValue {
    set(SEEN_COOKIE, &seen.encode(), LONG_LIVED, false)
}

/// The `Set-Cookie` value of a login session: the token itself, expiring
/// with it (`lifetime_secs` from now).
pub fn session(token: &str, lifetime_secs: i64) -> HeaderValue {
    set(SESSION_COOKIE, token, cookie::time::Duration::seconds(lifetime_secs), true)
}

/// The `Set-Cookie` value that ends a login session.
pub fn session_ended() -> HeaderValue {
    set(SESSION_COOKIE, "", cookie::time::Duration::ZERO, true)
}

fn set(name: &str, value: &str, max_age: cookie::time::Duration, http_only: bool) -> HeaderValue {
    let cookie = Cookie::build((name, value)).path("/").max_age(max_age).same_site(SameSite::Lax).http_only(http_only);
    HeaderValue::from_str(&cookie.build().encoded().to_string()).expect("an encoded cookie is a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::session::read_cookie;
    use axum::http::{HeaderMap, header};

    fn sent_back(value: &HeaderValue) -> HeaderMap {
        let pair = value.to_str().unwrap().split(';').next().unwrap().to_owned();
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_str(&pair).unwrap());
        headers
    }

    #[test]
    fn display_name_round_trips() {
        let name = DisplayName::parse("Zoë <b>; x=1").unwrap();
        assert_eq!(read_cookie(&sent_back(&display_name(&name)), NAME_COOKIE).as_deref(), Some(name.as_str()));
    }

    #[test]
    fn attributes() {
        let vid = visitor(&"0a".repeat(16));
        let text = vid.to_str().unwrap();
        assert!(text.contains("HttpOnly") && text.contains("SameSite=Lax") && text.contains("Path=/"), "{text}");
        assert!(!display_name(&DisplayName::guest(1)).to_str().unwrap().contains("HttpOnly"));
        let ended = session_ended();
        assert!(ended.to_str().unwrap().starts_with("herald_session=;"), "{ended:?}");
        assert!(ended.to_str().unwrap().contains("Max-Age=0"), "{ended:?}");
        assert!(session("t.k", 60).to_str().unwrap().contains("Max-Age=60"));
    }
}
