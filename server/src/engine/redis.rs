//! The broker of a cluster: Redis pub/sub, one Redis channel per stream
//! ([`Channel::bus_name`]), subscribed by a node only while it has
//! listeners for the stream.
//!
//! - **Publishing** never waits on Redis: a publication goes to this node's
//!   streams at once, and into a bounded queue that one task empties into
//!   pipelined `PUBLISH`es, in the order they were queued (the ordering
//!   [`Broker`] promises). A full queue, or Redis down, drops it (counted):
//!   it is stored, and the receivers' sequencers fill what they miss from
//!   MongoDB.
//! - **Receiving**: events arrive as RESP3 pushes on the subscribing
//!   connection; one task decodes each and hands it to this node's engine,
//!   which puts the stream back in order. A node drops its own
//!   publications (it delivered them when it published) and those of
//!   channels it no longer wants.
//! - **Failure**: the connections reconnect by themselves with backoff
//!   (redis-rs's `ConnectionManager`). When the subscribing one drops, this
//!   node subscribes every wanted channel again, and keeps trying until
//!   Redis answers.
//!
//! Each event is encoded once by its publisher, as JSON:
//! `{"v":1,"o":"<node>","k":"s","s":[first,last],"i":[[seq,item],…]}` for
//! stream items (`s` is `null` for stored copies), or
//! `{"v":1,"o":"<node>","k":"e","e":"<event>","p":payload}`, or a room's
//! presence snapshot, `{"v":1,"o":"<node>","k":"p","n":version,"p":snapshot}`.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures::future::BoxFuture;
use herald::Seq;
use herald::protocol::EV_READ;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Msg, PushInfo, PushKind};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot};

use super::broker::{Broker, BrokerError, Encoded, Publication, Receive};
use super::channel::Channel;
use crate::config::Cluster;
use crate::ops::metrics::{BusEvent, Metrics};
use crate::sync::lock;

/// Every Redis command's bound (a publish pipeline, a subscription).
pub const REDIS_TIMEOUT: Duration = Duration::from_secs(2);
/// Publications waiting to go to Redis, for the whole node.
const OUTGOING_MAX: usize = 16_384;
/// Pushes received and not yet handed to the engine.
const INCOMING_MAX: usize = 65_536;
/// `PUBLISH`es in one pipeline.
const PIPELINE_MAX: usize = 256;
/// Channels in one `SUBSCRIBE` when subscribing everything again.
const SUBSCRIBE_BATCH: usize = 512;
/// Events this version of Herald sends outside a stream's order.
const EVENTS: &[&str] = &[EV_READ];

/// Carries publications between the nodes of a cluster through Redis.
pub struct RedisBroker {
    node: Weak<dyn Receive>,
    id: String,
    prefix: String,
    /// This node's own channel: where its liveness probes go.
    probe_channel: String,
    /// The newest probe that came back.
    probes: tokio::sync::watch::Sender<u64>,
    connect: Connect,
    outgoing: mpsc::Sender<(String, Vec<u8>)>,
    /// Publications queued or being sent, and a wake-up when that is none.
    unsent: AtomicUsize,
    sent: tokio::sync::Notify,
    commands: mpsc::UnboundedSender<Command>,
    /// Channels this node subscribes, by bus name.
    wanted: Mutex<HashSet<String>>,
    up: AtomicBool,
    metrics: Arc<Metrics>,
}

enum Command {
    Subscribe(String, oneshot::Sender<Result<(), BrokerError>>),
    Unsubscribe(String),
    /// The subscribing connection dropped: subscribe everything wanted.
    Resubscribe,
    /// The subscribing connection carries nothing: replace it, then
    /// subscribe everything wanted.
    Reconnect,
}

/// Makes connections to the cluster's Redis.
struct Connect {
    client: redis::Client,
    pushes: mpsc::UnboundedSender<PushInfo>,
    queued: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
}

/// How every connection to the cluster's Redis behaves: bounded waits,
/// reconnecting for good with backoff up to 2 s.
pub fn connection_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(REDIS_TIMEOUT))
        .set_response_timeout(Some(REDIS_TIMEOUT))
        .set_max_delay(Duration::from_secs(2))
        .set_number_of_retries(usize::MAX)
}

impl Connect {
    fn config() -> ConnectionManagerConfig {
        connection_config()
    }

    /// A connection for commands (it connects when first used).
    fn commands(&self) -> Result<ConnectionManager, BrokerError> {
        ConnectionManager::new_lazy_with_config(self.client.clone(), Self::config()).map_err(unreachable)
    }

