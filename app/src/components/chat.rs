//! A room: header, messages and composer, kept live in the browser.

use herald::protocol::PresenceSnapshot;
use herald::{DisplayName, MessageBody};
use leptos::prelude::*;
use leptos_meta::Title;

use super::account::{AccountBar, Toasts};
use super::composer::Composer;
use super::message_list::MessageList;
use super::room_list::RoomList;
use super::status::ConnStatus;
use crate::api::RoomPage;
use crate::signals::{ChatSignals, ConnState, MarkRead, NoteSignals, Outgoing};
use crate::timeline::{Pending, Timeline};

/// How many sends may wait for the connection at once; past it the composer
/// says so instead of queueing without bound.
const OUTBOX_CAPACITY: usize = 32;

/// Shown (only) to visitors without JavaScript.
const NOJS_NOTICE: &str = r#"<p class="notice" data-testid="nojs-notice">JavaScript is off, so this page does not update live: reload it to see new messages. Sending still works.</p>"#;

#[component]
pub fn ChatRoom(page: RoomPage) -> impl IntoView {
    let RoomPage {
        room,
        messages,
        since,
        name,
        csrf_token,
        form_client_id,
        form_error,
        draft,
        presence,
        account,
        private,
        rooms,
    } = page;
    let signals = ChatSignals {
        timeline: RwSignal::new(Timeline::new(room.clone(), messages)),
        status: RwSignal::new(ConnState::Static),
        error: RwSignal::new(form_error),
        notice: RwSignal::new(None),
        draft: RwSignal::new(draft),
        presence: RwSignal::new(presence),
        notes: NoteSignals::new(&account),
    };
    let name_locked = account.user.is_some();
    let name = RwSignal::new(name);
    let draft = signals.draft;

    let (outbox, outbox_rx) = futures::channel::mpsc::channel::<Outgoing>(OUTBOX_CAPACITY);
    let outbox = StoredValue::new(outbox);
    #[cfg(feature = "hydrate")]
    {
        let rx = StoredValue::new(Some(outbox_rx));
        let room = room.clone();
        Effect::new(move |_| {
            if let Some(rx) = rx.try_update_value(Option::take).flatten() {
                crate::live::spawn(room.clone(), since, signals, rx);
            }
        });
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = (outbox_rx, since);

    let send = Callback::new(move |()| {
        let body = draft.get_untracked();
        let sender = name.get_untracked();
        let checked = DisplayName::parse(&sender).and_then(|_| MessageBody::parse(&body));
        if let Err(err) = checked {
            signals.error.set(Some(err.to_string()));
            return;
        }
        let pending = Pending { client_id: new_client_id(), name: sender, body };
        match outbox.with_value(|tx| tx.clone().try_send(Outgoing::Send(pending.clone()))) {
            Ok(()) => {
                signals.timeline.update(|t| t.add_pending(pending));
                signals.error.set(None);
                draft.set(String::new());
            }
            Err(_) => signals.error.set(Some("Too many messages waiting to be sent; try again shortly.".into())),
        }
    });
    let mark = Callback::new(move |request: MarkRead| {
        if outbox.with_value(|tx| tx.clone().try_send(Outgoing::MarkRead(request))).is_err() {
            signals.error.set(Some("Too many requests waiting; try again shortly.".into()));
        }
    });
    let rename = Callback::new(move |value: String| {
        remember_name(&value);
        name.set(value);
    });

    let title = format!("#{room} · Herald");
    view! {
        <Title text=title />
        <div class="chat">
            <header class="topbar">
                <a class="brand" href="/">"Herald"</a>
                <h1 class="room-name">"#" {room.to_string()}</h1>
                {private
                    .then(|| {
                        view! {
                            <span class="private-mark" data-testid="private-room" title="Only some users may enter this room">
                                "private"
                            </span>
                        }
                    })}
                <ConnStatus state=signals.status.read_only() />
                <AccountBar account notes=signals.notes on_mark=mark />
            </header>
            <RoomList rooms />
            <PresenceLine presence=signals.presence.read_only() />
            <noscript inner_html=NOJS_NOTICE></noscript>
            <p class="notice live-notice" hidden=move || signals.notice.with(Option::is_none)>
                {move || signals.notice.get()}
            </p>
            <MessageList timeline=signals.timeline.read_only() />
            <Composer
                room
                csrf_token
                form_client_id
                name
                draft
                error=signals.error
                on_send=send
                on_rename=rename
                name_locked
            />
            <Toasts notes=signals.notes />
        </div>
    }
}

/// Who is in the room.
#[component]
fn PresenceLine(presence: ReadSignal<PresenceSnapshot>) -> impl IntoView {
    let names = move || presence.with(|p| p.users.iter().map(|u| u.name.clone()).collect::<Vec<_>>().join(", "));
    let guests = move || {
        let anonymous = presence.with(|p| p.anonymous);
        match anonymous {
            0 => String::new(),
            1 => "1 guest".to_owned(),
            n => format!("{n} guests"),
        }
    };
    let unnamed = move || presence.with(|p| p.user_count.saturating_sub(p.users.len() as u64));
    view! {
        <p class="presence" data-testid="presence">
            <span class="label">"Here now: "</span>
            <span class="users" data-testid="presence-users">{names}</span>
            {move || (unnamed() > 0).then(|| format!(" and {} more", unnamed()))}
            " "
            <span class="guests" data-testid="presence-guests">{guests}</span>
        </p>
    }
}

/// A fresh client message id (16 random characters).
fn new_client_id() -> String {
    #[cfg(feature = "hydrate")]
    {
        crate::live::random_id()
    }
    #[cfg(not(feature = "hydrate"))]
    {
        // Sends only happen in the browser.
        String::new()
    }
}

/// Keeps the chosen name in a cookie, so the server-rendered page and the
/// no-JavaScript form use it too.
fn remember_name(name: &str) {
    #[cfg(feature = "hydrate")]
    crate::live::set_name_cookie(name);
    #[cfg(not(feature = "hydrate"))]
    let _ = name;
}
