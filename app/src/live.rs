//! The browser's live connection: a Socket.IO v5 client over a WebSocket.
//!
//! One task per room page runs [`run`]: connect, join the room from the
//! newest sequence the page has, send what the composer queued, and on any
//! failure reconnect with exponential backoff and jitter, re-joining from
//! the newest sequence seen so nothing sent meanwhile is missed. Messages
//! sent but not acknowledged are resent (flagged `retry`) after a reconnect;
//! the server stores each client id once.

use std::collections::HashMap;

use futures::channel::mpsc;
use futures::future::Fuse;
use futures::stream::{self, SplitSink, SplitStream};
use futures::{FutureExt, SinkExt, StreamExt, select};
use gloo_net::websocket::{Message, futures::WebSocket};
use gloo_timers::future::TimeoutFuture;
use herald::notification::{EV_NOTIFICATION, Notification};
use herald::protocol::{
    Closing, EV_CLOSING, EV_JOIN, EV_MARK_READ, EV_MESSAGE, EV_MESSAGE_REMOVED, EV_PRESENCE, EV_READ, EV_REMOVED,
    EV_SEND, EV_SYNC, JoinRequest, Joined, MarkReadRequest, MessageRemoved, PresenceSnapshot, ReadUpdate, Removed,
    Reply, SendRequest, SyncRequest, Synced,
};
use herald::wire::{self, EnginePacket, SocketPacket};
use herald::{RoomName, Seq, StoredMessage};
use leptos::prelude::*;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::signals::{ChatSignals, ConnState, NoteSignals, Outgoing};
use crate::timeline::Pending;

/// How long to wait for the server's handshake packets.
const HANDSHAKE_TIMEOUT_MS: u32 = 10_000;
/// How long a `join` may go unanswered before it is sent again.
const JOIN_TIMEOUT_MS: u32 = 10_000;
/// Backoff bounds between reconnection attempts.
const BACKOFF_BASE_MS: f64 = 500.0;
const BACKOFF_MAX_MS: f64 = 15_000.0;
/// After this many failed attempts in a row the page says "offline".
const OFFLINE_AFTER: u32 = 4;

type Tx = SplitSink<WebSocket, Message>;
type Rx = stream::Fuse<SplitStream<WebSocket>>;

/// How long a toast stays up.
const TOAST_MS: u32 = 8_000;

/// Starts the live connection of a room page.
pub fn spawn(room: RoomName, since: Seq, signals: ChatSignals, outbox: mpsc::Receiver<Outgoing>) {
    leptos::task::spawn_local(run(room, since, signals, outbox));
}

/// What an acknowledgement we wait for answers.
enum AckFor {
    Join,
    Send(String),
    Sync,
    MarkRead,
}

struct Client {
    room: RoomName,
    /// The sequence the page was rendered up to.
    rendered_since: Seq,
    signals: ChatSignals,
    /// Sent (or queued) and not yet acknowledged, in sending order.
    unacked: Vec<Pending>,
    next_ack: u64,
    acks: HashMap<u64, AckFor>,
    /// Joins of this connection that failed in a row.
    join_failures: u32,
    /// When the join failed: send it again after this many milliseconds.
    join_retry_ms: Option<u32>,
    /// The same for `sync`: what was missed must still come.
    sync_failures: u32,
    sync_retry_ms: Option<u32>,
    /// The room refused this visitor (`forbidden`, `removed`): no more
    /// joins.
    shut_out: bool,
    /// The server closed the connection for good (`closing` with reason
    /// `disconnected`): no more connections.
    stopped: bool,
}

