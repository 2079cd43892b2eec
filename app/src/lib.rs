//! # Herald's web UI
//!
//! Leptos components, routes and server functions. The crate is compiled
//! twice: with `ssr` inside the server (rendering pages and answering server
//! functions) and with `hydrate` into the browser's WASM (taking the
//! server-rendered page over and keeping it live).
//!
//! ## Layout
//! - [`shell`] and [`App`]: the HTML document and the routes.
//! - [`pages`]: the room page (`/`, `/r/{room}`) and the not-found page.
//! - [`components`]: message list, composer, connection status.
//! - [`signals`]: the state a room page shares between its components and
//!   its live connection (chat and notification signals, connection state,
//!   what the page asks the connection to do), so neither depends on the other.
//! - [`api`]: [`api::RoomPage`], the data a room page renders, and the
//!   `load_room` server function that produces it.
//! - [`timeline`]: the client-side model of a room (stored messages by
//!   sequence, messages still being sent), pure and unit-tested.
//! - `live` (browser only): the Socket.IO client that joins the room from the
//!   rendered sequence number, sends, and reconnects with backoff.
//! - [`ssr`] (server only): what the server provides to pages — history
//!   access, the visitor, a rejected form — so that this crate never talks
//!   to MongoDB itself.

use leptos::prelude::*;
use leptos_meta::{MetaTags, Stylesheet, Title, provide_meta_context};
use leptos_router::{
    ParamSegment, SsrMode, StaticSegment,
    components::{Route, Router, Routes},
};

pub mod api;
pub mod components;
#[cfg(feature = "hydrate")]
mod live;
pub mod pages;
pub mod signals;
#[cfg(feature = "ssr")]
pub mod ssr;
pub mod timeline;

/// The HTML document around the app, rendered on the server.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                <meta name="color-scheme" content="light dark" />
                <link rel="icon" href="/favicon.ico" />
                <HydrationScripts options />
                <MetaTags />
            </head>
            <body>
                <App />
            </body>
        </html>
    }
}

/// The root component: stylesheet, title and routes.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    view! {
        <Stylesheet id="herald" href="/pkg/herald.css" />
        <Title text="Herald" />
        <Router>
            <Routes fallback=pages::NotFound>
                // Async: the whole page (history included) is rendered
                // before the first byte is sent, so it reads without
                // JavaScript and its status code can still be set.
                <Route path=StaticSegment("") view=pages::LobbyPage ssr=SsrMode::Async />
                <Route path=StaticSegment("notifications") view=pages::NotificationsPage ssr=SsrMode::Async />
                <Route
                    path=(StaticSegment("r"), ParamSegment("room"))
                    view=pages::RoomRoute
                    ssr=SsrMode::Async
                />
            </Routes>
        </Router>
    }
}
