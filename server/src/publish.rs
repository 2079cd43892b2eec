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
use futures::{StreamExt, TryStreamExt};
use herald::message::SYSTEM_CLIENT_ID_PREFIX;
use herald::notification::EventName;
use herald::protocol::ErrorReply;
use herald::{ClientMsgId, DisplayName, MessageBody, NewMessage, RoomName, UserId};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use crate::chat::PostError;
use crate::config::Secret;
use crate::engine::Channel;
use crate::limits::{retry_after_ms, retry_after_secs};
use crate::metrics::PublishOutcome;
use crate::state::AppState;
use crate::visitor::random_hex;

/// The most users one publish may address.
pub const USERS_MAX: usize = 1000;
/// How many users of a `users` publish are stored and delivered at once.
const FAN_OUT_CONCURRENCY: usize = 16;

/// The configured API keys, kept as digests so that comparing a presented
/// key takes the same time whatever its length or content.
#[derive(Clone, Default)]
pub struct ApiKeys(Vec<[u8; 32]>);

impl ApiKeys {
    pub fn new(keys: &[Secret]) -> Self {
        Self(keys.iter().map(|k| Sha256::digest(k.expose().as_bytes()).into()).collect())
    }

    /// Which of the keys `presented` is; compares with every key, in
    /// constant time.
    pub fn find(&self, presented: &str) -> Option<usize> {
        let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        // 1-based position of the match, 0 for none, chosen without branching.
        let mut position = 0u32;
        for (i, key) in self.0.iter().enumerate() {
            let candidate = u32::try_from(i + 1).unwrap_or(u32::MAX);
            position = u32::conditional_select(&position, &candidate, key.ct_eq(&presented));
        }
        (position as usize).checked_sub(1)
    }

    /// A short name for key `index` that says nothing about the key: it
    /// scopes idempotency keys, so that two backends with keys of their own
    /// that happen to use the same idempotency key (database ids, say) never
    /// suppress each other's publishes.
    pub fn scope(&self, index: usize) -> String {
        let mut hasher = Sha256::new();
        hasher.update(b"herald-idempotency-scope\0");
        hasher.update(self.0[index]);
        hex::encode(&hasher.finalize()[..6])
    }

    pub fn accepts(&self, presented: &str) -> bool {
        self.find(presented).is_some()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// An API error: a status and a JSON `{"error": {"code", "reason"}}` body.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    error: ErrorReply,
}

impl ApiError {
    fn new(status: StatusCode, code: &str, reason: impl Into<String>) -> Self {
        Self { status, error: ErrorReply::new(code, reason) }
    }

    fn rate_limited(wait: std::time::Duration) -> Self {
        Self {
            status: StatusCode::TOO_MANY_REQUESTS,
            error: ErrorReply::rate_limited("publish requests", retry_after_ms(wait)),
        }
    }

    fn outcome(&self) -> PublishOutcome {
        match self.status {
            StatusCode::UNAUTHORIZED => PublishOutcome::Unauthorized,
            StatusCode::TOO_MANY_REQUESTS => PublishOutcome::RateLimited,
            StatusCode::SERVICE_UNAVAILABLE => PublishOutcome::Unavailable,
            _ => PublishOutcome::Invalid,
        }
    }

    fn invalid(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_target", reason)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(json!({ "error": self.error }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        if let Some(ms) = self.error.retry_after_ms {
            let secs = retry_after_secs(std::time::Duration::from_millis(ms));
            response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        }
        response
    }
}

/// The JSON body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishJson {
    broadcast: Option<bool>,
    user: Option<String>,
    users: Option<Vec<String>>,
    room: Option<String>,
    data: Option<Value>,
    message: Option<String>,
    event: Option<String>,
}

/// The classic form body: `message=…` broadcasts, `id=…` addresses a user.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishForm {
    message: Option<String>,
    id: Option<String>,
    room: Option<String>,
    event: Option<String>,
}

