//! Property-based tests of everything in `herald` that reads untrusted input:
//! the newtypes' `parse`, their `Deserialize`, the Socket.IO payloads and the
//! Engine.IO / Socket.IO framing.
//!
//! Each parser is checked three ways: it never panics, whatever it is given
//! (arbitrary, huge, unicode, control characters, deeply nested JSON); what
//! it accepts keeps the rules `docs/PROTOCOL.md` documents and survives a
//! trip through serde and `Display`; and what the grammar allows is accepted.
//!
//! Each property runs `PROPTEST_CASES` cases when that is set, else a count
//! chosen so the whole file runs in a few seconds in a debug build.

use herald::message::{BODY_MAX_CHARS, CLIENT_ID_MAX, CLIENT_ID_MIN, MessageError, NAME_MAX_CHARS};
use herald::notification::{EVENT_MAX, EventName, Notification, Stream};
use herald::protocol::{
    Closing, ErrorReply, JoinRequest, Joined, LeaveRequest, MarkReadRequest, PresenceSnapshot, ReadUpdate, Reply,
    SendRequest, SyncRequest, Synced,
};
use herald::room::{DEFAULT_ROOM, ROOM_NAME_MAX, RoomNameError, RoomPattern};
use herald::user::USER_ID_MAX;
use herald::wire::{self, EnginePacket, SocketPacket};
use herald::{ClientMsgId, DisplayName, Identity, MessageBody, RoomName, Seq, StoredMessage, UserId};
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// `cases` runs per property unless `PROPTEST_CASES` says otherwise.
///
/// Failures are not persisted to a file (proptest looks for it beside a
/// `lib.rs` this test does not have); a failure prints its minimal input,
/// which belongs in a unit test beside the code it broke.
fn config(cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(cases);
    Config { cases, failure_persistence: None, ..Config::default() }
}

/// Line breaks other than `\n`: carriage return, vertical tab, form feed,
/// next line and the Unicode line and paragraph separators.
const OTHER_LINE_BREAKS: [char; 6] = ['\r', '\u{b}', '\u{c}', '\u{85}', '\u{2028}', '\u{2029}'];

// ---------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------

/// Characters that sit on the edges of Herald's rules: whitespace, line
/// breaks, controls, grammar punctuation, multi-byte letters, markup.
const TRICKY: &str = " \t\n\r\u{0}\u{1}\u{b}\u{c}\u{1b}\u{7f}\u{85}\u{a0}\u{9f}\u{200b}\u{2028}\u{2029}\u{202e}\u{feff}\
                      \u{3000}_-.:@/,\"'\\<>&%+[]{}0123456789aAzZéß漢\u{1f600}\u{10ffff}";

fn tricky_char() -> impl Strategy<Value = char> {
    let chars: Vec<char> = TRICKY.chars().collect();
    prop::sample::select(chars)
}

/// Strings that are mostly near Herald's grammars, sometimes anything.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::collection::vec(any::<char>(), 0..48).prop_map(String::from_iter),
        3 => prop::collection::vec(tricky_char(), 0..48).prop_map(String::from_iter),
        2 => "[a-z0-9_-]{0,72}",
        2 => "[A-Za-z0-9_.:@-]{0,140}",
        1 => huge_text(),
        1 => prop::collection::vec(any::<u8>(), 0..96).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
}

/// Long strings (far past every limit), built by repetition so they are cheap.
fn huge_text() -> impl Strategy<Value = String> {
    (prop::collection::vec(tricky_char(), 1..4), 0..40_000usize)
        .prop_map(|(unit, times)| String::from_iter(unit).repeat(times))
}

/// Object keys: mostly the fields Herald's payloads use, so generated
/// objects often nearly fit a type.
fn key() -> impl Strategy<Value = String> {
    const FIELDS: &str = "room since client_id name body retry inbox broadcast seqs all seq at_ms system id stream \
                          event data read user ok error code reason head";
    let fields: Vec<&str> = FIELDS.split_whitespace().collect();
    prop_oneof![4 => prop::sample::select(fields).prop_map(str::to_owned), 1 => text()]
}

/// Any JSON value. Floats are multiples of 1/8 so that printing and parsing
/// them back is exact.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1_000_000i32..1_000_000).prop_map(|n| Value::from(f64::from(n) / 8.0)),
        text().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..8).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// JSON objects whose values are often of the right type for some payload.
fn payload_like() -> impl Strategy<Value = Value> {
    let value = prop_oneof![
        3 => text().prop_map(Value::from),
        2 => any::<u64>().prop_map(Value::from),
        1 => any::<bool>().prop_map(Value::from),
        1 => prop::collection::vec(any::<u64>(), 0..8).prop_map(Value::from),
        1 => json(),
    ];
    prop::collection::btree_map(key(), value, 0..8).prop_map(|m| Value::Object(m.into_iter().collect()))
}

/// `*` is any run of characters, everything else itself: the definition,
/// exponential and obviously right, against which the linear matcher is
/// checked.
fn glob(pattern: &[u8], name: &[u8]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some((b'*', rest)) => (0..=name.len()).any(|skip| glob(rest, &name[skip..])),
        Some((c, rest)) => name.first() == Some(c) && glob(rest, &name[1..]),
    }
}

