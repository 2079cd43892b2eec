//! What a stream's storage does for the engine, over the two stores: a
//! room's messages ([`Store`]) and notifications ([`Inbox`]).

use futures::future::BoxFuture;
use herald::notification::Notification;
use herald::{NewMessage, RoomName, Seq, StoredMessage, UserId};
use serde::Serialize;

use super::channel::Channel;
use crate::store::inbox::{Inbox, NewNotification, Recipient};
use crate::store::messages::Store;
use crate::store::{Appended, StoreError};

/// A stream's durable log: the only truth about what it holds.
pub trait Log: Send + Sync + 'static {
    /// What a writer asks to store.
    type New: Send + Sync + 'static;
    /// What is stored, as clients receive it.
    type Item: Serialize + Clone + Send + Sync + 'static;
    /// The Socket.IO event an item is delivered as.
    const EVENT: &'static str;

    /// The stream's newest allocated number.
    fn head<'a>(&'a self, channel: &'a Channel) -> BoxFuture<'a, Result<Seq, StoreError>>;
    /// The newest allocated number of each of `channels`, in their order,
    /// in one read.
    fn heads<'a>(&'a self, channels: &'a [Channel]) -> BoxFuture<'a, Result<Vec<Seq>, StoreError>>;
    /// Stores a batch: one allocation, one insert (see the stores).
    fn append<'a>(&'a self, channel: &'a Channel, batch: &'a [Self::New]) -> BoxFuture<'a, Appended<Self::Item>>;
    /// Stores `item` once in each of `channels`' streams; one answer per
    /// channel, in their order. By default one batch per channel, at once;
    /// a log that can do better in one write overrides it.
    fn append_each<'a>(
        &'a self,
        channels: &'a [Channel],
        item: &'a Self::New,
    ) -> BoxFuture<'a, Vec<Appended<Self::Item>>> {
        let each = channels.iter().map(move |channel| self.append(channel, std::slice::from_ref(item)));
        Box::pin(futures::future::join_all(each))
    }
    /// Items with `from < seq <= to`, oldest first, at most `limit`.
    fn range<'a>(
        &'a self,
        channel: &'a Channel,
        from: Seq,
        to: Seq,
        limit: u64,
    ) -> BoxFuture<'a, Result<Vec<Self::Item>, StoreError>>;
    fn seq(item: &Self::Item) -> Seq;
    /// Whether the newest items are kept in memory for catch-ups: not when
    /// stored items change (a notification's read state).
    fn windowed(channel: &Channel) -> bool;
}

/// A chat room's messages.
#[derive(Clone)]
pub struct Rooms(pub Store);

/// A channel that is not a room, given to the rooms' log: a bug.
fn not_a_room(channel: &Channel) -> StoreError {
    StoreError::Corrupt(format!("{channel} is not a room"))
}

fn room_of(channel: &Channel) -> Option<&RoomName> {
    match channel {
        Channel::Room(room) => Some(room),
        _ => None,
    }
}

impl Log for Rooms {
    type New = (NewMessage, bool);
    type Item = StoredMessage;
    const EVENT: &'static str = herald::protocol::EV_MESSAGE;

    fn head<'a>(&'a self, channel: &'a Channel) -> BoxFuture<'a, Result<Seq, StoreError>> {
        Box::pin(async move { self.0.head(room_of(channel).ok_or_else(|| not_a_room(channel))?).await })
    }

    fn heads<'a>(&'a self, channels: &'a [Channel]) -> BoxFuture<'a, Result<Vec<Seq>, StoreError>> {
        Box::pin(async move {
            let rooms: Vec<RoomName> = channels
                .iter()
                .map(|channel| room_of(channel).cloned().ok_or_else(|| not_a_room(channel)))
                .collect::<Result<_, _>>()?;
            self.0.heads(&rooms).await
        })
    }

    fn append<'a>(&'a self, channel: &'a Channel, batch: &'a [Self::New]) -> BoxFuture<'a, Appended<Self::Item>> {
        Box::pin(async move {
            match room_of(channel) {
                Some(room) => self.0.append_batch(room, batch).await,
                None => Appended::failed(batch.len(), not_a_room(channel)),
            }
        })
    }

    fn range<'a>(
        &'a self,
        channel: &'a Channel,
        from: Seq,
        to: Seq,
        limit: u64,
    ) -> BoxFuture<'a, Result<Vec<Self::Item>, StoreError>> {
        Box::pin(
            async move { self.0.range(room_of(channel).ok_or_else(|| not_a_room(channel))?, from, to, limit).await },
        )
    }

    fn seq(item: &Self::Item) -> Seq {
        item.seq
    }

    fn windowed(_: &Channel) -> bool {
        true
    }
}

/// Users' inboxes and the broadcast stream.
#[derive(Clone)]
pub struct Notes(pub Inbox);

fn recipient_of(channel: &Channel) -> Result<Recipient, StoreError> {
    match channel {
        Channel::User(user) => Ok(Recipient::User(user.clone())),
        Channel::Everyone => Ok(Recipient::Everyone),
        Channel::Room(_) => Err(StoreError::Corrupt(format!("{channel} has no notifications"))),
    }
}

impl Log for Notes {
    type New = NewNotification;
    type Item = Notification;
    const EVENT: &'static str = herald::notification::EV_NOTIFICATION;

    fn head<'a>(&'a self, channel: &'a Channel) -> BoxFuture<'a, Result<Seq, StoreError>> {
        Box::pin(async move { self.0.head(&recipient_of(channel)?).await })
    }

    fn heads<'a>(&'a self, channels: &'a [Channel]) -> BoxFuture<'a, Result<Vec<Seq>, StoreError>> {
        Box::pin(async move {
            let recipients: Vec<Recipient> = channels.iter().map(recipient_of).collect::<Result<_, _>>()?;
            self.0.heads(&recipients).await
        })
    }

    fn append<'a>(&'a self, channel: &'a Channel, batch: &'a [Self::New]) -> BoxFuture<'a, Appended<Self::Item>> {
        Box::pin(async move {
            match recipient_of(channel) {
                Ok(recipient) => self.0.store_batch(&recipient, batch).await,
                Err(err) => Appended::failed(batch.len(), err),
            }
        })
    }

    /// Users' inboxes are written together (see
    /// [`Inbox::store_for_users`]); anything else one batch at a time.
    fn append_each<'a>(
        &'a self,
        channels: &'a [Channel],
        item: &'a Self::New,
    ) -> BoxFuture<'a, Vec<Appended<Self::Item>>> {
        Box::pin(async move {
            let users: Option<Vec<UserId>> = channels
                .iter()
                .map(|channel| match channel {
                    Channel::User(user) => Some(user.clone()),
                    _ => None,
                })
                .collect();
            match users {
                Some(users) => self.0.store_for_users(&users, item).await,
                None => {
                    let each = channels.iter().map(|channel| self.append(channel, std::slice::from_ref(item)));
                    futures::future::join_all(each).await
                }
            }
        })
    }

    fn range<'a>(
        &'a self,
        channel: &'a Channel,
        from: Seq,
        to: Seq,
        limit: u64,
    ) -> BoxFuture<'a, Result<Vec<Self::Item>, StoreError>> {
        Box::pin(async move { self.0.range(&recipient_of(channel)?, from, to, limit).await })
    }

    fn seq(item: &Self::Item) -> Seq {
        item.seq
    }

    /// The broadcast stream's items never change; an inbox's do (read
    /// state), so an inbox catch-up reads the store.
    fn windowed(channel: &Channel) -> bool {
        matches!(channel, Channel::Everyone)
    }
}
