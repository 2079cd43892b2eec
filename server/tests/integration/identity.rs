//! Who a client is: tokens in the Socket.IO handshake, browser sessions.

use crate::common::sio::SioClient;
use crate::common::{TOKEN_SECRET, spawn_app, spawn_app_with, token};
use mongodb::bson::doc;
use serde_json::{Value, json};

fn auth(token: &str) -> Option<Value> {
    Some(json!({ "token": token }))
}

fn refusal(err: Value) -> String {
    err["message"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_valid_token_connects_and_chats_under_its_name() {
    let app = spawn_app().await;
    let alice = token(TOKEN_SECRET, "63", Some("Alice"), 600);
    let mut client = SioClient::try_connect(app.addr, auth(&alice), None).await.expect("accepted");
    let reply = client
        .call("send", &json!({"room": "lobby", "client_id": "tok-00000001", "name": "Mallory", "body": "hi"}))
        .await;
    assert_eq!(reply["ok"]["name"], "Alice", "the token's name wins over the payload's: {reply}");
    assert_eq!(app.count_messages(doc! {"name": "Alice"}).await, 1);
}

#[tokio::test]
async fn bad_tokens_are_refused_with_a_reason() {
    let app = spawn_app().await;
    let cases = [
        (token(TOKEN_SECRET, "63", None, -120), "expired"),
        (token("another-secret-another-secret-another-1", "63", None, 600), "signature"),
        ("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiI2MyIsImV4cCI6OTk5OTk5OTk5OX0.".to_owned(), "HS256"),
        ("not-a-token".to_owned(), "malformed"),
    ];
    for (bad, reason) in cases {
        let err = SioClient::try_connect(app.addr, auth(&bad), None).await.err().expect("refused");
        assert!(refusal(err.clone()).contains(reason), "{bad}: {err}");
    }
    // The server still serves everyone else.
    SioClient::connect(app.addr).await;
}

#[tokio::test]
async fn without_anonymous_access_a_token_is_required() {
    let app = spawn_app_with(&[("HERALD_ALLOW_ANONYMOUS", "false")]).await;
    let err = SioClient::try_connect(app.addr, None, None).await.err().expect("refused");
    assert!(refusal(err).contains("authentication required"));
    let ok = token(TOKEN_SECRET, "63", None, 600);
    assert!(SioClient::try_connect(app.addr, auth(&ok), None).await.is_ok());
}

#[tokio::test]
async fn rotated_secrets_are_both_accepted_while_configured() {
    let old = "old-secret-old-secret-old-secret-0001";
    let new = "new-secret-new-secret-new-secret-0002";
    let both = format!("{new},{old}");
    let app = spawn_app_with(&[("HERALD_TOKEN_SECRETS", &both)]).await;
    for secret in [old, new] {
        let t = token(secret, "63", None, 600);
        assert!(SioClient::try_connect(app.addr, auth(&t), None).await.is_ok(), "{secret}");
    }
    let retired = spawn_app_with(&[("HERALD_TOKEN_SECRETS", new)]).await;
    let t = token(old, "63", None, 600);
    assert!(SioClient::try_connect(retired.addr, auth(&t), None).await.is_err());
}

#[tokio::test]
async fn login_sets_a_session_cookie_that_pages_and_sockets_honour() {
    let app = spawn_app().await;
    let alice = token(TOKEN_SECRET, "63", Some("Alice"), 600);
    let response = app.http.get(app.url(&format!("/login?token={alice}&next=/r/den"))).send().await.unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/r/den");
    let set_cookie = response.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(set_cookie.starts_with("herald_session="), "{set_cookie}");
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Lax"), "{set_cookie}");
    let max_age: i64 = set_cookie
        .split(';')
        .find_map(|part| part.trim().strip_prefix("Max-Age="))
        .expect("the session ends with the token")
        .parse()
        .unwrap();
    assert!((590..=600).contains(&max_age), "{set_cookie}");
    let session = set_cookie.split(';').next().unwrap().to_owned();

    let (status, html, _) = app.get_page("/r/den", Some(&session)).await;
    assert!(html.contains("value=\"Alice\""), "the page knows the user: {status} {}", &html[..html.len().min(2_000)]);

    let mut client = SioClient::try_connect(app.addr, None, Some(&session)).await.expect("cookie accepted");
    let reply =
        client.call("send", &json!({"room": "den", "client_id": "cookie-0001", "name": "x", "body": "hello"})).await;
    assert_eq!(reply["ok"]["name"], "Alice");

    let refused = app.http.get(app.url("/login?token=forged")).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    let cookies: Vec<_> = refused.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap()).collect();
    assert!(!cookies.iter().any(|c| c.starts_with("herald_session")), "{cookies:?}");
    let offsite = app.http.get(app.url(&format!("/login?token={alice}&next=//evil.example"))).send().await.unwrap();
    assert_eq!(offsite.headers()["location"], "/", "never redirect off-site");
}

/// Every cookie a response sets, each as its `Set-Cookie` value.
fn set_cookies(response: &reqwest::Response) -> Vec<String> {
    response.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()).collect()
}

