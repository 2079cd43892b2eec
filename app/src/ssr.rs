//! What the server provides to pages when rendering them.
//!
//! The server inserts [`Visitor`] (and, after a rejected form post,
//! [`FormRejection`]) into each request's extensions, and provides
//! [`Backend`] as Leptos context. Keeping these as plain types and a trait
//! here means this crate never depends on the server or on MongoDB.

use std::{future::Future, pin::Pin, sync::Arc};

use herald::notification::Notification;
use herald::protocol::PresenceSnapshot;
use herald::room::{RoomEntry, Seen};
use herald::{DisplayName, Identity, RoomName, Seq, StoredMessage, UserId};

/// The visitor a page is rendered for.
#[derive(Debug, Clone)]
pub struct Visitor {
    /// The display name from the visitor's cookie, or their guest name.
    pub name: DisplayName,
    /// The token the page's form must send back (see the server's `csrf`).
    pub csrf_token: String,
    /// A fresh client message id for this render's no-JavaScript form.
    pub form_client_id: String,
    /// The signed-in user, when the session cookie holds a valid token.
    pub identity: Option<Identity>,
    /// The rooms this browser has read, and how far (`herald_seen`).
    pub seen: Seen,
}

/// A form post the server rejected; the page is rendered again with the
/// error shown and the visitor's text kept.
#[derive(Debug, Clone)]
pub struct FormRejection {
    pub error: String,
    pub name: String,
    pub body: String,
}

/// A room's recent history: its head sequence and the messages after
/// `head - HISTORY_WINDOW`, oldest first.
#[derive(Debug, Clone)]
pub struct RecentHistory {
    pub head: Seq,
    pub messages: Vec<StoredMessage>,
}

/// History could not be read (storage unreachable).
#[derive(Debug, Clone, thiserror::Error)]
#[error("message history is unavailable")]
pub struct HistoryUnavailable;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A user's inbox as a page shows it.
#[derive(Debug, Clone)]
pub struct InboxView {
    pub unread: u64,
    /// Newest first.
    pub recent: Vec<Notification>,
}

/// Whether a visitor may see a room's page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageAccess {
    Public,
    /// A private room this visitor may enter.
    Private,
    /// A private room this visitor may not enter: its page answers as if
    /// it did not exist.
    Hidden,
    /// The check could not be made (the backend did not answer).
    Unknown,
}

/// What pages read from the server: access, history, inboxes, presence.
/// Implemented by the server over its storage.
pub trait PageSource: Send + Sync + 'static {
    /// Whether `who` (`None`: not signed in) may see `room`.
    fn access<'a>(&'a self, room: &'a RoomName, who: Option<&'a Identity>) -> BoxFuture<'a, PageAccess>;
    fn recent<'a>(&'a self, room: &'a RoomName) -> BoxFuture<'a, Result<RecentHistory, HistoryUnavailable>>;
    fn inbox<'a>(&'a self, user: &'a UserId, limit: u64) -> BoxFuture<'a, Result<InboxView, HistoryUnavailable>>;
    /// The broadcast stream's newest sequence: a page toasts only what
    /// follows it.
    fn broadcast_head(&self) -> BoxFuture<'_, Result<Seq, HistoryUnavailable>>;
    /// Who is in the room; empty when that is unknown for now.
    fn presence<'a>(&'a self, room: &'a RoomName) -> BoxFuture<'a, PresenceSnapshot>;
    /// The rooms to list for `who` on `current`'s page: those with people
    /// in them, those this browser has read (`seen`, marked when they have
    /// newer messages), the lobby; only rooms `who` may enter.
    fn rooms<'a>(
        &'a self,
        who: Option<&'a Identity>,
        seen: &'a Seen,
        current: &'a RoomName,
    ) -> BoxFuture<'a, Vec<RoomEntry>>;
    /// The `Set-Cookie` value that remembers `seen`.
    fn seen_cookie(&self, seen: &Seen) -> String;
}

/// The server's page data access, provided as Leptos context.
#[derive(Clone)]
pub struct Backend(pub Arc<dyn PageSource>);
