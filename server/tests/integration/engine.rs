//! The delivery engine seen from outside: a stream's order holds under
//! concurrent writers, for a room and for a user's inbox alike, for clients
//! that listened from the start and for ones that arrive midway; and a crowd
//! joining one room at once is answered from a bounded number of store
//! reads.
//!
//! Every check is against what MongoDB holds afterwards, so a message that is
//! delivered twice, out of order, never, or without being stored fails.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use herald::protocol::CATCH_UP_MAX;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::common::sio::SioClient;
use crate::common::{API_KEY, TOKEN_SECRET, TestApp, metric, spawn_app_with, token};

/// Every per-connection and per-address limit off: these tests write as fast
/// as answers come back, and connect many clients from one address.
pub(crate) const UNLIMITED: &[(&str, &str)] = &[
    ("HERALD_CONNECTIONS_PER_IP", "0"),
    ("HERALD_TCP_CONNECTIONS_PER_IP", "0"),
    ("HERALD_HANDSHAKES_PER_IP", "0"),
    ("HERALD_SEND_RATE", "0"),
    ("HERALD_EVENT_RATE", "0"),
    ("HERALD_PUBLISH_RATE", "0"),
];

/// Held by each test here while it runs: they load the machine on purpose
/// (thousands of sockets, a thousand writes as fast as answers come), and
/// each one's bounds assume it has the server's share of the machine, not a
/// quarter of it.
pub(crate) static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How long a whole phase (all sends, all deliveries) may take.
const PHASE: Duration = Duration::from_secs(120);
/// How long a listener may hear nothing while it still expects something
/// (under the client's own `WAIT`, so that this test's message wins).
const SILENCE: Duration = Duration::from_secs(8);

fn send(room: &str, client_id: &str, body: &str) -> Value {
    json!({"room": room, "client_id": client_id, "name": "Ada", "body": body})
}

async fn join(client: &mut SioClient, room: &str, since: u64) -> Value {
    let reply = client.call("join", &json!({"room": room, "since": since})).await;
    reply.get("ok").cloned().unwrap_or_else(|| panic!("join failed: {reply}"))
}

async fn user_client(app: &TestApp, user: &str) -> SioClient {
    let t = token(TOKEN_SECRET, user, Some(&format!("User {user}")), 600);
    SioClient::try_connect(app.addr, Some(json!({"token": t})), None).await.expect("accepted")
}

/// Publishes `data` to `user`'s inbox and returns the stored seq.
async fn publish_to(http: &reqwest::Client, url: &str, user: &str, data: Value) -> u64 {
    let response =
        http.post(url).bearer_auth(API_KEY).json(&json!({"user": user, "data": data})).send().await.expect("publish");
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 200, "publish: {body}");
    body["seq"].as_u64().unwrap_or_else(|| panic!("no seq in {body}"))
}

pub(crate) fn seq_of(item: &Value) -> u64 {
    item["seq"].as_u64().unwrap_or_else(|| panic!("no seq in {item}"))
}

pub(crate) fn seqs_of(items: &Value) -> Vec<u64> {
    items.as_array().unwrap_or_else(|| panic!("not a list: {items}")).iter().map(seq_of).collect()
}

/// Waits (within [`PHASE`]) until `count` acks were counted on `acked`.
pub(crate) async fn acked_at_least(acked: &mut watch::Receiver<u64>, count: u64) {
    let waited = tokio::time::timeout(PHASE, acked.wait_for(|n| *n >= count)).await.is_ok_and(|w| w.is_ok());
    assert!(waited, "{} of {count} writes answered in {PHASE:?}", *acked.borrow());
}

/// Appends the seqs of `event` events to `seqs` until there are `count` of
/// them. Notifications must be of the inbox stream (nothing else is
/// published here).
async fn read_count(client: &mut SioClient, event: &str, count: usize, seqs: &mut Vec<u64>, who: &str) {
    while seqs.len() < count {
        let Ok(item) = tokio::time::timeout(SILENCE, client.next_event(event)).await else {
            panic!("{who}: no {event} in {SILENCE:?} after {} of {count}, the newest {:?}", seqs.len(), seqs.last());
        };
        if event == "notification" {
            assert_eq!(item["stream"], "inbox", "{who}: {item}");
        }
        seqs.push(seq_of(&item));
    }
}

