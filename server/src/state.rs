//! The state shared by every handler.

use std::sync::Arc;

use app::ssr::{Backend, BoxFuture, ChatHistory, HistoryUnavailable, RecentHistory};
use axum::body::Body;
use axum::extract::FromRef;
use axum::http::Request;
use axum::response::Response;
use herald::RoomName;
use leptos::prelude::{LeptosOptions, provide_context};
use socketioxide::SocketIo;

use crate::auth::Tokens;
use crate::chat::Chat;
use crate::inbox::Inbox;
use crate::presence::SharedPresence;
use crate::publish::ApiKeys;
use crate::store::Store;
use crate::visitor::VisitorKeys;

/// Everything handlers need, cloned cheaply into each.
#[derive(Clone, FromRef)]
pub struct AppState {
    pub leptos_options: LeptosOptions,
    pub chat: Chat,
    /// The Socket.IO server, to broadcast from HTTP handlers.
    pub io: SocketIo,
    pub keys: VisitorKeys,
    pub tokens: Tokens,
    pub inbox: Inbox,
    pub api_keys: ApiKeys,
    pub presence: SharedPresence,
}

impl AppState {
    /// What every page render gets as Leptos context.
    pub fn page_context(&self) -> impl Fn() + Clone + Send + Sync + 'static {
        let backend = Backend(Arc::new(self.chat.store().clone()));
        move || provide_context(backend.clone())
    }

    /// Renders the app for `request` (its path picks the page).
    pub async fn render_page(&self, request: Request<Body>) -> Response {
        let options = self.leptos_options.clone();
        let handler =
            leptos_axum::render_app_async_with_context(self.page_context(), move || app::shell(options.clone()));
        handler(request).await
    }
}

impl ChatHistory for Store {
    fn recent<'a>(&'a self, room: &'a RoomName) -> BoxFuture<'a, Result<RecentHistory, HistoryUnavailable>> {
        Box::pin(async move {
            match Store::recent(self, room).await {
                Ok((head, messages)) => Ok(RecentHistory { head, messages }),
                Err(err) => {
                    tracing::error!(%err, %room, "reading room history failed");
                    Err(HistoryUnavailable)
                }
            }
        })
    }
}
