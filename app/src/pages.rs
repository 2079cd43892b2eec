//! Routed pages.

use herald::room::DEFAULT_ROOM;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

use crate::api::{InboxPage, RoomLoad, load_inbox, load_room};
use crate::components::chat::ChatRoom;
use crate::signals::describe;

/// `GET /`: the lobby.
#[component]
pub fn LobbyPage() -> impl IntoView {
    view! { <RoomView room=Signal::derive(|| DEFAULT_ROOM.to_owned()) /> }
}

/// `GET /r/{room}`.
#[component]
pub fn RoomRoute() -> impl IntoView {
    let params = use_params_map();
    view! { <RoomView room=Signal::derive(move || params.read().get("room").unwrap_or_default()) /> }
}

#[component]
fn RoomView(room: Signal<String>) -> impl IntoView {
    let page = Resource::new(move || room.get(), load_room);
    view! {
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match page.await {
                    Ok(RoomLoad::Found(page)) => view! { <ChatRoom page=*page /> }.into_any(),
                    Ok(RoomLoad::NotFound) => view! { <NotFound /> }.into_any(),
                    Err(_) => view! { <Unavailable /> }.into_any(),
                }
            })}
        </Suspense>
    }
}

/// `GET /notifications`: the signed-in user's inbox, readable and
/// markable without JavaScript.
#[component]
pub fn NotificationsPage() -> impl IntoView {
    let page = Resource::new(|| (), |()| load_inbox());
    view! {
        <Title text="Notifications · Herald" />
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match page.await {
                    Ok(page) => view! { <Inbox page /> }.into_any(),
                    Err(_) => view! { <Unavailable /> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn Inbox(page: InboxPage) -> impl IntoView {
    let csrf = page.account.csrf_token.clone();
    let Some(user) = page.account.user else {
        return view! {
            <main class="plain-page">
                <h1>"Notifications"</h1>
                <p>"Log in to see your notifications: open " <code>"/login?token=…"</code> " with a token from your app."</p>
                <p><a href="/">"Go to the lobby"</a></p>
            </main>
        }
        .into_any();
    };
    let all_csrf = csrf.clone();
    view! {
        <main class="plain-page inbox">
            <p><a href="/">"← Lobby"</a></p>
            <h1>"Notifications"</h1>
            <p class="inbox-summary">
                {user.name} ": " <span data-testid="unread-count">{user.unread}</span> " unread"
            </p>
            <form method="post" action="/notifications/read" class="mark-all">
                <input type="hidden" name="csrf" value=all_csrf />
                <input type="hidden" name="all" value="true" />
                <button type="submit" data-testid="mark-all-read">"Mark all read"</button>
            </form>
            <ul class="notes full" data-testid="notifications">
                {user
                    .notifications
                    .into_iter()
                    .map(|note| {
                        let csrf = csrf.clone();
                        let seq = note.seq.get();
                        let read = note.read;
                        view! {
                            <li class="note" class:unread=!read data-seq=seq>
                                <span class="event">{note.event.to_string()}</span>
                                <span class="text">{describe(&note)}</span>
                                <time datetime=herald::time::rfc3339(note.at_ms)>{herald::time::clock(note.at_ms)}</time>
                                {(!read)
                                    .then(|| {
                                        view! {
                                            <form method="post" action="/notifications/read">
                                                <input type="hidden" name="csrf" value=csrf />
                                                <input type="hidden" name="seq" value=seq />
                                                <button type="submit">"Mark read"</button>
                                            </form>
                                        }
                                    })}
                            </li>
                        }
                    })
                    .collect_view()}
            </ul>
        </main>
    }
    .into_any()
}

/// Shown for paths and room names that do not exist (status 404).
#[component]
pub fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
        response.set_status(axum::http::StatusCode::NOT_FOUND);
    }
    view! {
        <Title text="Not found · Herald" />
        <main class="plain-page">
            <h1>"Nothing here"</h1>
            <p>"Room names are 1 to 64 characters of a–z, 0–9, “_” and “-”."</p>
            <p><a href="/">"Go to the lobby"</a></p>
        </main>
    }
}

/// Shown when history cannot be read (status 503).
#[component]
fn Unavailable() -> impl IntoView {
    view! {
        <Title text="Unavailable · Herald" />
        <main class="plain-page">
            <h1>"Herald is unavailable"</h1>
            <p>"Message history can't be read right now. Try again in a moment."</p>
        </main>
    }
}