/// Appends the seqs of `event` events to `seqs` until one reaches `head`.
pub(crate) async fn read_until(client: &mut SioClient, event: &str, head: u64, seqs: &mut Vec<u64>, who: &str) {
    let started = Instant::now();
    while seqs.last().is_none_or(|&newest| newest < head) {
        assert!(
            started.elapsed() < PHASE,
            "{who}: {} {event}s in {PHASE:?}, the newest {:?} of {head}",
            seqs.len(),
            seqs.last()
        );
        let Ok(item) = tokio::time::timeout(SILENCE, client.next_event(event)).await else {
            panic!(
                "{who}: no {event} in {SILENCE:?}; has {}, the newest {:?}, waiting for {head}",
                seqs.len(),
                seqs.last()
            );
        };
        if event == "notification" {
            assert_eq!(item["stream"], "inbox", "{who}: {item}");
        }
        seqs.push(seq_of(&item));
    }
}

/// Fails unless `seqs` is strictly increasing, showing the first step that
/// is not (a duplicate or a message out of order).
pub(crate) fn assert_increasing(seqs: &[u64], who: &str) {
    if let Some(i) = seqs.windows(2).position(|w| w[0] >= w[1]) {
        let around = &seqs[i.saturating_sub(3)..(i + 5).min(seqs.len())];
        panic!(
            "{who}: seq {} then {} at position {} of {} (duplicate or out of order); around: {around:?}",
            seqs[i],
            seqs[i + 1],
            i + 1,
            seqs.len()
        );
    }
}

/// Fails unless `got` holds exactly the seqs of `stored`, saying which are
/// missing and which were never stored.
pub(crate) fn assert_same_set(got: &[u64], stored: &[u64], who: &str) {
    let got: BTreeSet<u64> = got.iter().copied().collect();
    let stored: BTreeSet<u64> = stored.iter().copied().collect();
    let missing: Vec<_> = stored.difference(&got).take(20).collect();
    let unstored: Vec<_> = got.difference(&stored).take(20).collect();
    assert!(
        missing.is_empty() && unstored.is_empty(),
        "{who}: {} distinct seqs received, {} stored; missing (first 20): {missing:?}; not stored (first 20): {unstored:?}",
        got.len(),
        stored.len()
    );
}

