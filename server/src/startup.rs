//! Building and running the application.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use app::{App, shell};
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use herald::protocol::Closing;
use leptos::prelude::LeptosOptions;
use leptos_axum::{AxumRouteListing, LeptosRoutes, generate_route_list};
use socketioxide::{SocketIo, TransportType};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::access::RoomAccess;
use crate::api::{self, publish};
use crate::auth::api_keys::ApiKeys;
use crate::auth::csrf::VisitorKeys;
use crate::auth::tokens::Tokens;
use crate::chat::{Chat, MessageLimits};
use crate::config::Config;
use crate::engine::fanout::{Fanout, Transports};
use crate::engine::presence::{Announcer, LocalPresence, SharedPresence};
use crate::engine::redis_presence::RedisPresence;
use crate::engine::{self, Engine};
use crate::hooks::Webhooks;
use crate::http::admission::{ConnectionCaps, FormRate, WindowCaps};
use crate::http::conn::KillableListener;
use crate::http::headers::{self, CookiePolicy};
use crate::http::serve;
use crate::http::shared_rate::{KeyRate, redis_for_rates};
use crate::notify::Notifier;
use crate::ops::lifecycle::Drain;
use crate::ops::metrics::{Live, Metrics};
use crate::realtime;
use crate::realtime::socket::Gate;
use crate::realtime::transport::{self, TransportGuard};
use crate::state::{AppState, HttpLimits};
use crate::store::Bounds;
use crate::store::hooks::HookQueue;
use crate::store::inbox::Inbox;
use crate::store::messages::Store;
use crate::store::rooms::RoomSettingsStore;
use crate::web::{inbox, login, send, visitor};

/// Each WebSocket's read buffer (socketioxide's default is 4 KiB). It is
/// allocated for the connection's life, so at 4 KiB it would be half of what
/// an idle connection costs (docs/ARCHITECTURE.md "Performance"). 256 bytes
/// hold the events a client sends most (a `join`, a `sync`, a short chat
/// line); a bigger one is read in several steps, one read call each, which
/// costs microseconds on the rare big message.
const WS_READ_BUFFER_BYTES: usize = 256;

/// A built Herald server, bound to its port and ready to run.
pub struct Application {
    listener: KillableListener,
    router: Router,
    io: SocketIo,
    engine: Engine,
    announcer: Announcer,
    drain: Drain,
    shutdown_timeout: Duration,
    head_timeout: Duration,
}

/// What every edge of the server shares: storage, the engine and the
/// services above it, and the server-wide bookkeeping.
struct Core {
    metrics: Arc<Metrics>,
    transports: Transports,
    fanout: Fanout,
    engine: Engine,
    chat: Chat,
    notifier: Notifier,
    inbox: Inbox,
    tokens: Tokens,
    presence: SharedPresence,
    drain: Drain,
    access: RoomAccess,
    webhooks: Option<Webhooks>,
}

