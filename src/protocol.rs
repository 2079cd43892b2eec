//! Socket.IO events and their payloads.
//!
//! Every event a client emits takes one JSON object and, when the client asks
//! for an acknowledgement, is answered with a [`Reply`]: `{"ok": …}` on
//! success or `{"error": {"code": …, "reason": …}}` on failure.
//! `docs/PROTOCOL.md` is the prose version of this file.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{MapAccess, Visitor, value::MapAccessDeserializer};
use serde::{Deserialize, Deserializer, Serialize};

use crate::message::{
    ClientMsgId, DisplayName, MessageBody, MessageError, NewMessage, SYSTEM_CLIENT_ID_PREFIX, Seq, StoredMessage,
};
use crate::notification::Notification;
use crate::room::{RoomName, RoomNameError};

/// Client → server: start receiving a room's messages. Payload [`JoinRequest`],
/// ack `Reply<Joined>`.
pub const EV_JOIN: &str = "join";
/// Client → server: stop receiving a room's messages. Payload [`LeaveRequest`],
/// ack `Reply<()>`.
pub const EV_LEAVE: &str = "leave";
/// Client → server: store and broadcast a message. Payload [`SendRequest`],
/// ack `Reply<StoredMessage>`.
pub const EV_SEND: &str = "send";
/// Server → client: a message stored in a room the socket joined. Payload
/// [`StoredMessage`].
pub const EV_MESSAGE: &str = "message";

/// Client → server: receive the notifications missed since the given
/// sequences. Payload [`SyncRequest`], ack `Reply<Synced>`.
pub const EV_SYNC: &str = "sync";
/// Client → server: mark inbox notifications read. Payload
/// [`MarkReadRequest`], ack `Reply<ReadUpdate>`.
pub const EV_MARK_READ: &str = "mark_read";
/// Server → client: the user's inbox read state changed (on any of their
/// connections). Payload [`ReadUpdate`].
pub const EV_READ: &str = "notifications_read";

/// Server → client: who is in a room the socket joined, sent whenever it
/// changes. Payload [`PresenceSnapshot`].
pub const EV_PRESENCE: &str = "presence";

/// Server → client: a message of a room the socket joined was removed
/// (through the API): take it off the screen. Payload [`MessageRemoved`].
pub const EV_MESSAGE_REMOVED: &str = "message_removed";

/// The payload of [`EV_MESSAGE_REMOVED`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRemoved {
    pub room: String,
    pub seq: Seq,
}

/// Server → client: the socket is no longer in a room it joined (the room
/// became private, or the user was taken off its list). Payload
/// [`Removed`]; nothing more of the room reaches the socket.
pub const EV_REMOVED: &str = "removed";

/// The payload of [`EV_REMOVED`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removed {
    pub room: String,
    /// `forbidden` or `access_unavailable`, as a `join` would answer.
    pub code: String,
    pub reason: String,
}

/// Server → client: the server is about to close this connection, and why.
pub const EV_CLOSING: &str = "closing";

/// Text someone else gave (a backend's reason) made fit to pass on to
/// clients: control characters out, at most `max` characters; `None` when
/// nothing but blanks is left.
pub fn plain_text(raw: &str, max: usize) -> Option<String> {
    let text: String = raw.chars().filter(|c| !c.is_control()).take(max).collect();
    (!text.trim().is_empty()).then_some(text)
}

/// The payload of [`EV_CLOSING`]. Every reason the server closes a
/// connection for is made here, one constructor each.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Closing {
    /// A stable code: `shutting_down`, `slow_consumer`, `token_expired` or
    /// `disconnected` (see the constructors).
    pub reason: String,
    /// For people.
    pub detail: String,
}

impl Closing {
    /// The reason of [`Closing::disconnected`]: a client should not
    /// reconnect on its own.
    pub const DISCONNECTED: &str = "disconnected";
    /// The longest `detail` a backend may give [`Closing::disconnected`].
    pub const DETAIL_MAX_CHARS: usize = 200;

    fn new(reason: &str, detail: &str) -> Self {
        Self { reason: reason.to_owned(), detail: detail.to_owned() }
    }

    /// The backend disconnected this user (`POST /api/users/{user}/disconnect`),
    /// for `detail`: do not reconnect until the user acts.
    pub fn disconnected(detail: &str) -> Self {
        let detail =
            plain_text(detail, Self::DETAIL_MAX_CHARS).unwrap_or_else(|| "disconnected by the server".to_owned());
        Self { reason: Self::DISCONNECTED.to_owned(), detail }
    }

    /// The server is stopping or restarting; reconnect.
    pub fn shutting_down() -> Self {
        Self::new("shutting_down", "Herald is restarting; reconnect in a moment")
    }

    /// This connection did not read what it was sent fast enough; reconnect
    /// to catch up.
    pub fn slow_consumer() -> Self {
        Self::new("slow_consumer", "this connection fell too far behind what it was sent; reconnect to catch up")
    }