/// Four clients send 250 messages each into one room, each as fast as its
/// acks come back. Every listener — three that joined the empty room first,
/// and one that joins midway from a seq it learnt — must end up with exactly
/// the room's stored messages (after its `since`), each once, in sequence
/// order: its join's catch-up followed by what arrives live. A join's head
/// is a watermark (the catch-up holds everything up to it, the live events
/// everything after), so nothing may arrive both ways or be lost between
/// them, and concurrent writes must not reach anyone out of order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_order_under_concurrent_senders() {
    let _alone = ONE_AT_A_TIME.lock().await;
    const ROOM: &str = "order";
    const SENDERS: usize = 4;
    const EACH: usize = 250;
    const LISTENERS: usize = 3;
    const MIDWAY_AFTER_ACKS: u64 = 500;
    const MIDWAY_SINCE_NTH: usize = 250;
    let app = spawn_app_with(UNLIMITED).await;

    let mut listeners = Vec::new();
    for _ in 0..LISTENERS {
        let mut client = SioClient::connect(app.addr).await;
        let joined = join(&mut client, ROOM, 0).await;
        assert_eq!(joined["head"], 0, "the room is empty: {joined}");
        let seqs = seqs_of(&joined["messages"]);
        listeners.push((client, seqs));
    }
    let mut midway = SioClient::connect(app.addr).await;

    let (acked_tx, mut acked) = watch::channel(0u64);
    let acked_tx = Arc::new(acked_tx);
    let mut senders = Vec::new();
    for s in 0..SENDERS {
        let mut client = SioClient::connect(app.addr).await;
        let acked_tx = acked_tx.clone();
        senders.push(tokio::spawn(async move {
            let mut seqs = Vec::with_capacity(EACH);
            for i in 0..EACH {
                let reply = client.call("send", &send(ROOM, &format!("s{s}-{i:06}"), "hi")).await;
                let stored = reply.get("ok").unwrap_or_else(|| panic!("sender {s}, send {i}: {reply}"));
                seqs.push(seq_of(stored));
                acked_tx.send_modify(|n| *n += 1);
            }
            (client, seqs)
        }));
    }

    // The midway joiner's `since` is the seq of the 250th message the first
    // listener heard: that listener joined the empty room and hears every
    // message in order, so it is the room's 250th (250 itself unless a
    // number was skipped), however the senders interleave. It joins once
    // 500 sends were acked, while they go on: its catch-up (everything after
    // 250 up to its head, some 250–350 messages, under CATCH_UP_MAX) and the
    // live events after it meet in the middle of the traffic.
    let (first, first_seqs) = &mut listeners[0];
    read_count(first, "message", MIDWAY_SINCE_NTH, first_seqs, "listener 0").await;
    let since = first_seqs[MIDWAY_SINCE_NTH - 1];
    acked_at_least(&mut acked, MIDWAY_AFTER_ACKS).await;
    let joined = join(&mut midway, ROOM, since).await;
    assert_eq!(joined["truncated"], false, "the midway catch-up fits in one answer: head {}", joined["head"]);
    let mut midway_seqs = seqs_of(&joined["messages"]);
    let midway_head = joined["head"].as_u64().unwrap();
    assert!(midway_seqs.last().is_none_or(|&newest| newest <= midway_head), "nothing past the head: {midway_seqs:?}");

    let mut acked_seqs = Vec::new();
    let mut last_sender = None;
    for sender in senders {
        let (client, seqs) = sender.await.expect("a sender failed");
        acked_seqs.extend(seqs);
        last_sender = Some(client);
    }
    // One more message, sent once every other was acked: it is numbered after
    // them all, so each listener has heard everything once it hears this.
    let marker = last_sender.unwrap().call("send", &send(ROOM, "marker-000001", "end")).await;
    let head = seq_of(&marker["ok"]);
    assert!(acked_seqs.iter().all(|&seq| seq < head), "the last message sent has the highest seq, {head}");
    acked_seqs.push(head);

    for (i, (client, seqs)) in listeners.iter_mut().enumerate() {
        read_until(client, "message", head, seqs, &format!("listener {i}")).await;
    }
    read_until(&mut midway, "message", head, &mut midway_seqs, "the midway joiner").await;

    let stored = app.room_seqs(ROOM).await;
    assert_eq!(stored.len(), SENDERS * EACH + 1, "every send stored once");
    acked_seqs.sort_unstable();
    assert_increasing(&acked_seqs, "the acks");
    assert_same_set(&acked_seqs, &stored, "the acks");
    for (i, (_, seqs)) in listeners.iter().enumerate() {
        let who = format!("listener {i}");
        assert_increasing(seqs, &who);
        assert_same_set(seqs, &stored, &who);
    }
    let who = format!("the midway joiner (since {since}, head {midway_head})");
    assert_increasing(&midway_seqs, &who);
    let after: Vec<u64> = stored.iter().copied().filter(|&seq| seq > since).collect();
    assert_same_set(&midway_seqs, &after, &who);
}

