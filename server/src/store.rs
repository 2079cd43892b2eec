//! Message storage in MongoDB.
//!
//! Two collections:
//! - `room_heads` `{_id: room, seq}`: each room's newest sequence number,
//!   advanced atomically with `$inc` (one round trip allocates the numbers
//!   of a whole batch);
//! - `messages` `{room, seq, client_id, name, body, at}`: unique on
//!   `(room, seq)` and on `(room, client_id)`, the latter making resends
//!   idempotent.
//!
//! Every history read is a range on `seq` (`seq > from`), which the
//! `(room, seq)` index answers directly; nothing sorts a whole room.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use herald::{ClientMsgId, DisplayName, HISTORY_WINDOW, MessageBody, NewMessage, RoomName, Seq, StoredMessage};
use mongodb::bson::Document;
use mongodb::bson::{DateTime, doc};
use mongodb::error::{Error as MongoError, ErrorKind, IndexedWriteError, InsertManyError, WriteFailure};
use mongodb::options::{ClientOptions, IndexOptions, ReturnDocument};
use mongodb::{Client, Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};

use crate::config::Secret;
use crate::metrics::Metrics;

/// MongoDB's duplicate-key error code.
pub(crate) const DUPLICATE_KEY: i32 = 11000;
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
    /// One item of a batch was refused by the database.
    #[error("write refused: {0}")]
    Refused(String),
    /// A failure every item of a batch shares.
    #[error("{0}")]
    Shared(Arc<StoreError>),
    /// More writes are waiting for this stream than it queues.
    #[error("too many writes are waiting for this stream")]
    Overloaded,
}

/// What storing one item of a batch came to.
#[derive(Debug, Clone)]
pub enum Append<T> {
    /// Stored now, under one of the batch's numbers.
    Stored(T),
    /// Stored before (same client id or idempotency key): that copy.
    Existing(T),
}

impl<T> Append<T> {
    pub fn into_item(self) -> T {
        match self {
            Append::Stored(item) | Append::Existing(item) => item,
        }
    }
}

/// A batch's outcome.
#[derive(Debug)]
pub struct Appended<T> {
    /// One answer per item of the batch, in its order.
    pub answers: Vec<Result<Append<T>, StoreError>>,
    /// The numbers allocated to the batch, first and last: each is an
    /// item's or holds nothing. `None` when nothing was allocated, or when
    /// it is not known what was (a timed-out write may land later).
    pub allocated: Option<(Seq, Seq)>,
}

impl<T> Appended<T> {
    /// Every one of `count` items failed with `err`.
    pub fn failed(count: usize, err: StoreError) -> Self {
        let shared = Arc::new(err);
        Self { answers: (0..count).map(|_| Err(StoreError::Shared(shared.clone()))).collect(), allocated: None }
    }
}

