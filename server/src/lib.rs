//! # Herald's server
//!
//! axum + leptos_axum for pages and forms, socketioxide for real time,
//! MongoDB for history.
//!
//! ## Layout
//!
//! Folders by concept, in floors: a file imports only from its own floor's
//! folder or from floors below it, never from above, and there is no
//! import circle (`../shared/tools/import-circles.py` checks the circles).
//! Top down:
//!
//! 1. `main.rs`, the binary: the CLI, configuration, logging, signals.
//! 2. [`startup`]: [`startup::Application`] (`build` → `port` →
//!    `run_until_stopped`) and the [`startup::router`]; `/readyz` and
//!    `/metrics`.
//! 3. The edges that answer HTTP requests, named by who is on the other
//!    end:
//!    - [`web`]: browsers: the visitor middleware, `/login` and `/logout`,
//!      the no-JavaScript forms (`POST /add_message`,
//!      `POST /notifications/read`), their plain HTML answers;
//!    - [`api`]: backends: `POST /api/publish`, `GET /api/presence/{room}`,
//!      API-key checks, JSON errors.
//! 4. [`state`]: [`state::AppState`], the one state object handlers share
//!    (it imports no handler module); and [`realtime`]: sockets: the
//!    Socket.IO handshake and events, and the guard on `/socket.io/`.
//!    `web` and `realtime` never import each other: what they share is in
//!    [`auth`].
//! 5. The services both ways of sending end in: [`chat`] (posting a
//!    message: check, store, then deliver) and [`notify`] (storing a
//!    notification, then publishing it; marking read, then telling the
//!    user); [`access`]: who may enter which room (private rooms,
//!    their settings, the backend's check), one rule for every edge; and
//!    [`hooks`]: webhooks, queued in MongoDB and sent signed, which
//!    presence and [`chat`] tell what happened.
//! 6. [`engine`]: the delivery engine: per-stream group commit, order and
//!    windows, the broker seam, presence, the fan-out to this node's
//!    sockets; every channel name. The only code that delivers to sockets.
//! 7. [`store`]: MongoDB storage (rooms' messages, notifications; sequence
//!    allocation, idempotent appends, bounded operations), which knows
//!    nothing of Socket.IO; and [`http`]: the accept loop, connections that
//!    can be cut, WebSocket frames, security headers, rates and caps.
//! 8. [`auth`]: user tokens, the session cookie, CSRF tokens, API keys; and
//!    [`ops`]: metrics, logging, draining for shutdown.
//! 9. [`config`]: typed configuration from a TOML file and the environment
//!    (`docs/CONFIG.md`); [`ids`]: random ids; [`sync`]: taking a mutex,
//!    one way everywhere.

pub mod access;
pub mod api;
pub mod auth;
pub mod chat;
pub mod config;
pub mod engine;
pub mod hooks;
pub mod http;
pub mod ids;
pub mod notify;
pub mod ops;
pub mod realtime;
pub mod startup;
pub mod state;
pub mod store;
pub mod sync;
pub mod web;
