//! Identity: HS256 tokens signed by the customer's backend.
//!
//! A token's claims are `sub` (the user id, required), `exp` (required),
//! `name` (optional display name), `rooms` (optional: room patterns of the
//! private rooms the user may join), `nbf` (optional: not valid before) and
//! `aud` (required to name `HERALD_TOKEN_AUDIENCE` when that is set; refused
//! when it is not, since the token is then meant for someone else). The algorithm is pinned to HS256: a
//! token whose header names anything else — `none` included — is refused
//! before its signature is even looked at. Several secrets can be configured
//! at once so a secret can be rotated without downtime: tokens are signed
//! with the first and verified against each.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use herald::room::RoomPatterns;
use herald::{DisplayName, Identity, UserId};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::Secret;

/// Seconds of clock difference between Herald and the token's issuer that
/// are forgiven when checking `exp`.
pub const LEEWAY_SECS: u64 = 30;
/// Tokens longer than this are refused unread.
pub const TOKEN_MAX_LEN: usize = 4096;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    /// Optional here so that a missing `sub` is reported as such rather than
    /// as a malformed token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sub: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exp: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    /// Room patterns: read as strings so that a bad one is reported as
    /// such.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rooms: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<u64>,
    /// Checked by the library against the configured audience; written by
    /// [`Tokens::issue`] when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    aud: Option<serde_json::Value>,
}

/// Why a token was refused. The text is safe to show the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token authentication is not configured on this server")]
    NotConfigured,
    #[error("token is malformed")]
    Malformed,
    #[error("token is too long")]
    TooLong,
    #[error("token must be signed with HS256")]
    WrongAlgorithm,
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet (nbf)")]
    NotYetValid,
    #[error("token is meant for another audience (aud)")]
    WrongAudience,
    #[error("token has no {0} claim")]
    MissingClaim(String),
    #[error("token subject is not a valid user id")]
    BadSubject,
    #[error("token name is not a valid display name")]
    BadName,
    #[error("token rooms claim must list at most 100 room patterns (a-z, 0-9, '_', '-', '*')")]
    BadRooms,
}

/// Verifies (and, for `herald token`, issues) tokens.
#[derive(Clone)]
pub struct Tokens {
    decoding: Vec<DecodingKey>,
    encoding: Option<EncodingKey>,
    validation: Validation,
    audience: Option<String>,
}

impl Tokens {
    /// Tokens signed with any of `secrets`; with an `audience`, their `aud`
    /// must name it.
    pub fn new(secrets: &[Secret], audience: Option<&str>) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        match audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                validation.set_required_spec_claims(&["exp", "sub", "aud"]);
            }
            None => validation.set_required_spec_claims(&["exp", "sub"]),
        }
        Self {
            decoding: secrets.iter().map(|s| DecodingKey::from_secret(s.expose().as_bytes())).collect(),
            encoding: secrets.first().map(|s| EncodingKey::from_secret(s.expose().as_bytes())),
            validation,
            audience: audience.map(str::to_owned),
        }
    }

    pub fn is_configured(&self) -> bool {
        !self.decoding.is_empty()
    }

    /// Checks a token and returns who it identifies.
    pub fn verify(&self, token: &str) -> Result<Identity, TokenError> {
        self.verify_with_expiry(token).map(|(identity, _)| identity)
    }

    /// Checks a token and returns who it identifies and when it expires
    /// (seconds since the Unix epoch).
    pub fn verify_with_expiry(&self, token: &str) -> Result<(Identity, u64), TokenError> {
        if self.decoding.is_empty() {
            return Err(TokenError::NotConfigured);
        }
        if token.len() > TOKEN_MAX_LEN {
            return Err(TokenError::TooLong);
        }
        check_algorithm(token)?;
        let mut outcome = Err(TokenError::BadSignature);
        for key in &self.decoding {
            outcome = jsonwebtoken::decode::<Claims>(token, key, &self.validation).map_err(|e| map_error(e.kind()));
            // Only a signature mismatch means "try the next secret".
            if !matches!(outcome, Err(TokenError::BadSignature)) {
                break;
            }
        }
        let claims = outcome?.claims;
        let sub = claims.sub.ok_or_else(|| TokenError::MissingClaim("sub".into()))?;
        let user = UserId::parse(&sub).map_err(|_| TokenError::BadSubject)?;
        let name = claims.name.map(|n| DisplayName::parse(&n)).transpose().map_err(|_| TokenError::BadName)?;
        let exp = claims.exp.ok_or_else(|| TokenError::MissingClaim("exp".into()))?;
        let rooms = RoomPatterns::parse(&claims.rooms.unwrap_or_default()).map_err(|_| TokenError::BadRooms)?;
        Ok((Identity { user, name, rooms }, exp))
    }

    /// Signs a token for `user` valid for `ttl`, with the first secret.
    pub fn issue(&self, user: &UserId, name: Option<&DisplayName>, ttl: Duration) -> Result<String, TokenError> {
        self.issue_with_rooms(user, name, &RoomPatterns::default(), ttl)
    }

    /// Signs a token as [`Tokens::issue`] does, granting the private rooms
    /// `rooms` matches.
    pub fn issue_with_rooms(
        &self,
        user: &UserId,
        name: Option<&DisplayName>,
        rooms: &RoomPatterns,
        ttl: Duration,
    ) -> Result<String, TokenError> {
        let key = self.encoding.as_ref().ok_or(TokenError::NotConfigured)?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let claims = Claims {
            sub: Some(user.to_string()),
            exp: Some(now + ttl.as_secs()),
            name: name.map(ToString::to_string),
            rooms: (!rooms.is_empty()).then(|| rooms.iter().map(|p| p.as_str().to_owned()).collect()),
            iat: Some(now),
            aud: self.audience.clone().map(serde_json::Value::String),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, key).map_err(|_| TokenError::Malformed)
    }
}

