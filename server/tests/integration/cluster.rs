//! Several nodes over one MongoDB database and one real `redis-server`:
//! events stored on one node reach the sockets of the others.

use std::collections::BTreeSet;

use crate::common::process::Running;
use crate::common::proxy::Proxy;
use crate::common::redis::RedisServer;
use crate::common::sio::SioClient;
use crate::common::{API_KEY, TOKEN_SECRET, TestApp, fresh_db, metric, spawn_app_in, token};
use crate::engine::{
    ONE_AT_A_TIME, UNLIMITED, acked_at_least, assert_increasing, assert_same_set, read_until, seq_of, seqs_of,
};
use serde_json::{Value, json};

/// `count` nodes of one cluster: the same database, the same Redis.
async fn cluster(redis: &RedisServer, count: usize) -> Vec<TestApp> {
    cluster_with(redis, count, &[]).await
}

/// [`cluster`], each node with `settings`.
async fn cluster_with(redis: &RedisServer, count: usize, settings: &[(&str, &str)]) -> Vec<TestApp> {
    let db = fresh_db();
    let url = redis.url();
    let mut nodes = Vec::new();
    for n in 0..count {
        let id = format!("node-{n}");
        let mut all = vec![("HERALD_REDIS_URL", url.as_str()), ("HERALD_NODE_ID", id.as_str())];
        all.extend_from_slice(settings);
        nodes.push(spawn_app_in(&db, &all).await);
    }
    nodes
}

fn send(room: &str, client_id: &str, body: &str) -> Value {
    json!({"room": room, "client_id": client_id, "name": "Ada", "body": body})
}

async fn join(client: &mut SioClient, room: &str) {
    let reply = client.call("join", &json!({"room": room, "since": 0})).await;
    assert!(reply.get("ok").is_some(), "join failed: {reply}");
}

async fn user(node: &TestApp, id: &str) -> SioClient {
    let t = token(TOKEN_SECRET, id, None, 600);
    let mut client = SioClient::try_connect(node.addr, Some(json!({"token": t})), None).await.expect("accepted");
    // Once its catch-up is answered, its node listens to the user's stream.
    let synced = client.call("sync", &json!({})).await;
    assert!(synced.get("ok").is_some(), "{synced}");
    client
}

