//! Notification storage: each user's inbox and the broadcast stream.
//!
//! Collection `notifications {key, seq, event, data, at, read, expires_at}`,
//! where `key` is `inbox:<user>` or `broadcast`; each key has its own
//! sequence in `stream_heads`. `data` is kept as the publisher's JSON text,
//! so any JSON round-trips exactly and nothing in it is ever interpreted by
//! the database. A TTL index on `expires_at` enforces retention.

use std::collections::HashMap;
use std::time::Duration;

use futures::TryStreamExt;
use herald::notification::{EventName, Notification, Stream};
use herald::protocol::CATCH_UP_MAX;
use herald::{Seq, UserId};
use mongodb::bson::{DateTime, Document, doc};
use mongodb::options::IndexOptions;
use mongodb::{Collection, IndexModel};
use serde::{Deserialize, Serialize};

use crate::ids::random_hex;
use crate::store::{
    Append, Appended, Bounds, DUPLICATE_KEY, StoreError, current_seq, insert_failures, next_seqs, seq_to_i64,
};

const BROADCAST_KEY: &str = "broadcast";

/// Where a notification goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    User(UserId),
    Everyone,
}

impl Recipient {
    fn key(&self) -> String {
        match self {
            Recipient::User(user) => inbox_key(user),
            Recipient::Everyone => BROADCAST_KEY.to_owned(),
        }
    }
}

fn inbox_key(user: &UserId) -> String {
    format!("inbox:{user}")
}

/// A notification to store: what a publish asks for, for one recipient.
#[derive(Debug, Clone)]
pub struct NewNotification {
    pub event: EventName,
    /// The publisher's JSON, as text.
    pub data: String,
    /// The publisher's idempotency key (scoped to its API key), if any.
    pub idempotency_key: Option<String>,
}

/// The documents that are valid notifications; a bad one is logged and
/// skipped, so that it can't hide the rest of a stream.
fn valid(docs: Vec<NotificationDoc>) -> Vec<Notification> {
    docs.into_iter().filter_map(|d| d.into_notification().inspect_err(|e| tracing::warn!(%e)).ok()).collect()
}

#[derive(Debug, Serialize, Deserialize)]
struct NotificationDoc {
    key: String,
    seq: i64,
    event: String,
    data: String,
    at: DateTime,
    #[serde(default)]
    read: bool,
    expires_at: DateTime,
    /// The publisher's idempotency key, or a random one: unique per
    /// recipient, so a retried publish is stored once.
    #[serde(default)]
    idem: String,
}

impl NotificationDoc {
    fn into_notification(self) -> Result<Notification, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("{what} of notification {}#{}", self.key, self.seq));
        let stream = if self.key == BROADCAST_KEY { Stream::Broadcast } else { Stream::Inbox };
        Ok(Notification {
            id: format!("{}:{}", self.key, self.seq),
            stream,
            seq: Seq(u64::try_from(self.seq).map_err(|_| corrupt("seq"))?),
            event: EventName::parse(&self.event).map_err(|_| corrupt("event"))?,
            data: serde_json::from_str(&self.data).map_err(|_| corrupt("data"))?,
            at_ms: self.at.timestamp_millis(),
            read: self.read,
        })
    }
}

/// Handle to the notification collections. Cheap to clone.
#[derive(Clone)]
pub struct Inbox {
    bounds: Bounds,
    notifications: Collection<NotificationDoc>,
    heads: Collection<Document>,
    retention: Duration,
}

impl Inbox {
    pub fn new(db: &mongodb::Database, retention: Duration, bounds: Bounds) -> Self {
        Self { notifications: db.collection("notifications"), heads: db.collection("stream_heads"), retention, bounds }
    }

    pub async fn ensure_indexes(&self) -> Result<(), StoreError> {
        self.give_legacy_notifications_a_key().await?;
        let named = |name: &str| IndexOptions::builder().name(name.to_owned());
        self.notifications
            .create_indexes([
                IndexModel::builder()
                    .keys(doc! {"key": 1, "seq": 1})
                    .options(named("key_seq").unique(true).build())
                    .build(),
                IndexModel::builder()
                    .keys(doc! {"key": 1, "idem": 1})
                    .options(named("key_idem").unique(true).build())
                    .build(),
                // `count_unread` on every sync and mark_read: without it, a
                // scan of the user's whole inbox.
                IndexModel::builder().keys(doc! {"key": 1, "read": 1}).options(named("key_read").build()).build(),
                IndexModel::builder()
                    .keys(doc! {"expires_at": 1})
                    .options(named("retention").expire_after(Duration::ZERO).build())
                    .build(),
            ])
            .await?;
        Ok(())
    }

