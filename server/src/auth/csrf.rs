//! CSRF tokens of the no-JavaScript forms.
//!
//! A token is the time it was made and an HMAC of that time and the visitor
//! id under the server's key, so a token is only valid together with the
//! cookie of the browser it was rendered for, only for [`CSRF_TOKEN_TTL`],
//! and the server keeps no per-visitor state.

use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::config::Secret;
use crate::ids::random_bytes;

/// How long a form's CSRF token is accepted after its page was rendered. A
/// token that leaked (a shared screenshot of the page source, a log) stops
/// working; a form left open longer is shown again with "this form has
/// expired".
pub const CSRF_TOKEN_TTL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
/// Clock difference forgiven for a token made "in the future" (by another
/// node whose clock runs ahead).
const CSRF_CLOCK_SKEW_SECS: u64 = 300;

/// The key behind CSRF tokens.
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
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs()
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
}