/// Refuses any header algorithm but HS256 by name, before anything else is
/// trusted — `none` included, which the JWT library would only call
/// malformed.
fn check_algorithm(token: &str) -> Result<(), TokenError> {
    use base64::Engine;
    #[derive(Deserialize)]
    struct JwtHeader {
        alg: String,
    }
    let header = token.split('.').next().unwrap_or_default();
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header).map_err(|_| TokenError::Malformed)?;
    let header: JwtHeader = serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)?;
    if header.alg == "HS256" { Ok(()) } else { Err(TokenError::WrongAlgorithm) }
}

fn map_error(kind: &ErrorKind) -> TokenError {
    match kind {
        ErrorKind::InvalidSignature => TokenError::BadSignature,
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        ErrorKind::InvalidAudience => TokenError::WrongAudience,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName | ErrorKind::UnsupportedAlgorithm => {
            TokenError::WrongAlgorithm
        }
        ErrorKind::MissingRequiredClaim(claim) => TokenError::MissingClaim(claim.clone()),
        _ => TokenError::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = "old-secret-old-secret-old-secret-0001";
    const NEW: &str = "new-secret-new-secret-new-secret-0002";

    fn tokens(secrets: &[&str]) -> Tokens {
        Tokens::new(&secrets.iter().map(|s| Secret::new(*s)).collect::<Vec<_>>(), None)
    }

    fn user(id: &str) -> UserId {
        UserId::parse(id).unwrap()
    }

    fn now() -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
    }

    fn sign(secret: &str, claims: &serde_json::Value) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(secret.as_bytes()))
            .unwrap()
    }

    #[test]
    fn a_valid_token_identifies_its_user() {
        let t = tokens(&[NEW]);
        let alice = DisplayName::parse("Alice").unwrap();
        let token = t.issue(&user("63"), Some(&alice), Duration::from_secs(60)).unwrap();
        let identity = t.verify(&token).unwrap();
        assert_eq!(identity.user, user("63"));
        assert_eq!(identity.name, Some(alice));
    }

    #[test]
    fn the_rooms_claim_grants_room_patterns() {
        let t = tokens(&[NEW]);
        let rooms = RoomPatterns::parse(&["team-a", "support-*"]).unwrap();
        let token = t.issue_with_rooms(&user("63"), None, &rooms, Duration::from_secs(60)).unwrap();
        assert_eq!(t.verify(&token).unwrap().rooms, rooms);
        assert!(t.verify(&t.issue(&user("63"), None, Duration::from_secs(60)).unwrap()).unwrap().rooms.is_empty());
        for bad in [serde_json::json!(["Team"]), serde_json::json!("team-a"), serde_json::json!([""])] {
            let token = sign(NEW, &serde_json::json!({"sub": "63", "exp": now() + 60, "rooms": bad}));
            let refused = t.verify(&token).unwrap_err();
            assert!(matches!(refused, TokenError::BadRooms | TokenError::Malformed), "{bad}: {refused:?}");
        }
        let many: Vec<String> = (0..101).map(|i| format!("r{i}")).collect();
        let token = sign(NEW, &serde_json::json!({"sub": "63", "exp": now() + 60, "rooms": many}));
        assert_eq!(t.verify(&token), Err(TokenError::BadRooms));
    }

    #[test]
    fn expired_tokens_are_refused() {
        let token = sign(NEW, &serde_json::json!({"sub": "63", "exp": now() - LEEWAY_SECS - 10}));
        assert_eq!(tokens(&[NEW]).verify(&token), Err(TokenError::Expired));
    }

    #[test]
    fn nbf_is_honoured() {
        let later = sign(NEW, &serde_json::json!({"sub": "63", "exp": now() + 600, "nbf": now() + 300}));
        assert_eq!(tokens(&[NEW]).verify(&later), Err(TokenError::NotYetValid));
        let now_valid = sign(NEW, &serde_json::json!({"sub": "63", "exp": now() + 600, "nbf": now() - 1}));
        assert!(tokens(&[NEW]).verify(&now_valid).is_ok());
    }

    #[test]
    fn aud_must_name_the_configured_audience() {
        let for_chat = sign(NEW, &serde_json::json!({"sub": "63", "exp": now() + 60, "aud": "chat"}));
        let for_other = sign(NEW, &serde_json::json!({"sub": "63", "exp": now() + 60, "aud": "billing"}));
        let without = sign(NEW, &serde_json::json!({"sub": "63", "exp": now() + 60}));
        let chat = Tokens::new(&[Secret::new(NEW)], Some("chat"));
        assert_eq!(chat.verify(&for_chat).unwrap().user, user("63"));
        assert_eq!(chat.verify(&for_other), Err(TokenError::WrongAudience));
        assert_eq!(chat.verify(&without), Err(TokenError::MissingClaim("aud".into())));
        // Without a configured audience a token meant for someone is refused,
        // and said so (not "malformed").
        assert_eq!(tokens(&[NEW]).verify(&for_chat), Err(TokenError::WrongAudience));
        assert!(tokens(&[NEW]).verify(&without).is_ok());
        let issued = chat.issue(&user("64"), None, Duration::from_secs(60)).unwrap();
        assert_eq!(chat.verify(&issued).unwrap().user, user("64"), "herald token writes the audience");
    }

    #[test]
    fn a_wrong_secret_is_refused() {
        let token =
            tokens(&["someone-else-someone-else-someone-else"]).issue(&user("63"), None, Duration::from_secs(60));
        assert_eq!(tokens(&[NEW]).verify(&token.unwrap()), Err(TokenError::BadSignature));
    }

    #[test]
    fn alg_none_and_other_algorithms_are_refused() {
        let b64 = base64_url;
        let claims = b64(&serde_json::json!({"sub": "63", "exp": now() + 60}).to_string());
        let none = format!("{}.{claims}.", b64(r#"{"alg":"none","typ":"JWT"}"#));
        assert_eq!(tokens(&[NEW]).verify(&none), Err(TokenError::WrongAlgorithm));
        let hs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &serde_json::json!({"sub": "63", "exp": now() + 60}),
            &EncodingKey::from_secret(NEW.as_bytes()),
        )
        .unwrap();
        assert_eq!(tokens(&[NEW]).verify(&hs512), Err(TokenError::WrongAlgorithm));
    }

    fn base64_url(text: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
    }

    #[test]
    fn sub_and_exp_are_required() {
        let no_sub = sign(NEW, &serde_json::json!({"exp": now() + 60}));
        assert_eq!(tokens(&[NEW]).verify(&no_sub), Err(TokenError::MissingClaim("sub".into())));
        let no_exp = sign(NEW, &serde_json::json!({"sub": "63"}));
        assert_eq!(tokens(&[NEW]).verify(&no_exp), Err(TokenError::MissingClaim("exp".into())));
        let bad_sub = sign(NEW, &serde_json::json!({"sub": "a b", "exp": now() + 60}));
        assert_eq!(tokens(&[NEW]).verify(&bad_sub), Err(TokenError::BadSubject));
    }

    #[test]
    fn rotation_accepts_old_and_new_while_both_are_configured() {
        let old_token = tokens(&[OLD]).issue(&user("63"), None, Duration::from_secs(60)).unwrap();
        let new_token = tokens(&[NEW]).issue(&user("64"), None, Duration::from_secs(60)).unwrap();
        let both = tokens(&[NEW, OLD]);
        assert_eq!(both.verify(&old_token).unwrap().user, user("63"));
        assert_eq!(both.verify(&new_token).unwrap().user, user("64"));
        assert_eq!(tokens(&[NEW]).verify(&old_token), Err(TokenError::BadSignature), "old secret retired");
    }

    #[test]
    fn garbage_is_malformed_and_nothing_is_configured_means_no() {
        assert_eq!(tokens(&[NEW]).verify("not.a.token"), Err(TokenError::Malformed));
        assert_eq!(tokens(&[NEW]).verify(""), Err(TokenError::Malformed));
        assert_eq!(tokens(&[NEW]).verify(&"a".repeat(TOKEN_MAX_LEN + 1)), Err(TokenError::TooLong));
        assert_eq!(tokens(&[]).verify("x"), Err(TokenError::NotConfigured));
    }
}