impl Core {
    /// Connects to MongoDB, prepares its indexes and starts the engine.
    async fn connect(config: &Config) -> anyhow::Result<Self> {
        let limits = &config.limits;
        let metrics = Arc::new(Metrics::default());
        let bounds = Bounds::new(limits.store_timeout, metrics.clone());
        let store = Store::connect(&config.mongo_uri, &config.mongo_db, bounds.clone())
            .await
            .context("connecting to MongoDB")?;
        store.ensure_indexes().await.context("creating MongoDB indexes")?;
        let inbox = Inbox::new(store.database(), config.retention, bounds.clone());
        inbox.ensure_indexes().await.context("creating MongoDB indexes")?;
        let webhooks = match &config.webhooks {
            None => None,
            Some(hooks) => {
                let queue = HookQueue::new(store.database(), bounds.clone());
                queue.ensure_indexes().await.context("creating MongoDB indexes")?;
                let node = config.cluster.as_ref().map_or_else(|| "herald".to_owned(), |c| c.node_id.clone());
                Some(Webhooks::start(hooks.clone(), queue, node, metrics.clone()))
            }
        };
        let room_settings = RoomSettingsStore::new(store.database(), bounds);
        room_settings.ensure_indexes().await.context("creating MongoDB indexes")?;
        let access =
            RoomAccess::load(room_settings, &config.rooms, metrics.clone()).await.context("reading rooms' settings")?;
        // One node writes every setting itself; a cluster's nodes read each
        // other's.
        if config.cluster.is_some() {
            access.follow();
        }
        let transports = Transports::default();
        let fanout = Fanout::new(metrics.clone(), transports.clone(), limits.outbound_buffer_bytes);
        let settings = engine::Settings { hold: limits.order_hold, window_items: limits.window_messages };
        let parts = engine::Parts {
            store,
            inbox: inbox.clone(),
            fanout: fanout.clone(),
            settings,
            window_bytes: limits.window_bytes,
            metrics: metrics.clone(),
        };
        let engine = match &config.cluster {
            None => Engine::local(parts),
            Some(cluster) => {
                tracing::info!(node = %cluster.node_id, prefix = %cluster.prefix, "a node of a cluster over Redis");
                Engine::clustered(parts, cluster).context("starting the cluster's broker")?
            }
        };
        let message_limits =
            MessageLimits { body_max_chars: limits.message_max_chars, name_max_chars: limits.name_max_chars };
        Ok(Self {
            chat: Chat::new(engine.clone(), metrics.clone(), message_limits, webhooks.clone()),
            notifier: Notifier::new(engine.clone(), metrics.clone()),
            tokens: Tokens::new(&config.token_secrets, config.token_audience.as_deref()),
            presence: match &config.cluster {
                None => Arc::new(LocalPresence::default()),
                Some(cluster) => Arc::new(RedisPresence::new(cluster).context("the cluster's presence")?),
            },
            drain: Drain::default(),
            access,
            webhooks,
            metrics,
            transports,
            fanout,
            engine,
            inbox,
        })
    }

    /// The Socket.IO layer with its handlers, and the handle that reaches
    /// its sockets (attached to the engine, the one that delivers).
    fn socket_io(&self, config: &Config) -> (socketioxide::layer::SocketIoLayer, SocketIo, Announcer) {
        let limits = &config.limits;
        let gate = Gate {
            tokens: self.tokens.clone(),
            allow_anonymous: config.allow_anonymous,
            caps: ConnectionCaps::new(limits.connections_per_ip),
            trusted_proxies: config.trusted_proxies.clone(),
            send_rate: limits.send_rate,
            event_rate: limits.event_rate,
            store_ops: Arc::new(tokio::sync::Semaphore::new(limits.event_store_concurrency)),
            store_timeout: limits.store_timeout,
            drain: self.drain.clone(),
            metrics: self.metrics.clone(),
            transports: self.transports.clone(),
            access: self.access.clone(),
        };
        let tell = Arc::new(self.engine.clone());
        let announcer = Announcer::new(self.presence.clone(), tell, self.metrics.clone(), limits.presence_interval);
        announcer.maintain(self.engine.resyncs());
        if let Some(webhooks) = &self.webhooks {
            announcer.watch_with(Arc::new(webhooks.clone()));
        }
        // A WebSocket message (and each of its frames) is bounded like a
        // long-polling body: the read stops, and the connection closes with
        // 1009, as soon as a frame says it is bigger.
        let ws_max = usize::try_from(limits.socket_payload_max_bytes).unwrap_or(usize::MAX);
        let gate_for_rooms = gate.clone();
        let builder = SocketIo::builder()
            .with_state(self.chat.clone())
            .with_state(gate)
            .with_state(self.engine.clone())
            .with_state(self.notifier.clone())
            .with_state(announcer.clone())
            .with_state(self.fanout.clone())
            .max_payload(limits.socket_payload_max_bytes)
            .ws_max_message_size(ws_max)
            .ws_max_frame_size(ws_max)
            .connect_timeout(limits.connect_timeout)
            .ping_interval(limits.ping_interval)
            .ping_timeout(limits.ping_timeout)
            .max_buffer_size(limits.outbound_buffer_packets)
            .ws_read_buffer_size(WS_READ_BUFFER_BYTES);
        // Behind a load balancer without session affinity long-polling can't
        // work (each poll may reach another node): `HERALD_TRANSPORTS`.
        let builder = if config.polling { builder } else { builder.transports([TransportType::Websocket]) };
        let (layer, io) = builder.build_layer();
        realtime::register(&io);
        realtime::rooms::enforce_access(
            io.clone(),
            gate_for_rooms,
            self.engine.clone(),
            announcer.clone(),
            self.fanout.clone(),
        );
        self.engine.attach(io.clone());
        (layer, io, announcer)
    }

