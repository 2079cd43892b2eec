//! The benchmark's floor: a bare socketioxide server, built with the same
//! versions and defaults Herald uses, that does only what a benchmark
//! scenario needs and nothing Herald does besides (no store, no limits, no
//! per-socket state).
//!
//! - Socket.IO on `/socket.io/`, namespace `/`: every connection is
//!   accepted; `join {room}` puts it in the room, `send {room, …}` emits the
//!   payload as `message` to the room.
//! - `POST /api/publish` with `{"data": …}` emits `notification`
//!   `{"data": …}` to every connection.
//!
//! `bench-floor [ADDR]` (default `127.0.0.1:0`) prints
//! `listening on http://ADDR` once it accepts connections.

use axum::Json;
use axum::extract::State;
use axum::routing::post;
use serde_json::{Value, json};
use socketioxide::SocketIo;
use socketioxide::extract::{AckSender, Data, SocketRef};

fn on_connect(socket: SocketRef) {
    socket.on("join", async |socket: SocketRef, Data::<Value>(data), ack: AckSender| {
        if let Some(room) = data.get("room").and_then(Value::as_str) {
            socket.join(format!("room:{room}"));
        }
        let _ = ack.send(&json!({"ok": {"messages": []}}));
    });
    socket.on("send", async |socket: SocketRef, Data::<Value>(data), ack: AckSender| {
        if let Some(room) = data.get("room").and_then(Value::as_str) {
            let _ = socket.within(format!("room:{room}")).emit("message", &data).await;
        }
        let _ = ack.send(&json!({"ok": data}));
    });
}

async fn publish(State(io): State<SocketIo>, Json(body): Json<Value>) -> Json<Value> {
    let data = body.get("data").cloned().unwrap_or(Value::Null);
    let online = io.sockets().len();
    let _ = io.emit("notification", &json!({"data": data})).await;
    Json(json!({"online": online}))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let (layer, io) = SocketIo::new_layer();
    io.ns("/", async |socket: SocketRef| on_connect(socket));
    let app = axum::Router::new().route("/api/publish", post(publish)).with_state(io).layer(layer);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
