//! Notifications: what a backend publishes to users through Herald.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::message::Seq;

/// The longest event name.
pub const EVENT_MAX: usize = 64;
/// Server → client: a [`Notification`] (Socket.IO event name).
pub const EV_NOTIFICATION: &str = "notification";

/// The event name of a publish that names none.
pub const DEFAULT_EVENT: &str = "notification";

/// Which sequence a notification belongs to: a user's own inbox or the
/// stream every client receives. Each has its own sequence numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    Inbox,
    Broadcast,
}

/// A stored notification as clients receive it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Unique across Herald: `inbox:<user>:<seq>` or `broadcast:<seq>`.
    pub id: String,
    pub stream: Stream,
    pub seq: Seq,
    pub event: EventName,
    /// The publisher's payload: any JSON (a `message` publish is a string).
    pub data: Value,
    /// When Herald stored it, milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// Whether the user marked it read (always false for broadcasts).
    pub read: bool,
}

/// A publish's event name: 1 to 64 characters of `[A-Za-z0-9_.:-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct EventName(String);

/// Why a string is not an event name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event name must be 1-{EVENT_MAX} characters of A-Z, a-z, 0-9, '_', '.', ':' or '-'")]
pub struct EventNameError;

impl EventName {
    pub fn parse(raw: &str) -> Result<Self, EventNameError> {
        let ok = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-');
        if (1..=EVENT_MAX).contains(&raw.len()) && raw.bytes().all(ok) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(EventNameError)
        }
    }

    pub fn default_event() -> Self {
        Self(DEFAULT_EVENT.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

validated_deserialize!(EventName);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names() {
        assert!(EventName::parse("order.shipped").is_ok());
        assert!(EventName::parse("a:b-c_d").is_ok());
        for bad in ["", "has space", "<x>", &"e".repeat(65)] {
            assert_eq!(EventName::parse(bad), Err(EventNameError), "{bad}");
        }
    }

    #[test]
    fn notifications_serialize_with_snake_case_streams() {
        let n = Notification {
            id: "inbox:63:1".into(),
            stream: Stream::Inbox,
            seq: Seq(1),
            event: EventName::default_event(),
            data: Value::String("hi".into()),
            at_ms: 0,
            read: false,
        };
        let json = serde_json::to_value(&n).unwrap();
        assert_eq!(json["stream"], "inbox");
        assert_eq!(json["event"], "notification");
        assert_eq!(serde_json::from_value::<Notification>(json).unwrap(), n);
    }
}
