//! # Herald's domain and wire protocol
//!
//! This crate is shared by every other part of Herald — the Leptos `app`
//! (compiled for the server and for the browser), the `server`, tests and
//! benchmarks — so it does no I/O and compiles for `wasm32` and native alike.
//!
//! ## Layout
//! - [`room`]: [`RoomName`], the validated name of a chat room.
//! - [`message`]: the validated parts of a chat message ([`MessageBody`],
//!   [`DisplayName`], [`ClientMsgId`]), sequence numbers ([`Seq`]) and the
//!   stored record every client sees ([`StoredMessage`]).
//! - [`notification`]: [`notification::Notification`], what a backend
//!   publishes to a user or to everyone, and its streams.
//! - [`protocol`]: Socket.IO event names and the JSON payloads of each event
//!   and acknowledgement. `docs/PROTOCOL.md` documents the same contract.
//! - [`user`]: [`UserId`] and [`Identity`], who a signed token says a
//!   client is.
//! - [`wire`]: the small part of Engine.IO v4 / Socket.IO v5 framing a
//!   client needs (the browser client and the integration tests use it).
//! - [`time`]: timestamp rendering that gives the same text on the server and
//!   in the browser, so hydration never disagrees with server rendering.
//!
//! Values are parsed at the boundary: every newtype is built only through
//! `parse`, which enforces its rules, so code past the boundary trusts it.

/// Implements `Deserialize` (through the type's `parse`, so deserializing
/// validates) and `Display` for string newtypes.
macro_rules! validated_deserialize {
    ($($ty:ty),*) => {$(
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = <String as serde::Deserialize>::deserialize(d)?;
                Self::parse(&raw).map_err(serde::de::Error::custom)
            }
        }
        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    )*};
}

pub mod message;
pub mod notification;
pub mod protocol;
pub mod room;
pub mod time;
pub mod user;
pub mod wire;

pub use message::{ClientMsgId, DisplayName, MessageBody, NewMessage, Seq, StoredMessage};
pub use room::RoomName;
pub use user::{Identity, UserId};

/// How many messages a room page shows, and the window of history a room page
/// is rendered from.
pub const HISTORY_WINDOW: u64 = 50;
