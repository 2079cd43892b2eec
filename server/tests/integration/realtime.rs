//! Socket.IO behaviour against the real server and a real MongoDB-compatible
//! database.

use crate::common::sio::SioClient;
use crate::common::spawn_app;
use mongodb::bson::doc;
use serde_json::{Value, json};

fn send(room: &str, client_id: &str, body: &str) -> Value {
    json!({"room": room, "client_id": client_id, "name": "Ada", "body": body})
}

async fn join(client: &mut SioClient, room: &str, since: u64) -> Value {
    let reply = client.call("join", &json!({"room": room, "since": since})).await;
    reply.get("ok").cloned().unwrap_or_else(|| panic!("join failed: {reply}"))
}

#[tokio::test]
async fn a_sent_message_is_stored_acked_and_broadcast_to_the_room() {
    let app = spawn_app().await;
    let mut alice = SioClient::connect(app.addr).await;
    let mut bob = SioClient::connect(app.addr).await;
    let mut elsewhere = SioClient::connect(app.addr).await;
    join(&mut alice, "kitchen", 0).await;
    join(&mut bob, "kitchen", 0).await;
    join(&mut elsewhere, "garden", 0).await;

    let reply = alice.call("send", &send("kitchen", "msg-00000001", "  hello  ")).await;
    let stored = &reply["ok"];
    assert_eq!(stored["seq"], 1, "{reply}");
    assert_eq!(stored["body"], "hello");
    assert_eq!(stored["room"], "kitchen");

    assert_eq!(&bob.next_event("message").await, stored);
    assert_eq!(&alice.next_event("message").await, stored);
    assert_eq!(app.count_messages(doc! {"room": "kitchen", "seq": 1, "body": "hello"}).await, 1);

    // The other room heard nothing: its next message is its own.
    let own = elsewhere.call("send", &send("garden", "msg-00000002", "mine")).await;
    assert_eq!(elsewhere.next_event("message").await, own["ok"]);
    assert_eq!(own["ok"]["seq"], 1, "sequences are per room");
}

#[tokio::test]
async fn a_resend_with_the_same_client_id_is_stored_once() {
    let app = spawn_app().await;
    let mut alice = SioClient::connect(app.addr).await;
    let first = alice.call("send", &send("lobby", "same-id-0001", "once")).await;
    let mut retry = send("lobby", "same-id-0001", "once");
    retry["retry"] = json!(true);
    let second = alice.call("send", &retry).await;
    // Without the retry flag the duplicate is caught by the unique index.
    let third = alice.call("send", &send("lobby", "same-id-0001", "once")).await;
    assert_eq!(first["ok"], second["ok"]);
    assert_eq!(first["ok"], third["ok"]);
    assert_eq!(app.count_messages(doc! {"client_id": "same-id-0001"}).await, 1);

    // The same id in another room is another message.
    let other = alice.call("send", &send("attic", "same-id-0001", "once")).await;
    assert_eq!(other["ok"]["room"], "attic");
    assert_eq!(app.count_all().await, 2);
}

#[tokio::test]
async fn bad_payloads_get_an_error_ack_and_the_connection_survives() {
    let app = spawn_app().await;
    let mut client = SioClient::connect(app.addr).await;
    let long = "x".repeat(2001);
    let cases: Vec<(Value, &str)> = vec![
        (json!("just a string"), "malformed"),
        (json!({"room": "lobby"}), "malformed"),
        (json!({"room": 5, "client_id": "abcdefgh", "name": "A", "body": "b"}), "malformed"),
        (send("lobby", "abcdefgh", "   "), "body_empty"),
        (send("lobby", "abcdefgh", &long), "body_too_long"),
        (send("No Room", "abcdefgh", "hi"), "invalid_room"),
        (send("lobby", "bad id", "hi"), "bad_client_id"),
        (json!({"room": "lobby", "client_id": "abcdefgh", "name": "", "body": "hi"}), "name_empty"),
        (send("lobby", "abcdefgh", "nul\u{0}byte"), "control_character"),
    ];
    for (payload, code) in cases {
        let reply = client.call("send", &payload).await;
        assert_eq!(reply["error"]["code"], code, "{payload} -> {reply}");
        assert!(reply["error"]["reason"].as_str().is_some_and(|r| !r.is_empty()));
    }
    let reply = client.call("join", &json!({"room": "lobby", "since": "yesterday"})).await;
    assert_eq!(reply["error"]["code"], "malformed", "{reply}");
    let reply = client.call("join", &json!({"room": "../etc"})).await;
    assert_eq!(reply["error"]["code"], "invalid_room", "{reply}");
    // A payload is one object, not its fields in an array.
    for (event, fields) in [("join", json!(["lobby", 0])), ("send", json!(["lobby", "abcdefgh", "A", "hi"]))] {
        let reply = client.call(event, &fields).await;
        assert_eq!(reply["error"]["code"], "malformed", "{event} {fields} -> {reply}");
    }
    // An event with no payload at all.
    let reply = client.call_raw("4277[\"send\"]".into(), 77).await;
    assert_eq!(reply["error"]["code"], "malformed", "{reply}");
    assert_eq!(app.count_all().await, 0, "nothing invalid is stored");

    // The same connection still works.
    let ok = client.call("send", &send("lobby", "good-0000001", "fine")).await;
    assert_eq!(ok["ok"]["seq"], 1, "{ok}");
}