    /// A connection whose pushes (subscribed events) go to the receiving
    /// task. The driver must never wait on the push sender: past the
    /// bound a push is dropped (and counted), the sequencer repairs the
    /// stream.
    fn subscriber(&self) -> Result<ConnectionManager, BrokerError> {
        let (pushes, queued, metrics) = (self.pushes.clone(), self.queued.clone(), self.metrics.clone());
        let push_sender = move |push: PushInfo| -> Result<(), redis::aio::SendError> {
            if queued.fetch_add(1, Ordering::Relaxed) >= INCOMING_MAX {
                queued.fetch_sub(1, Ordering::Relaxed);
                metrics.bus(BusEvent::Dropped);
                return Ok(());
            }
            pushes.send(push).map_err(|_| redis::aio::SendError)
        };
        ConnectionManager::new_lazy_with_config(self.client.clone(), Self::config().set_push_sender(push_sender))
            .map_err(unreachable)
    }
}

#[derive(Serialize)]
struct Outgoing<'a> {
    v: u8,
    o: &'a str,
    k: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    s: Option<Option<(u64, u64)>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    i: Option<Vec<(u64, &'a RawValue)>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    e: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    p: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    n: Option<u64>,
}

#[derive(Deserialize)]
struct Incoming {
    v: u8,
    o: String,
    k: String,
    #[serde(default)]
    s: Option<(u64, u64)>,
    #[serde(default)]
    i: Vec<(u64, Box<RawValue>)>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    p: Option<Box<RawValue>>,
    #[serde(default)]
    n: Option<u64>,
}

fn unreachable(err: impl std::fmt::Display) -> BrokerError {
    BrokerError::Unreachable(err.to_string())
}

impl RedisBroker {
    /// Connects (lazily: nothing waits for Redis here) and starts the
    /// tasks that publish, subscribe and receive.
    pub fn start(cluster: &Cluster, node: Weak<dyn Receive>, metrics: Arc<Metrics>) -> Result<Arc<Self>, BrokerError> {
        // The URL may hold a password: errors about it never quote it.
        let client = redis::Client::open(cluster.redis_url.expose())
            .map_err(|_| BrokerError::Unreachable("HERALD_REDIS_URL is not a Redis URL".to_owned()))?;
        let (pushes_tx, pushes) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let connect = Connect { client, pushes: pushes_tx, queued: queued.clone(), metrics: metrics.clone() };
        let publisher = connect.commands()?;
        let subscriber = connect.subscriber()?;
        let (outgoing, outgoing_rx) = mpsc::channel(OUTGOING_MAX);
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let probe_channel = format!("{}:n:{}", cluster.prefix, cluster.node_id);
        let broker = Arc::new(Self {
            node,
            id: cluster.node_id.clone(),
            prefix: cluster.prefix.clone(),
            probes: tokio::sync::watch::channel(0).0,
            connect,
            outgoing,
            unsent: AtomicUsize::new(0),
            sent: tokio::sync::Notify::new(),
            commands,
            wanted: Mutex::new(HashSet::from([probe_channel.clone()])),
            probe_channel,
            up: AtomicBool::new(false),
            metrics,
        });
        tokio::spawn(Self::publishing(Arc::downgrade(&broker), publisher, outgoing_rx));
        tokio::spawn(Self::subscribing(Arc::downgrade(&broker), subscriber, commands_rx));
        tokio::spawn(Self::receiving(Arc::downgrade(&broker), pushes, queued));
        tokio::spawn(Self::probing(Arc::downgrade(&broker), cluster.probe));
        let _ = broker.commands.send(Command::Resubscribe);
        Ok(broker)
    }

