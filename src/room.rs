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

/// One room of a page's room list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RoomEntry {
    pub room: RoomName,
    pub private: bool,
    /// People in it now (signed-in users and guests), on every node.
    pub people: u64,
    /// The visitor read it before, and it has newer messages since.
    pub unread: bool,
    /// The page's own room.
    pub current: bool,
}

/// The most rooms a visitor's "seen" list remembers.
pub const SEEN_MAX: usize = 16;

/// The rooms a visitor has read, each with the newest `seq` they saw, most
/// recent first: the `herald_seen` cookie (`lobby.41~dev.12`), which marks
/// rooms with messages they have not seen. Parsed leniently: an entry that
/// is not a room and a number is skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen(Vec<(RoomName, crate::Seq)>);

impl Seen {
    pub fn parse(raw: &str) -> Self {
        let mut seen = Self::default();
        for entry in raw.split('~').take(SEEN_MAX) {
            if let Some((room, seq)) = entry.rsplit_once('.')
                && let (Ok(room), Ok(seq)) = (RoomName::parse(room), seq.parse::<u64>())
                && seen.get(&room).is_none()
            {
                seen.0.push((room, crate::Seq(seq)));
            }
        }
        seen
    }

    pub fn get(&self, room: &RoomName) -> Option<crate::Seq> {
        self.0.iter().find(|(r, _)| r == room).map(|(_, seq)| *seq)
    }

    pub fn rooms(&self) -> impl Iterator<Item = &RoomName> {
        self.0.iter().map(|(room, _)| room)
    }

    /// `room` read up to `seq` (never back): first in the list, the
    /// oldest entry dropped past [`SEEN_MAX`].
    pub fn saw(&mut self, room: &RoomName, seq: crate::Seq) {
        let seq = self.get(room).map_or(seq, |known| known.max(seq));
        self.0.retain(|(r, _)| r != room);
        self.0.insert(0, (room.clone(), seq));
        self.0.truncate(SEEN_MAX);
    }

    /// The cookie's value.
    pub fn encode(&self) -> String {
        self.0.iter().map(|(room, seq)| format!("{room}.{seq}")).collect::<Vec<_>>().join("~")
    }
}

/// The most patterns one list (a token's `rooms` claim, a server's private
/// rooms) may hold.
pub const PATTERNS_MAX: usize = 100;

/// A pattern over room names: room-name characters, where `*` stands for any
/// run of characters, none included (`support-*` matches `support-` and
/// `support-eu`; `*` matches every room).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct RoomPattern(String);

/// Why a string is not a room pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a room pattern is 1 to {ROOM_NAME_MAX} characters of a-z, 0-9, '_', '-' and '*' (any run of characters)")]
pub struct RoomPatternError;

impl RoomPattern {
    pub fn parse(raw: &str) -> Result<Self, RoomPatternError> {
        let allowed = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'_' | b'-' | b'*');
        if raw.is_empty() || raw.len() > ROOM_NAME_MAX || !raw.bytes().all(allowed) {
            return Err(RoomPatternError);
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `room` is one of the names this pattern stands for.
    ///
    /// Linear in the lengths (the classic wildcard walk: on a mismatch, the
    /// last `*` takes one more character), so a hostile pattern costs no
    /// more than a plain one.
    pub fn matches(&self, room: &RoomName) -> bool {
        let (pattern, name) = (self.0.as_bytes(), room.as_str().as_bytes());
        let (mut p, mut n) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while n < name.len() {
            if p < pattern.len() && pattern[p] == b'*' {
                star = Some((p, n));
                p += 1;
            } else if p < pattern.len() && pattern[p] == name[n] {
                p += 1;
                n += 1;
            } else if let Some((star_p, star_n)) = star {
                p = star_p + 1;
                n = star_n + 1;
                star = Some((star_p, star_n + 1));
            } else {
                return false;
            }
        }
        pattern[p..].iter().all(|&c| c == b'*')
    }
}

validated_deserialize!(RoomPattern);

/// A list of room patterns: the rooms a token grants, or the rooms a
/// server keeps private.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct RoomPatterns(Vec<RoomPattern>);

impl RoomPatterns {
    /// Parses every pattern of `raw`; at most [`PATTERNS_MAX`].
    pub fn parse<S: AsRef<str>>(raw: &[S]) -> Result<Self, RoomPatternError> {
        if raw.len() > PATTERNS_MAX {
            return Err(RoomPatternError);
        }
        raw.iter().map(|p| RoomPattern::parse(p.as_ref())).collect::<Result<_, _>>().map(Self)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether any pattern matches `room`.
    pub fn matches(&self, room: &RoomName) -> bool {
        self.0.iter().any(|pattern| pattern.matches(room))
    }

    pub fn iter(&self) -> impl Iterator<Item = &RoomPattern> {
        self.0.iter()
    }
}

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

