//! Message storage in MongoDB.
//!
//! Two collections:
//! - `room_heads` `{_id: room, seq}`: each room's newest sequence number,
//!   advanced atomically with `$inc` (one round trip allocates a sequence);
//! - `messages` `{room, seq, client_id, name, body, at}`: unique on
//!   `(room, seq)` and on `(room, client_id)`, the latter making resends
//!   idempotent.
//!
//! Every history read is a range on `seq` (`seq > from`), which the
//! `(room, seq)` index answers directly; nothing sorts a whole room.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use herald::protocol::CATCH_UP_MAX;
use herald::{ClientMsgId, DisplayName, HISTORY_WINDOW, MessageBody, NewMessage, RoomName, Seq, StoredMessage};
use mongodb::bson::Document;
use mongodb::bson::{DateTime, doc};
use mongodb::error::{Error as MongoError, ErrorKind, WriteFailure};
use mongodb::options::{ClientOptions, IndexOptions, ReturnDocument};
use mongodb::{Client, Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};

use crate::config::Secret;
use crate::metrics::Metrics;

/// MongoDB's duplicate-key error code.
const DUPLICATE_KEY: i32 = 11000;
/// How long an operation waits for a reachable server before failing, so a
/// database outage turns into an error instead of a hang.
const SERVER_SELECTION_TIMEOUT: Duration = Duration::from_secs(5);

/// Storage failed; the cause is logged, never shown to clients.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the database did not answer within {0:?}")]
    Timeout(Duration),
    #[error("database error: {0}")]
    Mongo(#[from] MongoError),
    #[error("stored document is invalid: {0}")]
    Corrupt(String),
    /// The write would collide with data that is not the caller's.
    #[error("conflict: {0}")]
    Conflict(String),
}

#[derive(Debug, Serialize, Deserialize)]
struct MessageDoc {
    room: String,
    seq: i64,
    client_id: String,
    name: String,
    body: String,
    at: DateTime,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    system: bool,
    /// The signed-in sender's user id (never sent to clients: they get
    /// `verified`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user: Option<String>,
}

impl MessageDoc {
    fn new(message: &NewMessage, seq: Seq, at: DateTime) -> Self {
        Self {
            room: message.room.to_string(),
            seq: seq_to_i64(seq),
            client_id: message.client_id.to_string(),
            name: message.name.to_string(),
            body: message.body.to_string(),
            at,
            system: message.system,
            user: message.user.as_ref().map(ToString::to_string),
        }
    }

    /// Documents are parsed like any input: a document that breaks the rules
    /// is reported, not shown.
    fn into_message(self) -> Result<StoredMessage, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("{what} of {}#{}", self.room, self.seq));
        Ok(StoredMessage {
            room: RoomName::parse(&self.room).map_err(|_| corrupt("room"))?,
            seq: Seq(u64::try_from(self.seq).map_err(|_| corrupt("seq"))?),
            client_id: ClientMsgId::parse(&self.client_id).map_err(|_| corrupt("client_id"))?,
            // Names stored before invisible characters were refused are shown
            // without them rather than hidden.
            name: DisplayName::parse(&self.name)
                .or_else(|_| DisplayName::parse(&self.name.replace(herald::message::is_invisible, "")))
                .map_err(|_| corrupt("name"))?,
            body: MessageBody::parse(&self.body).map_err(|_| corrupt("body"))?,
            at_ms: self.at.timestamp_millis(),
            system: self.system,
            verified: self.user.is_some(),
        })
    }
}

/// Allocates the next sequence number of `key` in `heads`: one atomic
/// `$inc` with upsert.
pub(crate) async fn next_seq(heads: &Collection<Document>, key: &str) -> Result<Seq, StoreError> {
    let filter = doc! {"_id": key};
    let update = doc! {"$inc": {"seq": 1_i64}};
    // Two first writers of a new key can race to upsert it; the loser sees a
    // duplicate key and simply increments the winner's.
    let mut retried = false;
    loop {
        let result = heads
            .find_one_and_update(filter.clone(), update.clone())
            .upsert(true)
            .return_document(ReturnDocument::After)
            .await;
        match result {
            Ok(Some(head)) => {
                let seq = head.get_i64("seq").map_err(|e| StoreError::Corrupt(e.to_string()))?;
                return u64::try_from(seq).map(Seq).map_err(|_| StoreError::Corrupt("negative head".into()));
            }
            // Some MongoDB-compatible servers answer a lost upsert race with
            // no document instead of a duplicate key: the same race, retried.
            Ok(None) if !retried => retried = true,
            Ok(None) => return Err(StoreError::Corrupt("upsert returned nothing".into())),
            Err(err) if !retried && is_duplicate_key(&err) => retried = true,
            Err(err) => return Err(err.into()),
        }
    }
}

