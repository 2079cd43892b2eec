//! Delivering one event to many connections on this node, and letting go
//! of connections that can't keep up.
//!
//! socketioxide's own broadcast skips a socket whose buffer is full and
//! doesn't say which one, so the skipped client would silently miss
//! messages and keep its full buffer. Here the payload is serialised once
//! into raw JSON and emitted to each socket in turn; nobody waits, an emit
//! never blocks. A socket that falls behind is a **slow consumer**:
//!
//! - A WebSocket whose unsent bytes (counted on its TCP connection, see
//!   [`crate::http::conn`]) pass `HERALD_OUTBOUND_BUFFER_BYTES` is sent nothing
//!   more but `closing` (reason `slow_consumer`), and its connection is cut
//!   [`SLOW_CONSUMER_GRACE`] later: a client that is reading, only slowly,
//!   learns why; one that isn't holds no more than its budget meanwhile.
//! - A socket whose packet queue (`HERALD_OUTBOUND_BUFFER_PACKETS`) is full
//!   has no room left for a goodbye. A WebSocket is cut at once; a
//!   long-polling session is dismissed: its next poll is answered with
//!   `closing` and an Engine.IO close (see [`crate::realtime::transport`]).
//!
//! Either way its client reconnects and catches up from history, as after
//! any dropped connection; nothing it missed is lost.
//!
//! With several nodes, each node will run this for its own sockets when the
//! event arrives from Redis.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use herald::protocol::{Closing, EV_CLOSING};
use serde::Serialize;
use serde_json::value::RawValue;
use socketioxide::extract::{AckSender, SocketRef};
use socketioxide::socket::Sid;
use socketioxide::{SendError, SocketError, SocketIo, TransportType};

use crate::http::conn::{KillSwitch, PeerConn};
use crate::ops::metrics::Metrics;
use crate::sync::lock;

/// How long a slow WebSocket has, after `closing` is queued behind its
/// backlog, before its connection is cut: a budget's worth of backlog
/// drains in a few seconds even on a poor mobile link.
pub const SLOW_CONSUMER_GRACE: Duration = Duration::from_secs(5);

/// Who an event goes to.
pub enum Audience<'a> {
    /// The sockets in one Socket.IO room (a chat room or a user's channel).
    Room(&'a str),
    /// Every socket.
    Everyone,
}

/// A map from socket id, shared between the HTTP layer and the fan-out.
struct BySid<T>(Arc<Mutex<HashMap<Sid, T>>>);

impl<T> Clone for BySid<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> Default for BySid<T> {
    fn default() -> Self {
        Self(Arc::default())
    }
}

impl<T: Clone> BySid<T> {
    fn with<R>(&self, f: impl FnOnce(&mut HashMap<Sid, T>) -> R) -> R {
        f(&mut lock(&self.0))
    }
}

/// What the transport layer and the fan-out know about sockets' transports.
#[derive(Clone, Default)]
pub struct Transports {
    /// The TCP connections of WebSockets that were upgraded from
    /// long-polling. (The handshake's `ConnectInfo` belongs to the first
    /// polling request, not to the WebSocket that replaced it.)
    upgraded: BySid<KillSwitch>,
    /// Long-polling sessions let go as slow consumers.
    dismissed: BySid<()>,
}

impl Transports {
    /// Records the TCP connection a socket's WebSocket upgrade came over,
    /// once Socket.IO has accepted the upgrade (`transport::guard`). The
    /// first accepted upgrade of a session wins: someone who learns a
    /// session's id can't re-point it to their own connection. The entry
    /// goes when that connection closes, whatever became of the upgrade
    /// (an unknown session, a failed probe), and when the socket
    /// disconnects.
    pub fn upgrading(&self, sid: Sid, kill: KillSwitch) {
        let recorded = self.upgraded.with(|m| match m.entry(sid) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(entry) => {
                entry.insert(kill.clone());
                true
            }
        });
        if recorded {
            let upgraded = self.upgraded.clone();
            let line = kill.clone();
            kill.on_close(move || {
                upgraded.with(|m| {
                    if m.get(&sid).is_some_and(|recorded| recorded.same(&line)) {
                        m.remove(&sid);
                    }
                });
            });
        }
    }

    /// How many upgrades are recorded (for `/metrics`).
    pub fn upgrades_tracked(&self) -> usize {
        self.upgraded.with(|m| m.len())
    }

    fn upgraded(&self, sid: &Sid) -> Option<KillSwitch> {
        self.upgraded.with(|m| m.get(sid).cloned())
    }

    fn dismiss(&self, sid: Sid) {
        self.dismissed.with(|m| m.insert(sid, ()));
    }

    /// Whether this long-polling session was let go (its next poll gets the
    /// goodbye instead of its queue).
    pub fn is_dismissed(&self, sid: &Sid) -> bool {
        self.dismissed.with(|m| m.contains_key(sid))
    }

    /// Forgets a socket that has disconnected.
    pub fn forget(&self, sid: &Sid) {
        self.upgraded.with(|m| m.remove(sid));
        self.dismissed.with(|m| m.remove(sid));
    }
}

