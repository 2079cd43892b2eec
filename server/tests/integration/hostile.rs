//! A hostile client: every event, every byte and every id it can send is
//! bounded, and nothing it does costs anyone else their service.
//!
//! Each test names the bound it proves; `docs/ARCHITECTURE.md` ("A hostile
//! client") lists them all.

use std::time::{Duration, Instant};

use crate::common::process::Running;
use crate::common::sio::{SioClient, WAIT, raw_socketio, unread_socketio};
use crate::common::{
    API_KEY, TOKEN_SECRET, TestApp, form_field, metric, metric_at, read_bytes_until_closed, spawn_app, spawn_app_with,
    token,
};
use futures::{SinkExt, StreamExt};
use mongodb::bson::{DateTime, Document, doc};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;

/// Stores `count` messages of `chars` characters in `room` directly, as if
/// they had been sent.
async fn fill_room(db: &mongodb::Database, room: &str, count: i64, chars: usize) {
    let body = "é".repeat(chars);
    let docs: Vec<Document> = (1..=count)
        .map(|seq| {
            doc! {"room": room, "seq": seq, "client_id": format!("fill-{seq:06}"), "name": "Filler",
            "body": &body, "at": DateTime::now()}
        })
        .collect();
    db.collection::<Document>("messages").insert_many(docs).await.unwrap();
    db.collection::<Document>("room_heads").insert_one(doc! {"_id": room, "seq": count}).await.unwrap();
}

// 1. Replies are bounded like broadcasts.
#[tokio::test]
async fn a_socket_that_never_reads_and_keeps_joining_is_let_go_and_the_server_holds_no_more() {
    let db = format!("test_hostile_{}", server::ids::random_hex::<6>());
    // No event budget: this is about what replies cost, not how often one
    // may ask.
    let herald = Running::start(&db, &[("HERALD_EVENT_RATE", "0")]).await;
    let base = format!("http://{}", herald.addr);
    let http = reqwest::Client::new();
    let mongo = mongodb::Client::with_uri_str(std::env::var("HERALD_TEST_MONGO_URI").unwrap()).await.unwrap();
    // 500 messages of 2,000 two-byte characters: a 2 MB catch-up.
    fill_room(&mongo.database(&db), "big", 500, 2000).await;

    // A well-behaved reader first, so that the server's pools and buffers
    // are warm before the baseline is read.
    let mut reader = SioClient::connect(herald.addr).await;
    let joined = reader.call("join", &json!({"room": "big", "since": 0})).await;
    assert_eq!(joined["ok"]["messages"].as_array().map(Vec::len), Some(500));
    let rss_before = herald.rss_kib();
    let store_ops_before = metric_at(&http, &base, "herald_store_duration_seconds_count").await;

    let mut hostile = unread_socketio(herald.addr).await;
    let started = Instant::now();
    let mut sent = 0;
    // It writes a join every millisecond, leaving in between so that each
    // join is a fresh catch-up (a re-join without leaving is answered from
    // memory), and never reads. The server cuts it (at most
    // SLOW_CONSUMER_GRACE after it fell behind), and the writes then fail.
    let mut pace = tokio::time::interval(Duration::from_millis(1));
    let cut = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            pace.tick().await;
            sent += 1;
            let frame = format!("42{sent}[\"join\",{{\"room\":\"big\",\"since\":0}}]");
            let leave = format!("42{}[\"leave\",{{\"room\":\"big\"}}]", 1_000_000 + sent);
            if hostile.send(Message::text(frame)).await.is_err() || hostile.send(Message::text(leave)).await.is_err() {
                return;
            }
        }
    })
    .await;
    assert!(cut.is_ok(), "the connection was cut ({sent} joins sent in {:?})", started.elapsed());
    let rss_after = herald.rss_kib();
    let store_ops = metric_at(&http, &base, "herald_store_duration_seconds_count").await - store_ops_before;
    let growth_kib = rss_after.saturating_sub(rss_before);
    println!(
        "hostile joins: {sent} sent, cut after {:?}; server RSS {rss_before} KiB -> {rss_after} KiB \
         (+{growth_kib} KiB); {store_ops} store operations",
        started.elapsed()
    );
    assert_eq!(metric_at(&http, &base, "herald_slow_consumer_disconnects_total").await, 1);
    // What it may hold: its budget, two unread catch-ups of 2 MB, and one
    // being read and encoded (a few transient copies of 2 MB); the
    // allocator keeps some of that after it is freed. Unbounded, each join
    // would have added 2 MB.
    assert!(growth_kib < 16 * 1024, "the server held {growth_kib} KiB more for a socket that never read");
    // Each catch-up is one read. The kernel's socket buffers (up to 4 MB on
    // loopback) take the first one or two; once Herald held more than the
    // budget for it and it asked again, it was served nothing more.
    assert!(store_ops <= 4, "{store_ops} catch-ups read for {sent} joins");

    // Everyone else is still served.
    let again = reader.call("join", &json!({"room": "big", "since": 499})).await;
    assert_eq!(again["ok"]["head"], 500, "{again}");
}

