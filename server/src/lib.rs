//! # Herald's server
//!
//! axum + leptos_axum for pages and forms, socketioxide for real time,
//! MongoDB for history.
//!
//! ## Layout
//! - [`config`]: typed configuration from a TOML file and the environment
//!   (`docs/CONFIG.md`); secrets in [`config::Secret`]; limits.
//! - [`startup`]: [`startup::Application`] (`build` → `port` →
//!   `run_until_stopped`) and the [`startup::router`].
//! - [`state`]: [`state::AppState`], the one state object handlers share.
//! - [`store`]: MongoDB storage — sequence allocation, idempotent appends,
//!   range-bounded history reads.
//! - [`chat`]: posting a message (store, then broadcast), shared by both
//!   ways of sending.
//! - [`engine`]: the delivery engine: per-stream group commit, order and
//!   windows, the broker seam; every channel name; the only code that
//!   delivers to sockets.
//! - [`notify`]: storing a notification, then publishing it; marking read,
//!   then telling the user.
//! - [`realtime`]: the Socket.IO events `join`, `leave`, `send`.
//! - [`form`]: `POST /add_message`, the no-JavaScript form.
//! - [`inbox`]: notification storage — users' inboxes and the broadcast
//!   stream, with retention.
//! - [`inbox_form`]: `POST /notifications/read`, marking read without
//!   JavaScript.
//! - [`publish`]: `POST /api/publish`, the authenticated publish API.
//! - [`auth`]: user tokens (HS256, rotation) — verifying and issuing.
//! - [`session`]: `GET /login?token=…` and `POST /logout`, the browser
//!   session cookie.
//! - [`visitor`]: visitor cookie, display-name cookie and CSRF tokens.
//! - [`telemetry`]: logging setup (text or JSON).
//! - [`metrics`]: counters and `GET /metrics` (Prometheus text).
//! - [`fanout`]: delivering an event to many sockets; cutting slow
//!   consumers.
//! - [`conn`]: the listener whose TCP connections can be cut.
//! - [`transport`]: Origin allow-list and upgrade tracking on `/socket.io/`.
//! - [`headers`]: security headers and the CSP nonce for pages.
//! - [`limits`]: token buckets (send and publish rates), per-IP connection
//!   caps.
//! - [`sync`]: taking a mutex, one way everywhere.
//! - [`lifecycle`]: draining in-flight work for a graceful shutdown.

pub mod auth;
pub mod chat;
pub mod config;
pub mod conn;
pub mod engine;
pub mod fanout;
pub mod form;
pub mod frames;
pub mod headers;
pub mod http;
pub mod inbox;
pub mod inbox_form;
pub mod lifecycle;
pub mod limits;
pub mod metrics;
pub mod notify;
pub mod presence;
pub mod publish;
pub mod realtime;
pub mod session;
pub mod startup;
pub mod state;
pub mod store;
pub mod sync;
pub mod telemetry;
pub mod transport;
pub mod visitor;