    /// The state of the HTTP handlers: pages, forms and the publish API.
    fn app_state(&self, config: &Config, io: SocketIo, leptos_options: LeptosOptions) -> anyhow::Result<AppState> {
        let limits = &config.limits;
        let api_keys = ApiKeys::new(&config.api_keys);
        let keys = config.api_keys.len();
        let (publish_rate, api_rate) = match &config.cluster {
            None => (KeyRate::local(limits.publish_rate, keys), KeyRate::local(limits.api_rate, keys)),
            Some(cluster) => {
                let redis =
                    redis_for_rates(cluster).map_err(|reason| anyhow::anyhow!("the cluster's API rates: {reason}"))?;
                let rate = |rate, scope| KeyRate::clustered(rate, &config.api_keys, cluster, redis.clone(), scope);
                (rate(limits.publish_rate, ("rl", "publish")), rate(limits.api_rate, ("rl-api", "api")))
            }
        };
        Ok(AppState {
            leptos_options,
            chat: self.chat.clone(),
            engine: self.engine.clone(),
            notifier: self.notifier.clone(),
            io,
            keys: VisitorKeys::new(config.secret.as_ref()),
            cookies: CookiePolicy {
                always_secure: config.cookie_secure,
                trusted_proxies: config.trusted_proxies.clone(),
            },
            tokens: self.tokens.clone(),
            inbox: self.inbox.clone(),
            api_keys,
            publish_rate: Arc::new(publish_rate),
            api_rate: Arc::new(api_rate),
            http_limits: HttpLimits {
                publish_data_max: limits.publish_data_max_bytes,
                body_max: limits.http_body_max_bytes,
            },
            presence: self.presence.clone(),
            fanout: self.fanout.clone(),
            transports: self.transports.clone(),
            form_rate: Arc::new(FormRate::new(limits.send_rate)),
            drain: self.drain.clone(),
            metrics: self.metrics.clone(),
            access: self.access.clone(),
            webhooks: self.webhooks.clone(),
        })
    }

    /// What every Engine.IO request passes before socketioxide sees it:
    /// origins, handshake rates, payload bounds.
    fn transport_guard(&self, config: &Config) -> TransportGuard {
        let limits = &config.limits;
        TransportGuard {
            origins: Arc::new(config.allowed_origins.clone()),
            transports: self.transports.clone(),
            metrics: self.metrics.clone(),
            drain: self.drain.clone(),
            handshakes: WindowCaps::new(limits.handshakes_per_ip, limits.connect_timeout),
            connect_timeout: limits.connect_timeout,
            trusted_proxies: config.trusted_proxies.clone(),
            payload_max: limits.socket_payload_max_bytes,
        }
    }

    /// Binds `HERALD_ADDR`, with the per-address cap on TCP connections.
    async fn bind(&self, config: &Config) -> anyhow::Result<KillableListener> {
        Ok(KillableListener {
            listener: TcpListener::bind(config.addr).await.with_context(|| format!("binding {}", config.addr))?,
            caps: ConnectionCaps::new(config.limits.tcp_connections_per_ip),
            trusted_proxies: config.trusted_proxies.clone(),
            metrics: self.metrics.clone(),
        })
    }
}

