//! Rooms for backends: `GET /api/rooms` (who is where), a room's history
//! (`GET /api/rooms/{room}/messages`), removing a message, and its settings
//! (`GET`/`PUT /api/rooms/{room}/settings`: whether it is private, and who
//! may enter it).

use std::collections::BTreeSet;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use herald::{RoomName, Seq, StoredMessage, UserId};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::access::Effective;
use crate::api::authorize;
use crate::api::error::ApiError;
use crate::state::AppState;
use crate::store::StoreError;
use crate::store::rooms::ROOM_USERS_MAX;

/// A `PUT`'s body: every setting at once (what is left out is reset).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsRequest {
    /// `true` or `false` whatever `HERALD_PRIVATE_ROOMS` says; `null` or
    /// absent: as it says.
    #[serde(default)]
    private: Option<bool>,
    #[serde(default)]
    users: Vec<String>,
}

/// What both methods answer.
#[derive(Debug, Serialize)]
struct SettingsView {
    room: RoomName,
    /// What the room is now: by its settings, else by the patterns.
    private: bool,
    settings: StoredView,
}

#[derive(Debug, Serialize)]
struct StoredView {
    private: Option<bool>,
    users: Vec<UserId>,
    /// When they were last written (milliseconds since the epoch); absent
    /// when they never were.
    #[serde(skip_serializing_if = "Option::is_none")]
    updated_ms: Option<i64>,
}

impl SettingsView {
    fn new(room: RoomName, effective: Effective) -> Self {
        let Effective { settings, private } = effective;
        Self {
            room,
            private,
            settings: StoredView {
                private: settings.private,
                users: settings.users.into_iter().collect(),
                updated_ms: (settings.updated_ms > 0).then_some(settings.updated_ms),
            },
        }
    }
}

pub(super) fn room_of(raw: &str) -> Result<RoomName, ApiError> {
    RoomName::parse(raw).map_err(|e| ApiError::new(StatusCode::NOT_FOUND, "invalid_room", e.to_string()))
}

/// `GET /api/rooms/{room}/settings`.
pub async fn settings(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(room): Path<String>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers).await?;
    let room = room_of(&room)?;
    let effective = state.access.effective(&room);
    Ok(axum::Json(SettingsView::new(room, effective)).into_response())
}

/// `PUT /api/rooms/{room}/settings`.
pub async fn put_settings(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(room): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    authorize(&state, &headers).await?;
    let room = room_of(&room)?;
    let request: SettingsRequest = serde_json::from_slice(&body).map_err(|err| {
        ApiError::new(StatusCode::BAD_REQUEST, "malformed", format!("expected {{\"private\", \"users\"}}: {err}"))
    })?;
    if request.users.len() > ROOM_USERS_MAX {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "too_many_users",
            format!("a room's settings may list at most {ROOM_USERS_MAX} users"),
        ));
    }
    let users = request
        .users
        .iter()
        .map(|user| UserId::parse(user))
        .collect::<Result<BTreeSet<_>, _>>()
        .map_err(|err| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_user", err.to_string()))?;
    let effective = state.access.set(&room, request.private, users).await.map_err(|err| {
        tracing::warn!(%err, %room, "storing room settings failed");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the settings could not be stored; retry")
    })?;
    Ok(axum::Json(SettingsView::new(room, effective)).into_response())
}

/// The longest page of history one request reads.
pub const PAGE_MAX: u64 = 500;
/// The page size when the request names none.
const PAGE_DEFAULT: u64 = 50;

/// The query of a history read. Numbers as text, so that a bad one is
/// reported as the API's own error.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    since: Option<String>,
    before: Option<String>,
    limit: Option<String>,
}

fn number(name: &str, raw: Option<&str>) -> Result<Option<u64>, ApiError> {
    raw.map(|raw| {
        raw.parse::<u64>().map_err(|_| {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", format!("{name} must be a whole number"))
        })
    })
    .transpose()
}

/// A stored message as the API shows it: with its signed-in sender's id.
#[derive(Debug, Serialize)]
struct ApiMessage {
    #[serde(flatten)]
    message: StoredMessage,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<UserId>,
}

/// `GET /api/rooms/{room}/messages?since=&before=&limit=`: a page of the
/// room's history from MongoDB, oldest first.
pub async fn messages(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(room): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    authorize(&state, &headers).await?;
    let room = room_of(&room)?;
    let query: PageQuery = serde_urlencoded::from_str(query.as_deref().unwrap_or_default())
        .map_err(|err| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", err.to_string()))?;
    let since = number("since", query.since.as_deref())?.map(Seq);
    let before = number("before", query.before.as_deref())?.map(Seq);
    let limit = number("limit", query.limit.as_deref())?.unwrap_or(PAGE_DEFAULT);
    if !(1..=PAGE_MAX).contains(&limit) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!("limit must be from 1 to {PAGE_MAX}"),
        ));
    }
    let store = state.engine.store();
    let unavailable = |err: StoreError| {
        tracing::warn!(%err, %room, "reading a room's history for the API failed");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "history could not be read; retry")
    };
    let (page, more) = store.page(&room, since, before, limit).await.map_err(unavailable)?;
    let head = store.head(&room).await.map_err(unavailable)?;
    let messages: Vec<ApiMessage> = page.into_iter().map(|(message, user)| ApiMessage { message, user }).collect();
    Ok(axum::Json(json!({ "room": room, "head": head, "messages": messages, "more": more })).into_response())
}

/// `DELETE /api/rooms/{room}/messages/{seq}`: removes a message from the
/// store, then from every live page and window.
pub async fn remove_message(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((room, seq)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers).await?;
    let room = room_of(&room)?;
    let seq = seq
        .parse::<u64>()
        .ok()
        .filter(|seq| *seq > 0)
        .map(Seq)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no_message", "a message number is a whole number"))?;
    let removed = state.engine.remove(&room, seq).await.map_err(|err| {
        tracing::warn!(%err, %room, "removing a message failed");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the message could not be removed; retry")
    })?;
    if !removed {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "no_message", format!("{room} has no message {seq}")));
    }
    Ok(axum::Json(json!({ "room": room, "seq": seq, "removed": true })).into_response())
}

/// `GET /api/rooms`: rooms with someone in them, on any node, with their
/// counts and whether each is private.
pub async fn active(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize(&state, &headers).await?;
    let rooms = state.presence.active().await.map_err(|err| {
        tracing::warn!(%err, "listing active rooms failed");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "presence_unavailable", "presence is unavailable, retry")
    })?;
    let rooms: Vec<_> = rooms
        .into_iter()
        .map(|active| {
            let private = state.access.effective(&active.room).private;
            json!({ "room": active.room, "user_count": active.user_count, "anonymous": active.anonymous, "private": private })
        })
        .collect();
    Ok(axum::Json(json!({ "rooms": rooms })).into_response())
}
