//! Server-rendered pages and the no-JavaScript form.

use crate::common::sio::SioClient;
use crate::common::{form_field, spawn_app};
use mongodb::bson::doc;
use serde_json::json;

async fn seed(app: &crate::common::TestApp, room: &str, bodies: impl IntoIterator<Item = String>) {
    let mut client = SioClient::connect(app.addr).await;
    for (i, body) in bodies.into_iter().enumerate() {
        let reply = client
            .call("send", &json!({"room": room, "client_id": format!("seed-{i:06}"), "name": "Seeder", "body": body}))
            .await;
        assert!(reply.get("ok").is_some(), "{reply}");
    }
}

#[tokio::test]
async fn a_room_page_lists_its_last_50_messages_oldest_first() {
    let app = spawn_app().await;
    seed(&app, "lobby", (1..=60).map(|i| format!("body-{i:03}"))).await;
    let (status, html, _) = app.get_page("/", None).await;
    assert_eq!(status, 200);
    assert!(!html.contains("body-010"), "the 10th message is outside the window");
    let positions: Vec<usize> = (11..=60)
        .map(|i| html.find(&format!("body-{i:03}")).unwrap_or_else(|| panic!("body-{i:03} missing")))
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "oldest first");
    assert_eq!(html.matches("class=\"message\"").count(), 50);
}

#[tokio::test]
async fn rooms_have_their_own_pages_and_bad_names_are_404() {
    let app = spawn_app().await;
    seed(&app, "team-a", ["only in team-a".to_owned()]).await;
    let (status, html, _) = app.get_page("/r/team-a", None).await;
    assert_eq!(status, 200);
    assert!(html.contains("only in team-a"));
    let (_, lobby, _) = app.get_page("/", None).await;
    assert!(!lobby.contains("only in team-a"));

    let long = format!("/r/{}", "a".repeat(65));
    for path in ["/r/Team", "/r/a%20b", long.as_str(), "/no/such/page"] {
        let (status, html, _) = app.get_page(path, None).await;
        assert_eq!(status, 404, "{path}");
        assert!(html.contains("Nothing here"), "{path} renders a page");
    }
}

#[tokio::test]
async fn markup_in_messages_is_escaped() {
    let app = spawn_app().await;
    let evil = "<img src=x onerror=alert(1)>";
    let mut client = SioClient::connect(app.addr).await;
    client.call("send", &json!({"room": "lobby", "client_id": "evil-0001", "name": evil, "body": evil})).await;
    let (_, html, _) = app.get_page("/", None).await;
    assert!(!html.contains("<img src=x"), "raw markup must not reach the page");
    assert_eq!(html.matches("&lt;img src=x onerror=alert(1)&gt;").count(), 2, "name and body shown as text");
}

/// Loads a page as a browser would: returns the cookie header and the form's
/// CSRF token.
async fn visit(app: &crate::common::TestApp, path: &str) -> (String, String, String) {
    let (_, html, cookies) = app.get_page(path, None).await;
    let cookie = cookies.iter().find(|c| c.starts_with("herald_vid=")).expect("visitor cookie issued").clone();
    (cookie, form_field(&html, "csrf"), form_field(&html, "client_id"))
}

#[tokio::test]
async fn the_form_stores_redirects_and_reaches_live_clients() {
    let app = spawn_app().await;
    let mut live = SioClient::connect(app.addr).await;
    live.call("join", &json!({"room": "porch", "since": 0})).await;
    let (cookie, csrf, client_id) = visit(&app, "/r/porch").await;

    let form =
        [("room", "porch"), ("name", "Grace"), ("body", "from a form"), ("csrf", &csrf), ("client_id", &client_id)];
    let response = app.http.post(app.url("/add_message")).header("cookie", &cookie).form(&form).send().await.unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/r/porch#m-1");
    let name_cookie =
        response.headers().get_all("set-cookie").iter().any(|v| v.to_str().unwrap().starts_with("herald_name=Grace"));
    assert!(name_cookie, "the name is remembered");

    let message = live.next_event("message").await;
    assert_eq!(message["body"], "from a form");
    assert_eq!(message["name"], "Grace");
    let (_, html, _) = app.get_page("/r/porch", Some(&cookie)).await;
    assert!(html.contains("from a form"));

    // Submitting the same rendered form twice stores it once.
    let again = app.http.post(app.url("/add_message")).header("cookie", &cookie).form(&form).send().await.unwrap();
    assert_eq!(again.status(), 303);
    assert_eq!(app.count_messages(doc! {"room": "porch"}).await, 1);
}

#[tokio::test]
async fn invalid_form_posts_show_the_error_and_store_nothing() {
    let app = spawn_app().await;
    let (cookie, csrf, _) = visit(&app, "/").await;
    let post = |fields: Vec<(&'static str, String)>, cookie: String| {
        let request = app.http.post(app.url("/add_message")).header("cookie", cookie).form(&fields);
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    let base = |body: &str, csrf: &str| {
        vec![
            ("room", "lobby".to_owned()),
            ("name", "Ada".to_owned()),
            ("body", body.to_owned()),
            ("csrf", csrf.to_owned()),
        ]
    };

    let (status, html) = post(base("   ", &csrf), cookie.clone()).await;
    assert_eq!(status, 422);
    assert!(html.contains("Message is empty"), "error shown");

    let (status, html) = post(base(&"y".repeat(2001), &csrf), cookie.clone()).await;
    assert_eq!(status, 422);
    assert!(html.contains("longer than 2000"));
    assert!(html.contains(&"y".repeat(2001)), "the text is kept for the visitor");

    let (status, _) = post(base("hi", "forged"), cookie.clone()).await;
    assert_eq!(status, 403);
    let (status, _) = post(base("hi", &csrf), "herald_vid=00000000000000000000000000000000".into()).await;
    assert_eq!(status, 403, "a token is only valid with its own visitor cookie");
    let (status, _) = post(base("hi", ""), String::new()).await;
    assert_eq!(status, 403);

    assert_eq!(app.count_all().await, 0);
}

#[tokio::test]
async fn health_and_readiness() {
    let app = spawn_app().await;
    let healthz = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(healthz.status(), 200);
    let readyz = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(readyz.status(), 200);
}

/// Every Herald works out its page routes as it starts (another node in the
/// same process, every test of this binary), and a page must render
/// meanwhile: working them out switches off Leptos's resource loading for the
/// whole process, and a page whose data was asked for then waited for it
/// forever (its request timed out with 408).
#[tokio::test]
async fn pages_render_while_another_herald_works_out_its_routes() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    let app = spawn_app().await;
    let rendering = Arc::new(AtomicBool::new(true));
    // Another thread, as another test's (or node's) start would be.
    let starter = {
        let rendering = rendering.clone();
        std::thread::spawn(move || {
            let mut times = 0u32;
            while rendering.load(Ordering::Acquire) {
                assert!(!server::startup::page_routes().is_empty());
                times += 1;
            }
            times
        })
    };
    for _ in 0..50 {
        let page = tokio::time::timeout(Duration::from_secs(10), app.get_page("/r/starting", None)).await;
        let (status, html, _) = page.expect("the page is rendered while routes are worked out");
        assert_eq!(status, 200, "{html}");
    }
    rendering.store(false, Ordering::Release);
    let times = starter.join().expect("the routes were worked out");
    assert!(times > 50, "routes were worked out throughout ({times} times)");
}