impl Application {
    /// Connects to storage, prepares indexes and binds the listener.
    pub async fn build(config: Config, leptos_options: LeptosOptions) -> anyhow::Result<Self> {
        let core = Core::connect(&config).await?;
        let (socket_layer, io, announcer) = core.socket_io(&config);
        let state = core.app_state(&config, io.clone(), leptos_options)?;
        let router = router(state, config.limits.http_body_max_bytes, config.limits.request_timeout)
            .layer(socket_layer)
            .layer(axum::middleware::from_fn_with_state(core.transport_guard(&config), transport::guard));
        let listener = core.bind(&config).await?;
        Ok(Self {
            listener,
            router,
            io,
            engine: core.engine,
            announcer,
            drain: core.drain,
            shutdown_timeout: config.limits.shutdown_timeout,
            head_timeout: config.limits.head_timeout,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.listener.local_addr().expect("a bound listener has an address")
    }

    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    /// Serves until `shutdown` completes, then shuts down gracefully within
    /// the configured deadline:
    ///
    /// 1. refuses new Socket.IO sessions (`transport::guard`) and new sends
    ///    and publishes (`shutting_down`); `/readyz` turns not-ready;
    /// 2. waits for sends and publishes in flight to be stored and answered;
    /// 3. tells every socket why it is being closed (`closing`, reason
    ///    `shutting_down`), lets long-polling clients collect that, and
    ///    closes every socket: HTTP's graceful shutdown does not reach
    ///    upgraded WebSockets, and long-polling requests would hold it up
    ///    until their poll ends;
    /// 4. stops accepting TCP connections and lets in-flight HTTP requests
    ///    finish. (The listener stays open until then because a long-polling
    ///    client needs a new request to collect its last packets.)
    ///
    /// Whatever is still open at the deadline is dropped.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let Self { listener, router, io, engine, announcer, drain, shutdown_timeout, head_timeout } = self;
        let (sockets_closed, stop_http) = tokio::sync::oneshot::channel::<()>();
        let server = serve::serve(listener, router, head_timeout, async move {
            let _ = stop_http.await;
        });
        tokio::pin!(server);
        tokio::select! {
            result = &mut server => return result,
            () = shutdown => {}
        }
        drain.begin();
        let deadline = Instant::now() + shutdown_timeout;
        tracing::info!(?shutdown_timeout, "shutting down: finishing work in flight");
        let close_live = async {
            // Leave a fifth of the time for the goodbyes.
            let work_deadline = deadline - shutdown_timeout / 5;
            if tokio::time::timeout_at(work_deadline, drain.idle()).await.is_err() {
                tracing::warn!("shutting down: work still in flight at the deadline");
            }
            let closing = Closing::shutting_down();
            let told = engine.goodbye(&closing);
            // A WebSocket's writer sends what is queued before it closes; a
            // long-polling client only gets its queue (acks, `closing`) on
            // its next poll, so give it a moment to make one.
            let polling = io.sockets().iter().any(|s| s.transport_type() == TransportType::Polling);
            if polling {
                let linger = POLLING_LINGER.min(deadline.saturating_duration_since(Instant::now()) / 2);
                tokio::time::sleep(linger).await;
            }
            tracing::info!(connections = told, "shutting down: closing live connections");
            engine.detach();
            io.close().await;
            // Out of every room's presence now, rather than when it expires,
            // and the other nodes told before the process ends.
            announcer.withdraw().await;
            engine.flush(Duration::from_secs(1)).await;
            let _ = sockets_closed.send(());
        };
        match tokio::time::timeout_at(deadline, async { tokio::join!(server, close_live).0 }).await {
            Ok(result) => result,
            Err(_) => {
                tracing::warn!("shutting down: deadline reached with connections still open; exiting anyway");
                Ok(())
            }
        }
    }
}

/// How long a shutdown waits for long-polling clients to collect their last
/// packets before their sessions are closed. Polling clients poll again as
/// soon as a poll returns, so this is many round trips.
const POLLING_LINGER: Duration = Duration::from_millis(500);

/// Bounds the readiness probe so a dead database answers "not ready" quickly
/// instead of after the driver's server-selection timeout.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /readyz`: 200 while MongoDB answers and connections are accepted,
/// 503 otherwise.
async fn readyz(State(state): State<AppState>) -> (StatusCode, &'static str) {
    if state.drain.is_draining() {
        return (StatusCode::SERVICE_UNAVAILABLE, "not ready: shutting down");
    }
    match tokio::time::timeout(READY_TIMEOUT, state.engine.store().ping()).await {
        // Redis is shared by every node: failing each one's readiness while
        // it is down would take the whole cluster out.
        Ok(Ok(())) if state.engine.cluster_health() == Some(false) => {
            (StatusCode::OK, "ready, degraded: Redis does not answer (events between nodes wait for it)")
        }
        Ok(Ok(())) => (StatusCode::OK, "ready"),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "not ready: the database does not answer"),
    }
}

