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

use futures::TryStreamExt;
use herald::{ClientMsgId, DisplayName, MessageBody, NewMessage, RoomName, Seq, StoredMessage, UserId};
use mongodb::bson::Document;
use mongodb::bson::{DateTime, doc};
use mongodb::options::IndexOptions;
use mongodb::{Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};

use crate::config::Secret;
use crate::store::{
    Append, Appended, Bounds, DUPLICATE_KEY, StoreError, current_seq, current_seqs, insert_failures, next_seqs,
    seq_to_i64,
};

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
        let db = crate::store::connect(uri, db, &bounds).await?;
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
        let mut spans = Vec::new();
        if !inserts.is_empty() {
            let (first, last) = next_seqs(&self.heads, room.as_str(), inserts.len() as u64).await?;
            spans.push((first, last));
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
        Ok(Appended { answers: answers.collect(), spans })
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

    /// Each room's newest sequence number, in their order: one read.
    pub async fn heads(&self, rooms: &[RoomName]) -> Result<Vec<Seq>, StoreError> {
        if rooms.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = rooms.iter().map(|room| room.as_str().to_owned()).collect();
        let found = self.bounds.run(current_seqs(&self.heads, &keys)).await?;
        Ok(keys.iter().map(|key| found.get(key).copied().unwrap_or_default()).collect())
    }

    /// A page of `room`'s history for the API, oldest first, each with its
    /// signed-in sender's id: with `since`, the oldest `limit` after it;
    /// otherwise the newest `limit` (before `before`, when given). Also
    /// whether more lie beyond the page in the direction it was read.
    pub async fn page(
        &self,
        room: &RoomName,
        since: Option<Seq>,
        before: Option<Seq>,
        limit: u64,
    ) -> Result<(Vec<(StoredMessage, Option<UserId>)>, bool), StoreError> {
        self.bounds
            .run(async {
                let mut seq = Document::new();
                if let Some(since) = since {
                    seq.insert("$gt", seq_to_i64(since));
                }
                if let Some(before) = before {
                    seq.insert("$lt", seq_to_i64(before));
                }
                let mut filter = doc! {"room": room.as_str()};
                if !seq.is_empty() {
                    filter.insert("seq", seq);
                }
                let order = if since.is_some() { 1 } else { -1 };
                let docs: Vec<MessageDoc> = self
                    .messages
                    .find(filter)
                    .sort(doc! {"seq": order})
                    .limit(i64::try_from(limit + 1).unwrap_or(i64::MAX))
                    .await?
                    .try_collect()
                    .await?;
                let more = docs.len() as u64 > limit;
                let mut page = Vec::with_capacity(docs.len());
                for doc in docs.into_iter().take(usize::try_from(limit).unwrap_or(usize::MAX)) {
                    let user = doc.user.as_deref().and_then(|user| UserId::parse(user).ok());
                    match doc.into_message() {
                        Ok(message) => page.push((message, user)),
                        Err(err) => tracing::warn!(%err, "skipping invalid stored message"),
                    }
                }
                if order < 0 {
                    page.reverse();
                }
                Ok((page, more))
            })
            .await
    }

    /// Deletes the message numbered `seq` of `room`; false when there is
    /// none.
    pub async fn delete(&self, room: &RoomName, seq: Seq) -> Result<bool, StoreError> {
        self.bounds
            .run(async {
                let deleted = self.messages.delete_one(doc! {"room": room.as_str(), "seq": seq_to_i64(seq)}).await?;
                Ok(deleted.deleted_count == 1)
            })
            .await
    }

    /// Messages with `from < seq <= to`, oldest first, at most `limit`.
    pub async fn range(
        &self,
        room: &RoomName,
        from: Seq,
        to: Seq,
        limit: u64,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        self.bounds
            .run(async {
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
            })
            .await
    }
}
