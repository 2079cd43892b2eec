//! Notifications: store one, then publish it; mark some read, then tell the
//! user's connections. The one owner of "stored before delivered" for
//! notifications, shared by the publish API, the socket events and the
//! no-JavaScript form.

use std::sync::Arc;

use futures::StreamExt;

use herald::notification::{EventName, Notification};
use herald::protocol::{EV_READ, ErrorReply, MARK_READ_MAX, MarkReadRequest, ReadUpdate};
use herald::{Seq, UserId};
use serde_json::Value;

use crate::engine::{Channel, Engine};
use crate::ops::metrics::Metrics;
use crate::store::StoreError;
use crate::store::inbox::NewNotification;

/// Users whose connections are counted at once after a `users` publish.
const ONLINE_COUNTS_AT_ONCE: usize = 64;

/// Storing and delivering notifications. Cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    engine: Engine,
    metrics: Arc<Metrics>,
}

impl Notifier {
    pub fn new(engine: Engine, metrics: Arc<Metrics>) -> Self {
        Self { engine, metrics }
    }

    /// Stores a notification for a user (`Channel::User`) or everyone
    /// (`Channel::Everyone`), with the stream's other notifications
    /// published meanwhile (one batch), then delivers it. Answers with the
    /// stored notification and how many connections listen (on every node).
    pub async fn notify(
        &self,
        channel: &Channel,
        event: &EventName,
        data: &Value,
        idempotency_key: Option<&str>,
    ) -> Result<(Notification, usize), StoreError> {
        let note = NewNotification {
            event: event.clone(),
            data: data.to_string(),
            idempotency_key: idempotency_key.map(str::to_owned),
        };
        let stored = self.engine.notify(channel, note).await?;
        self.metrics.notification_stored();
        Ok((stored, self.engine.online_everywhere(channel).await))
    }

    /// Stores a notification for each of `users` (one write for all of
    /// them), then delivers each. Answers, per user in their order, the
    /// stored notification and how many connections listen (on every node);
    /// or the first failure (those stored before it are still delivered).
    pub async fn notify_users(
        &self,
        users: &[UserId],
        event: &EventName,
        data: &Value,
        idempotency_key: Option<&str>,
    ) -> Result<Vec<(Notification, usize)>, StoreError> {
        let note = NewNotification {
            event: event.clone(),
            data: data.to_string(),
            idempotency_key: idempotency_key.map(str::to_owned),
        };
        let stored = self.engine.notify_users(users, note).await;
        let mut delivered = Vec::with_capacity(users.len());
        let mut failure = None;
        for (user, stored) in users.iter().zip(stored) {
            match stored {
                Ok(stored) => {
                    self.metrics.notification_stored();
                    delivered.push((Channel::User(user.clone()), stored));
                }
                Err(err) => failure = failure.or(Some(err)),
            }
        }
        // In a cluster each count is a Redis round trip: a few at a time.
        let each: Vec<(Notification, usize)> = futures::stream::iter(delivered)
            .map(|(channel, stored)| {
                let engine = self.engine.clone();
                async move { (stored, engine.online_everywhere(&channel).await) }
            })
            .buffered(ONLINE_COUNTS_AT_ONCE)
            .collect()
            .await;
        match failure {
            Some(err) => Err(err),
            None => Ok(each),
        }
    }

    /// Marks notifications read and tells every connection of the user.
    pub async fn mark_read(&self, user: &UserId, request: MarkReadRequest) -> Result<ReadUpdate, ErrorReply> {
        if request.seqs.len() > MARK_READ_MAX {
            return Err(ErrorReply::new(
                "too_many",
                format!("mark at most {MARK_READ_MAX} notifications at once, or all"),
            ));
        }
        let seqs: Vec<Seq> = request.seqs.iter().copied().map(Seq).collect();
        let unread =
            self.engine.inbox().mark_read(user, (!request.all).then_some(seqs.as_slice())).await.map_err(|err| {
                tracing::warn!(%err, "mark_read failed");
                ErrorReply::new("unavailable", "read state can't be saved right now; try again")
            })?;
        let update = ReadUpdate { seqs: if request.all { Vec::new() } else { request.seqs }, all: request.all, unread };
        self.engine.tell(&Channel::User(user.clone()), EV_READ, &update).await;
        Ok(update)
    }
}