/// Valid values, straight from the documented grammars.
fn room_name() -> impl Strategy<Value = String> {
    "[a-z0-9_-]{1,64}"
}

fn client_id() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-]{8,64}"
}

fn user_id() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_.:@-]{1,128}"
}

fn event_name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_.:-]{1,64}"
}

/// A character a person may type into a name: anything but controls,
/// whitespace and line breaks.
fn visible_char() -> impl Strategy<Value = char> {
    // Ranges without controls or surrogates; the filter drops the few
    // whitespace characters inside them.
    prop_oneof![
        3 => 0x21u32..0x7f,
        2 => 0xa1u32..0xd800,
        1 => 0xe000u32..0x11_0000,
    ]
    .prop_filter_map("whitespace", |n| {
        char::from_u32(n).filter(|c| !c.is_whitespace() && !herald::message::is_invisible(*c))
    })
}

/// A valid display name, already trimmed: one visible character, or two
/// with up to 30 characters (spaces among them) in between.
fn display_name() -> impl Strategy<Value = String> {
    let inner = prop_oneof![4 => visible_char(), 1 => Just(' '), 1 => Just('\u{a0}')];
    let rest = prop::option::of((prop::collection::vec(inner, 0..=NAME_MAX_CHARS - 2), visible_char()));
    (visible_char(), rest).prop_map(|(first, rest)| {
        let mut name = String::from(first);
        if let Some((middle, last)) = rest {
            name.extend(middle);
            name.push(last);
        }
        name
    })
}

/// A valid message body, already trimmed, with inner spaces, tabs and
/// newlines; sometimes right at the 2,000-character limit.
fn body() -> impl Strategy<Value = String> {
    let inner = prop_oneof![6 => visible_char(), 1 => Just(' '), 1 => Just('\n'), 1 => Just('\t')];
    // Bodies at the limit repeat a short pattern: generating 2,000 random
    // characters per case would dominate the run time.
    let at_limit = prop::collection::vec(inner.clone(), 1..32)
        .prop_map(|pattern| pattern.into_iter().cycle().take(BODY_MAX_CHARS - 2).collect::<Vec<_>>());
    let middle = prop_oneof![4 => prop::collection::vec(inner, 0..200), 1 => at_limit];
    (visible_char(), middle, visible_char()).prop_map(|(first, middle, last)| {
        let mut body = String::from(first);
        body.extend(middle);
        body.push(last);
        body
    })
}

/// Whitespace a client may wrap around a name or body.
fn padding() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(vec![' ', '\t', '\n', '\r', '\u{a0}', '\u{3000}']), 0..6)
        .prop_map(String::from_iter)
}

fn stored_message() -> impl Strategy<Value = StoredMessage> {
    (room_name(), any::<u64>(), client_id(), display_name(), body(), any::<i64>(), any::<(bool, bool)>()).prop_map(
        |(room, seq, client_id, name, body, at_ms, (system, verified))| StoredMessage {
            room: RoomName::parse(&room).unwrap(),
            seq: Seq(seq),
            client_id: ClientMsgId::parse(&client_id).unwrap(),
            name: DisplayName::parse(&name).unwrap(),
            body: MessageBody::parse(&body).unwrap(),
            at_ms,
            system,
            verified,
        },
    )
}

fn notification() -> impl Strategy<Value = Notification> {
    (any::<bool>(), text(), any::<u64>(), event_name(), json(), any::<i64>(), any::<bool>()).prop_map(
        |(inbox, id, seq, event, data, at_ms, read)| Notification {
            id,
            stream: if inbox { Stream::Inbox } else { Stream::Broadcast },
            seq: Seq(seq),
            event: EventName::parse(&event).unwrap(),
            data,
            at_ms,
            read,
        },
    )
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Serializing `value` and reading it back gives `value` again, as a JSON
/// value and as text.
fn round_trips<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(value: &T) -> Result<(), TestCaseError> {
    let as_value = serde_json::to_value(value).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&serde_json::from_value::<T>(as_value).map_err(|e| TestCaseError::fail(e.to_string()))?, value);
    let as_text = serde_json::to_string(value).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&serde_json::from_str::<T>(&as_text).map_err(|e| TestCaseError::fail(e.to_string()))?, value);
    Ok(())
}

/// A string newtype is its string: `Display`, `as_str` and its JSON agree,
/// and parsing the string again gives the same value.
fn is_its_string<T, E>(value: &T, as_str: &str, parse: impl Fn(&str) -> Result<T, E>) -> Result<(), TestCaseError>
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug + std::fmt::Display,
    E: std::fmt::Debug,
{
    prop_assert_eq!(value.to_string(), as_str);
    prop_assert_eq!(serde_json::to_value(value).unwrap(), Value::from(as_str));
    prop_assert_eq!(&parse(as_str).unwrap(), value);
    round_trips(value)
}