#[tokio::test]
async fn a_slow_reader_may_ask_for_a_big_catch_up_and_a_sync_at_once() {
    let app = spawn_app().await;
    fill_room(&app.db, "big", 500, 2000).await;
    // As a page connects: join (a 2 MB catch-up) and sync, both at once,
    // over a connection that reads slowly.
    let mut ws = unread_socketio(app.addr).await;
    ws.send(Message::text("421[\"join\",{\"room\":\"big\",\"since\":0}]")).await.unwrap();
    ws.send(Message::text("422[\"sync\",{}]")).await.unwrap();
    // Only then does it read: both answers come, and no `closing`.
    let mut answered = Vec::new();
    while answered.len() < 2 {
        let message = tokio::time::timeout(WAIT, ws.next()).await.expect("an answer in time").unwrap().unwrap();
        let text = message.to_text().unwrap();
        assert!(!text.contains("closing"), "let go: {}", &text[..text.len().min(200)]);
        if let Some(ack) = text.strip_prefix("43") {
            let id: String = ack.chars().take_while(char::is_ascii_digit).collect();
            let reply: Value = serde_json::from_str(&ack[id.len()..]).unwrap();
            assert!(reply[0].get("ok").is_some(), "ack {id}");
            answered.push(id);
        }
    }
    answered.sort();
    assert_eq!(answered, ["1", "2"]);
    assert_eq!(metric(&app, "herald_slow_consumer_disconnects_total").await, 0);
}

#[tokio::test]
async fn a_join_of_a_room_the_socket_is_in_reads_nothing() {
    let app = spawn_app().await;
    fill_room(&app.db, "again", 20, 10).await;
    let mut client = SioClient::connect(app.addr).await;
    let first = client.call("join", &json!({"room": "again", "since": 0})).await;
    assert_eq!(first["ok"]["messages"].as_array().map(Vec::len), Some(20));
    let ops = metric(&app, "herald_store_duration_seconds_count").await;
    let again = client.call("join", &json!({"room": "again", "since": 0})).await;
    assert_eq!(again["ok"]["messages"], json!([]), "{again}");
    assert_eq!(again["ok"]["head"], 20);
    assert_eq!(metric(&app, "herald_store_duration_seconds_count").await, ops, "answered from memory");
    // After a leave, a join reads again.
    client.call("leave", &json!({"room": "again"})).await;
    let back = client.call("join", &json!({"room": "again", "since": 15})).await;
    assert_eq!(back["ok"]["messages"].as_array().map(Vec::len), Some(5));
}

