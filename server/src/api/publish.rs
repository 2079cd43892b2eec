//! `POST /api/publish`: a backend pushes a message to everyone, to users, or
//! to a room.
//!
//! Authenticated by an API key (`Authorization: Bearer <key>`). Every
//! publish is stored before it is delivered, so a client that is offline
//! gets it when it next syncs. `docs/PROTOCOL.md` documents the API.

use axum::body::{Body, to_bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use herald::message::SYSTEM_CLIENT_ID_PREFIX;
use herald::{ClientMsgId, DisplayName, MessageBody, NewMessage, UserId};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::api::error::ApiError;
use crate::api::request::{Publish, PublishForm, PublishJson, Target, idempotency_key};
use crate::api::require_api_key;
use crate::chat::PostError;
use crate::engine::Channel;
use crate::ids::random_hex;
use crate::ops::metrics::{PublishOutcome, Rejection};
use crate::state::AppState;

/// The client id of a room publish made with (scoped) idempotency key
/// `scoped`: a digest, since the key can be longer than a client id may be,
/// behind the prefix clients may not use.
fn room_publish_client_id(scoped: &str) -> ClientMsgId {
    let digest = Sha256::digest(scoped.as_bytes());
    ClientMsgId::parse(&format!("{SYSTEM_CLIENT_ID_PREFIX}idem-{}", hex::encode(&digest[..20]))).expect("a valid id")
}

/// One stored delivery of a `users` publish.
#[derive(Debug, Serialize)]
struct Delivery {
    user: UserId,
    id: String,
    seq: u64,
    online: usize,
}

/// `POST /api/publish`.
pub async fn publish(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    let result = publish_checked(&state, &headers, body).await;
    state.metrics.publish(result.as_ref().map_or_else(ApiError::outcome, |_| PublishOutcome::Ok));
    result
}

async fn publish_checked(state: &AppState, headers: &HeaderMap, body: Body) -> Result<Response, ApiError> {
    let key = require_api_key(&state.api_keys, headers)?;
    if let Err(wait) = state.publish_rate.take(key).await {
        state.metrics.rejected(Rejection::PublishRate);
        return Err(ApiError::rate_limited("publish requests", wait));
    }
    let Some(_work) = state.drain.start() else {
        let mut err = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", "the server is restarting");
        err.error.retry_after_ms = Some(1000);
        return Err(err);
    };
    let body_max = state.http_limits.body_max;
    let bytes = to_bytes(body, body_max).await.map_err(|_| {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", format!("body is larger than {body_max} bytes"))
    })?;
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    // The media type exactly (parameters such as charset aside): a prefix
    // match would take `application/jsonx` for JSON.
    let media_type = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let request: PublishJson = if media_type == "application/json" {
        serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "malformed", format!("malformed JSON: {e}")))?
    } else if media_type == "application/x-www-form-urlencoded" {
        serde_urlencoded::from_bytes::<PublishForm>(&bytes)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "malformed", format!("malformed form: {e}")))?
            .into()
    } else {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send application/json or application/x-www-form-urlencoded",
        ));
    };
    let mut publish = request.validate(state.http_limits.publish_data_max)?;
    publish.idempotency_key = idempotency_key(headers)?.map(|idem| format!("{}.{idem}", state.api_keys.scope(key)));
    let response = deliver(state, publish).await?;
    Ok(axum::Json(response).into_response())
}

fn unavailable(err: impl std::fmt::Display) -> ApiError {
    tracing::warn!(%err, "publish: storing failed");
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "storage is unavailable; nothing was delivered")
}

/// Stores, then delivers, and reports where it went.
async fn deliver(state: &AppState, publish: Publish) -> Result<Value, ApiError> {
    let idem = publish.idempotency_key.as_deref();
    match publish.target {
        Target::Everyone => {
            let (stored, online) = state
                .notifier
                .notify(&Channel::Everyone, &publish.event, &publish.data, idem)
                .await
                .map_err(unavailable)?;
            Ok(json!({"id": stored.id, "seq": stored.seq, "online": online}))
        }
        Target::Room(room) => {
            let text = match &publish.data {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            let body = MessageBody::parse(&text).map_err(|e| ApiError::invalid(format!("room message: {e}")))?;
            let message = NewMessage {
                room: room.clone(),
                client_id: match idem {
                    Some(scoped) => room_publish_client_id(scoped),
                    None => ClientMsgId::parse(&format!("{SYSTEM_CLIENT_ID_PREFIX}{}", random_hex::<12>()))
                        .expect("a valid id"),
                },
                name: DisplayName::parse("Herald").expect("a valid name"),
                body,
                system: true,
                user: None,
            };
            let stored = state.chat.post(&message, idem.is_some()).await.map_err(|err| match err {
                PostError::Invalid(reply) => ApiError::invalid(format!("room message: {}", reply.reason)),
                PostError::Store(err) => unavailable(err),
            })?;
            let online = state.engine.online_everywhere(&Channel::Room(room)).await;
            // A room message's id: its channel's name and its number.
            let id = format!("{}:{}", Channel::Room(stored.room.clone()), stored.seq);
            Ok(json!({"id": id, "seq": stored.seq, "online": online}))
        }
        Target::Users { users, single: true } => {
            let channel = Channel::User(users[0].clone());
            let (stored, online) =
                state.notifier.notify(&channel, &publish.event, &publish.data, idem).await.map_err(unavailable)?;
            Ok(json!({"id": stored.id, "seq": stored.seq, "online": online}))
        }
        Target::Users { users, single: false } => {
            let stored =
                state.notifier.notify_users(&users, &publish.event, &publish.data, idem).await.map_err(unavailable)?;
            let deliveries: Vec<Delivery> = users
                .into_iter()
                .zip(stored)
                .map(|(user, (stored, online))| Delivery { user, id: stored.id, seq: stored.seq.get(), online })
                .collect();
            let online = deliveries.iter().map(|d| d.online).sum::<usize>();
            Ok(
                json!({"id": format!("batch:{}", random_hex::<8>()), "seq": null, "online": online, "deliveries": deliveries}),
            )
        }
    }
}
