//! The signature on what Herald sends a backend (room checks, webhooks):
//! `Herald-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`
//! with a configured secret. The timestamp is inside the signed text, so a
//! receiver that refuses old timestamps (say, over five minutes) is safe
//! from replays; comparing in constant time is the receiver's part, as
//! [`verify`] does.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::config::Secret;

/// The header the signature travels in.
pub const SIGNATURE_HEADER: &str = "herald-signature";

fn mac(secret: &Secret, timestamp: u64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()).expect("HMAC takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The header's value for `body` sent at `timestamp` (seconds since the
/// epoch).
pub fn sign(secret: &Secret, timestamp: u64, body: &[u8]) -> String {
    format!("t={timestamp},v1={}", hex::encode(mac(secret, timestamp, body).finalize().into_bytes()))
}

/// Whether `header` signs `body` with `secret`; returns its timestamp.
/// What a receiver does (the tests do it too).
pub fn verify(secret: &Secret, header: &str, body: &[u8]) -> Option<u64> {
    let mut timestamp = None;
    let mut signature = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<u64>().ok(),
            Some(("v1", v)) => signature = hex::decode(v).ok(),
            _ => {}
        }
    }
    let (timestamp, signature) = (timestamp?, signature?);
    let expected = mac(secret, timestamp, body).finalize().into_bytes();
    bool::from(expected.as_slice().ct_eq(&signature)).then_some(timestamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_for_its_body_secret_and_time() {
        let secret = Secret::new("webhook-secret-webhook-secret-0001");
        let header = sign(&secret, 1_700_000_000, b"{\"a\":1}");
        assert!(header.starts_with("t=1700000000,v1="), "{header}");
        assert_eq!(verify(&secret, &header, b"{\"a\":1}"), Some(1_700_000_000));
        assert_eq!(verify(&secret, &header, b"{\"a\":2}"), None);
        assert_eq!(verify(&Secret::new("another-secret-another-secret-01"), &header, b"{\"a\":1}"), None);
        let moved = header.replace("t=1700000000", "t=1700000001");
        assert_eq!(verify(&secret, &moved, b"{\"a\":1}"), None, "the timestamp is signed");
        assert_eq!(verify(&secret, "v1=00", b""), None);
    }
}
