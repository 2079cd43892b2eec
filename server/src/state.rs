//! The state shared by every handler, and what pages read through it.
//!
//! Architecture invariant: this file imports no handler module (`web`,
//! `api`, `realtime`); the types of its fields are defined below them.

use std::sync::Arc;

use app::ssr::{Backend, BoxFuture, HistoryUnavailable, InboxView, PageAccess, PageSource, RecentHistory};
use axum::body::Body;
use axum::extract::FromRef;
use axum::http::Request;
use axum::response::Response;
use herald::protocol::PresenceSnapshot;
use herald::room::{RoomEntry, Seen};
use herald::{Identity, RoomName, Seq, UserId};
use leptos::prelude::{LeptosOptions, provide_context, use_context};
use socketioxide::SocketIo;

use crate::access::{Refusal, RoomAccess, Verdict};
use crate::auth::api_keys::ApiKeys;
use crate::auth::csrf::VisitorKeys;
use crate::auth::tokens::Tokens;
use crate::chat::Chat;
use crate::engine::Engine;
use crate::engine::fanout::{Fanout, Transports};
use crate::engine::presence::SharedPresence;
use crate::hooks::Webhooks;
use crate::http::admission::FormRate;
use crate::http::headers::{CookiePolicy, CspNonce};
use crate::http::shared_rate::KeyRate;
use crate::notify::Notifier;
use crate::ops::lifecycle::Drain;
use crate::ops::metrics::Metrics;
use crate::store::StoreError;
use crate::store::inbox::Inbox;

/// Size limits for HTTP handlers that read bodies themselves.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub publish_data_max: usize,
    pub body_max: usize,
}

/// Everything handlers need, cloned cheaply into each.
#[derive(Clone, FromRef)]
pub struct AppState {
    pub leptos_options: LeptosOptions,
    pub chat: Chat,
    /// Delivery: streams, windows, the broker.
    pub engine: Engine,
    /// Storing notifications and read state, then telling users.
    pub notifier: Notifier,
    /// The Socket.IO server, to broadcast from HTTP handlers.
    pub io: SocketIo,
    pub keys: VisitorKeys,
    pub cookies: CookiePolicy,
    pub tokens: Tokens,
    pub inbox: Inbox,
    pub api_keys: ApiKeys,
    /// One publish-rate bucket per API key, in the order of `api_keys`.
    pub publish_rate: Arc<KeyRate>,
    /// One bucket per API key for every other API call.
    #[from_ref(skip)]
    pub api_rate: Arc<KeyRate>,
    pub http_limits: HttpLimits,
    pub presence: SharedPresence,
    pub fanout: Fanout,
    pub transports: Transports,
    /// The no-JavaScript form's send rate.
    pub form_rate: Arc<FormRate>,
    pub drain: Drain,
    pub metrics: Arc<Metrics>,
    /// Who may enter which room.
    pub access: RoomAccess,
    /// Set when webhooks are configured.
    pub webhooks: Option<Webhooks>,
}

impl AppState {
    /// What every page render gets as Leptos context.
    pub fn page_context(&self) -> impl Fn() + Clone + Send + Sync + 'static {
        let backend = Backend(Arc::new(PageData {
            engine: self.engine.clone(),
            inbox: self.inbox.clone(),
            presence: self.presence.clone(),
            access: self.access.clone(),
        }));
        move || {
            provide_context(backend.clone());
            // The response's CSP nonce (see `http::headers`), for the inline
            // scripts Leptos writes.
            if let Some(nonce) = use_context::<axum::http::request::Parts>()
                .and_then(|parts| parts.extensions.get::<CspNonce>().cloned())
            {
                provide_context(leptos::nonce::Nonce::from_value(nonce.0));
            }
        }
    }

    /// Renders the app for `request` (its path picks the page).
    pub async fn render_page(&self, request: Request<Body>) -> Response {
        let options = self.leptos_options.clone();
        let handler =
            leptos_axum::render_app_async_with_context(self.page_context(), move || app::shell(options.clone()));
        handler(request).await
    }
}

/// What pages read, over the server's stores.
struct PageData {
    engine: Engine,
    inbox: Inbox,
    presence: SharedPresence,
    access: RoomAccess,
}

fn unavailable(what: &'static str) -> impl Fn(StoreError) -> HistoryUnavailable {
    move |err| {
        tracing::error!(%err, "reading {what} failed");
        HistoryUnavailable
    }
}

/// The most rooms a page lists.
const ROOMS_LISTED: usize = 30;