async fn run(room: RoomName, since: Seq, signals: ChatSignals, mut outbox: mpsc::Receiver<Outgoing>) {
    let mut client = Client {
        room,
        rendered_since: since,
        signals,
        unacked: Vec::new(),
        next_ack: 0,
        acks: HashMap::new(),
        join_failures: 0,
        join_retry_ms: None,
        sync_failures: 0,
        sync_retry_ms: None,
        shut_out: false,
        stopped: false,
    };
    let mut failures = 0u32;
    loop {
        let state = match failures {
            0 => ConnState::Connecting,
            n if n < OFFLINE_AFTER => ConnState::Reconnecting,
            _ => ConnState::Offline,
        };
        if signals.status.try_set(state).is_some() {
            return; // the page is gone
        }
        let joined = client.session(&mut outbox).await;
        if signals.status.try_get_untracked().is_none() {
            return;
        }
        if client.stopped {
            signals.status.try_set(ConnState::Offline);
            return;
        }
        failures = if joined { 1 } else { failures + 1 };
        client.acks.clear();
        let state = if failures < OFFLINE_AFTER { ConnState::Reconnecting } else { ConnState::Offline };
        signals.status.try_set(state);
        TimeoutFuture::new(backoff_ms(failures)).await;
    }
}

/// How long to wait before asking again after `failures` refusals in a row:
/// what the server asks (`retry_after_ms`), else the backoff.
fn retry_wait(err: &herald::protocol::ErrorReply, failures: u32) -> u32 {
    let backoff = backoff_ms(failures);
    err.retry_after_ms.map_or(backoff, |ms| u32::try_from(ms).unwrap_or(u32::MAX).max(backoff / 4))
}

/// Full jitter over an exponentially growing window.
fn backoff_ms(failures: u32) -> u32 {
    let window = (BACKOFF_BASE_MS * 2f64.powi(failures.saturating_sub(1).min(16) as i32)).min(BACKOFF_MAX_MS);
    (window / 2.0 + js_sys::Math::random() * window / 2.0) as u32
}

impl Client {
    /// Runs one connection until it fails; returns whether it got as far as
    /// joining the room.
    async fn session(&mut self, outbox: &mut mpsc::Receiver<Outgoing>) -> bool {
        let mut joined = false;
        if let Err(reason) = self.connect_and_serve(outbox, &mut joined).await {
            leptos::logging::log!("herald: connection ended: {reason}");
        }
        joined
    }

    async fn connect_and_serve(
        &mut self,
        outbox: &mut mpsc::Receiver<Outgoing>,
        joined: &mut bool,
    ) -> Result<(), String> {
        let ws = WebSocket::open(&socket_url()?).map_err(|e| e.to_string())?;
        let (mut tx, rx) = ws.split();
        let mut rx = rx.fuse();

        let EnginePacket::Open(open) = read_packet(&mut rx, HANDSHAKE_TIMEOUT_MS).await? else {
            return Err("expected the Engine.IO open packet".into());
        };
        // The server pings every `ping_interval`; silence past that plus its
        // timeout means the connection is dead even if the socket says not.
        let silence_ms = u32::try_from(open.ping_interval + open.ping_timeout).unwrap_or(u32::MAX);
        send_text(&mut tx, wire::connect_frame(None)).await?;
        loop {
            match read_packet(&mut rx, HANDSHAKE_TIMEOUT_MS).await? {
                EnginePacket::Message(data) => match wire::decode_socket(&data).map_err(|e| e.to_string())? {
                    SocketPacket::Connect(_) => break,
                    SocketPacket::ConnectError(err) => return Err(format!("connection refused: {err}")),
                    _ => {}
                },
                EnginePacket::Ping => send_text(&mut tx, wire::PONG_FRAME.into()).await?,
                EnginePacket::Close => return Err("server closed the connection".into()),
                _ => {}
            }
        }

        self.join_failures = 0;
        self.join_retry_ms = None;
        self.sync_failures = 0;
        self.sync_retry_ms = None;
        self.emit_join(&mut tx).await?;
        // Until the room is joined, this fires to send the join again: after
        // a failure's backoff, or when no answer came in time.
        let mut join_timer = TimeoutFuture::new(JOIN_TIMEOUT_MS).fuse();
        // Fires to send a failed sync again.
        let mut sync_timer = Fuse::terminated();
        self.emit_sync(&mut tx).await?;
        for pending in self.unacked.clone() {
            self.emit_send(&mut tx, &pending, true).await?;
        }

        loop {
            select! {
                packet = read_packet(&mut rx, silence_ms).fuse() => {
                    self.on_packet(packet?, &mut tx, joined).await?;
                    if *joined || self.shut_out {
                        join_timer = Fuse::terminated();
                    } else if let Some(ms) = self.join_retry_ms.take() {
                        join_timer = TimeoutFuture::new(ms).fuse();
                    }
                    if let Some(ms) = self.sync_retry_ms.take() {
                        sync_timer = TimeoutFuture::new(ms).fuse();
                    }
                }
                () = join_timer => {
                    self.emit_join(&mut tx).await?;
                    join_timer = TimeoutFuture::new(JOIN_TIMEOUT_MS).fuse();
                }
                () = sync_timer => self.emit_sync(&mut tx).await?,
                outgoing = outbox.next() => match outgoing {
                    Some(Outgoing::Send(pending)) => {
                        self.unacked.push(pending.clone());
                        self.emit_send(&mut tx, &pending, false).await?;
                    }
                    Some(Outgoing::MarkRead(mark)) => {
                        let request = MarkReadRequest { seqs: mark.seqs, all: mark.all };
                        self.emit(&mut tx, EV_MARK_READ, &request, AckFor::MarkRead).await?;
                    }
                    None => return Err("page closed".into()),
                },
            }
        }
    }

