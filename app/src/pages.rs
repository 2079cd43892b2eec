//! Routed pages.

use herald::room::DEFAULT_ROOM;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

use crate::api::{RoomLoad, load_room};
use crate::components::chat::ChatRoom;

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
                    Ok(RoomLoad::Found(page)) => view! { <ChatRoom page /> }.into_any(),
                    Ok(RoomLoad::NotFound) => view! { <NotFound /> }.into_any(),
                    Err(_) => view! { <Unavailable /> }.into_any(),
                }
            })}
        </Suspense>
    }
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
