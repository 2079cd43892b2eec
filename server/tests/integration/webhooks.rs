//! Webhooks against a real HTTP receiver started by the test: signed,
//! every event at least once across a receiver that fails for a while and a
//! kill -9 of Herald, and once per cluster.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use server::config::Secret;
use tokio::sync::mpsc;

use crate::common::process::Running;
use crate::common::redis::RedisServer;
use crate::common::sio::SioClient;
use crate::common::{TOKEN_SECRET, fresh_db, metric_at, spawn_app_in, spawn_app_with, token};

const SECRET: &str = "webhook-secret-webhook-secret-0001";

/// A receiver: every POST it takes (signature checked, headers read) is
/// sent on; while `failing`, it answers 500 and keeps nothing.
struct Receiver {
    url: String,
    received: mpsc::UnboundedReceiver<Value>,
    failing: Arc<AtomicBool>,
}

impl Receiver {
    async fn start() -> Self {
        let (tx, received) = mpsc::unbounded_channel();
        let failing = Arc::new(AtomicBool::new(false));
        let refusing = failing.clone();
        let handler = move |headers: HeaderMap, body: axum::body::Bytes| {
            let (tx, refusing) = (tx.clone(), refusing.clone());
            async move {
                if refusing.load(Ordering::SeqCst) {
                    return StatusCode::INTERNAL_SERVER_ERROR;
                }
                let header =
                    |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                let signed = server::auth::signature::verify(&Secret::new(SECRET), &header("herald-signature"), &body);
                assert!(signed.is_some(), "a webhook's signature verifies");
                let event: Value = serde_json::from_slice(&body).expect("a JSON body");
                assert_eq!(event["id"], header("herald-event-id"), "the id header names the body's id");
                assert_eq!(event["event"], header("herald-event"));
                let _ = tx.send(event);
                StatusCode::NO_CONTENT
            }
        };
        let router = axum::Router::new().route("/hook", axum::routing::post(handler));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        Self { url, received, failing }
    }

    /// The next event taken, within `within`.
    async fn next(&mut self, within: Duration) -> Value {
        tokio::time::timeout(within, self.received.recv()).await.expect("a webhook in time").unwrap()
    }

    /// Takes events until one says `event` (with `user`, if given); returns
    /// every one taken, that one last.
    async fn until(&mut self, event: &str, user: Option<&str>) -> Vec<Value> {
        let mut taken = Vec::new();
        loop {
            let got = self.next(Duration::from_secs(20)).await;
            let found = got["event"] == event && user.is_none_or(|u| got["data"]["user"] == u);
            taken.push(got);
            if found {
                return taken;
            }
        }
    }
}

fn settings(receiver: &Receiver) -> Vec<(&'static str, String)> {
    vec![
        ("HERALD_WEBHOOK_URLS", receiver.url.clone()),
        ("HERALD_WEBHOOK_SECRET", SECRET.to_owned()),
        ("HERALD_WEBHOOK_EVENTS", "room.occupied,room.vacated,user.joined,user.left,message.stored".to_owned()),
        ("HERALD_WEBHOOK_MESSAGE_ROOMS", "support-*".to_owned()),
        ("HERALD_WEBHOOK_TIMEOUT", "500ms".to_owned()),
    ]
}

fn as_pairs<'a>(settings: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    settings.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// `(event, room, user)` of each event.
fn summary(events: &[Value]) -> Vec<(String, String, String)> {
    events
        .iter()
        .map(|e| {
            let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
            (text(&e["event"]), text(&e["data"]["room"]), text(&e["data"]["user"]))
        })
        .collect()
}

fn entry(event: &str, room: &str, user: &str) -> (String, String, String) {
    (event.to_owned(), room.to_owned(), user.to_owned())
}

/// Fails unless `events` are exactly `expected` (`(event, room, user)`),
/// in any order: each once.
fn assert_events(events: &[Value], mut expected: Vec<(String, String, String)>, what: &str) {
    let mut got = summary(events);
    got.sort();
    expected.sort();
    assert_eq!(got, expected, "{what}: {events:#?}");
}

#[tokio::test]
async fn room_changes_and_messages_are_posted_signed() {
    let mut receiver = Receiver::start().await;
    let app = spawn_app_with(&as_pairs(&settings(&receiver))).await;
    let alice = token(TOKEN_SECRET, "63", Some("Alice"), 600);
    let mut user = SioClient::try_connect(app.addr, Some(json!({"token": alice})), None).await.unwrap();
    user.call("join", &json!({"room": "support-1", "since": 0})).await;
    let mut events = receiver.until("user.joined", Some("63")).await;
    let mut guest = SioClient::connect(app.addr).await;
    guest.call("join", &json!({"room": "support-1", "since": 0})).await;
    guest.call("send", &json!({"room": "lobby", "client_id": "hook-0001", "name": "G", "body": "not sent"})).await;
    let stored =
        guest.call("send", &json!({"room": "support-1", "client_id": "hook-0002", "name": "G", "body": "help"})).await;
    let message = receiver.until("message.stored", None).await;
    assert_eq!(message.last().unwrap()["data"]["message"], stored["ok"], "the stored message itself");
    events.extend(message);
    user.call("leave", &json!({"room": "support-1"})).await;
    events.extend(receiver.until("user.left", Some("63")).await);
    guest.disconnect();
    events.extend(receiver.until("room.vacated", None).await);

    let expected = vec![
        entry("room.occupied", "support-1", ""),
        entry("user.joined", "support-1", "63"),
        entry("message.stored", "support-1", ""),
        entry("user.left", "support-1", "63"),
        entry("room.vacated", "support-1", ""),
    ];
    assert_events(&events, expected, "each once, a guest is no user, lobby's message is not sent");
    let ids: std::collections::BTreeSet<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), events.len(), "every event has its own id");
    let base = format!("http://{}", app.addr);
    assert_eq!(metric_at(&app.http, &base, "herald_webhook_receiver_paused{receiver=\"0\"}").await, 0);
}

