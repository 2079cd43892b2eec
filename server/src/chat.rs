//! Posting a message: the one path both the Socket.IO `send` event and the
//! no-JavaScript form take, so they check, store and broadcast identically.

use std::sync::Arc;

use herald::protocol::{EV_MESSAGE, ErrorReply};
use herald::{NewMessage, RoomName, Seq, StoredMessage};
use socketioxide::SocketIo;

use crate::fanout::{Audience, Fanout};
use crate::metrics::Metrics;
use crate::sequencer::Sequencer;
use crate::store::{CatchUp, Store, StoreError};

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
    /// Each room's delivery order.
    order: Arc<Sequencer<StoredMessage>>,
}

impl Chat {
    pub fn new(store: Store, fanout: Fanout, metrics: Arc<Metrics>, limits: MessageLimits) -> Self {
        Self { store, fanout, metrics, limits, order: Arc::default() }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Checks `message` against this server's limits, stores it, then
    /// broadcasts it to everyone in its room, in sequence order: it goes
    /// out once every lower number is out, and the answer waits for that.
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
        let key = room_key(&message.room);
        let stream = self.order.stream(&key);
        stream.start(|| self.store.head(&message.room)).await?;
        let fanout = self.fanout.clone();
        let mut writer = stream.writer(move |stored: &StoredMessage| {
            fanout.deliver(io, Audience::Room(&key), EV_MESSAGE, stored);
        });
        let stored = self.store.append(message, retry, |seq| writer.allocated(seq)).await?;
        self.metrics.message_stored();
        writer.stored(stored.seq, stored.clone()).await;
        Ok(stored)
    }

    /// What a client joining `room` with everything up to `since` missed,
    /// up to the newest message delivered live: a socket that joined the
    /// room before asking gets every later one live, so the answer's head
    /// is a watermark (the client has everything at or below it).
    pub async fn catch_up(&self, room: &RoomName, since: Seq) -> Result<CatchUp, StoreError> {
        let delivered = self.order.get(&room_key(room)).and_then(|stream| stream.cursor());
        self.store.since(room, since, delivered).await
    }
}