/// Four publishers post 100 notifications each to one user, each as fast
/// as answers come back. Each of the user's three tabs must receive exactly
/// the inbox MongoDB holds, each notification once, in sequence order:
/// concurrent publishes must not reach a tab out of order. A tab that
/// connects midway and syncs from a seq it learnt must have, between the
/// sync's answer and what arrives live, every notification after that seq:
/// the answer and the live events each in order with none twice. (The tab
/// is in its user's channel from the moment it connects, so a notification
/// published while the sync reads may come both ways; the protocol has the
/// client keep each seq once, and so does this test, across the two.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_order_under_concurrent_publishes() {
    let _alone = ONE_AT_A_TIME.lock().await;
    const USER: &str = "u-engine-63";
    const TABS: usize = 3;
    const PUBLISHERS: usize = 4;
    const EACH: usize = 100;
    const MIDWAY_AFTER_PUBLISHES: u64 = 200;
    const MIDWAY_SINCE_NTH: usize = 100;
    let app = spawn_app_with(UNLIMITED).await;
    let url = app.url("/api/publish");

    let mut tabs = Vec::new();
    for _ in 0..TABS {
        tabs.push((user_client(&app, USER).await, Vec::new()));
    }

    let (published_tx, mut published) = watch::channel(0u64);
    let published_tx = Arc::new(published_tx);
    let mut publishers = Vec::new();
    for p in 0..PUBLISHERS {
        let (http, url, published_tx) = (app.http.clone(), url.clone(), published_tx.clone());
        publishers.push(tokio::spawn(async move {
            let mut seqs = Vec::with_capacity(EACH);
            for n in 0..EACH {
                seqs.push(publish_to(&http, &url, USER, json!({"publisher": p, "n": n})).await);
                published_tx.send_modify(|count| *count += 1);
            }
            seqs
        }));
    }

    // The midway tab syncs from the seq of the 100th notification the first
    // tab received, as a reloaded page does with what it already showed:
    // that tab was there from the start and hears the inbox in order, so it
    // is the inbox's 100th (100 itself unless a number was skipped). It
    // connects once 200 publishes were answered, while they go on.
    let (first, first_seqs) = &mut tabs[0];
    read_count(first, "notification", MIDWAY_SINCE_NTH, first_seqs, "tab 0").await;
    let since = first_seqs[MIDWAY_SINCE_NTH - 1];
    acked_at_least(&mut published, MIDWAY_AFTER_PUBLISHES).await;
    let mut midway = user_client(&app, USER).await;
    let synced = midway.call("sync", &json!({"inbox": since})).await;
    let synced_seqs =
        seqs_of(synced.get("ok").unwrap_or_else(|| panic!("sync failed: {synced}")).get("inbox").unwrap());

    let mut published_seqs = Vec::new();
    for publisher in publishers {
        published_seqs.extend(publisher.await.expect("a publisher failed"));
    }
    // One more, published once every other was answered: numbered after them
    // all, so each tab has heard everything once it hears this.
    let head = publish_to(&app.http, &url, USER, json!({"marker": true})).await;
    assert!(published_seqs.iter().all(|&seq| seq < head), "the last publish has the highest seq, {head}");
    published_seqs.push(head);

    for (i, (client, seqs)) in tabs.iter_mut().enumerate() {
        read_until(client, "notification", head, seqs, &format!("tab {i}")).await;
    }
    let mut live = Vec::new();
    read_until(&mut midway, "notification", head, &mut live, "the midway tab").await;

    let stored = app.inbox_seqs(USER).await;
    assert_eq!(stored.len(), PUBLISHERS * EACH + 1, "every publish stored once");
    published_seqs.sort_unstable();
    assert_increasing(&published_seqs, "the publish answers");
    assert_same_set(&published_seqs, &stored, "the publish answers");
    for (i, (_, seqs)) in tabs.iter().enumerate() {
        let who = format!("tab {i}");
        assert_increasing(seqs, &who);
        assert_same_set(seqs, &stored, &who);
    }
    let who = format!("the midway tab (since {since})");
    assert_increasing(&synced_seqs, &format!("{who}, its sync answer"));
    assert_increasing(&live, &format!("{who}, live"));
    assert!(synced_seqs.iter().all(|&seq| seq > since), "{who}: the sync answer is what followed {since}");
    let after: Vec<u64> = stored.iter().copied().filter(|&seq| seq > since).collect();
    let held: Vec<u64> = synced_seqs.iter().chain(&live).copied().collect();
    assert_same_set(&held, &after, &who);
}

/// Publishes `data` to every one of `users` at once; the seq each got.
async fn publish_to_users(http: &reqwest::Client, url: &str, users: &[String], data: Value) -> Vec<u64> {
    let response =
        http.post(url).bearer_auth(API_KEY).json(&json!({"users": users, "data": data})).send().await.expect("publish");
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 200, "publish to {} users: {body}", users.len());
    let deliveries = body["deliveries"].as_array().unwrap_or_else(|| panic!("no deliveries in {body}"));
    assert_eq!(deliveries.len(), users.len(), "one delivery per user");
    let mut named: Vec<&str> = deliveries.iter().filter_map(|d| d["user"].as_str()).collect();
    named.sort_unstable();
    let mut asked: Vec<&str> = users.iter().map(String::as_str).collect();
    asked.sort_unstable();
    assert_eq!(named, asked, "one delivery for each user asked for");
    deliveries.iter().map(seq_of).collect()
}

