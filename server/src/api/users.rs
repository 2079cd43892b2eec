//! `POST /api/users/{user}/disconnect`: closes a user's connections on
//! every node, with a reason their clients see.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use herald::UserId;
use herald::protocol::Closing;
use serde::Deserialize;
use serde_json::json;

use crate::api::authorize;
use crate::api::error::ApiError;
use crate::engine::Channel;
use crate::state::AppState;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DisconnectRequest {
    #[serde(default)]
    reason: Option<String>,
}

/// `POST /api/users/{user}/disconnect` with an optional
/// `{"reason": "…"}` (at most 200 characters): every connection of the user
/// is told `closing` (reason `disconnected`, the detail the reason given)
/// and closed. Answers how many connections the user had (cluster-wide,
/// approximate like a publish's `online`).
pub async fn disconnect(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(user): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    authorize(&state, &headers).await?;
    let user =
        UserId::parse(&user).map_err(|err| ApiError::new(StatusCode::NOT_FOUND, "invalid_user", err.to_string()))?;
    let request: DisconnectRequest = if body.iter().all(u8::is_ascii_whitespace) {
        DisconnectRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|err| {
            ApiError::new(StatusCode::BAD_REQUEST, "malformed", format!("expected {{\"reason\": \"…\"}}: {err}"))
        })?
    };
    let reason = request.reason.unwrap_or_default();
    if reason.chars().count() > Closing::DETAIL_MAX_CHARS {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_reason",
            format!("a reason is at most {} characters", Closing::DETAIL_MAX_CHARS),
        ));
    }
    let connections = state.engine.online_everywhere(&Channel::User(user.clone())).await;
    state.engine.disconnect(&user, Closing::disconnected(&reason)).await;
    tracing::info!(connections, "disconnected a user through the API");
    Ok(axum::Json(json!({ "user": user, "connections": connections })).into_response())
}