/// The current sequence number of `key` in `heads` (0 when none).
pub(crate) async fn current_seq(heads: &Collection<Document>, key: &str) -> Result<Seq, StoreError> {
    let head = heads.find_one(doc! {"_id": key}).await?;
    let seq = head.and_then(|d| d.get_i64("seq").ok()).unwrap_or(0);
    Ok(Seq(u64::try_from(seq).unwrap_or(0)))
}

pub(crate) fn seq_to_i64(seq: Seq) -> i64 {
    i64::try_from(seq.get()).unwrap_or(i64::MAX)
}

pub(crate) fn is_duplicate_key(err: &MongoError) -> bool {
    match err.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(e)) => e.code == DUPLICATE_KEY,
        ErrorKind::Command(e) => e.code == DUPLICATE_KEY,
        _ => false,
    }
}

/// A room's messages after some sequence number.
#[derive(Debug, Clone, PartialEq)]
pub struct CatchUp {
    pub head: Seq,
    pub messages: Vec<StoredMessage>,
    /// More messages were missed than [`CATCH_UP_MAX`]; only the newest came.
    pub truncated: bool,
}

/// What every storage operation goes through: a time limit, so a dead or
/// hung database turns into an error the client sees within a bounded time
/// (the driver's own timeouts only cover finding a server, not a server that
/// stops answering), and a latency measurement.
#[derive(Clone)]
pub struct Bounds {
    timeout: Duration,
    metrics: Arc<Metrics>,
}

impl Bounds {
    pub fn new(timeout: Duration, metrics: Arc<Metrics>) -> Self {
        Self { timeout, metrics }
    }

    /// Runs one operation. A timed-out operation may still have taken
    /// effect; callers answer "unavailable", and the client's retry with
    /// the same id is idempotent.
    pub async fn run<T>(&self, op: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
        let started = Instant::now();
        let result = tokio::time::timeout(self.timeout, op).await.unwrap_or(Err(StoreError::Timeout(self.timeout)));
        self.metrics.store_op(started.elapsed(), result.is_ok());
        result
    }
}

/// Handle to Herald's MongoDB database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    bounds: Bounds,
    db: Database,
    messages: Collection<MessageDoc>,
    heads: Collection<Document>,
}

impl Store {
    /// Connects (lazily: the driver connects on first use) and returns a
    /// handle to database `db`.
    pub async fn connect(uri: &Secret, db: &str, bounds: Bounds) -> Result<Self, StoreError> {
        let mut options = ClientOptions::parse(uri.expose()).await?;
        options.app_name.get_or_insert_with(|| "herald".to_owned());
        options.server_selection_timeout.get_or_insert(bounds.timeout.min(SERVER_SELECTION_TIMEOUT));
        let db = Client::with_options(options)?.database(db);
        Ok(Self { messages: db.collection("messages"), heads: db.collection("room_heads"), db, bounds })
    }

    /// The limits every operation runs under, for the other stores.
    pub fn bounds(&self) -> &Bounds {
        &self.bounds
    }

