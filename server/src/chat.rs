//! Posting a message: the one path both the Socket.IO `send` event and the
//! no-JavaScript form take, so they store and broadcast identically.

use herald::protocol::EV_MESSAGE;
use herald::{NewMessage, RoomName, StoredMessage};
use socketioxide::SocketIo;

use crate::store::{Store, StoreError};

/// The Socket.IO room key of a chat room. Prefixed so that rooms never
/// collide with other kinds of channels (users, broadcast) sharing the
/// adapter's room namespace.
pub fn room_key(room: &RoomName) -> String {
    format!("room:{room}")
}

/// Storing and fanning out chat messages.
#[derive(Clone)]
pub struct Chat {
    store: Store,
}

impl Chat {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Stores `message`, then broadcasts it to everyone in its room.
    ///
    /// Architecture invariant: a message is stored before anyone is told
    /// about it. If the broadcast is lost, clients still get the message
    /// from history when they next join; if the store fails, nobody has
    /// seen it and the sender gets an error to retry with the same id.
    pub async fn post(&self, io: &SocketIo, message: &NewMessage, retry: bool) -> Result<StoredMessage, StoreError> {
        let stored = self.store.append(message, retry).await?;
        // The packet is encoded once and shared by every recipient.
        if let Err(err) = io.to(room_key(&stored.room)).emit(EV_MESSAGE, &stored).await {
            tracing::warn!(%err, room = %stored.room, seq = %stored.seq, "broadcast failed");
        }
        Ok(stored)
    }
}
