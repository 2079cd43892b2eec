//! Herald's delivery engine: what happens between "store this" and "every
//! listener has it".
//!
//! - [`channel`]: every channel name ([`Channel`]).
//! - [`broker`]: the seam to other nodes ([`Broker`], [`Publication`],
//!   [`Encoded`]), beside its one-node implementation in [`memory`].
//! - [`stream`]: per-stream group commit, order, window and catch-up, over
//!   a [`log::Log`] (the rooms' messages, the notifications).
//! - [`order`]: one stream's order and window, as pure state.
//! - [`local`]: the last hop, this node's sockets, through [`fanout`]
//!   (one encode per event, slow consumers let go).
//! - [`presence`]: who is in a room (the async, fallible [`presence::Presence`]
//!   beside its one-node implementation), and the coalesced, numbered
//!   snapshots; [`redis_presence`] is a cluster's, over Redis.
//!
//! Architecture invariant: only the engine delivers to sockets, and
//! everything it delivers was stored first. Handlers and services (`chat`,
//! `notify`) call [`Engine`]; none of them emits.

pub mod broker;
pub mod census;
pub mod channel;
pub mod fanout;
pub mod local;
pub mod log;
pub mod memory;
pub mod order;
pub mod presence;
pub mod redis;
pub mod redis_presence;
pub mod stream;

use std::sync::{Arc, OnceLock, Weak};

use futures::future::BoxFuture;
use herald::notification::Notification;
use herald::protocol::{Closing, EV_CLOSING, PresenceSnapshot};
use herald::{NewMessage, RoomName, Seq, StoredMessage, UserId};
use serde::Serialize;
use socketioxide::SocketIo;

pub use broker::{Broker, BrokerError, Encoded, Publication};
pub use channel::Channel;
pub use stream::{CatchUp, Settings};

use self::redis::RedisBroker;
use broker::Receive;
use census::Census;
use fanout::Fanout;
use local::Local;
use memory::MemoryBroker;
use order::Budget;
use presence::Tell;
use stream::Streams;

use crate::config::Cluster;
use crate::ops::metrics::{Metrics, Repair};
use crate::store::StoreError;
use crate::store::inbox::{Inbox, NewNotification};
use crate::store::messages::Store;

/// What an engine is made of.
pub struct Parts {
    pub store: Store,
    pub inbox: Inbox,
    pub fanout: Fanout,
    pub settings: Settings,
    /// Bounds the memory of every window together.
    pub window_bytes: usize,
    pub metrics: Arc<Metrics>,
}

/// The delivery engine. Cheap to clone.
#[derive(Clone)]
pub struct Engine(Arc<Node>);

/// This node's streams, and how publications reach them.
struct Node {
    rooms: Arc<Streams<log::Rooms>>,
    notes: Arc<Streams<log::Notes>>,
    local: Arc<Local>,
    broker: Arc<dyn Broker>,
    budget: Arc<Budget>,
    metrics: Arc<Metrics>,
    /// Moves each time the broker was cut off and is back.
    resyncs: tokio::sync::watch::Sender<u64>,
    /// A cluster's connection counts.
    census: OnceLock<Arc<Census>>,
}

impl Receive for Node {
    fn receive(&self, channel: &Channel, publication: Publication) {
        if let Publication::Disconnect { closing } = &publication {
            let closed = self.local.close(channel, closing);
            tracing::info!(%channel, closed, reason = %closing.reason, "closed a channel's connections");
            return;
        }
        match channel {
            Channel::Room(_) => self.rooms.receive(channel, publication),
            Channel::User(_) | Channel::Everyone => match publication {
                Publication::Presence { .. } => {} // rooms only
                publication => self.notes.receive(channel, publication),
            },
        }
    }

    fn resynced(&self) {
        self.resyncs.send_modify(|count| *count += 1);
        let (rooms, notes, metrics) = (self.rooms.clone(), self.notes.clone(), self.metrics.clone());
        tokio::spawn(async move { check_positions(&rooms, &notes, &metrics, Repair::Reconnect).await });
    }
}

/// Checks every stream of this node against the store (see
/// [`Streams::check_positions`]).
async fn check_positions(
    rooms: &Arc<Streams<log::Rooms>>,
    notes: &Arc<Streams<log::Notes>>,
    metrics: &Metrics,
    reason: Repair,
) {
    let behind = rooms.check_positions().await + notes.check_positions().await;
    metrics.repairs(reason, behind as u64);
    if behind > 0 {
        tracing::info!(streams = behind, ?reason, "streams behind the store; filling them from MongoDB");
    }
}

impl Engine {
    /// One node's engine: publications go straight to its own streams.
    pub fn local(parts: Parts) -> Self {
        Self::with_broker(parts, |node| Arc::new(MemoryBroker::new(node)))
    }