impl PageSource for PageData {
    fn rooms<'a>(
        &'a self,
        who: Option<&'a Identity>,
        seen: &'a Seen,
        current: &'a RoomName,
    ) -> BoxFuture<'a, Vec<RoomEntry>> {
        Box::pin(async move {
            // Who is where; a page without it lists what the visitor read.
            let active = self.presence.active().await.unwrap_or_else(|err| {
                tracing::debug!(%err, "listing rooms without presence");
                Vec::new()
            });
            let people: std::collections::HashMap<&RoomName, u64> =
                active.iter().map(|a| (&a.room, a.user_count + a.anonymous)).collect();
            let mut listed: Vec<(RoomName, bool)> = Vec::new();
            let lobby = RoomName::lobby();
            // The page's own room was checked to render it (so its verdict
            // is at hand); every other only by what this node knows without
            // asking the backend, so a slow backend never slows a page down.
            if let Verdict::Public | Verdict::Member = self.access.check(current, who).await {
                listed.push((current.clone(), self.access.effective(current).private));
            }
            for room in std::iter::once(&lobby).chain(seen.rooms()) {
                if listed.iter().any(|(r, _)| r == room) {
                    continue;
                }
                if let Some(private) = self.access.known_open(room, who) {
                    listed.push((room.clone(), private));
                }
            }
            let mut others: Vec<&crate::engine::presence::ActiveRoom> = active.iter().collect();
            others.sort_by_key(|a| std::cmp::Reverse(a.user_count + a.anonymous));
            for room in others.into_iter().map(|a| &a.room) {
                if listed.len() >= ROOMS_LISTED {
                    break;
                }
                if listed.iter().any(|(r, _)| r == room) {
                    continue;
                }
                if let Some(private) = self.access.known_open(room, who) {
                    listed.push((room.clone(), private));
                }
            }
            listed.truncate(ROOMS_LISTED);
            let read: Vec<RoomName> =
                listed.iter().filter(|(r, _)| seen.get(r).is_some()).map(|(r, _)| r.clone()).collect();
            let heads = self.engine.store().heads(&read).await.unwrap_or_else(|err| {
                tracing::debug!(%err, "listing rooms without their heads");
                Vec::new()
            });
            let head_of = |room: &RoomName| read.iter().position(|r| r == room).and_then(|i| heads.get(i).copied());
            let mut entries: Vec<RoomEntry> = listed
                .into_iter()
                .map(|(room, private)| RoomEntry {
                    people: people.get(&room).copied().unwrap_or(0),
                    unread: matches!((seen.get(&room), head_of(&room)), (Some(saw), Some(head)) if head > saw),
                    current: room == *current,
                    private,
                    room,
                })
                .collect();
            entries.sort_by(|a, b| (a.room != lobby, &a.room).cmp(&(b.room != lobby, &b.room)));
            entries
        })
    }

    fn seen_cookie(&self, seen: &Seen) -> String {
        crate::http::cookies::seen(seen).to_str().unwrap_or_default().to_owned()
    }

    fn access<'a>(&'a self, room: &'a RoomName, who: Option<&'a Identity>) -> BoxFuture<'a, PageAccess> {
        Box::pin(async move {
            match self.access.check(room, who).await {
                Verdict::Public => PageAccess::Public,
                Verdict::Member => PageAccess::Private,
                Verdict::Refused(Refusal::Unavailable) => PageAccess::Unknown,
                Verdict::Refused(_) => PageAccess::Hidden,
            }
        })
    }

    fn recent<'a>(&'a self, room: &'a RoomName) -> BoxFuture<'a, Result<RecentHistory, HistoryUnavailable>> {
        Box::pin(async move {
            let (head, messages) =
                self.engine.recent(room, herald::HISTORY_WINDOW).await.map_err(unavailable("room history"))?;
            Ok(RecentHistory { head, messages })
        })
    }

    fn inbox<'a>(&'a self, user: &'a UserId, limit: u64) -> BoxFuture<'a, Result<InboxView, HistoryUnavailable>> {
        Box::pin(async move {
            let recent = self.inbox.recent(user, limit).await.map_err(unavailable("inbox"))?;
            let unread = self.inbox.unread(user).await.map_err(unavailable("inbox"))?;
            Ok(InboxView { unread, recent })
        })
    }

    fn broadcast_head(&self) -> BoxFuture<'_, Result<Seq, HistoryUnavailable>> {
        Box::pin(async move { self.inbox.broadcast_head().await.map_err(unavailable("broadcast head")) })
    }

    fn presence<'a>(&'a self, room: &'a RoomName) -> BoxFuture<'a, PresenceSnapshot> {
        Box::pin(async move {
            // A page without presence still renders: the live page hears
            // the room's next snapshot.
            self.presence.snapshot(room).await.unwrap_or_else(|err| {
                tracing::warn!(%err, %room, "rendering a room without presence");
                PresenceSnapshot { room: room.to_string(), ..PresenceSnapshot::default() }
            })
        })
    }
}