    /// Whether Redis answered the last command sent to it.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    fn set_up(&self, up: bool) {
        if self.up.swap(up, Ordering::Relaxed) != up {
            if up {
                tracing::info!(node = %self.id, "Redis is reachable");
            } else {
                tracing::warn!(node = %self.id, "Redis is unreachable: events between nodes wait for it");
            }
        }
    }

    fn encode(&self, publication: &Publication) -> Option<Vec<u8>> {
        let message = match publication {
            Publication::Stream { span, items } => Outgoing {
                v: 1,
                o: &self.id,
                k: "s",
                s: Some(span.map(|(first, last)| (first.get(), last.get()))),
                i: Some(items.iter().map(|(seq, item)| (seq.get(), item.raw())).collect()),
                e: None,
                p: None,
                n: None,
            },
            Publication::Event { event, payload } => Outgoing {
                v: 1,
                o: &self.id,
                k: "e",
                s: None,
                i: None,
                e: Some(event),
                p: Some(payload.raw()),
                n: None,
            },
            Publication::Presence { version, payload } => Outgoing {
                v: 1,
                o: &self.id,
                k: "p",
                s: None,
                i: None,
                e: None,
                p: Some(payload.raw()),
                n: Some(*version),
            },
            Publication::Removed { seq } => {
                Outgoing { v: 1, o: &self.id, k: "r", s: None, i: None, e: None, p: None, n: Some(seq.get()) }
            }
            Publication::Disconnect { closing } => {
                let payload = serde_json::value::to_raw_value(closing).ok()?;
                let message =
                    Outgoing { v: 1, o: &self.id, k: "d", s: None, i: None, e: None, p: Some(&payload), n: None };
                return serde_json::to_vec(&message).ok();
            }
        };
        serde_json::to_vec(&message).ok()
    }

    /// Queues a publication for Redis; `Err` when the queue is full.
    fn send(&self, publication: (String, Vec<u8>)) -> Result<(), ()> {
        self.unsent.fetch_add(1, Ordering::Relaxed);
        self.outgoing.try_send(publication).map_err(|_| {
            if self.unsent.fetch_sub(1, Ordering::Relaxed) == 1 {
                self.sent.notify_waiters();
            }
        })
    }

    /// What another node published, if it is for this node.
    fn take(&self, name: &str, payload: &[u8]) {
        if name == self.probe_channel {
            if let Some(probe) = std::str::from_utf8(payload).ok().and_then(|p| p.parse().ok()) {
                self.probes.send_if_modified(|newest| std::mem::replace(newest, probe) != probe);
            }
            return;
        }
        if !lock(&self.wanted).contains(name) {
            return;
        }
        let Some(channel) = Channel::from_bus_name(&self.prefix, name) else { return };
        let incoming: Incoming = match serde_json::from_slice(payload) {
            Ok(incoming) => incoming,
            Err(err) => {
                tracing::warn!(%err, %channel, "an event from Redis that is not Herald's; dropped");
                return;
            }
        };
        if incoming.v != 1 || incoming.o == self.id {
            return;
        }
        let publication = match incoming.k.as_str() {
            "s" => Publication::Stream {
                span: incoming.s.map(|(first, last)| (Seq(first), Seq(last))),
                items: incoming.i.into_iter().map(|(seq, item)| (Seq(seq), Encoded::from_raw(item))).collect(),
            },
            "e" => {
                let event = incoming.e.as_deref().and_then(|e| EVENTS.iter().find(|known| **known == e));
                let (Some(event), Some(payload)) = (event, incoming.p) else { return };
                Publication::Event { event, payload: Encoded::from_raw(payload) }
            }
            "p" => {
                let (Some(version), Some(payload)) = (incoming.n, incoming.p) else { return };
                Publication::Presence { version, payload: Encoded::from_raw(payload) }
            }
            "r" => {
                let Some(seq) = incoming.n else { return };
                Publication::Removed { seq: Seq(seq) }
            }
            "d" => {
                let Some(closing) = incoming.p.and_then(|p| serde_json::from_str(p.get()).ok()) else { return };
                Publication::Disconnect { closing }
            }
            _ => return,
        };
        self.metrics.bus(BusEvent::Received);
        if let Some(node) = self.node.upgrade() {
            node.receive(&channel, publication);
        }
    }

    /// Empties the outgoing queue into pipelined `PUBLISH`es, in order.
    async fn publishing(
        broker: Weak<Self>,
        mut connection: ConnectionManager,
        mut outgoing: mpsc::Receiver<(String, Vec<u8>)>,
    ) {
        let mut batch = Vec::with_capacity(PIPELINE_MAX);
        while outgoing.recv_many(&mut batch, PIPELINE_MAX).await > 0 {
            let Some(this) = broker.upgrade() else { return };
            let mut pipe = redis::pipe();
            for (name, payload) in &batch {
                pipe.cmd("PUBLISH").arg(name).arg(payload.as_slice()).ignore();
            }
            let sent = tokio::time::timeout(REDIS_TIMEOUT, pipe.exec_async(&mut connection)).await;
            let outcome = match sent {
                Ok(Ok(())) => BusEvent::Published,
                Ok(Err(err)) => {
                    tracing::debug!(%err, "publishing to Redis failed");
                    BusEvent::Dropped
                }
                Err(_) => {
                    // No answer is not a dropped connection to the driver,
                    // which would wait on this one for good: a new one.
                    tracing::debug!("Redis did not answer a publish; connecting again");
                    if let Ok(fresh) = this.connect.commands() {
                        connection = fresh;
                    }
                    BusEvent::Dropped
                }
            };
            this.set_up(outcome == BusEvent::Published);
            for _ in 0..batch.len() {
                this.metrics.bus(outcome);
            }
            if this.unsent.fetch_sub(batch.len(), Ordering::Relaxed) == batch.len() {
                this.sent.notify_waiters();
            }
            batch.clear();
        }
    }

    /// Subscribes and unsubscribes, one command at a time, in the order
    /// they were asked for.
    async fn subscribing(
        broker: Weak<Self>,
        mut connection: ConnectionManager,
        mut commands: mpsc::UnboundedReceiver<Command>,
    ) {
        while let Some(command) = commands.recv().await {
            let Some(this) = broker.upgrade() else { return };
            match command {
                Command::Subscribe(name, answer) => {
                    if !lock(&this.wanted).contains(&name) {
                        let _ = answer.send(Ok(()));
                        continue;
                    }
                    let result = match tokio::time::timeout(REDIS_TIMEOUT, connection.subscribe(&name)).await {
                        Ok(Ok(())) => Ok(()),
                        Ok(Err(err)) => Err(unreachable(err)),
                        Err(_) => Err(unreachable("Redis did not confirm the subscription in time")),
                    };
                    this.set_up(result.is_ok());
                    if result.is_err() {
                        // Subscribed again once Redis answers.
                        let _ = this.commands.send(Command::Resubscribe);
                    }
                    let _ = answer.send(result);
                }
                Command::Unsubscribe(name) => {
                    if lock(&this.wanted).contains(&name) {
                        continue; // wanted again meanwhile
                    }
                    if let Ok(Err(err)) = tokio::time::timeout(REDIS_TIMEOUT, connection.unsubscribe(&name)).await {
                        tracing::debug!(%err, "unsubscribing failed; what still comes is dropped");
                    }
                }
                Command::Resubscribe | Command::Reconnect => {
                    let mut reconnect = matches!(command, Command::Reconnect);
                    // Once for every such command queued meanwhile.
                    let mut later = Vec::new();
                    while let Ok(queued) = commands.try_recv() {
                        match queued {
                            Command::Resubscribe => {}
                            Command::Reconnect => reconnect = true,
                            other => later.push(other),
                        }
                    }
                    if reconnect {
                        tracing::warn!("the connection to Redis carries nothing; connecting again");
                        match this.connect.subscriber() {
                            Ok(fresh) => connection = fresh,
                            Err(err) => tracing::warn!(%err, "could not make a new connection to Redis"),
                        }
                    }
                    drop(this);
                    Self::resubscribe(&broker, &mut connection).await;
                    let Some(this) = broker.upgrade() else { return };
                    // Subscriptions asked for meanwhile were taken in by
                    // the resubscription (they were wanted): answer them.
                    for command in later {
                        match command {
                            Command::Subscribe(_, answer) => {
                                let _ = answer.send(Ok(()));
                            }
                            Command::Unsubscribe(name) => {
                                let _ = this.commands.send(Command::Unsubscribe(name));
                            }
                            Command::Resubscribe | Command::Reconnect => {}
                        }
                    }
                }
            }
        }
    }

    /// Subscribes every wanted channel, until Redis takes them all.
    async fn resubscribe(broker: &Weak<Self>, connection: &mut ConnectionManager) {
        let mut delay = Duration::from_millis(100);
        loop {
            let Some(this) = broker.upgrade() else { return };
            let names: Vec<String> = lock(&this.wanted).iter().cloned().collect();
            let mut failed = None;
            for chunk in names.chunks(SUBSCRIBE_BATCH) {
                match tokio::time::timeout(REDIS_TIMEOUT, connection.subscribe(chunk)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(err)) => failed = Some(err.to_string()),
                    Err(_) => failed = Some("timed out".to_owned()),
                }
                if failed.is_some() {
                    break;
                }
            }
            if failed.is_none() && names.is_empty() {
                // Nothing to subscribe: a ping says whether Redis is back.
                let ping = redis::cmd("PING");
                if !matches!(tokio::time::timeout(REDIS_TIMEOUT, ping.exec_async(connection)).await, Ok(Ok(()))) {
                    failed = Some("no answer to PING".to_owned());
                }
            }
            this.set_up(failed.is_none());
            let Some(err) = failed else {
                tracing::info!(channels = names.len(), "subscribed to every channel this node listens to");
                // What was published while this node was cut off is in the
                // store only.
                if let Some(node) = this.node.upgrade() {
                    node.resynced();
                }
                return;
            };
            tracing::debug!(%err, "subscribing again failed; retrying");
            drop(this);
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }

    /// Sends this node a numbered event through Redis every `every`; one
    /// that does not come back within [`REDIS_TIMEOUT`] means the
    /// subscribing connection carries nothing, and it is replaced.
    async fn probing(broker: Weak<Self>, every: Duration) {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut probe = 0u64;
        loop {
            ticks.tick().await;
            let Some(this) = broker.upgrade() else { return };
            probe += 1;
            let mut back = this.probes.subscribe();
            if this.send((this.probe_channel.clone(), probe.to_string().into_bytes())).is_err() {
                continue; // the queue is full: publishing is the problem
            }
            drop(this);
            let returned = tokio::time::timeout(REDIS_TIMEOUT, back.wait_for(|newest| *newest >= probe)).await;
            if !matches!(returned, Ok(Ok(_))) {
                let Some(this) = broker.upgrade() else { return };
                this.metrics.bus(BusEvent::ProbeLost);
                let _ = this.commands.send(Command::Reconnect);
            }
        }
    }

    /// Hands what Redis pushes to this node's engine.
    async fn receiving(broker: Weak<Self>, mut pushes: mpsc::UnboundedReceiver<PushInfo>, queued: Arc<AtomicUsize>) {
        while let Some(push) = pushes.recv().await {
            queued.fetch_sub(1, Ordering::Relaxed);
            let Some(this) = broker.upgrade() else { return };
            match push.kind {
                PushKind::Message => {
                    if let Some(message) = Msg::from_push_info(push) {
                        this.take(message.get_channel_name(), message.get_payload_bytes());
                    }
                }
                PushKind::Disconnection => {
                    this.set_up(false);
                    let _ = this.commands.send(Command::Resubscribe);
                }
                _ => {}
            }
        }
    }
}