// 2. WebSocket frames are bounded by the configured payload size.
#[tokio::test]
async fn a_websocket_frame_over_the_payload_limit_closes_with_1009_before_it_is_read_whole() {
    let app = spawn_app().await;
    let mut ws = raw_socketio(app.addr, tokio::net::TcpStream::connect(app.addr).await.unwrap()).await;

    // By hand: the head of a masked 1 MB text frame and its first 1 KB. The
    // rest never comes, so an answer proves the server did not wait for it.
    let tokio_tungstenite::MaybeTlsStream::Plain(raw) = ws.get_mut() else { unreachable!() };
    let declared: u64 = 1024 * 1024;
    let mut frame = vec![0x81, 0x80 | 127];
    frame.extend_from_slice(&declared.to_be_bytes());
    frame.extend_from_slice(&[0, 0, 0, 0]); // mask key 0: the payload goes as is
    frame.extend_from_slice(b"42[\"send\",{\"room\":\"lobby\",\"client_id\":\"huge-frame\",\"name\":\"x\",\"body\":\"");
    frame.extend(std::iter::repeat_n(b'x', 1024));
    raw.write_all(&frame).await.unwrap();

    // The server closes the connection without waiting for the rest.
    let answer = read_bytes_until_closed(raw).await;
    // A close frame (opcode 8) whose status is 1009, "message too big".
    let close = answer.windows(4).any(|w| w[0] == 0x88 && w[1] >= 2 && u16::from_be_bytes([w[2], w[3]]) == 1009);
    assert!(close, "expected a close frame with status 1009, got {answer:?}");
    assert_eq!(app.count_all().await, 0, "nothing was stored");
    SioClient::connect(app.addr).await;
}

// 3. Every client event costs from one budget.
#[tokio::test]
async fn while_one_socket_floods_sync_another_clients_sends_are_all_acknowledged_in_time() {
    const SENDS: usize = 20;
    const FLOOD: u64 = 5000;
    let store_timeout = Duration::from_secs(5);
    let app =
        spawn_app_with(&[("HERALD_EVENT_RATE", "20"), ("HERALD_EVENT_BURST", "60"), ("HERALD_STORE_TIMEOUT", "5s")])
            .await;
    let flooder = SioClient::connect(app.addr).await;
    let mut chatter = SioClient::connect(app.addr).await;
    assert!(chatter.call("join", &json!({"room": "calm", "since": 0})).await.get("ok").is_some());

    // As fast as it can, reading its answers: 200 syncs at a time, the next
    // 200 as soon as the answers are in.
    let flood = tokio::spawn(async move {
        let mut flooder = flooder;
        for id in 1..=FLOOD {
            flooder.send_raw(format!("42{id}[\"sync\",{{}}]"));
            if id % 200 == 0 {
                flooder.answered_at_least(id - 100, Duration::from_secs(60)).await;
            }
        }
        flooder.answered_at_least(FLOOD, Duration::from_secs(60)).await;
        flooder
    });
    let mut slowest = Duration::ZERO;
    for i in 0..SENDS {
        let started = Instant::now();
        let ack = chatter
            .call("send", &json!({"room": "calm", "client_id": format!("calm-msg-{i:03}"), "name": "c", "body": "hi"}))
            .await;
        let took = started.elapsed();
        slowest = slowest.max(took);
        assert!(ack.get("ok").is_some(), "send {i} during the flood: {ack}");
        assert!(took < store_timeout, "send {i} took {took:?}");
    }
    // Every sync of the flood is answered, most at once with a refusal.
    let flooder = flood.await.unwrap();
    let refusals = flooder.refusals();
    let limited = metric(&app, "herald_rate_limited_total{limit=\"event_rate\"}").await;
    let in_flight = metric(&app, "herald_rate_limited_total{limit=\"requests_in_flight\"}").await;
    assert_eq!(refusals.get("rate_limited").copied().unwrap_or_default(), limited + in_flight, "{refusals:?}");
    println!(
        "sync flood: {FLOOD} syncs sent, {limited} over the event budget, {in_flight} over the in-flight cap; \
              the other client's {SENDS} sends all ok, slowest ack {slowest:?}"
    );
    assert!(limited + in_flight > FLOOD / 2, "the flood was refused ({limited} + {in_flight} of {FLOOD})");
    assert_eq!(app.count_messages(doc! {"room": "calm"}).await, SENDS as u64);
}

