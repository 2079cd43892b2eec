//! The publish API, delivery to users/rooms/everyone, and notification
//! recovery.

use crate::common::sio::SioClient;
use crate::common::{API_KEY, TOKEN_SECRET, TestApp, spawn_app, token};
use mongodb::bson::{Document, doc};
use serde_json::{Value, json};

async fn user_client(app: &TestApp, user: &str) -> SioClient {
    let t = token(TOKEN_SECRET, user, Some(&format!("User {user}")), 600);
    SioClient::try_connect(app.addr, Some(json!({"token": t})), None).await.expect("accepted")
}

async fn publish_json(app: &TestApp, key: Option<&str>, body: &Value) -> (u16, Value) {
    let mut request = app.http.post(app.url("/api/publish")).json(body);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
}

async fn notifications(app: &TestApp) -> u64 {
    app.db.collection::<Document>("notifications").count_documents(doc! {}).await.unwrap()
}

#[tokio::test]
async fn publishing_needs_a_valid_key() {
    let app = spawn_app().await;
    let body = json!({"broadcast": true, "message": "hi"});
    for key in [None, Some("wrong-key-wrong-key"), Some("")] {
        let (status, reply) = publish_json(&app, key, &body).await;
        assert_eq!(status, 401, "{key:?}");
        assert_eq!(reply["error"]["code"], "unauthorized");
    }
    assert_eq!(notifications(&app).await, 0, "nothing stored");
}

#[tokio::test]
async fn the_classic_form_broadcasts_and_addresses_one_user() {
    let app = spawn_app().await;
    let mut anonymous = SioClient::connect(app.addr).await;
    let mut alice = user_client(&app, "63").await;
    let mut bob = user_client(&app, "64").await;

    let form = |body: &'static str| {
        app.http
            .post(app.url("/api/publish"))
            .bearer_auth(API_KEY)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let response = form("message=Ping").await.unwrap();
    assert_eq!(response.status(), 200);
    let reply: Value = response.json().await.unwrap();
    assert_eq!(reply["seq"], 1);
    assert_eq!(reply["online"], 3);
    for client in [&mut anonymous, &mut alice, &mut bob] {
        let n = client.next_event("notification").await;
        assert_eq!(n["data"], "Ping");
        assert_eq!(n["stream"], "broadcast");
    }

    let reply: Value = form("message=Hello&id=63").await.unwrap().json().await.unwrap();
    assert_eq!(reply["online"], 1);
    let n = alice.next_event("notification").await;
    assert_eq!((n["data"].as_str(), n["stream"].as_str()), (Some("Hello"), Some("inbox")));

    // Neither Bob nor the anonymous client got Alice's: the next thing they
    // see is the following broadcast.
    form("message=marker").await.unwrap();
    for client in [&mut anonymous, &mut bob] {
        assert_eq!(client.next_event("notification").await["data"], "marker");
    }
}

#[tokio::test]
async fn bad_requests_are_refused_with_a_reason_and_store_nothing() {
    let app = spawn_app().await;
    let cases = [
        (json!({"message": "no target"}), 422),
        (json!({"broadcast": true, "user": "63", "message": "two targets"}), 422),
        (json!({"broadcast": false, "message": "x"}), 422),
        (json!({"user": "not valid", "message": "x"}), 422),
        (json!({"users": [], "message": "x"}), 422),
        (json!({"room": "Bad Room", "message": "x"}), 422),
        (json!({"broadcast": true}), 400),
        (json!({"broadcast": true, "message": "x", "data": 1}), 400),
        (json!({"broadcast": true, "message": "x", "event": "bad event"}), 400),
        (json!({"broadcast": true, "message": "x", "surprise": 1}), 400),
        (json!({"broadcast": true, "data": "x".repeat(20_000)}), 413),
    ];
    for (body, status) in cases {
        let (got, reply) = publish_json(&app, Some(API_KEY), &body).await;
        assert_eq!(got, status, "{body}: {reply}");
        assert!(reply["error"]["reason"].as_str().is_some_and(|r| !r.is_empty()), "{reply}");
    }
    let raw = |content_type: &'static str, body: Vec<u8>| {
        app.http
            .post(app.url("/api/publish"))
            .bearer_auth(API_KEY)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    assert_eq!(raw("application/json", b"{not json".to_vec()).await.unwrap().status(), 400);
    assert_eq!(raw("text/plain", b"hello".to_vec()).await.unwrap().status(), 415);
    let valid = br#"{"broadcast": true, "message": "x"}"#.to_vec();
    assert_eq!(raw("application/jsonx", valid.clone()).await.unwrap().status(), 415, "the exact media type");
    assert_eq!(raw("application/x-www-form-urlencodedx", b"message=x".to_vec()).await.unwrap().status(), 415);
    let form = "application/x-www-form-urlencoded";
    assert_eq!(raw(form, b"message=".to_vec()).await.unwrap().status(), 400, "an empty message");
    assert_eq!(raw(form, b"message=x&surprise=1".to_vec()).await.unwrap().status(), 400, "an unknown field");
    assert_eq!(raw("application/json", vec![b' '; 70_000]).await.unwrap().status(), 413);
    assert_eq!(notifications(&app).await, 0);
    assert_eq!(raw("application/json; charset=utf-8", valid).await.unwrap().status(), 200, "parameters are fine");
}

