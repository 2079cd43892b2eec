//! Notification storage: each user's inbox and the broadcast stream.
//!
//! Collection `notifications {key, seq, event, data, at, read, expires_at}`,
//! where `key` is `inbox:<user>` or `broadcast`; each key has its own
//! sequence in `stream_heads`. `data` is kept as the publisher's JSON text,
//! so any JSON round-trips exactly and nothing in it is ever interpreted by
//! the database. A TTL index on `expires_at` enforces retention.

use std::collections::HashMap;
use std::sync::Arc;
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
    Append, Appended, Bounds, DUPLICATE_KEY, SEQ_ROUNDS, StoreError, current_seq, current_seqs, insert_failures,
    next_seqs, raise_heads, seq_to_i64, without,
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

/// When a batch is stored, and when it expires.
struct Stamp {
    at: DateTime,
    expires_at: DateTime,
}

impl Stamp {
    fn doc(&self, key: &str, seq: Seq, note: &NewNotification, idem: &str) -> NotificationDoc {
        NotificationDoc {
            key: key.to_owned(),
            seq: seq_to_i64(seq),
            event: note.event.to_string(),
            data: note.data.clone(),
            at: self.at,
            read: false,
            expires_at: self.expires_at,
            idem: idem.to_owned(),
        }
    }
}

/// Handle to the notification collections. Cheap to clone.
#[derive(Clone)]
pub struct Inbox {
    db: mongodb::Database,
    bounds: Bounds,
    notifications: Collection<NotificationDoc>,
    heads: Collection<Document>,
    retention: Duration,
}