/// Deserializing from a JSON string agrees with `parse`.
fn deserialize_agrees_with_parse<T, E>(raw: &str, parse: impl Fn(&str) -> Result<T, E>) -> Result<(), TestCaseError>
where
    T: DeserializeOwned + PartialEq + std::fmt::Debug,
    E: std::fmt::Debug,
{
    let from_json = serde_json::from_value::<T>(Value::from(raw));
    prop_assert_eq!(from_json.ok(), parse(raw).ok());
    Ok(())
}

fn is_grammar(raw: &str, lengths: std::ops::RangeInclusive<usize>, ok: impl Fn(u8) -> bool) -> bool {
    lengths.contains(&raw.len()) && raw.bytes().all(ok)
}

fn room_rule(raw: &str) -> bool {
    is_grammar(raw, 1..=ROOM_NAME_MAX, |b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-".contains(&b))
}

fn client_id_rule(raw: &str) -> bool {
    is_grammar(raw, CLIENT_ID_MIN..=CLIENT_ID_MAX, |b| b.is_ascii_alphanumeric() || b"_-".contains(&b))
}

fn user_id_rule(raw: &str) -> bool {
    is_grammar(raw, 1..=USER_ID_MAX, |b| b.is_ascii_alphanumeric() || b"_.:@-".contains(&b))
}

fn event_rule(raw: &str) -> bool {
    is_grammar(raw, 1..=EVENT_MAX, |b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b))
}

/// The documented invariants of an accepted body.
fn check_body(body: &MessageBody) -> Result<(), TestCaseError> {
    let text = body.as_str();
    prop_assert!((1..=BODY_MAX_CHARS).contains(&text.chars().count()), "length of {text:?}");
    prop_assert_eq!(text.trim(), text, "not trimmed");
    prop_assert!(!text.contains(OTHER_LINE_BREAKS), "line break other than \\n in {text:?}");
    prop_assert!(!text.chars().any(|c| c.is_control() && c != '\n' && c != '\t'), "control in {text:?}");
    is_its_string(body, text, MessageBody::parse)
}

/// The documented invariants of an accepted display name.
fn check_name(name: &DisplayName) -> Result<(), TestCaseError> {
    let text = name.as_str();
    prop_assert!((1..=NAME_MAX_CHARS).contains(&text.chars().count()), "length of {text:?}");
    prop_assert_eq!(text.trim(), text, "not trimmed");
    prop_assert!(!text.contains('\n') && !text.contains(OTHER_LINE_BREAKS), "not one line: {text:?}");
    prop_assert!(!text.chars().any(char::is_control), "control in {text:?}");
    prop_assert!(!text.chars().any(herald::message::is_invisible), "invisible character in {text:?}");
    is_its_string(name, text, DisplayName::parse)
}

/// A `send`'s error code is one `docs/PROTOCOL.md` lists for it.
fn check_send_error(error: &ErrorReply) -> Result<(), TestCaseError> {
    const CODES: &str = "malformed invalid_room bad_client_id name_empty name_too_long body_empty body_too_long \
                         control_character invisible_character";
    prop_assert!(CODES.split_whitespace().any(|c| c == error.code), "undocumented code {}", error.code);
    prop_assert!(!error.reason.is_empty());
    Ok(())
}

/// `[year, month, day, hours, minutes, seconds]` of `YYYY-MM-DDTHH:MM:SSZ`
/// (the year may be negative or longer than four digits).
fn parse_rfc3339(text: &str) -> Option<[i128; 6]> {
    let (date, clock) = text.strip_suffix('Z')?.split_once('T')?;
    let (year_month, day) = date.rsplit_once('-')?;
    let (year, month) = year_month.rsplit_once('-')?;
    let mut clock = clock.split(':');
    let mut next = || clock.next()?.parse().ok();
    Some([year.parse().ok()?, month.parse().ok()?, day.parse().ok()?, next()?, next()?, next()?])
}

/// Days since the epoch of a proleptic Gregorian date (the inverse of what
/// `time` computes), in `i128` so no input overflows it.
fn days_from_civil(year: i128, month: i128, day: i128) -> i128 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