impl Broker for RedisBroker {
    fn publish(&self, channel: &Channel, publication: Publication) -> BoxFuture<'_, Result<(), BrokerError>> {
        let encoded = self.encode(&publication);
        if let Some(node) = self.node.upgrade() {
            node.receive(channel, publication);
        }
        let result = match encoded {
            Some(payload) => match self.send((channel.bus_name(&self.prefix), payload)) {
                Ok(()) => Ok(()),
                Err(()) => {
                    self.metrics.bus(BusEvent::Dropped);
                    Err(BrokerError::Unreachable("the queue to Redis is full".to_owned()))
                }
            },
            None => Err(BrokerError::Unreachable("the event could not be encoded".to_owned())),
        };
        Box::pin(std::future::ready(result))
    }

    fn subscribe<'a>(&'a self, channel: &'a Channel) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(async move {
            let name = channel.bus_name(&self.prefix);
            if !lock(&self.wanted).insert(name.clone()) {
                return Ok(());
            }
            if !self.is_up() {
                // Nobody waits on a Redis that is known to be down (a join,
                // a page): the channel is subscribed with all the others
                // once it is back, and the stream checked then.
                let _ = self.commands.send(Command::Resubscribe);
                return Err(unreachable("Redis is down"));
            }
            let (answer, answered) = oneshot::channel();
            self.commands.send(Command::Subscribe(name, answer)).map_err(unreachable)?;
            // Bounded even while the subscribing connection is being
            // replaced: the channel stays wanted, and is subscribed with
            // the others.
            match tokio::time::timeout(REDIS_TIMEOUT, answered).await {
                Ok(Ok(result)) => result,
                Ok(Err(_)) => Err(unreachable("the broker stopped")),
                Err(_) => Err(unreachable("Redis did not confirm the subscription in time")),
            }
        })
    }

    fn unsubscribe(&self, channel: &Channel) {
        let name = channel.bus_name(&self.prefix);
        if lock(&self.wanted).remove(&name) {
            let _ = self.commands.send(Command::Unsubscribe(name));
        }
    }

    fn health(&self) -> Option<bool> {
        Some(self.is_up())
    }

    fn flush(&self, within: Duration) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + within;
            loop {
                let sent = self.sent.notified();
                tokio::pin!(sent);
                sent.as_mut().enable();
                if self.unsent.load(Ordering::Relaxed) == 0 || tokio::time::timeout_at(deadline, sent).await.is_err() {
                    return;
                }
            }
        })
    }
}