impl Inbox {
    pub fn new(db: &mongodb::Database, retention: Duration, bounds: Bounds) -> Self {
        Self {
            db: db.clone(),
            notifications: db.collection("notifications"),
            heads: db.collection("stream_heads"),
            retention,
            bounds,
        }
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
        let mut spans = Vec::new();
        // Each item's idempotency key is fixed before the first round, so
        // that a round that gives it a new number stores it under the same.
        let idems: Vec<String> = batch
            .iter()
            .map(|note| note.idempotency_key.clone().unwrap_or_else(|| format!("auto-{}", random_hex::<12>())))
            .collect();
        let stamp = self.stamp();
        let mut pending = inserts;
        for _ in 0..SEQ_ROUNDS {
            if pending.is_empty() {
                break;
            }
            let (first, last) = next_seqs(&self.heads, &key, pending.len() as u64).await?;
            let docs: Vec<NotificationDoc> = (first.get()..=last.get())
                .zip(&pending)
                .map(|(seq, &i)| stamp.doc(&key, Seq(seq), &batch[i], &idems[i]))
                .collect();
            let mut failures = insert_failures(self.notifications.insert_many(&docs).ordered(false).await.map(|_| ()))?;
            let mut duplicates = Vec::new();
            for (k, (&i, doc)) in pending.iter().zip(docs).enumerate() {
                answers[i] = match failures.remove(&k) {
                    None => Some(doc.into_notification().map(Append::Stored)),
                    Some(failure) if failure.code == DUPLICATE_KEY => {
                        duplicates.push((i, doc.seq));
                        None
                    }
                    Some(failure) => Some(Err(StoreError::Refused(failure.message))),
                };
            }
            // A duplicate is a copy stored under its idempotency key by a
            // concurrent publish, or a number another writer's item took
            // (a publish to many users): that one goes round again.
            let keyed: Vec<&str> =
                duplicates.iter().filter_map(|(i, _)| batch[*i].idempotency_key.as_deref()).collect();
            let copies = if keyed.is_empty() { HashMap::new() } else { self.find_by_idem(&key, &keyed).await? };
            let mut taken = Vec::new();
            pending = Vec::new();
            for (i, seq) in duplicates {
                let seq = Seq(u64::try_from(seq).unwrap_or(0));
                match batch[i].idempotency_key.as_ref().and_then(|idem| copies.get(idem)) {
                    Some(copy) => {
                        if copy.seq == seq {
                            taken.push(seq);
                        }
                        answers[i] = Some(Ok(Append::Existing(copy.clone())));
                    }
                    None => {
                        taken.push(seq);
                        pending.push(i);
                    }
                }
            }
            taken.sort();
            spans.extend(without((first, last), &taken));
        }
        for i in pending {
            answers[i] = Some(Err(StoreError::Conflict(format!("no free number for a {key} notification"))));
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
        Ok(Appended { answers: answers.collect(), spans })
    }

    /// Stores one notification for each of `users`, each in its own inbox,
    /// in a bounded number of round trips whatever their number: a read of
    /// the copies already stored under the idempotency key (if any), one
    /// read of the inboxes' heads, one `update` raising them, and one
    /// unordered insert of every notification. Numbers are taken as head +
    /// 1; one that a concurrent write to the same inbox took meanwhile (the
    /// unique index refuses the second) goes round again with a number
    /// allocated the way a single write's is (a round trip for each of those
    /// few), and that write, if it lost, takes another number itself.
    /// Callers keep these writes one at a time per node (see
    /// [`crate::engine::stream`]), so they collide only with single writes.
    /// Answers one [`Appended`] per user, in their order.
    pub async fn store_for_users(&self, users: &[UserId], note: &NewNotification) -> Vec<Appended<Notification>> {
        match self.bounds.run(self.store_for_users_unbounded(users, note)).await {
            Ok(each) => each,
            Err(err) => {
                let shared = Arc::new(err);
                let failed = || Appended { answers: vec![Err(StoreError::Shared(shared.clone()))], spans: Vec::new() };
                users.iter().map(|_| failed()).collect()
            }
        }
    }

    async fn store_for_users_unbounded(
        &self,
        users: &[UserId],
        note: &NewNotification,
    ) -> Result<Vec<Appended<Notification>>, StoreError> {
        let keys: Vec<String> = users.iter().map(inbox_key).collect();
        let mut each: Vec<Appended<Notification>> =
            users.iter().map(|_| Appended { answers: Vec::with_capacity(1), spans: Vec::new() }).collect();
        let copies_of = |keys: Vec<&String>, idem: &String| {
            let filter = doc! {"key": {"$in": keys}, "idem": idem};
            async move {
                let docs: Vec<NotificationDoc> = self.notifications.find(filter).await?.try_collect().await?;
                let mut copies = HashMap::with_capacity(docs.len());
                for doc in docs {
                    copies.insert(doc.key.clone(), doc.into_notification()?);
                }
                Ok::<_, StoreError>(copies)
            }
        };
        let mut pending: Vec<usize> = (0..users.len()).collect();
        if let Some(idem) = &note.idempotency_key {
            let copies = copies_of(keys.iter().collect(), idem).await?;
            pending.retain(|&i| match copies.get(&keys[i]) {
                Some(copy) => {
                    each[i].answers.push(Ok(Append::Existing(copy.clone())));
                    false
                }
                None => true,
            });
        }
        let idems: Vec<String> = users
            .iter()
            .map(|_| note.idempotency_key.clone().unwrap_or_else(|| format!("auto-{}", random_hex::<12>())))
            .collect();
        let stamp = self.stamp();
        for round in 0..SEQ_ROUNDS {
            if pending.is_empty() {
                break;
            }
            let pending_keys: Vec<String> = pending.iter().map(|&i| keys[i].clone()).collect();
            let numbered: Vec<(String, Seq)> = if round == 0 {
                let heads = current_seqs(&self.heads, &pending_keys).await?;
                let numbered: Vec<(String, Seq)> = pending_keys
                    .into_iter()
                    .map(|key| {
                        let next = Seq(heads.get(&key).map_or(0, |head| head.get()) + 1);
                        (key, next)
                    })
                    .collect();
                raise_heads(&self.db, self.heads.name(), &numbered).await?;
                numbered
            } else {
                // The few that collided take a number each the way a
                // single write does, so they can't collide with those again.
                let taken = pending_keys.iter().map(|key| next_seqs(&self.heads, key, 1));
                let taken = futures::future::try_join_all(taken).await?;
                pending_keys.into_iter().zip(taken).map(|(key, (seq, _))| (key, seq)).collect()
            };
            let docs: Vec<NotificationDoc> =
                pending.iter().zip(&numbered).map(|(&i, (key, seq))| stamp.doc(key, *seq, note, &idems[i])).collect();
            let mut failures = insert_failures(self.notifications.insert_many(&docs).ordered(false).await.map(|_| ()))?;
            let mut duplicates = Vec::new();
            for (k, ((&i, doc), (_, seq))) in pending.iter().zip(docs).zip(&numbered).enumerate() {
                match failures.remove(&k) {
                    None => {
                        each[i].answers.push(doc.into_notification().map(Append::Stored));
                        each[i].spans.push((*seq, *seq));
                    }
                    Some(failure) if failure.code == DUPLICATE_KEY => duplicates.push((i, *seq)),
                    Some(failure) => each[i].answers.push(Err(StoreError::Refused(failure.message))),
                }
            }
            let copies = match &note.idempotency_key {
                Some(idem) if !duplicates.is_empty() => {
                    copies_of(duplicates.iter().map(|(i, _)| &keys[*i]).collect(), idem).await?
                }
                _ => HashMap::new(),
            };
            pending = Vec::new();
            for (i, seq) in duplicates {
                match copies.get(&keys[i]) {
                    Some(copy) => {
                        if copy.seq != seq {
                            each[i].spans.push((seq, seq));
                        }
                        each[i].answers.push(Ok(Append::Existing(copy.clone())));
                    }
                    None => pending.push(i),
                }
            }
        }
        for i in pending {
            let conflict = StoreError::Conflict(format!("no free number for a {} notification", keys[i]));
            each[i].answers.push(Err(conflict));
        }
        Ok(each)
    }

    fn stamp(&self) -> Stamp {
        let at = DateTime::now();
        Stamp {
            at,
            expires_at: DateTime::from_millis(at.timestamp_millis().saturating_add(self.retention.as_millis() as i64)),
        }
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

    /// Each stream's newest sequence number, in their order: one read.
    pub async fn heads(&self, recipients: &[Recipient]) -> Result<Vec<Seq>, StoreError> {
        let keys: Vec<String> = recipients.iter().map(Recipient::key).collect();
        let found = self.bounds.run(current_seqs(&self.heads, &keys)).await?;
        Ok(keys.iter().map(|key| found.get(key).copied().unwrap_or_default()).collect())
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
