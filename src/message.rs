//! Chat messages: their validated parts, sequence numbers and the stored record.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::room::RoomName;

/// The longest message body, in characters.
pub const BODY_MAX_CHARS: usize = 2000;
/// The longest display name, in characters.
pub const NAME_MAX_CHARS: usize = 32;
/// Client message ids are 8 to 64 characters of `[A-Za-z0-9_-]`.
pub const CLIENT_ID_MIN: usize = 8;
pub const CLIENT_ID_MAX: usize = 64;

/// Why a piece of a message was rejected. The `code` is stable and is what
/// clients match on; the `Display` text is shown to people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("message is empty")]
    BodyEmpty,
    #[error("message is longer than {BODY_MAX_CHARS} characters")]
    BodyTooLong,
    #[error("name is empty")]
    NameEmpty,
    #[error("name is longer than {NAME_MAX_CHARS} characters")]
    NameTooLong,
    #[error("text contains control characters")]
    ControlCharacter,
    #[error("name contains invisible or text-direction characters")]
    InvisibleCharacter,
    #[error("client message id must be {CLIENT_ID_MIN}-{CLIENT_ID_MAX} characters of A-Z, a-z, 0-9, '_' or '-'")]
    BadClientId,
}

impl MessageError {
    /// The stable machine-readable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BodyEmpty => "body_empty",
            Self::BodyTooLong => "body_too_long",
            Self::NameEmpty => "name_empty",
            Self::NameTooLong => "name_too_long",
            Self::ControlCharacter => "control_character",
            Self::InvisibleCharacter => "invisible_character",
            Self::BadClientId => "bad_client_id",
        }
    }
}

/// The Unicode line and paragraph separators: not control characters, but
/// line breaks all the same (browsers break the line at them).
const UNICODE_LINE_BREAKS: [char; 2] = ['\u{2028}', '\u{2029}'];

/// Rejects control characters other than newline and tab: they make text
/// render differently in different places and carry nothing a person typed.
/// One-line text also rejects the Unicode line breaks.
fn check_controls(text: &str, allow_newlines: bool) -> Result<(), MessageError> {
    let bad = |c: char| {
        if allow_newlines {
            c.is_control() && c != '\n' && c != '\t'
        } else {
            c.is_control() || UNICODE_LINE_BREAKS.contains(&c)
        }
    };
    if text.chars().any(bad) { Err(MessageError::ControlCharacter) } else { Ok(()) }
}

/// Characters that change how the text around them reads without showing
/// themselves: zero-width spaces and joiners, word joiners, byte-order marks
/// and the bidirectional embeddings, overrides and isolates (which can make
/// `Alice\u{202E}` read as someone else). A name carrying one can pass for a
/// different name, so names refuse them.
pub fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{200B}'..='\u{200F}'   // zero-width space, non-joiner, joiner; LRM, RLM
        | '\u{202A}'..='\u{202E}' // bidi embeddings and overrides
        | '\u{2060}'..='\u{2064}' // word joiner, invisible operators
        | '\u{2066}'..='\u{2069}' // bidi isolates
        | '\u{061C}'              // Arabic letter mark
        | '\u{180E}'              // Mongolian vowel separator
        | '\u{FEFF}'              // zero-width no-break space (BOM)
        | '\u{00AD}'              // soft hyphen
    )
}

/// The text of a message: 1 to 2,000 characters once trimmed, newlines
/// normalised to `\n`, no other control characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct MessageBody(String);

