//! `GET` and `PUT /api/rooms/{room}/settings`: whether a room is private,
//! and who may enter it.

use std::collections::BTreeSet;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use herald::{RoomName, UserId};
use serde::{Deserialize, Serialize};

use crate::access::Effective;
use crate::api::error::ApiError;
use crate::api::require_api_key;
use crate::state::AppState;
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
    require_api_key(&state.api_keys, &headers)?;
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
    require_api_key(&state.api_keys, &headers)?;
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