    /// Whether the database answers a ping (for readiness checks).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.bounds
            .run(async {
                self.db.run_command(doc! {"ping": 1}).await?;
                Ok(())
            })
            .await
    }

    /// The database, for the other stores that share it.
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Creates the indexes Herald relies on (idempotent).
    pub async fn ensure_indexes(&self) -> Result<(), StoreError> {
        let unique = |name: &str| IndexOptions::builder().unique(true).name(name.to_owned()).build();
        self.messages
            .create_indexes([
                IndexModel::builder().keys(doc! {"room": 1, "seq": 1}).options(unique("room_seq")).build(),
                IndexModel::builder().keys(doc! {"room": 1, "client_id": 1}).options(unique("room_client_id")).build(),
            ])
            .await?;
        Ok(())
    }

    /// Stores a message: one sequence allocation plus one insert. A message
    /// whose client id is already stored in the room is returned as stored
    /// the first time, not stored again. With `retry` (the client says it may
    /// have sent this before) the existing copy is looked up first, which
    /// spares a sequence number. A system message only ever matches a system
    /// message, and a person's only a person's: a client id someone else
    /// took first is a conflict, never someone else's message returned.
    ///
    /// `allocated` hears the sequence number as soon as it is allocated,
    /// before the insert: delivery order is kept by number (see
    /// `sequencer`), and a number being written must hold back later ones.
    pub async fn append(
        &self,
        message: &NewMessage,
        retry: bool,
        allocated: impl FnOnce(Seq),
    ) -> Result<StoredMessage, StoreError> {
        self.bounds
            .run(async {
                if retry && let Some(existing) = self.find_by_client_id(message).await? {
                    return Ok(existing);
                }
                let seq = next_seq(&self.heads, message.room.as_str()).await?;
                allocated(seq);
                let doc = MessageDoc::new(message, seq, DateTime::now());
                match self.messages.insert_one(&doc).await {
                    Ok(_) => doc.into_message(),
                    Err(err) if is_duplicate_key(&err) => self.find_by_client_id(message).await?.ok_or_else(|| {
                        StoreError::Conflict(format!(
                            "client id {} in {} belongs to another sender",
                            doc.client_id, doc.room
                        ))
                    }),
                    Err(err) => Err(err.into()),
                }
            })
            .await
    }

    /// The stored copy of `message` (same room and client id, and of the
    /// same kind: system or not).
    async fn find_by_client_id(&self, message: &NewMessage) -> Result<Option<StoredMessage>, StoreError> {
        let system = if message.system {
            doc! {"$eq": true}
        } else {
            doc! {"$ne": true}
        };
        let filter = doc! {"room": message.room.as_str(), "client_id": message.client_id.as_str(), "system": system};
        self.messages.find_one(filter).await?.map(MessageDoc::into_message).transpose()
    }

    /// The room's newest sequence number (0 for a room with no messages).
    pub async fn head(&self, room: &RoomName) -> Result<Seq, StoreError> {
        self.bounds.run(async { current_seq(&self.heads, room.as_str()).await }).await
    }

    /// Messages with `from < seq <= to`, oldest first, at most `limit`.
    async fn range_between(
        &self,
        room: &RoomName,
        from: Seq,
        to: Seq,
        limit: u64,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let filter = doc! {"room": room.as_str(), "seq": {"$gt": seq_to_i64(from), "$lte": seq_to_i64(to)}};
        let docs: Vec<MessageDoc> = self
            .messages
            .find(filter)
            .sort(doc! {"seq": 1})
            .limit(i64::try_from(limit).unwrap_or(i64::MAX))
            .await?
            .try_collect()
            .await?;
        let mut messages = Vec::with_capacity(docs.len());
        for doc in docs {
            match doc.into_message() {
                Ok(message) => messages.push(message),
                // One bad document must not hide a room's history.
                Err(err) => tracing::warn!(%err, "skipping invalid stored message"),
            }
        }
        Ok(messages)
    }

    /// The room's head and its last [`HISTORY_WINDOW`] sequence numbers' worth
    /// of messages, oldest first.
    pub async fn recent(&self, room: &RoomName) -> Result<(Seq, Vec<StoredMessage>), StoreError> {
        self.bounds
            .run(async {
                let head = current_seq(&self.heads, room.as_str()).await?;
                let from = Seq(head.get().saturating_sub(HISTORY_WINDOW));
                Ok((head, self.range_between(room, from, head, HISTORY_WINDOW).await?))
            })
            .await
    }

    /// What a client that has everything up to `since` missed, up to
    /// `upto` (the newest number delivered live; newer ones reach a joined
    /// socket live) or the room's head.
    pub async fn since(&self, room: &RoomName, since: Seq, upto: Option<Seq>) -> Result<CatchUp, StoreError> {
        self.bounds
            .run(async {
                let stored = current_seq(&self.heads, room.as_str()).await?;
                let head = upto.map_or(stored, |upto| upto.min(stored));
                let floor = Seq(head.get().saturating_sub(CATCH_UP_MAX));
                let from = since.max(floor);
                let messages = self.range_between(room, from, head, CATCH_UP_MAX).await?;
                Ok(CatchUp { head, messages, truncated: from > since })
            })
            .await
    }
}
