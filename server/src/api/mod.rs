//! The API for backends: `POST /api/publish` ([`publish`]),
//! `GET /api/presence/{room}`, rooms: who is where, history, removing a
//! message, settings ([`rooms`]), disconnecting a user ([`users`]), and
//! the API described ([`openapi`], `GET /api/openapi.json`).
//!
//! Every request is authenticated by an API key (`Authorization: Bearer
//! <key>`, [`require_api_key`]) and counted against that key's rate: a
//! publish against `HERALD_PUBLISH_RATE`, every other call against
//! `HERALD_API_RATE` ([`authorize`]). Every error is answered as JSON
//! ([`error::ApiError`]). `docs/PROTOCOL.md` documents the API.

pub mod error;
pub mod openapi;
pub mod publish;
pub mod request;
pub mod rooms;
pub mod users;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::api::error::ApiError;
use crate::auth::api_keys::ApiKeys;
use crate::ops::metrics::Rejection;
use crate::state::AppState;

/// Checks the request's `Authorization: Bearer <key>`; returns which key.
pub fn require_api_key(keys: &ApiKeys, headers: &HeaderMap) -> Result<usize, ApiError> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    match keys.find(presented) {
        Some(key) if !presented.is_empty() => Ok(key),
        _ => Err(ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "a valid API key is required")),
    }
}

/// Checks the API key of a call other than a publish and takes it from
/// that key's `HERALD_API_RATE`; returns which key.
pub async fn authorize(state: &AppState, headers: &HeaderMap) -> Result<usize, ApiError> {
    let key = require_api_key(&state.api_keys, headers)?;
    if let Err(wait) = state.api_rate.take(key).await {
        state.metrics.rejected(Rejection::ApiRate);
        return Err(ApiError::rate_limited("API calls", wait));
    }
    Ok(key)
}

/// `GET /api/presence/{room}`.
pub async fn presence(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::extract::Path(room): axum::extract::Path<String>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers).await?;
    let room = rooms::room_of(&room)?;
    let roster = state.presence.roster(&room).await.map_err(|err| {
        tracing::warn!(%err, %room, "presence roster unavailable");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "presence_unavailable", "presence is unavailable, retry")
    })?;
    Ok(axum::Json(roster).into_response())
}
