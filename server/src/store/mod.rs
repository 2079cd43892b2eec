//! MongoDB storage: the two stores, and what they share.
//!
//! - [`messages`]: chat rooms' messages ([`messages::Store`]).
//! - [`inbox`]: notifications: users' inboxes and the broadcast stream,
//!   with retention ([`inbox::Inbox`]).
//! - [`hooks`]: the webhook queue.
//! - [`rooms`]: rooms' settings made through the API (private or not, who
//!   may join).
//!
//! Here: connecting, [`Bounds`] (every operation timed out and measured),
//! [`StoreError`], a batch's outcome ([`Append`], [`Appended`]), and the
//! sequence helpers both stores allocate and read their numbers with.
//!
//! Architecture invariant: storage knows nothing of Socket.IO or of who is
//! listening; it stores, allocates and reads.

pub mod hooks;
pub mod inbox;
pub mod messages;
pub mod rooms;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use herald::Seq;
use mongodb::bson::{Document, doc};
use mongodb::error::{Error as MongoError, ErrorKind, IndexedWriteError, InsertManyError, WriteFailure};
use mongodb::event::EventHandler;
use mongodb::event::command::CommandEvent;
use mongodb::options::{ClientOptions, ReturnDocument};
use mongodb::{Client, Collection, Database};

use crate::config::Secret;
use crate::ops::metrics::Metrics;

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
    /// The numbers the batch accounts for, as `(first, last)` spans in
    /// increasing order: each number in them is an item's or holds nothing.
    /// Empty when nothing was allocated, or when it is not known what was
    /// (a timed-out write may land later). A number another writer's item
    /// took (see [`without`]) is in no span.
    pub spans: Vec<(Seq, Seq)>,
}

impl<T> Appended<T> {
    /// Every one of `count` items failed with `err`.
    pub fn failed(count: usize, err: StoreError) -> Self {
        let shared = Arc::new(err);
        Self { answers: (0..count).map(|_| Err(StoreError::Shared(shared.clone()))).collect(), spans: Vec::new() }
    }
}

/// How many times a write whose numbers another writer's items took is
/// given new ones before it fails as a conflict. Such a collision needs a
/// publish to many users racing a write to one of them (see
/// [`inbox::Inbox::store_for_users`]); a second in a row is already rare.
pub(crate) const SEQ_ROUNDS: usize = 3;

/// `span` without the numbers in `taken` (sorted), as the spans that
/// remain.
pub(crate) fn without(span: (Seq, Seq), taken: &[Seq]) -> Vec<(Seq, Seq)> {
    let mut spans = Vec::new();
    let mut first = span.0.get();
    for seq in taken.iter().map(|s| s.get()).filter(|s| (span.0.get()..=span.1.get()).contains(s)) {
        if seq > first {
            spans.push((Seq(first), Seq(seq - 1)));
        }
        first = seq + 1;
    }
    if first <= span.1.get() {
        spans.push((Seq(first), span.1));
    }
    spans
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

/// The current sequence numbers of `keys` in `heads` (a key with none is
/// absent): one read.
pub(crate) async fn current_seqs(
    heads: &Collection<Document>,
    keys: &[String],
) -> Result<HashMap<String, Seq>, StoreError> {
    let mut found = heads.find(doc! {"_id": {"$in": keys}}).await?;
    let mut seqs = HashMap::with_capacity(keys.len());
    while let Some(head) = found.try_next().await? {
        if let (Ok(key), Ok(seq)) = (head.get_str("_id"), head.get_i64("seq")) {
            seqs.insert(key.to_owned(), Seq(u64::try_from(seq).unwrap_or(0)));
        }
    }
    Ok(seqs)
}

/// Raises each key's head in `heads` to at least its number, creating it
/// if need be: one `update` command. A statement that fails (two writers
/// creating one head at once) is logged and left: the unique index on the
/// items still refuses a number given twice, and the loser takes another.
pub(crate) async fn raise_heads(db: &Database, heads: &str, to: &[(String, Seq)]) -> Result<(), StoreError> {
    if to.is_empty() {
        return Ok(());
    }
    let updates: Vec<Document> = to
        .iter()
        .map(|(key, seq)| doc! {"q": {"_id": key}, "u": {"$max": {"seq": seq_to_i64(*seq)}}, "upsert": true})
        .collect();
    let answer = db.run_command(doc! {"update": heads, "updates": updates, "ordered": false}).await?;
    if let Ok(errors) = answer.get_array("writeErrors") {
        tracing::debug!(failed = errors.len(), "raising stream heads: some statements failed");
    }
    Ok(())
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

/// Connects (lazily: the driver connects on first use) and returns
/// database `db`. Finding a server is bounded by the store timeout, so a
/// database that is down fails an operation instead of hanging it.
pub async fn connect(uri: &Secret, db: &str, bounds: &Bounds) -> Result<Database, StoreError> {
    let mut options = ClientOptions::parse(uri.expose()).await?;
    options.app_name.get_or_insert_with(|| "herald".to_owned());
    options.server_selection_timeout.get_or_insert(bounds.timeout.min(SERVER_SELECTION_TIMEOUT));
    let metrics = bounds.metrics.clone();
    options.command_event_handler = Some(EventHandler::callback(move |event| {
        if let CommandEvent::Started(_) = event {
            metrics.store_command();
        }
    }));
    Ok(Client::with_options(options)?.database(db))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spans(list: &[(u64, u64)]) -> Vec<(Seq, Seq)> {
        list.iter().map(|&(a, b)| (Seq(a), Seq(b))).collect()
    }

    #[test]
    fn a_span_without_taken_numbers_splits_around_them() {
        let span = (Seq(10), Seq(15));
        assert_eq!(without(span, &[]), spans(&[(10, 15)]));
        assert_eq!(without(span, &[Seq(10)]), spans(&[(11, 15)]));
        assert_eq!(without(span, &[Seq(15)]), spans(&[(10, 14)]));
        assert_eq!(without(span, &[Seq(12), Seq(13)]), spans(&[(10, 11), (14, 15)]));
        assert_eq!(without(span, &[Seq(3), Seq(11), Seq(99)]), spans(&[(10, 10), (12, 15)]));
        assert_eq!(without((Seq(4), Seq(4)), &[Seq(4)]), spans(&[]));
    }
}