/// A publish to 1,000 users is stored in a few MongoDB round trips, not one
/// or two per user; and while such publishes race single publishes into the
/// same inboxes (both take numbers of one stream, in different ways), every
/// inbox holds each publish once, and each tab of a user hears that user's
/// inbox exactly once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_to_many_users_takes_a_few_round_trips_and_keeps_every_inbox_in_order() {
    let _alone = ONE_AT_A_TIME.lock().await;
    const USERS: usize = 1000;
    const ROUND_TRIPS_MAX: u64 = 10;
    const MANY: usize = 6;
    const SINGLE_EACH: usize = 40;
    let app = spawn_app_with(UNLIMITED).await;
    let url = app.url("/api/publish");
    let users: Vec<String> = (0..USERS).map(|i| format!("many-{i}")).collect();
    let watched = [users[0].clone(), users[USERS / 2].clone(), users[USERS - 1].clone()];
    let mut tabs = Vec::new();
    for user in &watched {
        tabs.push((user.clone(), user_client(&app, user).await, Vec::new()));
    }

    // Quiet: one publish to all of them, its round trips counted.
    let before = metric(&app, "herald_store_commands_total").await;
    let first = publish_to_users(&app.http, &url, &users, json!({"many": 0})).await;
    let trips = metric(&app, "herald_store_commands_total").await - before;
    eprintln!("a publish to {USERS} users: {trips} MongoDB commands");
    assert!(trips <= ROUND_TRIPS_MAX, "a publish to {USERS} users took {trips} MongoDB commands");
    assert!(first.iter().all(|&seq| seq == 1), "each inbox's first notification is its 1");

    // Racing: single publishes to the watched users while more publishes
    // to all of them go on.
    let mut singles = Vec::new();
    for user in watched.clone() {
        let (http, url) = (app.http.clone(), url.clone());
        singles.push(tokio::spawn(async move {
            for n in 0..SINGLE_EACH {
                publish_to(&http, &url, &user, json!({"single": n})).await;
            }
        }));
    }
    for n in 1..MANY {
        publish_to_users(&app.http, &url, &users, json!({"many": n})).await;
    }
    for single in singles {
        single.await.expect("a single publisher failed");
    }
    for (user, client, seqs) in &mut tabs {
        let head = publish_to(&app.http, &url, user, json!({"marker": true})).await;
        read_until(client, "notification", head, seqs, user).await;
        let stored = app.inbox_seqs(user).await;
        assert_eq!(stored.len(), MANY + SINGLE_EACH + 1, "{user}: every publish stored once");
        assert_increasing(seqs, user);
        assert_same_set(seqs, &stored, user);
    }
    for user in [&users[1], &users[USERS - 2]] {
        assert_eq!(app.inbox_seqs(user).await.len(), MANY, "{user}: each publish to everyone stored once");
    }
}

/// Fails with a clear message, rather than with "too many open files"
/// halfway, when this process may not hold `needed` descriptors (Linux: the
/// soft `RLIMIT_NOFILE`, read from /proc/self/limits; elsewhere unchecked).
fn assert_open_files_allow(needed: u64) {
    let Ok(limits) = std::fs::read_to_string("/proc/self/limits") else { return };
    let soft = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .and_then(|line| line.split_whitespace().nth(3))
        .and_then(|soft| soft.parse::<u64>().ok());
    if let Some(soft) = soft {
        assert!(
            soft >= needed,
            "this test holds about {needed} file descriptors, the soft limit is {soft}: raise `ulimit -n`"
        );
    }
}

/// What is wrong with one socket's answer to `join {room, since: 0}` of a
/// room whose stored seqs are `stored`; `None` when it is right. Right is
/// the room's head and its newest stored messages, in order, up to the head:
/// at most `CATCH_UP_MAX` of them, and at least every one numbered within
/// `CATCH_UP_MAX` of the head (a catch-up bounded by numbers holds one
/// fewer per number skipped), with `truncated` exactly when older ones were
/// left out. With no number skipped: all 500.
fn wrong_join(socket: usize, reply: &Value, stored: &[u64]) -> Option<String> {
    let Some(joined) = reply.get("ok") else {
        return Some(format!("socket {socket}: {}", reply.get("error").unwrap_or(reply)));
    };
    let head = *stored.last().unwrap();
    let within = stored.iter().filter(|&&seq| seq + CATCH_UP_MAX > head).count();
    let seqs: Option<Vec<u64>> =
        joined["messages"].as_array().and_then(|m| m.iter().map(|m| m["seq"].as_u64()).collect());
    let right = joined["head"].as_u64() == Some(head)
        && seqs.as_ref().is_some_and(|seqs| {
            (within..=CATCH_UP_MAX as usize).contains(&seqs.len())
                && stored.ends_with(seqs)
                && joined["truncated"].as_bool() == Some(seqs.len() < stored.len())
        });
    (!right).then(|| {
        let count = seqs.as_ref().map(Vec::len);
        let ends = seqs.as_ref().map(|s| (s.first().copied(), s.last().copied()));
        format!(
            "socket {socket}: head {}, truncated {}, {count:?} messages, first and last {ends:?}; stored: {} up to {head}, {within} of them numbered within {CATCH_UP_MAX} of it",
            joined["head"],
            joined["truncated"],
            stored.len(),
        )
    })
}

