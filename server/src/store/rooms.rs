//! Rooms' settings, as the API sets them: whether a room is private
//! (overriding the configured patterns) and which users may join it.
//!
//! One collection, `room_settings` `{_id: room, private: bool|null,
//! users: [user id], updated: date}`, small: only rooms given settings
//! have a document. Every node keeps all of them in memory and reads what
//! changed since its last look (`updated`, indexed).

use std::collections::BTreeSet;

use futures::TryStreamExt;
use herald::{RoomName, UserId};
use mongodb::bson::{DateTime, doc};
use mongodb::options::IndexOptions;
use mongodb::{Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};

use crate::store::{Bounds, StoreError};

/// The most users one room's settings may list.
pub const ROOM_USERS_MAX: usize = 1000;
/// The most settings one read of changes returns; the next read goes on
/// from the newest of them.
pub const CHANGES_MAX: usize = 1000;

/// What the API set for one room.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomSettings {
    /// `Some`: private or public whatever the configured patterns say;
    /// `None`: as the patterns say.
    pub private: Option<bool>,
    /// Users who may join the room while it is private, besides those their
    /// token or the backend lets in.
    pub users: BTreeSet<UserId>,
    /// When the settings were last written (milliseconds since the epoch).
    pub updated_ms: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct SettingsDoc {
    #[serde(rename = "_id")]
    room: String,
    #[serde(default)]
    private: Option<bool>,
    #[serde(default)]
    users: Vec<String>,
    updated: DateTime,
}

impl SettingsDoc {
    /// Stored settings are parsed like any input: an invalid user id is
    /// dropped (and logged), an invalid room name skips the document.
    fn parse(self) -> Option<(RoomName, RoomSettings)> {
        let Ok(room) = RoomName::parse(&self.room) else {
            tracing::warn!(room = %self.room, "room_settings: skipping a document with an invalid room name");
            return None;
        };
        let users = self
            .users
            .iter()
            .filter_map(|user| {
                UserId::parse(user)
                    .inspect_err(|_| tracing::warn!(%room, "room_settings: skipping an invalid user id"))
                    .ok()
            })
            .collect();
        Some((room, RoomSettings { private: self.private, users, updated_ms: self.updated.timestamp_millis() }))
    }
}

/// Handle to the settings collection. Cheap to clone.
#[derive(Clone)]
pub struct RoomSettingsStore {
    settings: Collection<SettingsDoc>,
    bounds: Bounds,
}

impl RoomSettingsStore {
    pub fn new(db: &Database, bounds: Bounds) -> Self {
        Self { settings: db.collection("room_settings"), bounds }
    }

    pub async fn ensure_indexes(&self) -> Result<(), StoreError> {
        let index = IndexModel::builder()
            .keys(doc! {"updated": 1})
            .options(IndexOptions::builder().name("updated".to_owned()).build())
            .build();
        self.bounds.run(async { Ok(self.settings.create_index(index).await.map(drop)?) }).await
    }

    /// Writes `room`'s settings (all of them), stamped now; returns them as
    /// stored.
    pub async fn put(
        &self,
        room: &RoomName,
        private: Option<bool>,
        users: BTreeSet<UserId>,
    ) -> Result<RoomSettings, StoreError> {
        let updated = DateTime::now();
        let stored = SettingsDoc {
            room: room.to_string(),
            private,
            users: users.iter().map(ToString::to_string).collect(),
            updated,
        };
        self.bounds
            .run(async {
                self.settings.replace_one(doc! {"_id": room.as_str()}, &stored).upsert(true).await?;
                Ok(())
            })
            .await?;
        Ok(RoomSettings { private, users, updated_ms: updated.timestamp_millis() })
    }

    /// The settings written at or after `since_ms`, oldest first, at most
    /// [`CHANGES_MAX`].
    pub async fn changed_since(&self, since_ms: i64) -> Result<Vec<(RoomName, RoomSettings)>, StoreError> {
        self.bounds
            .run(async {
                let found = self
                    .settings
                    .find(doc! {"updated": {"$gte": DateTime::from_millis(since_ms)}})
                    .sort(doc! {"updated": 1})
                    .limit(CHANGES_MAX as i64)
                    .await?;
                let docs: Vec<SettingsDoc> = found.try_collect().await?;
                Ok(docs.into_iter().filter_map(SettingsDoc::parse).collect())
            })
            .await
    }
}
