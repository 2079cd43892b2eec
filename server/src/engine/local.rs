//! The last hop of every delivery: this node's sockets of a channel, with
//! the fan-out's slow-consumer rules. Only the engine delivers, and it does
//! so through here.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use herald::protocol::Closing;
use socketioxide::SocketIo;

use super::broker::Encoded;
use super::channel::Channel;
use super::fanout::{Audience, Fanout};

/// This node's sockets.
pub struct Local {
    /// Set once the Socket.IO layer is built (it is built with the states
    /// that hold the engine).
    io: OnceLock<SocketIo>,
    /// The Socket.IO server is closing: nothing is delivered any more (its
    /// namespace is gone, and every socket with it).
    detached: AtomicBool,
    fanout: Fanout,
}

impl Local {
    pub fn new(fanout: Fanout) -> Self {
        Self { io: OnceLock::new(), detached: AtomicBool::new(false), fanout }
    }

    pub fn attach(&self, io: SocketIo) {
        let _ = self.io.set(io);
    }

    /// Stops every delivery: the Socket.IO server is about to close.
    pub fn detach(&self) {
        self.detached.store(true, Ordering::SeqCst);
    }

    /// Closes the channel's sockets on this node, each told `closing`
    /// first; how many there were.
    pub fn close(&self, channel: &Channel, closing: &Closing) -> usize {
        /// How long a closed socket has to read why before its connection
        /// is cut.
        const GRACE: Duration = Duration::from_secs(1);
        let Some(io) = self.io.get().filter(|_| !self.detached.load(Ordering::SeqCst)) else { return 0 };
        let sockets = match channel.socket_room() {
            Some(room) => io.to(room).sockets(),
            None => io.sockets(),
        };
        let count = sockets.len();
        for socket in sockets {
            self.fanout.close(socket, closing, GRACE);
        }
        count
    }

    /// Emits `event` to the channel's sockets on this node; how many took it.
    pub fn deliver(&self, channel: &Channel, event: &str, payload: &Encoded) -> usize {
        let Some(io) = self.io.get().filter(|_| !self.detached.load(Ordering::SeqCst)) else { return 0 };
        let room = channel.socket_room();
        let audience = match &room {
            Some(room) => Audience::Room(room),
            None => Audience::Everyone,
        };
        self.fanout.deliver_encoded(io, audience, event, payload.raw())
    }
}