    /// Notifications stored before idempotency keys existed have no `idem`;
    /// the unique `(key, idem)` index would see them all as `null` and refuse
    /// to build. Each gets a key of its own, once.
    async fn give_legacy_notifications_a_key(&self) -> Result<(), StoreError> {
        let raw = self.notifications.clone_with_type::<Document>();
        let mut legacy = raw.find(doc! {"idem": {"$exists": false}}).projection(doc! {"_id": 1}).await?;
        let mut migrated = 0_u64;
        while let Some(doc) = legacy.try_next().await? {
            let Some(id) = doc.get("_id") else { continue };
            let key = format!("legacy-{}", random_hex::<12>());
            raw.update_one(doc! {"_id": id.clone()}, doc! {"$set": {"idem": key}}).await?;
            migrated += 1;
        }
        if migrated > 0 {
            tracing::info!(migrated, "gave stored notifications an idempotency key");
        }
        Ok(())
    }

    /// Stores a batch of notifications for `recipient`: at most one
    /// sequence allocation (`$inc` by the number of new ones) and one
    /// unordered insert for all of them, plus a point read when some carry
    /// an idempotency key. A notification whose idempotency key this
    /// recipient already has is answered with the one stored then, so a
    /// publish retried after a timeout or crash is stored once; two of a
    /// batch with one key are stored once.
    pub async fn store_batch(&self, recipient: &Recipient, batch: &[NewNotification]) -> Appended<Notification> {
        match self.bounds.run(self.store_unbounded(recipient, batch)).await {
            Ok(appended) => appended,
            Err(err) => Appended::failed(batch.len(), err),
        }
    }

    async fn store_unbounded(
        &self,
        recipient: &Recipient,
        batch: &[NewNotification],
    ) -> Result<Appended<Notification>, StoreError> {
        let key = recipient.key();
        let mut answers: Vec<Option<Result<Append<Notification>, StoreError>>> = batch.iter().map(|_| None).collect();
        let keyed: Vec<&str> = batch.iter().filter_map(|n| n.idempotency_key.as_deref()).collect();
        if !keyed.is_empty() {
            let copies = self.find_by_idem(&key, &keyed).await?;
            for (answer, note) in answers.iter_mut().zip(batch) {
                if let Some(copy) = note.idempotency_key.as_ref().and_then(|idem| copies.get(idem)) {
                    *answer = Some(Ok(Append::Existing(copy.clone())));
                }
            }
        }
        // One insert per idempotency key; a second one with it gets the first's answer.
        let mut first_with: HashMap<&str, usize> = HashMap::new();
        let mut inserts = Vec::new();
        let mut twins = Vec::new();
        for (i, note) in batch.iter().enumerate().filter(|(i, _)| answers[*i].is_none()) {
            match note.idempotency_key.as_deref().and_then(|idem| first_with.get(idem).map(|f| (idem, *f))) {
                Some((_, first)) => twins.push((i, first)),
                None => {
                    if let Some(idem) = note.idempotency_key.as_deref() {
                        first_with.insert(idem, i);
                    }
                    inserts.push(i);
                }
            }
        }
        let mut allocated = None;
        if !inserts.is_empty() {
            let (first, last) = next_seqs(&self.heads, &key, inserts.len() as u64).await?;
            allocated = Some((first, last));
            let at = DateTime::now();
            let expires_at =
                DateTime::from_millis(at.timestamp_millis().saturating_add(self.retention.as_millis() as i64));
            let docs: Vec<NotificationDoc> = (first.get()..=last.get())
                .zip(&inserts)
                .map(|(seq, &i)| {
                    let note = &batch[i];
                    NotificationDoc {
                        key: key.clone(),
                        seq: seq_to_i64(Seq(seq)),
                        event: note.event.to_string(),
                        data: note.data.clone(),
                        at,
                        read: false,
                        expires_at,
                        idem: note.idempotency_key.clone().unwrap_or_else(|| format!("auto-{}", random_hex::<12>())),
                    }
                })
                .collect();
            let mut failures = insert_failures(self.notifications.insert_many(&docs).ordered(false).await.map(|_| ()))?;
            let mut taken = Vec::new();
            for (k, (&i, doc)) in inserts.iter().zip(docs).enumerate() {
                answers[i] = match failures.remove(&k) {
                    None => Some(doc.into_notification().map(Append::Stored)),
                    // A concurrent publish with the same key won.
                    Some(failure) if failure.code == DUPLICATE_KEY => {
                        taken.push((i, doc.idem));
                        None
                    }
                    Some(failure) => Some(Err(StoreError::Refused(failure.message))),
                };
            }
            if !taken.is_empty() {
                let ids: Vec<&str> = taken.iter().map(|(_, idem)| idem.as_str()).collect();
                let copies = self.find_by_idem(&key, &ids).await?;
                for (i, idem) in &taken {
                    answers[*i] =
                        Some(copies.get(idem).cloned().map(Append::Existing).ok_or_else(|| {
                            StoreError::Corrupt(format!("duplicate {key} notification {idem} not found"))
                        }));
                }
            }
        }
        for (twin, first) in twins {
            answers[twin] = Some(match &answers[first] {
                Some(Ok(stored)) => Ok(Append::Existing(stored.clone().into_item())),
                _ => {
                    Err(StoreError::Conflict(format!("a {key} notification with that idempotency key was not stored")))
                }
            });
        }
        let answers = answers.into_iter().map(|a| a.unwrap_or_else(|| Err(StoreError::Corrupt("unanswered".into()))));
        Ok(Appended { answers: answers.collect(), allocated })
    }

