//! Private rooms: the same rule on every path — the socket's `join` and
//! `send`, the room page, the server function behind it, the no-JavaScript
//! form — from the configured patterns, the token's `rooms` claim, the
//! room's settings made through the API, and the backend's answer.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::http::HeaderMap;
use mongodb::bson::doc;
use serde_json::{Value, json};
use server::config::Secret;

use crate::common::sio::SioClient;
use crate::common::{API_KEY, TOKEN_SECRET, TestApp, form_field, spawn_app_with, token, token_with_rooms};

fn auth(token: &str) -> Option<Value> {
    Some(json!({ "token": token }))
}

async fn connect_as(app: &TestApp, token: &str) -> SioClient {
    SioClient::try_connect(app.addr, auth(token), None).await.expect("the token is accepted")
}

async fn join(client: &mut SioClient, room: &str) -> Value {
    client.call("join", &json!({"room": room, "since": 0})).await
}

async fn send(client: &mut SioClient, room: &str, id: &str, body: &str) -> Value {
    client.call("send", &json!({"room": room, "client_id": id, "name": "X", "body": body})).await
}

fn code(reply: &Value) -> &str {
    reply["error"]["code"].as_str().unwrap_or_else(|| panic!("an error reply: {reply}"))
}

fn session(token: &str) -> String {
    format!("herald_session={token}")
}