/// A room holds 500 messages; 2,000 connected sockets then all join it at
/// once. Each must get the whole catch-up (the room's head, its 500
/// messages, in order), and the server must serve the crowd from a handful
/// of store reads shared by everyone waiting (at most 10 operations in all),
/// not one read per join: a page reload of a busy room, or every client
/// reconnecting after a deploy, must not turn into a read per client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_storm_is_answered_with_bounded_store_reads() {
    let _alone = ONE_AT_A_TIME.lock().await;
    const ROOM: &str = "storm";
    const STORED: usize = 500;
    const WRITERS: usize = 10;
    const SOCKETS: usize = 2000;
    const CONNECTING_AT_ONCE: usize = 64;
    const STORE_OPS_MAX: u64 = 10;
    const STORM_WAIT: Duration = Duration::from_secs(20);
    // Each socket is two descriptors here, the client's and the server's.
    assert_open_files_allow(2 * SOCKETS as u64 + 1024);
    // Presence snapshots go to every member of the room: one per minute at
    // most keeps 2,000 joins from costing millions of packets.
    let mut overrides = UNLIMITED.to_vec();
    overrides.push(("HERALD_PRESENCE_INTERVAL", "60s"));
    let app = spawn_app_with(&overrides).await;

    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let mut client = SioClient::connect(app.addr).await;
        writers.push(tokio::spawn(async move {
            for i in 0..STORED / WRITERS {
                let reply = client.call("send", &send(ROOM, &format!("w{w}-{i:06}"), "x")).await;
                assert!(reply.get("ok").is_some(), "writer {w}, send {i}: {reply}");
            }
            client.disconnect();
        }));
    }
    for writer in writers {
        writer.await.expect("a writer failed");
    }
    let stored = Arc::new(app.room_seqs(ROOM).await);
    assert_eq!(stored.len(), STORED, "the room is filled");

    let connecting = futures::stream::iter(0..SOCKETS)
        .map(|_| SioClient::connect(app.addr))
        .buffer_unordered(CONNECTING_AT_ONCE)
        .collect::<Vec<_>>();
    let mut clients = tokio::time::timeout(PHASE, connecting).await.expect("2,000 sockets connect in time");

    let before = metric(&app, "herald_store_duration_seconds_count").await;
    let started = Instant::now();
    let answered = Arc::new(AtomicUsize::new(0));
    // Every frame is sent before any answer is awaited.
    let pending: Vec<_> = clients
        .iter_mut()
        .enumerate()
        .map(|(socket, client)| {
            let ack = client.emit("join", &json!({"room": ROOM, "since": 0}));
            let (answered, stored) = (answered.clone(), stored.clone());
            async move {
                let reply = ack.await.unwrap_or_else(|_| json!({"error": "the connection closed"}));
                answered.fetch_add(1, Ordering::Relaxed);
                // Checked as it arrives: 2,000 catch-ups of 500 decoded
                // messages at once would be gigabytes.
                wrong_join(socket, &reply, &stored)
            }
        })
        .collect();
    let answers = tokio::time::timeout(STORM_WAIT, futures::future::join_all(pending)).await;
    let elapsed = started.elapsed();
    let ops = metric(&app, "herald_store_duration_seconds_count").await - before;
    eprintln!(
        "join storm: {} of {SOCKETS} answered in {elapsed:?}, {ops} store operations",
        answered.load(Ordering::Relaxed)
    );
    let Ok(answers) = answers else {
        panic!(
            "{} of {SOCKETS} joins answered in {STORM_WAIT:?}, with {ops} store operations meanwhile (at most {STORE_OPS_MAX} allowed for all of them)",
            answered.load(Ordering::Relaxed)
        );
    };
    let wrong: Vec<String> = answers.into_iter().flatten().collect();
    assert!(
        wrong.is_empty(),
        "{} of {SOCKETS} joins answered wrongly, the first: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    assert!(
        ops <= STORE_OPS_MAX,
        "{SOCKETS} joins of one room cost {ops} store operations (at most {STORE_OPS_MAX}): the crowd must share reads, not make one each"
    );
    // The room's window holds what the crowd was answered from, and says so.
    let window = metric(&app, "herald_window_bytes ").await;
    assert!(window >= 400 * 80, "a window of the room's 500 messages, {window} bytes");
}
