//! The account corner of every page: who is signed in, the notification
//! bell with its unread count and list, and toasts for arriving
//! notifications.

use herald::Seq;
use herald::notification::{Notification, Stream};
use herald::protocol::ReadUpdate;
use leptos::prelude::*;

use crate::api::{Account, SignedIn};

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

/// Header corner: bell + list for signed-in users, and logout.
#[component]
pub fn AccountBar(account: Account, notes: NoteSignals, #[prop(into)] on_mark: Callback<MarkRead>) -> impl IntoView {
    let Some(user) = account.user else {
        return view! { <span class="account anonymous" data-testid="account">"Guest"</span> }.into_any();
    };
    let open = RwSignal::new(false);
    let toggle = move |ev: leptos::ev::MouseEvent| {
        ev.prevent_default();
        open.update(|o| *o = !*o);
    };
    view! {
        <div class="account" data-testid="account">
            <a class="bell" href="/notifications" data-testid="bell" aria-label="Notifications" on:click=toggle>
                <svg class="bell-icon" viewBox="0 0 24 24" width="20" height="20" aria-hidden="true">
                    <path d="M12 2a6 6 0 0 0-6 6v3.6l-1.7 3.4A1 1 0 0 0 5.2 16.5h13.6a1 1 0 0 0 .9-1.5L18 11.6V8a6 6 0 0 0-6-6Zm0 20a3 3 0 0 0 2.8-2h-5.6A3 3 0 0 0 12 22Z" />
                </svg>
                <span class="count" data-testid="unread-count" data-count=move || notes.unread.get()>
                    {move || notes.unread.get()}
                </span>
            </a>
            <div class="note-panel" data-testid="note-panel" hidden=move || !open.get()>
                <div class="note-panel-head">
                    <strong>"Notifications"</strong>
                    <button type="button" data-testid="mark-all-read" on:click=move |_| on_mark.run(MarkRead { seqs: Vec::new(), all: true })>
                        "Mark all read"
                    </button>
                </div>
                <NotificationList notes on_mark />
                <a class="see-all" href="/notifications">"All notifications"</a>
            </div>
            <span class="user-name" data-testid="user-name">{user.name}</span>
            <form method="post" action="/logout" class="logout">
                <input type="hidden" name="csrf" value=account.csrf_token />
                <button type="submit">"Log out"</button>
            </form>
        </div>
    }
    .into_any()
}

#[component]
fn NotificationList(notes: NoteSignals, on_mark: Callback<MarkRead>) -> impl IntoView {
    view! {
        <ul class="notes" data-testid="notifications">
            <For each=move || notes.items.get() key=|n| (n.id.clone(), n.read) let:note>
                {
                    let seq = note.seq.get();
                    let read = note.read;
                    view! {
                        <li
                            class="note"
                            class:unread=!read
                            data-seq=seq
                            on:click=move |_| {
                                if !read {
                                    on_mark.run(MarkRead { seqs: vec![seq], all: false });
                                }
                            }
                        >
                            <span class="event">{note.event.to_string()}</span>
                            <span class="text">{describe(&note)}</span>
                        </li>
                    }
                }
            </For>
        </ul>
    }
}

/// Toasts for notifications arriving while the page is open.
#[component]
pub fn Toasts(notes: NoteSignals) -> impl IntoView {
    view! {
        <div class="toasts" data-testid="toasts" aria-live="polite">
            <For each=move || notes.toasts.get() key=|t| t.id.clone() let:toast>
                {
                    let id = toast.id.clone();
                    view! {
                        <div class="toast" role="status">
                            <span>{toast.text}</span>
                            <button type="button" aria-label="Dismiss" on:click=move |_| notes.dismiss(&id)>"×"</button>
                        </div>
                    }
                }
            </For>
        </div>
    }
}
