//! Presence: who is in a room, live and through the API.

use crate::common::sio::SioClient;
use crate::common::{API_KEY, TOKEN_SECRET, spawn_app, token};
use serde_json::{Value, json};

#[tokio::test]
async fn joins_and_leaves_are_seen_by_others_and_by_the_api() {
    let app = spawn_app().await;
    let mut watcher = SioClient::connect(app.addr).await;
    watcher.call("join", &json!({"room": "den"})).await;
    let snapshot = watcher.next_event("presence").await;
    assert_eq!((snapshot["anonymous"].as_u64(), snapshot["user_count"].as_u64()), (Some(1), Some(0)));

    let alice_token = token(TOKEN_SECRET, "63", Some("Alice"), 600);
    let mut alice = SioClient::try_connect(app.addr, Some(json!({"token": alice_token})), None).await.unwrap();
    alice.call("join", &json!({"room": "den"})).await;
    let snapshot = watcher.next_event("presence").await;
    // Names only: ids may be e-mail addresses, and anonymous visitors see this.
    assert_eq!(snapshot["users"], json!([{"name": "Alice"}]));

    // The API, with its key, has the ids.
    let api: Value =
        app.http.get(app.url("/api/presence/den")).bearer_auth(API_KEY).send().await.unwrap().json().await.unwrap();
    assert_eq!(api["users"], json!([{"id": "63", "name": "Alice"}]));
    assert_eq!(api["anonymous"], 1);
    let unauthorized = app.http.get(app.url("/api/presence/den")).send().await.unwrap();
    assert_eq!(unauthorized.status(), 401);

    alice.call("leave", &json!({"room": "den"})).await;
    let snapshot = watcher.next_event("presence").await;
    assert_eq!(snapshot["users"], json!([]));

    // Disconnecting counts as leaving.
    let mut bob =
        SioClient::try_connect(app.addr, Some(json!({"token": token(TOKEN_SECRET, "64", Some("Bob"), 600)})), None)
            .await
            .unwrap();
    bob.call("join", &json!({"room": "den"})).await;
    assert_eq!(watcher.next_event("presence").await["users"][0]["name"], "Bob");
    bob.disconnect();
    assert_eq!(watcher.next_event("presence").await["user_count"], 0);
}

/// A join answered, then a leave and the disconnect sent at once: the
/// room's presence ends empty whatever order the server's handlers ran in
/// (a join recorded after the leave or disconnect it preceded would leave
/// a member behind for good).
#[tokio::test]
async fn a_join_left_at_once_leaves_nobody_behind() {
    let app = spawn_app().await;
    let mut pending = Vec::new();
    for n in 0..40 {
        let mut guest = SioClient::connect(app.addr).await;
        let room = format!("r{n}");
        let joined = guest.emit("join", &json!({"room": room}));
        let left = guest.emit("leave", &json!({"room": room}));
        pending.push((room, guest, joined, left));
    }
    for (room, guest, joined, left) in pending {
        joined.await.unwrap();
        left.await.unwrap();
        guest.disconnect();
        // A watcher comes in: its snapshots show it alone once the guest's
        // disconnect is handled; with a member left behind they stop at
        // two and the wait runs out.
        let mut watcher = SioClient::connect(app.addr).await;
        watcher.call("join", &json!({"room": room})).await;
        while watcher.next_event("presence").await["anonymous"] != 1 {}
    }
}