// ---------------------------------------------------------------------------
// Names and ids: RoomName, ClientMsgId, UserId, EventName
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn room_names_are_exactly_the_rule(raw in text()) {
        let parsed = RoomName::parse(&raw);
        prop_assert_eq!(parsed.is_ok(), room_rule(&raw), "{:?}", raw);
        if let Ok(room) = &parsed {
            prop_assert_eq!(room.as_str(), raw.as_str());
            is_its_string(room, &raw, RoomName::parse)?;
            let path = room.page_path();
            prop_assert_eq!(path, if raw == DEFAULT_ROOM { "/".to_owned() } else { format!("/r/{raw}") });
        }
        deserialize_agrees_with_parse(&raw, RoomName::parse)?;
    }

    #[test]
    fn room_patterns_match_as_the_plain_recursive_definition_says(
        pattern in "[ab*-]{1,12}",
        room in "[ab-]{1,16}",
    ) {
        let parsed = RoomPattern::parse(&pattern).unwrap();
        let name = RoomName::parse(&room).unwrap();
        prop_assert_eq!(parsed.matches(&name), glob(pattern.as_bytes(), room.as_bytes()), "{} ~ {}", pattern, room);
    }

    #[test]
    fn client_ids_are_exactly_the_rule(raw in text()) {
        let parsed = ClientMsgId::parse(&raw);
        prop_assert_eq!(parsed.is_ok(), client_id_rule(&raw), "{:?}", raw);
        match &parsed {
            Ok(id) => is_its_string(id, &raw, ClientMsgId::parse)?,
            Err(err) => prop_assert_eq!(err, &MessageError::BadClientId),
        }
        deserialize_agrees_with_parse(&raw, ClientMsgId::parse)?;
    }

    #[test]
    fn user_ids_are_exactly_the_rule(raw in text()) {
        let parsed = UserId::parse(&raw);
        prop_assert_eq!(parsed.is_ok(), user_id_rule(&raw), "{:?}", raw);
        if let Ok(user) = &parsed {
            is_its_string(user, &raw, UserId::parse)?;
        }
        deserialize_agrees_with_parse(&raw, UserId::parse)?;
    }

    #[test]
    fn event_names_are_exactly_the_rule(raw in text()) {
        let parsed = EventName::parse(&raw);
        prop_assert_eq!(parsed.is_ok(), event_rule(&raw), "{:?}", raw);
        if let Ok(event) = &parsed {
            prop_assert_eq!(event.as_str(), raw.as_str());
            is_its_string(event, &raw, EventName::parse)?;
        }
        deserialize_agrees_with_parse(&raw, EventName::parse)?;
    }

    #[test]
    fn grammar_names_and_ids_are_accepted(
        room in room_name(), id in client_id(), user in user_id(), event in event_name(),
    ) {
        prop_assert_eq!(RoomName::parse(&room).map(|v| v.as_str().to_owned()), Ok(room.clone()));
        prop_assert_eq!(ClientMsgId::parse(&id).map(|v| v.as_str().to_owned()), Ok(id.clone()));
        prop_assert_eq!(UserId::parse(&user).map(|v| v.as_str().to_owned()), Ok(user.clone()));
        prop_assert_eq!(EventName::parse(&event).map(|v| v.as_str().to_owned()), Ok(event.clone()));
    }

    #[test]
    fn names_past_the_limits_are_refused(
        long in "[a-z]{65,200}", longer in "[a-z]{129,300}", short in "[a-z]{0,7}",
    ) {
        prop_assert_eq!(RoomName::parse(&long), Err(RoomNameError::TooLong));
        prop_assert_eq!(ClientMsgId::parse(&long), Err(MessageError::BadClientId));
        prop_assert_eq!(ClientMsgId::parse(&short), Err(MessageError::BadClientId));
        prop_assert!(EventName::parse(&long).is_err());
        prop_assert!(UserId::parse(&longer).is_err());
    }

    #[test]
    fn string_newtypes_refuse_json_that_is_not_a_string(value in json()) {
        prop_assume!(!value.is_string());
        prop_assert!(serde_json::from_value::<RoomName>(value.clone()).is_err());
        prop_assert!(serde_json::from_value::<ClientMsgId>(value.clone()).is_err());
        prop_assert!(serde_json::from_value::<UserId>(value.clone()).is_err());
        prop_assert!(serde_json::from_value::<EventName>(value.clone()).is_err());
        prop_assert!(serde_json::from_value::<DisplayName>(value.clone()).is_err());
        prop_assert!(serde_json::from_value::<MessageBody>(value).is_err());
    }
}