#[tokio::test]
async fn an_event_over_the_budget_is_answered_rate_limited_with_a_wait() {
    let app = spawn_app_with(&[("HERALD_EVENT_RATE", "1"), ("HERALD_EVENT_BURST", "10")]).await;
    let mut client = SioClient::connect(app.addr).await;
    // join (5) and sync (5) spend the burst; a leave (1) is then over it.
    assert!(client.call("join", &json!({"room": "budget"})).await.get("ok").is_some());
    assert!(client.call("sync", &json!({})).await.get("ok").is_some());
    let refused = client.call("leave", &json!({"room": "budget"})).await;
    assert_eq!(refused["error"]["code"], "rate_limited", "{refused}");
    let wait = refused["error"]["retry_after_ms"].as_u64().expect("retry_after_ms");
    assert!((1..=1000).contains(&wait), "{wait}");
}

// 4. Presence cannot be turned into a storm.
#[tokio::test]
async fn a_join_leave_loop_beside_a_crowd_cuts_nobody_and_sends_each_member_a_bounded_number_of_snapshots() {
    const MEMBERS: usize = 500;
    const CYCLES: usize = 1000;
    let interval = Duration::from_secs(1);
    let app = spawn_app_with(&[
        ("HERALD_PRESENCE_INTERVAL", "1s"),
        ("HERALD_EVENT_RATE", "20"),
        ("HERALD_EVENT_BURST", "60"),
        ("HERALD_CONNECTIONS_PER_IP", "0"),
    ])
    .await;
    let started = Instant::now();
    let mut members = Vec::with_capacity(MEMBERS);
    for _ in 0..MEMBERS {
        let mut member = SioClient::connect(app.addr).await;
        let joined = member.call("join", &json!({"room": "crowd"})).await;
        assert!(joined.get("ok").is_some(), "{joined}");
        members.push(member);
    }
    let mut cycler = SioClient::connect(app.addr).await;
    let mut refused = 0;
    for _ in 0..CYCLES {
        for event in ["join", "leave"] {
            let ack = cycler.call(event, &json!({"room": "crowd"})).await;
            if ack["error"]["code"] == "rate_limited" {
                refused += 1;
            } else {
                assert!(ack.get("ok").is_some(), "{ack}");
            }
        }
    }
    // A marker everyone gets after the storm.
    let marker = app
        .http
        .post(app.url("/api/publish"))
        .bearer_auth(API_KEY)
        .json(&json!({"room": "crowd", "message": "after the storm"}))
        .send()
        .await
        .unwrap();
    assert_eq!(marker.status(), 200);
    let elapsed = started.elapsed();
    let mut most = 0;
    for member in &mut members {
        let mut snapshots = 0;
        loop {
            let (event, data) = member.next_any().await;
            match event.as_str() {
                "presence" => snapshots += 1,
                "message" if data["body"] == "after the storm" => break,
                _ => {}
            }
        }
        most = most.max(snapshots);
    }
    let bound = (elapsed.as_secs_f64() / interval.as_secs_f64()).ceil() as usize + 2;
    println!(
        "presence storm: {MEMBERS} members, {CYCLES} join/leave cycles ({refused} of {} refused by the budget) \
         in {elapsed:?}; at most {most} snapshots per member (bound {bound}); {} snapshots sent in all",
        CYCLES * 2,
        metric(&app, "herald_presence_snapshots_total").await
    );
    assert_eq!(metric(&app, "herald_slow_consumer_disconnects_total").await, 0, "no member was cut");
    assert!(most <= bound, "a member got {most} presence snapshots in {elapsed:?}");
}

