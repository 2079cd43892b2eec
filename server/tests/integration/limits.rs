//! Load and abuse: slow consumers, rate limits, connection caps, the Origin
//! allow-list, security headers, `/metrics`, and many users at once.

use crate::common::sio::{SioClient, WAIT, unread_socketio};
use crate::common::{API_KEY, TOKEN_SECRET, TestApp, metric, read_until_closed, spawn_app, spawn_app_with, token};
use futures::StreamExt;
use mongodb::bson::{Document, doc};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

async fn publish(app: &TestApp, body: &Value) -> reqwest::Response {
    app.http.post(app.url("/api/publish")).bearer_auth(API_KEY).json(body).send().await.unwrap()
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off_and_everyone_else_gets_everything() {
    const PUBLISHES: usize = 400;
    let app = spawn_app_with(&[("HERALD_OUTBOUND_BUFFER_PACKETS", "32")]).await;

    // The slow consumer: a Socket.IO connection over a TCP socket with a
    // tiny receive buffer, which connects and then never reads again.
    let mut slow = unread_socketio(app.addr).await;

    let mut fast = [SioClient::connect(app.addr).await, SioClient::connect(app.addr).await];
    // 6 MB in all: more than the kernel buffers for one connection on
    // loopback (at most 4 MB by default) before Herald's own bounds.
    let data = "x".repeat(15 * 1024);
    for n in 0..PUBLISHES {
        let response = publish(&app, &json!({"broadcast": true, "data": {"n": n, "pad": data}})).await;
        assert_eq!(response.status(), 200);
    }
    for client in &mut fast {
        for n in 0..PUBLISHES {
            let event = client.next_event("notification").await;
            assert_eq!(event["data"]["n"], n, "each fast client gets every notification, in order");
        }
    }
    assert!(metric(&app, "herald_slow_consumer_disconnects_total").await >= 1);

    // Reading now, the slow client finds its connection closed after what
    // the kernel had buffered: a bounded amount, not all 400 notifications.
    let mut received = 0;
    let drained = tokio::time::timeout(WAIT, async {
        while let Some(Ok(message)) = slow.next().await {
            if message.to_text().is_ok_and(|t| t.starts_with("42[\"notification\"")) {
                received += 1;
            }
        }
    })
    .await;
    assert!(drained.is_ok(), "the server closed the slow consumer's connection");
    assert!(received < PUBLISHES, "the slow consumer was cut before the end ({received} received)");

    // Everyone else is still served.
    let mut late = SioClient::connect(app.addr).await;
    publish(&app, &json!({"broadcast": true, "message": "after"})).await;
    assert_eq!(late.next_event("notification").await["data"], "after");
}

#[tokio::test]
async fn sending_faster_than_the_rate_gets_a_rate_limited_ack_and_stores_nothing_more() {
    let app = spawn_app_with(&[("HERALD_SEND_RATE", "1"), ("HERALD_SEND_BURST", "3")]).await;
    let mut client = SioClient::connect(app.addr).await;
    for i in 0..3 {
        let ack = client
            .call("send", &json!({"room": "lobby", "client_id": format!("rate-msg-{i}"), "name": "a", "body": "hi"}))
            .await;
        assert!(ack.get("ok").is_some(), "{ack}");
    }
    let ack =
        client.call("send", &json!({"room": "lobby", "client_id": "rate-msg-3", "name": "a", "body": "hi"})).await;
    assert!(ack.get("ok").is_none(), "{ack}");
    assert_eq!(ack["error"]["code"], "rate_limited", "{ack}");
    let wait = ack["error"]["retry_after_ms"].as_u64().expect("retry_after_ms");
    assert!((1..=1000).contains(&wait), "{wait}");
    assert_eq!(app.count_all().await, 3);
    assert_eq!(metric(&app, "herald_rate_limited_total{limit=\"send_rate\"}").await, 1);
}

#[tokio::test]
async fn publishing_faster_than_the_rate_gets_429_with_retry_after() {
    let app = spawn_app_with(&[("HERALD_PUBLISH_RATE", "1"), ("HERALD_PUBLISH_BURST", "2")]).await;
    let body = json!({"broadcast": true, "message": "hi"});
    assert_eq!(publish(&app, &body).await.status(), 200);
    assert_eq!(publish(&app, &body).await.status(), 200);
    let limited = publish(&app, &body).await;
    assert_eq!(limited.status(), 429);
    let retry_after: u64 = limited.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert_eq!(retry_after, 1);
    let reply: Value = limited.json().await.unwrap();
    assert_eq!(reply["error"]["code"], "rate_limited");
    let stored = app.db.collection::<Document>("notifications").count_documents(doc! {}).await.unwrap();
    assert_eq!(stored, 2, "the refused publish stored nothing");
    assert_eq!(metric(&app, "herald_publish_requests_total{outcome=\"rate_limited\"}").await, 1);
    assert_eq!(metric(&app, "herald_publish_requests_total{outcome=\"ok\"}").await, 2);
}

#[tokio::test]
async fn api_calls_faster_than_the_keys_rate_get_429_and_leave_other_keys_and_publishes_alone() {
    let other_key = "second-api-key-0123456789";
    let keys = format!("{API_KEY},{other_key}");
    let app = spawn_app_with(&[
        ("HERALD_API_KEYS", keys.as_str()),
        ("HERALD_API_RATE", "1"),
        ("HERALD_API_BURST", "3"),
        ("HERALD_PUBLISH_RATE", "0"),
    ])
    .await;
    let get = |key: &'static str, path: &'static str| {
        let request = app.http.get(app.url(path)).bearer_auth(key);
        async move { request.send().await.unwrap() }
    };
    // Each kind of call takes from the same bucket, reads and writes.
    let started = std::time::Instant::now();
    for path in ["/api/rooms", "/api/rooms/lobby/messages", "/api/presence/lobby"] {
        assert_eq!(get(API_KEY, path).await.status(), 200, "{path}");
    }
    let put = |room: String| {
        let request = app.http.put(app.url(&format!("/api/rooms/{room}/settings"))).bearer_auth(API_KEY);
        async move { request.json(&json!({"private": true})).send().await.unwrap() }
    };
    let mut written = 0u64;
    let limited = loop {
        let answer = put(format!("team-{written}")).await;
        if answer.status() == 429 {
            break answer;
        }
        assert_eq!(answer.status(), 200);
        written += 1;
        assert!(written < 50, "the rate never refused a call");
    };
    // The burst, and what the rate added while the calls were made.
    let allowed = 3 + started.elapsed().as_secs() + 1;
    assert!(3 + written <= allowed, "{} calls admitted, at most {allowed} allowed", 3 + written);
    let retry_after: u64 = limited.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert_eq!(retry_after, 1);
    let reply: Value = limited.json().await.unwrap();
    assert_eq!(reply["error"]["code"], "rate_limited", "{reply}");
    assert!(reply["error"]["reason"].as_str().unwrap().contains("API calls"), "{reply}");
    let settings = app.db.collection::<Document>("room_settings").count_documents(doc! {}).await.unwrap();
    assert_eq!(settings, written, "the refused write stored nothing");
    // Another key has its own bucket; publishes have their own rate; a
    // call without a valid key is refused for that, not counted.
    assert_eq!(get(other_key, "/api/rooms").await.status(), 200);
    assert_eq!(publish(&app, &json!({"broadcast": true, "message": "still"})).await.status(), 200);
    assert_eq!(get("not-a-key-0123456789", "/api/rooms").await.status(), 401);
    assert_eq!(metric(&app, "herald_rate_limited_total{limit=\"api_rate\"}").await, 1);
}

#[tokio::test]
async fn connections_beyond_the_per_ip_cap_are_refused_with_a_reason() {
    let app = spawn_app_with(&[("HERALD_CONNECTIONS_PER_IP", "2")]).await;
    let mut first = SioClient::connect(app.addr).await;
    let mut second = SioClient::connect(app.addr).await;
    let refused = SioClient::try_connect(app.addr, None, None).await.err().expect("a third is refused");
    assert_eq!(refused["message"], "too many connections from this address", "{refused}");

    // A slot frees up when a connection goes away. The server gives it back
    // before it tells the room the connection left, so the second client's
    // presence update is the moment to try again.
    for client in [&mut first, &mut second] {
        assert!(client.call("join", &json!({"room": "caps", "since": 0})).await.get("ok").is_some());
    }
    while second.next_event("presence").await["anonymous"] != 2 {}
    first.disconnect();
    while second.next_event("presence").await["anonymous"] != 1 {}
    SioClient::try_connect(app.addr, None, None).await.expect("a freed slot admits a new connection");
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_cap_counts_forwarded_clients() {
    let app = spawn_app_with(&[("HERALD_CONNECTIONS_PER_IP", "1"), ("HERALD_TRUSTED_PROXIES", "127.0.0.1")]).await;
    let via = |client: &'static str| async move {
        SioClient::try_connect_with(app.addr, None, &[("x-forwarded-for", client)]).await
    };
    let _a = via("198.51.100.1").await.expect("first client");
    let _b = via("198.51.100.2").await.expect("another client behind the same proxy");
    assert!(via("198.51.100.1").await.is_err(), "the first client's second connection is over its cap");
    // A client can't dodge the cap by prepending addresses: the proxy appends
    // the real one, and the header is read from the right.
    assert!(via("203.0.113.7, 198.51.100.2").await.is_err());
}

#[tokio::test]
async fn handshakes_from_other_origins_are_refused_on_both_transports() {
    let app = spawn_app_with(&[("HERALD_ALLOWED_ORIGINS", "https://app.example")]).await;
    let polling = app.url("/socket.io/?EIO=4&transport=polling");
    let own = format!("http://{}", app.addr);
    for (origin, allowed) in [(own.as_str(), true), ("https://app.example", true), ("https://evil.example", false)] {
        let response = app.http.get(&polling).header("origin", origin).send().await.unwrap();
        assert_eq!(response.status().is_success(), allowed, "polling from {origin}");
        if !allowed {
            assert_eq!(response.status(), 403);
            assert!(response.text().await.unwrap().contains("is not allowed"));
        }
    }
    let mut request = format!("ws://{}/socket.io/?EIO=4&transport=websocket", app.addr).into_client_request().unwrap();
    request.headers_mut().insert("origin", "https://evil.example".parse().unwrap());
    let err = tokio_tungstenite::connect_async(request).await.expect_err("refused");
    assert!(err.to_string().contains("403"), "{err}");
    // Programs send no Origin and are not affected.
    SioClient::connect(app.addr).await;
    assert_eq!(metric(&app, "herald_rate_limited_total{limit=\"origin\"}").await, 2);
}

#[tokio::test]
async fn pages_carry_a_nonce_csp_and_security_headers() {
    let app = spawn_app().await;
    let response = app.http.get(app.url("/")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    let csp = headers["content-security-policy"].to_str().unwrap().to_owned();
    let html = response.text().await.unwrap();
    let nonce = csp.split("'nonce-").nth(1).and_then(|rest| rest.split('\'').next()).expect("a nonce");
    assert!(nonce.len() >= 16, "{nonce}");
    assert!(!csp.contains("unsafe-inline") && csp.contains("frame-ancestors 'none'"), "{csp}");
    let scripts = html.matches("<script").count();
    assert!(scripts > 0, "the page has hydration scripts");
    assert_eq!(html.matches(&format!("nonce=\"{nonce}\"")).count(), scripts, "every script carries the nonce");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "strict-origin-when-cross-origin");

    let long = app.http.get(app.url(&format!("/pkg/{}.js", "a".repeat(300)))).send().await.unwrap();
    assert_eq!(long.status(), 404);
    assert_eq!(long.headers()["x-content-type-options"], "nosniff");

    let again = app.http.get(app.url("/")).send().await.unwrap();
    assert!(!again.headers()["content-security-policy"].to_str().unwrap().contains(nonce), "a fresh nonce each time");
}

#[tokio::test]
async fn metrics_count_traffic_and_never_show_secrets() {
    let app = spawn_app().await;
    let mut client = SioClient::connect(app.addr).await;
    let ack =
        client.call("send", &json!({"room": "lobby", "client_id": "metric-msg-1", "name": "a", "body": "hi"})).await;
    assert!(ack.get("ok").is_some(), "{ack}");
    let text = app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    for family in [
        "herald_connections{transport=\"websocket\"} 1",
        "herald_messages_received_total 1",
        "herald_messages_stored_total 1",
        "herald_store_duration_seconds_count",
        "herald_slow_consumer_disconnects_total 0",
        "herald_publish_requests_total{outcome=\"ok\"} 0",
    ] {
        assert!(text.contains(family), "{family} missing from\n{text}");
    }
    for secret in [API_KEY, TOKEN_SECRET, "integration-test-secret-of-32-chars!", "mongodb://"] {
        assert!(!text.contains(secret), "/metrics shows a secret");
    }
}

#[tokio::test]
async fn among_many_users_each_publish_reaches_only_its_user() {
    const USERS: usize = 30;
    let app = spawn_app().await;
    let mut clients = Vec::new();
    for i in 0..USERS {
        let t = token(TOKEN_SECRET, &format!("u{i}"), None, 600);
        let mut client = SioClient::try_connect(app.addr, Some(json!({"token": t})), None).await.unwrap();
        // No event can put a socket in another user's channel.
        let other = format!("user:u{}", (i + 1) % USERS);
        let refused = client.call("join", &json!({"room": other, "since": 0})).await;
        assert!(refused["error"]["code"].is_string(), "{refused}");
        clients.push(client);
    }
    for i in 0..USERS {
        let response = publish(&app, &json!({"user": format!("u{i}"), "data": {"for": i}})).await;
        assert_eq!(response.status(), 200);
    }
    // A broadcast marks the end: whatever a client got before it is all it
    // was sent.
    publish(&app, &json!({"broadcast": true, "data": "end"})).await;
    for (i, client) in clients.iter_mut().enumerate() {
        let mut mine = Vec::new();
        loop {
            let event = client.next_event("notification").await;
            if event["data"] == "end" {
                break;
            }
            mine.push(event["data"]["for"].clone());
        }
        assert_eq!(mine, vec![json!(i)], "user u{i} got exactly its own notification");
    }
}

#[tokio::test]
async fn connections_that_trickle_headers_or_sit_idle_are_cut_at_the_head_deadline() {
    use tokio::io::AsyncWriteExt;
    let app = spawn_app_with(&[("HERALD_HEAD_TIMEOUT", "1s")]).await;

    // Slowloris: a head that never ends.
    let mut trickling = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    trickling.write_all(b"GET / HTTP/1.1\r\nHost: herald\r\nX-Slow: ").await.unwrap();
    read_until_closed(&mut trickling).await;

    // A kept-alive connection after its request: answered, then closed.
    let mut idle = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: herald\r\n\r\n").await.unwrap();
    let answered = read_until_closed(&mut idle).await;
    assert!(answered.starts_with("HTTP/1.1 200") && answered.ends_with("ok"), "{answered}");

    // A connection that never says anything.
    let mut silent = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    read_until_closed(&mut silent).await;

    let healthz = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(healthz.status(), 200, "everyone else is served");
}

#[tokio::test]
async fn a_request_whose_body_stops_arriving_gets_408() {
    use tokio::io::AsyncWriteExt;
    let app = spawn_app_with(&[("HERALD_REQUEST_TIMEOUT", "1s")]).await;
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /api/publish HTTP/1.1\r\nHost: herald\r\nAuthorization: Bearer {API_KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"room\":"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let answer = read_until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(app.count_all().await, 0, "nothing half-read is stored");
}

#[tokio::test]
async fn a_websocket_over_its_byte_budget_is_told_why_then_cut() {
    let app = spawn_app_with(&[("HERALD_OUTBOUND_BUFFER_BYTES", "16384")]).await;
    let mut slow = unread_socketio(app.addr).await;
    // Until the kernel's socket buffers are full (a few MB on loopback),
    // nothing stays queued in Herald; then 16 KiB is over the budget.
    let pad = "x".repeat(15 * 1024);
    let mut published = 0;
    while metric(&app, "herald_slow_consumer_disconnects_total").await == 0 {
        assert!(published < 2_000, "never counted as a slow consumer");
        for _ in 0..20 {
            let response = publish(&app, &json!({"broadcast": true, "data": {"n": published, "pad": pad}})).await;
            assert_eq!(response.status(), 200);
            published += 1;
        }
    }
    // What follows is not sent to it.
    for n in 0..5 {
        assert_eq!(publish(&app, &json!({"broadcast": true, "data": {"after": n}})).await.status(), 200);
    }
    // It reads again (slowly enough to have fallen behind, in time to hear
    // why): what was queued before it was let go, in order and without
    // gaps, then `closing`, then the end of the connection.
    let mut received = Vec::new();
    let mut closing = None;
    let ended = tokio::time::timeout(WAIT, async {
        while let Some(Ok(message)) = slow.next().await {
            let Some(event) = message.to_text().ok().and_then(|t| t.strip_prefix("42")) else { continue };
            let event: Value = serde_json::from_str(event).unwrap();
            assert!(closing.is_none(), "nothing is sent after `closing`: {event}");
            match event[0].as_str() {
                Some("notification") => received.push(event[1]["data"]["n"].as_u64().expect("sent before `closing`")),
                _ => closing = Some(event),
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the connection is cut after the grace period");
    let closing = closing.expect("a `closing` event before the cut");
    assert_eq!(closing[0], "closing");
    assert_eq!(closing[1]["reason"], "slow_consumer", "{closing}");
    assert!(received.iter().copied().eq(0..received.len() as u64), "no gaps: {received:?}");
    assert!(!received.is_empty() && received.len() <= published, "{} of {published}", received.len());
}

#[tokio::test]
async fn a_long_polling_session_that_stops_polling_gets_its_goodbye_on_the_next_poll() {
    let app = spawn_app_with(&[("HERALD_OUTBOUND_BUFFER_PACKETS", "16")]).await;
    let base = app.url("/socket.io/?EIO=4&transport=polling");
    let open = app.http.get(&base).send().await.unwrap().text().await.unwrap();
    let open: Value = serde_json::from_str(open.strip_prefix('0').unwrap()).unwrap();
    let session = format!("{base}&sid={}", open["sid"].as_str().unwrap());
    assert_eq!(app.http.post(&session).body("40").send().await.unwrap().status(), 200);
    let connected = app.http.get(&session).send().await.unwrap().text().await.unwrap();
    assert!(connected.split('\u{1e}').any(|packet| packet.starts_with("40")), "{connected}");

    // It stops polling while more is published than its queue holds.
    for n in 0..20 {
        assert_eq!(publish(&app, &json!({"broadcast": true, "data": n})).await.status(), 200);
    }
    assert_eq!(metric(&app, "herald_slow_consumer_disconnects_total").await, 1);

    let goodbye = app.http.get(&session).send().await.unwrap().text().await.unwrap();
    let (event, close) = goodbye.split_once('\u{1e}').unwrap_or_else(|| panic!("{goodbye}"));
    assert_eq!(close, "1", "an Engine.IO close follows: {goodbye}");
    let event: Value = serde_json::from_str(event.strip_prefix("42").unwrap()).unwrap();
    assert_eq!(event[0], "closing");
    assert_eq!(event[1]["reason"], "slow_consumer");
}

#[tokio::test]
async fn tcp_connections_beyond_the_per_ip_cap_get_503_and_are_closed() {
    let app = spawn_app_with(&[("HERALD_TCP_CONNECTIONS_PER_IP", "2"), ("HERALD_HEAD_TIMEOUT", "1s")]).await;
    let mut idle = [
        tokio::net::TcpStream::connect(app.addr).await.unwrap(),
        tokio::net::TcpStream::connect(app.addr).await.unwrap(),
    ];
    let mut third = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let refused = read_until_closed(&mut third).await;
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.ends_with("too many connections from your address\n"), "{refused}");

    // The idle two are closed at the head deadline, which frees their places.
    for stream in &mut idle {
        read_until_closed(stream).await;
    }
    let healthz = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(healthz.status(), 200);
    assert_eq!(metric(&app, "herald_rate_limited_total{limit=\"tcp_connections_per_ip\"}").await, 1);
}