// ---------------------------------------------------------------------------
// Message text: MessageBody and DisplayName
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn accepted_bodies_keep_the_rules(raw in text()) {
        match MessageBody::parse(&raw) {
            Ok(body) => check_body(&body)?,
            Err(err) => {
                prop_assert!(
                    matches!(err, MessageError::BodyEmpty | MessageError::BodyTooLong | MessageError::ControlCharacter),
                    "{:?}", err
                );
                if err == MessageError::BodyEmpty {
                    prop_assert!(raw.trim().is_empty(), "{:?} is not empty", raw);
                }
                if err == MessageError::BodyTooLong {
                    prop_assert!(raw.chars().count() > BODY_MAX_CHARS);
                }
            }
        }
        deserialize_agrees_with_parse(&raw, MessageBody::parse)?;
    }

    #[test]
    fn accepted_names_keep_the_rules(raw in text()) {
        match DisplayName::parse(&raw) {
            Ok(name) => check_name(&name)?,
            Err(err) => {
                prop_assert!(
                    matches!(
                        err,
                        MessageError::NameEmpty
                            | MessageError::NameTooLong
                            | MessageError::ControlCharacter
                            | MessageError::InvisibleCharacter
                    ),
                    "{:?}", err
                );
                if err == MessageError::NameEmpty {
                    prop_assert!(raw.trim().is_empty());
                }
                if err == MessageError::InvisibleCharacter {
                    prop_assert!(raw.chars().any(herald::message::is_invisible));
                }
            }
        }
        deserialize_agrees_with_parse(&raw, DisplayName::parse)?;
    }

    #[test]
    fn grammar_bodies_are_accepted_as_typed(body in body(), before in padding(), after in padding()) {
        let parsed = MessageBody::parse(&body).unwrap();
        prop_assert_eq!(parsed.as_str(), body.as_str());
        check_body(&parsed)?;
        // Whitespace around a body is not part of it.
        prop_assert_eq!(MessageBody::parse(&format!("{before}{body}{after}")).unwrap(), parsed);
    }

    #[test]
    fn crlf_and_cr_become_lf(
        lines in prop::collection::vec("[a-z]{1,8}", 2..8),
        breaks in prop::collection::vec(prop::sample::select(vec!["\n", "\r\n", "\r", "\u{2028}", "\u{2029}"]), 8),
    ) {
        let mut raw = String::new();
        let mut expected = String::new();
        for (i, line) in lines.iter().enumerate() {
            if i > 0 {
                raw.push_str(breaks[i - 1]);
                expected.push('\n');
            }
            raw.push_str(line);
            expected.push_str(line);
        }
        prop_assert_eq!(MessageBody::parse(&raw).map(|b| b.as_str().to_owned()), Ok(expected));
    }

    #[test]
    fn grammar_names_are_accepted_as_typed(name in display_name(), before in padding(), after in padding()) {
        let parsed = DisplayName::parse(&name).unwrap();
        prop_assert_eq!(parsed.as_str(), name.as_str());
        check_name(&parsed)?;
        let padded = format!("{before}{name}{after}");
        prop_assert_eq!(DisplayName::parse(&padded).unwrap(), parsed);
    }

    #[test]
    fn text_past_the_limits_is_refused(c in visible_char(), extra in 1..64usize) {
        let body = String::from(c).repeat(BODY_MAX_CHARS + extra);
        prop_assert_eq!(MessageBody::parse(&body), Err(MessageError::BodyTooLong));
        let name = String::from(c).repeat(NAME_MAX_CHARS + extra);
        prop_assert_eq!(DisplayName::parse(&name), Err(MessageError::NameTooLong));
        // The limits count characters, not bytes.
        prop_assert!(MessageBody::parse(&String::from(c).repeat(BODY_MAX_CHARS)).is_ok());
        prop_assert!(DisplayName::parse(&String::from(c).repeat(NAME_MAX_CHARS)).is_ok());
    }

    #[test]
    fn controls_inside_text_are_refused(
        c in "[\\p{Cc}&&[^\\n\\t\\r]]".prop_map(|c| c.chars().next().unwrap_or('\0')),
    ) {
        prop_assert_eq!(MessageBody::parse(&format!("a{c}b")), Err(MessageError::ControlCharacter));
        prop_assert_eq!(DisplayName::parse(&format!("a{c}b")), Err(MessageError::ControlCharacter));
        for line_break in ["\n", "\r", "\t"] {
            prop_assert_eq!(DisplayName::parse(&format!("a{line_break}b")), Err(MessageError::ControlCharacter));
        }
    }

    #[test]
    fn guest_names_are_valid_names(seed in any::<u64>()) {
        let guest = DisplayName::guest(seed);
        check_name(&guest)?;
        prop_assert_eq!(guest.as_str(), format!("guest-{:04}", seed % 10_000));
    }

    #[test]
    fn identities_always_have_a_valid_display_name(user in user_id(), name in prop::option::of(display_name())) {
        let identity = Identity {
            user: UserId::parse(&user).unwrap(),
            name: name.as_deref().map(|n| DisplayName::parse(n).unwrap()),
            rooms: Default::default(),
        };
        let shown = identity.display_name();
        check_name(&shown)?;
        match &name {
            Some(name) => prop_assert_eq!(shown.as_str(), name.as_str()),
            None if user.len() <= NAME_MAX_CHARS => prop_assert_eq!(shown.as_str(), user.as_str()),
            None => prop_assert!(shown.as_str().starts_with("guest-")),
        }
        round_trips(&identity)?;
    }
}

// ---------------------------------------------------------------------------
// Records: StoredMessage, Notification, Seq
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn stored_messages_round_trip(msg in stored_message()) {
        round_trips(&msg)?;
        let json = serde_json::to_value(&msg).unwrap();
        prop_assert_eq!(json.get("system").is_some(), msg.system, "system is only written when true");
        prop_assert_eq!(&json["seq"], &Value::from(msg.seq.get()));
    }

    #[test]
    fn accepted_stored_messages_are_valid(value in prop_oneof![json(), payload_like()]) {
        if let Ok(msg) = serde_json::from_value::<StoredMessage>(value) {
            prop_assert!(room_rule(msg.room.as_str()));
            prop_assert!(client_id_rule(msg.client_id.as_str()));
            check_name(&msg.name)?;
            check_body(&msg.body)?;
        }
    }

    #[test]
    fn notifications_round_trip(n in notification()) {
        round_trips(&n)?;
        let json = serde_json::to_value(&n).unwrap();
        prop_assert!(json["stream"] == "inbox" || json["stream"] == "broadcast");
    }

    #[test]
    fn accepted_notifications_have_valid_events(value in prop_oneof![json(), payload_like()]) {
        if let Ok(n) = serde_json::from_value::<Notification>(value) {
            prop_assert!(event_rule(n.event.as_str()));
            round_trips(&n)?;
        }
    }

    #[test]
    fn seqs_are_their_number(n in any::<u64>()) {
        prop_assert_eq!(Seq(n).to_string(), n.to_string());
        prop_assert_eq!(serde_json::to_string(&Seq(n)).unwrap(), n.to_string());
        round_trips(&Seq(n))?;
        prop_assert_eq!(Seq(n).get(), n);
        prop_assert!(Seq::ZERO <= Seq(n));
    }
}

