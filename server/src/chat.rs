//! Posting a message: the one path both the Socket.IO `send` event and the
//! no-JavaScript form take, so they check, store and broadcast identically.

use std::sync::Arc;

use herald::protocol::{EV_MESSAGE, ErrorReply};
use herald::{NewMessage, RoomName, StoredMessage};
use socketioxide::SocketIo;

use crate::fanout::{Audience, Fanout};
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};

/// The Socket.IO room key of a chat room. Prefixed so that rooms never
/// collide with other kinds of channels (users, broadcast) sharing the
/// adapter's room namespace.
pub fn room_key(room: &RoomName) -> String {
    format!("room:{room}")
}

/// Why a message was not posted.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    /// It breaks this server's configured limits; the reply says which.
    #[error("{}", .0.reason)]
    Invalid(ErrorReply),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// This server's limits on messages, tighter than (or equal to) the
/// protocol's own.
#[derive(Debug, Clone, Copy)]
pub struct MessageLimits {
    pub body_max_chars: usize,
    pub name_max_chars: usize,
}

/// Storing and fanning out chat messages.
#[derive(Clone)]
pub struct Chat {
    store: Store,
    fanout: Fanout,
    metrics: Arc<Metrics>,
    limits: MessageLimits,
}

impl Chat {
    pub fn new(store: Store, fanout: Fanout, metrics: Arc<Metrics>, limits: MessageLimits) -> Self {
        Self { store, fanout, metrics, limits }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Checks `message` against this server's limits, stores it, then
    /// broadcasts it to everyone in its room.
    ///
    /// Architecture invariant: a message is stored before anyone is told
    /// about it. If the broadcast is lost, clients still get the message
    /// from history when they next join; if the store fails, nobody has
    /// seen it and the sender gets an error to retry with the same id.
    pub async fn post(&self, io: &SocketIo, message: &NewMessage, retry: bool) -> Result<StoredMessage, PostError> {
        self.metrics.message_received();
        if message.body.as_str().chars().count() > self.limits.body_max_chars {
            return Err(PostError::Invalid(ErrorReply::new(
                "too_long",
                format!("a message may be at most {} characters", self.limits.body_max_chars),
            )));
        }
        if message.name.as_str().chars().count() > self.limits.name_max_chars {
            return Err(PostError::Invalid(ErrorReply::new(
                "invalid_name",
                format!("a name may be at most {} characters", self.limits.name_max_chars),
            )));
        }
        let stored = self.store.append(message, retry).await?;
        self.metrics.message_stored();
        self.fanout.deliver(io, Audience::Room(&room_key(&stored.room)), EV_MESSAGE, &stored);
        Ok(stored)
    }
}