#[tokio::test]
async fn garbage_frames_cost_only_their_sender_its_connection() {
    let app = spawn_app().await;
    let mut good = SioClient::connect(app.addr).await;
    join(&mut good, "lobby", 0).await;
    for frame in ["42garbage", "4", "9", "42[", "43[]", "0{}", "40/nope,", "42999999999999999999999[\"send\"]"] {
        let bad = SioClient::connect(app.addr).await;
        bad.send_raw(frame);
    }
    let reply = good.call("send", &send("lobby", "after-garbage", "still here")).await;
    assert_eq!(reply["ok"]["body"], "still here", "{reply}");
    let (status, _, _) = app.get_page("/", None).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn joining_from_a_sequence_returns_only_what_followed_it_in_order() {
    let app = spawn_app().await;
    let mut writer = SioClient::connect(app.addr).await;
    for i in 1..=8 {
        writer.call("send", &send("log", &format!("id-{i:08}"), &format!("line {i}"))).await;
    }
    let mut reader = SioClient::connect(app.addr).await;
    let joined = join(&mut reader, "log", 5).await;
    let seqs: Vec<u64> = joined["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [6, 7, 8]);
    assert_eq!(joined["head"], 8);
    assert_eq!(joined["truncated"], false);

    // After joining, new messages arrive live.
    writer.call("send", &send("log", "id-00000009", "line 9")).await;
    assert_eq!(reader.next_event("message").await["seq"], 9);

    // Leaving stops them.
    let left = reader.call("leave", &json!({"room": "log"})).await;
    assert!(left.get("ok").is_some(), "{left}");
    writer.call("send", &send("log", "id-00000010", "line 10")).await;
    let rejoined = join(&mut reader, "log", 9).await;
    assert_eq!(rejoined["messages"][0]["seq"], 10, "missed while away, caught up on rejoin");
}

/// Concurrent senders to one room: each send allocates its number and
/// stores its message in two round trips, so they finish in any order. The
/// room still hears them in sequence order, and a client that joins in the
/// middle gets, between its catch-up and what arrives live, every message
/// once, with nothing newer in the catch-up than its head.
#[tokio::test]
async fn concurrent_sends_reach_the_room_in_sequence_order_and_a_join_head_is_a_watermark() {
    const SENDERS: usize = 8;
    const EACH: usize = 30;
    const TOTAL: u64 = (SENDERS * EACH) as u64;
    let app = spawn_app().await;
    let mut watcher = SioClient::connect(app.addr).await;
    join(&mut watcher, "race", 0).await;
    let mut senders = Vec::new();
    for s in 0..SENDERS {
        let mut client = SioClient::connect(app.addr).await;
        senders.push(tokio::spawn(async move {
            for i in 0..EACH {
                let reply = client.call("send", &send("race", &format!("s{s}-{i:06}"), "hi")).await;
                assert!(reply.get("ok").is_some(), "{reply}");
            }
        }));
    }
    // A late joiner, once some messages are out.
    let mut live = Vec::new();
    while live.len() < EACH {
        live.push(watcher.next_event("message").await["seq"].as_u64().unwrap());
    }
    let mut late = SioClient::connect(app.addr).await;
    let joined = join(&mut late, "race", 0).await;
    let head = joined["head"].as_u64().unwrap();
    let mut held: Vec<u64> =
        joined["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(held, (1..=head).collect::<Vec<_>>(), "the catch-up is everything up to the head, in order");
    while live.len() < TOTAL as usize {
        live.push(watcher.next_event("message").await["seq"].as_u64().unwrap());
    }
    assert_eq!(live, (1..=TOTAL).collect::<Vec<_>>(), "live order is sequence order");
    while held.last() != Some(&TOTAL) {
        let seq = late.next_event("message").await["seq"].as_u64().unwrap();
        // Sent both ways around the join: kept once, by number.
        if seq > *held.last().unwrap_or(&0) {
            held.push(seq);
        }
    }
    assert_eq!(held, (1..=TOTAL).collect::<Vec<_>>(), "the late joiner has every message once");
    for sender in senders {
        sender.await.unwrap();
    }
}

/// A client that a node ahead of this one served (it has messages this
/// node has not delivered yet: their publications are still on the way)
/// joins here from the newest it has. The answer's head is at least that,
/// and nothing it has comes again live; a `since` beyond what is stored is
/// believed only as far as the store's head. (Two nodes on one database
/// with no broker between them: each write of the other is one this node
/// has not heard of.)
#[tokio::test]
async fn a_join_from_beyond_this_nodes_cursor_waits_for_it_and_gets_nothing_twice() {
    let db = crate::common::fresh_db();
    let here = crate::common::spawn_app_in(&db, &[]).await;
    let ahead = crate::common::spawn_app_in(&db, &[]).await;
    let mut listener = SioClient::connect(here.addr).await;
    join(&mut listener, "lag", 0).await;
    let mut sender = SioClient::connect(ahead.addr).await;
    let mut sent = Vec::new();
    for i in 1..=3 {
        let reply = sender.call("send", &send("lag", &format!("lag-{i:08}"), "elsewhere")).await;
        sent.push(reply["ok"]["seq"].as_u64().unwrap_or_else(|| panic!("{reply}")));
    }
    let since = sent[2];

    let mut client = SioClient::connect(here.addr).await;
    let joined = join(&mut client, "lag", since).await;
    assert_eq!(joined["head"], since, "the head covers what the client has: {joined}");
    assert_eq!(joined["messages"], json!([]), "{joined}");
    for seq in &sent {
        assert_eq!(listener.next_event("message").await["seq"], *seq, "the listener here gets them in order");
    }
    let next = client.call("send", &send("lag", "lag-00000004", "here")).await;
    assert_eq!(client.next_event("message").await, next["ok"], "nothing the client had came again");
    assert_eq!(listener.next_event("message").await, next["ok"]);

    let mut stale = SioClient::connect(here.addr).await;
    let joined = join(&mut stale, "lag", 1_000_000).await;
    assert_eq!(joined["head"], next["ok"]["seq"], "believed as far as the store's head: {joined}");
    let last = client.call("send", &send("lag", "lag-00000005", "here")).await;
    assert_eq!(stale.next_event("message").await, last["ok"], "the room goes on for everyone");
}

#[tokio::test]
async fn a_socket_may_join_a_bounded_number_of_rooms() {
    let app = spawn_app().await;
    let mut client = SioClient::connect(app.addr).await;
    for i in 0..herald::protocol::ROOMS_PER_SOCKET_MAX {
        join(&mut client, &format!("room-{i}"), 0).await;
    }
    let reply = client.call("join", &json!({"room": "one-too-many"})).await;
    assert_eq!(reply["error"]["code"], "too_many_rooms", "{reply}");
    // Re-joining a room it is in is fine.
    join(&mut client, "room-0", 0).await;
}

#[tokio::test]
async fn websocket_only_refuses_long_polling_and_polls_for_unknown_sessions_are_counted() {
    let app = crate::common::spawn_app_with(&[("HERALD_TRANSPORTS", "websocket")]).await;
    let handshake = app.http.get(app.url("/socket.io/?EIO=4&transport=polling")).send().await.unwrap();
    assert_eq!(handshake.status(), 400, "no long-polling session starts");
    let mut client = SioClient::connect(app.addr).await;
    join(&mut client, "lobby", 0).await;

    let both = spawn_app().await;
    assert_eq!(crate::common::metric(&both, "herald_polls_unknown_session_total").await, 0);
    // A poll for a session this node never made: what a load balancer
    // without session affinity causes.
    let stray =
        both.http.get(both.url("/socket.io/?EIO=4&transport=polling&sid=AAAAAAAAAAAAAAAA")).send().await.unwrap();
    assert_eq!(stray.status(), 400);
    assert_eq!(crate::common::metric(&both, "herald_polls_unknown_session_total").await, 1);
    let started = both.http.get(both.url("/socket.io/?EIO=4&transport=polling")).send().await.unwrap();
    assert_eq!(started.status(), 200, "long-polling is on by default");
}