    /// Joins the room from the newest message the page has: the page was
    /// rendered up to a watermark, live messages come in order, and a
    /// join's catch-up ends at one, so it has everything at or below it.
    async fn emit_join(&mut self, tx: &mut Tx) -> Result<(), String> {
        let last_seen = self.signals.timeline.with_untracked(|t| t.last_seq()).unwrap_or_default();
        let since = last_seen.max(self.rendered_since).get();
        self.emit(tx, EV_JOIN, &JoinRequest { room: self.room.to_string(), since }, AckFor::Join).await
    }

    /// Asks for the notifications missed since the newest this page has.
    async fn emit_sync(&mut self, tx: &mut Tx) -> Result<(), String> {
        let notes = self.signals.notes;
        let sync =
            SyncRequest { inbox: notes.inbox_seen().get(), broadcast: notes.broadcast_seen.get_untracked().get() };
        self.emit(tx, EV_SYNC, &sync, AckFor::Sync).await
    }

    async fn emit_send(&mut self, tx: &mut Tx, pending: &Pending, retry: bool) -> Result<(), String> {
        let request = SendRequest {
            room: self.room.to_string(),
            client_id: pending.client_id.clone(),
            name: pending.name.clone(),
            body: pending.body.clone(),
            retry,
        };
        self.emit(tx, EV_SEND, &request, AckFor::Send(pending.client_id.clone())).await
    }

    async fn emit<T: serde::Serialize>(
        &mut self,
        tx: &mut Tx,
        event: &str,
        data: &T,
        purpose: AckFor,
    ) -> Result<(), String> {
        self.next_ack += 1;
        self.acks.insert(self.next_ack, purpose);
        let frame = wire::event_frame(event, data, Some(self.next_ack)).map_err(|e| e.to_string())?;
        send_text(tx, frame).await
    }