/// `GET /metrics`: Prometheus text.
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let sockets = state.io.sockets();
    let websocket = sockets.iter().filter(|s| s.transport_type() == TransportType::Websocket).count();
    let rooms = state.presence.local_room_count();
    let upgrades_tracked = state.transports.upgrades_tracked();
    let (window_bytes, streams) = state.engine.memory();
    let redis_up = state.engine.cluster_health();
    let polling = sockets.len() - websocket;
    let webhooks = state.webhooks.as_ref().map(Webhooks::gauges);
    let live = Live { websocket, polling, rooms, upgrades_tracked, window_bytes, streams, redis_up, webhooks };
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.metrics.render(&live))
}

/// Each request's span: method and path only. The query string stays out
/// of logs: `/login?token=…` carries a credential.
fn request_span<B>(request: &axum::http::Request<B>) -> tracing::Span {
    tracing::info_span!("http", method = %request.method(), path = %request.uri().path())
}

/// The app's page routes, worked out once per process.
///
/// Working them out renders the app once with resource loading switched off,
/// and Leptos's switch for that is process-wide: a page rendered on another
/// thread meanwhile never loaded its data, and its request hung until the
/// request timeout. So the list is made by the first router of the process,
/// before any page can be served, and every later one (another node in the
/// same process, every integration test) takes a copy.
pub fn page_routes() -> Vec<AxumRouteListing> {
    static ROUTES: OnceLock<Vec<AxumRouteListing>> = OnceLock::new();
    ROUTES.get_or_init(|| generate_route_list(App)).clone()
}

/// The HTTP routes (the Socket.IO layer is added around them by `build`).
pub fn router(state: AppState, body_max: usize, request_timeout: Duration) -> Router {
    let options = state.leptos_options.clone();
    let routes = page_routes();
    Router::new()
        .route("/add_message", post(send::add_message))
        .route("/api/publish", post(publish::publish))
        .route("/api/presence/{room}", get(api::presence))
        .route("/api/rooms", get(api::rooms::active))
        .route("/api/rooms/{room}/messages", get(api::rooms::messages))
        .route("/api/rooms/{room}/messages/{seq}", delete(api::rooms::remove_message))
        .route("/api/rooms/{room}/settings", get(api::rooms::settings).put(api::rooms::put_settings))
        .route("/api/users/{user}/disconnect", post(api::users::disconnect))
        .route("/api/openapi.json", get(api::openapi::openapi))
        .route("/notifications/read", post(inbox::mark_read_form))
        .route("/login", get(login::login))
        .route("/logout", post(login::logout))
        .route("/healthz", get(async || "ok"))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .leptos_routes_with_context(&state, routes, state.page_context(), move || shell(options.clone()))
        .fallback(leptos_axum::file_and_error_handler_with_context::<AppState, _>(state.page_context(), shell))
        .layer(axum::middleware::from_fn_with_state(state.clone(), visitor::identify))
        .layer(axum::middleware::from_fn_with_state(state.cookies.clone(), headers::secure_cookies))
        .layer(axum::middleware::from_fn(headers::reject_impossible_paths))
        .layer(axum::middleware::from_fn(headers::security_headers))
        .layer(DefaultBodyLimit::max(body_max))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, request_timeout))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .with_state(state)
}