/// Counts the bytes written to it, and keeps none.
struct ByteCount(u64);

impl std::io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What the fan-out keeps on each socket: read once per delivery, so it is
/// one extension rather than several.
#[derive(Default)]
struct Outbound {
    /// Set once the socket is let go: it is sent nothing more.
    let_go: AtomicBool,
    /// Its WebSocket's TCP connection, once it is on WebSocket.
    line: OnceLock<KillSwitch>,
}

/// Fan-out with slow-consumer handling. Cheap to clone.
#[derive(Clone)]
pub struct Fanout {
    metrics: Arc<Metrics>,
    transports: Transports,
    /// `HERALD_OUTBOUND_BUFFER_BYTES`.
    backlog_max: u64,
}

impl Fanout {
    pub fn new(metrics: Arc<Metrics>, transports: Transports, backlog_max: u64) -> Self {
        Self { metrics, transports, backlog_max }
    }

    /// Emits `event` with `data` to `audience`; returns how many sockets it
    /// was handed to.
    pub fn deliver<T: Serialize + ?Sized>(
        &self,
        io: &SocketIo,
        audience: Audience<'_>,
        event: &str,
        data: &T,
    ) -> usize {
        match serde_json::value::to_raw_value(data) {
            Ok(payload) => self.deliver_encoded(io, audience, event, &payload),
            Err(err) => {
                tracing::error!(%err, event, "could not encode an event");
                0
            }
        }
    }

    /// Emits `event` with an encoded `payload` to `audience`; returns how
    /// many sockets it was handed to.
    pub fn deliver_encoded(&self, io: &SocketIo, audience: Audience<'_>, event: &str, payload: &RawValue) -> usize {
        let sockets = match audience {
            Audience::Room(room) => io.to(room.to_owned()).sockets(),
            Audience::Everyone => io.sockets(),
        };
        let mut delivered = 0;
        for socket in sockets {
            delivered += usize::from(self.emit_raw(&socket, event, payload));
        }
        self.metrics.delivered(delivered as u64);
        delivered
    }

    /// Answers a client's request. The reply is counted against the
    /// socket's outbound budget like any event, as a reply: it may be bigger
    /// than the budget, but a client that asks for more before reading it
    /// is let go when it asks ([`Self::let_go_if_behind`],
    /// [`KillSwitch::may_ask`]). A socket already let go gets nothing.
    pub fn reply<T: Serialize + ?Sized>(&self, socket: &SocketRef, ack: AckSender, reply: &T) {
        let outbound = Self::outbound(socket);
        if outbound.let_go.load(Ordering::Relaxed) {
            return;
        }
        // Its size without encoding it twice: socketioxide encodes it itself.
        let mut size = ByteCount(0);
        if let Err(err) = serde_json::to_writer(&mut size, reply) {
            tracing::error!(%err, "could not encode a reply");
            return;
        }
        let line = self.websocket_line(socket, &outbound);
        match ack.send(reply) {
            // `43<id>[payload]`: close enough to what is written.
            Ok(()) => {
                if let Some(line) = line {
                    line.queued_reply(size.0 + 8, self.backlog_max);
                }
            }
            Err(SendError::Socket(SocketError::InternalChannelFull)) => self.let_go(socket, &outbound, line, false),
            Err(err) => tracing::debug!(%err, "could not send a reply"),
        }
    }

    /// Lets the socket go if it may not ask for more ([`KillSwitch::may_ask`]):
    /// it owes more than its budget besides its unread replies, or leaves
    /// two big ones unread. True if it is (or was already) let go. For
    /// requests about to be served: such a client does not read what it
    /// asks for.
    pub fn let_go_if_behind(&self, socket: &SocketRef) -> bool {
        let outbound = Self::outbound(socket);
        if outbound.let_go.load(Ordering::Relaxed) {
            return true;
        }
        match self.websocket_line(socket, &outbound) {
            Some(line) if !line.may_ask(self.backlog_max) => {
                self.let_go(socket, &outbound, Some(line), true);
                true
            }
            _ => false,
        }
    }

    /// Whether this socket was let go as a slow consumer: its requests are
    /// not served any more.
    pub fn is_let_go(&self, socket: &SocketRef) -> bool {
        socket.extensions.get::<Arc<Outbound>>().is_some_and(|o| o.let_go.load(Ordering::Relaxed))
    }

