//! Building and running the application.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use app::{App, shell};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use leptos::prelude::LeptosOptions;
use leptos_axum::{LeptosRoutes, generate_route_list};
use socketioxide::SocketIo;
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;

use crate::auth::Tokens;
use crate::chat::Chat;
use crate::config::Config;
use crate::inbox::Inbox;
use crate::presence::{LocalPresence, SharedPresence};
use crate::publish::ApiKeys;
use crate::realtime::Gate;
use crate::state::AppState;
use crate::store::Store;
use crate::visitor::{self, VisitorKeys};
use crate::{form, inbox_form, publish, realtime, session};

/// The largest HTTP request body accepted (a form post is far smaller).
const HTTP_BODY_MAX: usize = 64 * 1024;
/// The largest Engine.IO packet accepted from a client: a message of the
/// longest body (2,000 characters of up to 4 bytes) plus its envelope fits
/// with room to spare.
const SOCKET_PAYLOAD_MAX: u64 = 32 * 1024;
/// Packets queued for one socket before emits to it fail.
const SOCKET_BUFFER_PACKETS: usize = 256;

/// A built Herald server, bound to its port and ready to run.
pub struct Application {
    listener: TcpListener,
    router: Router,
    io: SocketIo,
}

impl Application {
    /// Connects to storage, prepares indexes and binds the listener.
    pub async fn build(config: Config, leptos_options: LeptosOptions) -> anyhow::Result<Self> {
        let store = Store::connect(&config.mongo_uri, &config.mongo_db).await.context("connecting to MongoDB")?;
        store.ensure_indexes().await.context("creating MongoDB indexes")?;
        let inbox = Inbox::new(store.database(), config.retention);
        inbox.ensure_indexes().await.context("creating MongoDB indexes")?;
        let chat = Chat::new(store);

        let tokens = Tokens::new(&config.token_secrets);
        let presence: SharedPresence = Arc::new(LocalPresence::default());
        let gate = Gate::new(tokens.clone(), config.allow_anonymous);
        let (socket_layer, io) = SocketIo::builder()
            .with_state(chat.clone())
            .with_state(gate)
            .with_state(inbox.clone())
            .with_state(presence.clone())
            .max_payload(SOCKET_PAYLOAD_MAX)
            .max_buffer_size(SOCKET_BUFFER_PACKETS)
            .build_layer();
        realtime::register(&io);

        let state = AppState {
            leptos_options,
            chat,
            io: io.clone(),
            keys: VisitorKeys::new(config.secret.as_ref(), config.cookie_secure),
            tokens,
            inbox,
            api_keys: ApiKeys::new(&config.api_keys),
            presence,
        };
        let router = router(state).layer(socket_layer);
        let listener = TcpListener::bind(config.addr).await.with_context(|| format!("binding {}", config.addr))?;
        Ok(Self { listener, router, io })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    /// Serves until `shutdown` completes, then closes every Socket.IO
    /// connection (axum's graceful shutdown does not reach upgraded
    /// WebSockets) and lets in-flight requests finish.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let io = self.io;
        let signal = async move {
            shutdown.await;
            tracing::info!("shutting down: closing live connections");
            // Bounded: a stuck client must not hold the process up.
            let _ = tokio::time::timeout(Duration::from_secs(5), io.close()).await;
        };
        axum::serve(self.listener, self.router).with_graceful_shutdown(signal).await
    }
}

/// Bounds the readiness probe so a dead database answers "not ready" quickly
/// instead of after the driver's server-selection timeout.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /readyz`: 200 when MongoDB answers, 503 otherwise.
async fn readyz(axum::extract::State(state): axum::extract::State<AppState>) -> (axum::http::StatusCode, &'static str) {
    match tokio::time::timeout(READY_TIMEOUT, state.chat.store().ping()).await {
        Ok(Ok(())) => (axum::http::StatusCode::OK, "ready"),
        _ => (axum::http::StatusCode::SERVICE_UNAVAILABLE, "not ready: the database does not answer"),
    }
}

/// The HTTP routes (the Socket.IO layer is added around them by `build`).
pub fn router(state: AppState) -> Router {
    let options = state.leptos_options.clone();
    let routes = generate_route_list(App);
    Router::new()
        .route("/add_message", post(form::add_message))
        .route("/api/publish", post(publish::publish))
        .route("/api/presence/{room}", get(publish::presence))
        .route("/notifications/read", post(inbox_form::mark_read_form))
        .route("/login", get(session::login))
        .route("/logout", post(session::logout))
        .route("/healthz", get(async || "ok"))
        .route("/readyz", get(readyz))
        .leptos_routes_with_context(&state, routes, state.page_context(), move || shell(options.clone()))
        .fallback(leptos_axum::file_and_error_handler_with_context::<AppState, _>(state.page_context(), shell))
        .layer(axum::middleware::from_fn_with_state(state.clone(), visitor::identify))
        .layer(DefaultBodyLimit::max(HTTP_BODY_MAX))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