// ---------------------------------------------------------------------------
// Protocol payloads
// ---------------------------------------------------------------------------

/// A payload's field, by name in an object or by position in an array:
/// serde's derived structs take both forms, so `["lobby", 3]` is a join too.
fn field<'a>(value: &'a Value, name: &str, index: usize) -> Option<&'a Value> {
    match value {
        Value::Array(items) => items.get(index),
        _ => value.get(name),
    }
}

/// A number field as accepted: what the payload says, 0 when absent.
fn number_field(value: &Value, name: &str, index: usize) -> Option<u64> {
    field(value, name, index).map_or(Some(0), Value::as_u64)
}

/// Deserializes `value` as every request payload and checks what is accepted.
fn check_requests(value: &Value) -> Result<(), TestCaseError> {
    if let Ok(send) = serde_json::from_value::<SendRequest>(value.clone()) {
        prop_assert_eq!(field(value, "body", 3), Some(&Value::from(send.body.as_str())));
        check_send(&send)?;
    }
    if let Ok(join) = serde_json::from_value::<JoinRequest>(value.clone()) {
        prop_assert_eq!(field(value, "room", 0), Some(&Value::from(join.room.as_str())));
        prop_assert_eq!(number_field(value, "since", 1), Some(join.since));
        round_trips(&join)?;
    }
    if let Ok(leave) = serde_json::from_value::<LeaveRequest>(value.clone()) {
        prop_assert_eq!(field(value, "room", 0), Some(&Value::from(leave.room.as_str())));
        round_trips(&leave)?;
    }
    if let Ok(sync) = serde_json::from_value::<SyncRequest>(value.clone()) {
        prop_assert_eq!(number_field(value, "inbox", 0), Some(sync.inbox));
        prop_assert_eq!(number_field(value, "broadcast", 1), Some(sync.broadcast));
        round_trips(&sync)?;
    }
    if let Ok(mark) = serde_json::from_value::<MarkReadRequest>(value.clone()) {
        let all = field(value, "all", 1).map_or(Some(false), Value::as_bool);
        prop_assert_eq!(all, Some(mark.all));
        round_trips(&mark)?;
    }
    if let Ok(Reply::Ok(msg)) = serde_json::from_value::<Reply<StoredMessage>>(value.clone()) {
        check_name(&msg.name)?;
        check_body(&msg.body)?;
    }
    // What clients read: never a panic, whatever the server sent.
    let _ = serde_json::from_value::<Reply<Joined>>(value.clone());
    let _ = serde_json::from_value::<Reply<Synced>>(value.clone());
    let _ = serde_json::from_value::<Reply<ReadUpdate>>(value.clone());
    let _ = serde_json::from_value::<PresenceSnapshot>(value.clone());
    let _ = serde_json::from_value::<Closing>(value.clone());
    Ok(())
}