    /// A cluster node's engine: publications also go to the other nodes
    /// through Redis, and theirs come back through it; every stream is
    /// checked against the store every `cluster.position_check`.
    pub fn clustered(parts: Parts, cluster: &Cluster) -> Result<Self, BrokerError> {
        let metrics = parts.metrics.clone();
        let mut failure = None;
        let engine = Self::with_broker(parts, |node| match RedisBroker::start(cluster, node.clone(), metrics) {
            Ok(broker) => broker,
            Err(err) => {
                failure = Some(err);
                Arc::new(MemoryBroker::new(node))
            }
        });
        if let Some(err) = failure {
            return Err(err);
        }
        let census = Census::new(cluster).map_err(|err| BrokerError::Unreachable(err.to_string()))?;
        let node = Arc::downgrade(&engine.0);
        census.run(move |channel| node.upgrade().map(|node| Engine(node).online(channel)));
        let _ = engine.0.census.set(census);
        let node = Arc::downgrade(&engine.0);
        let every = cluster.position_check;
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let Some(node) = node.upgrade() else { return };
                check_positions(&node.rooms, &node.notes, &node.metrics, Repair::PositionCheck).await;
            }
        });
        Ok(engine)
    }

    fn with_broker(parts: Parts, broker: impl FnOnce(Weak<dyn Receive>) -> Arc<dyn Broker>) -> Self {
        let Parts { store, inbox, fanout, settings, window_bytes, metrics } = parts;
        Self(Arc::new_cyclic(|node: &Weak<Node>| {
            let receiver: Weak<dyn Receive> = node.clone();
            let broker = broker(receiver);
            let local = Arc::new(Local::new(fanout));
            let budget = Arc::new(Budget::new(window_bytes));
            let rooms = Streams::new(log::Rooms(store), settings, budget.clone(), local.clone(), broker.clone());
            let notes = Streams::new(log::Notes(inbox), settings, budget.clone(), local.clone(), broker.clone());
            let (rooms, notes) = (Arc::new(rooms), Arc::new(notes));
            let resyncs = tokio::sync::watch::channel(0).0;
            Node { rooms, notes, local, broker, budget, metrics, resyncs, census: OnceLock::new() }
        }))
    }

    /// Hands the engine the Socket.IO server it delivers through, once it
    /// is built.
    pub fn attach(&self, io: SocketIo) {
        self.0.local.attach(io);
    }

    /// Stops delivering to this node's sockets, before the Socket.IO server
    /// closes (a delivery after that would find no namespace). Events still
    /// go to the other nodes.
    pub fn detach(&self) {
        self.0.local.detach();
    }

    /// Stores a chat message (with whatever else is sent to its room
    /// meanwhile), then delivers it; answers once it is delivered here.
    pub async fn post(&self, message: NewMessage, retry: bool) -> Result<StoredMessage, StoreError> {
        let channel = Channel::Room(message.room.clone());
        self.0.rooms.append(&channel, (message, retry)).await
    }

    /// Stores a notification for a user or everyone, then delivers it.
    pub async fn notify(&self, channel: &Channel, note: NewNotification) -> Result<Notification, StoreError> {
        self.0.notes.append(channel, note).await
    }

    /// Stores one notification in each of `users`' inboxes, in a bounded
    /// number of round trips whatever their number, then delivers each;
    /// one answer per user, in their order.
    pub async fn notify_users(&self, users: &[UserId], note: NewNotification) -> Vec<Result<Notification, StoreError>> {
        let channels: Vec<Channel> = users.iter().cloned().map(Channel::User).collect();
        self.0.notes.append_each(&channels, note).await
    }

    /// Tells `channel`'s sockets on every node `event`, outside any
    /// stream's order (a read-state change).
    pub async fn tell<T: Serialize + ?Sized>(&self, channel: &Channel, event: &'static str, payload: &T) {
        let Some(payload) = Encoded::of(payload) else { return };
        if let Err(err) = self.0.broker.publish(channel, Publication::Event { event, payload }).await {
            tracing::warn!(%err, %channel, event, "could not publish an event");
        }
    }

    /// Tells every socket of this node why it is about to be closed (the
    /// shutdown's `closing`), outside any stream; how many took it.
    pub fn goodbye(&self, closing: &Closing) -> usize {
        let Some(payload) = Encoded::of(closing) else { return 0 };
        self.0.local.deliver(&Channel::Everyone, EV_CLOSING, &payload)
    }

    /// A socket of this node listens to `channel` (keeps its stream and
    /// window); each call is undone by one [`Engine::unlisten`].
    pub fn listen(&self, channel: &Channel) {
        match channel {
            Channel::Room(_) => self.0.rooms.listen(channel),
            Channel::User(_) | Channel::Everyone => self.0.notes.listen(channel),
        }
        if let Some(census) = self.0.census.get() {
            census.changed(channel);
        }
    }

    pub fn unlisten(&self, channel: &Channel) {
        self.streams_of(channel, |rooms| rooms.unlisten(channel), |notes| notes.unlisten(channel));
        if let Some(census) = self.0.census.get() {
            census.changed(channel);
        }
    }

    /// This node's sockets listening to `channel`.
    pub fn online(&self, channel: &Channel) -> usize {
        self.streams_of(channel, |rooms| rooms.listeners(channel), |notes| notes.listeners(channel))
    }

    /// The sockets listening to `channel` on every node: this node's, plus
    /// in a cluster what the others last wrote to Redis (approximate, see
    /// [`census`]).
    pub async fn online_everywhere(&self, channel: &Channel) -> usize {
        let here = self.online(channel);
        match self.0.census.get() {
            Some(census) => census.count(channel, here).await,
            None => here,
        }
    }

    /// What a client holding everything of `channel` up to `since` missed;
    /// `joined` puts its socket in the channel in the same step (see
    /// [`stream`]).
    pub async fn catch_up(&self, channel: &Channel, since: Seq, joined: impl FnOnce()) -> Result<CatchUp, StoreError> {
        let max = herald::protocol::CATCH_UP_MAX;
        match channel {
            Channel::Room(_) => self.0.rooms.catch_up(channel, since, max, joined).await,
            Channel::User(_) | Channel::Everyone => self.0.notes.catch_up(channel, since, max, joined).await,
        }
    }

    /// A room's newest `count` sequence numbers' worth of messages, oldest
    /// first, and the cursor they end at: a page rendered from it shows a
    /// watermark, like a join's answer (from the window when the room has
    /// listeners here, else one head read and one range read).
    pub async fn recent(&self, room: &RoomName, count: u64) -> Result<(Seq, Vec<StoredMessage>), StoreError> {
        let channel = Channel::Room(room.clone());
        self.0.rooms.listen(&channel);
        let caught_up = self.0.rooms.catch_up(&channel, Seq(0), count, || {}).await;
        self.0.rooms.unlisten(&channel);
        let caught_up = caught_up?;
        let mut messages = Vec::with_capacity(caught_up.items.len());
        for item in &caught_up.items {
            match serde_json::from_str(item.raw().get()) {
                Ok(message) => messages.push(message),
                Err(err) => return Err(StoreError::Corrupt(format!("a window item of {room}: {err}"))),
            }
        }
        Ok((caught_up.head, messages))
    }

    /// Deletes a room's message from the store, then takes it down on every
    /// node: out of the windows, and off every socket's screen
    /// (`message_removed`). False when the room has no such message.
    pub async fn remove(&self, room: &RoomName, seq: Seq) -> Result<bool, StoreError> {
        if !self.store().delete(room, seq).await? {
            return Ok(false);
        }
        let channel = Channel::Room(room.clone());
        if let Err(err) = self.0.broker.publish(&channel, Publication::Removed { seq }).await {
            tracing::warn!(%err, %room, seq = seq.get(), "could not tell the other nodes of a removed message");
        }
        Ok(true)
    }

    /// Closes `user`'s connections on every node, each told `closing`.
    pub async fn disconnect(&self, user: &UserId, closing: Closing) {
        let channel = Channel::User(user.clone());
        if let Err(err) = self.0.broker.publish(&channel, Publication::Disconnect { closing }).await {
            tracing::warn!(%err, "could not tell the other nodes to disconnect a user");
        }
    }

    /// Moves each time the other nodes were out of reach and are back.
    pub fn resyncs(&self) -> tokio::sync::watch::Receiver<u64> {
        self.0.resyncs.subscribe()
    }

    /// Waits (at most `within`) until everything this node published has
    /// left it for the other nodes: before it exits.
    pub async fn flush(&self, within: std::time::Duration) {
        self.0.broker.flush(within).await;
    }

    /// Whether the other nodes can be reached (`None` on one node).
    pub fn cluster_health(&self) -> Option<bool> {
        self.0.broker.health()
    }

    /// Bytes the windows hold, and the streams kept (for `/metrics`).
    pub fn memory(&self) -> (usize, usize) {
        (self.0.budget.used(), self.0.rooms.len() + self.0.notes.len())
    }

    /// The stores under the engine, for reads it does not serve.
    pub fn store(&self) -> &Store {
        &self.0.rooms.log().0
    }

    pub fn inbox(&self) -> &Inbox {
        &self.0.notes.log().0
    }

    fn streams_of<R>(
        &self,
        channel: &Channel,
        rooms: impl FnOnce(&Streams<log::Rooms>) -> R,
        notes: impl FnOnce(&Streams<log::Notes>) -> R,
    ) -> R {
        match channel {
            Channel::Room(_) => rooms(&self.0.rooms),
            Channel::User(_) | Channel::Everyone => notes(&self.0.notes),
        }
    }
}

impl Tell for Engine {
    /// Tells the room's sockets on every node, through the room's stream:
    /// each node delivers a snapshot unless it delivered a newer one.
    fn presence<'a>(&'a self, room: &'a RoomName, version: u64, snapshot: &'a PresenceSnapshot) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let Some(payload) = Encoded::of(snapshot) else { return };
            let channel = Channel::Room(room.clone());
            if let Err(err) = self.0.broker.publish(&channel, Publication::Presence { version, payload }).await {
                tracing::debug!(%err, %room, "a presence snapshot may not reach every node");
            }
        })
    }
}