fn is_secure(cookie: &str) -> bool {
    cookie.split(';').any(|attribute| attribute.trim().eq_ignore_ascii_case("secure"))
}

#[tokio::test]
async fn cookies_are_secure_when_a_trusted_proxy_says_the_browser_used_https() {
    let behind_tls = spawn_app_with(&[("HERALD_TRUSTED_PROXIES", "127.0.0.1")]).await;
    let alice = token(TOKEN_SECRET, "63", Some("Alice"), 600);
    let login = format!("/login?token={alice}");
    let get = |app: &crate::common::TestApp, path: &str, proto: Option<&str>| {
        let mut request = app.http.get(app.url(path));
        if let Some(proto) = proto {
            request = request.header("x-forwarded-proto", proto);
        }
        request.send()
    };

    for path in ["/", login.as_str()] {
        let over_tls = set_cookies(&get(&behind_tls, path, Some("https")).await.unwrap());
        assert!(!over_tls.is_empty(), "{path} sets a cookie");
        assert!(over_tls.iter().all(|c| is_secure(c)), "{path} over HTTPS: {over_tls:?}");

        let plain = set_cookies(&get(&behind_tls, path, Some("http")).await.unwrap());
        assert!(!plain.is_empty() && !plain.iter().any(|c| is_secure(c)), "{path} over HTTP: {plain:?}");
    }

    // Without trusted proxies, anyone could send the header: it is ignored.
    let direct = spawn_app().await;
    let cookies = set_cookies(&get(&direct, &login, Some("https")).await.unwrap());
    assert!(!cookies.is_empty() && !cookies.iter().any(|c| is_secure(c)), "{cookies:?}");

    // HERALD_COOKIE_SECURE marks them whatever the request says.
    let forced = spawn_app_with(&[("HERALD_COOKIE_SECURE", "true")]).await;
    let cookies = set_cookies(&get(&forced, &login, None).await.unwrap());
    assert!(!cookies.is_empty() && cookies.iter().all(|c| is_secure(c)), "{cookies:?}");
}

#[tokio::test]
async fn a_stale_session_cookie_connects_as_anonymous_not_locked_out() {
    let app = spawn_app().await;
    let stale = format!("herald_session={}", token(TOKEN_SECRET, "63", Some("Alice"), -120));
    let mut client = SioClient::try_connect(app.addr, None, Some(&stale)).await.expect("connects anonymously");
    let reply =
        client.call("send", &json!({"room": "lobby", "client_id": "stale-0001", "name": "Guest", "body": "hi"})).await;
    assert_eq!(reply["ok"]["name"], "Guest", "not Alice any more");

    // Where anonymous access is off, the stale cookie's reason is given.
    let strict = spawn_app_with(&[("HERALD_ALLOW_ANONYMOUS", "false")]).await;
    let err = SioClient::try_connect(strict.addr, None, Some(&stale)).await.err().expect("refused");
    assert!(refusal(err).contains("expired"));
}