#[tokio::test]
async fn users_fan_out_reaches_only_the_named_users() {
    let app = spawn_app().await;
    let mut alice = user_client(&app, "63").await;
    let mut alice_phone = user_client(&app, "63").await;
    let mut bob = user_client(&app, "64").await;
    let mut carol = user_client(&app, "65").await;

    let (status, reply) = publish_json(
        &app,
        Some(API_KEY),
        &json!({"users": ["63", "64"], "event": "order.shipped", "data": {"order": 7}}),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["online"], 3, "two of Alice's connections and Bob's");
    assert_eq!(reply["deliveries"].as_array().unwrap().len(), 2);
    for client in [&mut alice, &mut alice_phone, &mut bob] {
        let n = client.next_event("notification").await;
        assert_eq!(n["event"], "order.shipped");
        assert_eq!(n["data"], json!({"order": 7}));
    }
    publish_json(&app, Some(API_KEY), &json!({"broadcast": true, "message": "marker"})).await;
    assert_eq!(carol.next_event("notification").await["data"], "marker", "Carol got nothing before the marker");
    assert_eq!(notifications(&app).await, 3);
}

#[tokio::test]
async fn a_room_publish_is_a_system_message_in_the_room() {
    let app = spawn_app().await;
    let mut member = SioClient::connect(app.addr).await;
    member.call("join", &json!({"room": "ops"})).await;
    member.call("send", &json!({"room": "ops", "client_id": "human-0001", "name": "Ada", "body": "hi"})).await;
    member.next_event("message").await;
    let (status, reply) =
        publish_json(&app, Some(API_KEY), &json!({"room": "ops", "message": "Deploy finished"})).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["seq"], 2, "the room's next sequence number");
    let message = member.next_event("message").await;
    assert_eq!((message["body"].as_str(), message["system"].as_bool()), (Some("Deploy finished"), Some(true)));
    let (_, html, _) = app.get_page("/r/ops", None).await;
    assert!(html.contains("Deploy finished"));
}

