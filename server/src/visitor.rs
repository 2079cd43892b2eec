//! Visitors: the anonymous browser identity behind cookies and CSRF tokens.
//!
//! Every page request gets a visitor id from the `herald_vid` cookie
//! (HttpOnly, SameSite=Lax; issued on first visit). The CSRF token of the
//! no-JavaScript form is the time it was made and an HMAC of that time and
//! the visitor id under the server's key, so a token is only valid together
//! with the cookie of the browser it was rendered for, only for
//! [`CSRF_TOKEN_TTL`], and the server keeps no per-visitor state.

use std::sync::Arc;

use app::ssr::Visitor;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use cookie::{Cookie, SameSite};
use herald::DisplayName;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::config::Secret;
use crate::session::session_identity;
use crate::state::AppState;

pub const VISITOR_COOKIE: &str = "herald_vid";
pub const NAME_COOKIE: &str = "herald_name";
const COOKIE_MAX_AGE_DAYS: i64 = 365;
/// How long a form's CSRF token is accepted after its page was rendered. A
/// token that leaked (a shared screenshot of the page source, a log) stops
/// working; a form left open longer is shown again with "this form has
/// expired".
pub const CSRF_TOKEN_TTL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
/// Clock difference forgiven for a token made "in the future" (by another
/// node whose clock runs ahead).
const CSRF_CLOCK_SKEW_SECS: u64 = 300;

/// The visitor id of the current request (32 hex characters).
#[derive(Debug, Clone)]
pub struct VisitorId(pub String);

/// The key behind CSRF tokens. (Whether cookies are `Secure` is decided for
/// every response at once, by [`crate::headers::secure_cookies`].)
#[derive(Clone)]
pub struct VisitorKeys {
    key: Arc<[u8; 32]>,
}

impl VisitorKeys {
    /// Derives the key from the configured secret, or makes a random one
    /// (tokens then stop being valid when the server restarts).
    pub fn new(secret: Option<&Secret>) -> Self {
        let key: [u8; 32] = match secret {
            Some(secret) => Sha256::digest(secret.expose().as_bytes()).into(),
            None => {
                tracing::warn!("HERALD_SECRET is not set: form tokens will not survive a restart");
                random_bytes()
            }
        };
        Self { key: Arc::new(key) }
    }