// 5. Made-up session ids cost nothing.
#[tokio::test]
async fn invented_session_ids_leave_no_upgrade_behind() {
    const REQUESTS: usize = 10_000;
    let app = spawn_app().await;
    let http = app.http.clone();
    let addr = app.addr;
    futures::stream::iter(0..REQUESTS)
        .for_each_concurrent(32, |i| {
            let http = http.clone();
            async move {
                let url = format!("http://{addr}/socket.io/?EIO=4&transport=websocket&sid={i:016}");
                let status = http.get(url).send().await.unwrap().status();
                assert!(status.is_client_error(), "{status}");
            }
        })
        .await;
    // Real WebSocket upgrades naming sessions that don't exist: accepted at
    // the HTTP level, then closed by Socket.IO.
    for i in 0..50 {
        let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket&sid=invented{i:08}");
        if let Ok((mut ws, _)) = tokio_tungstenite::connect_async(url).await {
            let end = tokio::time::timeout(WAIT, async { while let Some(Ok(_)) = ws.next().await {} }).await;
            assert!(end.is_ok(), "an upgrade for an unknown session is closed");
        }
    }
    // Each record goes with its connection, before the client sees it end.
    assert_eq!(metric(&app, "herald_upgrades_tracked").await, 0, "nothing is tracked for sessions that don't exist");

    // A real upgrade is tracked while it lives, and forgotten after.
    let base = app.url("/socket.io/?EIO=4&transport=polling");
    let open = app.http.get(&base).send().await.unwrap().text().await.unwrap();
    let sid =
        serde_json::from_str::<Value>(open.strip_prefix('0').unwrap()).unwrap()["sid"].as_str().unwrap().to_owned();
    assert_eq!(app.http.post(format!("{base}&sid={sid}")).body("40").send().await.unwrap().status(), 200);
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{addr}/socket.io/?EIO=4&transport=websocket&sid={sid}"))
            .await
            .unwrap();
    ws.send(Message::text("2probe")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap().to_text().unwrap(), "3probe");
    ws.send(Message::text("5")).await.unwrap();
    // Recorded when the 101 was answered, before the client got it.
    assert_eq!(metric(&app, "herald_upgrades_tracked").await, 1);
    ws.close(None).await.unwrap();
    let end = tokio::time::timeout(WAIT, async { while let Some(Ok(_)) = ws.next().await {} }).await;
    assert!(end.is_ok(), "the server closes the connection");
    assert_eq!(metric(&app, "herald_upgrades_tracked").await, 0, "forgotten when its connection closes");
}

// 6. Engine.IO sessions are capped.
#[tokio::test]
async fn handshakes_past_the_per_ip_cap_get_429_with_a_reason_until_the_connect_timeout_frees_them() {
    let app = spawn_app_with(&[("HERALD_HANDSHAKES_PER_IP", "3"), ("HERALD_CONNECT_TIMEOUT", "1s")]).await;
    let handshake = app.url("/socket.io/?EIO=4&transport=polling");
    let mut sids = Vec::new();
    for _ in 0..3 {
        let open = app.http.get(&handshake).send().await.unwrap();
        assert_eq!(open.status(), 200);
        let open = open.text().await.unwrap();
        sids.push(serde_json::from_str::<Value>(open.strip_prefix('0').unwrap()).unwrap()["sid"].to_string());
    }
    let refused = app.http.get(&handshake).send().await.unwrap();
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    assert!(refused.text().await.unwrap().contains("too many Socket.IO handshakes"));
    let ws = tokio_tungstenite::connect_async(format!("ws://{}/socket.io/?EIO=4&transport=websocket", app.addr)).await;
    assert!(ws.unwrap_err().to_string().contains("429"), "WebSocket handshakes count too");
    assert_eq!(metric(&app, "herald_rate_limited_total{limit=\"handshakes_per_ip\"}").await, 2);

    // The sessions that never connected are closed at the connect timeout:
    // each poll is answered by the session's next packet (its pings), the
    // last one by its end. Their places were taken before the sessions
    // began, for as long, so they are back by then.
    for sid in &sids {
        let poll = format!("{handshake}&sid={}", sid.trim_matches('"'));
        let ended = tokio::time::timeout(WAIT, async {
            loop {
                let answer = app.http.get(&poll).send().await.unwrap();
                let closed = answer.status() == 400 || answer.text().await.unwrap().split('\u{1e}').any(|p| p == "1");
                if closed {
                    return;
                }
            }
        })
        .await;
        assert!(ended.is_ok(), "the session ends at the connect timeout");
    }
    let stale = app.http.get(format!("{handshake}&sid={}", sids[0].trim_matches('"'))).send().await.unwrap();
    assert_eq!(stale.status(), 400, "a session that never connected was closed");
    assert_eq!(app.http.get(&handshake).send().await.unwrap().status(), 200, "its place came back");
}

