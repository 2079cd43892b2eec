//! Notification storage: each user's inbox and the broadcast stream.
//!
//! Collection `notifications {key, seq, event, data, at, read, expires_at}`,
//! where `key` is `inbox:<user>` or `broadcast`; each key has its own
//! sequence in `stream_heads`. `data` is kept as the publisher's JSON text,
//! so any JSON round-trips exactly and nothing in it is ever interpreted by
//! the database. A TTL index on `expires_at` enforces retention.

use std::time::Duration;

use futures::TryStreamExt;
use herald::notification::{EventName, Notification, Stream};
use herald::protocol::{CATCH_UP_MAX, Synced};
use herald::{Seq, UserId};
use mongodb::bson::{DateTime, Document, doc};
use mongodb::options::IndexOptions;
use mongodb::{Collection, IndexModel};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::store::{Bounds, StoreError, current_seq, is_duplicate_key, next_seq, seq_to_i64};
use crate::visitor::random_hex;

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

    /// Stores a notification for `recipient`: one sequence allocation plus
    /// one insert. With an idempotency key that this recipient already has a
    /// notification for, that notification is returned instead (one point
    /// read first), so a publish retried after a timeout or crash is stored
    /// once.
    pub async fn store(
        &self,
        recipient: &Recipient,
        event: &EventName,
        data: &Value,
        idempotency_key: Option<&str>,
    ) -> Result<Notification, StoreError> {
        self.bounds
            .run(async {
                let key = recipient.key();
                if let Some(idem) = idempotency_key
                    && let Some(existing) = self.notifications.find_one(doc! {"key": &key, "idem": idem}).await?
                {
                    return existing.into_notification();
                }
                let idem = idempotency_key.map_or_else(|| format!("auto-{}", random_hex::<12>()), str::to_owned);
                let seq = next_seq(&self.heads, &key).await?;
                let now = DateTime::now();
                let expires =
                    DateTime::from_millis(now.timestamp_millis().saturating_add(self.retention.as_millis() as i64));
                let doc = NotificationDoc {
                    key,
                    seq: seq_to_i64(seq),
                    event: event.to_string(),
                    data: data.to_string(),
                    at: now,
                    read: false,
                    expires_at: expires,
                    idem,
                };
                match self.notifications.insert_one(&doc).await {
                    Ok(_) => doc.into_notification(),
                    // A concurrent retry with the same key won.
                    Err(err) if is_duplicate_key(&err) => self
                        .notifications
                        .find_one(doc! {"key": &doc.key, "idem": &doc.idem})
                        .await?
                        .ok_or_else(|| StoreError::Corrupt(format!("duplicate {}#{} not found", doc.key, doc.seq)))?
                        .into_notification(),
                    Err(err) => Err(err.into()),
                }
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
        Ok(docs.into_iter().filter_map(|d| d.into_notification().inspect_err(|e| tracing::warn!(%e)).ok()).collect())
    }

    /// Everything after `inbox_since` in `user`'s inbox (when there is a
    /// user) and after `broadcast_since` in the broadcast stream.
    pub async fn missed(
        &self,
        user: Option<&UserId>,
        inbox_since: Seq,
        broadcast_since: Seq,
    ) -> Result<Synced, StoreError> {
        self.bounds
            .run(async {
                let broadcast = self.after(BROADCAST_KEY, broadcast_since).await?;
                let Some(user) = user else {
                    return Ok(Synced { broadcast, ..Synced::default() });
                };
                let inbox = self.after(&inbox_key(user), inbox_since).await?;
                Ok(Synced { inbox, broadcast, unread: self.count_unread(user).await? })
            })
            .await
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