    fn matches(pattern: &str, room: &str) -> bool {
        RoomPattern::parse(pattern).unwrap().matches(&RoomName::parse(room).unwrap())
    }

    #[test]
    fn patterns_match_whole_names() {
        for (pattern, room) in [
            ("team-a", "team-a"),
            ("support-*", "support-eu"),
            ("support-*", "support-"),
            ("*", "lobby"),
            ("*-ops", "eu-ops"),
            ("a*b*c", "a-b-x-c"),
            ("a**", "a"),
            ("*a*a*a*a*a*b", "aaaaaaaaaab"),
        ] {
            assert!(matches(pattern, room), "{pattern} should match {room}");
        }
        for (pattern, room) in [
            ("team-a", "team-ab"),
            ("team-a", "xteam-a"),
            ("support-*", "support"),
            ("*-ops", "eu-opsx"),
            ("a*b*c", "a-b-x-d"),
            ("*a*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
        ] {
            assert!(!matches(pattern, room), "{pattern} should not match {room}");
        }
    }

    #[test]
    fn patterns_are_validated() {
        for bad in ["", "Team", "a b", "a?", &"a".repeat(65)] {
            assert_eq!(RoomPattern::parse(bad), Err(RoomPatternError), "{bad:?}");
        }
        assert!(RoomPatterns::parse(&vec!["a"; PATTERNS_MAX]).is_ok());
        assert!(RoomPatterns::parse(&vec!["a"; PATTERNS_MAX + 1]).is_err());
        let list: RoomPatterns = serde_json::from_str(r#"["team-a","support-*"]"#).unwrap();
        assert!(list.matches(&RoomName::parse("support-x").unwrap()));
        assert!(!list.matches(&RoomName::parse("lobby").unwrap()));
        assert!(serde_json::from_str::<RoomPatterns>(r#"["Team"]"#).is_err());
    }

    #[test]
    fn seen_rooms_round_trip_most_recent_first_and_bounded() {
        let mut seen = Seen::parse("lobby.41~dev.12~Bad.3~dev.99~x.y");
        assert_eq!(seen.encode(), "lobby.41~dev.12", "bad and repeated entries skipped");
        seen.saw(&RoomName::parse("dev").unwrap(), crate::Seq(15));
        assert_eq!(seen.encode(), "dev.15~lobby.41");
        seen.saw(&RoomName::parse("dev").unwrap(), crate::Seq(3));
        assert_eq!(seen.get(&RoomName::parse("dev").unwrap()), Some(crate::Seq(15)), "never back");
        for n in 0..20 {
            seen.saw(&RoomName::parse(&format!("r{n}")).unwrap(), crate::Seq(n));
        }
        assert_eq!(seen.rooms().count(), SEEN_MAX);
        assert_eq!(Seen::parse(&seen.encode()), seen);
        assert_eq!(Seen::parse(""), Seen::default());
    }

    #[test]
    fn deserializing_validates() {
        assert!(serde_json::from_str::<RoomName>("\"ok\"").is_ok());
        assert!(serde_json::from_str::<RoomName>("\"NO\"").is_err());
    }
}