/// Posts the no-JavaScript form to `room` as the visitor whose session is
/// `session` (if any), with a CSRF token from a page it may see (the lobby).
async fn post_form(app: &TestApp, session: Option<&str>, room: &str, body: &str) -> (u16, String) {
    let (_, lobby, cookies) = app.get_page("/", session).await;
    let vid = cookies.iter().find(|c| c.starts_with("herald_vid=")).expect("visitor cookie").clone();
    let cookie = match session {
        Some(session) => format!("{vid}; {session}"),
        None => vid,
    };
    let form = [
        ("room", room.to_owned()),
        ("name", "Mallory".to_owned()),
        ("body", body.to_owned()),
        ("csrf", form_field(&lobby, "csrf")),
        ("client_id", form_field(&lobby, "client_id")),
    ];
    let response = app.http.post(app.url("/add_message")).header("cookie", cookie).form(&form).send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// The room page's server function, called as any client could.
async fn load_room(app: &TestApp, session: Option<&str>, room: &str) -> (u16, String) {
    let mut request = app.http.post(app.url("/api/load_room")).form(&[("room", room)]);
    if let Some(session) = session {
        request = request.header("cookie", session);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn a_private_room_is_shut_by_every_path_to_users_its_rules_do_not_let_in() {
    let app = spawn_app_with(&[("HERALD_PRIVATE_ROOMS", "team-*")]).await;
    let alice = token_with_rooms("63", &["team-a"]);
    let bob = token(TOKEN_SECRET, "64", Some("Bob"), 600);
    let support = token_with_rooms("65", &["support-*"]);

    let mut member = connect_as(&app, &alice).await;
    assert!(join(&mut member, "team-a").await.get("ok").is_some());
    let stored = send(&mut member, "team-a", "priv-0001", "the plan is secret").await;
    assert_eq!(stored["ok"]["seq"], 1, "{stored}");

    // The socket: join and send refused, with a reason, and nothing stored.
    let mut outsider = connect_as(&app, &bob).await;
    let refused = join(&mut outsider, "team-a").await;
    assert_eq!(code(&refused), "forbidden");
    assert!(refused["error"]["reason"].as_str().unwrap().contains("does not grant"), "{refused}");
    assert_eq!(code(&send(&mut outsider, "team-a", "priv-0002", "let me in").await), "forbidden");
    let mut other_pattern = connect_as(&app, &support).await;
    assert_eq!(code(&join(&mut other_pattern, "team-a").await), "forbidden", "support-* does not grant team-a");
    let mut anonymous = SioClient::connect(app.addr).await;
    let refused = join(&mut anonymous, "team-a").await;
    assert_eq!(code(&refused), "forbidden");
    assert!(refused["error"]["reason"].as_str().unwrap().contains("sign in"), "{refused}");
    assert_eq!(code(&send(&mut anonymous, "team-a", "priv-0003", "hello?").await), "forbidden");
    // The rest of the server serves them as before.
    assert!(join(&mut outsider, "lobby").await.get("ok").is_some());
    assert!(send(&mut anonymous, "lobby", "pub-0001", "fine").await.get("ok").is_some());

    // The page and its server function: not found, and nothing of the room.
    for who in [None, Some(session(&bob)), Some(session(&support))] {
        let (status, html, _) = app.get_page("/r/team-a", who.as_deref()).await;
        assert_eq!(status, 404, "{who:?}");
        assert!(html.contains("Nothing here") && !html.contains("the plan is secret"), "{who:?}");
        let (status, body) = load_room(&app, who.as_deref(), "team-a").await;
        assert!(!body.contains("the plan is secret"), "{who:?}: {status} {body}");
        assert!(body.contains("NotFound"), "{who:?}: {status} {body}");
    }
    let (status, html, _) = app.get_page("/r/team-a", Some(&session(&alice))).await;
    assert_eq!(status, 200);
    assert!(html.contains("the plan is secret") && html.contains("data-testid=\"private-room\""));
    let (status, body) = load_room(&app, Some(&session(&alice)), "team-a").await;
    assert!(status == 200 && body.contains("the plan is secret"), "{status} {body}");

    // The form: as if the room did not exist, and nothing stored.
    for who in [None, Some(session(&bob))] {
        let (status, html) = post_form(&app, who.as_deref(), "team-a", "posted past the rule").await;
        assert_eq!(status, 404, "{who:?}: {html}");
        assert!(!html.contains("the plan is secret"));
    }
    assert_eq!(app.count_messages(doc! {"room": "team-a"}).await, 1, "only the member's message is stored");
    let (status, _) = post_form(&app, Some(&session(&alice)), "team-a", "from the form").await;
    assert_eq!(status, 303, "a member posts through the form");
    // The member hears its own first message live too, then the form's.
    assert_eq!(member.next_event("message").await["body"], "the plan is secret");
    assert_eq!(member.next_event("message").await["body"], "from the form");
}

#[tokio::test]
async fn claim_patterns_grant_what_they_match() {
    let app = spawn_app_with(&[("HERALD_PRIVATE_ROOMS", "team-*,staff")]).await;
    let everything = token_with_rooms("70", &["*"]);
    let teams = token_with_rooms("71", &["team-*"]);
    let exact = token_with_rooms("72", &["team-a"]);
    let cases = [
        (&everything, "staff", true),
        (&everything, "team-zz", true),
        (&teams, "team-q", true),
        (&teams, "staff", false),
        (&exact, "team-a", true),
        (&exact, "team-ab", false),
    ];
    for (token, room, allowed) in cases {
        let mut client = connect_as(&app, token).await;
        let reply = join(&mut client, room).await;
        assert_eq!(reply.get("ok").is_some(), allowed, "{room}: {reply}");
        client.disconnect();
    }
}

async fn settings(app: &TestApp, room: &str, key: &str, body: &str) -> (u16, Value) {
    let response = app
        .http
        .put(app.url(&format!("/api/rooms/{room}/settings")))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn settings_made_through_the_api_open_and_shut_rooms_and_take_out_who_may_no_longer_stay() {
    let app = spawn_app_with(&[("HERALD_PRIVATE_ROOMS", "closed-*")]).await;
    let alice = token(TOKEN_SECRET, "63", Some("Alice"), 600);
    let bob = token(TOKEN_SECRET, "64", Some("Bob"), 600);

    // Errors first: each with its reason, nothing changed.
    assert_eq!(settings(&app, "den", "wrong-key-0123456789", r#"{"private": true}"#).await.0, 401);
    let (status, body) = settings(&app, "den", API_KEY, r#"{"private": "yes"}"#).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("malformed")), "{body}");
    let (status, body) = settings(&app, "den", API_KEY, r#"{"private": true, "users": ["a b"]}"#).await;
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("invalid_user")), "{body}");
    let (status, body) = settings(&app, "den", API_KEY, r#"{"privat": true}"#).await;
    assert_eq!(status, 400, "unknown fields are refused: {body}");
    assert_eq!(settings(&app, "Den", API_KEY, r#"{"private": true}"#).await.0, 404);
    let (status, body) = settings(&app, "den", API_KEY, &json!({"users": vec!["u"; 1001]}).to_string()).await;
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("too_many_users")), "{body}");

    // Bob is in the public room when it turns private with only Alice listed.
    let mut bob_socket = connect_as(&app, &bob).await;
    assert!(join(&mut bob_socket, "den").await.get("ok").is_some());
    let (status, body) = settings(&app, "den", API_KEY, r#"{"private": true, "users": ["63"]}"#).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"room": "den", "private": true, "settings": {"private": true, "users": ["63"], "updated_ms": body["settings"]["updated_ms"]}})
    );
    let removed = bob_socket.next_event("removed").await;
    assert_eq!((removed["room"].as_str(), removed["code"].as_str()), (Some("den"), Some("forbidden")), "{removed}");
    let mut alice_socket = connect_as(&app, &alice).await;
    assert!(join(&mut alice_socket, "den").await.get("ok").is_some(), "a listed user enters");
    assert_eq!(code(&join(&mut bob_socket, "den").await), "forbidden");
    assert!(send(&mut alice_socket, "den", "den-0001", "just us").await.get("ok").is_some());
    assert_eq!(code(&send(&mut bob_socket, "den", "den-0002", "still here?").await), "forbidden");
    let read = app.http.get(app.url("/api/rooms/den/settings")).bearer_auth(API_KEY).send().await.unwrap();
    assert_eq!(read.json::<Value>().await.unwrap()["private"], true);

    // A room private by the patterns is opened by its settings, and closed
    // again when they are reset.
    assert_eq!(code(&join(&mut bob_socket, "closed-1").await), "forbidden");
    assert_eq!(settings(&app, "closed-1", API_KEY, r#"{"private": false}"#).await.0, 200);
    assert!(join(&mut bob_socket, "closed-1").await.get("ok").is_some());
    let (_, body) = settings(&app, "closed-1", API_KEY, "{}").await;
    assert_eq!(body["private"], true, "reset: as the patterns say: {body}");
    assert_eq!(bob_socket.next_event("removed").await["room"], "closed-1");
}

/// A backend answering room checks: user `63` allowed, `64` denied with a
/// reason, `65` never answered, `66` answered with an error. Counts the
/// checks it was asked, and checks each request's signature.
async fn backend(secret: &'static str) -> (String, Arc<AtomicUsize>) {
    let asked = Arc::new(AtomicUsize::new(0));
    let counter = asked.clone();
    let handler = move |headers: HeaderMap, body: axum::body::Bytes| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            let signature = headers.get("herald-signature").and_then(|v| v.to_str().ok()).unwrap_or_default();
            let signed = server::auth::signature::verify(&Secret::new(secret), signature, &body);
            assert!(signed.is_some(), "every room check is signed");
            let request: Value = serde_json::from_slice(&body).unwrap();
            match request["user"].as_str().unwrap() {
                "63" => (axum::http::StatusCode::OK, r#"{"allow": true}"#.to_owned()),
                "64" => (axum::http::StatusCode::OK, r#"{"allow": false, "reason": "not on the team"}"#.to_owned()),
                "65" => std::future::pending().await,
                _ => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "oops".to_owned()),
            }
        }
    };
    let router = axum::Router::new().route("/check", axum::routing::post(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/check", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (url, asked)
}

#[tokio::test]
async fn the_backend_lets_in_refuses_and_when_it_does_not_answer_refuses_too() {
    const SECRET: &str = "room-check-secret-room-check-secret";
    let (url, asked) = backend(SECRET).await;
    let app = spawn_app_with(&[
        ("HERALD_PRIVATE_ROOMS", "vip"),
        ("HERALD_ROOM_AUTH_URL", &url),
        ("HERALD_ROOM_AUTH_SECRET", SECRET),
        ("HERALD_ROOM_AUTH_TIMEOUT", "300ms"),
    ])
    .await;

    let allowed = token(TOKEN_SECRET, "63", None, 600);
    let mut first = connect_as(&app, &allowed).await;
    assert!(join(&mut first, "vip").await.get("ok").is_some());
    let mut second = connect_as(&app, &allowed).await;
    assert!(join(&mut second, "vip").await.get("ok").is_some());
    assert_eq!(asked.load(Ordering::SeqCst), 1, "the verdict is remembered");
    let (status, _, _) = app.get_page("/r/vip", Some(&session(&allowed))).await;
    assert_eq!(status, 200);

    let denied = token(TOKEN_SECRET, "64", None, 600);
    let mut client = connect_as(&app, &denied).await;
    let reply = join(&mut client, "vip").await;
    assert_eq!(code(&reply), "forbidden");
    assert!(reply["error"]["reason"].as_str().unwrap().contains("not on the team"), "{reply}");
    assert_eq!(app.get_page("/r/vip", Some(&session(&denied))).await.0, 404);

    for silent in ["65", "66"] {
        let token = token(TOKEN_SECRET, silent, None, 600);
        let mut client = connect_as(&app, &token).await;
        let reply = join(&mut client, "vip").await;
        assert_eq!(code(&reply), "access_unavailable", "{silent}: {reply}");
        assert_eq!(code(&send(&mut client, "vip", &format!("vip-{silent}-01"), "hi").await), "access_unavailable");
        assert_eq!(app.get_page("/r/vip", Some(&session(&token))).await.0, 503, "{silent}");
    }
    // Nobody without a token is even asked about.
    let before = asked.load(Ordering::SeqCst);
    let mut anonymous = SioClient::connect(app.addr).await;
    assert_eq!(code(&join(&mut anonymous, "vip").await), "forbidden");
    assert_eq!(asked.load(Ordering::SeqCst), before);
    assert_eq!(app.count_messages(doc! {"room": "vip"}).await, 0);

    let metrics = app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("herald_private_room_checks_total{outcome=\"backend_unavailable\"}"), "{metrics}");
}

/// The `data-room` names of a page's room list, each with whether it is
/// marked unread.
fn room_list(html: &str) -> Vec<(String, bool)> {
    let start = html.find("data-testid=\"room-list\"").expect("a room list");
    let end = start + html[start..].find("</nav>").unwrap();
    html[start..end]
        .split("<a ")
        .skip(1)
        .map(|link| {
            let room = link.split("data-room=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
            (room, link.contains("data-testid=\"unread\""))
        })
        .collect()
}

#[tokio::test]
async fn the_room_list_shows_what_a_visitor_may_enter_and_marks_what_they_have_not_read() {
    let app = spawn_app_with(&[("HERALD_PRIVATE_ROOMS", "team-*")]).await;
    let alice = token_with_rooms("63", &["team-a"]);
    let mut member = connect_as(&app, &alice).await;
    assert!(join(&mut member, "team-a").await.get("ok").is_some());
    let mut guest = SioClient::connect(app.addr).await;
    assert!(join(&mut guest, "busy").await.get("ok").is_some());
    // Presence is told after a join's answer: wait for the rooms to count.
    while member.next_event("presence").await["user_count"] != 1 {}
    while guest.next_event("presence").await["anonymous"] != 1 {}
    send(&mut guest, "dev", "dev-0001", "first").await;

    // A visitor reads dev: the page remembers how far.
    let (_, _, cookies) = app.get_page("/r/dev", None).await;
    let vid = cookies.iter().find(|c| c.starts_with("herald_vid=")).unwrap().clone();
    let seen = cookies.iter().find(|c| c.starts_with("herald_seen=")).expect("rooms read are remembered").clone();
    assert_eq!(seen, "herald_seen=dev.1");
    let cookie = format!("{vid}; {seen}");
    let (_, html, _) = app.get_page("/", Some(&cookie)).await;
    let listed = room_list(&html);
    assert_eq!(
        listed,
        [("lobby".to_owned(), false), ("busy".to_owned(), false), ("dev".to_owned(), false)],
        "the lobby, a room with people, a room read; never a private room: {listed:?}"
    );
    assert!(html.contains("title=\"1 here\""), "a room's people are counted");

    // A new message in dev: marked on the next page, until it is read.
    send(&mut guest, "dev", "dev-0002", "second").await;
    let (_, html, _) = app.get_page("/", Some(&cookie)).await;
    assert!(room_list(&html).contains(&("dev".to_owned(), true)), "{:?}", room_list(&html));
    let (_, _, cookies) = app.get_page("/r/dev", Some(&cookie)).await;
    let seen = cookies.iter().find(|c| c.starts_with("herald_seen=")).unwrap();
    assert_eq!(seen, "herald_seen=dev.2", "read up to what the page showed");

    // The member sees the private room, marked, and the lobby.
    let (_, html, _) = app.get_page("/", Some(&session(&alice))).await;
    let listed = room_list(&html);
    assert!(listed.contains(&("team-a".to_owned(), false)), "{listed:?}");
    assert!(html.contains("aria-label=\"private\""), "marked private");
}