    /// The token the connection was opened with has expired; reconnect with
    /// a new one.
    pub fn token_expired() -> Self {
        Self::new("token_expired", "the token this connection was opened with has expired; reconnect with a new one")
    }
}
/// The most users a presence snapshot names; the rest are counted.
pub const PRESENCE_NAMES_MAX: usize = 100;

/// The most messages a join returns to catch a client up; a client further
/// behind gets the newest ones and `truncated: true`.
pub const CATCH_UP_MAX: u64 = 500;
/// The most rooms one socket may be in at once.
pub const ROOMS_PER_SOCKET_MAX: usize = 16;
/// The most requests (events with an ack) of one connection that may wait
/// for their answer at once; one more is answered `rate_limited` at once.
pub const REQUESTS_IN_FLIGHT_MAX: usize = 8;

/// Payload of [`EV_JOIN`]. Fields are raw strings so that a bad value gets a
/// precise error code instead of a generic parse failure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoinRequest {
    pub room: String,
    /// The last sequence number the client has; it receives every message
    /// after it (at most [`CATCH_UP_MAX`], the newest). `0` (or absent)
    /// means it has nothing.
    #[serde(default)]
    pub since: u64,
}

/// Payload of [`EV_LEAVE`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaveRequest {
    pub room: String,
}

/// Acknowledgement of a successful join.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Joined {
    pub room: RoomName,
    /// The room's newest sequence number when the join was served.
    pub head: Seq,
    /// Messages after `since`, oldest first.
    pub messages: Vec<StoredMessage>,
    /// True when more than [`CATCH_UP_MAX`] messages were missed and only the
    /// newest were sent.
    pub truncated: bool,
}

/// Payload of [`EV_SEND`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendRequest {
    pub room: String,
    /// A client-generated id; sending the same id again returns the stored
    /// message instead of storing a second copy.
    pub client_id: String,
    pub name: String,
    pub body: String,
    /// Set when resending a message whose ack never arrived.
    #[serde(default)]
    pub retry: bool,
}

impl SendRequest {
    /// Checks every field, reporting the first that breaks its rule. Client
    /// ids the server reserves for itself ([`ClientMsgId::is_reserved`]) are
    /// refused as `bad_client_id`.
    pub fn validate(&self) -> Result<NewMessage, ErrorReply> {
        let room = RoomName::parse(&self.room)?;
        let client_id = ClientMsgId::parse(&self.client_id)?;
        if client_id.is_reserved() {
            return Err(ErrorReply::new(
                MessageError::BadClientId.code(),
                format!("client message ids starting with {SYSTEM_CLIENT_ID_PREFIX:?} are reserved for the server"),
            ));
        }
        Ok(NewMessage {
            room,
            client_id,
            name: DisplayName::parse(&self.name)?,
            body: MessageBody::parse(&self.body)?,
            system: false,
            user: None,
        })
    }
}

/// Payload of [`EV_SYNC`]: the newest sequence the client has of each
/// notification stream (0 or absent: none).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SyncRequest {
    #[serde(default)]
    pub inbox: u64,
    #[serde(default)]
    pub broadcast: u64,
}

/// Acknowledgement of a sync: what followed the given sequences, oldest
/// first (at most [`CATCH_UP_MAX`] of each, the newest).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Synced {
    /// The user's inbox (always empty for anonymous clients).
    pub inbox: Vec<Notification>,
    pub broadcast: Vec<Notification>,
    /// Unread notifications in the user's inbox.
    pub unread: u64,
}

/// The most sequence numbers one `mark_read` may list.
pub const MARK_READ_MAX: usize = 500;

/// Payload of [`EV_MARK_READ`]: the inbox sequence numbers to mark (at most
/// [`MARK_READ_MAX`]), or `all`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MarkReadRequest {
    #[serde(default)]
    pub seqs: Vec<u64>,
    #[serde(default)]
    pub all: bool,
}

/// What changed in a user's inbox read state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReadUpdate {
    /// The sequence numbers marked read (empty when `all`).
    pub seqs: Vec<u64>,
    pub all: bool,
    /// Unread notifications left.
    pub unread: u64,
}

/// Who is in a room: signed-in users by the name their token gives (each
/// once, however many connections they have) and a count of anonymous
/// connections. It never carries user ids (which may be e-mail addresses):
/// everyone in a room gets it, anonymous visitors included. Backends get the
/// ids from `GET /api/presence/{room}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceSnapshot {
    pub room: String,
    /// Signed-in users whose token names them, at most
    /// [`PRESENCE_NAMES_MAX`], ordered by name.
    pub users: Vec<PresentUser>,
    /// All signed-in users present, named or not.
    pub user_count: u64,
    pub anonymous: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresentUser {
    pub name: String,
}

/// An acknowledgement: the result of a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply<T> {
    Ok(T),
    Error(ErrorReply),
}

