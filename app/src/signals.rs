//! The state a room page shares between its UI and its live connection:
//! the signals the connection drives ([`ChatSignals`], [`NoteSignals`]),
//! the connection's state ([`ConnState`]) and what the page asks the
//! connection to do ([`Outgoing`], [`MarkRead`]).
//!
//! It sits below `components/` and `live` so that both can use these types
//! without either depending on the other: the components create and show
//! them, the live client (browser only) updates them. It uses only `api`
//! (the page's account) and `timeline`.

use herald::Seq;
use herald::notification::{Notification, Stream};
use herald::protocol::{PresenceSnapshot, ReadUpdate};
use leptos::prelude::*;

use crate::api::{Account, SignedIn};
use crate::timeline::{Pending, Timeline};

/// The state of the page's live connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnState {
    /// Server-rendered and not (yet) taken over by the browser: what a
    /// visitor without JavaScript keeps seeing.
    Static,
    Connecting,
    Connected,
    /// The connection dropped; retrying.
    Reconnecting,
    /// Several attempts in a row failed; still retrying, less often.
    Offline,
}

impl ConnState {
    pub fn key(self) -> &'static str {
        match self {
            Self::Static => "static",
            Self::Connecting => "connecting",
            Self::Connected => "connected",
            Self::Reconnecting => "reconnecting",
            Self::Offline => "offline",
        }
    }
}

/// The signals a room's live connection drives.
#[derive(Clone, Copy)]
pub struct ChatSignals {
    pub timeline: RwSignal<Timeline>,
    pub status: RwSignal<ConnState>,
    pub error: RwSignal<Option<String>>,
    pub notice: RwSignal<Option<String>>,
    /// The composer's text; a refused message is put back into it.
    pub draft: RwSignal<String>,
    pub presence: RwSignal<PresenceSnapshot>,
    pub notes: NoteSignals,
}

/// What the page asks its live connection to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Outgoing {
    Send(Pending),
    MarkRead(MarkRead),
}

/// The most notifications the bell's list keeps.
const LIST_MAX: usize = 50;
/// The most toasts on screen at once; older ones make room.
const TOASTS_MAX: usize = 4;

/// A notification shown as a toast.
#[derive(Debug, Clone, PartialEq)]
pub struct Toast {
    pub id: String,
    pub text: String,
}

/// The state the bell, the list and the toasts share, driven by the live
/// connection.
#[derive(Clone, Copy)]
pub struct NoteSignals {
    pub signed_in: bool,
    pub unread: RwSignal<u64>,
    /// Inbox notifications, newest first.
    pub items: RwSignal<Vec<Notification>>,
    pub toasts: RwSignal<Vec<Toast>>,
    /// The newest broadcast sequence seen (or the page's render point).
    pub broadcast_seen: RwSignal<Seq>,
}

impl NoteSignals {
    pub fn new(account: &Account) -> Self {
        let (unread, items) = match &account.user {
            Some(SignedIn { unread, notifications, .. }) => (*unread, notifications.clone()),
            None => (0, Vec::new()),
        };
        Self {
            signed_in: account.user.is_some(),
            unread: RwSignal::new(unread),
            items: RwSignal::new(items),
            toasts: RwSignal::new(Vec::new()),
            broadcast_seen: RwSignal::new(account.broadcast_since),
        }
    }

    /// The newest inbox sequence this page has.
    pub fn inbox_seen(&self) -> Seq {
        self.items.with_untracked(|items| items.iter().map(|n| n.seq).max().unwrap_or_default())
    }

    /// Takes in a notification (live or from a sync); returns whether it was
    /// new. New ones are toasted, and inbox ones listed and counted.
    pub fn receive(&self, note: Notification) -> bool {
        let fresh = match note.stream {
            Stream::Inbox => {
                let known = self.items.with_untracked(|items| items.iter().any(|n| n.id == note.id));
                if !known {
                    if !note.read {
                        self.unread.update(|n| *n += 1);
                    }
                    self.items.update(|items| {
                        items.insert(0, note.clone());
                        items.sort_by_key(|n| std::cmp::Reverse(n.seq));
                        items.truncate(LIST_MAX);
                    });
                }
                !known
            }
            Stream::Broadcast => {
                let fresh = note.seq > self.broadcast_seen.get_untracked();
                if fresh {
                    self.broadcast_seen.set(note.seq);
                }
                fresh
            }
        };
        if fresh {
            self.toasts.update(|toasts| {
                toasts.push(Toast { id: note.id.clone(), text: describe(&note) });
                if toasts.len() > TOASTS_MAX {
                    toasts.remove(0);
                }
            });
        }
        fresh
    }

    /// Applies a read-state change made on any of the user's connections.
    pub fn apply_read(&self, update: &ReadUpdate) {
        self.items.update(|items| {
            for item in items.iter_mut() {
                if update.all || update.seqs.contains(&item.seq.get()) {
                    item.read = true;
                }
            }
        });
        self.unread.set(update.unread);
    }

    pub fn dismiss(&self, id: &str) {
        self.toasts.update(|toasts| toasts.retain(|t| t.id != id));
    }
}

/// The text a notification is shown with: its message, or its data as JSON.
pub fn describe(note: &Notification) -> String {
    match &note.data {
        serde_json::Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// A command from the account UI to the live connection.
#[derive(Debug, Clone, PartialEq)]
pub struct MarkRead {
    pub seqs: Vec<u64>,
    pub all: bool,
}
