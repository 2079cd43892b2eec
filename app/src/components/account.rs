//! The account corner of every page: who is signed in, the notification
//! bell with its unread count and list, and toasts for arriving
//! notifications.

use leptos::prelude::*;

use crate::api::Account;
use crate::signals::{MarkRead, NoteSignals, describe};

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
