//! What a publish asks for, checked at the boundary: the JSON or classic
//! form body (`PublishJson`, `PublishForm`), exactly one target and one
//! payload of bounded size, and the optional `Idempotency-Key` header.

use axum::http::{HeaderMap, StatusCode};
use herald::notification::EventName;
use herald::{RoomName, UserId};
use serde::Deserialize;
use serde_json::Value;

use crate::api::error::ApiError;

/// The most users one publish may address.
pub const USERS_MAX: usize = 1000;

/// The JSON body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PublishJson {
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
pub(super) struct PublishForm {
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
pub(super) enum Target {
    Everyone,
    Users { users: Vec<UserId>, single: bool },
    Room(RoomName),
}

#[derive(Debug)]
pub(super) struct Publish {
    pub(super) target: Target,
    pub(super) event: EventName,
    pub(super) data: Value,
    /// From the `Idempotency-Key` header, scoped to the API key
    /// (`<scope>.<key>`, see [`ApiKeys::scope`](crate::auth::api_keys::ApiKeys::scope)): a retry with the same key
    /// is stored once.
    pub(super) idempotency_key: Option<String>,
}

/// The longest `Idempotency-Key`: it becomes part of a room message's
/// client id (`api-idem-<key>`, at most 64 characters).
const IDEMPOTENCY_KEY_MAX: usize = 55;

/// Reads the optional `Idempotency-Key` header: 1–55 characters of
/// `A-Z a-z 0-9 _ -`.
pub(super) fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
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
    pub(super) fn validate(self, data_max: usize) -> Result<Publish, ApiError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn json_request(value: Value) -> Result<Publish, ApiError> {
        serde_json::from_value::<PublishJson>(value).unwrap().validate(DATA_MAX)
    }

    const DATA_MAX: usize = 16 * 1024;

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
