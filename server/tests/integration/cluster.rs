//! Several nodes over one MongoDB database and one real `redis-server`:
//! events stored on one node reach the sockets of the others.

use std::collections::BTreeSet;

use crate::common::proxy::Proxy;
use crate::common::redis::RedisServer;
use crate::common::sio::SioClient;
use crate::common::{API_KEY, TOKEN_SECRET, TestApp, fresh_db, metric, spawn_app_in, token};
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
                let (mut accepted, mut limited) = (0u64, 0u64);
                while started.elapsed() < blast {
                    let body = json!({"broadcast": true, "data": {"n": accepted}});
                    let response = http.post(&url).bearer_auth(API_KEY).json(&body).send().await.unwrap();
                    match response.status().as_u16() {
                        200 => accepted += 1,
                        429 => limited += 1,
                        other => panic!("publish answered {other}"),
                    }
                }
                (accepted, limited)
            }));
        }
    }
    let (mut accepted, mut limited) = (0, 0);
    for task in tasks {
        let (a, l) = task.await.unwrap();
        accepted += a;
        limited += l;
    }
    let elapsed = started.elapsed().as_secs_f64();
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
        let shown: Vec<&str> =
            snapshot["users"].as_array().unwrap().iter().map(|u| u["name"].as_str().unwrap()).collect();
        if shown == names && snapshot["anonymous"] == anonymous {
            return snapshot;
        }
    }
}

async fn named(node: &TestApp, id: &str, name: &str) -> SioClient {
    let t = token(TOKEN_SECRET, id, Some(name), 600);
    SioClient::try_connect(node.addr, Some(json!({"token": t})), None).await.expect("accepted")
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