    /// Counts `bytes` queued for `socket` against its budget.
    fn count(&self, socket: &SocketRef, outbound: &Outbound, bytes: usize) {
        if let Some(line) = self.websocket_line(socket, outbound) {
            line.queued(bytes as u64);
            if line.over(self.backlog_max) {
                self.let_go(socket, outbound, Some(line), true);
            }
        }
    }

    /// Closes one socket for `closing`'s reason: it is sent nothing more but
    /// `closing`, is disconnected from the namespace, and its WebSocket's
    /// connection is cut `grace` later (a client that ignores the
    /// disconnect must not keep the connection).
    pub fn close(&self, socket: SocketRef, closing: &Closing, grace: Duration) {
        let outbound = Self::outbound(&socket);
        let line = self.websocket_line(&socket, &outbound).cloned();
        if outbound.let_go.swap(true, Ordering::Relaxed) {
            return;
        }
        if let Ok(closing) = serde_json::value::to_raw_value(closing) {
            let _ = socket.emit(EV_CLOSING, &closing);
        }
        let _ = socket.disconnect();
        if let Some(line) = line {
            tokio::spawn(async move {
                tokio::time::sleep(grace).await;
                line.trip();
            });
        }
    }

    /// Emits to one socket; false if it could not take it.
    pub fn emit<T: Serialize + ?Sized>(&self, socket: &SocketRef, event: &str, data: &T) -> bool {
        match serde_json::value::to_raw_value(data) {
            Ok(payload) => self.emit_raw(socket, event, &payload),
            Err(err) => {
                tracing::error!(%err, event, "could not encode an event");
                false
            }
        }
    }

    fn emit_raw(&self, socket: &SocketRef, event: &str, payload: &RawValue) -> bool {
        let outbound = Self::outbound(socket);
        if outbound.let_go.load(Ordering::Relaxed) {
            return false;
        }
        match socket.emit(event, payload) {
            Ok(()) => {
                // `42["event",payload]`: close enough to what is written.
                self.count(socket, &outbound, event.len() + payload.get().len() + 8);
                true
            }
            Err(SendError::Socket(SocketError::InternalChannelFull)) => {
                let line = self.websocket_line(socket, &outbound);
                self.let_go(socket, &outbound, line, false);
                false
            }
            // Closed meanwhile: it is leaving anyway.
            Err(_) => false,
        }
    }

    fn outbound(socket: &SocketRef) -> Arc<Outbound> {
        socket.extensions.get::<Arc<Outbound>>().unwrap_or_else(|| {
            let outbound = Arc::<Outbound>::default();
            socket.extensions.insert(outbound.clone());
            outbound
        })
    }

    /// The TCP connection a WebSocket socket writes to; `None` on
    /// long-polling (whose requests come over any number of connections).
    fn websocket_line<'a>(&self, socket: &SocketRef, outbound: &'a Outbound) -> Option<&'a KillSwitch> {
        if socket.transport_type() != TransportType::Websocket {
            return None;
        }
        if let Some(line) = outbound.line.get() {
            return Some(line);
        }
        let kill = self
            .transports
            .upgraded(&socket.id)
            .or_else(|| PeerConn::of(&socket.req_parts().extensions).map(|c| c.kill.clone()))?;
        Some(outbound.line.get_or_init(|| kill))
    }

    /// Lets a slow consumer go; see the module docs. `room` says whether its
    /// queue can still take the `closing`.
    fn let_go(&self, socket: &SocketRef, outbound: &Outbound, line: Option<&KillSwitch>, room: bool) {
        if outbound.let_go.swap(true, Ordering::Relaxed) {
            return; // another delivery got here first
        }
        self.metrics.slow_consumer_disconnected();
        match line {
            Some(line) if room => {
                tracing::warn!(sid = %socket.id, backlog = line.backlog(), "slow consumer: over its outbound budget; \
                     telling it why, then closing its connection");
                if let Ok(closing) = serde_json::value::to_raw_value(&Closing::slow_consumer()) {
                    let _ = socket.emit(EV_CLOSING, &closing);
                }
                let line = line.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(SLOW_CONSUMER_GRACE).await;
                    line.trip();
                });
            }
            Some(line) => {
                tracing::warn!(sid = %socket.id, "slow consumer: outbound queue full, closing its connection");
                line.trip();
            }
            None => {
                tracing::warn!(sid = %socket.id, "slow consumer on long-polling: its next poll gets the goodbye");
                self.transports.dismiss(socket.id);
            }
        }
    }
}