async fn publish(node: &TestApp, body: Value) -> Value {
    let response = node.http.post(node.url("/api/publish")).bearer_auth(API_KEY).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

#[tokio::test]
async fn a_send_on_one_node_reaches_the_room_on_every_node_in_order() {
    let redis = RedisServer::start().await;
    let nodes = cluster(&redis, 3).await;
    let mut members = Vec::new();
    for node in &nodes {
        let mut member = SioClient::connect(node.addr).await;
        join(&mut member, "lobby").await;
        members.push(member);
    }
    let mut elsewhere = SioClient::connect(nodes[1].addr).await;
    join(&mut elsewhere, "garden").await;

    // Sends from every node, interleaved: every member hears each once, in
    // the room's order.
    let mut senders: Vec<SioClient> = Vec::new();
    for node in &nodes {
        senders.push(SioClient::connect(node.addr).await);
    }
    let mut stored = Vec::new();
    for i in 0..30 {
        let sender = &mut senders[i % nodes.len()];
        let reply = sender.call("send", &send("lobby", &format!("c-{i:08}"), &format!("m{i}"))).await;
        stored.push(reply["ok"]["seq"].as_u64().unwrap_or_else(|| panic!("{reply}")));
    }
    assert_eq!(stored.iter().collect::<BTreeSet<_>>().len(), 30, "30 messages, 30 numbers");
    for (n, member) in members.iter_mut().enumerate() {
        let mut seen = Vec::new();
        while seen.len() < 30 {
            seen.push(member.next_event("message").await["seq"].as_u64().unwrap());
        }
        let mut sorted = stored.clone();
        sorted.sort_unstable();
        assert_eq!(seen, sorted, "node {n}: every message once, in order");
    }

    // The other room heard nothing: its next event is its own message.
    let own = elsewhere.call("send", &send("garden", "g-00000001", "mine")).await;
    assert_eq!(elsewhere.next_event("message").await, own["ok"]);

    let published = metric(&nodes[0], "herald_redis_events_total{outcome=\"published\"}").await;
    let received = metric(&nodes[1], "herald_redis_events_total{outcome=\"received\"}").await;
    assert!(published >= 10 && received >= 20, "published {published}, received {received}");
    assert_eq!(metric(&nodes[2], "herald_redis_up").await, 1);
}

#[tokio::test]
async fn a_user_publish_reaches_their_tabs_on_every_node_and_a_broadcast_everyone() {
    let redis = RedisServer::start().await;
    let nodes = cluster(&redis, 3).await;
    let mut alice_a = user(&nodes[0], "alice").await;
    let mut alice_b = user(&nodes[1], "alice").await;
    let mut bob_b = user(&nodes[1], "bob").await;
    let mut anonymous_a = SioClient::connect(nodes[0].addr).await;
    assert!(anonymous_a.call("sync", &json!({})).await.get("ok").is_some());

    let to_alice = publish(&nodes[2], json!({"user": "alice", "data": {"n": 1}})).await;
    for tab in [&mut alice_a, &mut alice_b] {
        let got = tab.next_event("notification").await;
        assert_eq!(got["seq"], to_alice["seq"], "{got}");
        assert_eq!(got["data"], json!({"n": 1}));
    }

    let everyone = publish(&nodes[2], json!({"broadcast": true, "data": {"n": 2}})).await;
    for client in [&mut alice_a, &mut alice_b, &mut bob_b, &mut anonymous_a] {
        let got = client.next_event("notification").await;
        assert_eq!(got["data"], json!({"n": 2}), "bob heard nothing before the broadcast: {got}");
        assert_eq!(got["seq"], everyone["seq"]);
    }

    // `online` counts Alice's tabs on every node, as the nodes last wrote
    // them to Redis (within a moment of a change).
    until_online(&nodes[2], "alice", 2).await;
    alice_b.disconnect();
    until_online(&nodes[2], "alice", 1).await;
    until_online(&nodes[1], "alice", 1).await;
}

/// Publishes to `user` through `node` until the answer's `online` is `count`.
async fn until_online(node: &TestApp, user: &str, count: u64) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let answer = publish(node, json!({"user": user, "data": {}})).await;
        if answer["online"] == count {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "online never became {count}: {answer}");
        // The counts are written shortly after they change: no event says when.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Waits until `node`'s `/metrics` line `name` reads `value` (bounded).
async fn until_metric(node: &TestApp, name: &str, value: u64) {
    until(node, name, |n| n == value, value).await;
}

/// Waits until `node`'s `/metrics` line `name` reads `value` or more.
async fn until_metric_at_least(node: &TestApp, name: &str, value: u64) {
    until(node, name, |n| n >= value, value).await;
}

async fn until(node: &TestApp, name: &str, done: impl Fn(u64) -> bool, value: u64) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while !done(metric(node, name).await) {
        assert!(tokio::time::Instant::now() < deadline, "{name} never became {value}");
        // Polling a node's own report of its state: there is no event to await from outside.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn sends_during_a_redis_crash_are_acked_and_reach_the_other_node_after_it_returns() {
    let mut redis = RedisServer::start().await;
    // No periodic check during the test: what the outage lost comes back
    // through the repair that follows the reconnection.
    let quiet = [("HERALD_POSITION_CHECK", "10m"), ("HERALD_REDIS_PROBE", "60s")];
    let nodes = cluster_with(&redis, 2, &quiet).await;
    let mut far = SioClient::connect(nodes[1].addr).await;
    join(&mut far, "lobby").await;
    let mut sender = SioClient::connect(nodes[0].addr).await;
    let first = sender.call("send", &send("lobby", "r-00000000", "before")).await;
    assert_eq!(far.next_event("message").await, first["ok"]);

    redis.kill().await;
    for node in &nodes {
        until_metric(node, "herald_redis_up", 0).await;
    }
    let mut seqs = vec![first["ok"]["seq"].as_u64().unwrap()];
    for i in 1..=5 {
        let reply = sender.call("send", &send("lobby", &format!("r-{i:08}"), "during")).await;
        seqs.push(reply["ok"]["seq"].as_u64().unwrap_or_else(|| panic!("a send waits on Redis: {reply}")));
    }
    // Each of them given up on (not sent once Redis is back).
    until_metric_at_least(&nodes[0], "herald_redis_events_total{outcome=\"dropped\"}", 5).await;
    let ready = nodes[1].http.get(nodes[1].url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    assert!(ready.text().await.unwrap().contains("degraded"));

    redis.start_again().await;
    // Nothing more is sent: the outage's messages come from MongoDB once
    // the far node is subscribed again, each once, in order.
    let mut seen = vec![seqs[0]];
    while seen.len() < seqs.len() {
        seen.push(far.next_event("message").await["seq"].as_u64().unwrap());
    }
    assert_eq!(seen, seqs);
    assert!(metric(&nodes[1], "herald_stream_repairs_total{reason=\"reconnect\"}").await >= 1);
    for node in &nodes {
        until_metric(node, "herald_redis_up", 1).await;
    }
    let last = sender.call("send", &send("lobby", "r-00000006", "after")).await;
    assert_eq!(far.next_event("message").await, last["ok"], "and live again");
}

#[tokio::test]
async fn a_message_that_never_reached_redis_is_found_by_the_position_check() {
    let redis = RedisServer::start().await;
    let db = fresh_db();
    let url = redis.url();
    let watched = [("HERALD_REDIS_URL", url.as_str()), ("HERALD_POSITION_CHECK", "200ms")];
    let node = spawn_app_in(&db, &watched).await;
    // A node that stores but can't publish: its Redis is not there (as
    // a node killed between its write and its publish).
    let nowhere = format!(
        "redis://127.0.0.1:{}",
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    );
    let cut_off = spawn_app_in(&db, &[("HERALD_REDIS_URL", nowhere.as_str())]).await;

    let mut member = SioClient::connect(node.addr).await;
    join(&mut member, "lobby").await;
    let mut sender = SioClient::connect(cut_off.addr).await;
    let sent = sender.call("send", &send("lobby", "p-00000001", "quiet")).await;
    assert!(sent.get("ok").is_some(), "stored and acked without Redis: {sent}");

    assert_eq!(member.next_event("message").await, sent["ok"], "the room's last message, found by the check");
    assert!(metric(&node, "herald_stream_repairs_total{reason=\"position_check\"}").await >= 1);
    assert_eq!(metric(&cut_off, "herald_redis_up").await, 0);
}

#[tokio::test]
async fn one_api_key_gets_the_configured_publish_rate_across_the_cluster() {
    let redis = RedisServer::start().await;
    // Low enough that each node's backends ask for several times the
    // rate even while every accepted publish waits for its write.
    let (rate, burst) = (20.0, 5.0);
    let limits = [("HERALD_PUBLISH_RATE", "20"), ("HERALD_PUBLISH_BURST", "5")];
    let nodes = cluster_with(&redis, 2, &limits).await;
    let started = std::time::Instant::now();
    let blast = std::time::Duration::from_secs(3);
    // Eight backends at each node, as fast as answers come.
    let mut tasks = Vec::new();
    for node in &nodes {
        for _ in 0..8 {
            let (http, url) = (node.http.clone(), node.url("/api/publish"));
            tasks.push(tokio::spawn(async move {
                let (mut accepted, mut limited, mut last_asked) = (0u64, 0u64, std::time::Duration::ZERO);
                while started.elapsed() < blast {
                    let body = json!({"broadcast": true, "data": {"n": accepted}});
                    last_asked = started.elapsed();
                    let response = http.post(&url).bearer_auth(API_KEY).json(&body).send().await.unwrap();
                    match response.status().as_u16() {
                        200 => accepted += 1,
                        429 => limited += 1,
                        other => panic!("publish answered {other}"),
                    }
                }
                (accepted, limited, last_asked)
            }));
        }
    }
    let (mut accepted, mut limited, mut asked_for) = (0, 0, std::time::Duration::ZERO);
    for task in tasks {
        let (a, l, last_asked) = task.await.unwrap();
        accepted += a;
        limited += l;
        asked_for = asked_for.max(last_asked);
    }
    // The rate applies while publishes are asked for: the answers to the
    // last ones (each waits for its write) come later, on a loaded machine
    // a good part of a second later.
    let elapsed = asked_for.as_secs_f64();
    let expected = burst + rate * elapsed;
    let ratio = accepted as f64 / expected;
    assert!(limited > accepted, "the backends asked for more than the rate: {accepted} accepted, {limited} limited");
    assert!(
        (0.9..=1.1).contains(&ratio),
        "{accepted} publishes accepted in {elapsed:.2} s by two nodes; the cluster's rate allows {expected:.0}"
    );
}

#[tokio::test]
async fn connections_that_carry_nothing_are_found_by_the_probe_and_replaced() {
    let redis = RedisServer::start().await;
    let proxy = Proxy::start(([127, 0, 0, 1], redis.port).into()).await;
    let db = fresh_db();
    let url = format!("redis://{}", proxy.addr);
    let settings =
        [("HERALD_REDIS_URL", url.as_str()), ("HERALD_REDIS_PROBE", "300ms"), ("HERALD_POSITION_CHECK", "10m")];
    let (near, far) = (spawn_app_in(&db, &settings).await, spawn_app_in(&db, &settings).await);
    let mut watcher = SioClient::connect(far.addr).await;
    join(&mut watcher, "lobby").await;
    let mut sender = SioClient::connect(near.addr).await;
    let first = sender.call("send", &send("lobby", "s-00000000", "before")).await;
    assert_eq!(watcher.next_event("message").await, first["ok"]);

    // Every connection to Redis stays open and carries nothing from now on;
    // new ones work.
    proxy.stall_open_connections();
    let mut seqs = vec![first["ok"]["seq"].as_u64().unwrap()];
    for i in 1..=3 {
        let reply = sender.call("send", &send("lobby", &format!("s-{i:08}"), "during")).await;
        seqs.push(reply["ok"]["seq"].as_u64().unwrap_or_else(|| panic!("{reply}")));
    }
    // Both nodes find out by their probes, connect again, and the far one
    // fills what it missed from MongoDB: nothing more needs to be sent.
    let mut seen = vec![seqs[0]];
    while seen.len() < seqs.len() {
        seen.push(watcher.next_event("message").await["seq"].as_u64().unwrap());
    }
    assert_eq!(seen, seqs);
    for node in [&near, &far] {
        assert!(metric(node, "herald_redis_events_total{outcome=\"probe_lost\"}").await >= 1);
    }
    let last = sender.call("send", &send("lobby", "s-00000004", "after")).await;
    assert_eq!(watcher.next_event("message").await, last["ok"], "live through the new connections");
}

/// Reads `client`'s presence snapshots until one is `(users, anonymous)`
/// (the names shown, the anonymous count).
async fn presence_until(client: &mut SioClient, names: &[&str], anonymous: u64) -> Value {
    loop {
        let snapshot = client.next_event("presence").await;
        if names_of(&snapshot) == names && snapshot["anonymous"] == anonymous {
            return snapshot;
        }
    }
}

/// The names a presence snapshot shows.
fn names_of(snapshot: &Value) -> Vec<&str> {
    snapshot["users"].as_array().unwrap().iter().map(|u| u["name"].as_str().unwrap()).collect()
}

async fn named(node: &TestApp, id: &str, name: &str) -> SioClient {
    named_at(node.addr, id, name).await
}

async fn named_at(addr: std::net::SocketAddr, id: &str, name: &str) -> SioClient {
    let t = token(TOKEN_SECRET, id, Some(name), 600);
    SioClient::try_connect(addr, Some(json!({"token": t})), None).await.expect("accepted")
}

async fn roster(node: &TestApp, room: &str) -> Value {
    let url = node.url(&format!("/api/presence/{room}"));
    let response = node.http.get(url).bearer_auth(API_KEY).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

#[tokio::test]
async fn presence_is_the_rooms_across_nodes_and_comes_back_after_redis_restarts_empty() {
    let mut redis = RedisServer::start().await;
    let nodes = cluster_with(&redis, 2, &[("HERALD_PRESENCE_TTL", "3s")]).await;
    let mut watcher = SioClient::connect(nodes[0].addr).await;
    join(&mut watcher, "den").await;
    presence_until(&mut watcher, &[], 1).await;

    // Alice on the other node, twice (two tabs), and on this one: one user.
    let mut alice_b = named(&nodes[1], "63", "Alice").await;
    join(&mut alice_b, "den").await;
    presence_until(&mut watcher, &["Alice"], 1).await;
    let mut alice_b2 = named(&nodes[1], "63", "Alice").await;
    join(&mut alice_b2, "den").await;
    let mut bob_a = named(&nodes[0], "64", "Bob").await;
    join(&mut bob_a, "den").await;
    let snapshot = presence_until(&mut alice_b, &["Alice", "Bob"], 1).await;
    assert_eq!(snapshot["user_count"], 2, "Alice's two tabs count once: {snapshot}");
    let api = roster(&nodes[1], "den").await;
    assert_eq!(api["users"], json!([{"id": "63", "name": "Alice"}, {"id": "64", "name": "Bob"}]), "{api}");
    assert_eq!(api["anonymous"], 1);

    // One tab closes: Alice is still there. The other leaves: she is gone
    // on the far node too.
    alice_b2.disconnect();
    alice_b.call("leave", &json!({"room": "den"})).await;
    presence_until(&mut watcher, &["Bob"], 1).await;
    join(&mut alice_b, "den").await;
    presence_until(&mut watcher, &["Alice", "Bob"], 1).await;

    // Redis comes back with nothing: every node writes its members again and
    // the rooms are told.
    redis.kill().await;
    until_metric(&nodes[0], "herald_redis_up", 0).await;
    redis.start_again().await;
    // (A snapshot told before the crash may still be on its way: the
    // roster, read from Redis, says when the far node wrote Alice again.)
    loop {
        presence_until(&mut watcher, &["Alice", "Bob"], 1).await;
        if roster(&nodes[0], "den").await["user_count"] == 2 {
            break;
        }
    }
}

/// Four senders, two on each node, send 250 messages each into one room
/// as fast as their acks come back. Every listener on either node (two
/// that joined the empty room, one that joins midway from a seq it learnt)
/// ends with exactly the room's stored messages, each once, in order: the
/// nodes' sequencers put what Redis brings from the other node back in the
/// room's order, and a join's catch-up meets the live events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_senders_on_two_nodes_every_listener_has_the_rooms_order() {
    let _alone = ONE_AT_A_TIME.lock().await;
    const ROOM: &str = "order";
    const EACH: usize = 250;
    let redis = RedisServer::start().await;
    let nodes = cluster_with(&redis, 2, UNLIMITED).await;
    let mut listeners = Vec::new();
    for node in [&nodes[0], &nodes[0], &nodes[1], &nodes[1]] {
        let mut client = SioClient::connect(node.addr).await;
        let joined = client.call("join", &json!({"room": ROOM, "since": 0})).await;
        assert_eq!(joined["ok"]["head"], 0, "{joined}");
        listeners.push((client, Vec::new()));
    }
    let mut midway = SioClient::connect(nodes[1].addr).await;

    let (acked_tx, mut acked) = tokio::sync::watch::channel(0u64);
    let acked_tx = std::sync::Arc::new(acked_tx);
    let mut senders = Vec::new();
    for s in 0..4 {
        let mut client = SioClient::connect(nodes[s % 2].addr).await;
        let acked_tx = acked_tx.clone();
        senders.push(tokio::spawn(async move {
            let mut seqs = Vec::with_capacity(EACH);
            for i in 0..EACH {
                let reply = client.call("send", &send(ROOM, &format!("s{s}-{i:06}"), "hi")).await;
                seqs.push(seq_of(reply.get("ok").unwrap_or_else(|| panic!("sender {s}, send {i}: {reply}"))));
                acked_tx.send_modify(|n| *n += 1);
            }
            (client, seqs)
        }));
    }

    // Midway, from the 250th message the first listener heard.
    let (first, first_seqs) = &mut listeners[0];
    read_until(first, "message", 250, first_seqs, "listener 0").await;
    let since = first_seqs[first_seqs.len() / 2];
    acked_at_least(&mut acked, 500).await;
    let joined = midway.call("join", &json!({"room": ROOM, "since": since})).await;
    let mut midway_seqs = seqs_of(&joined["ok"]["messages"]);

    let mut acked_seqs = Vec::new();
    let mut last = None;
    for sender in senders {
        let (client, seqs) = sender.await.expect("a sender failed");
        acked_seqs.extend(seqs);
        last = Some(client);
    }
    let marker = last.unwrap().call("send", &send(ROOM, "marker-000001", "end")).await;
    let head = seq_of(&marker["ok"]);
    acked_seqs.push(head);
    for (i, (client, seqs)) in listeners.iter_mut().enumerate() {
        read_until(client, "message", head, seqs, &format!("listener {i}")).await;
    }
    read_until(&mut midway, "message", head, &mut midway_seqs, "the midway joiner").await;

    let stored = nodes[0].room_seqs(ROOM).await;
    assert_eq!(stored.len(), 4 * EACH + 1, "every send stored once");
    assert_same_set(&acked_seqs, &stored, "the acks");
    for (i, (_, seqs)) in listeners.iter().enumerate() {
        let who = format!("listener {i} (node {})", i / 2);
        assert_increasing(seqs, &who);
        assert_same_set(seqs, &stored, &who);
    }
    assert_increasing(&midway_seqs, "the midway joiner");
    let after: Vec<u64> = stored.iter().copied().filter(|&seq| seq > since).collect();
    assert_same_set(&midway_seqs, &after, "the midway joiner");
}

/// The nodes reach Redis through a proxy that cuts the link for 5 s,
/// closing every connection and refusing new ones: sends during the cut
/// are acked, the far node's listener has them in order within seconds of
/// the link's return, and presence changed during the cut is told.
#[tokio::test]
async fn a_five_second_cut_to_redis_loses_nothing_and_presence_is_right_after() {
    let redis = RedisServer::start().await;
    let proxy = Proxy::start(([127, 0, 0, 1], redis.port).into()).await;
    let url = format!("redis://{}", proxy.addr);
    let db = fresh_db();
    let mut nodes = Vec::new();
    for id in ["near", "far"] {
        let settings = [("HERALD_REDIS_URL", url.as_str()), ("HERALD_NODE_ID", id), ("HERALD_PRESENCE_TTL", "3s")];
        nodes.push(spawn_app_in(&db, &settings).await);
    }
    let mut far = named(&nodes[1], "65", "Far").await;
    join(&mut far, "cut").await;
    let mut sender = named(&nodes[0], "66", "Near").await;
    join(&mut sender, "cut").await;
    presence_until(&mut far, &["Far", "Near"], 0).await;
    let first = sender.call("send", &send("cut", "c-00000000", "before")).await;
    assert_eq!(far.next_event("message").await["seq"], first["ok"]["seq"]);

    proxy.cut();
    until_metric(&nodes[0], "herald_redis_up", 0).await;
    let mut stored = Vec::new();
    for i in 1..=5 {
        let reply = sender.call("send", &send("cut", &format!("c-{i:08}"), "during")).await;
        stored.push(seq_of(reply.get("ok").unwrap_or_else(|| panic!("acked while Redis is cut off: {reply}"))));
    }
    let mut alice = named(&nodes[0], "63", "Alice").await;
    join(&mut alice, "cut").await;
    // The length of the outage is what this test is about.
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    proxy.restore();
    let back = tokio::time::Instant::now();

    // The messages and the room's new presence, in whatever order they come.
    let (mut seen, mut present) = (Vec::new(), false);
    while seen.len() < stored.len() || !present {
        match far.next_any().await {
            (event, message) if event == "message" => seen.push(seq_of(&message)),
            (event, snapshot) if event == "presence" => present = names_of(&snapshot) == ["Alice", "Far", "Near"],
            _ => {}
        }
    }
    assert_eq!(seen, stored, "every send of the cut, in order");
    let took = back.elapsed();
    assert!(took < std::time::Duration::from_secs(5), "repaired {took:?} after the link came back");
    until_metric(&nodes[1], "herald_redis_up", 1).await;
    let live = sender.call("send", &send("cut", "c-00000099", "after")).await;
    assert_eq!(far.next_event("message").await["seq"], live["ok"]["seq"], "live again");
}

/// Node B is a real process, killed with SIGKILL while messages flow from
/// both nodes. Its clients reconnect to node A and, with what they had,
/// end with every stored message once and in order (every acked one among
/// them); a client of B that never comes back leaves the room's presence
/// within the presence TTL and a little.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_stream_loses_its_clients_nothing_and_leaves_presence() {
    let _alone = ONE_AT_A_TIME.lock().await;
    const ROOM: &str = "kill";
    let redis = RedisServer::start().await;
    let url = redis.url();
    let db = fresh_db();
    let mut settings = vec![("HERALD_REDIS_URL", url.as_str()), ("HERALD_PRESENCE_TTL", "3s")];
    settings.extend_from_slice(UNLIMITED);
    let mut a_settings = settings.clone();
    a_settings.push(("HERALD_NODE_ID", "a"));
    let a = spawn_app_in(&db, &a_settings).await;
    let mut b_settings = settings.clone();
    b_settings.extend([("HERALD_NODE_ID", "b"), ("HERALD_PRESENCE_INTERVAL", "100ms")]);
    let mut b = Running::start(&db, &b_settings).await;

    let mut watcher = named(&a, "70", "Watcher").await;
    join(&mut watcher, ROOM).await;
    let mut gone = named_at(b.addr, "71", "Gone").await;
    join(&mut gone, ROOM).await;
    let mut victims = Vec::new();
    for v in 0..3 {
        let mut client = named_at(b.addr, &format!("8{v}"), &format!("V{v}")).await;
        join(&mut client, ROOM).await;
        victims.push((client, Vec::<u64>::new()));
    }
    presence_until(&mut watcher, &["Gone", "V0", "V1", "V2", "Watcher"], 0).await;

    let mut sender_a = SioClient::connect(a.addr).await;
    let from_a = tokio::spawn(async move {
        let mut acked = Vec::new();
        for i in 0..300 {
            let reply = sender_a.call("send", &send(ROOM, &format!("a-{i:08}"), "a")).await;
            acked.push(seq_of(&reply["ok"]));
        }
        (sender_a, acked)
    });
    let mut sender_b = SioClient::connect(b.addr).await;
    let from_b = tokio::spawn(async move {
        let mut acked = Vec::new();
        for i in 0..300 {
            let answer = sender_b.emit("send", &send(ROOM, &format!("b-{i:08}"), "b"));
            // Its node is killed midway: the ack of the send in flight
            // never comes.
            match tokio::time::timeout(std::time::Duration::from_secs(3), answer).await {
                Ok(Ok(reply)) => acked.push(seq_of(&reply["ok"])),
                _ => break,
            }
        }
        acked
    });

    // Mid-stream: once the victims heard 60 messages.
    let (first, seqs) = &mut victims[0];
    read_until(first, "message", 60, seqs, "victim 0").await;
    b.kill().await;
    let killed = tokio::time::Instant::now();

    // Each victim reads what reached it, then reconnects to A and joins
    // from the newest message it has, as a client does.
    let mut rejoined = Vec::new();
    for (v, (mut client, mut seqs)) in victims.into_iter().enumerate() {
        while let Some(message) = client.next_event_or_closed("message").await {
            seqs.push(seq_of(&message));
        }
        let since = seqs.last().copied().unwrap_or(0);
        let mut again = named(&a, &format!("8{v}"), &format!("V{v}")).await;
        let joined = again.call("join", &json!({"room": ROOM, "since": since})).await;
        assert_eq!(joined["ok"]["truncated"], false, "{joined}");
        seqs.extend(seqs_of(&joined["ok"]["messages"]));
        rejoined.push((again, seqs));
    }
    // Gone never comes back: A takes B's entries out once they expire.
    presence_until(&mut watcher, &["V0", "V1", "V2", "Watcher"], 0).await;
    let took = killed.elapsed();
    assert!(took < std::time::Duration::from_secs(3 + 3), "the dead node's members left after {took:?}");
    drop(gone);

    let (mut sender_a, mut acked) = from_a.await.unwrap();
    let acked_b = from_b.await.unwrap();
    assert!(!acked_b.is_empty(), "B took sends before it was killed");
    acked.extend(acked_b);
    let marker = sender_a.call("send", &send(ROOM, "marker-000001", "end")).await;
    let head = seq_of(&marker["ok"]);
    acked.push(head);
    let stored = a.room_seqs(ROOM).await;
    assert!(acked.iter().all(|seq| stored.contains(seq)), "every acked send is stored");
    for (v, (client, seqs)) in rejoined.iter_mut().enumerate() {
        let who = format!("victim {v}");
        read_until(client, "message", head, seqs, &who).await;
        assert_increasing(seqs, &who);
        assert_same_set(seqs, &stored, &who);
    }
}

/// A node stopped with SIGTERM takes its members out of every room's
/// presence as it drains: the other node's members hear at once, not after
/// the presence TTL (ten minutes here).
#[tokio::test]
async fn a_draining_node_leaves_the_rooms_presence_before_it_exits() {
    let redis = RedisServer::start().await;
    let url = redis.url();
    let db = fresh_db();
    let common = [("HERALD_REDIS_URL", url.as_str()), ("HERALD_PRESENCE_TTL", "600s")];
    let a = spawn_app_in(&db, &[common[0], common[1], ("HERALD_NODE_ID", "a")]).await;
    let mut b =
        Running::start(&db, &[common[0], common[1], ("HERALD_NODE_ID", "b"), ("HERALD_PRESENCE_INTERVAL", "100ms")])
            .await;
    let mut watcher = named(&a, "70", "Watcher").await;
    join(&mut watcher, "drain").await;
    let mut leaving = named_at(b.addr, "71", "Leaving").await;
    join(&mut leaving, "drain").await;
    presence_until(&mut watcher, &["Leaving", "Watcher"], 0).await;

    let (_, status) = b.terminate().await;
    assert!(status.success(), "{status:?}: {:#?}", b.seen);
    presence_until(&mut watcher, &["Watcher"], 0).await;
    assert_eq!(roster(&a, "drain").await["user_count"], 1, "B's entry is gone from Redis too");
}

async fn api(node: &TestApp, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
    let mut request = node.http.request(method, node.url(path)).bearer_auth(API_KEY);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.unwrap()
}

#[tokio::test]
async fn the_server_api_acts_on_every_node() {
    let redis = RedisServer::start().await;
    let nodes = cluster(&redis, 2).await;

    // A removal through node 0 reaches a member on node 1, whose window
    // forgets it too.
    let mut sender = SioClient::connect(nodes[0].addr).await;
    let mut member = SioClient::connect(nodes[1].addr).await;
    join(&mut member, "mod").await;
    for i in 1..=3 {
        sender.call("send", &send("mod", &format!("mod-{i:05}"), &format!("m{i}"))).await;
    }
    for _ in 0..3 {
        member.next_event("message").await;
    }
    api(&nodes[0], reqwest::Method::DELETE, "/api/rooms/mod/messages/2", None).await;
    assert_eq!(member.next_event("message_removed").await, json!({"room": "mod", "seq": 2}));
    let mut newcomer = SioClient::connect(nodes[1].addr).await;
    let joined = newcomer.call("join", &json!({"room": "mod", "since": 0})).await;
    assert_eq!(seqs_of(&joined["ok"]["messages"]), [1, 3], "node 1's window forgot it: {joined}");

    // A user disconnected through node 1 loses their tabs on both nodes.
    let mut tab_a = user(&nodes[0], "alice").await;
    let mut tab_b = user(&nodes[1], "alice").await;
    until_online(&nodes[1], "alice", 2).await;
    let answer =
        api(&nodes[1], reqwest::Method::POST, "/api/users/alice/disconnect", Some(json!({"reason": "bye"}))).await;
    assert_eq!(answer["connections"], 2, "{answer}");
    for tab in [&mut tab_a, &mut tab_b] {
        assert_eq!(tab.next_event("closing").await["reason"], "disconnected");
        tab.closed().await;
    }

    // A room made private through node 0 takes out a member on node 1 the
    // settings do not list.
    let mut bob = user(&nodes[1], "bob").await;
    join(&mut bob, "den").await;
    api(
        &nodes[0],
        reqwest::Method::PUT,
        "/api/rooms/den/settings",
        Some(json!({"private": true, "users": ["carol", "dave"]})),
    )
    .await;
    let removed = bob.next_event("removed").await;
    assert_eq!((removed["room"].as_str(), removed["code"].as_str()), (Some("den"), Some("forbidden")));
    let mut carol = user(&nodes[1], "carol").await;
    join(&mut carol, "den").await;

    // Active rooms count the members of every node.
    let mut dave = user(&nodes[0], "dave").await;
    join(&mut dave, "den").await;
    while carol.next_event("presence").await["user_count"] != 2 {}
    let rooms = api(&nodes[0], reqwest::Method::GET, "/api/rooms", None).await;
    let den = rooms["rooms"].as_array().unwrap().iter().find(|r| r["room"] == "den").cloned();
    assert_eq!(den, Some(json!({"room": "den", "user_count": 2, "anonymous": 0, "private": true})), "{rooms}");
}