/// An accepted `send` payload validates to exactly its fields' `parse`
/// results, or fails with the code of the first field that breaks its rule.
fn check_send(send: &SendRequest) -> Result<(), TestCaseError> {
    let fields: [Result<(), ErrorReply>; 4] = [
        RoomName::parse(&send.room).map(drop).map_err(ErrorReply::from),
        ClientMsgId::parse(&send.client_id).map(drop).map_err(ErrorReply::from),
        DisplayName::parse(&send.name).map(drop).map_err(ErrorReply::from),
        MessageBody::parse(&send.body).map(drop).map_err(ErrorReply::from),
    ];
    let first_error = fields.into_iter().find_map(Result::err);
    match send.validate() {
        Ok(msg) => {
            prop_assert_eq!(first_error, None);
            prop_assert_eq!(msg.room.as_str(), send.room.as_str());
            prop_assert_eq!(msg.client_id.as_str(), send.client_id.as_str());
            prop_assert_eq!(&msg.name, &DisplayName::parse(&send.name).unwrap());
            prop_assert_eq!(&msg.body, &MessageBody::parse(&send.body).unwrap());
            prop_assert!(!msg.system, "a client never sends system messages");
            check_name(&msg.name)?;
            check_body(&msg.body)?;
        }
        Err(err) => {
            check_send_error(&err)?;
            prop_assert_eq!(Some(err), first_error);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn arbitrary_json_payloads_never_panic(value in prop_oneof![json(), payload_like()]) {
        check_requests(&value)?;
    }

    #[test]
    fn arbitrary_text_payloads_never_panic(raw in prop_oneof![text(), json().prop_map(|v| v.to_string())]) {
        if let Ok(value) = serde_json::from_str::<Value>(&raw) {
            check_requests(&value)?;
        }
        let _ = serde_json::from_str::<SendRequest>(&raw);
        let _ = serde_json::from_str::<MarkReadRequest>(&raw);
        let _ = serde_json::from_str::<StoredMessage>(&raw);
    }

    #[test]
    fn send_requests_with_string_fields_validate_field_by_field(
        room in prop_oneof![room_name(), text()],
        client_id in prop_oneof![client_id(), text()],
        name in prop_oneof![display_name(), text()],
        body in prop_oneof![body(), text()],
        retry in any::<bool>(),
    ) {
        let value = json!({"room": room, "client_id": client_id, "name": name, "body": body, "retry": retry});
        let send: SendRequest = serde_json::from_value(value).unwrap();
        prop_assert_eq!(send.retry, retry);
        check_send(&send)?;
    }

    #[test]
    fn grammar_send_requests_are_accepted(
        room in room_name(), client_id in client_id(), name in display_name(), body in body(),
    ) {
        let value = json!({"room": room, "client_id": client_id, "name": name, "body": body});
        let send: SendRequest = serde_json::from_value(value).unwrap();
        prop_assert!(!send.retry);
        let msg = send.validate().unwrap();
        prop_assert_eq!(msg.body.as_str(), body.as_str());
        prop_assert_eq!(msg.name.as_str(), name.as_str());
    }

    #[test]
    fn numeric_fields_take_only_unsigned_integers(since in json(), seqs in json()) {
        let join = serde_json::from_value::<JoinRequest>(json!({"room": "lobby", "since": since}));
        prop_assert_eq!(join.is_ok(), since.is_u64(), "since = {}", since);
        let mark = serde_json::from_value::<MarkReadRequest>(json!({"seqs": seqs}));
        let all_u64 = seqs.as_array().is_some_and(|a| a.iter().all(Value::is_u64));
        prop_assert_eq!(mark.is_ok(), all_u64, "seqs = {}", seqs);
    }

    #[test]
    fn deeply_nested_json_is_refused_without_overflow(depth in 1..20_000usize, arrays in any::<bool>()) {
        let raw = if arrays {
            "[".repeat(depth) + &"]".repeat(depth)
        } else {
            "{\"a\":".repeat(depth) + "1" + &"}".repeat(depth)
        };
        let _ = serde_json::from_str::<SendRequest>(&raw);
        let _ = serde_json::from_str::<JoinRequest>(&raw);
        let _ = serde_json::from_str::<MarkReadRequest>(&raw);
        let frame = format!("42[\"send\",{raw}]");
        let _ = wire::decode_engine(&frame);
        let _ = wire::decode_socket(&frame[1..]);
    }

    #[test]
    fn replies_round_trip(
        msg in stored_message(), code in "[a-z_]{1,24}", reason in text(), retry in prop::option::of(any::<u64>()),
    ) {
        round_trips(&Reply::Ok(msg))?;
        let error = ErrorReply { retry_after_ms: retry, ..ErrorReply::new(&code, reason.clone()) };
        let reply: Reply<StoredMessage> = Reply::Error(error);
        round_trips(&reply)?;
        // `retry_after_ms` is only written when there is one.
        let mut expected = json!({"code": code, "reason": reason});
        if let Some(ms) = retry {
            expected["retry_after_ms"] = ms.into();
        }
        prop_assert_eq!(serde_json::to_value(&reply).unwrap(), json!({"error": expected}));
    }

    #[test]
    fn rate_limited_replies_say_when_to_retry(what in "[a-z ]{1,20}", ms in any::<u64>()) {
        let error = ErrorReply::rate_limited(&what, ms);
        prop_assert_eq!(error.code.as_str(), "rate_limited");
        prop_assert_eq!(error.retry_after_ms, Some(ms));
        prop_assert!(error.reason.contains(&ms.to_string()), "{}", error.reason);
        round_trips(&error)?;
    }

    #[test]
    fn closing_events_round_trip(reason in text(), detail in text()) {
        round_trips(&Closing { reason, detail })?;
    }
}

// ---------------------------------------------------------------------------
// Wire: Engine.IO / Socket.IO framing
// ---------------------------------------------------------------------------

/// Text a WebSocket peer might send: garbage, or packets with garbage inside.
fn frame() -> impl Strategy<Value = String> {
    // Packet types and prefixes, valid and not ("|"-separated, the first empty).
    const PREFIXES: &str = "|0|1|2|3|4|40|41|42|43|44|45|46|47|4/|42/chat,|4212|43999|4218446744073709551616|7|b|\u{0}";
    let prefix = prop::sample::select(PREFIXES.split('|').collect::<Vec<_>>());
    prop_oneof![
        text(),
        (prefix.clone(), text()).prop_map(|(p, t)| format!("{p}{t}")),
        (prefix, json()).prop_map(|(p, v)| format!("{p}{v}")),
    ]
}

proptest! {
    #![proptest_config(config(384))]

    #[test]
    fn decoding_garbage_never_panics(raw in frame()) {
        match wire::decode_engine(&raw) {
            Ok(EnginePacket::Message(data)) => {
                prop_assert_eq!(format!("4{data}"), raw.as_str());
                let _ = wire::decode_socket(&data);
            }
            Ok(_) => prop_assert!(raw.starts_with(['0', '1', '2', '3', '5', '6'])),
            Err(_) => {}
        }
        // The packet type is the first character.
        let kind = match wire::decode_socket(&raw) {
            Ok(SocketPacket::Connect(_)) => '0',
            Ok(SocketPacket::Disconnect) => '1',
            Ok(SocketPacket::Event { .. }) => '2',
            Ok(SocketPacket::Ack { .. }) => '3',
            Ok(SocketPacket::ConnectError(_)) => '4',
            Err(_) => return Ok(()),
        };
        prop_assert!(raw.starts_with(kind), "{:?}", raw);
    }

    #[test]
    fn events_round_trip(name in text(), data in json(), ack in prop::option::of(any::<u64>())) {
        let frame = wire::event_frame(&name, &data, ack).unwrap();
        let EnginePacket::Message(packet) = wire::decode_engine(&frame).unwrap() else {
            return Err(TestCaseError::fail(format!("{frame} is not a message")));
        };
        prop_assert_eq!(wire::decode_socket(&packet).unwrap(), SocketPacket::Event { name, args: vec![data], ack });
    }

    #[test]
    fn namespaces_are_skipped(
        nsp in "/[a-z0-9/_-]{0,12}", name in text(), data in json(), ack in prop::option::of(any::<u64>()),
    ) {
        let plain = wire::event_frame(&name, &data, ack).unwrap();
        let with_nsp = format!("2{nsp},{}", &plain[2..]);
        prop_assert_eq!(wire::decode_socket(&with_nsp).unwrap(), wire::decode_socket(&plain[1..]).unwrap());
    }

    #[test]
    fn acks_round_trip(id in any::<u64>(), args in prop::collection::vec(json(), 0..4)) {
        let packet = format!("3{id}{}", Value::Array(args.clone()));
        prop_assert_eq!(wire::decode_socket(&packet).unwrap(), SocketPacket::Ack { id, args });
    }

    #[test]
    fn connects_round_trip(auth in prop::option::of(prop::collection::btree_map(key(), json(), 0..4))) {
        // Socket.IO's CONNECT carries an object (or nothing).
        let auth = auth.map(|m| Value::Object(m.into_iter().collect()));
        let frame = wire::connect_frame(auth.as_ref());
        let EnginePacket::Message(packet) = wire::decode_engine(&frame).unwrap() else {
            return Err(TestCaseError::fail(format!("{frame} is not a message")));
        };
        prop_assert_eq!(wire::decode_socket(&packet).unwrap(), SocketPacket::Connect(auth.unwrap_or(Value::Null)));
    }

    #[test]
    fn open_packets_decode(sid in text(), timings in any::<(u64, u64, u64)>()) {
        let (ping_interval, ping_timeout, max_payload) = timings;
        let data = json!({
            "sid": sid, "upgrades": [], "pingInterval": ping_interval, "pingTimeout": ping_timeout,
            "maxPayload": max_payload,
        });
        let EnginePacket::Open(info) = wire::decode_engine(&format!("0{data}")).unwrap() else {
            return Err(TestCaseError::fail("not an open packet"));
        };
        prop_assert_eq!(info.sid, sid);
        prop_assert_eq!((info.ping_interval, info.ping_timeout, info.max_payload), timings);
    }
}

proptest! {
    // Frames of up to 160,000 characters: fewer cases, each costs more.
    #![proptest_config(config(64))]

    #[test]
    fn huge_frames_decode_without_panicking(text in huge_text(), n in 0..4usize) {
        let frame = format!("42[\"send\",{}]", Value::from(text.repeat(n + 1)));
        let EnginePacket::Message(packet) = wire::decode_engine(&frame).unwrap() else {
            return Err(TestCaseError::fail("not a message"));
        };
        let is_event = matches!(wire::decode_socket(&packet), Ok(SocketPacket::Event { .. }));
        prop_assert!(is_event);
    }
}

// ---------------------------------------------------------------------------
// Time
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn timestamps_render_the_instant_they_are(
        ms in prop_oneof![any::<i64>(), -100_000_000_000_000i64..100_000_000_000_000],
    ) {
        let text = herald::time::rfc3339(ms);
        let parts = parse_rfc3339(&text);
        prop_assert!(parts.is_some(), "{} is not YYYY-MM-DDTHH:MM:SSZ", text);
        let [year, month, day, h, m, s] = parts.unwrap_or_default();
        prop_assert!((1..=12).contains(&month) && (1..=31).contains(&day), "{}", text);
        prop_assert!(h < 24 && m < 60 && s < 60, "{}", text);
        let secs = days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + s;
        prop_assert_eq!(secs, i128::from(ms.div_euclid(1000)), "{}", text);
        prop_assert_eq!(herald::time::clock(ms), format!("{h:02}:{m:02}"));
    }
}
