//! Webhooks: Herald tells a backend what happens in rooms — room occupied
//! and vacated, a user joined and left (from presence, [`Watch`]), a message
//! stored (for rooms in `HERALD_WEBHOOK_MESSAGE_ROOMS`).
//!
//! An event is queued in MongoDB ([`HookQueue`]) once per receiver, by the
//! node where it happened (so once per cluster), and sent by whichever node
//! leases it first: at least once, across restarts and crashes. Each POST
//! carries the event's id (the receiver deduplicates on it) and is signed
//! ([`crate::auth::signature`]). A failed delivery is due again after an
//! exponential backoff, for up to [`RETRY_FOR`]; a receiver that fails
//! [`PAUSE_AFTER`] times in a row is paused for [`PAUSE_FOR`] (shown in
//! `/metrics`), then tried with one delivery.
//!
//! Bounded: events wait for the queue in memory ([`PENDING_MAX`]), and the
//! queue holds at most `HERALD_WEBHOOK_QUEUE_MAX`; past either, an event is
//! dropped and counted.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use herald::{RoomName, StoredMessage};
use mongodb::bson::DateTime;
use serde_json::{Value, json};
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio::time::Instant;

use crate::auth::signature::{SIGNATURE_HEADER, sign};
use crate::config::Webhooks as Config;
use crate::engine::presence::{RoomChange, Watch};
use crate::http::outbound;
use crate::ids::random_hex;
use crate::ops::metrics::{HookGauges, HookOutcome, Metrics};
use crate::store::hooks::{Delivery, HookQueue};
use crate::sync::lock;

/// Events waiting in memory for the queue's next write.
pub const PENDING_MAX: usize = 10_000;
/// Failures in a row that pause a receiver.
pub const PAUSE_AFTER: u32 = 5;
/// How long a paused receiver is left alone.
pub const PAUSE_FOR: Duration = Duration::from_secs(30);
/// How long a delivery is tried before it is given up.
pub const RETRY_FOR: Duration = Duration::from_secs(24 * 3600);
/// The longest wait between two tries of one delivery.
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// Deliveries in flight at once, per node.
const SENDING_MAX: usize = 4;
/// How often a node looks for due deliveries when nothing woke it.
const POLL_EVERY: Duration = Duration::from_millis(500);

/// One receiver's run of failures.
#[derive(Default)]
struct Receiver {
    failures: AtomicU32,
    paused_until: Mutex<Option<Instant>>,
}

impl Receiver {
    fn paused(&self) -> bool {
        let mut paused = lock(&self.paused_until);
        match *paused {
            Some(until) if Instant::now() < until => true,
            Some(_) => {
                // The pause is over: one delivery finds out.
                *paused = None;
                self.failures.store(PAUSE_AFTER - 1, Ordering::Relaxed);
                false
            }
            None => false,
        }
    }
}

/// The webhooks of this node. Cheap to clone.
#[derive(Clone)]
pub struct Webhooks(Arc<Inner>);

struct Inner {
    config: Config,
    queue: HookQueue,
    client: reqwest::Client,
    pending: mpsc::Sender<Delivery>,
    receivers: Vec<Receiver>,
    /// The queue's length as last counted, plus what was queued since.
    queued: AtomicU64,
    /// Something was queued here: look for due deliveries now.
    wake: Notify,
    node: String,
    metrics: Arc<Metrics>,
    stopped: AtomicBool,
}

impl Webhooks {
    /// Starts queueing and sending (two tasks, for as long as the handle
    /// lives).
    pub fn start(config: Config, queue: HookQueue, node: String, metrics: Arc<Metrics>) -> Self {
        let client = outbound::client(config.timeout);
        let (pending, incoming) = mpsc::channel(PENDING_MAX);
        let receivers = config.urls.iter().map(|_| Receiver::default()).collect();
        let inner = Arc::new(Inner {
            config,
            queue,
            client,
            pending,
            receivers,
            queued: AtomicU64::new(0),
            wake: Notify::new(),
            node,
            metrics,
            stopped: AtomicBool::new(false),
        });
        tokio::spawn(queueing(Arc::downgrade(&inner), incoming));
        tokio::spawn(sending(Arc::downgrade(&inner)));
        Self(inner)
    }

    /// Queues `event` with `data` for every receiver, if it is one sent.
    pub fn emit(&self, event: &'static str, data: Value) {
        if !self.0.config.sends(event) {
            return;
        }
        let event_id = format!("evt_{}", random_hex::<12>());
        self.push(event, &event_id, data);
    }

