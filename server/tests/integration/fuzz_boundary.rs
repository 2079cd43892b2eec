//! Property-based tests of the server's own parsers of untrusted input: user
//! tokens, cookies, CSRF tokens, Origin headers, API keys, and configuration
//! values. None may panic on anything; each accepts only what it should.
//! (`tests/fuzz.rs` at the root covers the `herald` crate's parsers and the
//! wire framing.)

use axum::http::{HeaderMap, HeaderValue, header};
use proptest::prelude::*;
use server::auth::api_keys::ApiKeys;
use server::auth::csrf::VisitorKeys;
use server::auth::session::read_cookie;
use server::auth::tokens::Tokens;
use server::config::{Config, Origins, Secret, parse_duration};
use server::realtime::transport::origin_allowed;

const SECRET: &str = "fuzz-token-secret-fuzz-token-secret-01";

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(512);
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

/// Token-ish strings: three base64url-looking parts, or anything at all.
fn token_like() -> impl Strategy<Value = String> {
    prop_oneof!["[A-Za-z0-9_=-]{0,60}\\.[A-Za-z0-9_=-]{0,200}\\.[A-Za-z0-9_=-]{0,90}", any::<String>(), "\\PC{0,400}",]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn token_verification_never_panics_and_never_accepts_garbage(token in token_like()) {
        let tokens = Tokens::new(&[Secret::new(SECRET)], None);
        prop_assert!(tokens.verify(&token).is_err());
    }

    #[test]
    fn a_tampered_token_is_refused(user in "[a-z0-9]{1,20}", at in any::<prop::sample::Index>(), with in any::<char>()) {
        let tokens = Tokens::new(&[Secret::new(SECRET)], None);
        let user = herald::UserId::parse(&user).unwrap();
        let good = tokens.issue(&user, None, std::time::Duration::from_secs(600)).unwrap();
        prop_assert!(tokens.verify(&good).is_ok());
        let mut chars: Vec<char> = good.chars().collect();
        let i = at.index(chars.len());
        prop_assume!(chars[i] != with);
        chars[i] = with;
        let tampered: String = chars.into_iter().collect();
        // Either refused, or (base64 padding bits) decoding to the very same token.
        if let Ok(identity) = tokens.verify(&tampered) {
            prop_assert_eq!(identity.user, user);
        }
    }

    #[test]
    fn cookie_headers_never_panic(raw in prop::collection::vec(any::<u8>(), 0..300), name in "[a-z_]{1,12}") {
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_bytes(&raw) {
            headers.insert(header::COOKIE, value);
        }
        let _ = read_cookie(&headers, &name);
    }

    #[test]
    fn csrf_tokens_verify_only_for_their_visitor(visitor in "[a-f0-9]{16}", other in "[a-f0-9]{16}", junk in any::<String>()) {
        let keys = VisitorKeys::new(Some(&Secret::new("fuzz-csrf-secret-fuzz-csrf-secret-0001")));
        let token = keys.csrf_token(&visitor);
        prop_assert!(keys.verify_csrf(&visitor, &token));
        prop_assert!(visitor == other || !keys.verify_csrf(&other, &token));
        prop_assert!(junk == token || !keys.verify_csrf(&visitor, &junk));
    }

    #[test]
    fn origins_are_allowed_only_when_same_or_listed(
        origin in prop_oneof![any::<String>(), "(https?|ws|null)://[a-z]{1,10}\\.example(:[0-9]{1,5})?(/.{0,5})?"],
        host in "[a-z]{1,10}\\.example(:[0-9]{1,5})?",
    ) {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_str(&host).unwrap());
        if let Ok(value) = HeaderValue::from_str(&origin) {
            headers.insert(header::ORIGIN, value);
            let allowed = origin_allowed(&Origins::SameOrigin, &headers).is_ok();
            let same = origin.split_once("://").is_some_and(|(_, h)| h.eq_ignore_ascii_case(&host));
            prop_assert_eq!(allowed, same);
        }
    }

    #[test]
    fn api_keys_match_only_themselves(presented in any::<String>()) {
        let keys = ApiKeys::new(&[Secret::new("fuzz-api-key-0001"), Secret::new("fuzz-api-key-0002")]);
        let expected = match presented.as_str() {
            "fuzz-api-key-0001" => Some(0),
            "fuzz-api-key-0002" => Some(1),
            _ => None,
        };
        prop_assert_eq!(keys.find(&presented), expected);
    }

    #[test]
    fn durations_never_panic(raw in any::<String>()) {
        let _ = parse_duration(&raw);
    }

    #[test]
    fn any_value_for_any_key_is_accepted_or_refused_by_name(key in prop::sample::select(server::config::KEYS), value in any::<String>()) {
        let result = Config::from_lookup(|k| (k == key).then(|| value.clone()));
        if let Err(err) = result {
            prop_assert_eq!(err.key, key);
        }
    }
}
