//! A small Socket.IO v5 test client over tokio-tungstenite, using Herald's
//! own framing (`herald::wire`) plus raw frames for malformed-input tests.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use herald::wire::{self, EnginePacket, SocketPacket};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

/// How long a test waits for anything from the server before failing.
pub const WAIT: Duration = Duration::from_secs(10);

type Acks = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

pub struct SioClient {
    out: mpsc::UnboundedSender<Message>,
    events: mpsc::UnboundedReceiver<(String, Value)>,
    acks: Acks,
    next_ack: u64,
    closed: oneshot::Receiver<()>,
    /// Acks received, whether or not a call waits for them.
    answered: tokio::sync::watch::Receiver<u64>,
    /// Error codes of acks no call waited for (frames sent with
    /// [`Self::send_raw`]).
    refusals: Refusals,
}

type Refusals = Arc<Mutex<HashMap<String, u64>>>;

impl SioClient {
    /// Connects over WebSocket and completes the Socket.IO handshake.
    pub async fn connect(addr: SocketAddr) -> Self {
        Self::try_connect(addr, None, None).await.unwrap_or_else(|err| panic!("connection refused: {err}"))
    }

    /// Connects with handshake `auth` data and a `Cookie` header; a refusal
    /// returns the server's `connect_error` data.
    pub async fn try_connect(addr: SocketAddr, auth: Option<Value>, cookie: Option<&str>) -> Result<Self, Value> {
        let headers: Vec<(&str, &str)> = cookie.map(|c| ("cookie", c)).into_iter().collect();
        Self::try_connect_with(addr, auth, &headers).await
    }

    /// Like [`Self::try_connect`], with any request headers.
    pub async fn try_connect_with(
        addr: SocketAddr,
        auth: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Result<Self, Value> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        use tokio_tungstenite::tungstenite::http::HeaderName;
        let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
        let mut request = url.into_client_request().unwrap();
        for (name, value) in headers {
            request.headers_mut().insert(HeaderName::from_bytes(name.as_bytes()).unwrap(), value.parse().unwrap());
        }
        let (ws, _) = tokio_tungstenite::connect_async(request).await.expect("WebSocket connects");
        let (mut sink, mut stream) = ws.split();
        let (out, mut out_rx) = mpsc::unbounded_channel::<Message>();
        let (events_tx, events) = mpsc::unbounded_channel();
        let (connected_tx, connected_rx) = oneshot::channel::<Result<(), Value>>();
        let (closed_tx, closed) = oneshot::channel();
        let acks: Acks = Arc::default();

        tokio::spawn(async move {
            while let Some(message) = out_rx.recv().await {
                if sink.send(message).await.is_err() {
                    break;
                }
            }
        });
        let reader_out = out.clone();
        let reader_acks = acks.clone();
        let (reader_answered, answered) = tokio::sync::watch::channel(0u64);
        let refusals: Refusals = Arc::default();
        let reader_refusals = refusals.clone();
        tokio::spawn(async move {
            let mut connected_tx = Some(connected_tx);
            while let Some(Ok(message)) = stream.next().await {
                let Message::Text(text) = message else { continue };
                match wire::decode_engine(&text).expect("server frames decode") {
                    EnginePacket::Open(_) => {
                        let _ = reader_out.send(Message::text(wire::connect_frame(auth.as_ref())));
                    }
                    EnginePacket::Ping => {
                        let _ = reader_out.send(Message::text(wire::PONG_FRAME));
                    }
                    EnginePacket::Message(data) => match wire::decode_socket(&data).expect("socket packets decode") {
                        SocketPacket::Connect(_) => {
                            if let Some(tx) = connected_tx.take() {
                                let _ = tx.send(Ok(()));
                            }
                        }
                        SocketPacket::ConnectError(err) => {
                            if let Some(tx) = connected_tx.take() {
                                let _ = tx.send(Err(err));
                            }
                        }
                        SocketPacket::Event { name, mut args, .. } => {
                            let arg = if args.is_empty() { Value::Null } else { args.remove(0) };
                            let _ = events_tx.send((name, arg));
                        }
                        SocketPacket::Ack { id, mut args } => {
                            reader_answered.send_modify(|n| *n += 1);
                            let arg = if args.is_empty() { Value::Null } else { args.remove(0) };
                            if let Some(tx) = reader_acks.lock().unwrap().remove(&id) {
                                let _ = tx.send(arg);
                            } else if let Some(code) = arg["error"]["code"].as_str() {
                                *reader_refusals.lock().unwrap().entry(code.to_owned()).or_default() += 1;
                            }
                        }
                        // The server disconnected us from the namespace: a
                        // Socket.IO client closes the connection then.
                        SocketPacket::Disconnect => break,
                    },
                    EnginePacket::Close => break,
                    _ => {}
                }
            }
            let _ = closed_tx.send(());
        });
        tokio::time::timeout(WAIT, connected_rx).await.expect("Socket.IO connect in time").expect("an answer")?;
        Ok(Self { out, events, acks, next_ack: 0, closed, answered, refusals })
    }