impl MessageBody {
    pub fn parse(raw: &str) -> Result<Self, MessageError> {
        let text = raw.replace("\r\n", "\n").replace(['\r', UNICODE_LINE_BREAKS[0], UNICODE_LINE_BREAKS[1]], "\n");
        let text = text.trim();
        if text.is_empty() {
            return Err(MessageError::BodyEmpty);
        }
        if text.chars().count() > BODY_MAX_CHARS {
            return Err(MessageError::BodyTooLong);
        }
        check_controls(text, true)?;
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The name a message is shown under: 1 to 32 characters once trimmed, on
/// one line, with no invisible or text-direction characters ([`is_invisible`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct DisplayName(String);

impl DisplayName {
    pub fn parse(raw: &str) -> Result<Self, MessageError> {
        let name = raw.trim();
        if name.is_empty() {
            return Err(MessageError::NameEmpty);
        }
        if name.chars().count() > NAME_MAX_CHARS {
            return Err(MessageError::NameTooLong);
        }
        check_controls(name, false)?;
        if name.chars().any(is_invisible) {
            return Err(MessageError::InvisibleCharacter);
        }
        Ok(Self(name.to_owned()))
    }

    /// The name a visitor has before they choose one: `guest-` and four
    /// digits derived from `seed` (stable per visitor, so it doesn't change
    /// on every page load).
    pub fn guest(seed: u64) -> Self {
        Self(format!("guest-{:04}", seed % 10_000))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The id a client gives a message before sending it, so that a resend
/// (after a reconnect, say) is stored and shown once.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct ClientMsgId(String);

/// Client ids starting with this are the server's own (messages published
/// through the API); a client may not send one.
pub const SYSTEM_CLIENT_ID_PREFIX: &str = "api-";

impl ClientMsgId {
    /// Whether this id is one only the server makes
    /// ([`SYSTEM_CLIENT_ID_PREFIX`]).
    pub fn is_reserved(&self) -> bool {
        self.0.starts_with(SYSTEM_CLIENT_ID_PREFIX)
    }

    pub fn parse(raw: &str) -> Result<Self, MessageError> {
        let ok_char = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'-';
        if (CLIENT_ID_MIN..=CLIENT_ID_MAX).contains(&raw.len()) && raw.bytes().all(ok_char) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(MessageError::BadClientId)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

validated_deserialize!(MessageBody, DisplayName, ClientMsgId);

/// A message's position in its room. Sequence numbers start at 1, grow by
/// one per stored message and are never reused; `Seq(0)` means "before the
/// first message".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Seq(pub u64);

impl Seq {
    pub const ZERO: Seq = Seq(0);

    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A validated message, ready to be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    pub room: RoomName,
    pub client_id: ClientMsgId,
    pub name: DisplayName,
    pub body: MessageBody,
    /// Published through the API by a backend, not typed by a person.
    pub system: bool,
    /// The signed-in sender (from a verified token); `None` for anonymous
    /// senders and the system.
    pub user: Option<crate::UserId>,
}

/// A message as stored and as every client receives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMessage {
    pub room: RoomName,
    pub seq: Seq,
    /// The sender's id for this message (see [`ClientMsgId`]).
    pub client_id: ClientMsgId,
    pub name: DisplayName,
    pub body: MessageBody,
    /// When the server stored it, in milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// Published through the API by a backend, not typed by a person.
    #[serde(default, skip_serializing_if = "is_false")]
    pub system: bool,
    /// Sent by a signed-in user: the name is the one their token carries.
    /// (Which user is kept on the server; clients see only that it was
    /// one.) Anonymous senders choose their names freely, so only this
    /// tells a real "Alice" from someone calling themselves Alice.
    #[serde(default, skip_serializing_if = "is_false")]
    pub verified: bool,
}

fn is_false(value: &bool) -> bool {
    !value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_trimmed_and_normalised() {
        let body = MessageBody::parse("  hi\r\nthere\t!  ").unwrap();
        assert_eq!(body.as_str(), "hi\nthere\t!");
        let body = MessageBody::parse("one\u{2028}two\u{2029}three").unwrap();
        assert_eq!(body.as_str(), "one\ntwo\nthree");
    }

    #[test]
    fn body_limits() {
        assert_eq!(MessageBody::parse(" \n "), Err(MessageError::BodyEmpty));
        assert!(MessageBody::parse(&"é".repeat(BODY_MAX_CHARS)).is_ok());
        assert_eq!(MessageBody::parse(&"a".repeat(BODY_MAX_CHARS + 1)), Err(MessageError::BodyTooLong));
        assert_eq!(MessageBody::parse("a\u{0}b"), Err(MessageError::ControlCharacter));
        assert_eq!(MessageBody::parse("a\u{1b}[31m"), Err(MessageError::ControlCharacter));
    }

    #[test]
    fn markup_is_just_text() {
        let raw = "<img src=x onerror=alert(1)>";
        assert_eq!(MessageBody::parse(raw).unwrap().as_str(), raw);
        assert_eq!(DisplayName::parse(raw).unwrap().as_str(), raw);
    }

    #[test]
    fn name_limits() {
        assert_eq!(DisplayName::parse("  Ada  ").unwrap().as_str(), "Ada");
        assert_eq!(DisplayName::parse("   "), Err(MessageError::NameEmpty));
        assert_eq!(DisplayName::parse(&"n".repeat(NAME_MAX_CHARS + 1)), Err(MessageError::NameTooLong));
        assert_eq!(DisplayName::parse("a\nb"), Err(MessageError::ControlCharacter));
        assert_eq!(DisplayName::parse("a\u{2028}b"), Err(MessageError::ControlCharacter));
        for sneaky in ["Alice\u{202E}", "Al\u{200B}ice", "\u{2066}Bob", "Ev\u{FEFF}e", "Mal\u{00AD}lory"] {
            assert_eq!(DisplayName::parse(sneaky), Err(MessageError::InvisibleCharacter), "{sneaky:?}");
        }
        assert!(DisplayName::parse("Zoë 李 🙂").is_ok(), "visible characters of any script pass");
    }

    #[test]
    fn guest_names_have_four_digits() {
        assert_eq!(DisplayName::guest(7).as_str(), "guest-0007");
        assert_eq!(DisplayName::guest(123_456).as_str(), "guest-3456");
    }

    #[test]
    fn client_ids() {
        assert!(ClientMsgId::parse("abcd1234").is_ok());
        assert!(ClientMsgId::parse(&"x".repeat(64)).is_ok());
        for bad in ["short", &"x".repeat(65), "has space1", "ünïcode1", "a/b/c/d/e"] {
            assert_eq!(ClientMsgId::parse(bad), Err(MessageError::BadClientId), "{bad}");
        }
    }

    #[test]
    fn stored_message_round_trips_through_json() {
        let msg = StoredMessage {
            room: RoomName::lobby(),
            seq: Seq(3),
            client_id: ClientMsgId::parse("abcdefgh").unwrap(),
            name: DisplayName::parse("Ada").unwrap(),
            body: MessageBody::parse("hello").unwrap(),
            at_ms: 1_700_000_000_000,
            system: false,
            verified: true,
        };
        let json = serde_json::to_string(&msg).unwrap();
        assert_eq!(serde_json::from_str::<StoredMessage>(&json).unwrap(), msg);
        assert!(json.contains("\"seq\":3") && json.contains("\"verified\":true"), "{json}");
        assert!(ClientMsgId::parse("api-idem-x").unwrap().is_reserved());
        assert!(!ClientMsgId::parse("apiary-1").unwrap().is_reserved());
    }
}