impl From<PublishForm> for PublishJson {
    fn from(form: PublishForm) -> Self {
        let broadcast = (form.id.is_none() && form.room.is_none()).then_some(true);
        Self { broadcast, user: form.id, room: form.room, message: form.message, event: form.event, ..Self::default() }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Target {
    Everyone,
    Users { users: Vec<UserId>, single: bool },
    Room(RoomName),
}

#[derive(Debug)]
struct Publish {
    target: Target,
    event: EventName,
    data: Value,
    /// From the `Idempotency-Key` header, scoped to the API key
    /// (`<scope>.<key>`, see [`ApiKeys::scope`]): a retry with the same key
    /// is stored once.
    idempotency_key: Option<String>,
}

/// The client id of a room publish made with (scoped) idempotency key
/// `scoped`: a digest, since the key can be longer than a client id may be,
/// behind the prefix clients may not use.
fn room_publish_client_id(scoped: &str) -> ClientMsgId {
    let digest = Sha256::digest(scoped.as_bytes());
    ClientMsgId::parse(&format!("{SYSTEM_CLIENT_ID_PREFIX}idem-{}", hex::encode(&digest[..20]))).expect("a valid id")
}

/// The longest `Idempotency-Key`: it becomes part of a room message's
/// client id (`api-idem-<key>`, at most 64 characters).
const IDEMPOTENCY_KEY_MAX: usize = 55;

/// Reads the optional `Idempotency-Key` header: 1–55 characters of
/// `A-Z a-z 0-9 _ -`.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else { return Ok(None) };
    let key = value.to_str().unwrap_or_default();
    let valid = (1..=IDEMPOTENCY_KEY_MAX).contains(&key.len())
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !valid {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_idempotency_key",
            format!("Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_MAX} characters of A-Z, a-z, 0-9, '_' or '-'"),
        ));
    }
    Ok(Some(key.to_owned()))
}

impl PublishJson {
    /// Checks the request: exactly one target, exactly one payload.
    fn validate(self, data_max: usize) -> Result<Publish, ApiError> {
        let targets = [self.broadcast.is_some(), self.user.is_some(), self.users.is_some(), self.room.is_some()];
        if targets.iter().filter(|t| **t).count() != 1 {
            return Err(ApiError::invalid("name exactly one target: broadcast, user, users or room"));
        }
        let target = if let Some(broadcast) = self.broadcast {
            if !broadcast {
                return Err(ApiError::invalid("broadcast must be true"));
            }
            Target::Everyone
        } else if let Some(user) = self.user {
            Target::Users { users: vec![parse_user(&user)?], single: true }
        } else if let Some(users) = self.users {
            if users.is_empty() || users.len() > USERS_MAX {
                return Err(ApiError::invalid(format!("users must list 1 to {USERS_MAX} user ids")));
            }
            let mut users = users.iter().map(|u| parse_user(u)).collect::<Result<Vec<_>, _>>()?;
            users.sort();
            users.dedup();
            Target::Users { users, single: false }
        } else {
            let room = self.room.unwrap_or_default();
            Target::Room(RoomName::parse(&room).map_err(|e| ApiError::invalid(e.to_string()))?)
        };
        let data = match (self.data, self.message) {
            (Some(data), None) => data,
            (None, Some(message)) if message.trim().is_empty() => {
                return Err(ApiError::new(StatusCode::BAD_REQUEST, "invalid_payload", "message is empty"));
            }
            (None, Some(message)) => Value::String(message),
            _ => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_payload",
                    "give exactly one of data (any JSON) or message (text)",
                ));
            }
        };
        if data.to_string().len() > data_max {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("data is larger than {data_max} bytes"),
            ));
        }
        let event = match self.event {
            Some(event) => EventName::parse(&event)
                .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_event", e.to_string()))?,
            None => EventName::default_event(),
        };
        Ok(Publish { target, event, data, idempotency_key: None })
    }
}

fn parse_user(raw: &str) -> Result<UserId, ApiError> {
    UserId::parse(raw).map_err(|e| ApiError::invalid(e.to_string()))
}

/// One stored delivery of a `users` publish.
#[derive(Debug, Serialize)]
struct Delivery {
    user: UserId,
    id: String,
    seq: u64,
    online: usize,
}

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

/// `GET /api/presence/{room}`.
pub async fn presence(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::extract::Path(room): axum::extract::Path<String>,
) -> Result<Response, ApiError> {
    require_api_key(&state.api_keys, &headers)?;
    let room =
        RoomName::parse(&room).map_err(|e| ApiError::new(StatusCode::NOT_FOUND, "invalid_room", e.to_string()))?;
    Ok(axum::Json(state.presence.roster(&room)).into_response())
}

/// `POST /api/publish`.
pub async fn publish(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    let result = publish_checked(&state, &headers, body).await;
    state.metrics.publish(result.as_ref().map_or_else(ApiError::outcome, |_| PublishOutcome::Ok));
    result
}