#[tokio::test]
async fn notifications_published_while_away_arrive_on_sync_exactly_once() {
    let app = spawn_app().await;
    let mut alice = user_client(&app, "63").await;
    publish_json(&app, Some(API_KEY), &json!({"user": "63", "message": "one"})).await;
    publish_json(&app, Some(API_KEY), &json!({"broadcast": true, "message": "all-one"})).await;
    let first = alice.next_event("notification").await;
    let first_broadcast = alice.next_event("notification").await;
    alice.disconnect();

    for text in ["two", "three"] {
        publish_json(&app, Some(API_KEY), &json!({"user": "63", "message": text})).await;
    }
    publish_json(&app, Some(API_KEY), &json!({"broadcast": true, "message": "all-two"})).await;

    let mut back = user_client(&app, "63").await;
    let synced = back.call("sync", &json!({"inbox": first["seq"], "broadcast": first_broadcast["seq"]})).await;
    let synced = &synced["ok"];
    let inbox: Vec<&str> = synced["inbox"].as_array().unwrap().iter().map(|n| n["data"].as_str().unwrap()).collect();
    assert_eq!(inbox, ["two", "three"]);
    let broadcast: Vec<&str> =
        synced["broadcast"].as_array().unwrap().iter().map(|n| n["data"].as_str().unwrap()).collect();
    assert_eq!(broadcast, ["all-two"]);
    assert_eq!(synced["unread"], 3);

    // An anonymous client has no inbox, but gets broadcasts.
    let mut anonymous = SioClient::connect(app.addr).await;
    let synced = anonymous.call("sync", &json!({})).await;
    assert_eq!(synced["ok"]["inbox"], json!([]));
    assert_eq!(synced["ok"]["broadcast"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn marking_read_is_stored_and_reaches_the_users_other_connections() {
    let app = spawn_app().await;
    let mut tab = user_client(&app, "63").await;
    let mut other_tab = user_client(&app, "63").await;
    let mut bob = user_client(&app, "64").await;
    for text in ["a", "b"] {
        publish_json(&app, Some(API_KEY), &json!({"user": "63", "message": text})).await;
    }
    let seq = tab.next_event("notification").await["seq"].clone();
    let reply = tab.call("mark_read", &json!({"seqs": [seq]})).await;
    assert_eq!(reply["ok"]["unread"], 1, "{reply}");
    let update = other_tab.next_event("notifications_read").await;
    assert_eq!(update["unread"], 1);
    let reply = other_tab.call("mark_read", &json!({"all": true})).await;
    assert_eq!(reply["ok"]["unread"], 0);
    assert_eq!(app.db.collection::<Document>("notifications").count_documents(doc! {"read": false}).await.unwrap(), 0);

    let too_many: Vec<u64> = (1..=501).collect();
    let refused = tab.call("mark_read", &json!({"seqs": too_many})).await;
    assert_eq!(refused["error"]["code"], "too_many", "{refused}");

    let refused = SioClient::connect(app.addr).await.call("mark_read", &json!({"all": true})).await;
    assert_eq!(refused["error"]["code"], "no_inbox");
    // Bob's inbox is his own: marking all read touched only Alice's.
    let bobs = bob.call("mark_read", &json!({"all": true})).await;
    assert_eq!(bobs["ok"]["unread"], 0);
}

#[tokio::test]
async fn a_publish_retried_with_the_same_idempotency_key_is_stored_once() {
    let app = spawn_app().await;
    let send = |body: Value, key: &'static str| {
        let request = app.http.post(app.url("/api/publish")).bearer_auth(API_KEY).header("idempotency-key", key);
        async move {
            let response = request.json(&body).send().await.unwrap();
            (response.status().as_u16(), response.json::<Value>().await.unwrap())
        }
    };
    let user = json!({"user": "63", "data": {"n": 1}});
    let (status, first) = send(user.clone(), "order-42-shipped").await;
    assert_eq!(status, 200, "{first}");
    let (_, again) = send(user, "order-42-shipped").await;
    assert_eq!((&again["id"], &again["seq"]), (&first["id"], &first["seq"]), "the retry answers with the first copy");
    let (_, other) = send(json!({"user": "63", "data": {"n": 2}}), "order-43-shipped").await;
    assert_ne!(other["id"], first["id"]);
    assert_eq!(notifications(&app).await, 2);

    let users = json!({"users": ["a1", "a2"], "message": "hi"});
    send(users.clone(), "batch-1").await;
    send(users, "batch-1").await;
    assert_eq!(notifications(&app).await, 4, "one per user, once");

    let room = json!({"room": "lobby", "message": "deploy done"});
    let (_, posted) = send(room.clone(), "deploy-7").await;
    let (_, reposted) = send(room, "deploy-7").await;
    assert_eq!(posted["seq"], reposted["seq"]);
    assert_eq!(app.count_all().await, 1);

    let (status, bad) = send(json!({"broadcast": true, "message": "x"}), "not a key!").await;
    assert_eq!(status, 400);
    assert_eq!(bad["error"]["code"], "invalid_idempotency_key");
}
