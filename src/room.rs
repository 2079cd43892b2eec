//! Room names.

use serde::Serialize;

/// The room `GET /` shows.
pub const DEFAULT_ROOM: &str = "lobby";

/// The longest room name, in characters.
pub const ROOM_NAME_MAX: usize = 64;

/// A validated room name: 1 to 64 characters of `[a-z0-9_-]`.
///
/// The rule keeps names safe in URLs, Socket.IO room keys and MongoDB
/// documents without any escaping, and makes `Lobby` and `lobby` impossible
/// to confuse.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct RoomName(String);

/// Why a string is not a room name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoomNameError {
    #[error("room name is empty")]
    Empty,
    #[error("room name is longer than {ROOM_NAME_MAX} characters")]
    TooLong,
    #[error("room name may only use a-z, 0-9, '_' and '-'")]
    BadCharacter,
}

impl RoomName {
    /// Parses a room name, rejecting anything outside the rule.
    pub fn parse(raw: &str) -> Result<Self, RoomNameError> {
        if raw.is_empty() {
            return Err(RoomNameError::Empty);
        }
        if raw.len() > ROOM_NAME_MAX {
            return Err(RoomNameError::TooLong);
        }
        let allowed = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-';
        if !raw.bytes().all(allowed) {
            return Err(RoomNameError::BadCharacter);
        }
        Ok(Self(raw.to_owned()))
    }

    /// The default room, `lobby`.
    pub fn lobby() -> Self {
        Self(DEFAULT_ROOM.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path of this room's page: `/` for the lobby, `/r/{room}` otherwise.
    pub fn page_path(&self) -> String {
        if self.0 == DEFAULT_ROOM { "/".to_owned() } else { format!("/r/{}", self.0) }
    }
}

validated_deserialize!(RoomName);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_names_inside_the_rule() {
        for ok in ["lobby", "a", "team-42", "x_y", &"a".repeat(64)] {
            assert_eq!(RoomName::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn rejects_names_outside_the_rule() {
        assert_eq!(RoomName::parse(""), Err(RoomNameError::Empty));
        assert_eq!(RoomName::parse(&"a".repeat(65)), Err(RoomNameError::TooLong));
        for bad in ["Lobby", "a b", "a/b", "é", "../x", "a.b", "<script>"] {
            assert_eq!(RoomName::parse(bad), Err(RoomNameError::BadCharacter), "{bad}");
        }
    }

    #[test]
    fn lobby_lives_at_the_root() {
        assert_eq!(RoomName::lobby().page_path(), "/");
        assert_eq!(RoomName::parse("dev").unwrap().page_path(), "/r/dev");
    }

    #[test]
    fn deserializing_validates() {
        assert!(serde_json::from_str::<RoomName>("\"ok\"").is_ok());
        assert!(serde_json::from_str::<RoomName>("\"NO\"").is_err());
    }
}
