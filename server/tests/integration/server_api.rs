//! The server API a backend runs an app on: history with paging, active
//! rooms, removing a message, disconnecting a user, and its OpenAPI
//! description; each route with its errors.

use serde_json::{Value, json};

use crate::common::sio::SioClient;
use crate::common::{API_KEY, TOKEN_SECRET, TestApp, spawn_app, token};

async fn get(app: &TestApp, path: &str, key: Option<&str>) -> (u16, Value) {
    let mut request = app.http.get(app.url(path));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
}

async fn call(app: &TestApp, method: reqwest::Method, path: &str, body: Option<&str>) -> (u16, Value) {
    let mut request = app.http.request(method, app.url(path)).bearer_auth(API_KEY);
    if let Some(body) = body {
        request = request.header("content-type", "application/json").body(body.to_owned());
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_else(|| panic!("an error body: {body}"))
}

fn seqs(page: &Value) -> Vec<u64> {
    page["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()).collect()
}

async fn seed(app: &TestApp, room: &str, count: u64) {
    let mut client = SioClient::connect(app.addr).await;
    for i in 1..=count {
        let reply = client
            .call(
                "send",
                &json!({"room": room, "client_id": format!("seed-{i:06}"), "name": "Seeder", "body": format!("m{i}")}),
            )
            .await;
        assert!(reply.get("ok").is_some(), "{reply}");
    }
    client.disconnect();
}

#[tokio::test]
async fn history_pages_forwards_and_backwards_with_the_senders_id() {
    let app = spawn_app().await;
    seed(&app, "hist", 120).await;
    let alice = token(TOKEN_SECRET, "63", Some("Alice"), 600);
    let mut signed_in = SioClient::try_connect(app.addr, Some(json!({"token": alice})), None).await.unwrap();
    signed_in.call("send", &json!({"room": "hist", "client_id": "alice-0001", "name": "x", "body": "signed"})).await;

    let (status, newest) = get(&app, "/api/rooms/hist/messages", Some(API_KEY)).await;
    assert_eq!(status, 200, "{newest}");
    assert_eq!(seqs(&newest), (72..=121).collect::<Vec<_>>(), "the newest 50, oldest first");
    assert_eq!((newest["head"].as_u64(), newest["more"].as_bool()), (Some(121), Some(true)));
    let last = newest["messages"].as_array().unwrap().last().unwrap();
    assert_eq!((last["user"].as_str(), last["verified"].as_bool()), (Some("63"), Some(true)), "{last}");
    assert!(newest["messages"][0].get("user").is_none(), "an anonymous sender has no id");

    let (_, older) = get(&app, "/api/rooms/hist/messages?before=72&limit=50", Some(API_KEY)).await;
    assert_eq!(seqs(&older), (22..=71).collect::<Vec<_>>());
    let (_, oldest) = get(&app, "/api/rooms/hist/messages?before=22&limit=50", Some(API_KEY)).await;
    assert_eq!((seqs(&oldest), oldest["more"].as_bool()), ((1..=21).collect(), Some(false)));
    let (_, after) = get(&app, "/api/rooms/hist/messages?since=100", Some(API_KEY)).await;
    assert_eq!((seqs(&after), after["more"].as_bool()), ((101..=121).collect(), Some(false)));
    let (_, forward) = get(&app, "/api/rooms/hist/messages?since=0&limit=10", Some(API_KEY)).await;
    assert_eq!((seqs(&forward), forward["more"].as_bool()), ((1..=10).collect(), Some(true)));
    let (_, between) = get(&app, "/api/rooms/hist/messages?since=10&before=15", Some(API_KEY)).await;
    assert_eq!(seqs(&between), [11, 12, 13, 14]);
    let (_, empty) = get(&app, "/api/rooms/nobody-here/messages", Some(API_KEY)).await;
    assert_eq!((seqs(&empty), empty["head"].as_u64()), (vec![], Some(0)));

    for bad in ["limit=0", "limit=501", "since=abc", "before=-1", "sort=asc"] {
        let (status, body) = get(&app, &format!("/api/rooms/hist/messages?{bad}"), Some(API_KEY)).await;
        assert_eq!((status, code(&body)), (400, "invalid_query"), "{bad}: {body}");
    }
    assert_eq!(get(&app, "/api/rooms/Hist/messages", Some(API_KEY)).await.0, 404);
    assert_eq!(get(&app, "/api/rooms/hist/messages", None).await.0, 401);
    assert_eq!(get(&app, "/api/rooms/hist/messages", Some("wrong-key-0123456789")).await.0, 401);
}

#[tokio::test]
async fn a_removed_message_leaves_live_clients_pages_catch_ups_and_history() {
    let app = spawn_app().await;
    seed(&app, "mod", 3).await;
    let mut watcher = SioClient::connect(app.addr).await;
    assert!(watcher.call("join", &json!({"room": "mod", "since": 0})).await.get("ok").is_some());
    let (status, html, _) = app.get_page("/r/mod", None).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains(">m2<"), "rendered before the removal");

    let (status, body) = call(&app, reqwest::Method::DELETE, "/api/rooms/mod/messages/2", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"room": "mod", "seq": 2, "removed": true}));
    assert_eq!(watcher.next_event("message_removed").await, json!({"room": "mod", "seq": 2}));

    let (status, html, _) = app.get_page("/r/mod", None).await;
    assert_eq!(status, 200, "{html}");
    assert!(!html.contains(">m2<") && html.contains(">m1<") && html.contains(">m3<"), "the page drops it: {html}");
    let mut newcomer = SioClient::connect(app.addr).await;
    let joined = newcomer.call("join", &json!({"room": "mod", "since": 0})).await;
    let caught: Vec<u64> =
        joined["ok"]["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(caught, [1, 3], "the window forgot it: {joined}");
    let (_, page) = get(&app, "/api/rooms/mod/messages", Some(API_KEY)).await;
    assert_eq!(seqs(&page), [1, 3]);
    assert_eq!(app.count_messages(mongodb::bson::doc! {"room": "mod"}).await, 2, "deleted from MongoDB");

    let (status, body) = call(&app, reqwest::Method::DELETE, "/api/rooms/mod/messages/2", None).await;
    assert_eq!((status, code(&body)), (404, "no_message"), "removed once");
    for path in ["/api/rooms/mod/messages/zero", "/api/rooms/mod/messages/0", "/api/rooms/Mod/messages/1"] {
        assert_eq!(call(&app, reqwest::Method::DELETE, path, None).await.0, 404, "{path}");
    }
    let unauthorized = app.http.delete(app.url("/api/rooms/mod/messages/1")).send().await.unwrap();
    assert_eq!(unauthorized.status(), 401);
    assert_eq!(app.count_messages(mongodb::bson::doc! {"room": "mod"}).await, 2);
}