// 7. No open redirect.
#[tokio::test]
async fn login_redirects_only_to_plain_local_paths() {
    let app = spawn_app().await;
    let t = token(TOKEN_SECRET, "63", Some("Alice"), 600);
    for (next, expected) in [
        ("/r/kitchen", "/r/kitchen"),
        ("/%09/evil.example", "/"),
        ("/%5Cevil.example", "/"),
        ("%2F%2Fevil.example", "/"),
        ("https%3A%2F%2Fevil.example", "/"),
        ("/%0A/evil.example", "/"),
    ] {
        let response = app.http.get(app.url(&format!("/login?token={t}&next={next}"))).send().await.unwrap();
        assert_eq!(response.status(), 303, "{next}");
        assert_eq!(response.headers()["location"], expected, "next={next}");
    }
}

// 8. System ids cannot be squatted.
#[tokio::test]
async fn a_chat_user_cannot_take_a_publish_id_and_idempotency_keys_are_per_api_key() {
    let other_key = "second-api-key-0123456789";
    let keys = format!("{API_KEY},{other_key}");
    let app = spawn_app_with(&[("HERALD_API_KEYS", &keys)]).await;
    let mut squatter = SioClient::connect(app.addr).await;
    let refused = squatter
        .call("send", &json!({"room": "lobby", "client_id": "api-idem-order-43", "name": "Herald", "body": "fake"}))
        .await;
    assert_eq!(refused["error"]["code"], "bad_client_id", "{refused}");

    let publish = |key: &'static str, body: Value| {
        let request = app.http.post(app.url("/api/publish")).bearer_auth(key).header("idempotency-key", "order-43");
        async move { request.json(&body).send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let first = publish(API_KEY, json!({"room": "lobby", "message": "real"})).await;
    let retry = publish(API_KEY, json!({"room": "lobby", "message": "real"})).await;
    assert_eq!(first["seq"], retry["seq"], "a retry is stored once: {first} {retry}");
    let stored: Vec<Document> =
        app.db.collection("messages").find(doc! {"room": "lobby"}).await.unwrap().try_collect_vec().await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].get_str("body").unwrap(), "real");
    assert!(stored[0].get_bool("system").unwrap());

    // Another backend's key with the same idempotency key is its own publish.
    publish(API_KEY, json!({"user": "63", "message": "from the first backend"})).await;
    publish(other_key, json!({"user": "63", "message": "from the second backend"})).await;
    let inbox = app.db.collection::<Document>("notifications").count_documents(doc! {"key": "inbox:63"}).await.unwrap();
    assert_eq!(inbox, 2, "neither backend's publish suppressed the other's");
}

trait CollectVec {
    async fn try_collect_vec(self) -> Vec<Document>;
}

impl CollectVec for mongodb::Cursor<Document> {
    async fn try_collect_vec(self) -> Vec<Document> {
        use futures::TryStreamExt;
        self.try_collect().await.unwrap()
    }
}

// 9. The no-JS form shares the send budget. The posts go out at once, so
// that they all meet the budget within the same instant however slow the
// machine: a second's refill is a twentieth of it.

/// A visitor's page: its cookie header and the form's CSRF token.
async fn form_visitor(app: &TestApp) -> (String, String) {
    let (_, html, cookies) = app.get_page("/r/forms", None).await;
    (cookies.join("; "), form_field(&html, "csrf"))
}

async fn post_form(app: &TestApp, (cookie, csrf): &(String, String), i: usize) -> reqwest::Response {
    let form = [
        ("room", "forms".to_owned()),
        ("name", "Ada".to_owned()),
        ("body", format!("post {i}")),
        ("csrf", csrf.clone()),
        ("client_id", format!("form-post-{i:04}")),
    ];
    app.http.post(app.url("/add_message")).header("cookie", cookie).form(&form).send().await.unwrap()
}

/// Of `responses`, the refused ones; fails unless every other one is a 303.
fn refusals(responses: Vec<reqwest::Response>) -> Vec<reqwest::Response> {
    let (refused, stored): (Vec<_>, Vec<_>) = responses.into_iter().partition(|r| r.status() != 303);
    assert!(refused.iter().all(|r| r.status() == 429), "{:?}", refused.iter().map(|r| r.status()).collect::<Vec<_>>());
    assert!(!stored.is_empty());
    refused
}