    fn mac(&self, visitor_id: &str, issued: u64) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.key.as_slice()).expect("HMAC takes any key length");
        mac.update(b"herald-csrf-v2\0");
        mac.update(visitor_id.as_bytes());
        mac.update(b"\0");
        mac.update(&issued.to_be_bytes());
        mac
    }

    /// A token for `visitor_id`, made now.
    pub fn csrf_token(&self, visitor_id: &str) -> String {
        self.csrf_token_at(visitor_id, unix_now())
    }

    /// A token for `visitor_id` made at `issued` (seconds since the Unix
    /// epoch): `<issued>.<hex HMAC>`.
    pub fn csrf_token_at(&self, visitor_id: &str, issued: u64) -> String {
        format!("{issued}.{}", hex::encode(self.mac(visitor_id, issued).finalize().into_bytes()))
    }

    /// Checks a token: made for this visitor by this server's key (compared
    /// in constant time), and not older than [`CSRF_TOKEN_TTL`].
    pub fn verify_csrf(&self, visitor_id: &str, token: &str) -> bool {
        self.verify_csrf_at(visitor_id, token, unix_now())
    }

    fn verify_csrf_at(&self, visitor_id: &str, token: &str, now: u64) -> bool {
        let Some((issued, mac)) = token.split_once('.') else { return false };
        let Ok(issued) = issued.parse::<u64>() else { return false };
        let fresh = issued <= now.saturating_add(CSRF_CLOCK_SKEW_SECS)
            && now.saturating_sub(issued) <= CSRF_TOKEN_TTL.as_secs();
        match hex::decode(mac) {
            Ok(bytes) => self.mac(visitor_id, issued).verify_slice(&bytes).is_ok() && fresh,
            Err(_) => false,
        }
    }

    fn cookie<'a>(&self, name: &'a str, value: String, http_only: bool) -> Cookie<'a> {
        Cookie::build((name, value))
            .path("/")
            .max_age(cookie::time::Duration::days(COOKIE_MAX_AGE_DAYS))
            .same_site(SameSite::Lax)
            .http_only(http_only)
            .build()
    }

    /// The `Set-Cookie` value remembering a display name.
    pub fn name_cookie(&self, name: &DisplayName) -> HeaderValue {
        let cookie = self.cookie(NAME_COOKIE, name.to_string(), false);
        HeaderValue::from_str(&cookie.encoded().to_string()).expect("an encoded cookie is a valid header")
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs()
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

/// A random id of `2 * N` hex characters.
pub fn random_hex<const N: usize>() -> String {
    hex::encode(random_bytes::<N>())
}

fn is_visitor_id(value: &str) -> bool {
    value.len() == 32 && value.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
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
    let visitor = Visitor { name, csrf_token: keys.csrf_token(&id), form_client_id: random_hex::<8>(), identity };
    request.extensions_mut().insert(VisitorId(id.clone()));
    request.extensions_mut().insert(visitor);

    let mut response = next.run(request).await;
    if fresh {
        let cookie = keys.cookie(VISITOR_COOKIE, id, true).to_string();
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> VisitorKeys {
        VisitorKeys::new(Some(&Secret::new("x".repeat(32))))
    }

    #[test]
    fn csrf_tokens_bind_to_the_visitor() {
        let keys = keys();
        let token = keys.csrf_token("a".repeat(32).as_str());
        assert!(keys.verify_csrf(&"a".repeat(32), &token));
        assert!(!keys.verify_csrf(&"b".repeat(32), &token));
        assert!(!keys.verify_csrf(&"a".repeat(32), "zz"));
        assert!(!keys.verify_csrf(&"a".repeat(32), ""));
        let other = VisitorKeys::new(Some(&Secret::new("y".repeat(32))));
        assert!(!other.verify_csrf(&"a".repeat(32), &token));
    }

    #[test]
    fn csrf_tokens_expire() {
        let keys = keys();
        let vid = "a".repeat(32);
        let now = unix_now();
        let day = CSRF_TOKEN_TTL.as_secs();
        assert!(keys.verify_csrf_at(&vid, &keys.csrf_token_at(&vid, now - day + 5), now));
        assert!(!keys.verify_csrf_at(&vid, &keys.csrf_token_at(&vid, now - day - 5), now), "older than a day");
        assert!(!keys.verify_csrf_at(&vid, &keys.csrf_token_at(&vid, now + 3600), now), "from the future");
        // The time can't be moved without the key.
        let token = keys.csrf_token_at(&vid, now - day - 5);
        let forged = format!("{now}.{}", token.split_once('.').unwrap().1);
        assert!(!keys.verify_csrf_at(&vid, &forged, now));
        // Tokens of the old format (no time) no longer pass.
        assert!(!keys.verify_csrf_at(&vid, token.split_once('.').unwrap().1, now));
    }

    #[test]
    fn reads_encoded_cookies() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("a=1; herald_name=Ada%20L%C3%B8velace"));
        assert_eq!(read_cookie(&headers, NAME_COOKIE).as_deref(), Some("Ada Løvelace"));
        assert_eq!(read_cookie(&headers, "missing"), None);
    }

    #[test]
    fn name_cookie_round_trips() {
        let name = DisplayName::parse("Zoë <b>; x=1").unwrap();
        let value = keys().name_cookie(&name);
        let pair = value.to_str().unwrap().split(';').next().unwrap().to_owned();
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_str(&pair).unwrap());
        assert_eq!(read_cookie(&headers, NAME_COOKIE).as_deref(), Some(name.as_str()));
    }

    #[test]
    fn visitor_ids_are_checked() {
        assert!(is_visitor_id(&"0a".repeat(16)));
        assert!(!is_visitor_id("0a"));
        assert!(!is_visitor_id(&"0A".repeat(16)));
        assert_eq!(guest_name(&"0".repeat(32)).as_str(), "guest-0000");
    }
}
