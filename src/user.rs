//! Users: the identity a customer's backend vouches for with a signed token.

use serde::{Deserialize, Serialize};

use crate::message::DisplayName;
use crate::room::RoomPatterns;

/// The longest user id, in bytes.
pub const USER_ID_MAX: usize = 128;

/// A user id, as the customer's backend names its users: 1 to 128 characters
/// of `[A-Za-z0-9_.:@-]` (enough for numeric ids, UUIDs, e-mail-like and
/// namespaced ids, and still safe in channel keys and URLs).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct UserId(String);

/// Why a string is not a user id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("user id must be 1-{USER_ID_MAX} characters of A-Z, a-z, 0-9, '_', '.', ':', '@' or '-'")]
pub struct UserIdError;

impl UserId {
    pub fn parse(raw: &str) -> Result<Self, UserIdError> {
        let ok = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'@' | b'-');
        if (1..=USER_ID_MAX).contains(&raw.len()) && raw.bytes().all(ok) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(UserIdError)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

validated_deserialize!(UserId);

/// A verified user: who they are and, when the token says, their name and
/// the private rooms it lets them into.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub user: UserId,
    pub name: Option<DisplayName>,
    /// The token's `rooms` claim: private rooms this user may join.
    #[serde(default, skip_serializing_if = "RoomPatterns::is_empty")]
    pub rooms: RoomPatterns,
}

impl Identity {
    /// The name to show for this user: the token's, else the user id.
    pub fn display_name(&self) -> DisplayName {
        self.name
            .clone()
            .unwrap_or_else(|| DisplayName::parse(self.user.as_str()).unwrap_or_else(|_| DisplayName::guest(0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids() {
        for ok in ["63", "alice@example.com", "org:42", "a-b_c.d", &"x".repeat(128)] {
            assert!(UserId::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "a/b", "ü", &"x".repeat(129), "63\n"] {
            assert_eq!(UserId::parse(bad), Err(UserIdError), "{bad:?}");
        }
    }

    #[test]
    fn display_name_falls_back_to_the_id() {
        let user = UserId::parse("63").unwrap();
        let named = Identity {
            user: user.clone(),
            name: Some(DisplayName::parse("Alice").unwrap()),
            rooms: RoomPatterns::default(),
        };
        assert_eq!(named.display_name().as_str(), "Alice");
        assert_eq!(Identity { user, name: None, rooms: RoomPatterns::default() }.display_name().as_str(), "63");
    }
}