async fn publish_checked(state: &AppState, headers: &HeaderMap, body: Body) -> Result<Response, ApiError> {
    let key = require_api_key(&state.api_keys, headers)?;
    if let Err(wait) = state.publish_rate[key].take() {
        state.metrics.rejected(crate::metrics::Rejection::PublishRate);
        return Err(ApiError::rate_limited(wait));
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
            let online = state.engine.online(&Channel::Room(room));
            Ok(json!({"id": format!("room:{}:{}", stored.room, stored.seq), "seq": stored.seq, "online": online}))
        }
        Target::Users { users, single } => {
            let event = &publish.event;
            let data = &publish.data;
            let deliveries: Vec<Delivery> = futures::stream::iter(users)
                .map(|user| async move {
                    let channel = Channel::User(user.clone());
                    let (stored, online) = state.notifier.notify(&channel, event, data, idem).await?;
                    Ok::<_, crate::store::StoreError>(Delivery { user, id: stored.id, seq: stored.seq.get(), online })
                })
                .buffered(FAN_OUT_CONCURRENCY)
                .try_collect()
                .await
                .map_err(unavailable)?;
            let online = deliveries.iter().map(|d| d.online).sum::<usize>();
            if single {
                let only = &deliveries[0];
                Ok(json!({"id": only.id, "seq": only.seq, "online": online}))
            } else {
                Ok(
                    json!({"id": format!("batch:{}", random_hex::<8>()), "seq": null, "online": online, "deliveries": deliveries}),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_request(value: Value) -> Result<Publish, ApiError> {
        serde_json::from_value::<PublishJson>(value).unwrap().validate(DATA_MAX)
    }

    const DATA_MAX: usize = 16 * 1024;

    #[test]
    fn api_keys_match_exactly() {
        let keys = ApiKeys::new(&[Secret::new("key-one-key-one-1"), Secret::new("key-two-key-two-2")]);
        assert!(keys.accepts("key-one-key-one-1"));
        assert!(keys.accepts("key-two-key-two-2"));
        assert!(!keys.accepts("key-one-key-one-"));
        assert!(!keys.accepts(""));
        assert!(!ApiKeys::default().accepts("anything"));
        assert_eq!(keys.find("key-two-key-two-2"), Some(1));
        assert_eq!(keys.find("key-one-key-one-1"), Some(0));
    }

    #[test]
    fn exactly_one_target() {
        assert_eq!(json_request(json!({"broadcast": true, "message": "x"})).unwrap().target, Target::Everyone);
        let two = json_request(json!({"broadcast": true, "user": "63", "message": "x"})).unwrap_err();
        assert_eq!(two.status, StatusCode::UNPROCESSABLE_ENTITY);
        let none = json_request(json!({"message": "x"})).unwrap_err();
        assert_eq!(none.status, StatusCode::UNPROCESSABLE_ENTITY);
        let bad_user = json_request(json!({"user": "a b", "message": "x"})).unwrap_err();
        assert_eq!(bad_user.status, StatusCode::UNPROCESSABLE_ENTITY);
        let bad_room = json_request(json!({"room": "No", "message": "x"})).unwrap_err();
        assert_eq!(bad_room.status, StatusCode::UNPROCESSABLE_ENTITY);
    }

    #[test]
    fn users_are_deduplicated() {
        let publish = json_request(json!({"users": ["64", "63", "64"], "data": {"a": 1}})).unwrap();
        let Target::Users { users, single } = publish.target else { panic!() };
        assert_eq!(users.iter().map(UserId::as_str).collect::<Vec<_>>(), ["63", "64"]);
        assert!(!single);
    }

    #[test]
    fn exactly_one_payload_of_bounded_size() {
        assert_eq!(json_request(json!({"broadcast": true})).unwrap_err().status, StatusCode::BAD_REQUEST);
        let both = json_request(json!({"broadcast": true, "data": 1, "message": "x"})).unwrap_err();
        assert_eq!(both.status, StatusCode::BAD_REQUEST);
        let big = json_request(json!({"broadcast": true, "data": "x".repeat(DATA_MAX)})).unwrap_err();
        assert_eq!(big.status, StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[test]
    fn the_classic_form_broadcasts_or_addresses_a_user() {
        let broadcast: PublishJson = serde_urlencoded::from_str::<PublishForm>("message=Ping").unwrap().into();
        assert_eq!(broadcast.validate(DATA_MAX).unwrap().target, Target::Everyone);
        let user: PublishJson = serde_urlencoded::from_str::<PublishForm>("message=Hello&id=63").unwrap().into();
        let publish = user.validate(DATA_MAX).unwrap();
        assert_eq!(publish.target, Target::Users { users: vec![UserId::parse("63").unwrap()], single: true });
        assert_eq!(publish.data, json!("Hello"));
    }
}