    async fn on_packet(&mut self, packet: EnginePacket, tx: &mut Tx, joined: &mut bool) -> Result<(), String> {
        match packet {
            EnginePacket::Ping => send_text(tx, wire::PONG_FRAME.into()).await,
            EnginePacket::Close => Err("server closed the connection".into()),
            EnginePacket::Message(data) => match wire::decode_socket(&data).map_err(|e| e.to_string())? {
                SocketPacket::Event { name, args, .. } if name == EV_MESSAGE => {
                    if let Some(message) = first_arg::<StoredMessage>(args) {
                        if message.room == self.room {
                            saw(&self.room, message.seq);
                        }
                        self.signals.timeline.update(|t| {
                            t.insert(message);
                        });
                    }
                    Ok(())
                }
                SocketPacket::Event { name, args, .. } if name == EV_NOTIFICATION => {
                    if let Some(note) = first_arg::<Notification>(args) {
                        receive(self.signals.notes, note);
                    }
                    Ok(())
                }
                SocketPacket::Event { name, args, .. } if name == EV_READ => {
                    if let Some(update) = first_arg::<ReadUpdate>(args) {
                        self.signals.notes.apply_read(&update);
                    }
                    Ok(())
                }
                SocketPacket::Event { name, args, .. } if name == EV_MESSAGE_REMOVED => {
                    if let Some(removed) = first_arg::<MessageRemoved>(args)
                        && removed.room == self.room.as_str()
                    {
                        self.signals.timeline.update(|t| t.remove(removed.seq));
                    }
                    Ok(())
                }
                SocketPacket::Event { name, args, .. } if name == EV_REMOVED => {
                    if let Some(removed) = first_arg::<Removed>(args)
                        && removed.room == self.room.as_str()
                    {
                        self.shut_out(&removed.reason);
                        *joined = false;
                    }
                    Ok(())
                }
                SocketPacket::Event { name, args, .. } if name == EV_CLOSING => {
                    // Disconnected by the server's API: not to come back.
                    if let Some(closing) = first_arg::<Closing>(args)
                        && closing.reason == Closing::DISCONNECTED
                    {
                        self.stopped = true;
                        self.signals.notice.set(Some(format!("Disconnected by the server: {}", closing.detail)));
                    }
                    Ok(())
                }
                SocketPacket::Event { name, args, .. } if name == EV_PRESENCE => {
                    if let Some(snapshot) = first_arg::<PresenceSnapshot>(args)
                        && snapshot.room == self.room.as_str()
                    {
                        self.signals.presence.set(snapshot);
                    }
                    Ok(())
                }
                SocketPacket::Ack { id, args } => {
                    self.on_ack(id, args, joined);
                    Ok(())
                }
                SocketPacket::Disconnect => Err("server disconnected us".into()),
                _ => Ok(()),
            },
            _ => Ok(()),
        }
    }

    /// The room shut this visitor out: nothing more of it arrives, and the
    /// page says why.
    fn shut_out(&mut self, reason: &str) {
        self.shut_out = true;
        self.signals.notice.set(Some(format!("You are no longer in this room ({reason}).")));
    }

    fn on_ack(&mut self, id: u64, args: Vec<Value>, joined: &mut bool) {
        match self.acks.remove(&id) {
            Some(AckFor::Join) => match first_arg::<Reply<Joined>>(args) {
                Some(Reply::Ok(catch_up)) => {
                    *joined = true;
                    self.signals.timeline.update(|t| {
                        for message in catch_up.messages {
                            t.insert(message);
                        }
                    });
                    let notice = catch_up
                        .truncated
                        .then(|| "You were away for a while: only the newest messages are shown. Reload for the full history.".to_owned());
                    self.signals.notice.set(notice);
                    self.signals.status.set(ConnState::Connected);
                }
                // The room became private since the page was rendered:
                // asking again would not help.
                Some(Reply::Error(err)) if err.code == "forbidden" => self.shut_out(&err.reason),
                // Not live yet: the page stays "connecting" and the join is
                // sent again after a backoff (or the wait the server asks).
                Some(Reply::Error(err)) if !*joined => {
                    self.join_failures += 1;
                    let wait = retry_wait(&err, self.join_failures);
                    leptos::logging::log!("herald: join refused ({}), again in {wait} ms", err.code);
                    self.join_retry_ms = Some(wait);
                }
                Some(Reply::Error(_)) | None => {}
            },
            Some(AckFor::Sync) => match first_arg::<Reply<Synced>>(args) {
                Some(Reply::Ok(synced)) => {
                    self.sync_failures = 0;
                    let notes = self.signals.notes;
                    for note in synced.inbox.into_iter().chain(synced.broadcast) {
                        receive(notes, note);
                    }
                    if notes.signed_in {
                        notes.unread.set(synced.unread);
                    }
                }
                Some(Reply::Error(err)) => {
                    self.sync_failures += 1;
                    let wait = retry_wait(&err, self.sync_failures);
                    leptos::logging::log!("herald: sync refused ({}), again in {wait} ms", err.code);
                    self.sync_retry_ms = Some(wait);
                }
                None => {}
            },
            Some(AckFor::MarkRead) => match first_arg::<Reply<ReadUpdate>>(args) {
                Some(Reply::Ok(update)) => self.signals.notes.apply_read(&update),
                Some(Reply::Error(err)) => self.signals.error.set(Some(err.reason)),
                None => {}
            },
            Some(AckFor::Send(client_id)) => {
                let reply = first_arg::<Reply<StoredMessage>>(args);
                if matches!(&reply, Some(Reply::Error(err)) if err.code == "shutting_down") {
                    // The server is restarting and stored nothing: the
                    // message stays pending and is resent once reconnected.
                    return;
                }
                self.unacked.retain(|p| p.client_id != client_id);
                match reply {
                    Some(Reply::Ok(message)) => self.signals.timeline.update(|t| {
                        t.insert(message);
                    }),
                    Some(Reply::Error(err)) => {
                        let rejected = self.signals.timeline.try_update(|t| t.reject_pending(&client_id)).flatten();
                        // Give the text back so nothing typed is lost.
                        if let Some(rejected) = rejected {
                            self.signals.draft.update(|d| {
                                if d.is_empty() {
                                    *d = rejected.body;
                                }
                            });
                        }
                        self.signals.error.set(Some(err.reason));
                    }
                    None => {}
                }
            }
            None => {}
        }
    }
}