#[tokio::test]
async fn every_event_arrives_after_a_failing_receiver_recovers_and_herald_is_killed() {
    let mut receiver = Receiver::start().await;
    receiver.failing.store(true, Ordering::SeqCst);
    let db = fresh_db();
    let settings = settings(&receiver);
    let mut herald = Running::start(&db, &as_pairs(&settings)).await;
    let base = format!("http://{}", herald.addr);
    let http = reqwest::Client::new();

    // Six rooms occupied and vacated: twelve events, every delivery refused.
    for n in 0..6 {
        let mut guest = SioClient::connect(herald.addr).await;
        guest.call("join", &json!({"room": format!("r{n}"), "since": 0})).await;
        guest.call("leave", &json!({"room": format!("r{n}")})).await;
        guest.disconnect();
    }
    // Every event queued in MongoDB (what a crash must not lose), and
    // refused again and again: the receiver is paused, and says so.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let queued = metric_at(&http, &base, "herald_webhook_queue").await;
        let paused = metric_at(&http, &base, "herald_webhook_receiver_paused{receiver=\"0\"}").await;
        if queued == 12 && paused == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "queued {queued}, paused {paused}; Herald printed {:#?}",
            herald.output()
        );
        // No event says when the fifth failure happens.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(metric_at(&http, &base, "herald_webhook_deliveries_total{outcome=\"failed\"}").await >= 5);
    assert_eq!(metric_at(&http, &base, "herald_webhook_deliveries_total{outcome=\"delivered\"}").await, 0);

    herald.kill().await;
    receiver.failing.store(false, Ordering::SeqCst);
    let again = Running::start(&db, &as_pairs(&settings)).await;
    let mut by_id: BTreeMap<String, Value> = BTreeMap::new();
    while by_id.len() < 12 {
        let Ok(Some(event)) = tokio::time::timeout(Duration::from_secs(10), receiver.received.recv()).await else {
            panic!("only {} of 12: {:#?}", by_id.len(), summary(&by_id.into_values().collect::<Vec<_>>()));
        };
        by_id.insert(event["id"].as_str().unwrap().to_owned(), event);
    }
    let expected = (0..6)
        .flat_map(|n| [entry("room.occupied", &format!("r{n}"), ""), entry("room.vacated", &format!("r{n}"), "")])
        .collect();
    assert_events(&by_id.into_values().collect::<Vec<_>>(), expected, "every event, after the restart");
    let base = format!("http://{}", again.addr);
    assert_eq!(metric_at(&http, &base, "herald_webhook_receiver_paused{receiver=\"0\"}").await, 0);
}

#[tokio::test]
async fn a_cluster_of_two_sends_each_event_once() {
    let redis = RedisServer::start().await;
    let mut receiver = Receiver::start().await;
    let db = fresh_db();
    let url = redis.url();
    let mut nodes = Vec::new();
    for n in 0..2 {
        let id = format!("node-{n}");
        let mut all = settings(&receiver);
        all.push(("HERALD_REDIS_URL", url.clone()));
        all.push(("HERALD_NODE_ID", id));
        nodes.push(spawn_app_in(&db, &as_pairs(&all)).await);
    }
    let connect = |n: usize, user: &str| {
        let addr = nodes[n].addr;
        let t = token(TOKEN_SECRET, user, None, 600);
        async move { SioClient::try_connect(addr, Some(json!({"token": t})), None).await.unwrap() }
    };
    let mut events = Vec::new();
    let mut alice = connect(0, "alice").await;
    alice.call("join", &json!({"room": "both", "since": 0})).await;
    events.extend(receiver.until("user.joined", Some("alice")).await);
    let mut bob = connect(1, "bob").await;
    bob.call("join", &json!({"room": "both", "since": 0})).await;
    events.extend(receiver.until("user.joined", Some("bob")).await);
    alice.call("leave", &json!({"room": "both"})).await;
    events.extend(receiver.until("user.left", Some("alice")).await);
    bob.call("leave", &json!({"room": "both"})).await;
    events.extend(receiver.until("room.vacated", None).await);
    // Anything sent twice would come before these: one more event from each
    // node, after everything above.
    for (n, room) in [(0, "last-0"), (1, "last-1")] {
        let mut guest = connect(n, "carol").await;
        guest.call("join", &json!({"room": room, "since": 0})).await;
    }
    let mut tail = Vec::new();
    while summary(&tail).iter().filter(|(event, _, _)| event == "user.joined").count() < 2 {
        tail.push(receiver.next(Duration::from_secs(20)).await);
    }
    events.extend(tail.into_iter().filter(|e| e["data"]["room"] == "both"));

    let expected = vec![
        entry("room.occupied", "both", ""),
        entry("user.joined", "both", "alice"),
        entry("user.joined", "both", "bob"),
        entry("user.left", "both", "alice"),
        entry("user.left", "both", "bob"),
        entry("room.vacated", "both", ""),
    ];
    assert_events(&events, expected, "each event once, whichever node saw it");
}
