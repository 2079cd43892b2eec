//! The seam between storing an event and delivering it: a [`Broker`]
//! carries a stream's publications to every node that has listeners for
//! the channel, each node's engine then orders and delivers them to its own
//! sockets. One node uses [`super::memory::MemoryBroker`]; a cluster plugs
//! another implementation in here and nothing above the engine changes.

use std::sync::Arc;

use futures::future::BoxFuture;
use herald::Seq;
use herald::protocol::Closing;
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;

use super::channel::Channel;

/// An event's payload, encoded to JSON once by whoever published it and
/// shared by every delivery, window and reply that carries it.
#[derive(Debug, Clone)]
pub struct Encoded(Arc<RawValue>);

impl Encoded {
    /// Encodes `value`; `None` (logged) if it can't be, which for Herald's
    /// own types means a bug, never bad input.
    pub fn of<T: Serialize + ?Sized>(value: &T) -> Option<Self> {
        match serde_json::value::to_raw_value(value) {
            Ok(raw) => Some(Self(Arc::from(raw))),
            Err(err) => {
                tracing::error!(%err, "could not encode an event");
                None
            }
        }
    }

    /// An event encoded elsewhere (by another node), taken as it is.
    pub fn from_raw(raw: Box<RawValue>) -> Self {
        Self(Arc::from(raw))
    }

    pub fn raw(&self) -> &RawValue {
        &self.0
    }

    /// Its size, for the windows' memory budget.
    pub fn len(&self) -> usize {
        self.0.get().len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.get().is_empty()
    }
}

impl Serialize for Encoded {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

/// What a broker carries for a channel.
#[derive(Debug, Clone)]
pub enum Publication {
    /// Items of the channel's stream, in increasing sequence order.
    Stream {
        /// The numbers this publication accounts for: every number in
        /// `first..=last` is one of `items` or holds nothing (it was wasted
        /// by a duplicate or a failed write), so nobody waits for it.
        /// `None` for copies of items accounted for before (a retried send
        /// that found its stored copy): they are delivered only where they
        /// were not.
        span: Option<(Seq, Seq)>,
        items: Vec<(Seq, Encoded)>,
    },
    /// An event outside the stream's order (a read-state change), delivered
    /// as it comes.
    Event { event: &'static str, payload: Encoded },
    /// A room's presence snapshot, numbered: a node delivers it unless it
    /// delivered a newer one (snapshots of different nodes may cross).
    Presence { version: u64, payload: Encoded },
    /// A stream item taken down (a room message removed through the API,
    /// after it was deleted from the store): each node forgets it — from
    /// its window, and from what it still holds to deliver — and tells its
    /// sockets.
    Removed { seq: Seq },
    /// Close the channel's sockets (a user's, disconnected through the
    /// API), each told `closing` first.
    Disconnect { closing: Closing },
}

/// Why a publication may not have reached every node.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("the broker is unreachable: {0}")]
    Unreachable(String),
}

/// Carries publications to every node with listeners for a channel.
///
/// Ordering: publications of one channel from one publisher arrive at each
/// node in the order they were published; publications of different
/// publishers (nodes) may interleave in any order. Receivers put a stream
/// back in order by its numbers and fill holes from the store (see
/// [`super::stream`]), so a broker needs no more than that.
///
/// Failure: a publication may be lost (the broker reports an error, or a
/// node is cut off). Nothing is lost for good: every stream item is stored
/// before it is published, and a receiver that sees a hole, or is told it
/// missed something, reads it from the store. A broker never blocks a
/// publisher for longer than its own bounded timeout.
///
/// Subscriptions: a node subscribes to a channel while it has listeners for
/// it, before it reads the stream's head, so that nothing stored after that
/// read misses it; what it receives of a channel it is not subscribed to,
/// it drops. A failed subscription leaves the node to catch up from the
/// store; the broker keeps trying to subscribe every channel wanted.
pub trait Broker: Send + Sync + 'static {
    /// Delivers `publication` to this node's streams, and carries it to the
    /// other nodes.
    fn publish(&self, channel: &Channel, publication: Publication) -> BoxFuture<'_, Result<(), BrokerError>>;

    /// This node wants the channel's publications from other nodes.
    fn subscribe<'a>(&'a self, _channel: &'a Channel) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(std::future::ready(Ok(())))
    }

    /// This node no longer does.
    fn unsubscribe(&self, _channel: &Channel) {}

    /// Whether the other nodes can be reached: `None` for one node (there
    /// are none).
    fn health(&self) -> Option<bool> {
        None
    }

    /// Waits (at most `within`) until what was published so far has left
    /// this node: before a node exits.
    fn flush(&self, _within: std::time::Duration) -> BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }
}

/// A node's side of a broker: what it does with a publication that reached
/// it.
pub trait Receive: Send + Sync + 'static {
    fn receive(&self, channel: &Channel, publication: Publication);

    /// The broker may have lost publications (it was cut off and is back):
    /// every stream is checked against the store.
    fn resynced(&self) {}
}