impl<T> From<Result<T, ErrorReply>> for Reply<T> {
    fn from(result: Result<T, ErrorReply>) -> Self {
        match result {
            Ok(value) => Reply::Ok(value),
            Err(error) => Reply::Error(error),
        }
    }
}

/// Why a request failed: a stable `code` for programs and a `reason` for
/// people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    pub code: String,
    pub reason: String,
    /// With `rate_limited`: how long to wait before trying again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl ErrorReply {
    pub fn new(code: &str, reason: impl Into<String>) -> Self {
        Self { code: code.to_owned(), reason: reason.into(), retry_after_ms: None }
    }

    /// Over a rate limit: try again after `retry_after_ms`.
    pub fn rate_limited(what: &str, retry_after_ms: u64) -> Self {
        Self {
            code: "rate_limited".to_owned(),
            reason: format!("too many {what}; try again in {retry_after_ms} ms"),
            retry_after_ms: Some(retry_after_ms),
        }
    }

    /// The server is shutting down; send again once reconnected (with the
    /// same client id, this is safe).
    pub fn shutting_down() -> Self {
        Self::new("shutting_down", "the server is restarting; send again once reconnected")
    }

    /// The payload was not the JSON object the event takes.
    pub fn malformed(detail: impl std::fmt::Display) -> Self {
        Self::new("malformed", format!("malformed payload: {detail}"))
    }

    /// The server could not do it now (storage unavailable); retrying later
    /// with the same client id is safe.
    /// A private room the client may not enter; the reason says why (not
    /// signed in, not granted, refused by the backend).
    pub fn forbidden(reason: impl Into<String>) -> Self {
        Self::new("forbidden", reason)
    }

    /// The backend that decides who enters a private room did not answer.
    pub fn access_unavailable() -> Self {
        Self::new("access_unavailable", "the room's access check did not answer; try again")
    }

    pub fn unavailable() -> Self {
        Self::new("unavailable", "the server could not store the message; try again")
    }
}

impl From<RoomNameError> for ErrorReply {
    fn from(err: RoomNameError) -> Self {
        Self::new("invalid_room", err.to_string())
    }
}

impl From<MessageError> for ErrorReply {
    fn from(err: MessageError) -> Self {
        Self::new(err.code(), err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_tagged_objects() {
        let ok: Reply<u8> = Reply::Ok(1);
        assert_eq!(serde_json::to_string(&ok).unwrap(), r#"{"ok":1}"#);
        let err: Reply<u8> = Reply::Error(ErrorReply::new("body_empty", "message is empty"));
        assert_eq!(
            serde_json::to_string(&err).unwrap(),
            r#"{"error":{"code":"body_empty","reason":"message is empty"}}"#
        );
    }

    #[test]
    fn send_requests_are_validated_field_by_field() {
        let mut req = SendRequest {
            room: "lobby".into(),
            client_id: "abcdefgh".into(),
            name: "Ada".into(),
            body: "hi".into(),
            retry: false,
        };
        assert_eq!(req.validate().unwrap().body.as_str(), "hi");
        req.body = " ".into();
        assert_eq!(req.validate().unwrap_err().code, "body_empty");
        req.body = "hi".into();
        req.client_id = "api-idem-order-43".into();
        assert_eq!(req.validate().unwrap_err().code, "bad_client_id", "the server's own ids are reserved");
        req.room = "No Such".into();
        assert_eq!(req.validate().unwrap_err().code, "invalid_room");
    }

    #[test]
    fn join_since_defaults_to_zero() {
        let req: JoinRequest = serde_json::from_str(r#"{"room":"lobby"}"#).unwrap();
        assert_eq!(req.since, 0);
    }
}

/// An event payload, which is one JSON object. serde's derived structs also
/// take an array of their fields in order (`["lobby", 3]` for a join); this
/// refuses that, so the wire format stays the one PROTOCOL.md documents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectOnly<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectOnly<T> {
            type Value = T;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }

        deserializer.deserialize_map(ObjectOnly(PhantomData)).map(Object)
    }
}

#[cfg(test)]
mod object_tests {
    use super::*;

    #[test]
    fn payloads_are_objects_only() {
        let join: Object<JoinRequest> = serde_json::from_str(r#"{"room": "lobby", "since": 3}"#).unwrap();
        assert_eq!(join.0.room, "lobby");
        let array = serde_json::from_str::<Object<JoinRequest>>(r#"["lobby", 3]"#).unwrap_err();
        assert!(array.to_string().contains("expected a JSON object"), "{array}");
        assert!(serde_json::from_str::<JoinRequest>(r#"["lobby", 3]"#).is_ok(), "what the wrapper is for");
        assert!(serde_json::from_str::<Object<JoinRequest>>(r#""lobby""#).is_err());
        assert!(serde_json::from_str::<Object<JoinRequest>>("null").is_err());
    }
}