    /// `message.stored`, for a room in `HERALD_WEBHOOK_MESSAGE_ROOMS`. Its
    /// id is the message's own, so a resend that found it stored queues
    /// nothing new.
    pub fn message_stored(&self, message: &StoredMessage) {
        let config = &self.0.config;
        if !config.sends("message.stored") || !config.message_rooms.matches(&message.room) {
            return;
        }
        let event_id = format!("msg_{}_{}", message.room, message.seq);
        self.push("message.stored", &event_id, json!({ "room": message.room, "message": message }));
    }

    fn push(&self, event: &'static str, event_id: &str, data: Value) {
        let at_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
        let body = json!({ "id": event_id, "event": event, "at_ms": at_ms, "data": data }).to_string();
        let now = DateTime::now();
        for receiver in 0..self.0.receivers.len() {
            let delivery = Delivery {
                id: format!("{event_id}/{receiver}"),
                event_id: event_id.to_owned(),
                event: event.to_owned(),
                receiver: receiver as i32,
                body: body.clone(),
                attempts: 0,
                next_at: now,
                lease_until: DateTime::from_millis(0),
                created: now,
            };
            if self.0.pending.try_send(delivery).is_err() {
                self.0.metrics.hook(HookOutcome::Dropped, 1);
                tracing::warn!(event, "a webhook event dropped: {PENDING_MAX} are waiting to be queued");
            }
        }
    }

    /// The queue and the receivers, for `/metrics`.
    pub fn gauges(&self) -> HookGauges {
        HookGauges {
            queued: self.0.queued.load(Ordering::Relaxed),
            paused: self.0.receivers.iter().map(Receiver::paused).collect(),
        }
    }

    /// Stops taking deliveries (a drain): what is queued stays for the
    /// next start or another node.
    pub fn stop(&self) {
        self.0.stopped.store(true, Ordering::Relaxed);
        self.0.wake.notify_waiters();
    }
}

impl Inner {
    /// One delivery left the queue.
    fn dequeued(&self) {
        let _ = self.queued.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| Some(n.saturating_sub(1)));
    }
}

impl Watch for Webhooks {
    fn room_changed(&self, room: &RoomName, change: RoomChange) {
        match change {
            RoomChange::Occupied => self.emit("room.occupied", json!({ "room": room })),
            RoomChange::Vacated => self.emit("room.vacated", json!({ "room": room })),
            RoomChange::Joined(user) => self.emit("user.joined", json!({ "room": room, "user": user })),
            RoomChange::Left(user) => self.emit("user.left", json!({ "room": room, "user": user })),
        }
    }
}