    /// Emits `event` with `data` and waits for the ack's first argument.
    pub async fn call<T: Serialize + ?Sized>(&mut self, event: &str, data: &T) -> Value {
        self.next_ack += 1;
        let frame = wire::event_frame(event, data, Some(self.next_ack)).unwrap();
        self.call_raw(frame, self.next_ack).await
    }

    /// Emits `event` with `data` at once and returns the receiver of its ack
    /// (unbounded: the caller bounds the wait), for tests that send many
    /// requests before awaiting any answer.
    pub fn emit<T: Serialize + ?Sized>(&mut self, event: &str, data: &T) -> oneshot::Receiver<Value> {
        self.next_ack += 1;
        let frame = wire::event_frame(event, data, Some(self.next_ack)).unwrap();
        let (tx, rx) = oneshot::channel();
        self.acks.lock().unwrap().insert(self.next_ack, tx);
        self.send_raw(frame);
        rx
    }

    /// Sends a hand-made frame carrying ack id `id` and waits for that ack.
    pub async fn call_raw(&mut self, frame: String, id: u64) -> Value {
        let (tx, rx) = oneshot::channel();
        self.acks.lock().unwrap().insert(id, tx);
        self.send_raw(frame);
        tokio::time::timeout(WAIT, rx).await.expect("ack in time").expect("ack arrives")
    }

    /// Sends a frame as is.
    pub fn send_raw(&self, frame: impl Into<String>) {
        let _ = self.out.send(Message::text(frame.into()));
    }

    /// The next event named `name` (others are skipped).
    pub async fn next_event(&mut self, name: &str) -> Value {
        let wait = async {
            loop {
                let (event, data) = self.events.recv().await.expect("connection open");
                if event == name {
                    return data;
                }
            }
        };
        tokio::time::timeout(WAIT, wait).await.unwrap_or_else(|_| panic!("no {name} event in time"))
    }

    /// The next event named `name`, or `None` once the connection closed
    /// (its node died) and every event before that was read.
    pub async fn next_event_or_closed(&mut self, name: &str) -> Option<Value> {
        let wait = async {
            loop {
                let (event, data) = self.events.recv().await?;
                if event == name {
                    return Some(data);
                }
            }
        };
        tokio::time::timeout(WAIT, wait).await.unwrap_or_else(|_| panic!("no {name} event in time"))
    }

    /// How many acks have arrived so far.
    pub fn answered(&self) -> u64 {
        *self.answered.borrow()
    }

    /// Error codes of the acks to raw frames, counted.
    pub fn refusals(&self) -> HashMap<String, u64> {
        self.refusals.lock().unwrap().clone()
    }

    /// Waits until `count` acks have arrived in all.
    pub async fn answered_at_least(&mut self, count: u64, within: Duration) {
        let waited =
            tokio::time::timeout(within, self.answered.wait_for(|n| *n >= count)).await.is_ok_and(|w| w.is_ok());
        assert!(waited, "{} of {count} acks in {within:?}", self.answered());
    }

    /// The next event, whatever its name.
    pub async fn next_any(&mut self) -> (String, Value) {
        tokio::time::timeout(WAIT, self.events.recv()).await.expect("an event in time").expect("connection open")
    }

    /// Leaves the namespace and closes the WebSocket, as a client going away
    /// does. (Dropping a client without this leaves its socket open until
    /// the server's ping times it out.)
    pub fn disconnect(self) {
        self.send_raw("41");
        let _ = self.out.send(Message::Close(None));
    }

    /// Completes when the server closes the connection.
    pub async fn closed(&mut self) {
        tokio::time::timeout(WAIT, &mut self.closed).await.expect("closed in time").ok();
    }
}

/// A raw WebSocket on the Socket.IO path, for tests that speak frames
/// themselves.
pub type RawWs = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a Socket.IO WebSocket over `stream`, connected to the default
/// namespace (pings answered until then), and returns it unread after that.
pub async fn raw_socketio(addr: SocketAddr, stream: tokio::net::TcpStream) -> RawWs {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket").into_client_request().unwrap();
    let (mut ws, _) =
        tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(stream)).await.unwrap();
    assert!(ws.next().await.unwrap().unwrap().to_text().unwrap().starts_with('0'));
    ws.send(Message::text("40")).await.unwrap();
    loop {
        match ws.next().await.unwrap().unwrap().to_text().unwrap() {
            "2" => ws.send(Message::text("3")).await.unwrap(),
            text if text.starts_with("40") => return ws,
            other => panic!("unexpected {other}"),
        }
    }
}

/// [`raw_socketio`] over a TCP socket with a tiny receive buffer: a client
/// that can stop reading without the kernel reading for it.
pub async fn unread_socketio(addr: SocketAddr) -> RawWs {
    let tcp = tokio::net::TcpSocket::new_v4().unwrap();
    tcp.set_recv_buffer_size(4096).unwrap();
    raw_socketio(addr, tcp.connect(addr).await.unwrap()).await
}