/// Takes in a notification and, when it is new, toasts it for a while.
fn receive(notes: NoteSignals, note: Notification) {
    let id = note.id.clone();
    if notes.receive(note) {
        leptos::task::spawn_local(async move {
            TimeoutFuture::new(TOAST_MS).await;
            notes.dismiss(&id);
        });
    }
}

fn first_arg<T: DeserializeOwned>(args: Vec<Value>) -> Option<T> {
    serde_json::from_value(args.into_iter().next()?).ok()
}

async fn send_text(tx: &mut Tx, frame: String) -> Result<(), String> {
    tx.send(Message::Text(frame)).await.map_err(|e| e.to_string())
}

/// Reads the next Engine.IO packet, failing after `timeout_ms` of silence.
async fn read_packet(rx: &mut Rx, timeout_ms: u32) -> Result<EnginePacket, String> {
    loop {
        select! {
            frame = rx.next() => match frame {
                Some(Ok(Message::Text(text))) => return wire::decode_engine(&text).map_err(|e| e.to_string()),
                Some(Ok(Message::Bytes(_))) => continue,
                Some(Err(err)) => return Err(err.to_string()),
                None => return Err("connection closed".into()),
            },
            _ = TimeoutFuture::new(timeout_ms).fuse() => return Err("the server went silent".into()),
        }
    }
}

/// `ws(s)://<this host>/socket.io/?EIO=4&transport=websocket`.
fn socket_url() -> Result<String, String> {
    let location = window().location();
    let protocol = location.protocol().map_err(|_| "no location")?;
    let host = location.host().map_err(|_| "no host")?;
    let scheme = if protocol == "https:" { "wss" } else { "ws" };
    Ok(format!("{scheme}://{host}/socket.io/?EIO=4&transport=websocket"))
}

/// 16 random characters for a client message id.
pub fn random_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..16)
        .map(|_| ALPHABET[(js_sys::Math::random() * ALPHABET.len() as f64) as usize % ALPHABET.len()] as char)
        .collect()
}

/// Stores the display name in the `herald_name` cookie for a year.
/// Moves this browser's rooms-read cookie (`herald_seen`, see
/// `herald::room::Seen`) on to `seq` in `room`: a message seen live is not
/// "new" on the next page.
fn saw(room: &RoomName, seq: Seq) {
    use wasm_bindgen::JsCast;
    let Ok(doc) = document().dyn_into::<web_sys::HtmlDocument>() else { return };
    let cookies = doc.cookie().unwrap_or_default();
    let current = cookies.split("; ").find_map(|c| c.strip_prefix("herald_seen=")).unwrap_or_default();
    let mut seen = herald::room::Seen::parse(current);
    seen.saw(room, seq);
    let _ = doc.set_cookie(&format!("herald_seen={}; path=/; max-age=31536000; samesite=lax", seen.encode()));
}

pub fn set_name_cookie(name: &str) {
    use wasm_bindgen::JsCast;
    let encoded: String = js_sys::encode_uri_component(name).into();
    if let Ok(doc) = document().dyn_into::<web_sys::HtmlDocument>() {
        let _ = doc.set_cookie(&format!("herald_name={encoded}; path=/; max-age=31536000; samesite=lax"));
    }
}
