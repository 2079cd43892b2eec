//! Engine.IO's heartbeat, which Herald builds from a patched engineioxide
//! (vendor/README.md): a client that answers pings stays, over either
//! transport, and one that stops answering is closed.

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use crate::common::sio::{WAIT, raw_socketio};
use crate::common::spawn_app_with;

/// Pings a live client answers in a test: at a 100 ms interval and a 300 ms
/// timeout, several times what a client that stopped answering would last.
const PINGS: usize = 12;

async fn app() -> crate::common::TestApp {
    spawn_app_with(&[("HERALD_PING_INTERVAL", "100ms"), ("HERALD_PING_TIMEOUT", "300ms")]).await
}

#[tokio::test]
async fn a_websocket_that_answers_pings_stays_and_one_that_stops_answering_is_closed() {
    let app = app().await;
    let mut answering = raw_socketio(app.addr, tokio::net::TcpStream::connect(app.addr).await.unwrap()).await;
    let mut silent = raw_socketio(app.addr, tokio::net::TcpStream::connect(app.addr).await.unwrap()).await;

    let live = tokio::spawn(async move {
        for _ in 0..PINGS {
            let frame = tokio::time::timeout(WAIT, answering.next()).await.expect("a ping in time");
            match frame {
                Some(Ok(Message::Text(text))) if text.as_str() == "2" => {
                    answering.send(Message::text("3")).await.unwrap()
                }
                other => panic!("a client that answers every ping got {other:?}"),
            }
        }
        answering
    });

    // The silent client reads everything and answers nothing.
    let mut pings = 0;
    let end = tokio::time::timeout(WAIT, async {
        while let Some(Ok(message)) = silent.next().await {
            match message {
                Message::Text(text) if text.as_str() == "2" => pings += 1,
                // Engine.IO's close packet, then the WebSocket's.
                Message::Text(text) if text.as_str() == "1" => {}
                Message::Close(_) => break,
                other => panic!("unexpected {other:?}"),
            }
        }
    })
    .await;
    assert!(end.is_ok(), "a client that answers no ping is closed");
    assert_eq!(pings, 1, "closed after one unanswered ping, not pinged again");

    let mut answering = live.await.unwrap();
    // Still open: it answered every ping, so it gets the next one.
    let next = tokio::time::timeout(WAIT, answering.next()).await.expect("a ping in time");
    assert!(matches!(next, Some(Ok(Message::Text(ref t))) if t.as_str() == "2"), "got {next:?}");
}

#[tokio::test]
async fn a_long_polling_client_that_answers_pings_stays_connected() {
    let app = app().await;
    let base = app.url("/socket.io/?EIO=4&transport=polling");
    let open = app.http.get(&base).send().await.unwrap().text().await.unwrap();
    let handshake: Value = serde_json::from_str(open.strip_prefix('0').unwrap()).unwrap();
    assert_eq!(handshake["pingInterval"], 100, "the client learns the interval");
    assert_eq!(handshake["pingTimeout"], 300);
    let session = format!("{base}&sid={}", handshake["sid"].as_str().unwrap());
    assert_eq!(app.http.post(&session).body("40").send().await.unwrap().status(), 200);

    let mut pings = 0;
    while pings < PINGS {
        let poll = app.http.get(&session).timeout(WAIT).send().await.unwrap();
        assert_eq!(poll.status(), 200, "the session lives");
        let body = poll.text().await.unwrap();
        for packet in body.split('\u{1e}') {
            match packet {
                "2" => {
                    pings += 1;
                    assert_eq!(app.http.post(&session).body("3").send().await.unwrap().status(), 200);
                }
                connected if connected.starts_with("40") => {}
                other => panic!("unexpected packet {other:?}"),
            }
        }
    }
}