#[tokio::test]
async fn the_21st_form_post_in_a_second_gets_429_and_is_not_stored() {
    let app = spawn_app_with(&[("HERALD_SEND_RATE", "1"), ("HERALD_SEND_BURST", "20")]).await;
    let visitor = form_visitor(&app).await;
    let responses = futures::future::join_all((0..21).map(|i| post_form(&app, &visitor, i))).await;
    let refused = refusals(responses);
    assert_eq!(refused.len(), 1, "20 fit the budget, the 21st does not");
    let over = refused.into_iter().next().unwrap();
    assert!(over.headers().contains_key("retry-after"));
    assert!(over.text().await.unwrap().contains("Nothing was stored"));
    assert_eq!(app.count_messages(doc! {"room": "forms"}).await, 20);
}

#[tokio::test]
async fn a_fresh_visitor_from_the_same_address_shares_its_budget() {
    // A fresh visitor (a new cookie) from the same address is held to the
    // same rate: the address has a bucket too. Without it, the second
    // visitor's own budget would take its post.
    let app = spawn_app_with(&[("HERALD_SEND_RATE", "1"), ("HERALD_SEND_BURST", "20")]).await;
    let (first, second) = (form_visitor(&app).await, form_visitor(&app).await);
    let posts = (0..21).map(|i| {
        let visitor = if i == 20 { &second } else { &first };
        post_form(&app, visitor, i)
    });
    let refused = refusals(futures::future::join_all(posts).await);
    assert_eq!(refused.len(), 1, "21 posts from one address, 20 fit its budget");
    assert_eq!(app.count_messages(doc! {"room": "forms"}).await, 20);
}

#[tokio::test]
async fn a_form_token_older_than_a_day_gets_the_expired_form_and_stores_nothing() {
    let app = spawn_app().await;
    let (_, _, cookies) = app.get_page("/r/forms", None).await;
    let vid = cookies.iter().find_map(|c| c.strip_prefix("herald_vid=")).unwrap().to_owned();
    let keys = server::auth::csrf::VisitorKeys::new(Some(&server::config::Secret::new(
        "integration-test-secret-of-32-chars!",
    )));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let post = |csrf: String| {
        let form =
            [("room", "forms"), ("name", "Ada"), ("body", "late"), ("csrf", &csrf), ("client_id", "form-late-01")];
        app.http.post(app.url("/add_message")).header("cookie", format!("herald_vid={vid}")).form(&form).send()
    };
    let stale = post(keys.csrf_token_at(&vid, now - 25 * 3600)).await.unwrap();
    assert_eq!(stale.status(), 403);
    assert!(stale.text().await.unwrap().contains("This form has expired"));
    assert_eq!(app.count_all().await, 0);
    assert_eq!(post(keys.csrf_token_at(&vid, now - 3600)).await.unwrap().status(), 303, "an hour old is fine");
}

// 10. Presence does not reveal user ids.
#[tokio::test]
async fn anonymous_visitors_see_names_and_counts_but_no_user_id() {
    let app = spawn_app().await;
    let email = "alice@example.com";
    let alice_token = token(TOKEN_SECRET, email, Some("Alice"), 600);
    let mut alice = SioClient::try_connect(app.addr, Some(json!({"token": alice_token})), None).await.unwrap();
    assert!(alice.call("join", &json!({"room": "ids"})).await.get("ok").is_some());
    let unnamed_token = token(TOKEN_SECRET, "bob@example.com", None, 600);
    let mut bob = SioClient::try_connect(app.addr, Some(json!({"token": unnamed_token})), None).await.unwrap();
    assert!(bob.call("join", &json!({"room": "ids"})).await.get("ok").is_some());

    let mut guest = SioClient::connect(app.addr).await;
    assert!(guest.call("join", &json!({"room": "ids"})).await.get("ok").is_some());
    let snapshot = loop {
        let snapshot = guest.next_event("presence").await;
        if snapshot["anonymous"] == 1 && snapshot["user_count"] == 2 {
            break snapshot;
        }
    };
    assert!(!snapshot.to_string().contains("example.com"), "{snapshot}");
    assert_eq!(snapshot["users"], json!([{"name": "Alice"}]), "a user without a name is counted, not shown by id");

    let (_, html, _) = app.get_page("/r/ids", None).await;
    assert!(html.contains("Alice") && !html.contains("example.com"), "the page's presence data has no ids");
    let api: Value =
        app.http.get(app.url("/api/presence/ids")).bearer_auth(API_KEY).send().await.unwrap().json().await.unwrap();
    assert!(api.to_string().contains(email), "the API keeps ids: {api}");
}

