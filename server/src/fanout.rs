//! Delivering one event to many connections on this node, and cutting off
//! connections that can't keep up.
//!
//! Each connection has a bounded outbound buffer
//! (`HERALD_OUTBOUND_BUFFER_PACKETS`). socketioxide's own broadcast skips a
//! socket whose buffer is full and doesn't say which one, so the skipped
//! client would silently miss messages and keep its full buffer. Here the
//! payload is serialised once into raw JSON, emitted to each socket in turn,
//! and a socket whose buffer is full is a slow consumer: its connection is
//! cut (see [`crate::conn`]) so it can't hold memory or miss messages
//! unnoticed; its client reconnects and catches up from history, like after
//! any dropped connection. Nobody else waits: an emit never blocks.
//!
//! With several nodes, each node will run this for its own sockets when the
//! event arrives from Redis.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use socketioxide::extract::SocketRef;
use socketioxide::socket::Sid;
use socketioxide::{SendError, SocketError, SocketIo, TransportType};

use crate::conn::{KillSwitch, PeerConn};
use crate::metrics::Metrics;

/// Who an event goes to.
pub enum Audience<'a> {
    /// The sockets in one Socket.IO room (a chat room or a user's channel).
    Room(&'a str),
    /// Every socket.
    Everyone,
}

/// The TCP connections of WebSockets that were upgraded from long-polling,
/// by socket id. The handshake's `ConnectInfo` belongs to the first polling
/// request, not to the WebSocket that replaced it.
#[derive(Clone, Default)]
pub struct Upgrades(Arc<Mutex<HashMap<Sid, KillSwitch>>>);

impl Upgrades {
    pub fn insert(&self, sid: Sid, kill: KillSwitch) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).insert(sid, kill);
    }

    pub fn remove(&self, sid: &Sid) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(sid);
    }

    fn get(&self, sid: &Sid) -> Option<KillSwitch> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).get(sid).cloned()
    }
}

/// Fan-out with slow-consumer handling. Cheap to clone.
#[derive(Clone)]
pub struct Fanout {
    metrics: Arc<Metrics>,
    upgrades: Upgrades,
}

impl Fanout {
    pub fn new(metrics: Arc<Metrics>, upgrades: Upgrades) -> Self {
        Self { metrics, upgrades }
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
        let payload = match serde_json::value::to_raw_value(data) {
            Ok(payload) => payload,
            Err(err) => {
                tracing::error!(%err, event, "could not encode an event");
                return 0;
            }
        };
        let sockets = match audience {
            Audience::Room(room) => io.to(room.to_owned()).sockets(),
            Audience::Everyone => io.sockets(),
        };
        let mut delivered = 0;
        for socket in sockets {
            delivered += usize::from(self.emit_raw(&socket, event, &payload));
        }
        self.metrics.delivered(delivered as u64);
        delivered
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

    fn emit_raw(&self, socket: &SocketRef, event: &str, payload: &serde_json::value::RawValue) -> bool {
        match socket.emit(event, payload) {
            Ok(()) => true,
            Err(SendError::Socket(SocketError::InternalChannelFull)) => {
                self.cut_slow_consumer(socket);
                false
            }
            // Closed meanwhile: it is leaving anyway.
            Err(_) => false,
        }
    }

    fn cut_slow_consumer(&self, socket: &SocketRef) {
        self.metrics.slow_consumer_disconnected();
        let kill = match socket.transport_type() {
            TransportType::Websocket => self.upgrades.get(&socket.id).or_else(|| {
                socket.req_parts().extensions.get::<axum::extract::ConnectInfo<PeerConn>>().map(|c| c.0.kill.clone())
            }),
            // A long-polling client that stops polling also stops answering
            // pings: the heartbeat closes it within its timeout, and its
            // buffer is bounded meanwhile.
            TransportType::Polling => None,
        };
        match kill {
            Some(kill) if !kill.is_tripped() => {
                tracing::warn!(sid = %socket.id, "slow consumer: outbound buffer full, closing its connection");
                kill.trip();
            }
            Some(_) => {}
            None => tracing::warn!(sid = %socket.id, "slow consumer on long-polling: left to the heartbeat"),
        }
    }
}