/// The per-item failures of an unordered `insert_many`, by position; any
/// other failure is the whole batch's.
pub(crate) fn insert_failures(result: Result<(), MongoError>) -> Result<HashMap<usize, IndexedWriteError>, MongoError> {
    match result {
        Ok(()) => Ok(HashMap::new()),
        Err(err) => match err.kind.as_ref() {
            ErrorKind::InsertMany(InsertManyError {
                write_errors: Some(errors), write_concern_error: None, ..
            }) => Ok(errors.iter().map(|e| (e.index, e.clone())).collect()),
            _ => Err(err),
        },
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
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

/// Allocates the next `count` sequence numbers of `key` in `heads`, first
/// and last: one atomic `$inc` with upsert.
pub(crate) async fn next_seqs(heads: &Collection<Document>, key: &str, count: u64) -> Result<(Seq, Seq), StoreError> {
    let count = count.max(1);
    let filter = doc! {"_id": key};
    let update = doc! {"$inc": {"seq": i64::try_from(count).unwrap_or(i64::MAX)}};
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
                let last = u64::try_from(seq).map_err(|_| StoreError::Corrupt("negative head".into()))?;
                return Ok((Seq(last.saturating_sub(count - 1).max(1)), Seq(last)));
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

    /// Stores a batch of messages of one room, each with its `retry` flag:
    /// at most one sequence allocation (`$inc` by the number of new
    /// messages) and one unordered insert for all of them, plus a point
    /// read when some are resent. A message whose client id is already
    /// stored in the room is answered with the copy stored the first time,
    /// not stored again; with `retry` (the client says it may have sent
    /// this before) the copy is looked up first, which spares a number. A
    /// system message only ever matches a system message, and a person's
    /// only a person's: a client id someone else took first is a conflict,
    /// never someone else's message returned. Two messages of a batch with
    /// one client id are stored once.
    pub async fn append_batch(&self, room: &RoomName, batch: &[(NewMessage, bool)]) -> Appended<StoredMessage> {
        match self.bounds.run(self.append_unbounded(room, batch)).await {
            Ok(appended) => appended,
            Err(err) => Appended::failed(batch.len(), err),
        }
    }

    async fn append_unbounded(
        &self,
        room: &RoomName,
        batch: &[(NewMessage, bool)],
    ) -> Result<Appended<StoredMessage>, StoreError> {
        let mut answers: Vec<Option<Result<Append<StoredMessage>, StoreError>>> = batch.iter().map(|_| None).collect();
        let copy_of = |message: &NewMessage, copies: &HashMap<String, (bool, StoredMessage)>| {
            copies
                .get(message.client_id.as_str())
                .filter(|(system, _)| *system == message.system)
                .map(|(_, m)| m.clone())
        };
        let resent: Vec<&str> = batch.iter().filter(|(_, retry)| *retry).map(|(m, _)| m.client_id.as_str()).collect();
        if !resent.is_empty() {
            let copies = self.find_by_client_ids(room, &resent).await?;
            for (answer, (message, _)) in answers.iter_mut().zip(batch).filter(|(_, (_, retry))| *retry) {
                *answer = copy_of(message, &copies).map(|copy| Ok(Append::Existing(copy)));
            }
        }
        // One insert per client id; a second message with it gets the first's answer.
        let mut first_with: HashMap<&str, usize> = HashMap::new();
        let mut inserts = Vec::new();
        let mut twins = Vec::new();
        for (i, (message, _)) in batch.iter().enumerate().filter(|(i, _)| answers[*i].is_none()) {
            match first_with.get(message.client_id.as_str()) {
                Some(&first) => twins.push((i, first)),
                None => {
                    first_with.insert(message.client_id.as_str(), i);
                    inserts.push(i);
                }
            }
        }
        let mut allocated = None;
        if !inserts.is_empty() {
            let (first, last) = next_seqs(&self.heads, room.as_str(), inserts.len() as u64).await?;
            allocated = Some((first, last));
            let at = DateTime::now();
            let docs: Vec<MessageDoc> = (first.get()..=last.get())
                .zip(&inserts)
                .map(|(seq, &i)| MessageDoc::new(&batch[i].0, Seq(seq), at))
                .collect();
            let mut failures = insert_failures(self.messages.insert_many(&docs).ordered(false).await.map(|_| ()))?;
            let mut taken = Vec::new();
            for (k, (&i, doc)) in inserts.iter().zip(docs).enumerate() {
                answers[i] = match failures.remove(&k) {
                    None => Some(doc.into_message().map(Append::Stored)),
                    Some(failure) if failure.code == DUPLICATE_KEY => {
                        taken.push(i);
                        None
                    }
                    Some(failure) => Some(Err(StoreError::Refused(failure.message))),
                };
            }
            if !taken.is_empty() {
                let ids: Vec<&str> = taken.iter().map(|&i| batch[i].0.client_id.as_str()).collect();
                let copies = self.find_by_client_ids(room, &ids).await?;
                for i in taken {
                    let message = &batch[i].0;
                    answers[i] = Some(copy_of(message, &copies).map(Append::Existing).ok_or_else(|| {
                        StoreError::Conflict(format!(
                            "client id {} in {room} belongs to another sender",
                            message.client_id
                        ))
                    }));
                }
            }
        }
        for (twin, first) in twins {
            let same_kind = batch[twin].0.system == batch[first].0.system;
            answers[twin] = Some(match &answers[first] {
                Some(Ok(stored)) if same_kind => Ok(Append::Existing(stored.clone().into_item())),
                _ => {
                    Err(StoreError::Conflict(format!("client id {} in {room} was not stored", batch[twin].0.client_id)))
                }
            });
        }
        let answers = answers.into_iter().map(|a| a.unwrap_or_else(|| Err(StoreError::Corrupt("unanswered".into()))));
        Ok(Appended { answers: answers.collect(), allocated })
    }

    /// The stored messages of `room` with these client ids, by client id,
    /// each with whether it is a system message.
    async fn find_by_client_ids(
        &self,
        room: &RoomName,
        ids: &[&str],
    ) -> Result<HashMap<String, (bool, StoredMessage)>, StoreError> {
        let filter = doc! {"room": room.as_str(), "client_id": {"$in": ids}};
        let docs: Vec<MessageDoc> = self.messages.find(filter).await?.try_collect().await?;
        let mut copies = HashMap::with_capacity(docs.len());
        for doc in docs {
            let (client_id, system) = (doc.client_id.clone(), doc.system);
            copies.insert(client_id, (system, doc.into_message()?));
        }
        Ok(copies)
    }

    /// The room's newest sequence number (0 for a room with no messages).
    pub async fn head(&self, room: &RoomName) -> Result<Seq, StoreError> {
        self.bounds.run(async { current_seq(&self.heads, room.as_str()).await }).await
    }

    /// Messages with `from < seq <= to`, oldest first, at most `limit`.
    pub async fn range(
        &self,
        room: &RoomName,
        from: Seq,
        to: Seq,
        limit: u64,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        self.bounds.run(self.range_between(room, from, to, limit)).await
    }

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
}