#[tokio::test]
async fn disconnecting_a_user_closes_every_connection_of_theirs_with_the_reason() {
    let app = spawn_app().await;
    let alice = token(TOKEN_SECRET, "63", Some("Alice"), 600);
    let bob = token(TOKEN_SECRET, "64", Some("Bob"), 600);
    let mut tab_one = SioClient::try_connect(app.addr, Some(json!({"token": alice})), None).await.unwrap();
    let mut tab_two = SioClient::try_connect(app.addr, Some(json!({"token": alice})), None).await.unwrap();
    let mut other = SioClient::try_connect(app.addr, Some(json!({"token": bob})), None).await.unwrap();

    let (status, body) = call(&app, reqwest::Method::POST, "/api/users/63/disconnect", Some(&"x".repeat(300))).await;
    assert_eq!((status, code(&body)), (400, "malformed"));
    let long = json!({"reason": "r".repeat(201)}).to_string();
    let (status, body) = call(&app, reqwest::Method::POST, "/api/users/63/disconnect", Some(&long)).await;
    assert_eq!((status, code(&body)), (422, "invalid_reason"));
    assert_eq!(call(&app, reqwest::Method::POST, "/api/users/a%20b/disconnect", None).await.0, 404);
    assert_eq!(app.http.post(app.url("/api/users/63/disconnect")).send().await.unwrap().status(), 401);

    let reason = json!({"reason": "banned for spam"}).to_string();
    let (status, body) = call(&app, reqwest::Method::POST, "/api/users/63/disconnect", Some(&reason)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"user": "63", "connections": 2}));
    for tab in [&mut tab_one, &mut tab_two] {
        let closing = tab.next_event("closing").await;
        assert_eq!(closing, json!({"reason": "disconnected", "detail": "banned for spam"}));
        tab.closed().await;
    }
    let still = other.call("join", &json!({"room": "lobby", "since": 0})).await;
    assert!(still.get("ok").is_some(), "another user stays: {still}");
    let (_, body) = call(&app, reqwest::Method::POST, "/api/users/63/disconnect", None).await;
    assert_eq!(body["connections"], 0, "nobody left to disconnect: {body}");
}

#[tokio::test]
async fn active_rooms_are_listed_with_their_counts() {
    let app = spawn_app().await;
    let (_, body) = get(&app, "/api/rooms", Some(API_KEY)).await;
    assert_eq!(body, json!({"rooms": []}));
    let mut guests = Vec::new();
    for _ in 0..2 {
        let mut guest = SioClient::connect(app.addr).await;
        guest.call("join", &json!({"room": "alpha", "since": 0})).await;
        guests.push(guest);
    }
    let alice = token(TOKEN_SECRET, "63", Some("Alice"), 600);
    let mut user = SioClient::try_connect(app.addr, Some(json!({"token": alice})), None).await.unwrap();
    user.call("join", &json!({"room": "beta", "since": 0})).await;
    // Presence is told after the join's answer: wait until it is.
    loop {
        let snapshot = guests[1].next_event("presence").await;
        if snapshot["anonymous"] == 2 {
            break;
        }
    }
    while user.next_event("presence").await["user_count"] != 1 {}

    let (status, body) = get(&app, "/api/rooms", Some(API_KEY)).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"rooms": [
            {"room": "alpha", "user_count": 0, "anonymous": 2, "private": false},
            {"room": "beta", "user_count": 1, "anonymous": 0, "private": false},
        ]})
    );
    assert_eq!(get(&app, "/api/rooms", None).await.0, 401);
}

#[tokio::test]
async fn the_openapi_document_is_served_and_describes_every_operation() {
    let app = spawn_app().await;
    let (status, doc) = get(&app, "/api/openapi.json", None).await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().expect("paths");
    for (path, operations) in paths {
        for (method, operation) in operations.as_object().unwrap() {
            assert!(operation["responses"]["200"].is_object(), "{method} {path}");
            // Every described operation is really served: without a key it
            // says so (or answers, for the document itself), never 404/405.
            let url = app.url(&path.replace("{room}", "lobby").replace("{user}", "63").replace("{seq}", "1"));
            let response = app.http.request(method.to_uppercase().parse().unwrap(), url).send().await.unwrap();
            let expected = if path == "/api/openapi.json" { 200 } else { 401 };
            assert_eq!(response.status().as_u16(), expected, "{method} {path}");
        }
    }
}