// 11. Nobody can pass as a signed-in user.
#[tokio::test]
async fn messages_from_tokens_are_marked_verified_live_and_on_the_page_and_sneaky_names_are_refused() {
    let app = spawn_app().await;
    let alice_token = token(TOKEN_SECRET, "63", Some("Alice"), 600);
    let mut alice = SioClient::try_connect(app.addr, Some(json!({"token": alice_token})), None).await.unwrap();
    let mut impostor = SioClient::connect(app.addr).await;
    let mut watcher = SioClient::connect(app.addr).await;
    for client in [&mut alice, &mut impostor, &mut watcher] {
        assert!(client.call("join", &json!({"room": "trust"})).await.get("ok").is_some());
    }
    let real = alice
        .call("send", &json!({"room": "trust", "client_id": "trust-real-1", "name": "whatever", "body": "real"}))
        .await;
    assert_eq!(real["ok"]["name"], "Alice");
    assert_eq!(real["ok"]["verified"], true, "{real}");
    let fake = impostor
        .call("send", &json!({"room": "trust", "client_id": "trust-fake-1", "name": "Alice", "body": "fake"}))
        .await;
    assert!(fake["ok"].get("verified").is_none(), "{fake}");
    for expected in [("real", true), ("fake", false)] {
        let message = watcher.next_event("message").await;
        assert_eq!((message["body"].as_str(), message["verified"] == true), (Some(expected.0), expected.1));
        assert!(!message.to_string().contains("\"63\""), "the user id stays on the server: {message}");
    }
    let stored =
        app.db.collection::<Document>("messages").find_one(doc! {"client_id": "trust-real-1"}).await.unwrap().unwrap();
    assert_eq!(stored.get_str("user").unwrap(), "63");

    let (_, html, _) = app.get_page("/r/trust", None).await;
    assert_eq!(html.matches("data-testid=\"verified\"").count(), 1, "one verified mark, on Alice's message");
    let real_item = html.split("<li").find(|item| item.contains(">real<")).unwrap();
    assert!(real_item.contains("data-testid=\"verified\""), "{real_item}");

    for sneaky in ["Alice\u{202E}", "Al\u{200B}ice"] {
        let refused = impostor
            .call("send", &json!({"room": "trust", "client_id": "trust-sneaky", "name": sneaky, "body": "x"}))
            .await;
        assert_eq!(refused["error"]["code"], "invisible_character", "{refused}");
    }
}

// A socket keeps its identity only while its token is valid.
#[tokio::test]
async fn a_socket_whose_token_expires_is_told_and_closed() {
    let app = spawn_app().await;
    // Expired 28 s ago: inside the 30 s leeway, so it connects, and it
    // is closed once the leeway runs out.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let claims = json!({"sub": "63", "name": "Alice", "exp": now - 28});
    let expiring = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(TOKEN_SECRET.as_bytes()),
    )
    .unwrap();
    let mut client = SioClient::try_connect(app.addr, Some(json!({"token": expiring})), None).await.unwrap();
    let closing = client.next_event("closing").await;
    assert_eq!(closing["reason"], "token_expired", "{closing}");
    client.closed().await;
    assert_eq!(metric(&app, "herald_token_expired_disconnects_total").await, 1);
    let again = SioClient::try_connect(app.addr, Some(json!({"token": expiring})), None).await;
    assert_eq!(again.err().unwrap()["message"], "invalid token: token has expired");
}