/// Writes what was emitted to the queue, a batch at a time, within the
/// queue's bound.
async fn queueing(inner: Weak<Inner>, mut incoming: mpsc::Receiver<Delivery>) {
    let mut batch = Vec::with_capacity(256);
    let mut counted = Instant::now() - Duration::from_secs(3600);
    while incoming.recv_many(&mut batch, 256).await > 0 {
        let Some(inner) = inner.upgrade() else { return };
        if counted.elapsed() > Duration::from_secs(10) {
            if let Ok(length) = inner.queue.count().await {
                inner.queued.store(length, Ordering::Relaxed);
            }
            counted = Instant::now();
        }
        let room = inner.config.queue_max.saturating_sub(inner.queued.load(Ordering::Relaxed));
        if (batch.len() as u64) > room {
            let dropped = batch.len() as u64 - room;
            batch.truncate(room as usize);
            inner.metrics.hook(HookOutcome::Dropped, dropped);
            tracing::warn!(dropped, "webhook events dropped: the queue holds HERALD_WEBHOOK_QUEUE_MAX");
        }
        // MongoDB may be away for a moment: a few tries, then the batch is
        // dropped (and counted) rather than held without bound.
        let mut tries = 0;
        loop {
            match inner.queue.push(&batch).await {
                Ok(()) => {
                    inner.queued.fetch_add(batch.len() as u64, Ordering::Relaxed);
                    inner.wake.notify_one();
                    break;
                }
                Err(err) if tries < 10 => {
                    tries += 1;
                    tracing::warn!(%err, "queueing webhook events failed; trying again");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(err) => {
                    inner.metrics.hook(HookOutcome::Dropped, batch.len() as u64);
                    tracing::error!(%err, events = batch.len(), "webhook events dropped: MongoDB did not take them");
                    break;
                }
            }
        }
        batch.clear();
    }
}

/// Takes due deliveries and sends them, a few at once.
async fn sending(inner: Weak<Inner>) {
    let places = Arc::new(Semaphore::new(SENDING_MAX));
    loop {
        let Some(this) = inner.upgrade() else { return };
        if this.stopped.load(Ordering::Relaxed) {
            return;
        }
        let Ok(place) = places.clone().acquire_owned().await else { return };
        let active: Vec<i32> =
            (0..this.receivers.len()).filter(|r| !this.receivers[*r].paused()).map(|r| r as i32).collect();
        // The lease outlasts a delivery's timeout: nobody else sends it
        // meanwhile; if this node dies, it lapses and another does.
        let lease = this.config.timeout * 2 + Duration::from_secs(1);
        let lease_until = DateTime::from_millis(DateTime::now().timestamp_millis() + lease.as_millis() as i64);
        match this.queue.take(&active, lease_until).await {
            Ok(Some(delivery)) => {
                let this = this.clone();
                tokio::spawn(async move {
                    deliver(&this, delivery).await;
                    drop(place);
                });
            }
            Ok(None) => {
                drop(place);
                let _ = tokio::time::timeout(POLL_EVERY, this.wake.notified()).await;
            }
            Err(err) => {
                drop(place);
                tracing::warn!(%err, "reading the webhook queue failed");
                tokio::time::sleep(POLL_EVERY).await;
            }
        }
    }
}

/// Sends one delivery and records what came of it.
async fn deliver(inner: &Inner, delivery: Delivery) {
    let receiver = usize::try_from(delivery.receiver).ok().and_then(|r| inner.receivers.get(r).map(|s| (r, s)));
    let Some((index, state)) = receiver else {
        // A receiver no longer configured: nobody to send it to.
        if inner.queue.sent(&delivery.id).await.is_ok() {
            inner.dequeued();
        }
        return;
    };
    let url = inner.config.urls[index].expose();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let sent = inner
        .client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, sign(&inner.config.secret, now, delivery.body.as_bytes()))
        .header("herald-event", &delivery.event)
        .header("herald-event-id", &delivery.event_id)
        .header("herald-delivery-attempt", (delivery.attempts + 1).to_string())
        .header("herald-node", &inner.node)
        .body(delivery.body.clone())
        .send()
        .await;
    let ok = match sent {
        Ok(response) if response.status().is_success() => true,
        Ok(response) => {
            tracing::info!(receiver = index, status = %response.status(), event = %delivery.event, "a webhook was refused");
            false
        }
        Err(err) => {
            tracing::info!(receiver = index, err = %err.without_url(), event = %delivery.event, "a webhook was not delivered");
            false
        }
    };
    if ok {
        state.failures.store(0, Ordering::Relaxed);
        inner.metrics.hook(HookOutcome::Delivered, 1);
        match inner.queue.sent(&delivery.id).await {
            Ok(()) => inner.dequeued(),
            // Its lease lapses and it is sent again: at least once.
            Err(err) => tracing::warn!(%err, "a delivered webhook stays queued"),
        }
        return;
    }
    inner.metrics.hook(HookOutcome::Failed, 1);
    if state.failures.fetch_add(1, Ordering::Relaxed) + 1 >= PAUSE_AFTER {
        let mut paused = lock(&state.paused_until);
        if paused.is_none() {
            tracing::warn!(receiver = index, "a webhook receiver keeps failing: paused for {PAUSE_FOR:?}");
            *paused = Some(Instant::now() + PAUSE_FOR);
        }
    }
    let age = DateTime::now().timestamp_millis() - delivery.created.timestamp_millis();
    if age > RETRY_FOR.as_millis() as i64 {
        inner.metrics.hook(HookOutcome::Expired, 1);
        tracing::warn!(receiver = index, event = %delivery.event, "a webhook given up after {RETRY_FOR:?}");
        if inner.queue.sent(&delivery.id).await.is_ok() {
            inner.dequeued();
        }
        return;
    }
    let attempts = delivery.attempts + 1;
    let wait = backoff(attempts as u32);
    let next_at = DateTime::from_millis(DateTime::now().timestamp_millis() + wait.as_millis() as i64);
    if let Err(err) = inner.queue.failed(&delivery.id, attempts, next_at).await {
        tracing::warn!(%err, "a failed webhook's next try not recorded; its lease lapses");
    }
}

/// The wait before try `attempts + 1`: doubling from half a second, at
/// most [`BACKOFF_MAX`], with jitter.
fn backoff(attempts: u32) -> Duration {
    let base = Duration::from_millis(500).saturating_mul(1 << attempts.saturating_sub(1).min(16)).min(BACKOFF_MAX);
    let jitter = rand::random::<u64>() % (base.as_millis() as u64 / 4 + 1);
    base + Duration::from_millis(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_bound() {
        assert!((500..=625).contains(&(backoff(1).as_millis() as u64)));
        assert!((1000..=1250).contains(&(backoff(2).as_millis() as u64)));
        assert!(backoff(30) <= BACKOFF_MAX + BACKOFF_MAX / 4);
        assert!(backoff(30) >= BACKOFF_MAX);
    }
}