    /// The notifications of `key` with these idempotency keys, by key.
    async fn find_by_idem(&self, key: &str, ids: &[&str]) -> Result<HashMap<String, Notification>, StoreError> {
        let docs: Vec<NotificationDoc> =
            self.notifications.find(doc! {"key": key, "idem": {"$in": ids}}).await?.try_collect().await?;
        let mut copies = HashMap::with_capacity(docs.len());
        for doc in docs {
            let idem = doc.idem.clone();
            copies.insert(idem, doc.into_notification()?);
        }
        Ok(copies)
    }

    /// The stream's newest sequence number (0 when it has none).
    pub async fn head(&self, recipient: &Recipient) -> Result<Seq, StoreError> {
        self.bounds.run(async { current_seq(&self.heads, &recipient.key()).await }).await
    }

    /// Notifications of `recipient` with `from < seq <= to`, oldest first,
    /// at most `limit`.
    pub async fn range(
        &self,
        recipient: &Recipient,
        from: Seq,
        to: Seq,
        limit: u64,
    ) -> Result<Vec<Notification>, StoreError> {
        self.bounds
            .run(async {
                let filter = doc! {"key": recipient.key(), "seq": {"$gt": seq_to_i64(from), "$lte": seq_to_i64(to)}};
                let limit = i64::try_from(limit).unwrap_or(i64::MAX);
                let docs: Vec<NotificationDoc> =
                    self.notifications.find(filter).sort(doc! {"seq": 1}).limit(limit).await?.try_collect().await?;
                Ok(valid(docs))
            })
            .await
    }

    async fn after(&self, key: &str, since: Seq) -> Result<Vec<Notification>, StoreError> {
        let head = current_seq(&self.heads, key).await?;
        let from = since.max(Seq(head.get().saturating_sub(CATCH_UP_MAX)));
        let docs: Vec<NotificationDoc> = self
            .notifications
            .find(doc! {"key": key, "seq": {"$gt": seq_to_i64(from)}})
            .sort(doc! {"seq": 1})
            .limit(CATCH_UP_MAX as i64)
            .await?
            .try_collect()
            .await?;
        Ok(valid(docs))
    }

    /// The newest `limit` notifications of a user's inbox, newest first.
    pub async fn recent(&self, user: &UserId, limit: u64) -> Result<Vec<Notification>, StoreError> {
        self.bounds
            .run(async {
                let key = inbox_key(user);
                let head = current_seq(&self.heads, &key).await?;
                let mut items = self.after(&key, Seq(head.get().saturating_sub(limit))).await?;
                items.reverse();
                Ok(items)
            })
            .await
    }

    /// The broadcast stream's newest sequence number.
    pub async fn broadcast_head(&self) -> Result<Seq, StoreError> {
        self.bounds.run(async { current_seq(&self.heads, BROADCAST_KEY).await }).await
    }

    pub async fn unread(&self, user: &UserId) -> Result<u64, StoreError> {
        self.bounds.run(self.count_unread(user)).await
    }

    async fn count_unread(&self, user: &UserId) -> Result<u64, StoreError> {
        Ok(self.notifications.count_documents(doc! {"key": inbox_key(user), "read": false}).await?)
    }

    /// Marks notifications of `user` read — those with the given sequence
    /// numbers, or all — and returns the unread count after.
    pub async fn mark_read(&self, user: &UserId, seqs: Option<&[Seq]>) -> Result<u64, StoreError> {
        self.bounds
            .run(async {
                let mut filter = doc! {"key": inbox_key(user), "read": false};
                if let Some(seqs) = seqs {
                    let seqs: Vec<i64> = seqs.iter().map(|s| seq_to_i64(*s)).collect();
                    filter.insert("seq", doc! {"$in": seqs});
                }
                self.notifications.update_many(filter, doc! {"$set": {"read": true}}).await?;
                self.count_unread(user).await
            })
            .await
    }
}
